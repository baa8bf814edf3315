"""Every importer op against onnxruntime over its attributes (hypothesis; issue 11 item 2).

Each op in ``SUPPORTED_OPS`` has a strategy that draws its shapes, attributes (defaults
included: an attribute is often left out) and opset, builds a one-node ONNX model with
onnx.helper, declares the outputs' shapes as onnxruntime computes them (so walle's import
checks each declared shape), and compares walle, on a backend drawn too, with onnxruntime.
Examples are few and small: the file runs in seconds.

Tolerance: |walle - onnxruntime| <= 1e-4 + 1e-4 * |onnxruntime| (float32).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes
from onnx import helper, numpy_helper

from tests.unit.ops._onnx_cases import assert_parity, input_io, io, model, output_io, run_ort
from tests.unit.ops.test_ops_onnx_control import if_models
from tests.unit.ops.test_ops_onnx_einsum import einsum_models
from tests.unit.ops.test_ops_onnx_expand_tile import expand_models, tile_models
from tests.unit.ops.test_ops_onnx_quantize import STRATEGIES as QUANTIZED
from tests.unit.ops.test_ops_onnx_recurrent import recurrent_models
from tests.unit.ops.test_ops_onnx_scatter import scatter_nd_models
from walle.ops import available_backends
from walle.ops.onnx_import import SUPPORTED_OPS

BACKENDS = [b.name for b in available_backends()]
SETTINGS = settings(
    max_examples=int(os.environ.get("WALLE_OPS_EXAMPLES", "10")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
_I = np.int64


class Case:
    """A one-node model and its feeds (a plain class: hypothesis prints its repr)."""

    def __init__(self, proto, feeds: dict[str, np.ndarray]) -> None:
        self.proto, self.feeds = proto, feeds

    def __repr__(self) -> str:  # what hypothesis prints for a failing example
        shapes = {k: v.shape for k, v in self.feeds.items()}
        opset = self.proto.opset_import[0].version
        return f"opset {opset}, inputs {shapes}\n{helper.printable_graph(self.proto.graph)}"


def _array(draw, shape, low=-2.0, high=2.0) -> np.ndarray:
    seed = draw(st.integers(0, 2**16))
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def _one(op, inputs, inits=(), opset=18, attrs=None, outputs=1) -> object:
    """A model of one ``op`` node: float ``inputs`` [(name, array)], then ``inits``
    [(name, array) or None for an absent optional input], outputs y0, y1, ... (shapes left
    undeclared: the test declares onnxruntime's)."""
    names = [n for n, _ in inputs] + ["" if i is None else i[0] for i in inits]
    outs = [f"y{i}" for i in range(outputs)]
    node = helper.make_node(op, names, outs, name="n", **(attrs or {}))
    graph_inits = [numpy_helper.from_array(a, n) for n, a in (i for i in inits if i is not None)]
    return model(
        [node], [input_io(n, a) for n, a in inputs],
        [output_io(op, o, None, i) for i, o in enumerate(outs)], graph_inits, opset,
    )  # fmt: skip


def _case(op, inputs, inits=(), opset=18, attrs=None, outputs=1) -> Case:
    return Case(_one(op, inputs, inits, opset, attrs, outputs), dict(inputs))


small = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)


def _maybe(draw, key: str, strategy, attrs: dict) -> None:
    """Set attribute ``key`` half of the time (else its default applies)."""
    if draw(st.booleans()):
        attrs[key] = draw(strategy)


# -- element-wise ---------------------------------------------------------------------------
_POSITIVE = {"Sqrt", "Log"}
# the open domains of the inverse and periodic functions (an argument outside is NaN, and
# Tan is steep near its poles)
_DOMAINS = {"Asin": (-0.99, 0.99), "Acos": (-0.99, 0.99), "Atanh": (-0.99, 0.99),
            "Acosh": (1.01, 4.0), "Tan": (-1.4, 1.4)}  # fmt: skip


def unary(op):
    @st.composite
    def draw(draw):
        shape = draw(small)
        low, high = _DOMAINS.get(op, (0.1 if op in _POSITIVE else -3.0, 3.0))
        x = _array(draw, shape, low, high)
        if op == "Reciprocal":
            x = np.where(np.abs(x) < 0.1, np.float32(0.5), x)
        return _case(op, [("x", x)])

    return draw()


def binary(op):
    @st.composite
    def draw(draw):
        n = 2 if op in ("Add", "Sub", "Mul", "Div", "Pow") else draw(st.integers(1, 3))
        shapes = draw(mutually_broadcastable_shapes(num_shapes=n, max_dims=3, max_side=4))
        low = 0.5 if op == "Pow" else -2.0
        xs = [(f"x{i}", _array(draw, s, low)) for i, s in enumerate(shapes.input_shapes)]
        if op == "Div":
            xs[1] = ("x1", np.where(np.abs(xs[1][1]) < 0.1, np.float32(1), xs[1][1]))
        return _case(op, xs)

    return draw()


@st.composite
def gelu(draw):
    attrs: dict = {}
    _maybe(draw, "approximate", st.sampled_from(["none", "tanh"]), attrs)
    return _case("Gelu", [("x", _array(draw, draw(small), -4, 4))], opset=20, attrs=attrs)


@st.composite
def leaky_relu(draw):
    attrs: dict = {}
    _maybe(draw, "alpha", st.floats(-2, 2, width=32), attrs)
    return _case("LeakyRelu", [("x", _array(draw, draw(small)))], attrs=attrs)


@st.composite
def hard_sigmoid(draw):
    attrs: dict = {}
    _maybe(draw, "alpha", st.floats(-1, 1, width=32), attrs)
    _maybe(draw, "beta", st.floats(-1, 1, width=32), attrs)
    return _case("HardSigmoid", [("x", _array(draw, draw(small), -6, 6))], attrs=attrs)


@st.composite
def hard_swish(draw):
    return _case("HardSwish", [("x", _array(draw, draw(small), -6, 6))])


@st.composite
def clip(draw):
    x = ("x", _array(draw, draw(small), -3, 3))
    bound = st.floats(-2, 2, width=32)
    if draw(st.booleans()):  # opset 6: attributes
        attrs: dict = {}
        _maybe(draw, "min", bound, attrs)
        _maybe(draw, "max", bound, attrs)
        if attrs.get("min", -9) > attrs.get("max", 9):  # onnxruntime refuses min > max here
            attrs["min"], attrs["max"] = attrs["max"], attrs["min"]
        return _case("Clip", [x], opset=6, attrs=attrs)
    lo, hi = draw(st.one_of(st.none(), bound)), draw(st.one_of(st.none(), bound))
    inits = [
        None if v is None else (n, np.array(v, np.float32)) for n, v in (("lo", lo), ("hi", hi))
    ]
    while inits and inits[-1] is None:
        inits.pop()
    return _case("Clip", [x], inits, opset=draw(st.sampled_from([11, 13, 18])))


def softmax(op):
    @st.composite
    def draw(draw):
        shape = draw(small)
        attrs: dict = {}
        _maybe(draw, "axis", st.integers(-len(shape), len(shape) - 1), attrs)
        opset = draw(st.sampled_from([11, 13, 18]))
        if opset < 13 and "axis" not in attrs and len(shape) < 2:
            opset = 13  # the default axis 1 needs rank 2 before opset 13
        return _case(op, [("x", _array(draw, shape))], opset=opset, attrs=attrs)

    return draw()


@st.composite
def prelu(draw):
    """A slope that broadcasts one way to x: x's last k dims, each kept or 1 (a constant)."""
    shape = draw(small)
    k = draw(st.integers(0, len(shape)))
    slope = tuple(d if draw(st.booleans()) else 1 for d in shape[len(shape) - k :]) or (1,)
    x = ("x", _array(draw, shape))
    return _case("PRelu", [x], [("s", _array(draw, slope))], opset=draw(st.sampled_from([9, 16])))


@st.composite
def elu(draw):
    attrs: dict = {}
    _maybe(draw, "alpha", st.floats(-2, 2, width=32), attrs)
    return _case("Elu", [("x", _array(draw, draw(small), -4, 4))], attrs=attrs)


@st.composite
def selu(draw):
    attrs: dict = {}
    _maybe(draw, "alpha", st.floats(0, 3, width=32), attrs)
    _maybe(draw, "gamma", st.floats(0, 3, width=32), attrs)
    return _case("Selu", [("x", _array(draw, draw(small), -4, 4))], attrs=attrs)


@st.composite
def celu(draw):
    attrs: dict = {}
    _maybe(draw, "alpha", st.floats(0.125, 3, width=32), attrs)
    return _case("Celu", [("x", _array(draw, draw(small), -4, 4))], opset=12, attrs=attrs)


@st.composite
def mish(draw):
    return _case("Mish", [("x", _array(draw, draw(small), -30, 30))])


# -- nn -------------------------------------------------------------------------------------
@st.composite
def gemm(draw):
    m, k, n = draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    attrs: dict = {}
    _maybe(draw, "transA", st.integers(0, 1), attrs)
    _maybe(draw, "transB", st.integers(0, 1), attrs)
    _maybe(draw, "alpha", st.floats(-2, 2, width=32), attrs)
    _maybe(draw, "beta", st.floats(-2, 2, width=32), attrs)
    a = _array(draw, (k, m) if attrs.get("transA") else (m, k))
    b = _array(draw, (n, k) if attrs.get("transB") else (k, n))
    xs = [("a", a), ("b", b)]
    c_shape = draw(st.sampled_from([None, (n,), (m, n), (1, n), (m, 1), ()]))
    if c_shape is not None:
        xs.append(("c", _array(draw, c_shape)))
    return _case("Gemm", xs, attrs=attrs)


@st.composite
def matmul(draw):
    k = draw(st.integers(1, 5))
    batch = draw(st.lists(st.integers(1, 3), max_size=2).map(tuple))
    ra, rb = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sa = (k,) if ra == 1 else (*batch[: ra - 2], draw(st.integers(1, 4)), k)
    sb = (k,) if rb == 1 else (*batch[: rb - 2], k, draw(st.integers(1, 4)))
    return _case("MatMul", [("a", _array(draw, sa)), ("b", _array(draw, sb))])


def _spatial_attrs(draw, kernel, *, dilations=True, conv=False) -> dict:
    """Attributes of a Conv or pool over len(kernel) spatial axes (1-D, 2-D or 3-D)."""
    attrs: dict = {}
    n = len(kernel)
    _maybe(draw, "strides", st.lists(st.integers(1, 3), min_size=n, max_size=n), attrs)
    if dilations:
        _maybe(draw, "dilations", st.lists(st.integers(1, 2), min_size=n, max_size=n), attrs)
    mode = draw(st.sampled_from(["absent", "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"]))
    if mode in ("absent", "NOTSET"):
        if mode == "NOTSET":
            attrs["auto_pad"] = mode
        pads = [draw(st.integers(0, k - 1)) for k in kernel + kernel]  # begins, then ends
        if draw(st.booleans()):
            attrs["pads"] = pads
    else:
        attrs["auto_pad"] = mode
        if mode.startswith("SAME"):
            attrs.pop("dilations", None)  # refused: onnxruntime and the spec disagree
            if not conv and "strides" in attrs:  # onnxruntime: negative pads when stride > k
                attrs["strides"] = [
                    min(s, k) for s, k in zip(attrs["strides"], kernel, strict=True)
                ]
    return attrs


def _fits(shape, kernel, attrs) -> bool:
    """Whether every window fits (onnxruntime refuses an empty output)."""
    n = len(kernel)
    pads = attrs.get("pads", [0] * 2 * n)
    dil = attrs.get("dilations", [1] * n)
    if attrs.get("auto_pad", "NOTSET").startswith("SAME"):
        return True
    return all(
        shape[2 + i] + pads[i] + pads[i + n] >= (kernel[i] - 1) * dil[i] + 1 for i in range(n)
    )


@st.composite
def conv(draw):
    group = draw(st.sampled_from([1, 1, 2, 3]))
    cin, cout = group * draw(st.integers(1, 2)), group * draw(st.integers(1, 2))
    axes = draw(st.sampled_from([1, 2, 2, 3]))  # Conv1d, Conv2d or Conv3d
    kernel = [draw(st.integers(1, 3)) for _ in range(axes)]
    side = (3, 7) if axes < 3 else (3, 5)
    shape = (draw(st.integers(1, 2)), cin, *(draw(st.integers(*side)) for _ in range(axes)))
    attrs = _spatial_attrs(draw, kernel, conv=True)
    if group > 1 or draw(st.booleans()):
        attrs["group"] = group
    if draw(st.booleans()):
        attrs["kernel_shape"] = kernel
    if not _fits(shape, kernel, attrs):
        attrs = {"group": group}
    xs = [("x", _array(draw, shape)), ("w", _array(draw, (cout, cin // group, *kernel)))]
    if draw(st.booleans()):
        xs.append(("b", _array(draw, (cout,))))
    return _case("Conv", xs, attrs=attrs)


@st.composite
def conv_transpose(draw):
    """Weights and bias constants (walle rearranges them at import); every attribute drawn,
    the pads within what leaves an output, SAME pads only where they are reachable."""
    group = draw(st.sampled_from([1, 1, 2]))
    cin, cout = group * draw(st.integers(1, 2)), group * draw(st.integers(1, 2))
    axes = draw(st.sampled_from([1, 2, 2]))
    kernel = [draw(st.integers(1, 3)) for _ in range(axes)]
    sizes = [draw(st.integers(1, 5)) for _ in range(axes)]
    attrs: dict = {}
    _maybe(draw, "strides", st.lists(st.integers(1, 3), min_size=axes, max_size=axes), attrs)
    _maybe(draw, "dilations", st.lists(st.integers(1, 2), min_size=axes, max_size=axes), attrs)
    strides, dilations = attrs.get("strides", [1] * axes), attrs.get("dilations", [1] * axes)
    extra = [draw(st.integers(0, s - 1)) for s in strides]
    if draw(st.booleans()):
        attrs["output_padding"] = extra
    extra = attrs.get("output_padding", [0] * axes)
    full = [
        s * (n - 1) + o + (k - 1) * d + 1
        for n, s, o, k, d in zip(sizes, strides, extra, kernel, dilations, strict=True)
    ]
    modes = ["defaults", "pads", "output_shape", "VALID", "SAME_UPPER", "SAME_LOWER"]
    mode = draw(st.sampled_from(modes))
    if mode == "pads":
        head = [draw(st.integers(0, f - 1)) for f in full]
        attrs["pads"] = head + [
            draw(st.integers(0, f - 1 - h)) for f, h in zip(full, head, strict=True)
        ]
    elif mode == "output_shape":
        attrs["output_shape"] = [draw(st.integers(1, f)) for f in full]
    elif mode != "defaults" and all(
        n * s <= f for n, s, f in zip(sizes, strides, full, strict=True)
    ):
        attrs["auto_pad"] = mode
    if group > 1 or draw(st.booleans()):
        attrs["group"] = group
    if draw(st.booleans()):
        attrs["kernel_shape"] = kernel
    inits = [("w", _array(draw, (cin, cout // group, *kernel)))]
    if draw(st.booleans()):
        inits.append(("b", _array(draw, (cout,))))
    shape = (draw(st.integers(1, 2)), cin, *sizes)
    return _case("ConvTranspose", [("x", _array(draw, shape))], inits, attrs=attrs)


def pool(op):
    @st.composite
    def draw(draw):
        axes = draw(st.sampled_from([1, 2, 2, 3]))  # 1-D, 2-D or 3-D
        kernel = [draw(st.integers(1, 3)) for _ in range(axes)]
        spatial = (draw(st.integers(3, 7 if axes < 3 else 5)) for _ in range(axes))
        shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *spatial)
        attrs = _spatial_attrs(draw, kernel, dilations=op == "MaxPool")
        attrs["kernel_shape"] = kernel
        _maybe(draw, "ceil_mode", st.integers(0, 1), attrs)
        if op == "AveragePool":
            _maybe(draw, "count_include_pad", st.integers(0, 1), attrs)
        if not _fits(shape, kernel, attrs):
            attrs = {"kernel_shape": kernel}
        return _case(op, [("x", _array(draw, shape))], opset=18, attrs=attrs)

    return draw()


def global_pool(op):
    @st.composite
    def draw(draw):
        spatial = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
        shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *spatial)
        return _case(op, [("x", _array(draw, shape))])

    return draw()


@st.composite
def batchnorm(draw):
    c = draw(st.integers(1, 4))
    shape = (draw(st.integers(1, 2)), c, *draw(st.lists(st.integers(1, 4), max_size=2)))
    attrs: dict = {}
    _maybe(draw, "epsilon", st.floats(1e-5, 0.5), attrs)
    inits = [
        ("s", _array(draw, (c,), 0.5, 1.5)),
        ("bb", _array(draw, (c,))),
        ("m", _array(draw, (c,))),
        ("v", _array(draw, (c,), 0.5, 2.0)),
    ]
    opset = draw(st.sampled_from([9, 14, 15]))
    return _case("BatchNormalization", [("x", _array(draw, shape))], inits, opset, attrs)


@st.composite
def lrn(draw):
    hw = draw(st.tuples(st.integers(1, 4), st.integers(1, 4)))  # onnxruntime: 4-D only
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 6)), *hw)
    attrs = {"size": draw(st.sampled_from([1, 3, 5]))}  # onnxruntime: odd sizes only
    _maybe(draw, "alpha", st.floats(1e-4, 0.1), attrs)
    _maybe(draw, "beta", st.floats(0.25, 1.0), attrs)
    _maybe(draw, "bias", st.floats(0.5, 2.0), attrs)
    return _case("LRN", [("x", _array(draw, shape))], attrs=attrs)


def _normalised(draw) -> tuple[list, dict, tuple[int, ...]]:
    """The input and scale of a normalisation over the axes from ``axis`` on, ``axis`` and
    ``epsilon`` drawn (or left to their defaults), and the scale's shape."""
    shape = draw(small)
    attrs: dict = {}
    _maybe(draw, "axis", st.integers(-len(shape), len(shape) - 1), attrs)
    _maybe(draw, "epsilon", st.floats(1e-6, 0.1), attrs)
    tail = shape[attrs.get("axis", -1) % len(shape) :]
    return [("x", _array(draw, shape)), ("g", _array(draw, tail))], attrs, tail


@st.composite
def layernorm(draw):
    xs, attrs, tail = _normalised(draw)
    if draw(st.booleans()):
        xs.append(("b", _array(draw, tail)))
    # the Mean and InvStdDev outputs too, some of the time
    return _case("LayerNormalization", xs, opset=17, attrs=attrs, outputs=draw(st.integers(1, 3)))


@st.composite
def lp_norm(draw):
    """Norms along ``axis`` (p 1 or 2), one vector all zeros some of the time (onnxruntime's
    zeros, not 0 / 0)."""
    shape = draw(small)
    attrs: dict = {}
    _maybe(draw, "axis", st.integers(-len(shape), len(shape) - 1), attrs)
    _maybe(draw, "p", st.sampled_from([1, 2]), attrs)
    x = _array(draw, shape)
    if draw(st.booleans()):
        axis = attrs.get("axis", -1) % len(shape)
        x[tuple(slice(None) if d == axis else 0 for d in range(len(shape)))] = 0.0
    return _case("LpNormalization", [("x", x)], opset=1, attrs=attrs)


@st.composite
def rms_norm(draw):
    xs, attrs, _ = _normalised(draw)
    return _case("RMSNormalization", xs, opset=23, attrs=attrs)


@st.composite
def group_norm(draw):
    """GroupNormalization at opset 21 (scale and bias per channel) or 18 (per group)."""
    groups = draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 2)), groups * draw(st.integers(1, 3)), *draw(small))
    attrs: dict = {"num_groups": groups}
    _maybe(draw, "epsilon", st.floats(1e-6, 0.1), attrs)
    opset = draw(st.sampled_from([18, 21]))
    per = groups if opset == 18 else shape[1]
    xs = [("x", _array(draw, shape)), ("g", _array(draw, (per,))), ("b", _array(draw, (per,)))]
    return _case("GroupNormalization", xs, opset=opset, attrs=attrs)


@st.composite
def instance_norm(draw):
    shape = (*draw(st.lists(st.integers(1, 3), min_size=2, max_size=2)), *draw(small))
    attrs: dict = {}
    _maybe(draw, "epsilon", st.floats(1e-6, 0.1), attrs)
    params = [(n, _array(draw, shape[1:2], 0.1, 2.0)) for n in ("s", "b")]
    xs, inits = [("x", _array(draw, shape))], []
    if draw(st.booleans()):
        inits = params
    else:
        xs += params
    opset = draw(st.sampled_from([6, 22]))
    return _case("InstanceNormalization", xs, inits, opset=opset, attrs=attrs)


@st.composite
def dropout(draw):
    attrs: dict = {}
    opset = draw(st.sampled_from([9, 13]))
    _maybe(draw, "ratio", st.floats(0.0, 0.9), attrs)
    if opset >= 12:
        attrs.pop("ratio", None)
    return _case("Dropout", [("x", _array(draw, draw(small)))], opset=opset, attrs=attrs)


# -- layout ---------------------------------------------------------------------------------
@st.composite
def reshape(draw):
    shape = draw(small)
    x = _array(draw, shape)
    target = list(draw(st.permutations(list(shape))))
    if draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    elif target[0] == shape[0] and draw(st.booleans()):
        target[0] = 0
    return _case("Reshape", [("x", x)], [("shape", np.array(target, _I))])


@st.composite
def flatten(draw):
    shape = draw(small)
    attrs: dict = {}
    _maybe(draw, "axis", st.integers(-len(shape), len(shape)), attrs)
    return _case("Flatten", [("x", _array(draw, shape))], attrs=attrs)


@st.composite
def transpose(draw):
    shape = draw(small)
    attrs: dict = {}
    _maybe(draw, "perm", st.permutations(list(range(len(shape)))), attrs)
    return _case("Transpose", [("x", _array(draw, shape))], attrs=attrs)


@st.composite
def concat(draw):
    shape = draw(small)
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    xs = []
    for i in range(draw(st.integers(1, 3))):
        s = list(shape)
        s[axis] = draw(st.integers(1, 3))
        xs.append((f"x{i}", _array(draw, tuple(s))))
    return _case("Concat", xs, attrs={"axis": axis})


@st.composite
def slice_(draw):
    shape = draw(small)
    rank = len(shape)
    axes = draw(st.lists(st.integers(0, rank - 1), min_size=1, max_size=rank, unique=True))
    # far indices, the int64 bounds among them: exporters write "to the end" as 2**63 - 1
    # (PyTorch's x[:, 1:]) or -(2**63); float32 rounds both to +-2**63
    far = [2**62, -(2**62), 2**63 - 1, -(2**63), -(2**63 - 1), 2**31 - 1, -(2**31)]
    index = st.one_of(st.integers(-7, 7), st.sampled_from(far))
    starts = [draw(index) for _ in axes]
    ends = [draw(index) for _ in axes]
    steps = [draw(st.sampled_from([1, 2, -1, -2, 3])) for _ in axes]
    x = ("x", _array(draw, shape))
    if draw(st.booleans()):  # opset 9: attributes, step 1
        attrs: dict = {"starts": starts, "ends": ends}
        if draw(st.booleans()) or axes != list(range(len(axes))):
            attrs["axes"] = axes
        return _case("Slice", [x], opset=9, attrs=attrs)
    neg = [a - rank if draw(st.booleans()) else a for a in axes]
    inits = [("s", np.array(starts, _I)), ("e", np.array(ends, _I))]
    with_steps = draw(st.booleans())
    if with_steps or draw(st.booleans()) or axes != list(range(len(axes))):
        inits.append(("a", np.array(neg, _I)))
    if with_steps:
        inits.append(("st", np.array(steps, _I)))
    return _case("Slice", [x], inits, opset=draw(st.sampled_from([10, 13, 18])))


@st.composite
def pad(draw):
    shape = draw(small)
    rank = len(shape)
    mode = draw(st.sampled_from(["constant", "reflect", "edge", "wrap", None]))
    pads = []
    for _side in range(2):
        for d in shape:
            top = {"reflect": d - 1, "wrap": d}.get(mode or "", 3)
            low = -1 if mode in (None, "constant") and d > 1 else 0
            pads.append(draw(st.integers(low, min(top, 3))))
    if mode in (None, "constant") and any(
        d + pads[i] + pads[i + rank] <= 0 for i, d in enumerate(shape)
    ):
        pads = [max(0, p) for p in pads]
    attrs = {} if mode is None else {"mode": mode}
    x = ("x", _array(draw, shape))
    if mode != "wrap" and draw(st.booleans()):  # opset 2: attributes
        attrs["pads"] = pads
        _maybe(draw, "value", st.floats(-2, 2, width=32), attrs)
        return _case("Pad", [x], opset=2, attrs=attrs)
    inits: list = [("p", np.array(pads, _I))]
    if draw(st.booleans()):
        inits.append(("v", np.array(draw(st.floats(-2, 2, width=32)), np.float32)))
    return _case("Pad", [x], inits, opset=19 if mode == "wrap" else 18, attrs=attrs)


@st.composite
def split(draw):
    shape = draw(small)
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    dim = shape[axis]
    x = ("x", _array(draw, shape))
    how = draw(st.sampled_from(["sizes", "num_outputs", "equal"]))
    if how == "num_outputs":
        parts = draw(st.integers(1, dim))
        if -(-dim // parts) * (parts - 1) >= dim:  # onnxruntime: no empty last part
            parts = 1
        return _case("Split", [x], opset=18, attrs={"axis": axis, "num_outputs": parts},
                     outputs=parts)  # fmt: skip
    if how == "equal":
        parts = draw(st.sampled_from([p for p in range(1, dim + 1) if dim % p == 0]))
        return _case("Split", [x], opset=13, attrs={"axis": axis}, outputs=parts)
    cuts = sorted(draw(st.lists(st.integers(0, dim), max_size=3)))
    sizes = np.diff([0, *cuts, dim]).astype(_I)
    if draw(st.booleans()):
        return _case("Split", [x], opset=11, attrs={"axis": axis, "split": [int(s) for s in sizes]},
                     outputs=len(sizes))  # fmt: skip
    return _case("Split", [x], [("sp", sizes)], 18, {"axis": axis}, outputs=len(sizes))


@st.composite
def gather(draw):
    shape = draw(small)
    attrs: dict = {}
    _maybe(draw, "axis", st.integers(-len(shape), len(shape) - 1), attrs)
    dim = shape[attrs.get("axis", 0)]
    ishape = draw(st.lists(st.integers(1, 3), max_size=2).map(tuple))
    seed = draw(st.integers(0, 99))
    indices = np.random.default_rng(seed).integers(-dim, dim, ishape).astype(_I)
    return _case("Gather", [("x", _array(draw, shape))], [("i", indices)], attrs=attrs)


@st.composite
def unsqueeze(draw):
    shape = draw(small)
    rank = len(shape) + draw(st.integers(1, 2))
    axes = draw(st.lists(st.integers(0, rank - 1), min_size=rank - len(shape),
                         max_size=rank - len(shape), unique=True))  # fmt: skip
    axes = [a - rank if draw(st.booleans()) else a for a in axes]
    x = ("x", _array(draw, shape))
    if draw(st.booleans()):
        return _case("Unsqueeze", [x], opset=11, attrs={"axes": axes})
    return _case("Unsqueeze", [x], [("ax", np.array(axes, _I))], opset=13)


@st.composite
def squeeze(draw):
    shape = draw(st.lists(st.sampled_from([1, 1, 2, 3]), min_size=1, max_size=4).map(tuple))
    ones = [i for i, d in enumerate(shape) if d == 1]
    axes = draw(st.one_of(st.none(), st.lists(st.sampled_from(ones), unique=True, min_size=1)
                          if ones else st.none()))  # fmt: skip
    x = ("x", _array(draw, shape))
    if axes is None:
        return _case("Squeeze", [x], opset=draw(st.sampled_from([11, 13])))
    if draw(st.booleans()):
        return _case("Squeeze", [x], opset=11, attrs={"axes": axes})
    return _case("Squeeze", [x], [("ax", np.array(axes, _I))], opset=13)


@st.composite
def constant(draw):
    shape = draw(small)
    value = _array(draw, shape)
    x = _array(draw, shape)
    form = draw(st.sampled_from(["value", "value_float", "value_floats"]))
    if form == "value":
        attrs = {"value": numpy_helper.from_array(value)}
    elif form == "value_float":
        attrs, x = {"value_float": float(value.reshape(-1)[0])}, x
    else:
        attrs, x = {"value_floats": [float(v) for v in value.reshape(-1)]}, x.reshape(-1)
    nodes = [
        helper.make_node("Constant", [], ["c"], name="n", **attrs),
        helper.make_node("Add", ["x", "c"], ["y0"], name="add"),
    ]
    return Case(model(nodes, [io("x", x.shape)], [io("y0", None)], opset=13), {"x": x})


@st.composite
def constant_of_shape(draw):
    shape = draw(small)
    attrs: dict = {}
    if draw(st.booleans()):
        attrs["value"] = numpy_helper.from_array(
            np.array([draw(st.floats(-2, 2, width=32))], np.float32)
        )
    nodes = [
        helper.make_node("ConstantOfShape", ["s"], ["c"], name="n", **attrs),
        helper.make_node("Add", ["x", "c"], ["y0"], name="add"),
    ]
    inits = [numpy_helper.from_array(np.array(shape, _I), "s")]
    x = _array(draw, shape)
    return Case(model(nodes, [io("x", shape)], [io("y0", None)], inits), {"x": x})


# -- reductions -----------------------------------------------------------------------------
def reduce(op):
    @st.composite
    def draw(draw):
        shape = draw(small)
        rank = len(shape)
        axes = draw(
            st.lists(st.integers(-rank, rank - 1), max_size=rank, unique_by=lambda a: a % rank)
        )
        attrs: dict = {}
        _maybe(draw, "keepdims", st.integers(0, 1), attrs)
        _maybe(draw, "noop_with_empty_axes", st.integers(0, 1), attrs)
        # a log of a sum near 0 would magnify the sums' rounding (both sides' NaN below 0)
        x = ("x", _array(draw, shape, 0.1 if op == "ReduceLogSum" else -2.0))
        opset = draw(st.sampled_from([11, 13, 18]))
        as_input = opset >= (13 if op == "ReduceSum" else 18)
        if not as_input:
            attrs.pop("noop_with_empty_axes", None)
            if axes:
                attrs["axes"] = axes
            return _case(op, [x], opset=opset, attrs=attrs)
        inits = [("ax", np.array(axes, _I))] if axes or draw(st.booleans()) else []
        return _case(op, [x], inits, opset=opset, attrs=attrs)

    return draw()


def arg_reduce(op):
    @st.composite
    def draw(draw):
        """Small integers (ties in every row), NaN and infinities among them; a NaN first
        in a row keeps index 0. Not NaN in a rank-1 input: onnxruntime reduces that in
        vectors, and its index there depends on where NaN falls among its lanes."""
        shape = draw(small)
        rank = len(shape)
        attrs: dict = {}
        _maybe(draw, "axis", st.integers(-rank, rank - 1), attrs)
        _maybe(draw, "keepdims", st.integers(0, 1), attrs)
        opset = draw(st.sampled_from([11, 12, 13]))
        if opset >= 12:
            _maybe(draw, "select_last_index", st.integers(0, 1), attrs)
        seed = draw(st.integers(0, 2**16))
        rng = np.random.default_rng(seed)
        x = rng.integers(-2, 3, shape).astype(np.float32)
        specials = [np.inf, -np.inf] + ([np.nan] if rank > 1 else [])
        x[rng.random(shape) < 0.15] = rng.choice(specials)
        return _case(op, [("x", x)], opset=opset, attrs=attrs)

    return draw()


def _specials(draw, shape) -> np.ndarray:
    """Small integers (ties everywhere), with NaN, infinities and -0 among them."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = np.asarray(rng.integers(-2, 3, shape), np.float32)
    x[np.asarray(rng.random(shape) < 0.2)] = rng.choice([np.nan, np.inf, -np.inf, -0.0])
    return x


def _bools(draw, shape) -> np.ndarray:
    return np.asarray(np.random.default_rng(draw(st.integers(0, 2**16))).random(shape) < 0.5)


@st.composite
def rounding(draw):
    """Halves among the values (they round to even), -0.5 and 0.5 to -0 and 0."""
    x = _array(draw, draw(small), -4.0, 4.0)
    halves = np.asarray(np.round(x * 2) / 2, np.float32)
    return _case("Round", [("x", halves if draw(st.booleans()) else x)], opset=11)


@st.composite
def thresholded_relu(draw):
    attrs: dict = {}
    _maybe(draw, "alpha", st.floats(-2, 2, width=32), attrs)
    x = _specials(draw, draw(small)) if draw(st.booleans()) else _array(draw, draw(small))
    return _case("ThresholdedRelu", [("x", x)], opset=10, attrs=attrs)


@st.composite
def shrink(draw):
    attrs: dict = {}
    _maybe(draw, "lambd", st.floats(0, 2, width=32), attrs)
    _maybe(draw, "bias", st.floats(-1, 1, width=32), attrs)
    x = _specials(draw, draw(small)) if draw(st.booleans()) else _array(draw, draw(small))
    return _case("Shrink", [("x", x)], opset=9, attrs=attrs)


@st.composite
def hardmax(draw):
    """Ties and infinities, no NaN (onnxruntime's answer there depends on its lanes)."""
    shape = draw(small)
    rank = len(shape)
    attrs: dict = {}
    _maybe(draw, "axis", st.integers(-rank, rank - 1), attrs)
    x = np.nan_to_num(_specials(draw, shape), nan=1.0, posinf=np.inf, neginf=-np.inf)
    opset = draw(st.sampled_from([11, 13]))
    if opset < 13 and rank == 1:
        attrs["axis"] = draw(st.integers(-1, 0))  # (the default there is 1)
    return _case("Hardmax", [("x", x)], opset=opset, attrs=attrs)


def special_test(op):
    @st.composite
    def draw(draw):
        attrs: dict = {}
        if op == "IsInf":
            _maybe(draw, "detect_positive", st.integers(0, 1), attrs)
            _maybe(draw, "detect_negative", st.integers(0, 1), attrs)
        return _case(op, [("x", _specials(draw, draw(small)))], opset=13, attrs=attrs)

    return draw()


def comparison(op):
    @st.composite
    def draw(draw):
        shapes = draw(mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4))
        a, b = (_specials(draw, s) for s in shapes.input_shapes)
        opset = draw(st.sampled_from([12, 13, 16]))
        return _case(op, [("a", a), ("b", b)], opset=opset)

    return draw()


def logic(op):
    @st.composite
    def draw(draw):
        if op == "Not":
            return _case(op, [("a", _bools(draw, draw(small)))])
        shapes = draw(mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4))
        a, b = (_bools(draw, s) for s in shapes.input_shapes)
        return _case(op, [("a", a), ("b", b)], opset=draw(st.sampled_from([7, 13])))

    return draw()


@st.composite
def where(draw):
    """A boolean condition and values with NaN and infinities on either side (the side
    not taken must not reach the output), all three broadcasting."""
    shapes = draw(mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=4))
    c, x, y = shapes.input_shapes
    inputs = [("c", _bools(draw, c)), ("x", _specials(draw, x)), ("y", _specials(draw, y))]
    return _case("Where", inputs, opset=draw(st.sampled_from([9, 16])))


@st.composite
def topk(draw):
    """Ties, NaN (ranked above every number) and infinities; k from 0 to the axis; sorted
    left out or 1 (with 0 the order is unspecified: a test of its own compares sets)."""
    shape = draw(small)
    rank = len(shape)
    attrs: dict = {}
    _maybe(draw, "axis", st.integers(-rank, rank - 1), attrs)
    length = shape[attrs.get("axis", -1)]
    k = draw(st.integers(0, length))
    if draw(st.booleans()):
        attrs["sorted"] = 1
    opset = draw(st.sampled_from([1, 10, 11]))
    x = ("x", _specials(draw, shape))
    if opset == 1:  # (k >= 1 there)
        attrs.pop("sorted", None)
        return _case("TopK", [x], opset=opset, attrs={**attrs, "k": max(k, 1)}, outputs=2)
    if opset == 11:
        _maybe(draw, "largest", st.integers(0, 1), attrs)
    else:
        attrs.pop("sorted", None)
    return _case("TopK", [x], [("k", np.array([k], _I))], opset=opset, attrs=attrs, outputs=2)


@st.composite
def gather_elements(draw):
    """Constant indices of data's rank, no larger off the axis, any count along it,
    negative ones among them."""
    shape = draw(small)
    rank = len(shape)
    attrs: dict = {}
    _maybe(draw, "axis", st.integers(-rank, rank - 1), attrs)
    axis = attrs.get("axis", 0) % rank
    where = [draw(st.integers(1, d)) for d in shape]
    where[axis] = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    indices = rng.integers(-shape[axis], shape[axis], where).astype(_I)
    x = ("x", _array(draw, shape))
    return _case("GatherElements", [x], [("i", indices)], opset=13, attrs=attrs)


@st.composite
def cumsum(draw):
    """NaN and infinities among the values: they reach the sums after them only."""
    shape = draw(small)
    rank = len(shape)
    axis = draw(st.integers(-rank, rank - 1))
    attrs: dict = {}
    _maybe(draw, "exclusive", st.integers(0, 1), attrs)
    _maybe(draw, "reverse", st.integers(0, 1), attrs)
    x = _specials(draw, shape) if draw(st.booleans()) else _array(draw, shape)
    axis_value = np.array(axis if draw(st.booleans()) else [axis], _I)
    return _case("CumSum", [("x", x)], [("a", axis_value)], opset=14, attrs=attrs)


@st.composite
def trilu(draw):
    shape = draw(st.lists(st.integers(1, 5), min_size=2, max_size=4).map(tuple))
    attrs: dict = {}
    _maybe(draw, "upper", st.integers(0, 1), attrs)
    x = ("x", _specials(draw, shape) if draw(st.booleans()) else _array(draw, shape))
    if draw(st.booleans()):
        return _case("Trilu", [x], opset=14, attrs=attrs)
    k = np.array(draw(st.integers(-6, 6)), _I)
    return _case("Trilu", [x], [("k", k)], opset=14, attrs=attrs)


@st.composite
def one_hot(draw):
    """Indices given with each call (int64 ids), negative and out of range ones among them,
    on- and off-values of any sign."""
    shape = draw(small)
    depth = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    indices = rng.integers(-depth - 1, depth + 1, shape).astype(_I)
    attrs: dict = {}
    _maybe(draw, "axis", st.integers(-len(shape) - 1, len(shape)), attrs)
    inits = [("depth", np.array(depth, _I)), ("values", _array(draw, (2,), -3.0, 3.0))]
    return _case("OneHot", [("idx", indices)], inits, opset=11, attrs=attrs)


@st.composite
def mod(draw):
    """fmod=1 (C's fmod: the dividend's sign), broadcasting, divisors away from 0, NaN
    and infinities among the dividends."""
    shapes = draw(mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4))
    a = np.asarray(_specials(draw, shapes.input_shapes[0]) * np.float32(1.7), np.float32)
    b = np.asarray(_array(draw, shapes.input_shapes[1], 0.5, 3.0))
    b = np.asarray(np.where(_bools(draw, b.shape), b, -b), np.float32)
    return _case("Mod", [("a", a), ("b", b)], opset=13, attrs={"fmod": 1})


@st.composite
def mean_variance_norm(draw):
    """Axes of every kind (default [0, 2, 3] on rank 4), values of a spread near their
    mean (where onnxruntime's one-pass variance keeps its digits)."""
    shape = draw(st.lists(st.integers(2, 4), min_size=4, max_size=4).map(tuple))
    attrs: dict = {}
    if draw(st.booleans()):
        attrs["axes"] = draw(
            st.lists(st.integers(-4, 3), min_size=1, max_size=3, unique_by=lambda a: a % 4)
        )
    return _case("MeanVarianceNormalization", [("x", _array(draw, shape))], opset=13, attrs=attrs)


@st.composite
def cast(draw):
    """A float tensor cast to FLOAT (the one non-constant float cast walle takes), or a
    constant cast to INT64 (truncated at import) added to one."""
    shape = draw(small)
    x = _array(draw, shape, -3.0, 3.0)
    if draw(st.booleans()):
        return _case("Cast", [("x", x)], attrs={"to": 1})
    c = _array(draw, shape, -3.0, 3.0)
    node_cast = helper.make_node("Cast", ["c"], ["ci"], name="n", to=7)
    node_back = helper.make_node("Cast", ["ci"], ["cf"], name="b", to=1)
    node_add = helper.make_node("Add", ["x", "cf"], ["y0"], name="a")
    proto = model(
        [node_cast, node_back, node_add], [io("x", shape)], [io("y0", None)],
        [numpy_helper.from_array(c, "c")], 13,
    )  # fmt: skip
    return Case(proto, {"x": x})


@st.composite
def cast_like(draw):
    """A float tensor cast like a float initializer (nothing to do), or a constant cast like
    an int64 one (truncated at import) added to one."""
    shape = draw(small)
    x = _array(draw, shape, -3.0, 3.0)
    if draw(st.booleans()):
        return _case("CastLike", [("x", x)], [("like", np.zeros(2, np.float32))])
    c = _array(draw, shape, -3.0, 3.0)
    nodes = [
        helper.make_node("CastLike", ["c", "like"], ["ci"], name="n"),
        helper.make_node("Cast", ["ci"], ["cf"], name="b", to=1),
        helper.make_node("Add", ["x", "cf"], ["y0"], name="a"),
    ]
    inits = [numpy_helper.from_array(c, "c"), numpy_helper.from_array(np.zeros(1, _I), "like")]
    return Case(model(nodes, [io("x", shape)], [io("y0", None)], inits, 19), {"x": x})


def _as_float_plus(op_node, x: np.ndarray, opset: int = 18) -> Case:
    """``op_node`` (output "v", an int64 or float tensor of x's shape or broadcastable to it)
    cast to float and added to x: a float output onnxruntime and walle both give."""
    nodes = [
        op_node,
        helper.make_node("Cast", ["v"], ["vf"], name="b", to=1),
        helper.make_node("Add", ["x", "vf"], ["y0"], name="a"),
    ]
    return Case(model(nodes, [io("x", x.shape)], [io("y0", None)], (), opset), {"x": x})


@st.composite
def shape_of(draw):
    """Shape with start/end drawn (negative, past the rank, or left out), none empty."""
    shape = draw(small)
    rank = len(shape)
    attrs: dict = {}
    _maybe(draw, "start", st.integers(-6, 6), attrs)
    _maybe(draw, "end", st.integers(-6, 6), attrs)

    def clamp(bound: int) -> int:
        return min(max(bound + rank if bound < 0 else bound, 0), rank)

    start, end = clamp(attrs.get("start", 0)), clamp(attrs.get("end", rank))
    assume(start < end)
    node = helper.make_node("Shape", ["t"], ["v"], name="n", **attrs)
    case = _as_float_plus(node, _array(draw, (end - start,)))
    case.proto.graph.input.append(io("t", shape))  # read for its shape alone
    case.feeds["t"] = _array(draw, shape)
    return case


@st.composite
def size(draw):
    node = helper.make_node("Size", ["c"], ["v"], name="n")
    c = np.zeros(draw(small), np.float32)
    case = _as_float_plus(node, _array(draw, draw(small)))
    case.proto.graph.initializer.append(numpy_helper.from_array(c, "c"))
    return case


@st.composite
def range_(draw):
    """Range of int64 or float32 constant scalars, 1 to 6 values (deltas of either sign)."""
    count = draw(st.integers(1, 6))
    if draw(st.booleans()):
        start, delta = draw(st.integers(-5, 5)), draw(st.sampled_from([-3, -1, 1, 2]))
        limit = start + delta * count
        dtype = _I
    else:
        start = draw(st.floats(-3, 3, width=32))
        delta = draw(st.sampled_from([-1.5, -0.25, 0.5, 1.0]))
        limit = start + delta * (count - 0.5)
        dtype = np.float32
    node = helper.make_node("Range", ["s", "l", "d"], ["v"], name="n")
    case = _as_float_plus(node, _array(draw, (count,)))
    for name, value in (("s", start), ("l", limit), ("d", delta)):
        case.proto.graph.initializer.append(numpy_helper.from_array(np.array(value, dtype), name))
    return case


@st.composite
def resize(draw):
    """Resize of an NCHW input (or its last two axes, opset 18's ``axes``) by constant scales
    or sizes, each mode, transformation and rounding drawn, defaults often."""
    shape = (
        draw(st.integers(1, 2)),
        draw(st.integers(1, 3)),
        *draw(st.tuples(*[st.integers(1, 7)] * 2)),
    )
    attrs: dict = {}
    mode = draw(st.sampled_from(["nearest", "linear", "cubic"]))
    if mode != "nearest" or draw(st.booleans()):
        attrs["mode"] = mode
    _maybe(
        draw,
        "coordinate_transformation_mode",
        st.sampled_from(
            [
                "half_pixel",
                "half_pixel_symmetric",
                "pytorch_half_pixel",
                "align_corners",
                "asymmetric",
            ]
        ),
        attrs,
    )
    if mode == "nearest":
        _maybe(
            draw,
            "nearest_mode",
            st.sampled_from(["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]),
            attrs,
        )
    if mode == "cubic":
        _maybe(draw, "cubic_coeff_a", st.sampled_from([-0.75, -0.5]), attrs)
        _maybe(draw, "exclude_outside", st.integers(0, 1), attrs)
    two_axes = draw(st.booleans())
    if two_axes:
        attrs["axes"] = draw(st.sampled_from([[2, 3], [3, 2], [-2, -1]]))
    n = 2 if two_axes else 4
    x = _array(draw, shape)
    if draw(st.booleans()):
        scales = [
            draw(st.sampled_from([0.5, 0.6, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0])) for _ in range(n)
        ]
        if not two_axes:
            scales[0] = scales[1] = 1.0
        spatial = [shape[a] for a in attrs.get("axes", [0, 1, 2, 3])]
        assume(all(int(d * s) >= 1 for d, s in zip(spatial, scales, strict=True)))
        if attrs.get("coordinate_transformation_mode") == "align_corners":
            # refused where the length is fractional: the spec and onnxruntime differ there
            assume(all(d * s == int(d * s) for d, s in zip(spatial, scales, strict=True)))
        inits = [("roi", np.zeros(0, np.float32)), ("scales", np.array(scales, np.float32))]
    else:
        sizes = [draw(st.integers(1, 9)) for _ in range(n)]
        if not two_axes:
            sizes[0], sizes[1] = shape[0], shape[1]
        inits = [("roi", np.zeros(0, np.float32)), None, ("sizes", np.array(sizes, _I))]
    return _case("Resize", [("x", x)], inits, 19, attrs)


@st.composite
def legacy_resize(draw, op: str):
    """Upsample (opsets 7 to 9, scales an attribute before 9; at least 1) or Resize at
    opset 10 (scales above 0): nearest or linear, NCHW with N and C kept, each spatial scale
    drawn (a shrinking and a growing axis together among them)."""
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *[draw(st.integers(1, 7))] * 2)
    shape = (*shape[:2], draw(st.integers(1, 7)), shape[3])
    ups = [1.0, 1.5, 2.0, 2.5, 3.0]
    choices = ups if op == "Upsample" else [0.5, 0.6, 0.75, *ups]
    scales = [1.0, 1.0, *(draw(st.sampled_from(choices)) for _ in range(2))]
    assume(all(int(d * s) >= 1 for d, s in zip(shape, scales, strict=True)))
    attrs: dict = {}
    _maybe(draw, "mode", st.sampled_from(["nearest", "linear"]), attrs)
    opset = draw(st.integers(7, 9)) if op == "Upsample" else 10
    x = _array(draw, shape)
    if opset < 9:
        return _case(op, [("x", x)], (), opset, {**attrs, "scales": scales})
    return _case(op, [("x", x)], [("scales", np.array(scales, np.float32))], opset, attrs)


@st.composite
def depth_to_space(draw):
    b = draw(st.integers(1, 3))
    shape = (
        draw(st.integers(1, 2)),
        b * b * draw(st.integers(1, 3)),
        *draw(st.tuples(*[st.integers(1, 4)] * 2)),
    )
    attrs = {"blocksize": b}
    _maybe(draw, "mode", st.sampled_from(["DCR", "CRD"]), attrs)
    return _case("DepthToSpace", [("x", _array(draw, shape))], (), 13, attrs)


@st.composite
def space_to_depth(draw):
    b = draw(st.integers(1, 3))
    shape = (
        draw(st.integers(1, 2)),
        draw(st.integers(1, 3)),
        *(b * draw(st.integers(1, 3)) for _ in range(2)),
    )
    return _case("SpaceToDepth", [("x", _array(draw, shape))], (), 13, {"blocksize": b})


STRATEGIES = {
    "Cast": cast(),
    "CastLike": cast_like(),
    "Shape": shape_of(),
    "Size": size(),
    "Range": range_(),
    "Resize": st.one_of(resize(), legacy_resize("Resize")),
    "Upsample": legacy_resize("Upsample"),
    "DepthToSpace": depth_to_space(),
    "SpaceToDepth": space_to_depth(),
    **{op: unary(op) for op in (
        "Relu", "Sigmoid", "Tanh", "Sqrt", "Erf", "Neg", "Abs", "Exp", "Log", "Reciprocal",
        "Identity", "Softplus", "Softsign", "Sign", "Floor", "Ceil", "Sin", "Cos", "Tan",
        "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh",
    )},
    "Round": rounding(),
    "ThresholdedRelu": thresholded_relu(),
    "Shrink": shrink(),
    "Hardmax": hardmax(),
    "IsNaN": special_test("IsNaN"),
    "IsInf": special_test("IsInf"),
    **{op: binary(op) for op in (
        "Add", "Sub", "Mul", "Div", "Pow", "Sum", "Max", "Min", "Mean",
    )},
    "Gelu": gelu(),
    "LeakyRelu": leaky_relu(),
    "HardSigmoid": hard_sigmoid(),
    "HardSwish": hard_swish(),
    "Clip": clip(),
    "PRelu": prelu(),
    "Elu": elu(),
    "Selu": selu(),
    "Celu": celu(),
    "Mish": mish(),
    "Softmax": softmax("Softmax"),
    "LogSoftmax": softmax("LogSoftmax"),
    "Gemm": gemm(),
    "MatMul": matmul(),
    "Conv": conv(),
    "ConvTranspose": conv_transpose(),
    # drawn in their own test file, which compares them with numpy's broadcast_to and tile
    "Expand": expand_models().map(lambda c: Case(c[0], c[1])),
    "Tile": tile_models().map(lambda c: Case(c[0], c[1])),
    # drawn in their own test file too, which also checks the batch-first layout
    **{
        op: recurrent_models(op).map(lambda c: Case(c.proto, c.feeds))
        for op in ("LSTM", "GRU", "RNN")
    },
    "MaxPool": pool("MaxPool"),
    "AveragePool": pool("AveragePool"),
    "GlobalAveragePool": global_pool("GlobalAveragePool"),
    "GlobalMaxPool": global_pool("GlobalMaxPool"),
    "BatchNormalization": batchnorm(),
    "LRN": lrn(),
    "LayerNormalization": layernorm(),
    "RMSNormalization": rms_norm(),
    "LpNormalization": lp_norm(),
    "GroupNormalization": group_norm(),
    "InstanceNormalization": instance_norm(),
    "Dropout": dropout(),
    "Reshape": reshape(),
    "Flatten": flatten(),
    "Transpose": transpose(),
    "Concat": concat(),
    "Slice": slice_(),
    "Pad": pad(),
    "Split": split(),
    "Gather": gather(),
    "Unsqueeze": unsqueeze(),
    "Squeeze": squeeze(),
    "Constant": constant(),
    "ConstantOfShape": constant_of_shape(),
    **{op: reduce(op) for op in (
        "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2",
        "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp",
    )},
    **{op: comparison(op) for op in (
        "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual",
    )},
    **{op: logic(op) for op in ("Not", "And", "Or", "Xor")},
    "Where": where(),
    "TopK": topk(),
    "Mod": mod(),
    "MeanVarianceNormalization": mean_variance_norm(),
    "CumSum": cumsum(),
    "Trilu": trilu(),
    "OneHot": one_hot(),
    "GatherElements": gather_elements(),
    "ArgMax": arg_reduce("ArgMax"),
    "ArgMin": arg_reduce("ArgMin"),
    **QUANTIZED,
    "Einsum": einsum_models(),
    "If": if_models(),
    "ScatterND": scatter_nd_models(),
}  # fmt: skip


def test_ops_every_importer_op_has_a_property_test() -> None:
    assert sorted(STRATEGIES) == sorted(SUPPORTED_OPS)


@pytest.mark.parametrize("op", sorted(STRATEGIES))
@SETTINGS
@given(data=st.data())
def test_ops_importer_op_matches_onnxruntime(op: str, data) -> None:
    case = data.draw(STRATEGIES[op], label="case")
    backend = data.draw(st.sampled_from(BACKENDS), label="backend")
    # Each output declares the shape onnxruntime computes (not ONNX shape inference's: it
    # keeps a ceil_mode pool's last window that onnxruntime and the spec drop), so that
    # walle's import checks it against its own.
    for out, want in zip(case.proto.graph.output, run_ort(case.proto, case.feeds), strict=True):
        out.CopyFrom(io(out.name, list(want.shape), out.type.tensor_type.elem_type))
    assert_parity(case.proto, case.feeds, backend)

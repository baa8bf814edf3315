"""Quantized models: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, MatMulInteger,
ConvInteger, QLinearMatMul and QLinearConv against onnxruntime, value for value, and the
models onnxruntime's own quantization tools write (``quantize_dynamic``, ``quantize_static``
in the QDQ format) from a float CNN with a classifier head.

walle holds quantized values as float32 (exact for 8- and 16-bit integers); its integer
matmuls and convs are float ones over integers, exact while their sums stay below 2**24 (every
case here). So the quantized outputs must equal onnxruntime's exactly, not within a
tolerance: a rounding step taken differently is a whole quantum.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from tests.unit.ops._onnx_cases import io, model, run_ort, run_walle
from tests.unit.ops.test_ops_onnx_expand_tile import SETTINGS
from walle.errors import ModelError
from walle.ops import Model, available_backends
from walle.ops.onnx_import import import_onnx

BACKENDS = [b.name for b in available_backends()]
_F = np.float32
_RANGES = {
    TensorProto.UINT8: (np.uint8, 0, 255),
    TensorProto.INT8: (np.int8, -128, 127),
    TensorProto.UINT16: (np.uint16, 0, 65535),
    TensorProto.INT16: (np.int16, -32768, 32767),
}


class QuantCase:
    """A one-node quantized model and its feeds (hypothesis prints the repr)."""

    def __init__(self, proto: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> None:
        self.proto, self.feeds = proto, feeds

    def __repr__(self) -> str:
        shapes = {k: (v.dtype, v.shape) for k, v in self.feeds.items()}
        return f"inputs {shapes}\n{onnx.printer.to_text(self.proto.graph)}"


def _tensor(name: str, kind: int, values) -> onnx.TensorProto:
    dtype = _RANGES[kind][0] if kind in _RANGES else helper.tensor_dtype_to_np_dtype(kind)
    return numpy_helper.from_array(np.asarray(values).astype(dtype), name)


def assert_equal_to_onnxruntime(case: QuantCase, backend: str) -> None:
    """Every output equal to onnxruntime's (integer outputs compared as integers)."""
    with np.errstate(all="ignore"):
        want = run_ort(case.proto, case.feeds)
        got = run_walle(case.proto, case.feeds, backend)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_array_equal(np.asarray(g, np.float64), np.asarray(w, np.float64))


def _values(draw, shape, specials: bool = True) -> np.ndarray:
    """Floats around a few quanta, halves among them (the ties round_half_even decides),
    NaN and infinities where ``specials``."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.normal(0, 40, shape).astype(_F)
    halves = rng.random(shape) < 0.2
    x[halves] = np.floor(x[halves]) + _F(0.5)
    if specials and x.size > 3:
        flat = x.reshape(-1)
        flat[rng.choice(flat.size, 3, replace=False)] = [np.nan, np.inf, -np.inf]
    return x


@st.composite
def quantize_linear_models(draw) -> QuantCase:
    """Per-tensor or per-axis, each 8- and 16-bit type, the zero point often left out."""
    kind = draw(st.sampled_from(sorted(_RANGES)))
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple))
    x = _values(draw, shape)
    attrs: dict = {}
    axis = 1 if len(shape) > 1 else 0
    per_axis = draw(st.booleans())
    if per_axis:
        axis = draw(st.integers(-len(shape), len(shape) - 1))
        if axis != 1 or draw(st.booleans()):
            attrs["axis"] = axis
    count = shape[axis] if per_axis else 1
    scale = np.asarray(
        np.random.default_rng(draw(st.integers(0, 99))).uniform(0.05, 3.0, count), _F
    )
    _, low, high = _RANGES[kind]
    zero = np.random.default_rng(draw(st.integers(0, 99))).integers(low // 2, high // 2 + 1, count)
    scale_value, zero_value = (scale, zero) if per_axis else (scale[0], zero[0])
    inits = [numpy_helper.from_array(np.asarray(scale_value, _F), "s")]
    has_zero = kind != TensorProto.UINT8 or draw(st.booleans())
    if has_zero:
        inits.append(_tensor("z", kind, zero_value))
    opset = 21 if kind in (TensorProto.UINT16, TensorProto.INT16) else 19
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"][: 2 + has_zero], ["y"], **attrs)
    proto = model([node], [io("x", list(shape))], [io("y", None, kind)], inits, opset)
    return QuantCase(proto, {"x": x})


@st.composite
def dequantize_linear_models(draw) -> QuantCase:
    """A quantized input (8- or 16-bit) or an int32 one with zero point 0, per tensor or
    per axis."""
    kind = draw(st.sampled_from([*sorted(_RANGES), TensorProto.INT32]))
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if kind == TensorProto.INT32:
        x, zero_range = rng.integers(-(2**20), 2**20, shape).astype(np.int32), (0, 0)
    else:
        dtype, low, high = _RANGES[kind]
        x, zero_range = rng.integers(low, high + 1, shape).astype(dtype), (low // 2, high // 2)
    per_axis = draw(st.booleans())
    axis = draw(st.integers(-len(shape), len(shape) - 1)) if per_axis else 1
    attrs = {"axis": axis} if per_axis else {}
    count = shape[axis] if per_axis else 1
    scale = rng.uniform(0.001, 2.0, count).astype(_F)
    zero = rng.integers(zero_range[0], zero_range[1] + 1, count)
    scale_value, zero_value = (scale, zero) if per_axis else (scale[0], zero[0])
    inits = [numpy_helper.from_array(np.asarray(scale_value, _F), "s")]
    has_zero = draw(st.booleans())
    if has_zero:
        inits.append(_tensor("z", kind, zero_value))
    opset = 21 if kind in (TensorProto.UINT16, TensorProto.INT16) else 19
    node = helper.make_node("DequantizeLinear", ["x", "s", "z"][: 2 + has_zero], ["y"], **attrs)
    proto = model([node], [io("x", list(shape), kind)], [io("y", None)], [*inits], opset)
    return QuantCase(proto, {"x": x})


@st.composite
def dynamic_quantize_models(draw) -> QuantCase:
    """Ranges all positive, all negative, across 0, one value, all zero; infinities."""
    shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    shift = draw(st.sampled_from([0.0, 5.0, -5.0]))
    x = (rng.normal(shift, draw(st.sampled_from([0.01, 1.0, 300.0])), shape)).astype(_F)
    if draw(st.booleans()):
        x[...] = 0.0 if draw(st.booleans()) else x.reshape(-1)[0]
    if draw(st.integers(0, 4)) == 0:
        x.reshape(-1)[0] = draw(st.sampled_from([np.inf, -np.inf]))
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])
    outs = [io("y", None, TensorProto.UINT8), io("s", None), io("z", None, TensorProto.UINT8)]
    return QuantCase(model([node], [io("x", list(shape))], outs, opset=11), {"x": x})


def _integer_inputs(draw, a_shape, b_shape, b_const: bool):
    """uint8 A (an input), int8 or uint8 B (a weight, or an input), with zero points."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    a = rng.integers(0, 256, a_shape).astype(np.uint8)
    b_kind = draw(st.sampled_from([TensorProto.INT8, TensorProto.UINT8]))
    dtype, low, high = _RANGES[b_kind]
    b = rng.integers(low, high + 1, b_shape).astype(dtype)
    za = _tensor("az", TensorProto.UINT8, rng.integers(0, 256)) if draw(st.booleans()) else None
    zb = _tensor("bz", b_kind, rng.integers(low, high + 1)) if draw(st.booleans()) else None
    feeds = {"a": a} if b_const else {"a": a, "b": b}
    inputs = [io("a", list(a_shape), TensorProto.UINT8)]
    inits = [numpy_helper.from_array(b, "b")] if b_const else []
    if not b_const:
        inputs.append(io("b", list(b_shape), b_kind))
    names = ["a", "b", "az" if za else "", "bz" if zb else ""]
    while names[-1] == "":
        names.pop()
    return feeds, inputs, inits + [t for t in (za, zb) if t is not None], names


@st.composite
def matmul_integer_models(draw) -> QuantCase:
    """[..., M, K] @ [K, N] (B a weight or an input), scalar zero points."""
    m, k, n = (draw(st.integers(1, 6)) for _ in range(3))
    lead = draw(st.lists(st.integers(1, 3), max_size=2).map(tuple))
    feeds, inputs, inits, names = _integer_inputs(draw, (*lead, m, k), (k, n), draw(st.booleans()))
    node = helper.make_node("MatMulInteger", names, ["y"])
    proto = model([node], inputs, [io("y", None, TensorProto.INT32)], inits, opset=10)
    return QuantCase(proto, feeds)


def _conv_attrs(draw, kernel: tuple[int, int]) -> dict:
    attrs: dict = {}
    if draw(st.booleans()):
        attrs["pads"] = [draw(st.integers(0, k - 1)) for k in (*kernel, *kernel)]
    if draw(st.booleans()):
        attrs["strides"] = [draw(st.integers(1, 2)), draw(st.integers(1, 2))]
    if draw(st.booleans()):
        attrs["dilations"] = [draw(st.integers(1, 2)), 1]
    return attrs


@st.composite
def conv_integer_models(draw) -> QuantCase:
    """A 2-D ConvInteger, groups, pads (the input's zero point fills them), strides."""
    group = draw(st.sampled_from([1, 2]))
    c, m = group * draw(st.integers(1, 3)), group * draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    size = (draw(st.integers(5, 8)), draw(st.integers(5, 8)))
    feeds, inputs, inits, names = _integer_inputs(
        draw, (1, c, *size), (m, c // group, *kernel), True
    )
    attrs = {**_conv_attrs(draw, kernel), **({"group": group} if group > 1 else {})}
    node = helper.make_node("ConvInteger", names, ["y"], **attrs)
    proto = model([node], inputs, [io("y", None, TensorProto.INT32)], inits, opset=10)
    return QuantCase(proto, feeds)


def _requant_inits(draw, b_kind: int, channels: int, y_kind: int) -> list:
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    _, low, high = _RANGES[b_kind]
    _, y_low, y_high = _RANGES[y_kind]
    per_channel = draw(st.booleans())
    count = channels if per_channel else 1
    b_scale = rng.uniform(0.001, 0.02, count).astype(_F)
    b_zero = rng.integers(low // 4, high // 4 + 1, count) * (b_kind == TensorProto.UINT8)
    return [
        numpy_helper.from_array(_F(rng.uniform(0.005, 0.05)), "as"),
        _tensor("az", TensorProto.UINT8 if y_kind == TensorProto.UINT8 else TensorProto.INT8,
                rng.integers(y_low // 2, y_high // 2 + 1)),
        numpy_helper.from_array(b_scale if per_channel else b_scale[0], "bs"),
        _tensor("bz", b_kind, b_zero if per_channel else b_zero[0]),
        numpy_helper.from_array(_F(rng.uniform(0.02, 0.2)), "ys"),
        _tensor("yz", y_kind, rng.integers(y_low // 2, y_high // 2 + 1)),
    ]  # fmt: skip


@st.composite
def qlinear_matmul_models(draw) -> QuantCase:
    """uint8 x uint8 -> uint8 or int8 x int8 -> int8 (what onnxruntime runs), scales per
    tensor or per column."""
    kind = draw(st.sampled_from([TensorProto.UINT8, TensorProto.INT8]))
    dtype, low, high = _RANGES[kind]
    m, k, n = draw(st.integers(1, 5)), draw(st.integers(1, 40)), draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    a = rng.integers(low, high + 1, (m, k)).astype(dtype)
    b = rng.integers(low, high + 1, (k, n)).astype(dtype)
    inits = [numpy_helper.from_array(b, "b"), *_requant_inits(draw, kind, n, kind)]
    names = ["a", "as", "az", "b", "bs", "bz", "ys", "yz"]
    node = helper.make_node("QLinearMatMul", names, ["y"])
    proto = model([node], [io("a", [m, k], kind)], [io("y", None, kind)], inits, opset=10)
    return QuantCase(proto, {"a": a})


@st.composite
def qlinear_conv_models(draw) -> QuantCase:
    """uint8 input and output, int8 weights per tensor or per output channel, an int32 bias
    often given, groups, pads, strides."""
    group = draw(st.sampled_from([1, 2]))
    c, m = group * draw(st.integers(1, 4)), group * draw(st.integers(1, 4))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    size = (draw(st.integers(5, 8)), draw(st.integers(5, 8)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.integers(0, 256, (1, c, *size)).astype(np.uint8)
    w = rng.integers(-127, 128, (m, c // group, *kernel)).astype(np.int8)
    inits = [
        numpy_helper.from_array(w, "b"),
        *_requant_inits(draw, TensorProto.INT8, m, TensorProto.UINT8),
    ]
    names = ["a", "as", "az", "b", "bs", "bz", "ys", "yz"]
    if draw(st.booleans()):
        inits.append(numpy_helper.from_array(rng.integers(-3000, 3000, m).astype(np.int32), "bias"))
        names.append("bias")
    attrs = {**_conv_attrs(draw, kernel), **({"group": group} if group > 1 else {})}
    node = helper.make_node("QLinearConv", names, ["y"], **attrs)
    inputs = [io("a", list(x.shape), TensorProto.UINT8)]
    proto = model([node], inputs, [io("y", None, TensorProto.UINT8)], inits, opset=10)
    return QuantCase(proto, {"a": x})


STRATEGIES = {
    "QuantizeLinear": quantize_linear_models(),
    "DequantizeLinear": dequantize_linear_models(),
    "DynamicQuantizeLinear": dynamic_quantize_models(),
    "MatMulInteger": matmul_integer_models(),
    "ConvInteger": conv_integer_models(),
    "QLinearMatMul": qlinear_matmul_models(),
    "QLinearConv": qlinear_conv_models(),
}


@pytest.mark.parametrize("op", sorted(STRATEGIES))
@SETTINGS
@given(data=st.data())
def test_ops_quantized_op_equals_onnxruntime(op: str, data) -> None:
    case = data.draw(STRATEGIES[op], label="case")
    backend = data.draw(st.sampled_from(BACKENDS), label="backend")
    assert_equal_to_onnxruntime(case, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", [TensorProto.UINT8, TensorProto.INT8])
def test_ops_quantize_linear_rounds_halves_to_even_and_saturates(backend: str, kind: int) -> None:
    """Ties to even, saturation at both ends, NaN to the lowest value, infinities to the
    ends, per channel of axis 1 (the default)."""
    x = np.array(
        [[0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 1e10, -1e10, np.nan, np.inf, -np.inf, -0.0]] * 2, _F
    )
    scale = np.array([1.0, 0.5], _F).reshape(2)
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=0)
    inits = [numpy_helper.from_array(scale, "s"), _tensor("z", kind, [3, -1 if kind else 0])]
    proto = model([node], [io("x", [2, 12])], [io("y", None, kind)], inits, opset=19)
    assert_equal_to_onnxruntime(QuantCase(proto, {"x": x}), backend)


def test_ops_dynamic_quantize_leaves_nan_out_of_the_range() -> None:
    """NaN does not widen the range (onnxruntime's min and max skip it), and quantizes to
    0; a -inf gives an infinite scale and zero point 255, as onnxruntime's clamp does."""
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])
    outs = [io("y", None, TensorProto.UINT8), io("s", None), io("z", None, TensorProto.UINT8)]
    proto = model([node], [io("x", [4])], outs, opset=11)
    x = np.array([np.nan, 3.0, -1.0, 0.5], _F)
    y, scale, zero = Model(_saved(proto)).run(x)
    assert scale == _F(4.0) / _F(255.0) and zero == 64 and y[0] == 0 and y.dtype == np.uint8
    assert_equal_to_onnxruntime(QuantCase(proto, {"x": np.array([-np.inf, 1, 2, 3], _F)}), "numpy")


def test_ops_matmul_integer_zero_points_per_row_and_per_column() -> None:
    """The spec's per-row zero points of A (onnxruntime takes only one), against numpy's
    integer matmul."""
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (2, 3, 5)).astype(np.uint8)
    b = rng.integers(-128, 128, (5, 4)).astype(np.int8)
    za, zb = np.array([1, 200, 3], np.uint8), np.array([-1, 2, 0, 127], np.int8)
    node = helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])
    inits = [numpy_helper.from_array(v, n) for n, v in (("b", b), ("az", za), ("bz", zb))]
    proto = model(
        [node],
        [io("a", [2, 3, 5], TensorProto.UINT8)],
        [io("y", None, TensorProto.INT32)],
        inits,
        opset=10,
    )
    want = (a.astype(np.int64) - za[:, None]) @ (b.astype(np.int64) - zb)
    for backend in BACKENDS:
        np.testing.assert_array_equal(run_walle(proto, {"a": a}, backend)[0], want)


def test_ops_conv_integer_weight_zero_point_per_output_channel() -> None:
    """One zero point per output channel (the spec's; onnxruntime refuses it), against
    the convolution of the offset integers in float64."""
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (1, 2, 5, 5)).astype(np.uint8)
    w = rng.integers(-128, 128, (3, 2, 3, 3)).astype(np.int8)
    zw = np.array([5, -7, 0], np.int8)
    node = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], pads=[1, 1, 1, 1])
    inits = [numpy_helper.from_array(w, "w"), _tensor("xz", TensorProto.UINT8, 100),
             numpy_helper.from_array(zw, "wz")]  # fmt: skip
    proto = model(
        [node],
        [io("x", [1, 2, 5, 5], TensorProto.UINT8)],
        [io("y", None, TensorProto.INT32)],
        inits,
        opset=10,
    )
    xs = np.pad(x.astype(np.int64) - 100, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ws = w.astype(np.int64) - zw[:, None, None, None]
    want = np.zeros((1, 3, 5, 5), np.int64)
    for i in range(5):
        for j in range(5):
            want[0, :, i, j] = np.tensordot(ws, xs[0, :, i : i + 3, j : j + 3], 3)
    for backend in BACKENDS:
        np.testing.assert_array_equal(run_walle(proto, {"x": x}, backend)[0], want)


def test_ops_quantized_outputs_come_back_in_their_declared_types(tmp_path) -> None:
    rng = np.random.default_rng(5)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("MatMulInteger", ["q", "w"], ["acc"]),
        helper.make_node("Cast", ["acc"], ["wide"], to=TensorProto.INT64),
    ]
    inits = [numpy_helper.from_array(_F(0.1), "s"), _tensor("z", TensorProto.INT8, 0),
             numpy_helper.from_array(rng.integers(-9, 9, (4, 3)).astype(np.int8), "w")]  # fmt: skip
    outs = [io("q", None, TensorProto.INT8), io("wide", None, TensorProto.INT64)]
    proto = model(nodes, [io("x", [2, 4])], outs, inits, opset=13)
    x = rng.normal(0, 5, (2, 4)).astype(_F)
    got = Model(_saved(proto, tmp_path)).run(x)
    want = run_ort(proto, {"x": x})
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (helper.make_node("QuantizeLinear", ["x", "s"], ["y"], block_size=2), "block_size"),
        (helper.make_node("DequantizeLinear", ["x", "s"], ["y"], block_size=2), "block_size"),
        (helper.make_node("QuantizeLinear", ["x", "s2"], ["y"]), r"shape \(2, 2\)"),
        (helper.make_node("QuantizeLinear", ["x", "s3"], ["y"], axis=1), "3 scales"),
    ],
)
def test_ops_quantize_refusals_name_node_and_what(node, message: str) -> None:
    inits = [
        numpy_helper.from_array(_F(0.5), "s"),
        numpy_helper.from_array(np.ones((2, 2), _F), "s2"),
        numpy_helper.from_array(np.ones(3, _F), "s3"),
    ]
    node.name = "q"
    proto = model([node], [io("x", [2, 4])], [io("y", None)], inits, opset=21)
    with pytest.raises(ModelError, match=rf"node 'q' \({node.op_type}\).*{message}"):
        import_onnx(proto)


def test_ops_float8_quantization_is_refused_by_type() -> None:
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], name="q")
    zero = helper.make_tensor("z", TensorProto.FLOAT8E4M3FN, [], [0.0])
    inits = [numpy_helper.from_array(_F(0.5), "s"), zero]
    proto = model([node], [io("x", [2])], [io("y", None, TensorProto.FLOAT8E4M3FN)], inits, 19)
    with pytest.raises(ModelError, match="FLOAT8E4M3FN"):
        import_onnx(proto)


# -- models onnxruntime's quantization tools write -----------------------------------------


def _float_cnn() -> onnx.ModelProto:
    """A small float CNN: 3x3 conv + BN-free ReLU, a depthwise 3x3, a 1x1 with a residual
    Add, global pooling, a Gemm head; weights seeded."""
    rng = np.random.default_rng(7)

    def w(name: str, *shape: int, scale: float = 0.3) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, scale, shape).astype(_F), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], group=8),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"]),
        helper.make_node("Add", ["c3", "r1"], ["s"]),
        helper.make_node("GlobalAveragePool", ["s"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "w4", "b4"], ["y"], transB=1),
    ]
    inits = [w("w1", 8, 3, 3, 3), w("b1", 8, scale=0.1), w("w2", 8, 1, 3, 3),
             w("b2", 8, scale=0.1), w("w3", 8, 8, 1, 1), w("b3", 8, scale=0.1), w("w4", 10, 8),
             w("b4", 10, scale=0.1)]  # fmt: skip
    return model(nodes, [io("x", [2, 3, 12, 12])], [io("y", [2, 10])], inits, opset=13)


def _saved(proto: onnx.ModelProto, folder=None) -> str:
    import tempfile
    from pathlib import Path

    path = Path(folder or tempfile.mkdtemp()) / "m.onnx"
    onnx.save(proto, str(path))
    return str(path)


def _ort(path: str, x: np.ndarray, optimized: bool) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimized:  # the graph as written: each QDQ node run as the spec says
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


class _Calibration:
    """Calibration batches for quantize_static (onnxruntime's CalibrationDataReader API)."""

    def __init__(self) -> None:
        rng = np.random.default_rng(8)
        self.batches = iter([{"x": rng.uniform(0, 1, (2, 3, 12, 12)).astype(_F)} for _ in range(4)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


@pytest.mark.parametrize("how", ["dynamic_int8", "dynamic_uint8", "qdq", "qdq_per_channel"])
def test_ops_models_of_onnxruntimes_quantization_tools_run_as_onnxruntime_runs_them(
    tmp_path, how: str
) -> None:
    """quantize_dynamic (DynamicQuantizeLinear, ConvInteger, MatMulInteger) and
    quantize_static in the QDQ format: walle's integer sums are those of onnxruntime running
    the graph as written, so the dynamic files' outputs are within float32 rounding of it;
    a QDQ file's convs and matmuls are integer products scaled after the sums (the product
    onnxruntime's optimiser makes of them, see integer.py), so its outputs are within one
    quantum of both of onnxruntime's sessions, and the same bits on every backend."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    source = _saved(_float_cnn(), tmp_path)
    target = str(tmp_path / f"{how}.onnx")
    if how.startswith("dynamic"):
        weight = QuantType.QInt8 if how == "dynamic_int8" else QuantType.QUInt8
        quantize_dynamic(source, target, weight_type=weight)
    else:
        quantize_static(source, target, _Calibration(), quant_format=QuantFormat.QDQ,
                        per_channel=how == "qdq_per_channel")  # fmt: skip
    ops = {n.op_type for n in onnx.load(target).graph.node}
    expected = (
        {"DynamicQuantizeLinear", "ConvInteger"}
        if how.startswith("dynamic")
        else {"QuantizeLinear", "DequantizeLinear"}
    )
    assert expected <= ops
    x = np.random.default_rng(9).uniform(0, 1, (2, 3, 12, 12)).astype(_F)
    as_written, optimized = _ort(target, x, False), _ort(target, x, True)
    scale = float(np.abs(as_written).max())
    step = 1.0 / 255 * (float(as_written.max() - as_written.min()) + 1e-6)
    first = Model(target, backend=BACKENDS[0]).run(x)[0]
    for backend in BACKENDS:
        got = Model(target, backend=backend).run(x)[0]
        if how.startswith("qdq"):  # the last op is a DequantizeLinear: values on a grid
            np.testing.assert_array_equal(got, first)
            assert float(np.abs(got - as_written).max()) <= step * 1.01
        else:
            np.testing.assert_allclose(got, as_written, rtol=1e-5, atol=1e-6 * scale)
        assert float(np.abs(got - optimized).max()) <= step * 1.01


def test_ops_integer_conv_sums_stay_exact_on_large_planes() -> None:
    """A 3x3 QLinearConv on a 28 x 28 plane, 64 channels: where Winograd's transforms would
    run it (F(6x6, 3x3) put 4 of 50,176 outputs a step off), walle takes an exact kernel,
    since every weight is a whole number."""
    rng = np.random.default_rng(10)
    x = rng.integers(0, 256, (1, 64, 28, 28)).astype(np.uint8)
    w = rng.integers(-127, 128, (64, 64, 3, 3)).astype(np.int8)
    names = ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"]
    node = helper.make_node("QLinearConv", names, ["y"], pads=[1, 1, 1, 1])
    inits = [
        numpy_helper.from_array(_F(0.0213), "xs"), _tensor("xz", TensorProto.UINT8, 121),
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(rng.uniform(0.001, 0.01, 64).astype(_F), "ws"),
        _tensor("wz", TensorProto.INT8, np.zeros(64)), numpy_helper.from_array(_F(0.2), "ys"),
        _tensor("yz", TensorProto.UINT8, 128),
    ]  # fmt: skip
    inputs = [io("x", [1, 64, 28, 28], TensorProto.UINT8)]
    proto = model([node], inputs, [io("y", None, TensorProto.UINT8)], inits, opset=10)
    assert_equal_to_onnxruntime(QuantCase(proto, {"x": x}), "cython")


def _factors(product: int) -> tuple[int, int] | None:
    """a and b in (0, 128) and (-128, 128) with a * b == product, if any."""
    return next(
        ((a, product // a) for a in range(1, 128) if product % a == 0 and abs(product) // a < 128),
        None,
    )


def test_ops_requantization_scales_as_onnxruntime_multiplies_them() -> None:
    """The sums times (a_scale * b_scale) / y_scale, in that order: sums chosen where
    a_scale * (b_scale / y_scale), one bit apart, rounds to another integer."""
    rng = np.random.default_rng(0)
    sums = np.arange(-16000, 16000, dtype=_F)
    while True:
        a_s, b_s, y_s = (_F(rng.uniform(*r)) for r in ((0.001, 0.05), (0.001, 0.02), (0.02, 0.2)))
        ours, other = np.rint(sums * ((a_s * b_s) / y_s)), np.rint(sums * (a_s * (b_s / y_s)))
        # each differing sum as a product of an A and a B value (both offset by 128)
        pairs = [_factors(int(s)) for s in sums[ours != other]]
        pairs = [p for p in pairs if p is not None and abs(p[0] * p[1] * a_s * b_s / y_s) < 127]
        if pairs:
            break
    a = np.array([[p[0] + 128] for p in pairs], np.uint8)
    b = np.array([[p[1] + 128 for p in pairs]], np.uint8)
    names = ["a", "as", "az", "b", "bs", "bz", "ys", "yz"]
    node = helper.make_node("QLinearMatMul", names, ["y"])
    zero = [_tensor(n, TensorProto.UINT8, 128) for n in ("az", "bz", "yz")]
    scales = [numpy_helper.from_array(np.asarray(v, _F), n) for n, v in
              (("as", a_s), ("bs", b_s), ("ys", y_s))]  # fmt: skip
    inits = [numpy_helper.from_array(b, "b"), *zero, *scales]
    inputs = [io("a", [len(pairs), 1], TensorProto.UINT8)]
    proto = model([node], inputs, [io("y", None, TensorProto.UINT8)], inits, opset=10)
    for backend in BACKENDS:
        assert_equal_to_onnxruntime(QuantCase(proto, {"a": a}), backend)

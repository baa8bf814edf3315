"""LSTM, GRU and RNN (unrolled over their steps) against onnxruntime, over their attributes.

The strategies draw every input the ops take (biases, initial states, peepholes, constant
sequence lengths shorter than the sequence), every direction, clip, input_forget,
linear_before_reset and the activations with their alphas and betas, each often left at its
default; W and R are initializers or graph inputs. onnxruntime does not run ``layout`` 1
(batch first), so that case is checked against the layout-0 model's outputs transposed.
The draws are bounded (states within about 10 over the at most 4 steps) so that two correct
float32 implementations agree within the tolerance.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import helper, numpy_helper
from structlog.testing import capture_logs

from tests.unit.ops._onnx_cases import assert_parity, io, model, run_ort, run_walle
from tests.unit.ops.test_ops_onnx_expand_tile import BACKENDS, SETTINGS
from walle.errors import ModelError
from walle.ops.onnx_import import import_onnx

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
PER_DIRECTION = {"LSTM": 3, "GRU": 2, "RNN": 1}
# activation -> how many of (alpha, beta) it takes
ACTIVATIONS = {
    "Relu": 0, "Tanh": 0, "Sigmoid": 0, "Affine": 2, "LeakyRelu": 1, "ScaledTanh": 2,
    "HardSigmoid": 2, "Elu": 1, "Softsign": 0, "Softplus": 0,
}  # fmt: skip
# Activations whose output grows with their input. With one of them a state can grow
# geometrically step by step (an LSTM multiplies gates, a GRU's update gate can pass 1) and the
# rounding differences grow with it, up to an overflow in one implementation and not the
# other; so where one is drawn, W, R, B and P are scaled to keep the pre-activations small.
UNBOUNDED = {"Relu", "Affine", "LeakyRelu", "Elu", "Softplus"}
SCALE_UNBOUNDED = 0.1


class RecurrentCase:
    """A one-node recurrent model, its feeds and its layout (hypothesis prints the repr)."""

    def __init__(self, proto: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> None:
        self.proto, self.feeds = proto, feeds

    def __repr__(self) -> str:
        shapes = {k: v.shape for k, v in self.feeds.items()}
        return f"inputs {shapes}\n{onnx.printer.to_text(self.proto.graph)}"


def _uniform(draw, shape, scale: float = 1.0) -> np.ndarray:
    seed = draw(st.integers(0, 2**16))
    return (np.random.default_rng(seed).uniform(-2, 2, shape) * scale).astype(np.float32)


@st.composite
def recurrent_models(draw, op: str, layout: int | None = 0):
    """A model of one ``op`` node named "n" (``layout`` None: drawn; 0 is the default)."""
    gates, per = GATES[op], PER_DIRECTION[op]
    steps, batch, width, hidden = (draw(st.integers(1, n)) for n in (4, 3, 4, 4))
    direction = draw(st.sampled_from([None, "forward", "reverse", "bidirectional"]))
    dirs = 2 if direction == "bidirectional" else 1
    attrs: dict = {"hidden_size": hidden}
    if direction is not None:
        attrs["direction"] = direction
    if layout is None:
        layout = draw(st.sampled_from([0, 1]))
    if layout:
        attrs["layout"] = 1
    if draw(st.booleans()):
        names = draw(st.lists(st.sampled_from(sorted(ACTIVATIONS)), min_size=per * dirs,
                              max_size=per * dirs))  # fmt: skip
        attrs["activations"] = names
        params = sum(ACTIVATIONS[n] for n in names)
        for key in ("activation_alpha", "activation_beta"):
            if params and draw(st.booleans()):
                count = draw(st.integers(1, params))
                # at most 1: Affine's and ScaledTanh's slope, so a step's gain stays about 1
                attrs[key] = draw(st.lists(st.floats(0.1, 1.0), min_size=count, max_size=count))
    scale = SCALE_UNBOUNDED if UNBOUNDED.intersection(attrs.get("activations", ())) else 0.5
    x = _uniform(draw, (steps, batch, width) if layout == 0 else (batch, steps, width))
    w = _uniform(draw, (dirs, gates * hidden, width), scale)
    r = _uniform(draw, (dirs, gates * hidden, hidden), scale)
    optional: list[tuple[str, np.ndarray] | None] = [
        ("b", _uniform(draw, (dirs, 2 * gates * hidden), scale)) if draw(st.booleans()) else None,
        None,
        ("h0", _uniform(draw, (dirs, batch, hidden))) if draw(st.booleans()) else None,
    ]
    if draw(st.booleans()):  # sequence lengths, shorter than the sequence for some elements
        lens = draw(st.lists(st.integers(1, steps), min_size=batch, max_size=batch))
        optional[1] = ("lens", np.asarray(lens, np.int32))
    if op == "LSTM":
        optional.append(
            ("c0", _uniform(draw, (dirs, batch, hidden))) if draw(st.booleans()) else None
        )
        p = ("p", _uniform(draw, (dirs, 3 * hidden), 2 * scale)) if draw(st.booleans()) else None
        optional.append(p)
        if draw(st.booleans()):
            attrs["input_forget"] = draw(st.integers(0, 1))
    if op == "GRU" and draw(st.booleans()):
        attrs["linear_before_reset"] = draw(st.integers(0, 1))
    if draw(st.booleans()):
        attrs["clip"] = draw(st.floats(0.1, 3.0))
    while optional and optional[-1] is None:
        optional.pop()
    weights_as_inputs = draw(st.booleans())
    inputs = [("x", x)] + ([("w", w), ("r", r)] if weights_as_inputs else [])
    inits = ([] if weights_as_inputs else [("w", w), ("r", r)]) + [
        i for i in optional if i is not None
    ]
    names = ["x", "w", "r"] + ["" if i is None else i[0] for i in optional]
    outputs = ["y", "y_h"] + (["y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, names, outputs, name="n", **attrs)
    proto = model(
        [node],
        [io(n, list(a.shape)) for n, a in inputs],
        [io(o, None) for o in outputs],
        [numpy_helper.from_array(a, n) for n, a in inits],
        opset=draw(st.sampled_from([14, 7])) if not layout else 14,
    )
    return RecurrentCase(proto, dict(inputs))


def _layout_zero(case: RecurrentCase) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The same node with layout 0: X transposed to [T, B, I] and so are the initial states."""
    proto = onnx.ModelProto()
    proto.CopyFrom(case.proto)
    node = proto.graph.node[0]
    del node.attribute[[a.name for a in node.attribute].index("layout")]
    feeds = dict(case.feeds)
    feeds["x"] = np.ascontiguousarray(feeds["x"].transpose(1, 0, 2))
    proto.graph.input[0].CopyFrom(io("x", list(feeds["x"].shape)))
    for init in proto.graph.initializer:
        if init.name in ("h0", "c0"):  # [B, D, H] -> [D, B, H]
            array = numpy_helper.to_array(init).transpose(1, 0, 2)
            init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(array), init.name))
    return proto, feeds


@pytest.mark.parametrize("op", sorted(GATES))
@SETTINGS
@given(data=st.data())
def test_ops_recurrent_op_matches_onnxruntime(op: str, data) -> None:
    case = data.draw(recurrent_models(op), label="case")
    backend = data.draw(st.sampled_from(BACKENDS), label="backend")
    assert_parity(case.proto, case.feeds, backend)


@pytest.mark.parametrize("op", sorted(GATES))
@SETTINGS
@given(data=st.data())
def test_ops_recurrent_batch_first_layout_is_the_transposed_sequence(op: str, data) -> None:
    case = data.draw(recurrent_models(op, layout=1), label="case")
    backend = data.draw(st.sampled_from(BACKENDS), label="backend")
    for init in case.proto.graph.initializer:  # initial states are [B, D, H] with layout 1
        if init.name in ("h0", "c0"):
            array = numpy_helper.to_array(init).transpose(1, 0, 2)
            init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(array), init.name))
    proto0, feeds0 = _layout_zero(case)
    want = run_ort(proto0, feeds0)
    got = run_walle(case.proto, case.feeds, backend)
    np.testing.assert_allclose(got[0], want[0].transpose(2, 0, 1, 3), rtol=1e-4, atol=1e-4)
    for g, w in zip(got[1:], want[1:], strict=True):
        np.testing.assert_allclose(g, w.transpose(1, 0, 2), rtol=1e-4, atol=1e-4)


def _lstm(inputs: list[str], inits, x_shape=(3, 2, 2), **attrs) -> onnx.ModelProto:
    node = helper.make_node("LSTM", inputs, ["y"], name="rnn", **attrs)
    graph_inputs = [io("x", list(x_shape))]
    if "lens" in inputs and "lens" not in [i.name for i in inits]:
        graph_inputs.append(helper.make_tensor_value_info("lens", onnx.TensorProto.INT32, [2]))
    return model([node], graph_inputs, [io("y", None)], inits, opset=14)


def _weights(hidden: int = 2, width: int = 2, dirs: int = 1) -> list:
    rng = np.random.default_rng(0)
    shapes = {"w": (dirs, 4 * hidden, width), "r": (dirs, 4 * hidden, hidden)}
    return [
        numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
        for name, shape in shapes.items()
    ]


REFUSED = {
    "lens_not_constant": (
        (["x", "w", "r", "", "lens"], [], {"hidden_size": 2}),
        r"input 'lens' \(integer ids\) reaches node 'rnn' \(LSTM\)",
    ),
    "lens_out_of_range": (
        (["x", "w", "r", "", "lens"], [numpy_helper.from_array(np.int32([4, 1]), "lens")],
         {"hidden_size": 2}),
        r"sequence_lens \[4, 1\] must be in \[1, 3\]",
    ),
    "activation_count": (
        (["x", "w", "r"], [], {"hidden_size": 2, "activations": ["Sigmoid", "Tanh"]}),
        r"2 activations given, 3 expected",
    ),
    "activation_unknown": (
        (["x", "w", "r"], [], {"hidden_size": 2,
                               "activations": ["ThresholdedRelu", "Tanh", "Tanh"]}),
        r"activation 'ThresholdedRelu' is not supported",
    ),
    "hidden_size_mismatch": (
        (["x", "w", "r"], [], {"hidden_size": 3}),
        r"W must be \[1, 12, 2\] \(hidden_size 3, 1 direction\(s\)\), got \[1, 8, 2\]",
    ),
    "hidden_size_zero": (
        (["x", "w", "r"], [], {"hidden_size": 0}),
        r"hidden_size 0 must be positive",
    ),
    "direction": (
        (["x", "w", "r"], [], {"hidden_size": 2, "direction": "sideways"}),
        r"attribute direction='sideways' is not supported",
    ),
    "attribute": (
        (["x", "w", "r"], [], {"hidden_size": 2, "linear_before_reset": 1}),
        r"unsupported attribute\(s\) \['linear_before_reset'\]",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_ops_recurrent_refusals_name_node_and_what(name: str) -> None:
    (inputs, extra, attrs), message = REFUSED[name]
    proto = _lstm(inputs, _weights() + extra, **attrs)
    if not message.startswith("input"):
        message = r"node 'rnn' \(LSTM\): " + message
    with pytest.raises(ModelError, match=message):
        import_onnx(proto)


def test_ops_crnn_matches_onnxruntime_on_every_backend() -> None:
    """A small CRNN (conv features, a bidirectional LSTM over the columns, a classifier per
    step), the shape of ddddocr's text recogniser: each backend as onnxruntime."""
    rng = np.random.default_rng(1)
    hidden, chans, steps = 8, 6, 7

    def const(name, shape, scale=0.4):
        return numpy_helper.from_array(
            (rng.standard_normal(shape) * scale).astype(np.float32), name
        )

    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["a"]),
        helper.make_node("ReduceMean", ["a"], ["m"], axes=[2], keepdims=0),  # [1, C, W]
        helper.make_node("Transpose", ["m"], ["seq"], perm=[2, 0, 1]),  # [W, 1, C]
        helper.make_node("LSTM", ["seq", "w", "r", "b"], ["y", "y_h", "y_c"],
                         hidden_size=hidden, direction="bidirectional"),
        helper.make_node("Transpose", ["y"], ["yt"], perm=[0, 2, 1, 3]),  # [W, 1, 2, H]
        helper.make_node("Reshape", ["yt", "shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fw", "fb"], ["logits"], transB=1),
    ]  # fmt: skip
    inits = [
        const("cw", (chans, 1, 3, 3)), const("cb", (chans,)),
        const("w", (2, 4 * hidden, chans)), const("r", (2, 4 * hidden, hidden)),
        const("b", (2, 8 * hidden)), const("fw", (11, 2 * hidden)), const("fb", (11,)),
        numpy_helper.from_array(np.int64([steps, 2 * hidden]), "shape"),
    ]  # fmt: skip
    outputs = [io("logits", [steps, 11]), io("y_h", [2, 1, hidden]), io("y_c", [2, 1, hidden])]
    proto = model(nodes, [io("x", [1, 1, 5, steps])], outputs, inits, opset=13)
    feeds = {"x": rng.standard_normal((1, 1, 5, steps)).astype(np.float32)}
    for backend in BACKENDS:
        assert_parity(proto, feeds, backend)


def test_ops_symbolic_declared_shape_of_another_rank_runs_with_a_warning() -> None:
    """A declaration with symbolic dims is the exporter's guess: ddddocr's CRNN declares its
    [T, 1, classes] logits as [1, "seqlen"]. onnxruntime warns and runs; so does walle.
    A declaration without symbolic dims stays a check (test_ops_onnx_fixes)."""
    node = helper.make_node("Relu", ["x"], ["y"], name="act")
    proto = model([node], [io("x", [2, 1, 3])], [io("y", [1, "seqlen"])])
    x = np.arange(6, dtype=np.float32).reshape(2, 1, 3) - 2
    with capture_logs() as logs:
        got = run_walle(proto, {"x": x}, "numpy")[0]
    np.testing.assert_array_equal(got, np.maximum(x, 0))
    warned = [e for e in logs if e["event"] == "declared_shape_differs"]
    assert len(warned) == 1 and warned[0]["declared"] == (1, "seqlen"), logs
    assert warned[0]["shape"] == (2, 1, 3) and warned[0]["output"] == "y"

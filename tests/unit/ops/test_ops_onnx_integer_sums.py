"""Quantized matmuls and convs summed in integers: DynamicQuantizeLinear -> MatMulInteger
or ConvInteger (what onnxruntime's ``quantize_dynamic`` writes) and QuantizeLinear ->
QLinearMatMul or QLinearConv by constant weights import as a product marked ``integer`` (one
side whole numbers in [0, 255], the other the weights less their zero point) with the
quantized value's zero point taken off after it (a matmul: za * colsum(b) off its output; a
conv: its pads filled with zx, zx * rowsum(w) off its bias, or off its output where zx is
computed at run time); an int8 value is shifted to uint8 by 128, its zero point with it.

Equal to onnxruntime, to the bit, on every backend and, on the cython backend, with the
integer product forced onto the int8 kernels at every instruction-set level this CPU runs
(VNNI's 8-bit dot products and the 16-bit multiply-adds).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from tests._backends import at_every_cython_level, backend_or_skip, run_with_algorithm
from tests.unit.ops._onnx_cases import io, model, run_ort, run_walle
from tests.unit.ops.test_ops_onnx_expand_tile import SETTINGS
from tests.unit.ops.test_ops_onnx_quantize import QuantCase, _conv_attrs
from walle.ops import available_backends
from walle.ops.fusion import find_steps
from walle.ops.onnx_import import import_onnx

BACKENDS = [b.name for b in available_backends()]
_KINDS = {TensorProto.UINT8: (np.uint8, 0, 255), TensorProto.INT8: (np.int8, -128, 127)}


def _weights(draw, rng, k: int, n: int, kind: int):
    """Constant weights of ``kind`` and their zero point: absent, one, or one per column."""
    dtype, low, high = _KINDS[kind]
    b = rng.integers(low, high + 1, (k, n)).astype(dtype)
    zero = draw(st.sampled_from(["none", "one", "column"]))
    if zero == "none":
        return b, None
    count = 1 if zero == "one" else n
    zb = rng.integers(low, high + 1, count).astype(dtype)
    return b, zb if zero == "column" else zb.reshape(())


@st.composite
def dynamic_matmul_models(draw, big: bool = False) -> QuantCase:
    """x -> DynamicQuantizeLinear -> MatMulInteger(y, W, y_zero_point, W_zero_point)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if big:  # products the cython backend offers to the int8 kernels
        m, k, n = draw(st.integers(8, 40)), draw(st.integers(64, 200)), draw(st.integers(32, 90))
    else:
        m, k, n = draw(st.integers(1, 6)), draw(st.integers(1, 40)), draw(st.integers(1, 9))
    lead = draw(st.lists(st.integers(1, 3), max_size=1).map(tuple))
    kind = draw(st.sampled_from(list(_KINDS)))
    b, zb = _weights(draw, rng, k, n, kind)
    x = rng.standard_normal((*lead, m, k)) * draw(st.sampled_from([0.1, 1.0, 30.0]))
    x = (x + draw(st.sampled_from([0.0, 2.0, -5.0]))).astype(np.float32)
    inits = [numpy_helper.from_array(b, "b")]
    names = ["y", "b", "yz"]
    if zb is not None:
        inits.append(numpy_helper.from_array(zb, "bz"))
        names.append("bz")
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "ys", "yz"]),
        helper.make_node("MatMulInteger", names, ["s"]),
    ]
    proto = model(nodes, [io("x", list(x.shape))], [io("s", None, TensorProto.INT32)], inits, 11)
    return QuantCase(proto, {"x": x})


@st.composite
def qlinear_matmul_models(draw, big: bool = False) -> QuantCase:
    """x -> QuantizeLinear (uint8 or int8) -> QLinearMatMul by constant weights of the same
    type, scales per tensor or per column, -> its type."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if big:
        m, k, n = draw(st.integers(8, 40)), draw(st.integers(64, 200)), draw(st.integers(32, 90))
    else:
        m, k, n = draw(st.integers(1, 6)), draw(st.integers(1, 40)), draw(st.integers(1, 9))
    kind = draw(st.sampled_from(list(_KINDS)))
    dtype, low, high = _KINDS[kind]
    b = rng.integers(low, high + 1, (k, n)).astype(dtype)
    per_column = draw(st.booleans())
    count = n if per_column else 1
    b_scale = rng.uniform(0.001, 0.02, count).astype(np.float32)
    b_zero = (rng.integers(low // 4, high // 4 + 1, count) * (kind == TensorProto.UINT8)).astype(
        dtype
    )
    if not per_column:
        b_scale, b_zero = b_scale.reshape(()), b_zero.reshape(())
    x = (rng.standard_normal((m, k)) * 2).astype(np.float32)
    inits = [
        numpy_helper.from_array(np.float32(rng.uniform(0.01, 0.05)), "as"),
        numpy_helper.from_array(np.asarray(rng.integers(low // 2, high // 2 + 1), dtype), "az"),
        numpy_helper.from_array(b, "b"),
        numpy_helper.from_array(b_scale, "bs"),
        numpy_helper.from_array(b_zero, "bz"),
        numpy_helper.from_array(np.float32(rng.uniform(0.05, 0.5)), "ys"),
        numpy_helper.from_array(np.asarray(rng.integers(low // 2, high // 2 + 1), dtype), "yz"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "as", "az"], ["a"]),
        helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"]),
    ]
    proto = model(nodes, [io("x", [m, k])], [io("y", None, kind)], inits, opset=13)
    return QuantCase(proto, {"x": x})


def _conv_shapes(draw):
    n, c, m = draw(st.integers(1, 2)), draw(st.integers(1, 6)), draw(st.integers(1, 12))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    size = (draw(st.integers(5, 9)), draw(st.integers(5, 9)))  # a dilated 3x3 window fits
    return n, c, m, kernel, size


@st.composite
def dynamic_conv_models(draw, big: bool = False) -> QuantCase:
    """x -> DynamicQuantizeLinear -> ConvInteger(y, W, y_zero_point[, W_zero_point]): the
    pads (often) filled with a zero point computed at run time."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    n, c, m, kernel, size = _conv_shapes(draw)
    kind = draw(st.sampled_from(list(_KINDS)))
    dtype, low, high = _KINDS[kind]
    w = rng.integers(low, high + 1, (m, c, *kernel)).astype(dtype)
    x = (rng.standard_normal((n, c, *size)) * 3 + draw(st.sampled_from([0.0, 4.0]))).astype(
        np.float32
    )
    inits = [numpy_helper.from_array(w, "w")]
    names = ["y", "w", "yz"]
    if draw(st.booleans()):
        inits.append(numpy_helper.from_array(np.asarray(rng.integers(low, high + 1), dtype), "wz"))
        names.append("wz")
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "ys", "yz"]),
        helper.make_node("ConvInteger", names, ["s"], **_conv_attrs(draw, kernel)),
    ]
    proto = model(nodes, [io("x", list(x.shape))], [io("s", None, TensorProto.INT32)], inits, 11)
    return QuantCase(proto, {"x": x})


@st.composite
def qlinear_conv_models(draw, big: bool = False) -> QuantCase:
    """x -> QuantizeLinear (uint8 or int8) -> QLinearConv by int8 weights (per tensor or per
    output channel), an int32 bias often, -> x's type: the pads filled with x's zero point."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    n, c, m, kernel, size = _conv_shapes(draw)
    kind = draw(st.sampled_from(list(_KINDS)))
    dtype, low, high = _KINDS[kind]
    w = rng.integers(-128, 128, (m, c, *kernel)).astype(np.int8)
    count = m if draw(st.booleans()) else 1
    w_scale = rng.uniform(0.002, 0.02, count).astype(np.float32)
    x = (rng.standard_normal((n, c, *size)) * 2).astype(np.float32)
    inits = [
        numpy_helper.from_array(np.float32(rng.uniform(0.01, 0.05)), "xs"),
        numpy_helper.from_array(np.asarray(rng.integers(low // 2, high // 2 + 1), dtype), "xz"),
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(w_scale if count > 1 else w_scale.reshape(()), "ws"),
        numpy_helper.from_array(np.zeros(count if count > 1 else (), np.int8), "wz"),
        numpy_helper.from_array(np.float32(rng.uniform(0.05, 0.5)), "ys"),
        numpy_helper.from_array(np.asarray(rng.integers(low // 2, high // 2 + 1), dtype), "yz"),
    ]
    names = ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz"]
    if draw(st.booleans()):
        inits.append(numpy_helper.from_array(rng.integers(-5000, 5000, m).astype(np.int32), "b"))
        names.append("b")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("QLinearConv", names, ["y"], **_conv_attrs(draw, kernel)),
    ]
    proto = model(nodes, [io("x", list(x.shape))], [io("y", None, kind)], inits, opset=13)
    return QuantCase(proto, {"x": x})


def _assert_equal(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    np.testing.assert_array_equal(got.astype(np.float64), want.astype(np.float64))


MODELS = [dynamic_matmul_models, qlinear_matmul_models, dynamic_conv_models, qlinear_conv_models]


def _int8_algorithms(backend, step, graph) -> list[str]:
    """The int8 kernels the cython backend offers for an integer step: int8 always, and for
    a conv whose columns are not its input, int8_direct (the input read in place)."""
    algorithms = [a for a in backend.algorithms(step, graph) if a.startswith("int8")]
    assert algorithms[0] == "int8"
    kernel = step.parts[0].attr("regions")[0].sizes[2:4] if step.op == "fused.conv2d" else ()
    assert "int8_direct" in algorithms or kernel in ((), (1, 1))
    return algorithms


def _integer_steps(graph):
    """The steps holding a matmul marked integer (a dense layer's, a conv's)."""
    return [
        s for s in find_steps(graph) if any(p.op == "matmul" and p.attr("integer") for p in s.parts)
    ]


@SETTINGS
@given(data=st.data())
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("models", MODELS)
def test_ops_quantized_products_sum_in_integers_as_onnxruntime(models, backend, data) -> None:
    case = data.draw(models())
    graph = import_onnx(case.proto)
    assert len(_integer_steps(graph)) == 1  # the product is marked integer
    want = run_ort(case.proto, case.feeds)[0]
    _assert_equal(run_walle(case.proto, case.feeds, backend)[0], want)


@SETTINGS
@given(data=st.data())
@pytest.mark.parametrize("models", MODELS)
def test_ops_int8_kernels_give_onnxruntimes_quantized_products(models, data) -> None:
    """The integer product forced onto ops_int8 at every level: equal to onnxruntime."""
    backend = backend_or_skip("cython")
    case = data.draw(models(big=True))
    graph = import_onnx(case.proto)
    (step,) = _integer_steps(graph)
    algorithms = _int8_algorithms(backend, step, graph)
    want = run_ort(case.proto, case.feeds)[0]
    feeds = {name: case.feeds[name] for name in graph.inputs}

    def check(level: str) -> None:
        for algorithm in algorithms:
            got = run_with_algorithm(backend, graph, feeds, step, algorithm)
            _assert_equal(got, want)

    at_every_cython_level(check)


def test_ops_matmul_of_an_unquantized_input_stays_a_float_product() -> None:
    """A uint8 graph input is not saturated by walle (a caller may pass any float), so its
    MatMulInteger is not marked integer: the float product, exact for its values."""
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    b = numpy_helper.from_array(np.ones((4, 2), np.int8), "b")
    node = helper.make_node("MatMulInteger", ["a", "b"], ["y"])
    proto = model(
        [node], [io("a", [3, 4], TensorProto.UINT8)], [io("y", None, TensorProto.INT32)], [b], 10
    )
    graph = import_onnx(proto)
    assert not _integer_steps(graph)
    _assert_equal(run_walle(proto, {"a": a}, "numpy")[0], run_ort(proto, {"a": a})[0])


# -- the QDQ format: DequantizeLinear(QuantizeLinear(x)) into a Conv or MatMul by
# dequantized int8 weights, then the output requantized (what quantize_static writes)


def _dq(name: str, source: str, scale: str, zero: str, **attrs):
    return helper.make_node("DequantizeLinear", [source, scale, zero], [name], **attrs)


@st.composite
def qdq_models(draw, op: str) -> QuantCase:
    """x -> Q -> DQ -> Conv (or MatMul, or Gemm) by DQ(int8 weights, per tensor or per
    output channel) + a float bias -> [Relu] -> Q -> DQ; x quantized to uint8 or int8."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    kind = draw(st.sampled_from(list(_KINDS)))
    dtype, low, high = _KINDS[kind]
    if op == "Conv":
        n, c, m, kernel, size = _conv_shapes(draw)
        x_shape, w_shape, axis, attrs = (n, c, *size), (m, c, *kernel), 0, _conv_attrs(draw, kernel)
    elif op == "MatMul":
        rows, k, m = draw(st.integers(1, 12)), draw(st.integers(1, 70)), draw(st.integers(1, 40))
        x_shape, w_shape, axis, attrs = (rows, k), (k, m), 1, {}
    else:  # Gemm with transB, as PyTorch exports a Linear: weights [out, in]
        rows, k, m = draw(st.integers(1, 12)), draw(st.integers(1, 70)), draw(st.integers(1, 40))
        x_shape, w_shape, axis, attrs = (rows, k), (m, k), 0, {"transB": 1}
    count = m if draw(st.booleans()) else 1
    w_scale = rng.uniform(0.002, 0.02, count).astype(np.float32)
    x = (rng.standard_normal(x_shape) * 2).astype(np.float32)
    inits = [
        numpy_helper.from_array(np.float32(rng.uniform(0.01, 0.05)), "xs"),
        numpy_helper.from_array(np.asarray(rng.integers(low // 2, high // 2 + 1), dtype), "xz"),
        numpy_helper.from_array(rng.integers(-128, 128, w_shape).astype(np.int8), "wq"),
        numpy_helper.from_array(w_scale if count > 1 else w_scale.reshape(()), "ws"),
        numpy_helper.from_array(np.zeros(count if count > 1 else (), np.int8), "wz"),
        numpy_helper.from_array(rng.uniform(-1, 1, m).astype(np.float32), "bias"),
        numpy_helper.from_array(np.float32(rng.uniform(0.05, 0.5)), "ys"),
        numpy_helper.from_array(np.asarray(rng.integers(low // 2, high // 2 + 1), dtype), "yz"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        _dq("xd", "xq", "xs", "xz"),
        _dq("wd", "wq", "ws", "wz", axis=axis),
    ]
    if op in ("Conv", "Gemm"):
        nodes.append(helper.make_node(op, ["xd", "wd", "bias"], ["s"], **attrs))
    else:
        nodes += [
            helper.make_node("MatMul", ["xd", "wd"], ["p"]),
            helper.make_node("Add", ["p", "bias"], ["s"]),
        ]
    last = "s"
    if draw(st.booleans()):
        nodes.append(helper.make_node("Relu", ["s"], ["r"]))
        last = "r"
    nodes += [
        helper.make_node("QuantizeLinear", [last, "ys", "yz"], ["yq"]),
        _dq("y", "yq", "ys", "yz"),
    ]
    proto = model(nodes, [io("x", list(x_shape))], [io("y", None)], inits, opset=13)
    return QuantCase(proto, {"x": x})


def _ort_session(case: QuantCase, optimized: bool) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(case.proto.SerializeToString(), options)
    return session.run(None, case.feeds)[0]


@SETTINGS
@given(data=st.data())
@pytest.mark.parametrize("op", ["Conv", "MatMul", "Gemm"])
def test_ops_qdq_products_run_as_onnxruntimes_integer_ones(op, data) -> None:
    """The QDQ product sums in integers (marked integer), then scales: within one quantum of
    onnxruntime's optimised session (its fused int8 kernel) and of the graph as written
    (dequantized floats multiplied), and the same bits on every backend."""
    case = data.draw(qdq_models(op))
    assert len(_integer_steps(import_onnx(case.proto))) == 1
    quantum = float(numpy_helper.to_array(case.proto.graph.initializer[6]))
    reference = run_walle(case.proto, case.feeds, "numpy")[0]
    for want in (_ort_session(case, True), _ort_session(case, False)):
        assert float(np.abs(reference - want).max()) <= quantum * 1.001
    for backend in BACKENDS:
        _assert_equal(run_walle(case.proto, case.feeds, backend)[0], reference)


@SETTINGS
@given(data=st.data())
@pytest.mark.parametrize("op", ["Conv", "MatMul", "Gemm"])
def test_ops_int8_kernels_give_the_qdq_products_integer_sums(op, data) -> None:
    """The QDQ product forced onto ops_int8 at every level: the numpy backend's bits."""
    backend = backend_or_skip("cython")
    case = data.draw(qdq_models(op))
    graph = import_onnx(case.proto)
    (step,) = _integer_steps(graph)
    algorithms = _int8_algorithms(backend, step, graph)
    want = run_walle(case.proto, case.feeds, "numpy")[0]
    feeds = {name: case.feeds[name] for name in graph.inputs}

    def check(level: str) -> None:
        for algorithm in algorithms:
            _assert_equal(run_with_algorithm(backend, graph, feeds, step, algorithm), want)

    at_every_cython_level(check)

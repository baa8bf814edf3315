"""HardSwish (ONNX's, x * clip(x / 6 + 1/2, 0, 1), and Paddle's export of it, x * relu6(x +
3) / 6) in the cython kernels' stores, and its fusion into the conv or dense layer before it.

Each conv and GEMM kernel takes ``act="hard_swish"`` and applies it as it stores. The oracle
is the same kernel with ``act="none"``, then HardSwish in float64 on that output: equal
within 1e-6 (the store may round x * (1/6) + 1/2 once, as an FMA, where the float64 oracle
rounds not at all: the factor is within an ulp, the product within a few), exactly equal
where the factor clips (x >= 3 gives x, x <= -3 gives 0), NaN where it is NaN (-inf gives NaN,
as onnxruntime), +inf kept; Paddle's form (``hard_swish6``: no multiply-add to fuse) equal
bit for bit to its parts in float32. Every instruction-set level this CPU runs. Then whole models
(Conv, depthwise Conv and Gemm each followed by HardSwish) against onnxruntime on every
backend, the cython plan running no HardSwish step of its own.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests._backends import (
    at_every_cython_level,
    backend_or_skip,
    conv_kernel_case,
    conv_kernel_runs,
    matmul_kernel_runs,
)
from walle.ops import GraphBuilder, available_backends, compile_graph
from walle.ops.fusion import find_steps
from walle.ops.onnx_import import import_onnx

LEVELS = ("avx512", "avx2", "sse")


def _kernels():
    backend_or_skip("cython")
    from walle._kernels import ops_conv, ops_group, ops_math

    return ops_conv, ops_group, ops_math


def _hard_swish64(y: np.ndarray) -> np.ndarray:
    """ONNX's HardSwish of y in float64 (the factor's constants as the builder's float32)."""
    v = y.astype(np.float64)
    with np.errstate(invalid="ignore"):
        s = v * float(np.float32(1.0 / 6.0)) + 0.5
        s = np.where(np.isnan(s), s, np.clip(s, 0.0, 1.0))
        return v * s


def _hard_swish6_32(y: np.ndarray) -> np.ndarray:
    """Paddle's x * relu6(x + 3) / 6 in float32, step by step (no multiply-add to fuse: the
    kernels' bits)."""
    with np.errstate(invalid="ignore"):
        s = y + np.float32(3.0)
        s = np.where(s <= 0, np.float32(0.0), s)
        s = np.where(s >= 6, np.float32(6.0), s)
        return (y * s) / np.float32(6.0)


ACTS = ("hard_swish", "hard_swish6")


def _check(make, act: str = "hard_swish") -> None:
    """``make(act)``'s output against the oracle on its act-free output (hard_swish6: equal
    bit for bit); nothing where the CPU lacks the level."""
    try:
        got, plain = make(act), make("none")
    except ValueError as exc:
        assert "does not run" in str(exc) or "level" in str(exc)
        return
    assert (plain >= 3).any() and (plain <= -3).any() and ((plain > -3) & (plain < 3)).any()
    if act == "hard_swish6":
        np.testing.assert_array_equal(got, _hard_swish6_32(plain))
        return
    want = _hard_swish64(plain)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=0, atol=1e-6)
    clipped = finite & (np.abs(plain) >= 3)  # the factor exactly 0 or 1
    np.testing.assert_array_equal(got[clipped], want[clipped].astype(np.float32))


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(("kernel", "stride"), [(3, 1), (3, 2), (1, 1)])
@pytest.mark.parametrize("act", ACTS)
def test_conv_kernels_apply_hard_swish_as_they_store(act, level, kernel, stride) -> None:
    """The direct, packed-GEMM and (3x3 stride 1) Winograd conv kernels."""
    _kernels()
    for run in conv_kernel_runs(kernel, stride, level):
        _check(run, act)


@pytest.mark.parametrize(
    ("level", "wide"), [("avx512", False), ("avx512", True), ("avx2", None), ("sse", None)]
)
@pytest.mark.parametrize("act", ACTS)
def test_lanes_conv_kernel_applies_hard_swish(act, level, wide) -> None:
    """The lanes kernel (a network's RGB stem: MobileNetV3's 3x3/2 conv to 16 channels)."""
    ops_conv, _, _ = _kernels()
    x, weight, bias, region, shape = conv_kernel_case(3, 16, 39, 3, 2)
    assert ops_conv.lanes_fits(region)

    def lanes(act):
        out = np.full(shape, -1.0, np.float32)
        ops_conv.LanesConvKernel(
            x, weight.reshape(16, -1), bias, out, region, act, level, wide
        ).run()
        return out

    _check(lanes, act)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(("kernel", "stride"), [(3, 1), (3, 2), (5, 1)])
@pytest.mark.parametrize("act", ACTS)
def test_depthwise_and_grouped_conv_kernels_apply_hard_swish(act, level, kernel, stride) -> None:
    """MobileNetV3's depthwise 3x3 and 5x5 convs and a grouped conv, then the bias/act
    epilogue that follows a grouped 1x1 conv done by BLAS."""
    _, ops_group, _ = _kernels()
    for c, group in ((12, 12), (12, 3)):
        x, weight, bias, region, shape = conv_kernel_case(c, c, 13, kernel, stride, group)

        def grouped(act, case=(x, weight, bias, region, shape, group)):
            x, weight, bias, region, shape, group = case
            out = np.full(shape, -1.0, np.float32)
            ops_group.GroupConvKernel(x, weight, bias, out, region, group, act, level).run()
            return out

        _check(grouped, act)

    rng = np.random.default_rng(5)
    y = rng.uniform(-8, 8, (2, 4, 5, 5)).astype(np.float32)
    y[0, 1, 2, 2], y[1, 3, 0, 1], y[1, 2, 3, 3] = np.nan, np.inf, -np.inf
    bias = rng.uniform(-1, 1, 4).astype(np.float32)

    def bias_act(act):
        out = y.copy()
        ops_group.BiasActKernel(out, bias, 4, act, level).run()
        return out

    _check(bias_act, act)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("act", ACTS)
def test_matmul_kernels_apply_hard_swish(act, level) -> None:
    """The packed-GEMM matmul, GemmKernel (whose panels leave this activation to its C
    epilogue) and that epilogue after numpy's BLAS (epilogue_only)."""
    _kernels()
    for run in matmul_kernel_runs(level):
        _check(run, act)


def test_kernels_name_the_activations_they_take() -> None:
    ops_conv, _, _ = _kernels()
    assert ops_conv.relu_cap("k", "hard_swish") < 0
    with pytest.raises(ValueError, match="hard_swish"):
        ops_conv.relu_cap("k", "hard_sigmoid")


# -- fusion ----------------------------------------------------------------------------------


def _steps(tail, depthwise: bool = False, dense: bool = False) -> list[tuple[str, str]]:
    """(op, act) of the steps of a conv (or a dense layer) + bias, then ``tail(b, y)``."""
    b = GraphBuilder()
    if dense:
        x = b.input("x", (5, 6))
        y = b.linear(x, b.const(np.ones((6, 4), np.float32)), b.const(np.ones(4, np.float32)))
    else:
        c, cin = (4, 1) if depthwise else (4, 3)
        weight = np.ones((4, cin, 3, 3), np.float32)
        x = b.input("x", (1, 3 if not depthwise else 4, 8, 8))
        y = b.conv2d(
            x, b.const(weight), b.const(np.ones(c, np.float32)), group=4 if depthwise else 1
        )
    graph = b.build(tail(b, y))
    return [(s.op, s.attr("act", "-")) for s in find_steps(graph) if s.op != "raster"]


def test_fusion_takes_hard_swish_after_a_conv_a_depthwise_conv_and_a_dense_layer() -> None:
    def hard_swish(b, y):
        return [b.hard_swish(y)]

    assert _steps(hard_swish) == [("fused.conv2d", "hard_swish")]
    assert _steps(hard_swish, depthwise=True) == [("fused.group_conv2d", "hard_swish")]
    assert _steps(hard_swish, dense=True) == [("fused.matmul_bias_act", "hard_swish")]

    def paddle(b, y):  # x * relu6(x + 3) / 6, as Paddle's exports write HardSwish
        six = b.const(np.float32(6.0))
        relu6 = b.clip(b.binary("add", y, b.const(np.float32(3.0))), b.const(np.float32(0)), six)
        return [b.binary("div", b.binary("mul", y, relu6), six)]

    assert _steps(paddle) == [("fused.conv2d", "hard_swish6")]
    assert _steps(paddle, depthwise=True) == [("fused.group_conv2d", "hard_swish6")]
    assert _steps(paddle, dense=True) == [("fused.matmul_bias_act", "hard_swish6")]

    def over_five(b, y):  # divided by 5: not HardSwish
        six = b.const(np.float32(6.0))
        relu6 = b.clip(b.binary("add", y, b.const(np.float32(3.0))), b.const(np.float32(0)), six)
        return [b.binary("div", b.binary("mul", y, relu6), b.const(np.float32(5.0)))]

    assert _steps(over_five)[0] == ("fused.conv2d", "none")


def test_fusion_leaves_other_hard_curves_and_shared_values_as_steps() -> None:
    def times_hard_sigmoid(alpha):  # HardSigmoid(alpha) times x: only alpha = 1/6 is HardSwish
        return lambda b, y: [b.binary("mul", y, b.hard_sigmoid(y, alpha, 0.5))]

    assert _steps(times_hard_sigmoid(float(np.float32(1 / 6))))[0] == ("fused.conv2d", "hard_swish")
    for alpha in (0.2, 0.1666667):  # Paddle's exports write 1/6 as 0.1666667
        steps = _steps(times_hard_sigmoid(alpha))
        assert steps[0] == ("fused.conv2d", "none") and len(steps) > 1

    def shifted(b, y):  # beta 0.4
        return [b.binary("mul", y, b.hard_sigmoid(y, 1 / 6, 0.4))]

    assert _steps(shifted)[0] == ("fused.conv2d", "none")

    def also_output(b, y):  # the conv's value is read by a third consumer
        return [b.hard_swish(y), b.unary("relu", y)]

    assert ("fused.conv2d", "none") in _steps(also_output)


# -- whole models against onnxruntime -------------------------------------------------------


def _onnx_model(kind: str, form: str = "onnx") -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """Conv, depthwise Conv or Gemm, then ONNX's HardSwish node (or, ``form`` "paddle",
    Add 3, Clip(0, 6), Mul, Div 6)."""
    rng = np.random.default_rng(11)
    inits = []
    if kind == "gemm":
        x = rng.uniform(-4, 4, (7, 40)).astype(np.float32)
        inits = [rng.uniform(-0.5, 0.5, s).astype(np.float32) for s in ((40, 24), (24,))]
        layer = helper.make_node("Gemm", ["x", "w", "b"], ["z"])
    else:
        c, group = (16, 16) if kind == "depthwise" else (6, 1)
        x = rng.uniform(-4, 4, (2, c, 15, 15)).astype(np.float32)
        x[0, 1, 3, 4], x[1, 2, 5, 6] = np.nan, -np.inf
        w_shape = (16, c // group, 3, 3)
        inits = [rng.uniform(-0.5, 0.5, s).astype(np.float32) for s in (w_shape, (16,))]
        layer = helper.make_node("Conv", ["x", "w", "b"], ["z"], pads=[1, 1, 1, 1], group=group)
    names = ["w", "b"]
    if form == "paddle":
        inits += [np.float32(v) for v in (3.0, 0.0, 6.0)]
        names += ["three", "zero", "six"]
        nodes = [
            layer,
            helper.make_node("Add", ["z", "three"], ["s"]),
            helper.make_node("Clip", ["s", "zero", "six"], ["r"]),
            helper.make_node("Mul", ["z", "r"], ["t"]),
            helper.make_node("Div", ["t", "six"], ["y"]),
        ]
    else:
        nodes = [layer, helper.make_node("HardSwish", ["z"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(a), n) for a, n in zip(inits, names, strict=True)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return model, {"x": x}


@pytest.mark.parametrize("form", ["onnx", "paddle"])
@pytest.mark.parametrize("kind", ["conv", "depthwise", "gemm"])
def test_models_with_hard_swish_match_onnxruntime_on_every_backend(kind, form) -> None:
    model, feeds = _onnx_model(kind, form)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, feeds)[0]
    graph = import_onnx(model)

    def check(plan, where: str) -> None:
        with np.errstate(invalid="ignore"):  # -inf * 0 in the parts' passes
            got = plan(feeds["x"])[0]
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=where)
        finite = ~np.isnan(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4, atol=1e-4, err_msg=where)

    for backend in [b.name for b in available_backends()]:
        check(compile_graph(graph, pin=backend, use_cache=False, trials=False), backend)
    if "cython" not in [b.name for b in available_backends()]:
        return

    def at_level(level: str) -> None:
        plan = compile_graph(graph, pin="cython", use_cache=False, trials=False)
        ops = [s.op for s in plan.steps if s.name in plan.choices]
        assert "fused.elementwise" not in ops and "binary" not in ops, ops  # no HardSwish step
        check(plan, f"cython at {level}")

    at_every_cython_level(at_level)

"""ReLU6 (ONNX's Clip(0, 6)) in the cython kernels' epilogues, and its fusion.

Each conv and GEMM kernel takes ``act="relu6"`` and clamps as it stores. The oracle is
the same kernel with ``act="none"``, clamped by numpy afterwards: the outputs must be
equal bit for bit (the sums are the same; only the clamp moves), NaN and inf included
(NaN stays NaN, +inf becomes 6, -inf 0). Every instruction-set level this CPU runs.
Fusion: Clip(0, 6) after a conv or a dense layer becomes the step's activation; other
bounds stay element-wise ops.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests._backends import backend_or_skip, conv_kernel_case, conv_kernel_runs, matmul_kernel_runs
from walle.ops import GraphBuilder
from walle.ops.fusion import find_steps

LEVELS = ("avx512", "avx2", "sse")


def _kernels():
    backend_or_skip("cython")
    from walle._kernels import ops_conv, ops_group, ops_math

    return ops_conv, ops_group, ops_math


def _clamped(y: np.ndarray) -> np.ndarray:
    """numpy's ReLU6 of y: NaN kept (np.clip keeps it)."""
    return np.clip(y, np.float32(0.0), np.float32(6.0))


def _both(make) -> tuple[np.ndarray, np.ndarray] | None:
    """(relu6 output, clamped act-free output) of ``make(act, out)``; None where the CPU
    lacks the level."""
    outs = []
    for act in ("relu6", "none"):
        try:
            out = make(act)
        except ValueError as exc:
            assert "does not run" in str(exc) or "level" in str(exc)
            return None
        outs.append(out)
    return outs[0], _clamped(outs[1])


def _check(pair) -> None:
    if pair is None:
        return
    got, want = pair
    assert (want == 6.0).any() and (want == 0.0).any() and ((want > 0) & (want < 6)).any()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(("kernel", "stride"), [(3, 1), (3, 2), (1, 1)])
def test_conv_kernels_clamp_at_six_as_they_store(level, kernel, stride) -> None:
    """The direct, packed-GEMM and (3x3 stride 1) Winograd conv kernels."""
    _kernels()
    for run in conv_kernel_runs(kernel, stride, level):
        _check(_both(run))


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_and_grouped_conv_kernels_clamp_at_six(level, stride) -> None:
    """MobileNet's depthwise 3x3 (stride 1 and 2) and a grouped conv, then the bias/act
    epilogue that follows a grouped 1x1 conv done by BLAS."""
    _, ops_group, _ = _kernels()
    for c, group in ((12, 12), (12, 3)):
        x, weight, bias, region, shape = conv_kernel_case(c, c, 13, 3, stride, group)

        def grouped(act, case=(x, weight, bias, region, shape, group)):
            x, weight, bias, region, shape, group = case
            out = np.full(shape, -1.0, np.float32)
            ops_group.GroupConvKernel(x, weight, bias, out, region, group, act, level).run()
            return out

        _check(_both(grouped))

    rng = np.random.default_rng(5)
    y = rng.uniform(-8, 14, (2, 4, 5, 5)).astype(np.float32)
    y[0, 1, 2, 2], y[1, 3, 0, 1] = np.nan, np.inf
    bias = rng.uniform(-1, 1, 4).astype(np.float32)

    def bias_act(act):
        out = y.copy()
        ops_group.BiasActKernel(out, bias, 4, act, level).run()
        return out

    _check(_both(bias_act))


@pytest.mark.parametrize("level", LEVELS)
def test_matmul_kernels_clamp_at_six(level) -> None:
    """The packed-GEMM matmul (a bias per column), GemmKernel (its AVX2 panels clamp as
    they store their 16-column tiles, the last 13 columns after them) and the C epilogue
    after numpy's BLAS (epilogue_only)."""
    _kernels()
    for run in matmul_kernel_runs(level):
        _check(_both(run))


def _fused_acts(bounds: tuple[float, float], relu_first: bool = False) -> list[tuple[str, str]]:
    """(op, act) of the fused steps of conv + bias, then Clip(bounds) (or Relu + Min)."""
    b = GraphBuilder()
    weight = np.ones((4, 3, 3, 3), np.float32)
    y = b.conv2d(b.input("x", (1, 3, 8, 8)), b.const(weight), b.const(np.ones(4, np.float32)))
    if relu_first:
        y = b.binary("min", b.relu(y), b.const(np.float32(bounds[1])))
    else:
        y = b.clip(y, b.const(np.float32(bounds[0])), b.const(np.float32(bounds[1])))
    graph = b.build([y])
    return [(s.op, s.attr("act")) for s in find_steps(graph) if s.op != "raster"]


def test_fusion_takes_clip_0_6_and_relu_min_6_as_the_relu6_activation() -> None:
    assert ("fused.conv2d", "relu6") in _fused_acts((0.0, 6.0))
    assert ("fused.conv2d", "relu6") in _fused_acts((0.0, 6.0), relu_first=True)
    for bounds in ((0.0, 5.0), (-1.0, 6.0)):  # other bounds: the conv and element-wise ops
        assert ("fused.conv2d", "none") in _fused_acts(bounds)

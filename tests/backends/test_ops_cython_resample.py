"""``fused.resample``: a linear or cubic Resize's pass along one axis (the sum of takes times
constant weights) as one cython kernel, ops_raster.ResampleKernel.

The oracle is the step's own parts: each take, product and sum rounded to float32 in the
graph's order, so the kernel must give their bits exactly (NaN, inf and -0.0 included) at
every instruction-set level this CPU runs: rows (an outer axis), single floats a lane
permute per 8 (taps within 8 floats: upsamplings) or a gather per 8 (downsamplings), and the
leftover outputs one at a time.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import (
    at_every_cython_level,
    backend_or_skip,
    raster_kernel_at_every_level,
    run_with_algorithm,
)
from walle.ops import GraphBuilder
from walle.ops.fusion import find_steps
from walle.ops.onnx_import import import_onnx
from walle.ops.sample_models import resize_onnx

_SPECIALS = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 3e38, 1e-45], np.float32)


def _resize(shape, scales, mode: str, transform: str = "half_pixel"):
    return import_onnx(resize_onnx(shape, scales, mode, transform), batch=shape[0])


def _x(shape, seed: int, specials: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, shape).astype(np.float32)
    if specials:
        flat = x.reshape(-1)
        spots = rng.choice(flat.size, size=min(flat.size, 5), replace=False)
        flat[spots] = rng.choice(_SPECIALS, size=len(spots))
    return x


def _fused_equals_parts(graph, x: np.ndarray) -> None:
    """Each resample step, fused, gives its parts' bits at every level (stale buffers)."""
    cython = backend_or_skip("cython")
    steps = [s for s in find_steps(graph) if s.op == "fused.resample"]
    assert steps

    def check(level: str) -> None:
        for step in steps:
            assert cython.algorithms(step, graph) == ["fused", "parts"]
            got = run_with_algorithm(cython, graph, {"x": x}, step, "fused")
            want = run_with_algorithm(cython, graph, {"x": x}, step, "parts")
            np.testing.assert_array_equal(got, want, err_msg=f"{level} {step.name}")

    at_every_cython_level(check)


@pytest.mark.parametrize(
    ("shape", "scales", "mode", "transform"),
    [
        ((1, 3, 9, 21), (1, 1, 2, 2), "linear", "half_pixel"),  # 2x: lane permutes
        ((1, 2, 16, 16), (1, 1, 0.5, 0.5), "linear", "half_pixel"),  # taps 16 apart: gathers
        ((1, 2, 7, 5), (1, 1, 3, 4), "cubic", "half_pixel"),  # 4 taps; rows of 5 floats
        ((2, 3, 8, 12), (1, 1, 1.5, 0.75), "cubic", "align_corners"),
        ((1, 1, 4, 33), (1, 1, 1, 2.5), "linear", "asymmetric"),  # one axis only
    ],
)
def test_a_resize_pass_fused_gives_its_parts_bits(shape, scales, mode, transform) -> None:
    graph = _resize(shape, scales, mode, transform)
    resized = [a for a, s in enumerate(scales) if s != 1]
    axes = sorted(s.attr("axis") for s in find_steps(graph) if s.op == "fused.resample")
    assert axes == resized
    _fused_equals_parts(graph, _x(shape, len(graph.nodes), specials=True))


@settings(max_examples=40, deadline=None)
@given(
    outer=st.integers(1, 3),
    dim=st.integers(1, 20),
    inner=st.sampled_from([1, 1, 3, 9]),
    n=st.integers(1, 40),
    taps=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    spread=st.sampled_from([1, 3, 40]),
)
def test_the_kernel_sums_its_taps_as_float32_in_order(
    outer, dim, inner, n, taps, seed, spread
) -> None:
    """Any indices (monotone and close, as a resize's, or scattered: ``spread``), any weights
    (0, 1, negative, tiny), specials in x: numpy's float32 products and sums in tap order."""
    backend_or_skip("cython")
    from walle._kernels import ops_raster

    rng = np.random.default_rng(seed)
    base = np.sort(rng.integers(0, dim, n))
    index = np.clip(base[None, :] + rng.integers(0, spread, (taps, n)), 0, dim - 1)
    weights = rng.choice(np.array([0, 1, -0.5, 0.25, 1e-30, 3.0], np.float32), (taps, n))
    weights = np.where(rng.random((taps, n)) < 0.5, rng.normal(size=(taps, n)), weights)
    weights = weights.astype(np.float32)
    x = _x((outer, dim, inner), seed, specials=True)
    with np.errstate(all="ignore"):  # the specials overflow and make NaN, as they should
        want = x[:, index[0], :] * weights[0][None, :, None]
        for k in range(1, taps):
            want = want + x[:, index[k], :] * weights[k][None, :, None]
    y = np.empty((outer, n, inner), np.float32)
    kernel = ops_raster.ResampleKernel(x, y, outer, dim, inner, index, weights)
    raster_kernel_at_every_level(kernel, y, want, stale=7.0)


def test_the_kernel_refuses_what_does_not_fit() -> None:
    backend_or_skip("cython")
    from walle._kernels import ops_raster

    x, y = np.zeros(12, np.float32), np.zeros(8, np.float32)
    ok = np.zeros((2, 4), np.int64), np.ones((2, 4), np.float32)
    ops_raster.ResampleKernel(x, y, 2, 6, 1, *ok)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 5\]"):
        ops_raster.ResampleKernel(x, y, 2, 6, 1, ok[0] + 6, ok[1])
    with pytest.raises(ValueError, match="must be \\[taps, n\\] alike"):
        ops_raster.ResampleKernel(x, y, 2, 6, 1, ok[0], np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="output of 8 floats is not 2 x 4 x 2"):
        ops_raster.ResampleKernel(x, y, 2, 3, 2, ok[0][:, :4], ok[1])
    with pytest.raises(ValueError, match="C-contiguous float32"):
        ops_raster.ResampleKernel(x.astype(np.float64), y, 2, 6, 1, *ok)


def test_only_takes_read_once_fuse() -> None:
    """A take read by two nodes, or a raster that is not a take, stays as it is: the fused
    kernel would drop the other reader's value or read the wrong elements."""
    b = GraphBuilder()
    x = b.input("x", (2, 5, 4))
    w = b.const(np.full((1, 8, 1), 0.5, np.float32))
    t0 = b.take(x, [0, 0, 1, 1, 2, 2, 3, 4], 1)
    t1 = b.take(x, [1, 1, 2, 2, 3, 3, 4, 4], 1)
    shared = b.binary("add", b.binary("mul", t0, w), b.binary("mul", t1, w))
    other = b.unary("relu", t0)  # t0 read twice
    graph = b.build([shared, other])
    assert "fused.resample" not in {s.op for s in find_steps(graph)}

    b = GraphBuilder()
    x = b.input("x", (2, 5, 4))
    w = b.const(np.full((1, 5, 1), 0.5, np.float32))
    flipped = b.transpose(b.reshape(x, (2, 4, 5)), (0, 2, 1))  # (2, 5, 4), not a take
    total = b.binary(
        "add", b.binary("mul", flipped, w), b.binary("mul", b.take(x, [4, 3, 2, 1, 0], 1), w)
    )
    graph = b.build([total])
    assert "fused.resample" not in {s.op for s in find_steps(graph)}


def test_a_take_past_the_check_bound_stays_as_its_parts(monkeypatch) -> None:
    """The takes are checked by running them on element indices, two int32 arrays of the
    output's size; past fusion._TAKE_CHECK_MOST elements the pass runs as its parts."""
    from walle.ops import fusion

    graph = _resize((1, 2, 8, 8), (1, 1, 2, 2), "linear")
    assert {s.op for s in find_steps(graph)} >= {"fused.resample"}
    monkeypatch.setattr(fusion, "_TAKE_CHECK_MOST", 8 * 16 * 2 - 1)  # under either pass's
    assert "fused.resample" not in {s.op for s in find_steps(graph)}

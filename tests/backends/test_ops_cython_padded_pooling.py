"""Padded pooling without its pad raster: ``ops_raster.PaddedWindowReduceKernel`` reads the
unpadded source in place, and fusion makes the pad raster the pooling step's prologue.

Oracle for the kernel: ``WindowReduceKernel`` (itself tested against the reference in
test_ops_cython_pooling.py) over the tensor the pad raster would have written, at every
instruction-set level the CPU runs, with pads on each side up to the window's size (windows
partly or wholly over the border), strides 1 and 2, and NaN and inf in the input. Max is
compared bit for bit, sums to float rounding (a global window may be summed in another
order).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import backend_or_skip, cython_matches_reference_at_every_level
from walle.ops import GraphBuilder, compile_graph, run_reference
from walle.ops.ir import Region

LEVELS = {"avx512": 2, "avx2": 1, "sse": 0}
KINDS = {"sum": 0, "mean": 1, "max": 2}


def _case(
    n: int, c: int, h: int, w: int, k: tuple[int, int], s: tuple[int, int], pads: tuple[int, ...]
) -> tuple[Region, tuple[np.ndarray, int, int, int, int, int, int, int], tuple[int, int]]:
    """The pooling region over the padded [n, c, hp, wp] tensor and the planes argument."""
    top, left, bottom, right = pads
    hp, wp = h + top + bottom, w + left + right
    oh, ow = (hp - k[0]) // s[0] + 1, (wp - k[1]) // s[1] + 1
    region = Region(
        input=0,
        src_offset=0,
        src_strides=(wp, 1, c * hp * wp, hp * wp, s[0] * wp, s[1]),
        dst_offset=0,
        dst_strides=(0, 0, c * oh * ow, oh * ow, ow, 1),
        sizes=(k[0], k[1], n, c, oh, ow),
    )
    planes = (np.arange(n * c, dtype=np.int64) * h * w, h, w, w, top, left, hp, wp)
    return region, planes, (oh, ow)


def _matches_the_padded_tensor(
    kind: str,
    x: np.ndarray,
    k: tuple[int, int],
    s: tuple[int, int],
    pads: tuple[int, ...],
    special: bool,
    seed: int,
) -> None:
    """The oracle: the padded kernel over ``x`` (NaN and -inf put in where ``special``) gives
    what the unpadded kernel gives over the padded tensor, at every level the CPU runs."""
    from walle._kernels import ops_raster

    n, c, h, w = x.shape
    top, left, bottom, right = pads
    if special:
        flat = x.reshape(-1)
        rng = np.random.default_rng(seed)
        flat[rng.integers(0, flat.size, 2)] = np.nan
        flat[rng.integers(0, flat.size, 2)] = -np.inf
    fill = -np.inf if kind == "max" else 0.0
    padded = np.pad(x, [(0, 0), (0, 0), (top, bottom), (left, right)], constant_values=fill)
    region, planes, (oh, ow) = _case(n, c, h, w, k, s, pads)
    before, best = ops_raster.level(), ops_raster.best_level()
    try:
        for name, level in LEVELS.items():
            if level > best:
                continue
            ops_raster.set_level(level)
            want = np.full((n, c, oh, ow), 7.0, np.float32)
            got = np.full((n, c, oh, ow), 7.0, np.float32)
            ops_raster.WindowReduceKernel(padded, want, region, KINDS[kind]).run()
            kernel = ops_raster.PaddedWindowReduceKernel(x, got, region, KINDS[kind], planes, fill)
            kernel.run()
            if kind == "max":
                np.testing.assert_array_equal(got, want, err_msg=name)
            else:  # a global window may be summed in another order (pool_rows.h's flat path),
                # a border 0 added first: -0.0 and +0.0 differ
                np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=name)
    finally:
        ops_raster.set_level(before)


@settings(max_examples=80, deadline=None)
@given(
    kind=st.sampled_from(sorted(KINDS)),
    n=st.integers(1, 2),
    c=st.integers(1, 4),
    h=st.integers(1, 21),
    w=st.integers(1, 45),
    kh=st.integers(1, 4),
    kw=st.integers(2, 4),
    s=st.tuples(st.integers(1, 3), st.integers(1, 2)),
    pads=st.tuples(*[st.integers(0, 4)] * 4),
    special=st.booleans(),
    seed=st.integers(0, 50),
)
def test_padded_kernel_matches_the_kernel_on_the_padded_tensor(
    kind, n, c, h, w, kh, kw, s, pads, special, seed
) -> None:
    backend_or_skip("cython")
    top, left, bottom, right = pads
    if kh > h + top + bottom or kw > w + left + right:
        return
    x = np.random.default_rng(seed).uniform(-3, 3, (n, c, h, w)).astype(np.float32)
    _matches_the_padded_tensor(kind, x, (kh, kw), s, pads, special, seed)


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(sorted(KINDS)),
    c=st.integers(1, 5),
    h=st.integers(1, 20),
    w=st.integers(1, 20),
    k=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    corner=st.tuples(st.floats(0, 0.99), st.floats(0, 0.99)),
    stride=st.sampled_from([1, 2]),
    ends=st.tuples(st.integers(0, 4), st.integers(0, 4)),
    special=st.booleans(),
    seed=st.integers(0, 50),
)
def test_whole_plane_pools_match_the_kernel_on_the_padded_tensor(
    kind, c, h, w, k, corner, stride, ends, special, seed
) -> None:
    """The geometries pool_rows.h computes a whole plane at a time (walle_pool_same_*):
    stride 1 with pads that keep the plane's size (Inception's 3x3/1 pools), and stride 2 on
    small planes with any bottom and right pads, planes from 1 to 400 floats (shorter than a
    vector, border rows shorter than 4). Same oracle as above."""
    backend_or_skip("cython")
    top, left = int(corner[0] * k[0]), int(corner[1] * k[1])
    bottom, right = (k[0] - 1 - top, k[1] - 1 - left) if stride == 1 else ends
    pads = (top, left, bottom, right)
    if k[0] > h + pads[0] + pads[2] or k[1] > w + pads[1] + pads[3]:
        return
    x = np.random.default_rng(seed).uniform(-3, 3, (1, c, h, w)).astype(np.float32)
    _matches_the_padded_tensor(kind, x, k, (stride, stride), pads, special, seed)


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(sorted(KINDS)),
    c=st.integers(1, 3),
    h=st.integers(1, 64),
    ow=st.integers(8, 32),
    k=st.tuples(st.integers(1, 5), st.integers(2, 5)),
    corner=st.tuples(st.floats(0, 0.99), st.floats(0, 0.99)),
    short=st.booleans(),
    bottom=st.integers(0, 3),
    special=st.booleans(),
    seed=st.integers(0, 50),
)
def test_stride_two_pools_of_planes_twice_the_output_width_match(
    kind, c, h, ow, k, corner, short, bottom, special, seed
) -> None:
    """Stride-2 pools whose source rows are twice the output's width (ResNet's and
    Inception's 3x3/2 pad-1 pools: pool_rows.h's walle_pool_even2_*, on planes of up to 4096
    floats), against the unpadded kernel on the padded tensor at every level."""
    backend_or_skip("cython")
    w = 2 * ow
    top, left = int(corner[0] * k[0]), int(corner[1] * k[1])
    right = k[1] - 1 - left - int(short)
    if right < 0 or k[0] > h + top + bottom or h * w > 4096:
        return
    x = np.random.default_rng(seed).uniform(-3, 3, (1, c, h, w)).astype(np.float32)
    assert _case(1, c, h, w, k, (2, 2), (top, left, bottom, right))[2][1] == ow
    _matches_the_padded_tensor(kind, x, k, (2, 2), (top, left, bottom, right), special, seed)


def test_padded_kernel_refuses_a_border_that_would_count() -> None:
    backend_or_skip("cython")
    from walle._kernels import ops_raster

    x = np.ones((1, 2, 5, 5), np.float32)
    region, planes, (oh, ow) = _case(1, 2, 5, 5, (3, 3), (2, 2), (1, 1, 1, 1))
    y = np.zeros((1, 2, oh, ow), np.float32)
    for kind, fill in ((2, 0.0), (0, -np.inf), (1, -0.0), (0, 1.0)):
        with pytest.raises(ValueError, match="border"):
            ops_raster.PaddedWindowReduceKernel(x, y, region, kind, planes, fill)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pad_raster_is_the_pooling_steps_prologue(kind: str) -> None:
    """ResNet's stem pool (3x3, stride 2, pad 1): one step, one kernel call, no pad raster
    written; the result as the reference's."""
    backend_or_skip("cython")
    b = GraphBuilder()
    x = b.input("x", (1, 8, 30, 30))
    pool = b.max_pool if kind == "max" else b.avg_pool
    extra = {"count_include_pad": True} if kind == "avg" else {}
    graph = b.build([pool(x, (3, 3), strides=(2, 2), pads=(1, 1, 1, 1), **extra)])
    plan = compile_graph(graph, pin="cython", trials=False, use_cache=False)
    [step] = [s for s in plan.steps if s.op == "fused.window_reduce"]
    assert step.attr("prologue") == 1
    assert step.parts[0].op == "raster" and step.parts[0].attr("fill") is not None
    assert step.inputs == ("x",)
    assert plan.choices[step.name].algorithm == "fused"
    data = np.random.default_rng(0).standard_normal((1, 8, 30, 30)).astype(np.float32)
    np.testing.assert_allclose(
        plan(data)[0], run_reference(graph, {"x": data})[0], rtol=1e-5, atol=1e-6
    )
    assert plan.call_count == len(plan.choices)  # one call per step: no pad raster call


def test_a_pad_whose_border_counts_stays_its_own_step() -> None:
    """A max pool after a zero pad (the border can win the max): the pad stays a step."""
    b = GraphBuilder()
    x = b.input("x", (1, 2, 6, 6))
    padded = b.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1)], 0.0)
    graph = b.build([b.max_pool(padded, (3, 3), strides=(2, 2))])
    plan = compile_graph(graph, pin="numpy", trials=False, use_cache=False)
    [step] = [s for s in plan.steps if s.op == "fused.window_reduce"]
    assert step.attr("prologue", 0) == 0
    data = -np.ones((1, 2, 6, 6), np.float32)
    got = plan(data)[0]
    np.testing.assert_array_equal(got, run_reference(graph, {"x": data})[0])
    assert got[0, 0, 0, 0] == 0.0 and got[0, 0, 1, 1] == -1.0  # the border won the corner


@pytest.mark.parametrize(("size", "channels"), [(5, 9), (3, 4), (4, 7)])
def test_lrn_window_sum_is_one_pooling_step_over_the_squares(size, channels) -> None:
    """LRN's sum of squares over ``size`` channels is a (size x 1) sum pool over the squares
    seen as [N, 1, C, H*W]: the reshape and the channel pad are the step's prologue, so the
    padded kernel reads the squares in place. Oracle: numpy's LRN (ONNX's formula) for the
    reference, NaN and inf included, then the reference at every level."""
    from walle.ops.fusion import find_steps

    backend_or_skip("cython")
    rng = np.random.default_rng(size * 10 + channels)
    x = rng.uniform(-3, 3, (2, channels, 5, 6)).astype(np.float32)
    x[0, 1, 2, 3], x[1, -1, 0, 0] = np.nan, np.inf
    b = GraphBuilder()
    alpha, beta, bias = 2e-4, 0.75, 1.5
    graph = b.build(
        [b.local_response_norm(b.input("x", x.shape), size, alpha=alpha, beta=beta, bias=bias)]
    )
    (pool,) = [s for s in find_steps(graph) if s.op == "fused.window_reduce"]
    assert pool.attr("prologue") == 2 and pool.attr("kind") == "sum"
    before, after = (size - 1) // 2, size // 2
    sq = np.pad(x.astype(np.float64) ** 2, [(0, 0), (before, after), (0, 0), (0, 0)])
    total = sum(sq[:, i : i + channels] for i in range(size))
    with np.errstate(all="ignore"):
        want = x / (bias + alpha / size * total) ** beta
    np.testing.assert_allclose(run_reference(graph, {"x": x})[0], want, rtol=1e-5, atol=1e-6)
    cython_matches_reference_at_every_level(graph, x, kernel_ran=True, atol=1e-6)

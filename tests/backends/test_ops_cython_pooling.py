"""The cython backend's pooling (``ops_raster.WindowReduceKernel``) against the reference.

Windows of adjacent columns are reduced separably (the KH rows first, then the KW taps), a
whole plane at a time at stride 1 and a row at a time in whole vectors otherwise (the last
vector of a row overlapping the one before; stride 2 through an even-lane permute; rows
narrower than a vector in narrower vectors or scalars); other windows (dilated columns)
take every (kh, kw) tap in turn. This covers each path over kernel sizes, strides,
dilations, pads, ``ceil_mode``, batches and channel counts, for max and average pools, at
every instruction-set level the CPU runs, with NaN and inf in the input (max keeps a NaN
its window holds, like the reference; sums spread it). Oracle: :func:`walle.ops.run_reference`.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import backend_or_skip, cython_matches_reference_at_every_level
from walle.errors import ModelError
from walle.ops import GraphBuilder


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(["max", "avg"]),
    n=st.integers(1, 2),
    c=st.integers(1, 5),
    h=st.integers(3, 19),
    w=st.integers(3, 37),
    k=st.integers(1, 4),
    kw=st.integers(1, 4),
    s=st.integers(1, 3),
    d=st.sampled_from([1, 1, 2]),
    pad=st.integers(0, 1),
    ceil=st.booleans(),
    special=st.booleans(),
    seed=st.integers(0, 40),
)
def test_poolingcython_matches_reference_at_every_level(
    kind, n, c, h, w, k, kw, s, d, pad, ceil, special, seed
) -> None:
    backend_or_skip("cython")

    if (k - 1) * d + 1 > h + 2 * pad or (kw - 1) * d + 1 > w + 2 * pad or pad >= min(k, kw):
        return
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, (n, c, h, w)).astype(np.float32)
    if special:
        flat = x.reshape(-1)
        flat[rng.integers(0, flat.size, 3)] = np.nan
        flat[rng.integers(0, flat.size, 2)] = np.inf
    b = GraphBuilder()
    pool = b.max_pool if kind == "max" else b.avg_pool
    args = {"strides": (s, s), "pads": (pad,) * 4, "dilations": (d, d), "ceil_mode": ceil}
    try:
        graph = b.build([pool(b.input("x", x.shape), (k, kw), **args)])
    except ModelError:  # a window over padding alone: refused when built, nothing to run
        return
    # a 1x1 window is a strided copy: its parts may be the cheaper
    cython_matches_reference_at_every_level(graph, x, kernel_ran=k * kw > 1, atol=1e-5)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("h,w", [(1, 2), (3, 3), (4, 4), (5, 7), (7, 7), (9, 11), (13, 13)])
def test_global_windows_match_reference_at_every_level(kind, h, w) -> None:
    """A window over the whole plane (ResNet's 7x7, SqueezeNet's 13x13 average pool): one
    contiguous run per output, reduced in vectors (runs of 2 to 169 floats: scalars only,
    whole vector pairs, pairs and a tail), NaN and inf kept as the reference keeps them."""
    backend_or_skip("cython")

    rng = np.random.default_rng(h * 100 + w)
    x = rng.uniform(-3, 3, (2, 5, h, w)).astype(np.float32)
    x[0, 1].flat[-1] = np.nan  # the tail or the last vector
    x[1, 2].flat[0] = np.inf
    x[1, 3].flat[h * w // 2] = -np.inf
    b = GraphBuilder()
    pool = b.max_pool if kind == "max" else b.avg_pool
    graph = b.build([pool(b.input("x", x.shape), (h, w))])
    cython_matches_reference_at_every_level(graph, x, kernel_ran=True, atol=1e-6)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("kh,kw", [(2, 2), (3, 3), (1, 2), (3, 2), (2, 3)])
@pytest.mark.parametrize("ow", [4, 7, 8, 9, 16, 17, 35, 55])
def test_stride_two_windows_match_reference_at_every_level(kind, kh, kw, ow) -> None:
    """Stride 2 with 2 or 3 taps per row (VGG's 2x2 and AlexNet's 3x3 max pools): each
    vector of outputs is taken from the source rows directly (even and odd lanes of two
    vectors; with 3 taps the third from those shifted by a lane and one lane of the next
    reduced vector, carried to the next outputs, or at a row's end of the vector ending at
    the window's last column), on rows of 4 to 55 outputs: whole vectors at each level,
    carried runs of them, a last one overlapping, rows narrower than a vector. NaN and inf
    at a row's first and last columns, where the even and odd lanes part."""
    backend_or_skip("cython")

    w = 2 * (ow - 1) + kw
    rng = np.random.default_rng(ow * 10 + kh + kw)
    x = rng.uniform(-3, 3, (2, 3, 2 * kh + 3, w)).astype(np.float32)
    x[0, 0, 0, -1] = np.nan  # the window's last column: only the last tap reads it
    x[0, 1, 1, 1] = np.nan
    x[1, 2, -1, 0] = np.inf
    x[1, 0, 2, -2] = -np.inf
    b = GraphBuilder()
    pool = b.max_pool if kind == "max" else b.avg_pool
    graph = b.build([pool(b.input("x", x.shape), (kh, kw), strides=(2, 2))])
    cython_matches_reference_at_every_level(graph, x, kernel_ran=True, atol=1e-6)


@pytest.mark.parametrize("ow", [9, 17, 35])
def test_three_tap_stride_two_max_keeps_a_nan_at_every_column(ow) -> None:
    """3x3/2 max pools (SqueezeNet's) with a NaN at each column of a row in turn, one plane
    per column: whichever lane and tap it reaches (the AVX2 level picks the taps within
    128-bit halves and orders the outputs after), the windows that hold it give NaN and the
    others their max, as the reference."""
    backend_or_skip("cython")

    w = 2 * (ow - 1) + 3
    rng = np.random.default_rng(ow)
    x = rng.uniform(-3, 3, (1, w, 7, w)).astype(np.float32)
    for col in range(w):
        x[0, col, 2 + col % 3, col] = np.nan
    x[0, 1, 0, 5] = np.inf
    b = GraphBuilder()
    graph = b.build([b.max_pool(b.input("x", x.shape), (3, 3), strides=(2, 2))])
    cython_matches_reference_at_every_level(graph, x, kernel_ran=True, atol=0)


@pytest.mark.parametrize(("kind", "k", "s"), [("max", 2, 2), ("avg", 3, 2)])
def test_pools_over_more_than_the_caches_match_reference_at_every_level(kind, k, s) -> None:
    """A pool that reads more than 8 times the L2, up to 8 MiB (8 MiB where the C library
    does not say; VGG's first reads 12.8 MB), runs the loop that asks for the rows two ahead:
    its outputs are the other loop's, NaN and inf included."""
    backend_or_skip("cython")

    rng = np.random.default_rng(k)
    x = rng.uniform(-3, 3, (1, 40, 230, 230)).astype(np.float32)  # 8.5 MB
    x[0, 0, 0, 0], x[0, 17, 100, 101], x[0, 39, -1, -1] = np.nan, np.inf, -np.inf
    b = GraphBuilder()
    pool = b.max_pool if kind == "max" else b.avg_pool
    graph = b.build([pool(b.input("x", x.shape), (k, k), strides=(s, s))])
    cython_matches_reference_at_every_level(graph, x, kernel_ran=True, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kind", [0, 1, 2])
def test_short_rows_match_numpy_at_every_level_and_write_nothing_past_the_output(
    stride, kind
) -> None:
    """Rows of at most a vector of outputs whose windows span one to two vectors (27 -> 13
    at AVX-512, 13 -> 6 at AVX2: each tap permuted out of the two reduced vectors, the row
    stored under a mask or over the next row's start): every output count and tap count
    there at each level, sums, means and NaN-keeping maxima against numpy, NaN and inf at
    the rows' first and last columns; the last row's store stays inside the output."""
    backend_or_skip("cython")
    from walle._kernels import ops_raster
    from walle.ops.ir import Region

    saved = ops_raster.level()
    rng = np.random.default_rng(stride * 3 + kind)
    try:
        for level in range(ops_raster.best_level() + 1):
            ops_raster.set_level(level)
            for n in range(1, 17):
                for kw in range(2, 6):
                    span = (n - 1) * stride + kw
                    kh, c, oh = 3, 3, 2
                    h = kh + (oh - 1) * stride
                    x = rng.uniform(-3, 3, (1, c, h, span)).astype(np.float32)
                    x[0, 0, 0, 0], x[0, 1, h - 1, span - 1] = np.nan, np.nan
                    x[0, 2, 1, span - 1] = np.inf
                    sizes = (kh, kw, 1, c, oh, n)
                    strides = (span, 1, c * h * span, h * span, stride * span, stride)
                    region = Region(0, 0, strides, 0, (0,) * 6, sizes)
                    rows = c * oh * n
                    y = np.full(rows + 32, 7.0, np.float32)
                    ops_raster.WindowReduceKernel(x, y[:rows], region, kind).run()
                    win = np.lib.stride_tricks.as_strided(
                        x.astype(np.float64),
                        shape=(c, oh, n, kh, kw),
                        strides=tuple(8 * v for v in (h * span, stride * span, stride, span, 1)),
                    )
                    with np.errstate(invalid="ignore"):
                        want = win.max((3, 4)) if kind == 2 else win.sum((3, 4))
                    if kind == 1:
                        want = want / (kh * kw)
                    got = y[:rows].reshape(c, oh, n)
                    where = f"level {level}, {n} outputs, {kw} taps"
                    if kind == 2:
                        np.testing.assert_array_equal(got, want.astype(np.float32), where)
                    else:
                        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=where)
                    assert (y[rows:] == 7.0).all(), where
    finally:
        ops_raster.set_level(saved)

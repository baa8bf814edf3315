"""A raster's fill writes only the elements no region writes (a pad's border), yet every
output element is written on every run.

``unfilled_runs`` is checked against an oracle that runs the reference raster with a NaN
fill and looks where NaN is left; the cython kernel and the numpy backend's calls, each
given those runs, against the reference raster on an output buffer full of stale values
(a buffer that other values share holds what they left), run after run.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import backend_or_skip, raster_kernel_at_every_level
from walle.ops.backends.numpy_backend import raster_calls
from walle.ops.ir import Node, Region, contiguous_strides, unfilled_runs
from walle.ops.reference import raster


def _padded(shape: tuple[int, ...], pads: list[tuple[int, int]]) -> tuple[Region, tuple[int, ...]]:
    """The region that copies an array of ``shape`` into its padded output, and that shape."""
    out = tuple(n + a + b for n, (a, b) in zip(shape, pads, strict=True))
    dst = contiguous_strides(out)
    offset = sum(a * s for (a, _), s in zip(pads, dst, strict=True))
    return Region(0, 0, contiguous_strides(shape), offset, dst, shape), out


@st.composite
def _rasters(draw: st.DrawFn) -> tuple[tuple[Region, ...], tuple[int, ...]]:
    """A pad of a 1-4-D array, and at times a second copy of it into the same output at
    another place along the last axis (a concat with a gap between its inputs)."""
    shape = tuple(draw(st.lists(st.integers(1, 7), min_size=1, max_size=4)))
    pads = [(draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in shape]
    first, out = _padded(shape, pads)
    if not draw(st.booleans()):
        return (first,), out
    gap = draw(st.integers(0, 2))
    wide = (*out[:-1], out[-1] + shape[-1] + gap)
    dst = contiguous_strides(wide)
    lead = sum(a * s for (a, _), s in zip(pads[:-1], dst[:-1], strict=True))
    regions = (
        Region(0, 0, contiguous_strides(shape), lead + pads[-1][0], dst, shape),
        Region(0, 0, contiguous_strides(shape), lead + out[-1] + gap, dst, shape),
    )
    return regions, wide


def _unwritten(regions: tuple[Region, ...], out: tuple[int, ...], size: int) -> np.ndarray:
    """The oracle: where a NaN fill is left by the reference raster."""
    x = np.ones(size, np.float32)
    return np.isnan(raster([x], out, regions, float("nan")).reshape(-1))


@settings(max_examples=150, deadline=None)
@given(case=_rasters())
def test_unfilled_runs_are_the_elements_no_region_writes(
    case: tuple[tuple[Region, ...], tuple[int, ...]],
) -> None:
    regions, out = case
    size = math.prod(out)
    want = _unwritten(regions, out, math.prod(regions[0].sizes))
    runs = unfilled_runs(regions, size)
    starts = np.flatnonzero(np.diff(np.concatenate(([0], want.astype(np.int8)))) == 1)
    if runs is None:  # only where the runs are too many to be worth it
        assert len(starts) * 8 > size
        return
    got = np.zeros(size, bool)
    for a, b in runs:
        assert a < b
        got[a:b] = True
    np.testing.assert_array_equal(got, want)
    assert len(runs) == len(starts)  # maximal runs: none split, none empty


def _pad_case() -> tuple[tuple[Region, ...], tuple[int, ...], np.ndarray]:
    region, out = _padded((2, 5, 30, 30), [(0, 0), (0, 0), (1, 2), (3, 1)])
    x = np.random.default_rng(0).uniform(-1, 1, region.sizes).astype(np.float32)
    return (region,), out, x


@pytest.mark.parametrize("fill", [0.0, -np.inf, 2.5])
def test_cython_raster_fills_its_gaps_over_stale_values_every_run(fill: float) -> None:
    backend_or_skip("cython")
    from walle._kernels import ops_raster

    regions, out, x = _pad_case()
    gaps = unfilled_runs(regions, math.prod(out))
    assert gaps is not None and int((gaps[:, 1] - gaps[:, 0]).sum()) < math.prod(out) // 5
    want = raster([x], out, regions, fill)
    y = np.full(out, np.nan, np.float32)
    kernel = ops_raster.RasterKernel([x], y, regions, fill, gaps)
    for stale in (np.nan, 7.0):
        y[...] = stale
        kernel.run()
        np.testing.assert_array_equal(y, want)


@settings(max_examples=120, deadline=None)
@given(
    shape=st.lists(st.integers(1, 40), min_size=1, max_size=4),
    pads=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=2, max_size=2),
    fill=st.sampled_from([0.0, -np.inf, 2.5]),
    with_gaps=st.booleans(),
)
def test_a_pad_raster_runs_in_one_bordered_pass_at_every_level(
    shape: list[int], pads: list[tuple[int, int]], fill: float, with_gaps: bool
) -> None:
    """A pad of the last two axes of a 1-4-D array (an NCHW pad; rows and columns of 1 to 40
    floats: runs shorter than a vector, of 4 to 15, of whole vectors) is one copy of whole
    planes into a bordered output: the kernel takes its one-pass path (``bordered``) and
    writes what the reference raster writes, over stale values, at every level."""
    backend_or_skip("cython")
    from walle._kernels import ops_raster

    region, out = _padded(tuple(shape), [(0, 0)] * (len(shape) - 2) + pads[-len(shape) :])
    size = math.prod(out)
    x = np.random.default_rng(len(shape)).uniform(-1, 1, region.sizes).astype(np.float32)
    want = raster([x], out, (region,), fill)
    y = np.full(out, np.nan, np.float32)
    gaps = unfilled_runs((region,), size) if with_gaps else None
    kernel = ops_raster.RasterKernel([x], y, (region,), fill, gaps)
    assert kernel.bordered
    raster_kernel_at_every_level(kernel, y, want)


def test_a_raster_that_is_not_a_pad_keeps_the_general_path() -> None:
    """Two copies into one output (a concat with a gap), a transposing copy, a pad of three
    axes and a raster without a fill are not one bordered pass."""
    backend_or_skip("cython")
    from walle._kernels import ops_raster

    two = (Region(0, 0, (4, 1), 0, (10, 1), (3, 4)), Region(0, 0, (4, 1), 5, (10, 1), (3, 4)))
    turned = (Region(0, 0, (1, 4), 0, (3, 1), (4, 3)),)
    padded, out = _padded((3, 4), [(1, 1), (1, 1)])
    cube, cubed = _padded((3, 4, 1), [(0, 1), (1, 0), (0, 1)])
    for regions, shape, fill in (
        (two, (3, 10), 0.0),
        (turned, (4, 3), 0.0),
        ((cube,), cubed, 0.0),
        ((padded,), out, None),
    ):
        x = np.ones(regions[0].sizes, np.float32)
        y = np.zeros(shape, np.float32)
        kernel = ops_raster.RasterKernel([x], y, regions, fill)
        assert not kernel.bordered
        kernel.run()
        np.testing.assert_array_equal(y, raster([x], shape, regions, fill))


def test_numpy_raster_fills_its_gaps_over_stale_values_every_run() -> None:
    regions, out, x = _pad_case()
    node = Node("pad", "raster", ("x",), "y", (("fill", -1.0), ("regions", regions)))
    want = raster([x], out, regions, -1.0)
    y = np.full(out, np.nan, np.float32)
    calls = raster_calls(node, [x], y)
    for stale in (np.nan, 7.0):
        y[...] = stale
        for call in calls:
            call()
        np.testing.assert_array_equal(y, want)


def test_cython_raster_refuses_gaps_outside_its_output() -> None:
    backend_or_skip("cython")
    from walle._kernels import ops_raster

    regions, out, x = _pad_case()
    y = np.zeros(out, np.float32)
    for bad in ([[0, y.size + 1]], [[-1, 3]], [[5, 2]], [0, 1]):
        with pytest.raises(ValueError, match="gaps"):
            ops_raster.RasterKernel([x], y, regions, 0.0, np.array(bad, np.int64))

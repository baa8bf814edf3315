"""The raster kernel's transposing copies (its blocked mode: 2-D tiles through registers,
8x8 AVX2 transposes at the AVX2 and AVX-512 levels, 4x4 SSE ones at the baseline) at every
instruction-set level, against numpy: sides that are and are not multiples of a tile or a
block, a batch of planes and NCHW <-> NHWC layout changes, over an output full of stale
values."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import backend_or_skip
from walle.ops import GraphBuilder


def _transpose_regions(shape: tuple[int, ...], perm: tuple[int, ...]):
    b = GraphBuilder()
    graph = b.build([b.transpose(b.input("x", shape), perm)])
    (node,) = [n for n in graph.nodes if n.op == "raster"]
    return node.attr("regions")


def _check_every_level(x: np.ndarray, perm: tuple[int, ...]) -> None:
    from walle._kernels import ops_raster

    want = np.ascontiguousarray(x.transpose(perm))
    y = np.full(want.shape, np.nan, np.float32)
    regions = _transpose_regions(x.shape, perm)
    kernel = ops_raster.RasterKernel([x], y, regions, None)
    saved = ops_raster.level()
    try:
        for level in range(ops_raster.best_level() + 1):
            ops_raster.set_level(level)
            y[...] = np.nan
            kernel.run()
            np.testing.assert_array_equal(y, want, err_msg=f"level {level} {x.shape} {perm}")
    finally:
        ops_raster.set_level(saved)


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 3),
    rows=st.integers(1, 150),
    cols=st.integers(1, 150),
    seed=st.integers(0, 20),
)
def test_ops_cython_batched_transposes_match_numpy_at_every_level(batch, rows, cols, seed):
    backend_or_skip("cython")
    x = np.random.default_rng(seed).uniform(-5, 5, (batch, rows, cols)).astype(np.float32)
    x.reshape(-1)[::7] = np.nan
    _check_every_level(x, (0, 2, 1))


def test_ops_cython_layout_changes_and_tile_edges_match_numpy_at_every_level() -> None:
    backend_or_skip("cython")
    rng = np.random.default_rng(1)
    cases = [
        ((2, 3, 17, 29), (0, 2, 3, 1)),  # NCHW -> NHWC: rows of 3
        ((2, 29, 17, 3), (0, 3, 1, 2)),  # and back
        ((64, 128, 32), (0, 2, 1)),  # whole blocks and tiles
        ((130, 67), (1, 0)),  # a block and a partial one each way
        ((8, 9), (1, 0)),  # one tile and an edge
        ((3, 4, 5, 6), (3, 2, 1, 0)),
    ]
    for shape, perm in cases:
        _check_every_level(rng.uniform(-1, 1, shape).astype(np.float32), perm)

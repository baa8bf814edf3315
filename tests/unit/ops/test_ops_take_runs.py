"""``GraphBuilder.take`` (constant indices: Gather, Resize's taps) as runs of slabs.

A take's raster holds one region per run (:func:`walle.ops.builder._take_runs`): output
positions e apart reading input indices d apart (d 0 repeats a slab), not one region per
index, which had made a 2x nearest Resize of 256 x 26 x 26 16x slower than onnxruntime.
Oracles: the indices themselves (every position covered once, by its own index) and
``np.take``, on every backend pinned.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import backend_or_skip
from walle.ops import GraphBuilder, available_backends, compile_graph
from walle.ops.builder import _repeated_run, _take_runs

BACKENDS = [b.name for b in available_backends()]


def _covered(runs, n: int) -> list[int | None]:
    out: list[int | None] = [None] * n
    for t0, e, i0, d, m in runs:
        assert e >= 1 and d >= 0 and m >= 1
        for j in range(m):
            assert out[t0 + e * j] is None, "a position covered twice"
            out[t0 + e * j] = i0 + d * j
    return out


# index lists with structure: stretches of arithmetic runs (steps -2 to 3), some repeated
_STRETCH = st.tuples(st.integers(0, 30), st.integers(-2, 3), st.integers(1, 12), st.integers(1, 3))
_STRUCTURED = st.lists(_STRETCH, min_size=1, max_size=6).map(
    lambda parts: [
        max(0, start + step * (k // times))
        for start, step, count, times in parts
        for k in range(count * times)
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(st.integers(0, 40), min_size=1, max_size=120), _STRUCTURED))
def test_take_runs_cover_each_position_once_with_its_index(indices) -> None:
    assert _covered(_take_runs(indices), len(indices)) == indices
    repeat = _repeated_run(indices)
    if repeat is not None:
        i0, d, m, e = repeat
        assert e > 1 and d >= 0
        assert indices == [i0 + d * (t // e) for t in range(m * e)]


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 9), st.integers(0, 3), st.integers(1, 30), st.integers(2, 9))
def test_a_run_repeated_in_place_is_found(i0, d, m, e) -> None:
    indices = [i0 + d * (t // e) for t in range(m * e)]
    found = _repeated_run(indices)
    if m == 1 or d == 0:  # one value throughout: every count of copies divides it
        assert found is not None and found[2] * found[3] == m * e
    else:
        assert found == (i0, d, m, e)


@pytest.mark.parametrize(
    ("indices", "runs"),
    [
        (list(range(50)), 1),  # in order: one copy
        ([i // 2 for i in range(52)], 2),  # 2x nearest upsampling: one run per phase
        ([i // 3 for i in range(39)], 3),
        ([min(i // 4, 9) for i in range(48)], 8),  # 4x, the last slab repeated past the end
        ([7] * 30, 1),  # one slab broadcast
        (list(range(0, 60, 2)), 1),  # every other slab
        ([3, 2, 1, 0], 4),  # decreasing: a run per index (no negative strides)
    ],
)
def test_take_runs_are_few_where_the_indices_are_regular(indices, runs) -> None:
    found = _take_runs(indices)
    assert len(found) == runs
    assert _covered(found, len(indices)) == indices


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=15, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    data=st.data(),
)
def test_take_matches_numpy_on_every_backend(backend: str, shape, data) -> None:
    axis = data.draw(st.integers(0, len(shape) - 1), label="axis")
    indices = data.draw(
        st.one_of(
            st.lists(st.integers(0, shape[axis] - 1), min_size=1, max_size=12),
            st.integers(2, 4).map(lambda s: [i // s for i in range(shape[axis] * s)]),
        ),
        label="indices",
    )
    x = np.random.default_rng(len(indices)).uniform(-1, 1, shape).astype(np.float32)
    b = GraphBuilder()
    graph = b.build([b.take(b.input("x", tuple(shape)), indices, axis)])
    plan = compile_graph(graph, backends=[backend], trials=False, use_cache=False)
    np.testing.assert_array_equal(plan(x)[0], np.take(x, indices, axis))


@settings(max_examples=60, deadline=None)
@given(
    outer=st.integers(1, 4),
    width=st.integers(1, 23),
    times=st.integers(2, 10),
    inner=st.sampled_from([1, 1, 3]),
)
def test_a_repeating_take_is_one_region_the_cython_raster_repeats(outer, width, times, inner):
    """Each slab ``times`` over (a nearest upsampling): one region, which along the
    innermost axis (``inner`` 1) the cython raster copies in its repeat mode (up to 8 copies
    of each float, 2 and 4 in SSE shuffles, a row's last floats one at a time), over an
    output full of stale values; np.repeat is the oracle."""
    backend_or_skip("cython")
    from walle._kernels import ops_raster

    b = GraphBuilder()
    indices = [i // times for i in range(width * times)]
    graph = b.build([b.take(b.input("x", (outer, width, inner)), indices, 1)])
    (node,) = [n for n in graph.nodes if n.op == "raster"]
    (region,) = node.attr("regions")
    mode = ops_raster.normalise(region.sizes, region.src_strides, region.dst_strides)[3]
    assert (mode == 2) == (inner == 1 and times <= 8 and outer * width > 1)
    x = np.random.default_rng(width).uniform(-1, 1, (outer, width, inner)).astype(np.float32)
    y = np.full((outer, width * times, inner), np.nan, np.float32)
    ops_raster.RasterKernel([x], y, (region,), None).run()
    np.testing.assert_array_equal(y, np.repeat(x, times, axis=1))

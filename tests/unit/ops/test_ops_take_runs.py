"""``GraphBuilder.take`` (constant indices: Gather, Resize's taps) as runs of slabs.

A take's raster holds one region per run (:func:`walle.ops.builder._take_runs`): output
positions e apart reading input indices d apart (d 0 repeats a slab), not one region per
index, which had made a 2x nearest Resize of 256 x 26 x 26 16x slower than onnxruntime.
A take along several axes (``take_axes``: a nearest Resize) is one raster where its axes'
runs combine into few regions, so the output is written once.
Oracles: the indices themselves (every position covered once, by its own index) and
``np.take``, on every backend pinned.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import backend_or_skip, raster_kernel_at_every_level
from walle.errors import ModelError
from walle.ops import GraphBuilder, available_backends, compile_graph
from walle.ops.builder import _TAKE_GATHER_FROM, _repeated_run, _take_runs

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


def _take_each(x: np.ndarray, takes: dict[int, list[int]]) -> np.ndarray:
    for axis, indices in takes.items():
        x = np.take(x, indices, axis)
    return x


_INDICES = st.integers(1, 5).flatmap(
    lambda dim: st.one_of(
        st.lists(st.integers(0, dim - 1), min_size=1, max_size=9),
        st.integers(2, 4).map(lambda s: [i // s for i in range(dim * s)]),
    ).map(lambda idx: (dim, idx))
)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=15, deadline=None)
@given(rank=st.integers(1, 5), data=st.data())
def test_take_axes_matches_numpy_on_every_backend(backend: str, rank: int, data) -> None:
    """Whether it is one raster (few runs, rank <= 6 merged) or one take per axis (past
    _TAKE_GRID regions: irregular indices on several axes), it is np.take axis by axis."""
    axes = data.draw(st.sets(st.integers(0, rank - 1), min_size=1), label="axes")
    shape = [data.draw(st.integers(1, 4), label="dim") for _ in range(rank)]
    takes = {}
    for axis in sorted(axes, key=lambda a: data.draw(st.integers(0, 9), label="order")):
        shape[axis], takes[axis] = data.draw(_INDICES, label="indices")
    x = np.random.default_rng(rank).uniform(-1, 1, shape).astype(np.float32)
    b = GraphBuilder()
    graph = b.build([b.take_axes(b.input("x", tuple(shape)), takes)])
    plan = compile_graph(graph, backends=[backend], trials=False, use_cache=False)
    np.testing.assert_array_equal(plan(x)[0], _take_each(x, takes))


def test_take_axes_refuses_an_axis_named_twice() -> None:
    b = GraphBuilder()
    x = b.input("x", (2, 3))
    with pytest.raises(ModelError, match="name one axis twice"):
        b.take_axes(x, {1: [0], -1: [1]})
    with pytest.raises(ModelError, match=r"indices outside \[0, 1\] on axis 0"):
        b.take_axes(x, {0: [2]})


@pytest.mark.parametrize(
    ("shape", "takes", "regions"),
    [
        # YOLO's 2x nearest upsampling: one region (rows and floats each repeated)
        ((1, 8, 13, 13), {2: [i // 2 for i in range(26)], 3: [i // 2 for i in range(26)]}, 1),
        # a 1.5x upsampling: 3 runs (phases) per axis, 9 regions
        ((2, 4, 6), {1: [i * 2 // 3 for i in range(6)], 2: [i * 2 // 3 for i in range(9)]}, 9),
        # falling indices on two axes: 9 x 9 runs, more than _TAKE_GRID: one raster each
        ((9, 9), {0: [8, 6, 7, 5, 3, 0, 4, 2, 1], 1: [8, 7, 6, 5, 4, 3, 2, 1, 0]}, None),
    ],
)
def test_take_axes_is_one_raster_of_few_regions(shape, takes, regions) -> None:
    b = GraphBuilder()
    graph = b.build([b.take_axes(b.input("x", shape), takes)])
    rasters = [n for n in graph.nodes if n.op == "raster"]
    if regions is None:
        assert len(rasters) == len(takes)
    else:
        (raster,) = rasters
        assert len(raster.attr("regions")) == regions
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    plan = compile_graph(graph, backends=["numpy"], trials=False, use_cache=False)
    np.testing.assert_array_equal(plan(x)[0], _take_each(x, takes))


@settings(max_examples=80, deadline=None)
@given(
    planes=st.integers(1, 3),
    height=st.integers(1, 6),
    width=st.integers(1, 40),
    rows=st.integers(1, 5),
    times=st.integers(2, 10),
)
def test_a_2d_nearest_upsampling_repeats_rows_in_the_cython_raster(
    planes, height, width, rows, times
):
    """Each float ``times`` over and each row ``rows`` times: one region, whose rows the
    cython raster writes from one read of the input row (2 and 4 copies of a float from SSE
    registers, 2 from AVX2 ones at that level, into every output row, the last floats again
    where a row is not a multiple of the vector long; others written once and copied), at
    every level this CPU runs, over an output full of stale values."""
    backend_or_skip("cython")
    from walle._kernels import ops_raster

    b = GraphBuilder()
    takes = {
        1: [i // rows for i in range(height * rows)],
        2: [i // times for i in range(width * times)],
    }
    graph = b.build([b.take_axes(b.input("x", (planes, height, width)), takes)])
    (node,) = [n for n in graph.nodes if n.op == "raster"]
    (region,) = node.attr("regions")
    x = np.random.default_rng(width).uniform(-1, 1, (planes, height, width)).astype(np.float32)
    y = np.full((planes, height * rows, width * times), np.nan, np.float32)
    kernel = ops_raster.RasterKernel([x], y, (region,), None)
    want = np.repeat(np.repeat(x, rows, axis=1), times, axis=2)
    raster_kernel_at_every_level(kernel, y, want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("shape", "axis"), [((300, 3), 0), ((2, 300, 5), 1), ((4, 2, 300), 2)])
def test_a_take_of_many_irregular_runs_is_a_gather_of_constant_indices(backend, shape, axis):
    """Past _TAKE_GATHER_FROM runs (random ids), a take is one gather reading a constant of
    its indices, not a raster of a region per run (2^16 random ids had taken 34 s to plan):
    np.take on every backend, repeats, the first and the last row included."""
    rng = np.random.default_rng(axis)
    indices = [0, shape[axis] - 1, *(int(i) for i in rng.integers(0, shape[axis], 1200)), 0]
    b = GraphBuilder()
    graph = b.build([b.take(b.input("x", shape), indices, axis)])
    assert [n.op for n in graph.nodes] == ["gather"]
    assert len(_take_runs(indices)) > _TAKE_GATHER_FROM
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    plan = compile_graph(graph, backends=[backend], trials=False, use_cache=False)
    np.testing.assert_array_equal(plan(x)[0], np.take(x, indices, axis))


def test_a_take_stays_a_raster_up_to_the_bound_and_keeps_its_declared_shape() -> None:
    """_TAKE_GATHER_FROM falling indices (a run each) are a raster, one more a gather; a take
    with an output shape given (a Gather of 2-D ids) reshapes the gather's output."""
    at_bound = list(range(_TAKE_GATHER_FROM - 1, -1, -1))
    assert len(_take_runs(at_bound)) == _TAKE_GATHER_FROM
    b = GraphBuilder()
    graph = b.build([b.take(b.input("x", (600, 2)), at_bound, 0)])
    assert [n.op for n in graph.nodes] == ["raster"]
    past = list(range(_TAKE_GATHER_FROM, -1, -1))
    b = GraphBuilder()
    graph = b.build([b.take(b.input("x", (600, 2)), past, 0, shape=(1, len(past), 2))])
    assert [n.op for n in graph.nodes] == ["gather", "raster"]  # the reshape: a raster view
    xv = np.random.default_rng(1).uniform(-1, 1, (600, 2)).astype(np.float32)
    plan = compile_graph(graph, backends=["numpy"], trials=False, use_cache=False)
    np.testing.assert_array_equal(plan(xv)[0], np.take(xv, past, 0)[None])


def test_constant_gather_indices_out_of_range_are_refused_when_built() -> None:
    b = GraphBuilder()
    x = b.input("x", (4, 2))
    with pytest.raises(ModelError, match=r"constant indices at position \(1,\): 4 is not"):
        b.gather(x, b.const(np.array([0, 4], np.float32)), 0)
    with pytest.raises(ModelError, match=r"position \(0,\): 1.5 is not a whole number"):
        b.gather(x, b.const(np.array([1.5], np.float32)), 0)


def test_an_onnx_gather_of_many_constant_ids_matches_numpy(tmp_path) -> None:
    """A Gather whose constant ids (2-D, negative ones among them) fall in many runs: one
    gather step, np.take's result."""
    from walle.ops import Model
    from walle.ops.sample_models import single_op_onnx

    ids = np.random.default_rng(3).integers(-50, 50, (30, 40))
    path = tmp_path / "gather.onnx"
    model = single_op_onnx("Gather", [(2, 50, 6)], constants={"ids": ids}, axis=1)
    path.write_bytes(model.SerializeToString())
    x = np.random.default_rng(4).uniform(-1, 1, (2, 50, 6)).astype(np.float32)
    loaded = Model(path)
    ops = [s.op for s in loaded.plan(2).steps]
    assert ops[0] == "gather" and ops[1:] in ([], ["raster"])  # and the ids' shape: a view
    (y,) = loaded.run(x)
    np.testing.assert_array_equal(y, np.take(x, ids, 1))

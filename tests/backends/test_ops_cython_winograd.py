"""The Winograd conv kernel (``ops_conv.WinogradKernel``) against the reference.

The kernel computes a 3x3, stride-1 conv on 8x8 (F(6x6, 3x3)), 6x6 (F(4x4, 3x3)) or 4x4
(F(2x2, 3x3)) input tiles in groups of 16 or 32 tiles
(one vector lane per tile); these tests cover tiles cut by the output's edge, groups cut by
the tile count, batches whose tiles share a group, output channels that are not a multiple
of 8, the OpenMP split over groups, and every instruction-set level the machine runs. The
oracle is :func:`walle.ops.run_reference` (numpy); tolerance 1e-4 relative to the output's
scale (the transforms round differently from the direct sum). A tile holding NaN or inf is
computed directly, so the NaN and inf of the output fall exactly where the reference puts
them.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import backend_or_skip, im2col_node
from walle.ops import GraphBuilder, compile_graph, run_reference
from walle.ops.ir import Graph, Region

LEVELS = ("avx512", "avx2", "sse")


def _ops_conv():
    backend_or_skip("cython")
    from walle._kernels import ops_conv

    return ops_conv


def _conv(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    pad: int,
    relu: bool,
    pads: tuple[int, int, int, int] | None = None,
):
    b = GraphBuilder()
    y = b.conv2d(
        b.input("x", x.shape),
        b.const(weight),
        None if bias is None else b.const(bias),
        pads=pads or (pad,) * 4,
    )
    return b.build([b.relu(y) if relu else y])


def _region(graph: Graph) -> Region:
    region: Region = im2col_node(graph).attr("regions")[0]
    return region


def _run(ops_conv, graph, x, weight, bias, relu, level, tile=4):
    """The kernel alone on the conv's (unpadded) input; None where the CPU lacks the level."""
    want = run_reference(graph, {"x": x})[0]
    region = _region(graph)
    out = np.full(want.shape, np.nan, np.float32)
    try:
        kernel = ops_conv.WinogradKernel(
            x, weight.reshape(weight.shape[0], -1), bias, out, region,
            "relu" if relu else "none", level, tile,
        )  # fmt: skip
        assert kernel.tile == tile
    except ValueError as exc:
        assert "does not run" in str(exc)
        return None, want
    kernel.run()
    return out, want


def _matches_at_every_level(ops_conv, graph, x, weight, bias, relu, tile) -> None:
    """The kernel at each level this CPU runs against the reference, within 1e-4 of the
    output's largest magnitude."""
    for level in LEVELS:
        got, want = _run(ops_conv, graph, x, weight, bias, relu, level, tile)
        if got is not None:
            np.testing.assert_allclose(
                got, want, rtol=0, atol=1e-4 * np.abs(want).max(), err_msg=level
            )


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 3),
    c=st.integers(1, 12),
    cout=st.integers(1, 19),
    h=st.integers(3, 23),
    w=st.integers(3, 41),
    relu=st.booleans(),
    bias=st.booleans(),
    seed=st.integers(0, 50),
    sizes=st.sampled_from([(2, 3), (4, 3), (6, 3), (2, 5)]),  # (output tile side, filter side)
)
def test_winograd_kernel_matches_reference_at_every_level(
    n, c, cout, h, w, relu, bias, seed, sizes
):
    ops_conv = _ops_conv()
    tile, side = sizes
    rng = np.random.default_rng(seed)
    h, w = h + side - 3, w + side - 3
    x = rng.uniform(-2, 2, (n, c, h, w)).astype(np.float32)  # pad 0: the region is x
    weight = rng.uniform(-1, 1, (cout, c, side, side)).astype(np.float32)
    b = rng.uniform(-1, 1, cout).astype(np.float32) if bias else None
    graph = _conv(x, weight, b, 0, relu)
    for level in LEVELS:
        got, want = _run(ops_conv, graph, x, weight, b, relu, level, tile)
        if got is not None:
            scale = max(1.0, float(np.abs(want).max()))
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * scale, err_msg=level)


@pytest.mark.parametrize(("tile", "side"), [(2, 3), (4, 3), (6, 3), (2, 5)])
@pytest.mark.parametrize("hw", [(7, 7), (14, 14), (11, 30)])
@pytest.mark.parametrize("c", [128, 150])
def test_winograd_kernel_runs_many_input_channels_in_blocks(tile, side, hw, c) -> None:
    """128 and 150 input channels: where the products take two passes per block of 8 output
    channels (AVX2 and SSE on 2-3 vectors of tiles), up to 128 input channels run in one
    block, more in blocks of 64 with the sums carried between blocks; 16, 49 and 128+ tiles
    cover one, two and three vectors."""
    ops_conv = _ops_conv()
    rng = np.random.default_rng(tile * 100 + hw[1] + c)
    h, w = hw[0] + side - 3, hw[1] + side - 3
    x = rng.uniform(-1, 1, (1, c, h, w)).astype(np.float32)
    weight = rng.uniform(-0.2, 0.2, (13, c, side, side)).astype(np.float32)
    b = rng.uniform(-1, 1, 13).astype(np.float32)
    graph = _conv(x, weight, b, 0, False)
    _matches_at_every_level(ops_conv, graph, x, weight, b, False, tile)


@pytest.mark.parametrize(("tile", "side"), [(2, 3), (4, 3), (6, 3), (2, 5)])
def test_winograd_kernel_on_big_planes_matches_reference(tile, side) -> None:
    """Planes of 50x50 and up ask for each block's output lines while its products run
    (groups that end on a plane's last tiles, and two images, whose groups may span both):
    the outputs are the reference's, 11 channels (a part block) at every level."""
    ops_conv = _ops_conv()
    rng = np.random.default_rng(tile + side)
    h, w = 53 + side - 3, 57 + side - 3
    x = rng.uniform(-1, 1, (2, 5, h, w)).astype(np.float32)
    weight = rng.uniform(-0.5, 0.5, (11, 5, side, side)).astype(np.float32)
    b = rng.uniform(-1, 1, 11).astype(np.float32)
    graph = _conv(x, weight, b, 0, True)
    _matches_at_every_level(ops_conv, graph, x, weight, b, True, tile)


@pytest.mark.parametrize("tile", [2, 4, 6])
def test_winograd_kernel_splits_groups_over_threads(tile) -> None:
    """Large enough for the OpenMP split over tile groups (several groups per thread)."""
    ops_conv = _ops_conv()
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, (2, 32, 42, 42)).astype(np.float32)
    weight = rng.uniform(-0.2, 0.2, (40, 32, 3, 3)).astype(np.float32)
    bias = rng.uniform(-1, 1, 40).astype(np.float32)
    graph = _conv(x, weight, bias, 0, True)
    got, want = _run(ops_conv, graph, x, weight, bias, True, "best", tile)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * float(np.abs(want).max()))


@pytest.mark.parametrize(
    ("level", "side", "n", "last"),
    [
        ("avx512", 28, 1, ("avx2", 3)),  # 49 tiles: 32 + 24 lanes
        ("avx512", 8, 1, ("avx2", 1)),  # 4 tiles: 8 lanes, not 16
        ("avx512", 20, 4, ("avx2", 1)),  # 100 tiles over four images: 3 x 32 + 8 lanes
        ("avx2", 28, 1, ("avx2", 1)),  # 49 tiles: 24 + 24 + 8 lanes
        ("avx2", 8, 10, ("avx2", 2)),  # 40 tiles: 24 + 16 lanes
        ("sse", 12, 1, ("sse", 1)),  # 9 tiles: 8 + 4 lanes
    ],
)
@pytest.mark.parametrize("threads", [False, True])
def test_winograd_kernel_ends_with_a_narrower_group(level, side, n, last, threads) -> None:
    """The tiles left past the last whole group run in a narrower group (fewer lanes, an
    AVX2 one in an AVX-512 kernel), after the others on the last thread; every tile is
    still computed, including the other images' sharing that group."""
    ops_conv = _ops_conv()
    levels = {"sse": 0, "avx2": 1, "avx512": 2}
    c, cout = (64, 64) if threads else (5, 11)  # enough work for two threads, or one
    rng = np.random.default_rng(side * 10 + n)
    x = rng.uniform(-1, 1, (n, c, side + 2, side + 2)).astype(np.float32)
    weight = rng.uniform(-0.3, 0.3, (cout, c, 3, 3)).astype(np.float32)
    bias = rng.uniform(-1, 1, cout).astype(np.float32)
    graph = _conv(x, weight, bias, 0, True)
    want = run_reference(graph, {"x": x})[0]
    out = np.full(want.shape, np.nan, np.float32)
    # the choice is checked on every CPU; the kernel runs where the CPU runs the level
    choice = ops_conv._wino_groups(levels[level], n * (-(-side // 4)) ** 2)
    assert choice[2:] == (levels[last[0]], last[1])
    try:
        kernel = ops_conv.WinogradKernel(
            x, weight.reshape(cout, -1), bias, out, _region(graph), "relu", level, 4,
            f2_tail=False,
        )  # fmt: skip
    except ValueError as exc:
        assert "does not run" in str(exc)
        pytest.skip(f"this CPU does not run {level}: the choice alone was checked")
    assert kernel.last_group == (levels[last[0]], last[1])
    kernel.run()
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-4 * float(np.abs(want).max()))


@pytest.mark.parametrize(
    ("level", "tile", "n", "h", "w", "corner"),
    [
        # 49 tiles: 2 x 24 lanes, then the last tile's 4x4 outputs as 4 F(2x2) tiles
        ("avx2", 4, 1, 28, 28, (24, 24, 2, 2, "avx2", 1, 1)),
        ("avx2", 4, 1, 27, 27, (24, 24, 2, 2, "avx2", 1, 1)),  # the corner cut by the edge
        ("avx2", 4, 2, 28, 28, (24, 20, 2, 4, "avx2", 1, 1)),  # the second image's last 2 tiles
        ("avx2", 4, 1, 24, 8, (16, 0, 4, 4, "avx2", 1, 2)),  # whole last rows: 16 F(2x2) tiles
        ("avx512", 4, 1, 28, 28, (24, 24, 2, 2, "avx2", 1, 1)),  # 3 x 16 lanes, then AVX2's 8
        ("avx512", 4, 1, 24, 24, (20, 8, 2, 8, "avx512", 1, 1)),
        ("sse", 4, 1, 28, 28, (24, 24, 2, 2, "sse", 1, 1)),
        # F(6x6): 25 tiles, 24 lanes then the last tile's 4x4 outputs as 4 F(2x2) tiles
        ("avx2", 6, 1, 28, 28, (24, 24, 2, 2, "avx2", 1, 1)),
        ("avx2", 6, 1, 27, 27, (24, 24, 2, 2, "avx2", 1, 1)),
        ("avx2", 6, 2, 28, 28, (24, 18, 2, 5, "avx2", 1, 2)),  # the second image's last 2 tiles
        ("avx2", 6, 1, 56, 56, (54, 36, 1, 10, "avx2", 1, 2)),  # 100 tiles: 96, then 2 rows
        ("avx512", 6, 1, 56, 56, (54, 36, 1, 10, "avx512", 1, 1)),
        ("sse", 6, 1, 28, 28, (24, 24, 2, 2, "sse", 1, 1)),
    ],
)
@pytest.mark.parametrize("threads", [False, True])
def test_winograd_kernel_ends_with_an_f2_corner_where_that_is_less_work(
    level, tile, n, h, w, corner, threads
) -> None:
    """The last image's tiles left past the whole F(4x4) or F(6x6) groups run by F(2x2, 3x3)
    over the corner of the plane they cover, where that is less work than a narrow group;
    the output matches the reference there too, NaN and inf in the corner included, read in
    place from an unpadded source, with the groups split over threads."""
    ops_conv = _ops_conv()
    levels = {"sse": 0, "avx2": 1, "avx512": 2}
    th, tw = -(-h // tile), -(-w // tile)
    plan = ops_conv._wino_plan(levels[level], n, th, tw, h, w, True, tile)
    row, col, th2, tw2, corner_level, nv, groups = corner
    assert plan[2:4] == (0, 0)  # no narrow group
    assert plan[4] == (row, col, th2, tw2, levels[corner_level], nv, groups)
    c, cout = (64, 64) if threads else (5, 11)
    rng = np.random.default_rng(h * w + n)
    x = rng.uniform(-1, 1, (n, c, h, w)).astype(np.float32)
    x[n - 1, 1, h - 1, w - 2] = np.nan  # inside the corner: its tiles are computed directly
    x[n - 1, 2, row, w - 1] = np.inf
    weight = rng.uniform(0.1, 0.5, (cout, c, 3, 3)).astype(np.float32)
    bias = rng.uniform(-1, 1, cout).astype(np.float32)
    graph = _conv(x, weight, bias, 1, True)
    want = run_reference(graph, {"x": x})[0]
    out = np.full(want.shape, 7.0, np.float32)
    try:
        kernel = ops_conv.WinogradKernel(
            x, weight.reshape(cout, -1), bias, out, _region(graph), "relu", level, tile,
            pad=(1, 1),
        )  # fmt: skip
    except ValueError as exc:
        assert "does not run" in str(exc)
        pytest.skip(f"this CPU does not run {level}: the choice alone was checked")
    assert kernel.f2_corner == (levels[corner_level], nv, groups)
    assert kernel.last_group == (0, 0)
    kernel.run()
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(want))
    finite = np.isfinite(want)
    assert np.isnan(want[n - 1, :, h - 2 :, w - 3 :]).all()
    np.testing.assert_allclose(
        out[finite], want[finite], rtol=0, atol=1e-4 * float(np.abs(want[finite]).max())
    )


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(("tile", "side"), [(2, 3), (4, 3), (6, 3), (2, 5)])
def test_winograd_kernel_keeps_nan_and_inf_where_the_reference_puts_them(level, tile, side) -> None:
    ops_conv = _ops_conv()
    rng = np.random.default_rng(3)
    x = rng.uniform(-2, 2, (2, 3, 17, 19)).astype(np.float32)
    x[0, 1, 5, 7] = np.nan
    x[1, 0, 12, 2] = np.inf
    x[1, 2, 0, 18] = -np.inf
    x[1, 2, 16, 0] = np.inf
    weight = rng.uniform(0.1, 1, (9, 3, side, side)).astype(np.float32)  # no inf - inf
    graph = _conv(x, weight, None, 0, False)
    got, want = _run(ops_conv, graph, x, weight, None, False, level, tile)
    if got is None:  # _run saw the kernel refuse a level this CPU lacks: nothing to run
        return
    assert np.isnan(want).any() and np.isinf(want).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4, atol=1e-4)


def test_winograd_kernel_refuses_what_it_cannot_run() -> None:
    ops_conv = _ops_conv()
    x = np.zeros((1, 2, 8, 8), np.float32)
    weight = np.zeros((4, 2, 3, 3), np.float32)
    b = GraphBuilder()
    strided = b.build([b.conv2d(b.input("x", x.shape), b.const(weight), strides=(2, 2))])
    assert not ops_conv.winograd_fits(_region(strided))
    graph = _conv(x, weight, None, 0, False)
    region = _region(graph)
    assert ops_conv.winograd_fits(region)
    out = np.zeros((1, 4, 36), np.float32)
    with pytest.raises(ValueError, match="3x3 or 5x5 stride-1"):
        ops_conv.WinogradKernel(x, weight.reshape(4, -1), None, np.zeros((1, 4, 9), np.float32),
                                _region(strided), "none")  # fmt: skip
    with pytest.raises(ValueError, match="activation"):
        ops_conv.WinogradKernel(x, weight.reshape(4, -1), None, out, region, "sigmoid")
    with pytest.raises(ValueError, match="tile 3"):
        ops_conv.WinogradKernel(x, weight.reshape(4, -1), None, out, region, "none", None, 3)
    with pytest.raises(ValueError, match="does not match"):
        ops_conv.WinogradKernel(x, np.zeros((3, 18), np.float32), None, out, region, "none")
    five = _conv(x, np.zeros((4, 2, 5, 5), np.float32), None, 0, False)
    with pytest.raises(ValueError, match="5x5: 2"):
        ops_conv.WinogradKernel(
            x, np.zeros((4, 50), np.float32), None, np.zeros((1, 4, 16), np.float32),
            _region(five), "none", None, 4,
        )  # fmt: skip


def test_search_offers_winograd_for_3x3_stride_1_convs_and_the_plan_matches() -> None:
    """Padded 3x3 convs in a plan pinned to cython: the search times winograd beside the
    others; whichever it picks, the plan matches the reference (and a model with a NaN
    weight never runs the transform, which would spread it over whole tiles)."""
    backend = backend_or_skip("cython")
    rng = np.random.default_rng(11)
    x = rng.uniform(-1, 1, (1, 16, 28, 28)).astype(np.float32)
    weight = rng.uniform(-0.3, 0.3, (32, 16, 3, 3)).astype(np.float32)
    graph = _conv(x, weight, rng.uniform(-1, 1, 32).astype(np.float32), 1, True)
    from walle.ops.fusion import find_steps

    (conv,) = [s for s in find_steps(graph) if s.op == "fused.conv2d"]
    assert {"winograd", "winograd_f2", "winograd_f6"} <= set(backend.fused_algorithms(conv, graph))
    want = run_reference(graph, {"x": x})[0]
    got = compile_graph(graph, pin="cython", use_cache=False)(x)[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
    weight[3, 2, 1, 1] = np.nan
    graph = _conv(x, weight, None, 1, False)
    from walle.ops.plan import allocate

    (conv,) = [s for s in find_steps(graph) if s.op == "fused.conv2d"]
    buffers = allocate(graph, find_steps(graph), fill=0.0)
    for name, value in zip(graph.inputs, [x], strict=True):
        buffers[name][...] = value
    for step in find_steps(graph):
        algo = "winograd" if step is conv else None
        if algo is None:
            algo = (
                backend.fused_algorithms(step, graph)[0]
                if step.fused
                else backend.atomic_algorithms(step.parts[0], graph)[0]
            )
        for call in backend.finish(backend.compile(step, algo, graph, buffers)):
            call()
    got = buffers[graph.outputs[0]]
    want = run_reference(graph, {"x": x})[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(want).sum() < want.size // 2  # only channel 3's outputs


@pytest.mark.parametrize(
    ("algorithm", "side"), [("winograd", 3), ("winograd_f2", 3), ("winograd_f2", 5)]
)
@pytest.mark.parametrize(("n", "c", "cout", "group"), [(2, 8, 6, 2), (1, 12, 9, 3)])
def test_grouped_conv_runs_a_winograd_kernel_per_group(algorithm, side, n, c, cout, group) -> None:
    """AlexNet's grouped 3x3 and 5x5 convs: each group's kernel reads its input channels and writes
    its output channels of the whole output (a batch of 2 checks the image stride)."""
    backend = backend_or_skip("cython")
    from walle.ops.fusion import find_steps
    from walle.ops.plan import allocate, is_alias

    rng = np.random.default_rng(c)
    x = rng.uniform(-1, 1, (n, c, 11, 13)).astype(np.float32)
    b = GraphBuilder()
    weight = b.const(rng.uniform(-0.5, 0.5, (cout, c // group, side, side)).astype(np.float32))
    bias = b.const(rng.uniform(-1, 1, cout).astype(np.float32))
    pads = (side // 2,) * 4
    y = b.conv2d(b.input("x", x.shape), weight, bias, pads=pads, group=group)
    graph = b.build([b.relu(y)])
    steps = find_steps(graph)
    (conv,) = [s for s in steps if s.op == "fused.group_conv2d"]
    assert algorithm in backend.fused_algorithms(conv, graph)
    buffers = allocate(graph, steps, fill=100.0)  # stale values, never zeros
    buffers[graph.inputs[0]][...] = x
    for step in steps:
        if is_alias(step, graph):
            continue
        if step is conv:
            algo = algorithm
        elif step.fused:
            algo = backend.fused_algorithms(step, graph)[0]
        else:
            algo = backend.atomic_algorithms(step.parts[0], graph)[0]
        for call in backend.finish(backend.compile(step, algo, graph, buffers)):
            call()
    want = run_reference(graph, {"x": x})[0]
    np.testing.assert_allclose(buffers[graph.outputs[0]], want, rtol=1e-4, atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 6),
    cout=st.integers(1, 11),
    h=st.integers(1, 17),
    w=st.integers(1, 23),
    pads=st.tuples(*[st.integers(0, 2)] * 4),
    sizes=st.sampled_from([(2, 3), (4, 3), (6, 3), (2, 5)]),
    special=st.booleans(),
    seed=st.integers(0, 50),
)
def test_winograd_kernel_reads_an_unpadded_source_in_place(
    n, c, cout, h, w, pads, sizes, special, seed
) -> None:
    """``pad``: the zero padding a conv reads is never stored; the kernel gets the unpadded
    tensor and where it lies, and matches the reference (asymmetric pads, NaN/inf too)."""
    ops_conv = _ops_conv()
    tile, side = sizes
    top, left, bottom, right = pads
    if h + top + bottom < side or w + left + right < side:
        return
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (n, c, h, w)).astype(np.float32)
    if special:
        x.reshape(-1)[rng.integers(0, x.size, 2)] = [np.nan, np.inf]
    weight = rng.uniform(0.1, 1, (cout, c, side, side)).astype(np.float32)
    bias = rng.uniform(-1, 1, cout).astype(np.float32)
    graph = _conv(x, weight, bias, 0, True, pads=(top, left, bottom, right))
    want = run_reference(graph, {"x": x})[0]
    out = np.full(want.shape, 7.0, np.float32)
    ops_conv.WinogradKernel(
        x, weight.reshape(cout, -1), bias, out, _region(graph), "relu", None, tile,
        pad=(top, left),
    ).run()  # fmt: skip
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(want))
    finite = np.isfinite(want)
    scale = max(1.0, float(np.abs(want[finite]).max(initial=0.0)))
    np.testing.assert_allclose(out[finite], want[finite], rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("side", [3, 5])
@pytest.mark.parametrize("shape", [(2, 5, 12, 10), (2, 5, 12, 37), (1, 64, 90, 92)])
def test_padded_conv_takes_its_pad_as_prologue_and_winograd_never_runs_it(side, shape) -> None:
    """A 3x3/5x5 stride-1 conv's zero pad is part of its step: a Winograd kernel on a narrow
    plane or a big source (2 MB here) reads the unpadded input (one call, no raster), on
    others it runs the pad first, as direct and im2col do; OpenCL's implicit conv launches
    it. All match the reference, over repeated runs."""
    backend = backend_or_skip("cython")
    from walle.ops.backends.cython_backend import _WINO_IN_PLACE_BYTES
    from walle.ops.backends.registry import available_backends
    from walle.ops.fusion import find_steps
    from walle.ops.plan import allocate, is_alias

    rng = np.random.default_rng(side)
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    width = shape[3]
    in_place = width < 16 or x.nbytes >= _WINO_IN_PLACE_BYTES
    assert in_place == (shape != (2, 5, 12, 37))
    weight = rng.uniform(-0.4, 0.4, (7, shape[1], side, side)).astype(np.float32)
    graph = _conv(x, weight, rng.uniform(-1, 1, 7).astype(np.float32), 0, True, (2, 1, 1, 2))
    want = run_reference(graph, {"x": x})[0]
    steps = find_steps(graph)
    (conv,) = [s for s in steps if s.op == "fused.conv2d"]
    assert conv.attr("prologue") == 1 and conv.inputs[0] == graph.inputs[0]
    assert conv.parts[0].op == "raster" and conv.parts[0].attr("fill") == 0.0
    others = [b for b in available_backends() if b.name == "opencl"]
    for be in [backend, *others]:
        for algorithm in be.algorithms(conv, graph):
            buffers = allocate(graph, steps, fill=100.0)
            calls = []
            for step in steps:
                if is_alias(step, graph):
                    continue
                algo = algorithm if step is conv else be.algorithms(step, graph)[0]
                calls += be.compile(step, algo, graph, buffers)
            if algorithm.startswith("winograd"):  # read in place: the pad is never run
                assert len(calls) == (1 if in_place else 2)
            run = be.finish(calls)
            for _ in range(2):
                buffers[graph.inputs[0]][...] = x
                for call in run:
                    call()
                np.testing.assert_allclose(
                    buffers[graph.outputs[0]], want, rtol=1e-4, atol=1e-4, err_msg=algorithm
                )

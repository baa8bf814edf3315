"""The ``lanes`` conv kernel (output channels in the vector lanes, conv_lanes.h) at every
instruction-set level and tile shape, against the numpy reference.

The search only ever runs one level and one tile shape on a given CPU, so this test builds
``ops_conv.LanesConvKernel`` at each level the test machine runs (AVX-512 with both of its
tiles: 16 channels x 16 columns and 32 x 8) on random first-layer shapes: 1 to 4 input
channels (and up to 64, which strided convs offer it), strides 1 to 4 (the tile's
compile-time column strides), dilations, pads, rows whose width is not a multiple of a tile
(the last tile is shifted back), channel counts that leave a block part-empty, and inputs
with NaN and inf (ReLU keeps NaN). The deep tiles (``lanes_deep``: convs of many taps) run
along the flattened output plane at any column stride: planes from 1 x 1 up, tiles that
cross rows, a last tile of fewer positions, every deep shape (2, 3 and 4 vectors of
channels at AVX-512), and chunks of positions that every block of channels takes in turn.
Tolerance: 1e-4 relative, and 1e-4 of the output's largest magnitude absolute (float32).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import backend_or_skip, im2col_node
from walle.ops import GraphBuilder, run_reference
from walle.ops.ir import Region


def _atol(want: np.ndarray) -> float:
    """1e-4 of the output's scale: a sum of thousands of taps (11 x 11 x 48) that cancels to
    near 0 keeps the rounding of its large terms."""
    finite = np.abs(want[np.isfinite(want)])
    return 1e-4 * max(1.0, float(finite.max(initial=0.0)))


def _ops_conv():
    backend_or_skip("cython")
    from walle._kernels import ops_conv

    return ops_conv


def _conv_case(rng, n, c, cout, rows, cols, k, s, d, pad, act, special):
    """x, the padded x, weights, bias, the im2col region and the reference output of a conv
    (with ``act``: none, relu, relu6 or hard_swish)."""
    x = rng.uniform(-2, 2, (n, c, rows, cols)).astype(np.float32)
    if special:
        flat = x.reshape(-1)
        flat[::13] = np.nan
        flat[1::17] = np.inf
        flat[2::19] = -np.inf
    weight = rng.uniform(-1, 1, (cout, c, *k)).astype(np.float32)
    bias = rng.uniform(-1, 1, cout).astype(np.float32)
    b = GraphBuilder()
    y = b.conv2d(
        b.input("x", x.shape),
        b.const(weight),
        b.const(bias),
        strides=(s, s),
        dilations=(d, d),
        pads=(pad,) * 4,
    )
    if act == "relu6":
        y = b.clip(y, b.const(np.float32(0.0)), b.const(np.float32(6.0)))
    elif act == "relu":
        y = b.relu(y)
    elif act == "hard_swish":
        y = b.hard_swish(y)
    graph = b.build([y])
    want = run_reference(graph, {"x": x})[0]
    region = im2col_node(graph).attr("regions")[0]
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    return padded, weight.reshape(cout, -1), bias, region, want


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 2),
    c=st.one_of(st.integers(1, 4), st.integers(5, 64)),  # more than 4: strided convs
    cout=st.integers(1, 40),
    h=st.integers(1, 6),
    k=st.sampled_from([(1, 1), (3, 3), (7, 7), (3, 2), (11, 11)]),
    s=st.integers(1, 4),
    d=st.integers(1, 2),
    pad=st.integers(0, 3),
    extra=st.integers(0, 40),
    act=st.sampled_from(["none", "relu", "relu6"]),
    special=st.booleans(),
    seed=st.integers(0, 30),
    ahead=st.booleans(),
)
def test_ops_lanes_kernel_every_level_matches_reference(
    n, c, cout, h, k, s, d, pad, extra, act, special, seed, ahead
):
    ops_conv = _ops_conv()
    rng = np.random.default_rng(seed)
    span = d * (k[1] - 1) + 1
    w = (16 + extra - 1) * s + span - 2 * pad  # 16 + extra output columns
    rows = max(h, d * (k[0] - 1) + 1)
    padded, weight, bias, region, want = _conv_case(
        rng, n, c, cout, rows, w, k, s, d, pad, act, special
    )
    assert ops_conv.lanes_fits(region)
    shapes = [("avx512", False), ("avx512", True), ("avx2", None), ("sse", None)]
    for level, wide in shapes:
        out = np.full(want.shape, -7.0, np.float32)  # stale values, never zeros
        try:
            kernel = ops_conv.LanesConvKernel(
                padded, weight, bias, out, region, act, level, wide,
                l2_bytes=0 if ahead else 1 << 30,  # the source beyond the L2, or in it
            )  # fmt: skip
        except ValueError as exc:
            assert "does not run" in str(exc)
            continue
        assert (kernel.ahead > 0) == ahead
        kernel.run()
        np.testing.assert_array_equal(np.isnan(out), np.isnan(want), err_msg=level)
        np.testing.assert_allclose(
            out, want, rtol=1e-4, atol=_atol(want), err_msg=f"{level} {wide}"
        )
        # run_io: the caller's arrays (a network's input read where it lies): the same bits
        again = np.full(want.shape, -7.0, np.float32)
        kernel.run_io(padded.copy(), again)
        np.testing.assert_array_equal(again, out, err_msg=f"run_io {level} {wide}")


@pytest.mark.parametrize(
    ("ow", "stride", "fits"), [(16, 1, True), (15, 1, False), (40, 4, True), (40, 5, False)]
)
def test_ops_lanes_kernel_takes_rows_of_one_tile_and_strides_up_to_4(ow, stride, fits) -> None:
    ops_conv = _ops_conv()
    w = (ow - 1) * stride + 3
    region = Region(0, 0, (3 * 5 * w, 5 * w, w, 1, stride * w, stride), 0, (0,) * 6,
                    (1, 3, 3, 3, 1, ow))  # fmt: skip
    assert ops_conv.lanes_fits(region) == fits
    x = np.zeros((1, 3, 5, w), np.float32)
    out = np.zeros((1, 4, ow), np.float32)
    weight = np.zeros((4, 27), np.float32)
    if fits:
        ops_conv.LanesConvKernel(x, weight, None, out, region, "relu").run()
        return
    with pytest.raises(ValueError, match="lanes conv kernel: output rows of"):
        ops_conv.LanesConvKernel(x, weight, None, out, region, "relu")


def test_ops_lanes_kernel_run_io_refuses_arrays_of_other_sizes() -> None:
    ops_conv = _ops_conv()
    region = Region(0, 0, (3 * 5 * 20, 5 * 20, 20, 1, 20, 1), 0, (0,) * 6, (1, 3, 3, 3, 3, 18))
    x, out = np.zeros((1, 3, 5, 20), np.float32), np.zeros((1, 2, 54), np.float32)
    kernel = ops_conv.LanesConvKernel(x, np.zeros((2, 27), np.float32), None, out, region, "none")
    assert kernel.io_arrays()[0] is x and kernel.io_arrays()[1] is out
    for bad_x, bad_out in ((x[:, :, :4], out), (x, out[:, :1]), (x.astype(np.float64), out)):
        with pytest.raises(ValueError, match="run_io needs"):
            kernel.run_io(bad_x, bad_out)


def test_ops_lanes_kernel_refuses_a_region_outside_its_source() -> None:
    ops_conv = _ops_conv()
    region = Region(0, 0, (3 * 5 * 20, 5 * 20, 20, 1, 20, 1), 0, (0,) * 6, (1, 3, 3, 3, 4, 18))
    out, weight = np.zeros((1, 2, 72), np.float32), np.zeros((2, 27), np.float32)
    with pytest.raises(ValueError, match="reads outside the source"):
        ops_conv.LanesConvKernel(np.zeros((1, 3, 5, 20), np.float32), weight, None, out,
                                 region, "none")  # fmt: skip


@pytest.mark.parametrize(
    ("cout", "stride", "wide"), [(16, 2, False), (8, 2, False), (17, 2, True), (64, 2, True),
                                 (64, 1, False)],
)  # fmt: skip
def test_ops_lanes_kernel_takes_the_wide_tile_only_where_its_channels_fill_it(
    cout, stride, wide
) -> None:
    """AVX-512's 32-channel x 8-column tile for strided convs of more than 16 channels: at 16
    or fewer its block is half zeros (PP-LCNet's 16-channel 3x3/2 stem took 1.8x the time)."""
    ops_conv = _ops_conv()
    ow = 16
    w = (ow - 1) * stride + 3
    region = Region(0, 0, (3 * 3 * w, 3 * w, w, 1, stride * w, stride), 0, (0,) * 6,
                    (1, 3, 3, 3, 1, ow))  # fmt: skip
    x, out = np.zeros((1, 3, 3, w), np.float32), np.zeros((1, cout, ow), np.float32)
    weight = np.zeros((cout, 27), np.float32)
    for level in ("avx512", "avx2"):
        try:
            kernel = ops_conv.LanesConvKernel(x, weight, None, out, region, "none", level)
        except ValueError as exc:
            assert "does not run" in str(exc)
            continue
        assert kernel.wide == (wide and level == "avx512")


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 24),
    cout=st.integers(1, 70),
    oh=st.integers(1, 9),
    ow=st.integers(1, 13),
    k=st.sampled_from([(1, 1), (3, 3), (5, 5), (3, 1), (2, 3)]),
    s=st.integers(1, 6),  # any column stride: each position has its own offset
    d=st.integers(1, 2),
    pad=st.integers(0, 2),
    act=st.sampled_from(["none", "relu", "relu6", "hard_swish"]),
    special=st.booleans(),
    seed=st.integers(0, 30),
    ahead=st.booleans(),
)
def test_ops_lanes_deep_tiles_every_level_match_reference(
    n, c, cout, oh, ow, k, s, d, pad, act, special, seed, ahead
) -> None:
    ops_conv = _ops_conv()
    rng = np.random.default_rng(seed)
    rows = (oh - 1) * s + d * (k[0] - 1) + 1 - 2 * pad
    cols = (ow - 1) * s + d * (k[1] - 1) + 1 - 2 * pad
    if rows < 1 or cols < 1:
        return
    padded, weight, bias, region, want = _conv_case(
        rng, n, c, cout, rows, cols, k, s, d, pad, act, special
    )
    assert ops_conv.lanes_fits(region, True)
    for level in ("avx512", "avx2", "sse"):
        out = np.full(want.shape, -7.0, np.float32)  # stale values, never zeros
        try:
            kernel = ops_conv.LanesConvKernel(
                padded, weight, bias, out, region, act, level, deep=True,
                l2_bytes=0 if ahead else 1 << 30,  # the source beyond the L2, or in it
            )  # fmt: skip
        except ValueError as exc:
            assert "does not run" in str(exc)
            continue
        assert kernel.deep and not kernel.wide
        assert (kernel.ahead > 0) == ahead
        kernel.run()
        np.testing.assert_array_equal(np.isnan(out), np.isnan(want), err_msg=level)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=_atol(want), err_msg=level)
        again = np.full(want.shape, -7.0, np.float32)
        kernel.run_io(padded.copy(), again)
        np.testing.assert_array_equal(again, out, err_msg=f"run_io {level}")


@pytest.mark.parametrize(
    ("cout", "form512"), [(16, 2), (32, 2), (40, 3), (48, 3), (64, 4), (96, 3), (128, 4)]
)
def test_ops_lanes_deep_tiles_take_the_shape_that_pads_the_channels_least(cout, form512):
    """AVX-512: 2, 3 or 4 vectors of channels, whichever leaves the fewest padded channels
    (the widest on a tie: fewer loads per multiply-add); AVX2 and SSE: 2 (3 spilled)."""
    ops_conv = _ops_conv()
    rng = np.random.default_rng(1)
    padded, weight, bias, region, want = _conv_case(
        rng, 1, 16, cout, 5, 7, (3, 3), 1, 1, 1, "relu", False
    )
    for level in ("avx512", "avx2", "sse"):
        out = np.empty(want.shape, np.float32)
        try:
            kernel = ops_conv.LanesConvKernel(
                padded, weight, bias, out, region, "relu", level, deep=True
            )
        except ValueError as exc:
            assert "does not run" in str(exc)
            continue
        assert kernel.form == (form512 if level == "avx512" else 2)
        kernel.run()
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4, err_msg=level)


@pytest.mark.parametrize(
    ("c", "cout", "rows", "cols", "chunked"),
    [(32, 96, 200, 160, True), (128, 256, 14, 14, False)],
)
def test_ops_lanes_deep_tiles_chunk_the_plane_where_the_input_outweighs_the_weights(
    c, cout, rows, cols, chunked
) -> None:
    """32 -> 96 3x3/2 on 200 x 160 (4.2 MB of input, small weights): the plane's positions
    in chunks of whole rows (a multiple of the tile), each chunk's blocks of channels in
    turn, a last chunk of fewer rows. 128 -> 256 3x3/2 on 14 x 14 (1.2 MB of weights, 131 KB
    of input): every block takes the whole plane (each chunk would read all the weights).
    The same sums as the reference at every level."""
    ops_conv = _ops_conv()
    rng = np.random.default_rng(3)
    padded, weight, bias, region, want = _conv_case(
        rng, 1, c, cout, rows, cols, (3, 3), 2, 1, 1, "relu", False
    )
    plane = want.shape[2] * want.shape[3]
    for level in ("avx512", "avx2", "sse"):
        out = np.full(want.shape, -7.0, np.float32)
        try:
            kernel = ops_conv.LanesConvKernel(
                padded, weight, bias, out, region, "relu", level, deep=True
            )
        except ValueError as exc:
            assert "does not run" in str(exc)
            continue
        assert (0 < kernel.chunk < plane) if chunked else kernel.chunk == plane
        kernel.run()
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=_atol(want), err_msg=level)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 20),
    cout=st.integers(1, 40),
    h=st.integers(1, 12),
    w=st.integers(1, 40),
    k=st.sampled_from([(1, 1), (3, 3), (5, 5), (3, 1), (7, 7)]),
    s=st.integers(1, 4),
    d=st.integers(1, 2),
    pads=st.tuples(*[st.integers(0, 3)] * 4),
    deep=st.booleans(),
    band_bytes=st.sampled_from([1, 2000, 20000, 1 << 30]),
    special=st.booleans(),
    seed=st.integers(0, 30),
)
def test_ops_lanes_kernel_reads_an_unpadded_source_a_band_at_a_time(
    n, c, cout, h, w, k, s, d, pads, deep, band_bytes, special, seed
) -> None:
    """``pad``: the unpadded source, each band's padded rows copied into a scratch first
    (bands of one output row up to the whole plane, pads on any side, a bottom or right pad
    the windows never reach): the same bits as the kernel on the padded tensor."""
    ops_conv = _ops_conv()
    rng = np.random.default_rng(seed)
    top, bottom, left, right = pads
    hp, wp = h + top + bottom, w + left + right
    oh, ow = (hp - d * (k[0] - 1) - 1) // s + 1, (wp - d * (k[1] - 1) - 1) // s + 1
    if oh < 1 or ow < 1:
        return
    x = rng.uniform(-2, 2, (n, c, h, w)).astype(np.float32)
    if special:
        flat = x.reshape(-1)
        flat[::13] = np.nan
        flat[1::17] = np.inf
    padded = np.zeros((n, c, hp, wp), np.float32)
    padded[:, :, top : top + h, left : left + w] = x
    weight = rng.uniform(-1, 1, (cout, c * k[0] * k[1])).astype(np.float32)
    bias = rng.uniform(-1, 1, cout).astype(np.float32)
    region = Region(
        0, 0, (c * hp * wp, hp * wp, d * wp, d, s * wp, s), 0, (0,) * 6, (n, c, *k, oh, ow)
    )
    if not ops_conv.lanes_fits(region, deep):
        return
    for level in ("avx512", "avx2", "sse"):
        want = np.full((n, cout, oh, ow), -7.0, np.float32)
        try:
            apart = ops_conv.LanesConvKernel(padded, weight, bias, want, region, "relu", level,
                                             deep=deep)  # fmt: skip
        except ValueError as exc:
            assert "does not run" in str(exc)
            continue
        apart.run()
        got = np.full(want.shape, 5.0, np.float32)
        kernel = ops_conv.LanesConvKernel(
            x, weight, bias, got, region, "relu", level, deep=deep,
            pad=(top, left, hp, wp), band_bytes=band_bytes, l2_bytes=0,
        )  # fmt: skip
        assert kernel.padded and 1 <= kernel.band <= oh
        assert kernel.ahead == 0  # its band of padded rows is in L2, whatever the source
        for _ in range(2):  # a scratch's stale rows from the run before change nothing
            kernel.run()
            np.testing.assert_array_equal(got, want, err_msg=f"{level} band {kernel.band}")
        again = np.full(want.shape, 5.0, np.float32)
        caller = x.copy()
        kernel.run_io(caller, again)  # the caller's unpadded array, read where it lies
        np.testing.assert_array_equal(again, want, err_msg=f"run_io {level}")
        np.testing.assert_array_equal(caller, x)


def test_ops_lanes_kernel_refuses_a_pad_that_does_not_match_its_region() -> None:
    ops_conv = _ops_conv()
    region = Region(0, 0, (3 * 7 * 22, 7 * 22, 22, 1, 22, 1), 0, (0,) * 6, (1, 3, 3, 3, 5, 20))
    x, out = np.zeros((1, 3, 5, 20), np.float32), np.zeros((1, 2, 100), np.float32)
    weight = np.zeros((2, 27), np.float32)
    ops_conv.LanesConvKernel(x, weight, None, out, region, "none", pad=(1, 1, 7, 22)).run()
    for pad in ((1, 1, 7, 23), (3, 1, 7, 22), (1, 3, 7, 22)):  # other planes; past an edge
        with pytest.raises(ValueError, match="does not match the region's padded planes"):
            ops_conv.LanesConvKernel(x, weight, None, out, region, "none", pad=pad)
    with pytest.raises(ValueError, match=r"an unpadded source of shape \(1, 4, 5, 20\)"):
        ops_conv.LanesConvKernel(np.zeros((1, 4, 5, 20), np.float32), weight, None, out,
                                 region, "none", pad=(1, 1, 7, 22))  # fmt: skip


@pytest.mark.parametrize("then_pool", [False, True])
@pytest.mark.parametrize("algorithm", ["lanes", "lanes_deep"])
def test_ops_padded_strided_conv_takes_its_pad_and_the_lanes_kernel_never_writes_it(
    algorithm, then_pool
) -> None:
    """A strided conv whose zero pad feeds it alone (not a graph input's) takes the pad as
    its step's prologue; a lanes kernel then reads the unpadded tensor (one call, a band of
    padded rows at a time), others run the pad first; with a pool after it (a plan's joint
    lanes conv and pool) the same outputs as the reference."""
    from tests._backends import compile_placed, run1_matches_reference
    from walle.ops.fusion import find_steps

    backend_or_skip("cython")
    rng = np.random.default_rng(2)
    weight = rng.uniform(-1, 1, (24, 16, 3, 3)).astype(np.float32)
    b = GraphBuilder()
    x = b.relu(b.input("x", (1, 16, 40, 44)))  # the pad's input is not the graph's
    y = b.relu(b.conv2d(x, b.const(weight), None, strides=(2, 2), pads=(1, 1, 1, 1)))
    if then_pool:
        y = b.max_pool(y, (3, 3), strides=(2, 2))
    graph = b.build([y])
    (conv,) = [s for s in find_steps(graph) if s.op == "fused.conv2d"]
    assert conv.attr("prologue") == 1
    backend = backend_or_skip("cython")
    assert algorithm in backend.algorithms(conv, graph)
    plan = compile_placed(graph, lambda step: "cython", algorithms={conv.output: algorithm})
    calls = [c for name, c in plan.step_calls if name == conv.name]
    assert len(calls) == 1  # the pad never runs as a raster of its own
    kernel = getattr(calls[0], "__self__", None)
    ops_conv = _ops_conv()
    if then_pool:
        assert isinstance(kernel, ops_conv.LanesPoolKernel)
    else:
        assert isinstance(kernel, ops_conv.LanesConvKernel) and kernel.padded
    run1_matches_reference(plan, graph, (1, 16, 40, 44))

"""Grouped and depthwise convs on the cython backend (ops_group), against the numpy reference.

``fused.group_conv2d`` steps run ``ops_group.GroupConvKernel`` (block tiles per group, or the
per-channel depthwise kernel, its input read through a channel shuffle and a zero pad in
place), one packed-GEMM or Winograd kernel per group, or, for 1x1 convs, numpy's batched
matmul + ``BiasActKernel``. Each is checked at
every instruction-set level this CPU runs, on random shapes, groups, strides, pads and
dilations; NaN and infinities propagate as in the reference. Tolerance 1e-4 (float32).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import backend_or_skip, im2col_node, run_with_algorithm
from walle.ops import GraphBuilder, run_reference
from walle.ops.fusion import find_steps

LEVELS = ("avx512", "avx2", "sse")


def _ops_group():
    backend_or_skip("cython")
    from walle._kernels import ops_group

    return ops_group


def _conv_graph(x_shape, weight, bias, group, stride, pad, dilation, relu, shuffle=False):
    """``pad``: one pad for every side, (top and bottom, left and right), or ONNX's four
    (top, left, bottom, right)."""
    pads = (pad,) * 4 if isinstance(pad, int) else tuple(pad) if len(pad) == 4 else (*pad, *pad)
    b = GraphBuilder()
    x = b.input("x", x_shape)
    if shuffle:  # ShuffleNet's channel shuffle: [N, 2, C/2, H, W] -> transpose -> [N, C, H, W]
        n, c, h, w = x_shape
        x = b.reshape(b.transpose(b.reshape(x, (n, 2, c // 2, h, w)), (0, 2, 1, 3, 4)), x_shape)
    y = b.conv2d(
        x,
        b.const(weight),
        b.const(bias) if bias is not None else None,
        strides=(stride, stride),
        pads=pads,
        dilations=(dilation, dilation),
        group=group,
    )
    return b.build([b.relu(y) if relu else y])


def _run(graph, feeds, level):
    from walle.ops.backends import cython_isa
    from walle.ops.search import compile_graph

    before = cython_isa.kernel_level()
    cython_isa.set_level(level)
    try:
        return compile_graph(graph, pin="cython", use_cache=False)(*feeds.values())[0]
    finally:
        cython_isa.set_level(before)


def _runnable(ops_group) -> list[str]:
    return [name for name in LEVELS if ops_group.LEVELS[name] <= ops_group.best_level()]


def _kernel_matches_reference_at_every_level(ops_group, graph, x, weight, bias, act) -> list:
    """GroupConvKernel on the graph's conv (its one im2col raster) at every level this CPU
    runs, each output within 1e-4 of the reference's; the kernels, for further checks."""
    want = run_reference(graph, {"x": x})[0]
    im2col = im2col_node(graph)
    group = x.shape[1] // weight.shape[1]  # weight: [cout, channels a group, kh, kw]
    kernels = []
    for level in _runnable(ops_group):
        out = np.full(want.shape, np.nan, np.float32)
        kernel = ops_group.GroupConvKernel(
            x, weight, bias, out, im2col.attr("regions")[0], group, act, level
        )
        kernel.run()
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4, err_msg=level)
        kernels.append(kernel)
    return kernels


@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(1, 2),
    cin=st.integers(1, 5),
    group=st.integers(2, 4),
    mult=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 40),
    k=st.sampled_from([(1, 1), (3, 3), (3, 2), (5, 5)]),
    stride=st.integers(1, 2),
    pad=st.integers(0, 2),
    dilation=st.integers(1, 2),
    relu=st.booleans(),
    seed=st.integers(0, 30),
)
def test_group_conv_kernel_every_level_matches_reference(
    n, cin, group, mult, h, w, k, stride, pad, dilation, relu, seed
):
    ops_group = _ops_group()
    rng = np.random.default_rng(seed)
    c, cout = cin * group, mult * group
    hp, wp = h + 2 * pad, w + 2 * pad
    if hp < dilation * (k[0] - 1) + 1 or wp < dilation * (k[1] - 1) + 1:
        return
    x = rng.uniform(-2, 2, (n, c, hp, wp)).astype(np.float32)
    weight = rng.uniform(-1, 1, (cout, cin, *k)).astype(np.float32)
    bias = rng.uniform(-1, 1, cout).astype(np.float32)
    graph = _conv_graph(x.shape, weight, bias, group, stride, 0, dilation, relu)
    act = "relu" if relu else "none"
    kernels = _kernel_matches_reference_at_every_level(ops_group, graph, x, weight, bias, act)
    assert all(kernel.depthwise == (cin == 1) for kernel in kernels)


@pytest.mark.parametrize("per_group", [3, 6, 9])
@pytest.mark.parametrize("width", [16, 24, 40, 47, 64])
def test_group_conv_block_tiles_of_every_width_match_reference(per_group, width) -> None:
    """Block tiles of every row width at every level (AVX2's of 3 and 2 vectors run two
    passes of 4 channels, as SSE's: 3 output channels a group take one, 6 both, 9 a second
    block)."""
    ops_group = _ops_group()
    rng = np.random.default_rng(width + per_group)
    group, cin = 2, 3
    x = rng.uniform(-2, 2, (1, group * cin, 4, width + 2)).astype(np.float32)
    weight = rng.uniform(-1, 1, (group * per_group, cin, 3, 3)).astype(np.float32)
    bias = rng.uniform(-1, 1, group * per_group).astype(np.float32)
    graph = _conv_graph(x.shape, weight, bias, group, 1, 0, 1, True)
    _kernel_matches_reference_at_every_level(ops_group, graph, x, weight, bias, "relu")


@settings(max_examples=8, deadline=None)
@given(
    c=st.sampled_from([2, 4, 6, 8]),
    mult=st.integers(1, 2),
    h=st.integers(2, 20),
    w=st.integers(2, 33),
    stride=st.integers(1, 2),
    pad=st.integers(0, 2),
    shuffle=st.booleans(),
    relu=st.booleans(),
    seed=st.integers(0, 30),
)
def test_depthwise_step_with_shuffle_and_pad_matches_reference(
    c, mult, h, w, stride, pad, shuffle, relu, seed
):
    ops_group = _ops_group()
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (2, c, h, w)).astype(np.float32)
    weight = rng.uniform(-1, 1, (c * mult, 1, 3, 3)).astype(np.float32)
    bias = rng.uniform(-1, 1, c * mult).astype(np.float32)
    if h + 2 * pad < 3 or w + 2 * pad < 3:
        return
    graph = _conv_graph(x.shape, weight, bias, c, stride, pad, 1, relu, shuffle)
    (step,) = [s for s in find_steps(graph) if s.op == "fused.group_conv2d"]
    assert step.attr("prologue") >= (1 if pad or shuffle else 0)
    want = run_reference(graph, {"x": x})[0]
    for level in _runnable(ops_group):
        np.testing.assert_allclose(
            _run(graph, {"x": x}, level), want, rtol=1e-4, atol=1e-4, err_msg=level
        )


@settings(max_examples=60, deadline=None)
@given(
    c=st.integers(1, 5),
    mult=st.integers(1, 2),
    h=st.integers(1, 20),
    w=st.integers(1, 70),
    k=st.sampled_from([3, 5]),
    pad=st.sampled_from([(1, 1), (0, 0), (1, 0), (0, 1), (2, 2), (2, 1)]),
    stride=st.integers(1, 2),
    shuffle=st.booleans(),
    relu=st.booleans(),
    seed=st.integers(0, 30),
)
def test_depthwise_3x3_and_5x5_rows_at_every_level_match_reference(
    c, mult, h, w, k, pad, stride, shuffle, relu, seed
):
    """The 3x3 and 5x5 depthwise tiles (vertical bands of output rows sharing their input
    loads; at stride 1 one vector a row where the row fits, else columns with the last
    shifted back; 3x3 at stride 2 even/odd lane splits, or, at AVX2 from source rows of 48,
    rows split into even and odd columns as they are copied, from an even or odd left pad)
    on every plane size from 1 x 1 to 20 x 70, padded in place from the source or not."""
    ops_group = _ops_group()
    rng = np.random.default_rng(seed)
    c = 2 * c if shuffle else c
    x = rng.uniform(-2, 2, (1, c, h, w)).astype(np.float32)
    weight = rng.uniform(-1, 1, (c * mult, 1, k, k)).astype(np.float32)
    bias = rng.uniform(-1, 1, c * mult).astype(np.float32)
    top, left = pad
    if h + 2 * top < k or w + 2 * left < k:
        return
    graph = _conv_graph(x.shape, weight, bias, c, stride, pad, 1, relu, shuffle)
    want = run_reference(graph, {"x": x})[0]
    for level in _runnable(ops_group):
        np.testing.assert_allclose(
            _run(graph, {"x": x}, level), want, rtol=1e-4, atol=1e-4, err_msg=level
        )


@pytest.mark.parametrize("w", [48, 57, 112])
@pytest.mark.parametrize("pad", [(1, 1), (0, 1), (1, 0)])
@pytest.mark.parametrize("mult", [1, 2])
def test_depthwise_3x3_stride2_wide_rows_match_reference(w, pad, mult) -> None:
    """Wide rows (the AVX2 kernel had split them into even and odd columns as it copied
    them, 48 floats and up; its tiles now pick even and odd lanes within 128-bit halves),
    even and odd widths and left pads, one or two outputs per input channel, NaN and
    infinities among the inputs, at every level."""
    ops_group = _ops_group()
    rng = np.random.default_rng(w + 10 * mult)
    c, h = 3, 9
    x = rng.uniform(-2, 2, (1, c, h, w)).astype(np.float32)
    x[0, 0, 4, 50 % w], x[0, 1, 0, w - 1], x[0, 2, h - 1, 0] = np.nan, np.inf, -np.inf
    weight = rng.uniform(-1, 1, (c * mult, 1, 3, 3)).astype(np.float32)
    bias = rng.uniform(-1, 1, c * mult).astype(np.float32)
    graph = _conv_graph(x.shape, weight, bias, c, 2, pad, 1, True)
    want = run_reference(graph, {"x": x})[0]
    for level in _runnable(ops_group):
        got = _run(graph, {"x": x}, level)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=level)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=level)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("k", [1, 3])
def test_group_conv_steps_propagate_nan_and_inf_as_the_reference(relu: bool, k: int) -> None:
    ops_group = _ops_group()
    rng = np.random.default_rng(3)
    for cin in (1, 3):  # depthwise, then block tiles (and numpy's matmul for 1x1)
        group = 4
        x = rng.uniform(-2, 2, (1, cin * group, 6, 19)).astype(np.float32)
        x[0, 0, 2, 3], x[0, -1, 4, 17], x[0, 1, 0, 0] = np.nan, np.inf, -np.inf
        weight = rng.uniform(-1, 1, (2 * group, cin, k, k)).astype(np.float32)
        bias = rng.uniform(-1, 1, 2 * group).astype(np.float32)
        graph = _conv_graph(x.shape, weight, bias, group, 1, k // 2, 1, relu)
        want = run_reference(graph, {"x": x})[0]
        assert np.isnan(want).any()
        for level in _runnable(ops_group):
            got = _run(graph, {"x": x}, level)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=level)
            finite = np.isfinite(want)
            np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4, atol=1e-4)
            np.testing.assert_array_equal(got[~finite & ~np.isnan(want)], want[np.isinf(want)])


@pytest.mark.parametrize(
    ("cin", "group", "k", "stride", "w"),
    [(4, 3, 1, 1, 49), (5, 2, 1, 2, 30), (4, 2, 3, 1, 21), (6, 4, 3, 2, 17), (4, 2, 5, 1, 12)],
)
def test_every_group_conv_algorithm_matches_reference(cin, group, k, stride, w) -> None:
    """Each algorithm the backend offers for a grouped step, compiled directly (the search
    would only run the fastest): the per-group kernels write their slices of one output."""
    backend = backend_or_skip("cython")
    rng = np.random.default_rng(cin * w)
    x = rng.uniform(-2, 2, (2, cin * group, 9, w)).astype(np.float32)
    weight = rng.uniform(-1, 1, (3 * group, cin, k, k)).astype(np.float32)
    bias = rng.uniform(-1, 1, 3 * group).astype(np.float32)
    graph = _conv_graph(x.shape, weight, bias, group, stride, 0, 1, True)
    want = run_reference(graph, {"x": x})[0]
    steps = find_steps(graph)
    (step,) = [s for s in steps if s.op == "fused.group_conv2d"]
    algorithms = backend.fused_algorithms(step, graph)
    assert "gemm" in algorithms and ("winograd_f2" in algorithms) == (k > 1 and stride == 1)
    assert ("gemm_direct" in algorithms) == (k == 1 and stride == 1)
    for algorithm in algorithms:
        got = run_with_algorithm(backend, graph, {"x": x}, step, algorithm)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=algorithm)


@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(1, 2),
    cin=st.integers(4, 9),
    group=st.integers(2, 4),
    mult=st.integers(1, 9),
    hw=st.sampled_from([(7, 7), (3, 11), (14, 14), (1, 5)]),
    relu=st.booleans(),
    bias=st.booleans(),
    seed=st.integers(0, 30),
)
def test_grouped_1x1_conv_with_residual_add_is_one_step_and_matches_reference(
    n, cin, group, mult, hw, relu, bias, seed
) -> None:
    """ShuffleNet's unit: a grouped 1x1 conv, the add of a shortcut and a ReLU fuse into one
    step; each algorithm the backend offers for it (numpy's batched BLAS with the shortcut in
    its epilogue, the packed GEMM per group), at every level, on stale buffers, matches the
    reference, NaN in the shortcut included."""
    backend = backend_or_skip("cython")
    ops_group = _ops_group()
    rng = np.random.default_rng(seed)
    c, cout = cin * group, mult * group
    x = rng.uniform(-2, 2, (n, c, *hw)).astype(np.float32)
    short = rng.uniform(-2, 2, (n, cout, *hw)).astype(np.float32)
    short.reshape(-1)[seed % short.size] = np.nan
    weight = rng.uniform(-1, 1, (cout, cin, 1, 1)).astype(np.float32)
    b = GraphBuilder()
    xin, sin = b.input("x", x.shape), b.input("s", short.shape)
    b_const = b.const(rng.uniform(-1, 1, cout).astype(np.float32)) if bias else None
    y = b.binary("add", b.conv2d(xin, b.const(weight), b_const, group=group), sin)
    graph = b.build([b.relu(y) if relu else y])
    feeds = {"x": x, "s": short}
    want = run_reference(graph, feeds)[0]
    (step,) = [s for s in find_steps(graph) if s.op == "fused.group_conv2d"]
    assert step.attr("residual") and step.attr("act") == ("relu" if relu else "none")
    algorithms = backend.fused_algorithms(step, graph)
    assert algorithms and "direct" not in algorithms, algorithms
    from walle.ops.backends import cython_isa

    before = cython_isa.kernel_level()
    try:
        for level in _runnable(ops_group):
            cython_isa.set_level(level)
            for algorithm in algorithms:
                got = run_with_algorithm(backend, graph, feeds, step, algorithm)
                np.testing.assert_allclose(
                    got, want, rtol=1e-4, atol=1e-4, err_msg=f"{level} {algorithm}"
                )
    finally:
        cython_isa.set_level(before)


def test_bias_act_kernel_keeps_nan_and_adds_per_channel_bias() -> None:
    ops_group = _ops_group()
    y = np.array([[[-1.0, np.nan], [2.0, -3.0]], [[0.5, -0.5], [np.inf, -np.inf]]], np.float32)
    bias = np.array([0.25, -1.0], np.float32)
    want = np.maximum(y + bias[None, :, None], 0.0)
    want[0, 0, 1] = np.nan
    for level in _runnable(ops_group):
        got = y.copy()
        ops_group.BiasActKernel(got, bias, 2, "relu", level).run()
        np.testing.assert_array_equal(got, want)


def test_group_conv_kernels_refuse_what_they_cannot_run() -> None:
    ops_group = _ops_group()
    from walle.ops.ir import Region

    x, out = np.zeros((1, 4, 3, 3), np.float32), np.zeros((1, 4, 3, 3), np.float32)
    region = Region(0, 0, (36, 9, 3, 1, 3, 1), 0, (36, 9, 9, 9, 3, 1), (1, 4, 1, 1, 3, 3))
    weight = np.zeros((4, 1), np.float32)
    with pytest.raises(ValueError, match="activation"):
        ops_group.GroupConvKernel(x, weight, None, out, region, 4, "tanh")
    with pytest.raises(ValueError, match="groups"):
        ops_group.GroupConvKernel(x, weight, None, out, region, 3, "none")
    with pytest.raises(ValueError, match="level"):
        ops_group.GroupConvKernel(x, weight, None, out, region, 4, "none", "neon")
    with pytest.raises(ValueError, match="planes"):
        planes = (np.zeros(4, np.int64), 3, 3, 3, 0, 0, 2, 2)
        ops_group.GroupConvKernel(x, weight, None, out, region, 4, "none", None, planes)
    with pytest.raises(ValueError, match="activation"):
        ops_group.BiasActKernel(out, None, 4, "sigmoid")


def _assert_direct_gives_the_padded_inputs_bits(ops_group, graph, x, plain, padded) -> None:
    """At every level this CPU runs: the depthwise ``direct`` kernel on ``graph`` (its conv
    pads ``x``: the kernel reads the unpadded source) gives the bits of the same kernel on
    ``plain`` (no pads) fed ``padded``, NaN where the reference has NaN, and the reference's
    values within 1e-4."""
    from tests._backends import compile_placed
    from walle.ops.backends import cython_isa

    want = run_reference(graph, {"x": x})[0]
    before = cython_isa.kernel_level()
    for level in _runnable(ops_group):
        cython_isa.set_level(level)
        try:
            outs = []
            for g, feed in ((graph, x), (plain, padded)):
                conv = [s.output for s in find_steps(g) if s.op == "fused.group_conv2d"]
                algorithms = dict.fromkeys(conv, "direct")
                outs.append(compile_placed(g, lambda s: "cython", algorithms=algorithms)(feed)[0])
        finally:
            cython_isa.set_level(before)
        np.testing.assert_array_equal(outs[0], outs[1], err_msg=level)
        np.testing.assert_array_equal(np.isnan(outs[0]), np.isnan(want), err_msg=level)
        np.testing.assert_allclose(outs[0], want, rtol=1e-4, atol=1e-4, err_msg=level)


@pytest.mark.parametrize(("h", "w"), [(90, 91), (112, 112), (97, 130), (47, 200)])
@pytest.mark.parametrize("pad", [(1, 1), (0, 1), (2, 0), (1, 2), (0, 0, 1, 1), (2, 1, 0, 2)])
@pytest.mark.parametrize(("k", "stride"), [(3, 2), (3, 1), (5, 1)])
def test_depthwise_planes_over_l1_in_bands_give_the_padded_inputs_bits(
    h, w, pad, k, stride
) -> None:
    """Padded planes over 8192 floats (112 x 112 inputs) are copied a band of output rows'
    rows at a time (3x3/2: 16 rows; 3x3 and 5x5 at stride 1: 24; a last band shorter, padding
    rows at the top and bottom zeros, pads even, odd and uneven): the bits of the same kernel
    reading an input padded beforehand, and the reference's values, with NaN and infinities
    among the inputs, at every level (AVX-512's 3x3/2 planes read their source in place
    instead: dw_masked.h)."""
    ops_group = _ops_group()
    rng = np.random.default_rng(h + w + pad[0])
    c = 3
    x = rng.uniform(-2, 2, (1, c, h, w)).astype(np.float32)
    x[0, 0, 0, 0], x[0, 1, h - 1, w // 2], x[0, 2, h // 2, w - 1] = np.nan, np.inf, -np.inf
    weight = rng.uniform(-1, 1, (c, 1, k, k)).astype(np.float32)
    bias = rng.uniform(-1, 1, c).astype(np.float32)
    graph = _conv_graph(x.shape, weight, bias, c, stride, pad, 1, True)
    top, left, bottom, right = pad if len(pad) == 4 else (*pad, *pad)
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    plain = _conv_graph(padded.shape, weight, bias, c, stride, 0, 1, True)
    (step,) = [s for s in find_steps(graph) if s.op == "fused.group_conv2d"]
    assert step.attr("prologue") >= 1  # the pad: read in place, the planes copied
    _assert_direct_gives_the_padded_inputs_bits(ops_group, graph, x, plain, padded)


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 40),
    w=st.integers(17, 70),
    pads=st.tuples(*[st.integers(0, 2)] * 4),
    multiplier=st.sampled_from([1, 2]),
    batch=st.sampled_from([1, 2]),
    act=st.sampled_from(["none", "relu", "hard_swish"]),
    seed=st.integers(0, 2**16),
)
def test_depthwise_3x3_stride_2_read_in_place_gives_the_padded_inputs_bits(
    h, w, pads, multiplier, batch, act, seed
) -> None:
    """A depthwise 3x3/2 conv that reads its unpadded source (AVX-512: masked loads in the
    padding, the rows' last columns stored under a mask; elsewhere a padded copy) gives the
    bits of the same kernel reading an input padded beforehand, for any pads (asymmetric
    too), depthwise multipliers, batches and activations, with NaN and infinities among the
    inputs, at every level; and the reference's values."""
    ops_group = _ops_group()
    rng = np.random.default_rng(seed)
    c = 3
    x = rng.uniform(-2, 2, (batch, c, h, w)).astype(np.float32)
    x[0, 0, 0, 0], x[0, 1, h - 1, w // 2], x[-1, 2, h // 2, w - 1] = np.nan, np.inf, -np.inf
    weight = rng.uniform(-1, 1, (c * multiplier, 1, 3, 3)).astype(np.float32)
    bias = rng.uniform(-1, 1, c * multiplier).astype(np.float32)
    top, left, bottom, right = pads

    def graph_of(shape, conv_pads):
        b = GraphBuilder()
        y = b.conv2d(
            b.input("x", shape),
            b.const(weight),
            b.const(bias),
            strides=(2, 2),
            pads=conv_pads,
            group=c,
        )
        if act == "relu":
            y = b.relu(y)
        elif act == "hard_swish":
            y = b.hard_swish(y)
        return b.build([y])

    if h + top + bottom < 3:
        return  # no output row
    graph = graph_of(x.shape, (top, left, bottom, right))
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    plain = graph_of(padded.shape, (0, 0, 0, 0))
    _assert_direct_gives_the_padded_inputs_bits(ops_group, graph, x, plain, padded)

"""Depthwise convs with the channels in the vector lanes (dw_channel_lanes.h, the cython
backend's ``channel_lanes`` algorithm for depthwise 3x3 and 5x5 convs at stride 1 or 2).

Oracles: the numpy reference (within 1e-4, NaN where it has NaN) and the NCHW depthwise
kernel (``direct``) on the same step. Both sum every position's taps in the same order from
zero (multiply-adds fused) and add the bias last: on planes where the NCHW kernel runs its
vector tiles the outputs are equal bit for bit (the MobileNetV3 / PP-LCNet shapes below, at
every level); its scalar path for rows under 4 wide does not fuse its multiply-adds, so
elsewhere they agree to rounding. Planes are read in place from an unpadded source (a
zero-pad prologue) and from a padded tensor, channel counts do not fill the last block of
lanes, and every activation the kernels apply is tried, NaN and infinities included.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import (
    at_every_cython_level,
    backend_or_skip,
    im2col_node,
    run_with_algorithm,
    with_act,
)
from walle.ops import GraphBuilder, run_reference
from walle.ops.fusion import find_steps


def _graph(x_shape, k: int, stride: int, pad: int, act: str, mult: int = 1, dilation: int = 1):
    c = x_shape[1]
    rng = np.random.default_rng(c * 31 + k)
    weight = rng.uniform(-1, 1, (c * mult, 1, k, k)).astype(np.float32)
    bias = rng.uniform(-1, 1, c * mult).astype(np.float32)
    b = GraphBuilder()
    y = b.conv2d(
        b.input("x", x_shape),
        b.const(weight),
        b.const(bias),
        strides=(stride, stride),
        pads=(pad,) * 4,
        dilations=(dilation, dilation),
        group=c,
    )
    return b.build([with_act(b, y, act)])


def _step(graph):
    (step,) = [s for s in find_steps(graph) if s.op == "fused.group_conv2d"]
    return step


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 2),
    c=st.integers(2, 40),
    h=st.integers(1, 20),
    w=st.integers(1, 24),
    k=st.sampled_from([3, 5]),
    stride=st.integers(1, 2),
    pad=st.integers(0, 2),
    act=st.sampled_from(["none", "relu", "relu6", "hard_swish"]),
    specials=st.booleans(),
    seed=st.integers(0, 30),
)
def test_channel_lanes_match_the_reference_and_the_nchw_kernel(
    n, c, h, w, k, stride, pad, act, specials, seed
):
    backend = backend_or_skip("cython")
    if h + 2 * pad < k or w + 2 * pad < k:
        return
    rng = np.random.default_rng(seed)
    x = rng.uniform(-4, 4, (n, c, h, w)).astype(np.float32)
    if specials:
        x[0, c - 1, h // 2, w // 2] = np.nan
        x[n - 1, 0, 0, w - 1] = np.inf
        x[n - 1, c // 2, h - 1, 0] = -np.inf
    graph = _graph(x.shape, k, stride, pad, act)
    step = _step(graph)
    assert "channel_lanes" in backend.fused_algorithms(step, graph)
    with np.errstate(invalid="ignore", over="ignore"):
        want = run_reference(graph, {"x": x})[0]

    def check(level: str) -> None:
        with np.errstate(invalid="ignore"):
            lanes = run_with_algorithm(backend, graph, {"x": x}, step, "channel_lanes")
            direct = run_with_algorithm(backend, graph, {"x": x}, step, "direct")
        np.testing.assert_array_equal(np.isnan(lanes), np.isnan(want), err_msg=level)
        np.testing.assert_array_equal(np.isnan(lanes), np.isnan(direct), err_msg=level)
        finite = np.isfinite(want)
        np.testing.assert_allclose(lanes[finite], want[finite], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(lanes[finite], direct[finite], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(lanes[~finite], direct[~finite], err_msg=level)

    at_every_cython_level(check)


@pytest.mark.parametrize(
    ("c", "side", "k", "stride"),
    [
        (256, 14, 5, 1),
        (512, 7, 5, 1),
        (256, 14, 5, 2),
        (37, 7, 5, 1),
        (33, 28, 3, 2),
        (20, 9, 3, 1),
        (19, 112, 3, 2),
        (5, 117, 3, 2),
    ],
)
def test_channel_lanes_give_the_nchw_tiles_bits(c, side, k, stride) -> None:
    """PP-LCNet's 5x5 planes and MobileNet-like 3x3 ones (and channel counts that leave a
    block part empty; at stride 2 planes up to the 120 x 120 cap: 112 x 112 inputs),
    every activation, at every level."""
    backend = backend_or_skip("cython")
    x = np.random.default_rng(c).uniform(-4, 4, (1, c, side, side)).astype(np.float32)
    x[0, 1, 2, 3], x[0, c - 1, 0, 0] = np.nan, np.inf
    for act in ("none", "relu", "relu6", "hard_swish"):
        graph = _graph(x.shape, k, stride, k // 2, act)
        step = _step(graph)

        def check(level: str, graph=graph, step=step, act=act) -> None:
            with np.errstate(invalid="ignore"):
                lanes = run_with_algorithm(backend, graph, {"x": x}, step, "channel_lanes")
                direct = run_with_algorithm(backend, graph, {"x": x}, step, "direct")
            np.testing.assert_array_equal(lanes, direct, err_msg=f"{level} {act}")

        at_every_cython_level(check)


def test_channel_lanes_split_a_batch_across_threads_with_the_same_bits() -> None:
    """Enough work for the kernel's OpenMP threads (each its own scratch)."""
    backend = backend_or_skip("cython")
    x = np.random.default_rng(1).uniform(-3, 3, (8, 72, 14, 14)).astype(np.float32)
    graph = _graph(x.shape, 5, 1, 2, "hard_swish")
    step = _step(graph)
    lanes = run_with_algorithm(backend, graph, {"x": x}, step, "channel_lanes")
    direct = run_with_algorithm(backend, graph, {"x": x}, step, "direct")
    np.testing.assert_array_equal(lanes, direct)


@pytest.mark.parametrize(
    ("shape", "k", "stride", "mult", "dilation"),
    [
        ((1, 8, 14, 14), 1, 1, 1, 1),  # 1x1
        ((1, 8, 14, 14), 7, 1, 1, 1),  # 7x7
        ((1, 8, 14, 14), 3, 3, 1, 1),  # stride 3
        ((1, 8, 14, 14), 3, 1, 2, 1),  # two outputs a channel
        ((1, 8, 14, 14), 3, 1, 1, 2),  # dilated
        ((1, 8, 112, 112), 3, 1, 1, 1),  # a plane past the kernel's scratch budget
        ((1, 8, 119, 119), 3, 2, 1, 1),  # ... and past the budget at stride 2
    ],
)
def test_channel_lanes_are_offered_only_where_they_run(shape, k, stride, mult, dilation) -> None:
    backend = backend_or_skip("cython")
    from walle._kernels import ops_group

    graph = _graph(shape, k, stride, k // 2, "none", mult, dilation)
    step = _step(graph)
    assert "channel_lanes" not in backend.fused_algorithms(step, graph)
    region = im2col_node(graph).attr("regions")[0]
    x = np.zeros(graph.shape(im2col_node(graph).inputs[0]), np.float32)
    weight = np.zeros((shape[1] * mult, k * k), np.float32)
    y = np.zeros(graph.shape(step.output), np.float32)
    with pytest.raises(ValueError, match="channel lanes"):
        ops_group.GroupConvKernel(x, weight, None, y, region, shape[1], "none", None, None, True)

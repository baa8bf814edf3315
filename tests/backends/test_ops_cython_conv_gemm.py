"""The cython backend's conv algorithms on every shape kind, each against the numpy reference.

``fused.conv2d`` offers ``direct``, ``gemm`` (the packed GEMM over the im2col columns),
``im2col`` and, for a first layer (at most 4 input channels, rows of 16 columns and more),
``lanes``; for a 1x1, stride-1, unpadded conv (most
of ResNet-50's and SqueezeNet's convs) ``im2col`` skips the column copy and multiplies the
input in place (the column buffer would be the input itself). Each algorithm is compiled
directly (not through the search, which would only ever run the faster one) and compared
with :func:`walle.ops.run_reference`; tolerance 1e-4 absolute and relative (float32).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests._backends import backend_or_skip, run_with_algorithm
from walle.ops import GraphBuilder, run_reference
from walle.ops.fusion import find_steps
from walle.ops.plan import allocate

CASES = [  # (N, C, H, W, Cout, kernel, stride, pads)
    (1, 16, 7, 7, 24, 1, 1, 0),  # 1x1: the plain-view GEMM
    (3, 5, 6, 9, 7, 1, 1, 0),  # 1x1, batch 3
    (2, 4, 8, 8, 6, 1, 2, 0),  # 1x1 stride 2: a real column copy
    (1, 4, 6, 6, 6, 1, 1, 1),  # 1x1 padded: a plain view of the padded input
    (2, 3, 9, 11, 10, 3, 1, 1),
    (1, 3, 23, 21, 10, 7, 2, 3),  # a 7x7 stride-2 stem: direct over split column phases
    (2, 4, 9, 12, 9, 3, 2, 1),  # 3x3 stride 2, even width
    (1, 2, 10, 11, 3, 2, 2, 0),  # an even filter, odd width
    (1, 3, 20, 37, 40, 7, 2, 3),  # rows of 19 columns: a stem the lanes kernel takes
    (2, 1, 5, 19, 5, 3, 1, 1),  # one input channel, stride 1
    (1, 4, 12, 70, 17, 11, 4, 2),  # AlexNet's 11x11 stride-4 window, 16 columns a row
    (2, 72, 6, 7, 10, 3, 1, 1),  # 648 reduction rows: gemm_long's two blocks
    (1, 600, 5, 5, 12, 1, 1, 0),  # a 1x1 conv of 600 rows (gemm_long at AVX2 and SSE)
    (1, 32, 7, 40, 16, 3, 2, 1),  # PP-HGNet's 3x3/2 stem conv: lanes for 32 channels
    (1, 64, 5, 36, 20, 3, 2, 1),  # the most channels a strided lanes conv takes
    (1, 65, 5, 36, 20, 3, 2, 1),  # one more: no lanes (lanes_deep: 585 taps)
    (1, 14, 5, 36, 20, 3, 2, 1),  # 126 taps: no lanes_deep
    (1, 15, 5, 36, 20, 3, 2, 1),  # 135 taps: lanes_deep
    (1, 200, 9, 9, 40, 1, 2, 0),  # a strided 1x1 conv: lanes_deep (its columns gathered)
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(
    "algorithm",
    [
        "direct",
        "gemm",
        "gemm_long",
        "gemm_direct",
        "panel",
        "im2col",
        "lanes",
        "lanes16",
        "lanes_deep",
    ],
)
@pytest.mark.parametrize("tail", ["none", "bias", "bias_relu"])
def test_ops_conv_algorithms_match_reference(case, algorithm, tail) -> None:
    """``gemm_direct`` (the packed GEMM reading the columns in place) is offered for the
    1x1 stride-1 convs only, ``gemm_long`` (its reduction in the fewest blocks) where the
    default blocks are more, ``lanes_deep`` for 128 taps or more but a 1x1 stride-1 conv,
    ``lanes16`` (the lanes kernel's 16 x 16 tile) beside ``lanes`` where that takes its 32 x 8
    one: at AVX-512, a strided conv to more than 16 channels; ``panel`` (ops_math's AVX2
    matmul panels, the epilogue in their stores) for an unpadded 1x1 stride-1 conv to 4
    channels or more of 16 positions or more, at AVX2 only. The lanes algorithms build the
    tile they name."""
    backend = backend_or_skip("cython")
    n, c, h, w, cout, k, s, p = case
    rng = np.random.default_rng(sum(case))
    b = GraphBuilder()
    weight = b.const(rng.uniform(-1, 1, (cout, c, k, k)).astype(np.float32))
    bias = b.const(rng.uniform(-1, 1, cout).astype(np.float32)) if tail != "none" else None
    y = b.conv2d(b.input("x", (n, c, h, w)), weight, bias, strides=(s, s), pads=(p,) * 4)
    graph = b.build([b.relu(y) if tail == "bias_relu" else y])
    x = rng.uniform(-2, 2, (n, c, h, w)).astype(np.float32)
    want = run_reference(graph, {"x": x})[0]
    (step,) = [s for s in find_steps(graph) if s.op == "fused.conv2d"]
    offered = backend.fused_algorithms(step, graph)
    assert ("gemm_direct" in offered) == (k == 1 and s == 1)
    from walle._kernels import ops_conv

    if ops_conv.level() == ops_conv.LEVELS["avx2"]:  # blocks of at most 160 rows by default
        assert ("gemm_long" in offered) == (c * k * k > 160)
    ow = (w + 2 * p - k) // s + 1
    assert ("lanes" in offered) == ((c <= 4 or (c <= 64 and s > 1)) and ow >= 16 and s <= 4)
    assert ("lanes_deep" in offered) == (c * k * k >= 128 and not (k == 1 and s == 1))
    avx512 = ops_conv.level() == ops_conv.LEVELS["avx512"]
    assert ("lanes16" in offered) == ("lanes" in offered and s > 1 and cout > 16 and avx512)
    avx2 = ops_conv.level() == ops_conv.LEVELS["avx2"]
    plain = k == 1 and s == 1 and p == 0 and cout >= 4 and h * w >= 16
    assert ("panel" in offered) == (plain and avx2)
    if algorithm not in offered:
        return
    if algorithm in ("lanes", "lanes16"):
        buffers = allocate(graph, find_steps(graph), fill=0.0)
        (kernel,) = backend.compile(step, algorithm, graph, buffers)
        assert kernel.__self__.wide == (algorithm == "lanes" and s > 1 and cout > 16 and avx512)
    got = run_with_algorithm(backend, graph, {"x": x}, step, algorithm)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("k", "s", "pad", "relu", "c"),
    [(1, 1, 0, True, 6), (1, 2, 0, False, 6), (1, 1, 1, True, 6), (1, 1, 0, True, 200)],
)
def test_ops_conv_with_a_shortcut_add_matches_reference(k, s, pad, relu, c) -> None:
    """ResNet's shortcut: 1x1 conv (+ bias), + a tensor of the output's shape, (+ ReLU) is one
    step; the cython backend's packed GEMM adds it in its epilogue (its only algorithm for
    the step besides the parts; with 200 input channels at AVX2 also gemm_long's, whose
    last of two blocks adds it; at AVX2 an unpadded 1x1 stride-1 conv also runs as the
    matmul panels, ``panel``, which add it as they store their tiles), NaN and inf in the
    shortcut reach their outputs."""
    backend = backend_or_skip("cython")
    from walle._kernels import ops_conv

    rng = np.random.default_rng(k * 10 + s + c)
    n, h, w, cout = 2, 9, 37, 40
    oh, ow = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
    b = GraphBuilder()
    weight = b.const(rng.uniform(-1, 1, (cout, c, k, k)).astype(np.float32))
    bias = b.const(rng.uniform(-1, 1, cout).astype(np.float32))
    conv = b.conv2d(b.input("x", (n, c, h, w)), weight, bias, strides=(s, s), pads=(pad,) * 4)
    y = b.binary("add", b.input("r", (n, cout, oh, ow)), conv)  # the shortcut first
    graph = b.build([b.relu(y) if relu else y])
    x = rng.uniform(-2, 2, (n, c, h, w)).astype(np.float32)
    r = rng.uniform(-2, 2, (n, cout, oh, ow)).astype(np.float32)
    r[0, 3, 1, 2], r[1, 39, oh - 1, ow - 1], r[1, 0, 0, 0] = np.nan, np.inf, -np.inf
    want = run_reference(graph, {"x": x, "r": r})[0]
    steps = find_steps(graph)
    (step,) = [st for st in steps if st.op == "fused.conv2d"]
    assert step.attr("residual") and step.attr("act") == ("relu" if relu else "none")
    direct = ["gemm_direct"] if s == 1 else []  # the columns in place: 1x1 stride 1
    panel = ["panel"] if s == 1 and pad == 0 and ops_conv.level() == ops_conv.LEVELS["avx2"] else []
    offered = backend.algorithms(step, graph)
    assert [a for a in offered if a != "gemm_long"] == ["gemm", *direct, *panel, "parts"]
    if ops_conv.level() == ops_conv.LEVELS["avx2"]:
        assert ("gemm_long" in offered) == (c > 160)
    for algorithm in offered:
        got = run_with_algorithm(backend, graph, {"x": x, "r": r}, step, algorithm)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=algorithm)
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want), err_msg=algorithm)
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4, atol=1e-4)

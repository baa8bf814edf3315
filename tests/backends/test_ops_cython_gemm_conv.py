"""The packed-GEMM conv kernel (``ops_conv.GemmConvKernel``) against a numpy oracle.

The kernel packs the im2col columns of a chunk a block of reduction rows at a time (a
vector copy per row where the columns are contiguous, a stride-2 or general gather where
they are not), runs 8-channel register tiles over whole strips, a narrower strip, and the
leftover columns with the channels in the lanes, and adds each block's partial sums to the
output. These tests force small blocks and chunks (``kc``, ``nc``) so that every edge
(several reduction blocks, several chunks, cut strips, leftover columns, channels not a
multiple of 8 or 32) is crossed, at every instruction-set level the machine runs. The
oracle is the im2col matrix built with numpy's stride tricks times the weights in float64;
tolerance 1e-4 relative to the output's scale.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import backend_or_skip
from walle.ops.ir import Region

LEVELS = ("avx512", "avx2", "sse")


def _ops_conv():
    backend_or_skip("cython")
    from walle._kernels import ops_conv

    return ops_conv


def _region(shape, k, stride, dilation, pad) -> tuple[Region, tuple[int, ...]]:
    """The im2col region of a conv over the zero-padded [N, C, H, W] input, and its shape."""
    n, c, h, w = shape
    hp, wp = h + 2 * pad, w + 2 * pad
    oh = (hp - dilation * (k - 1) - 1) // stride + 1
    ow = (wp - dilation * (k - 1) - 1) // stride + 1
    strides = (c * hp * wp, hp * wp, dilation * wp, dilation, stride * wp, stride)
    return Region(0, 0, strides, 0, (0,), (n, c, k, k, oh, ow)), (n, c, hp, wp)


def _oracle(xp, weight, bias, region, relu):
    """act(W @ im2col(xp) + bias) in float64, [N, Cout, OH*OW]."""
    n, c, kh, kw, oh, ow = region.sizes
    item = xp.itemsize
    cols = np.lib.stride_tricks.as_strided(
        xp.astype(np.float64).ravel()[region.src_offset :],
        shape=region.sizes,
        strides=tuple(s * item * 2 for s in region.src_strides),  # float64 items
    ).reshape(n, c * kh * kw, oh * ow)
    with np.errstate(all="ignore"):
        y = np.einsum("ok,nkp->nop", weight.astype(np.float64), cols)
        if bias is not None:
            y = y + bias[None, :, None]
        if relu:
            y = np.where(y < 0, 0.0, y)  # keeps NaN
    return y


def _kernel(ops_conv, xp, weight, bias, y, region, relu, level, **kw):
    """The kernel, or None where this CPU lacks the level (the refusal checked)."""
    try:
        return ops_conv.GemmConvKernel(
            xp, weight.reshape(weight.shape[0], -1), bias, y, region,
            "relu" if relu else "none", level, **kw,
        )  # fmt: skip
    except ValueError as exc:
        assert "does not run" in str(exc)
        return None


def _matches_at_every_level(ops_conv, xp, weight, bias, region, relu, want, atol, **kw):
    """The kernel at each level the CPU runs against ``want`` (every output written: the
    output starts as NaN); returns the levels run."""
    ran = []
    for level in LEVELS:
        y = np.full(want.shape, np.nan, np.float32)
        kernel = _kernel(ops_conv, xp, weight, bias, y, region, relu, level, **kw)
        if kernel is not None:
            kernel.run()
            np.testing.assert_allclose(y, want, rtol=0, atol=atol, err_msg=level)
            ran.append(level)
    return ran


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 11),
    cout=st.integers(1, 41),
    h=st.integers(1, 19),
    w=st.integers(1, 37),
    k=st.sampled_from([1, 2, 3]),
    stride=st.sampled_from([1, 2, 3]),
    dilation=st.sampled_from([1, 2]),
    pad=st.integers(0, 2),
    relu=st.booleans(),
    bias=st.booleans(),
    kc=st.sampled_from([None, 1, 3, 8]),
    nc=st.sampled_from([None, 1, 17, 40]),
    seed=st.integers(0, 50),
)
def test_gemm_conv_kernel_matches_oracle_at_every_level(
    n, c, cout, h, w, k, stride, dilation, pad, relu, bias, kc, nc, seed
):
    ops_conv = _ops_conv()
    if h + 2 * pad < dilation * (k - 1) + 1 or w + 2 * pad < dilation * (k - 1) + 1:
        return  # no output
    rng = np.random.default_rng(seed)
    region, padded = _region((n, c, h, w), k, stride, dilation, pad)
    xp = np.zeros(padded, np.float32)
    xp[:, :, pad : pad + h, pad : pad + w] = rng.uniform(-2, 2, (n, c, h, w))
    weight = rng.uniform(-1, 1, (cout, c, k, k)).astype(np.float32)
    b = rng.uniform(-1, 1, cout).astype(np.float32) if bias else None
    want = _oracle(xp, weight.reshape(cout, -1), b, region, relu)
    scale = max(1.0, float(np.abs(want).max()))
    _matches_at_every_level(ops_conv, xp, weight, b, region, relu, want, 1e-4 * scale, kc=kc, nc=nc)


@pytest.mark.parametrize("c", [19, 37, 45])
def test_gemm_conv_kernel_default_blocks_of_a_long_reduction_match_the_oracle(c) -> None:
    """The default reduction blocks of each level (AVX2: even blocks of at most 160 rows;
    the others: the whole reduction up to 384, else 256 at a time; a 3x3 conv) on reductions of
    171, 333 and 405 rows, which none of them splits evenly into its most."""
    ops_conv = _ops_conv()
    rng = np.random.default_rng(c)
    region, padded = _region((1, c, 9, 13), 3, 1, 1, 1)
    xp = np.zeros(padded, np.float32)
    xp[:, :, 1:10, 1:14] = rng.uniform(-1, 1, (1, c, 9, 13))
    weight = rng.uniform(-1, 1, (21, c, 3, 3)).astype(np.float32)
    bias = rng.uniform(-1, 1, 21).astype(np.float32)
    want = _oracle(xp, weight.reshape(21, -1), bias, region, False)
    _matches_at_every_level(
        ops_conv, xp, weight, bias, region, False, want, 1e-4 * np.abs(want).max()
    )


@pytest.mark.parametrize("direct", [False, True])
@pytest.mark.parametrize("c", [400, 700, 1100])
def test_gemm_conv_kernel_default_blocks_of_a_1x1_conv_match_the_oracle(c, direct) -> None:
    """A 1x1 stride-1 conv at AVX-512 takes even reduction blocks of at most 512 rows (one of
    400, two of 350, three of 367), packed or read in place; the other levels their own."""
    ops_conv = _ops_conv()
    rng = np.random.default_rng(c)
    region, padded = _region((1, c, 7, 9), 1, 1, 1, 0)
    xp = rng.uniform(-1, 1, padded).astype(np.float32)
    weight = rng.uniform(-1, 1, (21, c, 1, 1)).astype(np.float32)
    bias = rng.uniform(-1, 1, 21).astype(np.float32)
    want = _oracle(xp, weight.reshape(21, -1), bias, region, True)
    _matches_at_every_level(
        ops_conv, xp, weight, bias, region, True, want, 1e-4 * np.abs(want).max(), direct=direct
    )


@pytest.mark.parametrize(("c", "k", "blocks"), [(171, 1, 1), (700, 1, 2), (120, 3, 3)])
def test_gemm_conv_kernel_long_reduction_blocks_match_the_oracle(c, k, blocks) -> None:
    """``long_k``: the reduction in the fewest even blocks of at most 512 rows (171 rows in
    one, 700 in two of 350, 1080 in three of 360), the columns in the default's chunks (a
    14x14 plane at batch 2: several strips, leftover columns); wherever
    :func:`gemm_long_fits` says the default splits it into more (AVX2's blocks of at most 160
    rows: all three); the same bits as the default blocks."""
    ops_conv = _ops_conv()
    rng = np.random.default_rng(c)
    region, padded = _region((2, c, 14, 14), k, 1, 1, k // 2)
    xp = np.zeros(padded, np.float32)
    xp[:, :, k // 2 : k // 2 + 14, k // 2 : k // 2 + 14] = rng.uniform(-1, 1, (2, c, 14, 14))
    weight = rng.uniform(-1, 1, (37, c, k, k)).astype(np.float32)
    bias = rng.uniform(-1, 1, 37).astype(np.float32)
    want = _oracle(xp, weight.reshape(37, -1), bias, region, True)
    assert -(-c * k * k // 512) == blocks
    ran = _matches_at_every_level(
        ops_conv, xp, weight, bias, region, True, want, 1e-4 * np.abs(want).max(), long_k=True
    )
    assert ran  # every CPU runs one of the levels
    if "avx2" in ran:
        assert ops_conv.gemm_long_fits(region, "avx2")
    for level in ran:  # a sum stored between blocks and read back is exact: the same bits
        ys = [np.full(want.shape, np.nan, np.float32) for _ in range(2)]
        for y, long_k in zip(ys, (False, True), strict=True):
            _kernel(ops_conv, xp, weight, bias, y, region, True, level, long_k=long_k).run()
        np.testing.assert_array_equal(ys[0], ys[1], err_msg=level)


def test_gemm_long_fits_where_the_default_blocks_are_more() -> None:
    """AVX2 splits a reduction of over 160 rows, the others one of over 384 (a 1x1 stride-1
    conv at AVX-512: of over 512, as long_k does, so never there)."""
    ops_conv = _ops_conv()
    best = ops_conv.best_level()
    for c, k, avx2, sse, avx512 in [
        (17, 3, False, False, False),  # 153 rows
        (18, 3, True, False, False),  # 162
        (43, 3, True, True, True),  # 387
        (160, 1, False, False, False),
        (161, 1, True, False, False),
        (600, 1, True, True, False),
    ]:
        region, _ = _region((1, c, 9, 9), k, 1, 1, k // 2)
        for level, want in (("sse", sse), ("avx2", avx2), ("avx512", avx512)):
            if ops_conv.LEVELS[level] <= best:
                assert ops_conv.gemm_long_fits(region, level) == want, (c, k, level)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(("stride", "width"), [(1, 49), (2, 98), (1, 196)])
def test_gemm_conv_kernel_keeps_nan_and_inf_where_the_oracle_puts_them(level, stride, width):
    """NaN and inf in the input reach exactly the outputs of the columns that read them
    (whole strips, the narrow strip and the leftover columns alike); ReLU keeps NaN."""
    ops_conv = _ops_conv()
    rng = np.random.default_rng(5)
    region, padded = _region((1, 40, 1, width), 1, stride, 1, 0)
    xp = rng.uniform(-2, 2, padded).astype(np.float32)
    xp[0, 3, 0, 0] = np.nan
    xp[0, 7, 0, 2 * stride] = np.inf
    xp[0, 9, 0, 40 * stride] = -np.inf
    xp[0, 1, 0, (region.sizes[5] - 1) * stride] = np.nan  # a leftover column
    weight = rng.uniform(0.1, 1, (37, 40, 1, 1)).astype(np.float32)  # no inf - inf
    want = _oracle(xp, weight.reshape(37, -1), None, region, True)
    y = np.zeros(want.shape, np.float32)
    kernel = _kernel(ops_conv, xp, weight, None, y, region, True, level, kc=16)
    if kernel is None:
        return
    kernel.run()
    assert np.isnan(want).any() and np.isinf(want).any()
    for check in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(check(y), check(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(
        y[finite], want[finite], rtol=0, atol=1e-4 * np.abs(want[finite]).max()
    )


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("direct", [False, True])
def test_gemm_conv_kernel_every_count_of_leftover_columns_matches_the_oracle(level, direct):
    """Each count of columns left after the whole strips (0 to 47: at AVX-512 a strip of 32
    by the 8 x 2 tile where 32 or more are left, one zero-padded strip of 32 for 22 to 31,
    then strips of 16 and 8, a padded 16 or 8, the tail; at AVX2 and SSE their own splits),
    packed and read in place, with a residual and ReLU: every output written, none past the
    columns, the last block of channels partial (19 channels)."""
    ops_conv = _ops_conv()
    rng = np.random.default_rng(7)
    c, cout = 24, 19
    for cols in range(96, 144):
        region, _ = _region((1, c, 1, cols), 1, 1, 1, 0)
        x = rng.uniform(-2, 2, (1, c, 1, cols)).astype(np.float32)
        weight = rng.uniform(-1, 1, (cout, c)).astype(np.float32)
        bias = rng.uniform(-1, 1, cout).astype(np.float32)
        res = rng.uniform(-1, 1, (1, cout, cols)).astype(np.float32)
        want = _oracle(x, weight, bias, region, False) + res
        want = np.where(want < 0, 0.0, want)
        y = np.full((1, cout, cols), np.nan, np.float32)
        try:
            kernel = ops_conv.GemmConvKernel(
                x, weight, bias, y, region, "relu", level, residual=res, direct=direct
            )
        except ValueError as exc:
            assert "does not run" in str(exc)
            return
        kernel.run()
        np.testing.assert_allclose(y, want, rtol=0, atol=1e-4 * c, err_msg=f"{level} {cols}")


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("act", ["none", "relu", "relu6"])
@pytest.mark.parametrize(("c", "k", "kc", "direct"), [(40, 3, None, False), (200, 1, 64, True),
                                                      (360, 1, None, False)])  # fmt: skip
def test_gemm_conv_kernel_long_reductions_with_a_shortcut_match_the_oracle(
    level, act, c, k, kc, direct
):
    """Reductions of several blocks of 48 rows and more (at AVX2 the 4 x 3 tile's asm loop,
    its sums carried from block to block through the output and back into its registers),
    a shortcut, each activation, the last block of channels partial (21 channels)."""
    ops_conv = _ops_conv()
    rng = np.random.default_rng(11)
    cout = 21
    region, padded = _region((1, c, 12, 13), k, 1, 1, k // 2)
    xp = np.zeros(padded, np.float32)
    xp[:, :, k // 2 : k // 2 + 12, k // 2 : k // 2 + 13] = rng.uniform(-1, 1, (1, c, 12, 13))
    weight = rng.uniform(-0.2, 0.2, (cout, c * k * k)).astype(np.float32)
    bias = rng.uniform(-1, 1, cout).astype(np.float32)
    res = rng.uniform(-8, 8, (1, cout, 12 * 13)).astype(np.float32)  # past the cap too
    want = _oracle(xp, weight, bias, region, False) + res
    if act != "none":
        want = np.clip(want, 0.0, 6.0 if act == "relu6" else None)
    y = np.full(want.shape, np.nan, np.float32)
    try:
        kernel = ops_conv.GemmConvKernel(
            xp, weight, bias, y, region, act, level, kc=kc, residual=res, direct=direct
        )
    except ValueError as exc:
        assert "does not run" in str(exc)
        return
    kernel.run()
    assert act != "relu6" or (y == 6.0).any()
    np.testing.assert_allclose(y, want, rtol=0, atol=1e-4 * np.abs(want).max())


def test_gemm_conv_kernel_splits_chunks_over_threads_and_writes_its_channels_only() -> None:
    """Enough work for the OpenMP split over (image, chunk) units; one group's channels of a
    wider output (``y_channels``/``y_channel0``): the others are left as they were."""
    ops_conv = _ops_conv()
    rng = np.random.default_rng(9)
    region, padded = _region((3, 64, 30, 30), 1, 1, 1, 0)
    xp = rng.uniform(-1, 1, padded).astype(np.float32)
    weight = rng.uniform(-0.2, 0.2, (72, 64)).astype(np.float32)
    bias = rng.uniform(-1, 1, 72).astype(np.float32)
    want = _oracle(xp, weight, bias, region, True)
    y = np.full((3, 100, 900), 7.0, np.float32)
    kernel = ops_conv.GemmConvKernel(
        xp, weight, bias, y, region, "relu", nc=128, y_channels=100, y_channel0=20
    )
    kernel.run()
    np.testing.assert_allclose(y[:, 20:92], want, rtol=0, atol=1e-4 * np.abs(want).max())
    assert (y[:, :20] == 7.0).all() and (y[:, 92:] == 7.0).all()


def _packed_and_in_place(ops_conv, x, weight, bias, region, act, level, y_shape, **kwargs):
    """The outputs of the packed kernel and of the one reading the columns in place (each
    into an array of 7.0s), or [] where this CPU does not run ``level``."""
    outs = []
    for direct in (False, True):
        y = np.full(y_shape, 7.0, np.float32)
        try:
            kernel = ops_conv.GemmConvKernel(
                x, weight, bias, y, region, act, level, direct=direct, **kwargs
            )
        except ValueError as exc:
            assert "does not run" in str(exc)
            return []
        kernel.run()
        outs.append(y)
    return outs


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 40),
    cout=st.integers(1, 41),
    h=st.integers(1, 9),
    w=st.integers(1, 37),
    channel0=st.integers(0, 3),
    relu=st.booleans(),
    residual=st.booleans(),
    kc=st.sampled_from([None, 1, 7]),
    nc=st.sampled_from([None, 1, 17, 40]),
    seed=st.integers(0, 50),
)
def test_gemm_conv_kernel_reading_columns_in_place_gives_the_packed_kernels_bits(
    n, c, cout, h, w, channel0, relu, residual, kc, nc, seed
):
    """``direct`` (a 1x1 stride-1 conv: the tiles read the input's rows where they are, only
    a chunk's leftover columns packed): the packed kernel's outputs bit for bit (the same
    products in the same order) at every level, over reduction blocks, chunks, leftover
    columns, a group's channels of a wider input and output, a residual, ReLU and NaN."""
    ops_conv = _ops_conv()
    rng = np.random.default_rng(seed)
    cin = c + channel0 + 1  # the conv reads channels [channel0, channel0 + c) of x
    x = rng.uniform(-2, 2, (n, cin, h, w)).astype(np.float32)
    x.reshape(-1)[rng.integers(0, x.size, 2)] = np.nan
    region = Region(0, channel0 * h * w, (cin * h * w, h * w, 0, 0, w, 1), 0, (0,),
                    (n, c, 1, 1, h, w))  # fmt: skip
    assert ops_conv.gemm_direct_fits(region)
    weight = rng.uniform(-1, 1, (cout, c)).astype(np.float32)
    bias = rng.uniform(-1, 1, cout).astype(np.float32)
    yk = cout + channel0
    res = rng.uniform(-1, 1, (n, yk, h * w)).astype(np.float32) if residual else None
    for level in LEVELS:
        outs = _packed_and_in_place(
            ops_conv, x, weight, bias, region, "relu" if relu else "none", level, (n, yk, h * w),
            kc=kc, nc=nc, y_channels=yk, y_channel0=channel0, residual=res,
        )  # fmt: skip
        if outs:
            packed, in_place = outs
            np.testing.assert_array_equal(in_place, packed, err_msg=level)
            want = _oracle(x[:, channel0 : channel0 + c], weight, bias, Region(
                0, 0, (c * h * w, h * w, 0, 0, w, 1), 0, (0,), (n, c, 1, 1, h, w)
            ), False)  # fmt: skip
            if res is not None:
                want = want + res[:, channel0:]
            if relu:
                want = np.where(want < 0, 0.0, want)
            got = in_place[:, channel0:]
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=level)
            ok = ~np.isnan(want)
            np.testing.assert_allclose(got[ok], want[ok], rtol=0, atol=1e-4 * c, err_msg=level)
            assert (in_place[:, :channel0] == 7.0).all()


_BIG_PLANES = [((h, w), 20, kc, nc, False) for h, w in [(28, 28), (30, 41)]
               for kc, nc in [(None, None), (16, 48), (24, 100), (None, 1)]]  # fmt: skip
_MANY_CHANNELS = [((h, w), 131, None, None, True) for h, w in [(3, 80), (5, 53)]]


@pytest.mark.parametrize(("plane", "cout", "kc", "nc", "residual"), _BIG_PLANES + _MANY_CHANNELS)
def test_gemm_conv_kernel_reading_planes_in_place_gives_the_packed_kernels_bits(
    plane, cout, kc, nc, residual
):
    """Over several images, chunks and reduction blocks, the in-place tiles give the packed
    kernel's bits and the oracle's sums at every level: on planes of 784 columns and more,
    where they ask for the strips ahead of them (the next strip of their chunk, the first
    strips of the next chunk, of the next reduction block, of the next image); and with 16
    blocks of 8 channels or more on smaller planes, where the AVX2 tiles take chunks of two
    strips (PP-OCRv6's 384 -> 768 convs on 3 x 80: a partial last block, whole chunks and
    a leftover one, a residual)."""
    ops_conv = _ops_conv()
    h, w = plane
    rng = np.random.default_rng(h * w)
    n, c = 2, 40
    x = rng.uniform(-2, 2, (n, c, h, w)).astype(np.float32)
    region = Region(0, 0, (c * h * w, h * w, 0, 0, w, 1), 0, (0,), (n, c, 1, 1, h, w))
    weight = rng.uniform(-1, 1, (cout, c)).astype(np.float32)
    bias = rng.uniform(-1, 1, cout).astype(np.float32)
    res = rng.uniform(-1, 1, (n, cout, h * w)).astype(np.float32) if residual else None
    want = _oracle(x, weight, bias, region, False) + (0.0 if res is None else res)
    want = np.where(want < 0, 0.0, want)
    for level in LEVELS:
        outs = _packed_and_in_place(
            ops_conv, x, weight, bias, region, "relu", level, (n, cout, h * w),
            kc=kc, nc=nc, residual=res,
        )  # fmt: skip
        if outs:
            np.testing.assert_array_equal(outs[1], outs[0], err_msg=level)
            np.testing.assert_allclose(outs[1], want, rtol=0, atol=1e-4 * c, err_msg=level)


def test_gemm_conv_kernel_refuses_what_it_cannot_run() -> None:
    ops_conv = _ops_conv()
    region, padded = _region((1, 4, 6, 6), 3, 1, 1, 1)
    x = np.zeros(padded, np.float32)
    w = np.zeros((5, 36), np.float32)
    y = np.zeros((1, 5, 36), np.float32)
    with pytest.raises(ValueError, match="activation 'gelu'"):
        ops_conv.GemmConvKernel(x, w, None, y, region, "gelu")
    assert not ops_conv.gemm_direct_fits(region)  # 3x3: its columns are not x's rows
    with pytest.raises(ValueError, match="direct columns need a 1x1 stride-1 region"):
        ops_conv.GemmConvKernel(x, w, None, y, region, "none", direct=True)
    with pytest.raises(ValueError, match="level 'neon'"):
        ops_conv.GemmConvKernel(x, w, None, y, region, "none", "neon")
    with pytest.raises(ValueError, match="does not match the region"):
        ops_conv.GemmConvKernel(x, w[:, :30], None, y, region, "none")
    with pytest.raises(ValueError, match="reads outside the source"):
        ops_conv.GemmConvKernel(x.ravel()[:-1].copy(), w, None, y, region, "none")
    with pytest.raises(ValueError, match="beyond 5"):
        ops_conv.GemmConvKernel(x, w, None, y, region, "none", y_channels=5, y_channel0=1)
    with pytest.raises(ValueError, match="kc 0"):
        ops_conv.GemmConvKernel(x, w, None, y, region, "none", kc=0)
    with pytest.raises(ValueError, match="C-contiguous float32"):
        ops_conv.GemmConvKernel(x.astype(np.float64), w, None, y, region, "none")


# Runs in a child process: a read past the input's end is a SIGSEGV there, not a crash here.
_GUARDED_STRIDE2 = """
import ctypes, mmap, sys
import numpy as np
sys.path.insert(0, {root!r})
from tests.backends.test_ops_cython_gemm_conv import _matches_at_every_level, _oracle, _region
from walle._kernels import ops_conv

page = mmap.PAGESIZE
region, padded = _region((1, 3, {h}, {w}), 1, 2, 1, 0)
size = int(np.prod(padded))
pages = -(-size * 4 // page)
mem = mmap.mmap(-1, (pages + 1) * page)
base = ctypes.addressof(ctypes.c_char.from_buffer(mem))
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
assert libc.mprotect(base + pages * page, page, 0) == 0  # PROT_NONE after the input
x = np.frombuffer(mem, np.float32, size, pages * page - size * 4).reshape(padded)
x[...] = np.random.default_rng(3).uniform(-2, 2, padded)
weight = np.random.default_rng(4).uniform(-1, 1, (11, 3, 1, 1)).astype(np.float32)
want = _oracle(x, weight.reshape(11, -1), None, region, False)
atol = 1e-4 * np.abs(want).max()
print(*_matches_at_every_level(ops_conv, x, weight, None, region, False, want, atol))
"""


@pytest.mark.parametrize(("h", "w"), [(5, 95), (3, 63), (1, 17)])
def test_gemm_conv_kernel_stride_2_columns_read_nothing_past_the_input(h, w) -> None:
    """A stride-2 conv whose last column is the input's last element, with the input ending
    where an unreadable page begins: its packed strips (32, 24, 16 and 8 columns: rows of
    48, 32 and 9 outputs) copy the even columns in vectors that stop at that element."""
    import subprocess
    import sys
    from pathlib import Path

    _ops_conv()
    root = str(Path(__file__).resolve().parents[2])
    code = _GUARDED_STRIDE2.format(root=root, h=h, w=w)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "sse" in done.stdout.split()  # every machine runs the baseline

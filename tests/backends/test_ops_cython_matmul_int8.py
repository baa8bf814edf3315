"""The integer matmul kernel (``ops_int8.MatmulInt8Kernel``) against numpy's int64 products.

c = float(a @ b) (+ bias, ReLU) with a whole numbers in [0, 255] and b in [-255, 255], in
every tile form this CPU runs: VNNI's 8-bit quads (b in [-128, 127]), 16-bit pairs at
AVX-512BW, AVX2 and the baseline. The sums are int32 and exact, so the results must equal
float32(the int64 sum) to the bit, including sums past 2**24, where float sums round.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import backend_or_skip

LEVELS = ("avx512", "avx2", "sse")


def _ops_int8():
    backend_or_skip("cython")
    from walle._kernels import ops_int8

    return ops_int8


def _kernels(ops_int8, a, b, c, bias=None, mode=0, act="none"):
    """The kernel at each level this CPU runs, with and without VNNI: (kernel, label)."""
    made = []
    for level in LEVELS:
        for vnni in (None, False):
            try:
                kernel = ops_int8.MatmulInt8Kernel(a, b, c, bias, mode, act, level, vnni)
            except ValueError as exc:
                assert "does not run" in str(exc)
                break
            made.append((kernel, f"{level} {kernel.form}"))
    return made


def _oracle(a, b, bias, mode, relu):
    sums = (a.astype(np.int64) @ b.astype(np.int64)).astype(np.float32)
    if mode == 1:
        sums = sums + bias[None, :]
    elif mode == 2:
        sums = sums + bias[:, None]
    return np.where(sums < 0, np.float32(0), sums) if relu else sums


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 40),
    k=st.integers(1, 90),
    n=st.integers(1, 80),
    mode=st.sampled_from([0, 1, 2]),
    relu=st.booleans(),
    quads=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_int8_matmul_equals_integer_sums_in_every_form(m, k, n, mode, relu, quads, seed):
    """Tiles of rows and panels of columns cut at any size; b within 8 bits (quads) or
    wider (pairs only); a new a on the second call is packed again."""
    ops_int8 = _ops_int8()
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (m, k)).astype(np.float32)
    bound = 127 if quads else 255
    b = rng.integers(-bound - quads, bound + 1, (k, n)).astype(np.float32)
    bias = rng.uniform(-1e4, 1e4, {0: 0, 1: n, 2: m}[mode]).astype(np.float32) if mode else None
    act = "relu" if relu else "none"
    c = np.full((m, n), np.nan, np.float32)  # every output written
    for kernel, label in _kernels(ops_int8, a, b, c, bias, mode, act):
        c[...] = np.nan
        kernel.run()
        np.testing.assert_array_equal(c, _oracle(a, b, bias, mode, relu), err_msg=label)
        a[...] = rng.integers(0, 256, (m, k))
        kernel.run()
        np.testing.assert_array_equal(c, _oracle(a, b, bias, mode, relu), err_msg=label)


def test_int8_matmul_picks_vnni_only_for_8_bit_weights() -> None:
    ops_int8 = _ops_int8()
    a, c = np.zeros((4, 8), np.float32), np.zeros((4, 3), np.float32)
    narrow = np.full((8, 3), -128, np.float32)
    wide = np.full((8, 3), 128, np.float32)
    if ops_int8.has_vnni():
        assert ops_int8.MatmulInt8Kernel(a, narrow, c).form == "vnni"
        assert ops_int8.MatmulInt8Kernel(a, narrow, c, vnni=False).form == "pairs512"
    assert ops_int8.MatmulInt8Kernel(a, wide, c).form != "vnni"
    assert ops_int8.MatmulInt8Kernel(a, narrow, c, level="sse").form == "pairs128"


def test_int8_matmul_sums_past_2_24_round_once() -> None:
    """Sums of 1024 products of 255 * 255 (66.6M): float32 partial sums round along the way,
    the int32 sums do not; the one conversion rounds to the nearest float32."""
    ops_int8 = _ops_int8()
    rng = np.random.default_rng(3)
    a = rng.integers(200, 256, (9, 1024)).astype(np.float32)
    b = rng.integers(200, 256, (1024, 33)).astype(np.float32)
    want = _oracle(a, b, None, 0, False)
    assert np.abs(want).max() > 2**24
    c = np.empty((9, 33), np.float32)
    for kernel, label in _kernels(ops_int8, a, b, c):
        kernel.run()
        np.testing.assert_array_equal(c, want, err_msg=label)


def test_int8_matmul_clamps_a_outside_its_range() -> None:
    """a is promised in [0, 255]; a value outside (or NaN) is clamped (NaN to 0), never
    wrapped into another number."""
    ops_int8 = _ops_int8()
    a = np.array([[-3.0, 300.0, np.nan, 7.0] * 5], np.float32)
    b = np.ones((20, 2), np.float32)
    clamped = np.nan_to_num(np.clip(a, 0, 255), nan=0.0)
    c = np.empty((1, 2), np.float32)
    for kernel, label in _kernels(ops_int8, a, b, c):
        kernel.run()
        np.testing.assert_array_equal(c, _oracle(clamped, b, None, 0, False), err_msg=label)


@pytest.mark.parametrize(
    ("b", "message"),
    [
        (np.full((4, 2), 0.5, np.float32), "whole numbers"),
        (np.full((4, 2), 256.0, np.float32), "whole numbers"),
        (np.full((4, 2), np.nan, np.float32), "whole numbers"),
        (np.ones((5, 2), np.float32), "shapes"),
    ],
)
def test_int8_matmul_refuses_weights_it_cannot_sum(b, message) -> None:
    ops_int8 = _ops_int8()
    a, c = np.zeros((3, 4), np.float32), np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match=message):
        ops_int8.MatmulInt8Kernel(a, b, c)
    assert not ops_int8.weights_fit(np.ones((ops_int8.MAX_K + 1, 1), np.float32))


def test_int8_matmul_refuses_bad_buffers_and_options() -> None:
    ops_int8 = _ops_int8()
    a, b, c = (
        np.zeros((3, 4), np.float32),
        np.ones((4, 2), np.float32),
        np.zeros((3, 2), np.float32),
    )
    with pytest.raises(ValueError, match="a must be"):
        ops_int8.MatmulInt8Kernel(a.astype(np.float64), b, c)
    with pytest.raises(ValueError, match="activation"):
        ops_int8.MatmulInt8Kernel(a, b, c, act="sigmoid")
    with pytest.raises(ValueError, match="bias mode"):
        ops_int8.MatmulInt8Kernel(a, b, c, None, 1)
    with pytest.raises(ValueError, match="biases"):
        ops_int8.MatmulInt8Kernel(a, b, c, np.zeros(5, np.float32), 1)
    with pytest.raises(ValueError, match="level"):
        ops_int8.MatmulInt8Kernel(a, b, c, level="avx1024")


def _conv_kernels(ops_int8, w, x, y, bias=None, act="none"):
    """ConvInt8Kernel at each level this CPU runs, with and without VNNI: (kernel, label)."""
    made = []
    for level in LEVELS:
        for vnni in (None, False):
            try:
                kernel = ops_int8.ConvInt8Kernel(w, x, y, bias, act, level, vnni)
            except ValueError as exc:
                assert "does not run" in str(exc)
                break
            made.append((kernel, f"{level} {kernel.form}"))
    return made


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3),
    m=st.integers(1, 40),
    k=st.integers(1, 90),
    n=st.integers(1, 150),
    bias=st.booleans(),
    relu=st.booleans(),
    quads=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_int8_conv_equals_integer_sums_in_every_form(batch, m, k, n, bias, relu, quads, seed):
    """The constant on the left (a conv's weights times its columns): rows of weights cut at
    any size, columns packed per call in panels with a partial last one."""
    ops_int8 = _ops_int8()
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (batch, k, n)).astype(np.float32)
    bound = 127 if quads else 255
    w = rng.integers(-bound - quads, bound + 1, (m, k)).astype(np.float32)
    shift = rng.uniform(-1e4, 1e4, m).astype(np.float32) if bias else None
    sums = np.einsum("mk,bkn->bmn", w.astype(np.int64), x.astype(np.int64)).astype(np.float32)
    want = sums + shift[:, None] if bias else sums
    want = np.where(want < 0, np.float32(0), want) if relu else want
    y = np.full((batch, m, n), np.nan, np.float32)
    for kernel, label in _conv_kernels(ops_int8, w, x, y, shift, "relu" if relu else "none"):
        y[...] = np.nan
        kernel.run()
        np.testing.assert_array_equal(y, want, err_msg=label)


def test_int8_conv_chunks_of_panels_cover_every_column() -> None:
    """A reduction long enough that a chunk holds a few panels (several chunks per image)."""
    ops_int8 = _ops_int8()
    rng = np.random.default_rng(9)
    x = rng.integers(0, 256, (2, 3000, 700)).astype(np.float32)
    w = rng.integers(-128, 128, (11, 3000)).astype(np.float32)
    want = np.einsum("mk,bkn->bmn", w.astype(np.int64), x.astype(np.int64)).astype(np.float32)
    y = np.empty((2, 11, 700), np.float32)
    for kernel, label in _conv_kernels(ops_int8, w, x, y):
        y[...] = np.nan
        kernel.run()
        np.testing.assert_array_equal(y, want, err_msg=label)


def test_int8_conv_refuses_what_it_cannot_run() -> None:
    ops_int8 = _ops_int8()
    x, y = np.zeros((1, 4, 5), np.float32), np.zeros((1, 3, 5), np.float32)
    with pytest.raises(ValueError, match="whole numbers"):
        ops_int8.ConvInt8Kernel(np.full((3, 4), 0.5, np.float32), x, y)
    with pytest.raises(ValueError, match="shapes"):
        ops_int8.ConvInt8Kernel(np.ones((3, 5), np.float32), x, y)
    with pytest.raises(ValueError, match="x must be"):
        ops_int8.ConvInt8Kernel(np.ones((3, 4), np.float32), x[0], y)
    with pytest.raises(ValueError, match="biases"):
        ops_int8.ConvInt8Kernel(np.ones((3, 4), np.float32), x, y, np.zeros(2, np.float32))


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 2),
    c=st.integers(1, 6),
    m=st.integers(1, 20),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    extra=st.tuples(st.integers(0, 40), st.integers(0, 40)),
    offset=st.integers(0, 5),
    seed=st.integers(0, 2**16),
)
def test_int8_conv_reads_its_input_in_place_through_the_region(
    batch, c, m, kernel, stride, dilation, extra, offset, seed
):
    """The conv form reading x through an im2col region (strided, dilated, from an offset;
    output rows of any width, so that vectors of columns cross rows and gather) equals the
    product of numpy's im2col columns, in every form."""
    from walle.ops.ir import Region

    ops_int8 = _ops_int8()
    rng = np.random.default_rng(seed)
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    hp, wp = dh * (kh - 1) + 1 + extra[0], dw * (kw - 1) + 1 + extra[1]
    oh, ow = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    flat = rng.integers(0, 256, offset + batch * c * hp * wp).astype(np.float32)
    x = flat[offset:].reshape(batch, c, hp, wp)
    w = rng.integers(-128, 128, (m, c * kh * kw)).astype(np.float32)
    strides = (c * hp * wp, hp * wp, dh * wp, dw, sh * wp, sw)
    region = Region(0, offset, strides, 0, (0,) * 6, (batch, c, kh, kw, oh, ow))
    cols = np.stack(
        [x[:, :, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw]
         for i in range(kh) for j in range(kw)],
        axis=2,
    ).reshape(batch, c * kh * kw, oh * ow)  # fmt: skip
    want = np.einsum("mk,bkn->bmn", w.astype(np.int64), cols.astype(np.int64)).astype(np.float32)
    y = np.full((batch, m, oh * ow), np.nan, np.float32)
    for level in LEVELS:
        for vnni in (None, False):
            try:
                kernel_ = ops_int8.ConvInt8Kernel(w, flat, y, None, "none", level, vnni, region)
            except ValueError as exc:
                assert "does not run" in str(exc)
                break
            y[...] = np.nan
            kernel_.run()
            np.testing.assert_array_equal(y, want, err_msg=f"{level} {kernel_.form}")


def test_int8_conv_refuses_a_region_reading_past_x() -> None:
    from walle.ops.ir import Region

    ops_int8 = _ops_int8()
    x = np.zeros(49, np.float32)  # the last element read is 25 + 2 * 5 + 2 + 2 * 5 + 2 = 49
    region = Region(0, 0, (100, 25, 5, 1, 5, 1), 0, (0,) * 6, (1, 2, 3, 3, 3, 3))
    y = np.zeros((1, 4, 9), np.float32)
    with pytest.raises(ValueError, match="reads past x"):
        ops_int8.ConvInt8Kernel(np.ones((4, 18), np.float32), x, y, region=region)


def test_int8_kernels_take_vnni_exactly_where_the_cpu_has_it() -> None:
    """has_vnni (CPUID leaf 7's AVX512_VNNI and AVX512BW, with the OS saving ZMM state)
    against the flags the Linux kernel reports; never off x86-64."""
    ops_int8 = _ops_int8()
    cpuinfo = Path("/proc/cpuinfo")
    if platform.machine() not in ("x86_64", "AMD64"):
        assert not ops_int8.has_vnni()
        return
    if not cpuinfo.exists():  # an x86-64 without Linux's flags to compare: a bool, at least
        assert isinstance(ops_int8.has_vnni(), bool)
        return
    flags = next(
        set(line.split(":", 1)[1].split())
        for line in cpuinfo.read_text().splitlines()
        if line.startswith("flags")
    )
    want = {"avx512f", "avx512bw", "avx512_vnni"} <= flags
    assert ops_int8.has_vnni() == want

# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""2-D convolution kernels of the walle.ops ``cython`` backend: conv + bias + ReLU, one pass.

:class:`ConvKernel` computes any conv directly (below); :class:`WinogradKernel` computes a
3x3, stride-1 conv by Winograd F(4x4, 3x3) (the C is in winograd.h), a quarter of the
multiply-adds, at the same instruction-set levels; :class:`GemmConvKernel` computes any conv
as a packed, cache-blocked GEMM over its im2col columns (gemm_conv.h), best on 1x1 and
strided convs, where the direct kernel's strided reads of whole planes are bound by the
caches.

The kernel computes a ``fused.conv2d`` step (im2col raster, matmul by constant weights,
bias, activation) without the im2col buffer: it reads the padded NCHW input through the
im2col region's strides (so stride and dilation come for free) and writes the NCHW output.
Work is split in output rows (n, oh); each row is computed in register tiles of 8 output
channels x 2 vectors of output columns (AVX2: 3 vectors, in two passes of 4 channels),
accumulated over (ci, kh, kw): one load of an input run feeds 8 FMAs with broadcast
weights, and the accumulators never leave the registers until the tile is stored with bias
and ReLU applied. Weights are packed once at build time
as [Cout/8][C][KH][KW][8] (output channels padded with zeros to 8). The tiles are GCC
vector-extension code compiled once per instruction-set level with its own vector width
(AVX-512: 16 floats, AVX2: 8, baseline SSE: 4; a generic vector wider than the target's is
lowered to scalars, 20-40x slower, so one width for all levels will not do), and the level
is chosen at run time: the CPU's best, or the lower one ``WALLE_OPS_ISA`` forces
(:func:`set_level`, applied by walle.ops.backends.cython_isa). The input rows of one (n, oh) are a few hundred floats: they stay in
L1.
"""

cimport numpy as cnp
from cython.parallel cimport prange

cdef extern from "max_threads.h":
    int walle_max_threads() nogil

import numpy as np

cnp.import_array()

from walle._kernels.hugepages import copy as _lasting_copy
from walle._kernels.hugepages import zeros as _lasting

cdef extern from *:
    """
    #include <string.h>

    #include "cpu_level.h"

    #include "conv_tile.h"

    /* Columns [0, OW) of one output row of one block of channels (YB: its first column;
       column j's window starts at XR + j * S_OW): whole tiles, widest first, then the
       scalar tile for the last columns (or any S_OW but 1). */
    #define WALLE_CONV_COLS(WIDEST, WW, WIDE, NARROW, HALF, QUARTER, VW, XR, YB, OW, S_C, \\
                            S_KH, S_KW, S_OW) \\
        do { \\
            long j = 0; \\
            if ((S_OW) == 1) { \\
                for (; WW && j + WW <= (OW); j += WW) \\
                    WIDEST((XR) + j, wb, bb, (YB) + j, cin, kh, kw, S_C, S_KH, S_KW, plane, \\
                           cvalid, relu); \\
                for (; j + 2 * VW <= (OW); j += 2 * VW) \\
                    WIDE((XR) + j, wb, bb, (YB) + j, cin, kh, kw, S_C, S_KH, S_KW, plane, \\
                         cvalid, relu); \\
                for (; j + VW <= (OW); j += VW) \\
                    NARROW((XR) + j, wb, bb, (YB) + j, cin, kh, kw, S_C, S_KH, S_KW, plane, \\
                           cvalid, relu); \\
                if (j + VW / 2 <= (OW)) { \\
                    HALF((XR) + j, wb, bb, (YB) + j, cin, kh, kw, S_C, S_KH, S_KW, plane, \\
                         cvalid, relu); \\
                    j += VW / 2; \\
                } \\
                if (VW >= 8 && j + VW / 4 <= (OW)) { \\
                    QUARTER((XR) + j, wb, bb, (YB) + j, cin, kh, kw, S_C, S_KH, S_KW, plane, \\
                            cvalid, relu); \\
                    j += VW / 4; \\
                } \\
            } \\
            for (; j < (OW); j += 16) { \\
                long width = (OW) - j < 16 ? (OW) - j : 16; \\
                walle_conv_tile_any((XR) + j * (S_OW), wb, bb, (YB) + j, cin, kh, kw, S_C, \\
                                    S_KH, S_KW, S_OW, plane, cvalid, width, relu); \\
            } \\
        } while (0)

    /* Block cb of 8 output channels: its weights, bias, output row and valid channels, and
       the first row's request for the next block's weights (block 0's and 1's at the
       start): in a model they come from memory, and a 14x14 plane's few tiles per block met
       them at its latency (1x1 convs of Inception v2 on 14x14 planes 0.85-0.90x the time in
       the model, interleaved; asked for ahead inside every tile instead, the 28x28 and
       56x56 ones were 4-10% slower). */
    #define WALLE_CONV_BLOCK \\
        const float* wb = w + cb * wblock; \\
        long pf0 = cb ? cb + 1 : 0, pf1 = cb + 2 < blocks ? cb + 2 : blocks; \\
        if (r == r0 && pf0 < pf1) \\
            walle_prefetch_floats(w + pf0 * wblock, (pf1 - pf0) * wblock); \\
        const float* bb = bias + cb * WALLE_CB; \\
        float* yb = y + (n * cout + cb * WALLE_CB) * plane + oh * ow_n; \\
        long cvalid = cout - cb * WALLE_CB < WALLE_CB ? cout - cb * WALLE_CB : WALLE_CB;

    /* Output rows [r0, r1) of r = n * oh_n + oh, at one instruction-set level. Strides
       count elements of the source. */
    #define WALLE_CONV_ROWS(NAME, ATTR, WIDEST, WW, WIDE, NARROW, HALF, QUARTER, VW) \\
    ATTR static void NAME( \\
            const float* x, const float* w, const float* bias, float* y, long r0, long r1, \\
            long cin, long cout, long kh, long kw, long oh_n, long ow_n, long s_n, long s_c, \\
            long s_kh, long s_kw, long s_oh, long s_ow, float relu) { \\
        long blocks = (cout + WALLE_CB - 1) / WALLE_CB; \\
        long plane = oh_n * ow_n; \\
        long wblock = cin * kh * kw * WALLE_CB; \\
        for (long r = r0; r < r1; r++) { \\
            long n = r / oh_n, oh = r % oh_n; \\
            const float* xr = x + n * s_n + oh * s_oh; \\
            for (long cb = 0; cb < blocks; cb++) { \\
                WALLE_CONV_BLOCK \\
                WALLE_CONV_COLS(WIDEST, WW, WIDE, NARROW, HALF, QUARTER, VW, xr, yb, ow_n, s_c, \\
                                s_kh, s_kw, s_ow); \\
            } \\
        } \\
    }
    WALLE_CONV_ROWS(walle_conv_rows_avx512, WALLE_LEVEL_TARGET("avx512f,avx2,fma"),
                    walle_conv_v16x2, 0, walle_conv_v16x2, walle_conv_v16x1, walle_conv_v8x1, walle_conv_v4x1, 16)
    WALLE_CONV_ROWS(walle_conv_rows_avx2, WALLE_LEVEL_TARGET("avx2,fma"),
                    walle_conv_v8x3h, 24, walle_conv_v8x2h, walle_conv_v8x1, walle_conv_v4x1, walle_conv_v2x1, 8)
    WALLE_CONV_ROWS(walle_conv_rows_base, , walle_conv_v4x3h, 12, walle_conv_v4x2h, walle_conv_v4x1, walle_conv_v2x1,
                    walle_conv_v2x1, 4)

    /* Rows [row0, row0 + rows) of a zero-bordered tensor that is not written (the source: x,
       cin planes of h x w; the border: top rows and left columns, wp columns in all) copied
       to ``v`` as [cin][rows][wp], the border's rows and columns as zeros. */
    static inline void walle_conv_pad_band(const float* x, float* v, long cin, long h, long w,
                                           long top, long left, long wp, long row0,
                                           long rows) {
        for (long c = 0; c < cin; c++)
            for (long i = 0; i < rows; i++) {
                float* d = v + (c * rows + i) * wp;
                long row = row0 + i - top;
                if (row < 0 || row >= h) {
                    memset(d, 0, wp * sizeof(float));
                    continue;
                }
                memset(d, 0, left * sizeof(float));
                memcpy(d + left, x + (c * h + row) * w, w * sizeof(float));
                memset(d + left + w, 0, (wp - left - w) * sizeof(float));
            }
    }

    /* Output rows [r0, r1) as WALLE_CONV_ROWS's, of a conv over a zero-bordered tensor that
       is not written (its pad raster's copy): per band of at most ``band`` output rows of
       one image, their window rows are copied with their border into ``v``
       (walle_conv_pad_band) and the rows' tiles read them there as they would the whole
       bordered copy: the same tiles, the same sums. The source: x, cin planes of h x w, s_n
       floats per image; the border: top rows and left columns of wp-wide rows; rows at
       stride sh and dilation dh, columns at stride sw and dilation dw. ``v`` holds
       cin * ((band - 1) * sh + (kh - 1) * dh + 1) * wp floats. */
    #define WALLE_CONV_ROWS_BAND(NAME, ATTR, WIDEST, WW, WIDE, NARROW, HALF, QUARTER, VW) \\
    ATTR static void NAME( \\
            const float* x, const float* w, const float* bias, float* y, long r0, long r1, \\
            long cin, long cout, long kh, long kw, long oh_n, long ow_n, long s_n, long h, \\
            long wd, long top, long left, long wp, long sh, long dh, long sw, long dw, \\
            long band, float relu, float* v) { \\
        long blocks = (cout + WALLE_CB - 1) / WALLE_CB; \\
        long plane = oh_n * ow_n; \\
        long wblock = cin * kh * kw * WALLE_CB; \\
        for (long b0 = r0; b0 < r1;) { \\
            long first = b0 % oh_n, b1 = b0 + band < r1 ? b0 + band : r1; \\
            if (b1 - b0 > oh_n - first) b1 = b0 + oh_n - first; /* one image's rows */ \\
            long rows = (b1 - b0 - 1) * sh + (kh - 1) * dh + 1; \\
            walle_conv_pad_band(x + b0 / oh_n * s_n, v, cin, h, wd, top, left, wp, \\
                                first * sh, rows); \\
            for (long r = b0; r < b1; r++) { \\
                long n = r / oh_n, oh = r % oh_n; \\
                const float* xr = v + (oh - first) * sh * wp; \\
                for (long cb = 0; cb < blocks; cb++) { \\
                    WALLE_CONV_BLOCK \\
                    WALLE_CONV_COLS(WIDEST, WW, WIDE, NARROW, HALF, QUARTER, VW, xr, yb, \\
                                    ow_n, rows * wp, dh * wp, dw, sw); \\
                } \\
            } \\
            b0 = b1; \\
        } \\
    }
    WALLE_CONV_ROWS_BAND(walle_conv_rows_band_avx512, WALLE_LEVEL_TARGET("avx512f,avx2,fma"),
                         walle_conv_v16x2, 0, walle_conv_v16x2, walle_conv_v16x1,
                         walle_conv_v8x1, walle_conv_v4x1, 16)
    WALLE_CONV_ROWS_BAND(walle_conv_rows_band_avx2, WALLE_LEVEL_TARGET("avx2,fma"),
                         walle_conv_v8x3h, 24, walle_conv_v8x2h, walle_conv_v8x1,
                         walle_conv_v4x1, walle_conv_v2x1, 8)
    WALLE_CONV_ROWS_BAND(walle_conv_rows_band_base, , walle_conv_v4x3h, 12, walle_conv_v4x2h,
                         walle_conv_v4x1, walle_conv_v2x1, walle_conv_v2x1, 4)

    /* 2: AVX-512F, 1: AVX2 + FMA, 0: baseline; the best this CPU runs. */
    static int walle_conv_best_level(void) {
        return walle_cpu_level();
    }

    static void walle_conv_rows(
            const float* x, const float* w, const float* bias, float* y, long r0, long r1,
            long cin, long cout, long kh, long kw, long oh_n, long ow_n, long s_n, long s_c,
            long s_kh, long s_kw, long s_oh, long s_ow, float relu, int level) {
        if (WALLE_LEVEL(level) == 2)
            walle_conv_rows_avx512(x, w, bias, y, r0, r1, cin, cout, kh, kw, oh_n, ow_n,
                                   s_n, s_c, s_kh, s_kw, s_oh, s_ow, relu);
        else if (WALLE_LEVEL(level) == 1)
            walle_conv_rows_avx2(x, w, bias, y, r0, r1, cin, cout, kh, kw, oh_n, ow_n,
                                 s_n, s_c, s_kh, s_kw, s_oh, s_ow, relu);
        else
            walle_conv_rows_base(x, w, bias, y, r0, r1, cin, cout, kh, kw, oh_n, ow_n,
                                 s_n, s_c, s_kh, s_kw, s_oh, s_ow, relu);
    }

    /* p: cin, cout, kh, kw, oh_n, ow_n, s_n, h, w, top, left, wp, sh, dh, sw, dw, band
       (ConvKernel's with a border). */
    static void walle_conv_rows_band(
            const float* x, const float* w, const float* bias, float* y, long r0, long r1,
            const long* p, float relu, float* v, int level) {
        if (WALLE_LEVEL(level) == 2)
            walle_conv_rows_band_avx512(x, w, bias, y, r0, r1, p[0], p[1], p[2], p[3], p[4],
                                        p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12],
                                        p[13], p[14], p[15], p[16], relu, v);
        else if (WALLE_LEVEL(level) == 1)
            walle_conv_rows_band_avx2(x, w, bias, y, r0, r1, p[0], p[1], p[2], p[3], p[4],
                                      p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13],
                                      p[14], p[15], p[16], relu, v);
        else
            walle_conv_rows_band_base(x, w, bias, y, r0, r1, p[0], p[1], p[2], p[3], p[4],
                                      p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13],
                                      p[14], p[15], p[16], relu, v);
    }
    """
    int walle_conv_best_level() nogil
    void walle_conv_rows(const float* x, const float* w, const float* bias, float* y, long r0,
                         long r1, long cin, long cout, long kh, long kw, long oh_n, long ow_n,
                         long s_n, long s_c, long s_kh, long s_kw, long s_oh, long s_ow,
                         float relu, int level) nogil
    void walle_conv_rows_band(const float* x, const float* w, const float* bias, float* y,
                              long r0, long r1, const long* p, float relu, float* v,
                              int level) nogil


LEVELS = {"avx512": 2, "avx2": 1, "sse": 0}  # instruction-set levels, widest first
_level = walle_conv_best_level()  # what ConvKernel uses unless told; see set_level


def best_level():
    """The widest level this CPU runs (2 AVX-512F, 1 AVX2 + FMA, 0 baseline SSE2)."""
    return walle_conv_best_level()


def level():
    """The level new ConvKernels are built at (the CPU's best unless set_level lowered it)."""
    return _level


def set_level(int value):
    """Build every later ConvKernel at ``value`` (at most the CPU's best level)."""
    global _level
    if not 0 <= value <= walle_conv_best_level():
        raise ValueError(f"ops_conv: level {value} is not run by this CPU "
                         f"(best {walle_conv_best_level()})")
    _level = value


def relu_cap(str kind, str act):
    """The kernels' ``relu`` for an activation: 0 for "none", INFINITY for "relu", 6 for
    "relu6" (ONNX's Clip(0, 6)), -1 for "hard_swish" (ONNX's HardSwish), -2 for
    "hard_swish6" (Paddle's x * relu6(x + 3) / 6; hard_swish.h); ValueError naming ``kind``
    for any other."""
    caps = {"none": 0.0, "relu": float("inf"), "relu6": 6.0, "hard_swish": -1.0,
            "hard_swish6": -2.0}
    if act not in caps:
        raise ValueError(
            f"{kind}: activation {act!r} (none, relu, relu6, hard_swish or hard_swish6)")
    return caps[act]


cdef extern from *:
    """
    #include <stdint.h>

    /* Whether none of the n floats at x is a NaN or an infinity (exponent bits all ones). */
    #define WALLE_ALL_FINITE(NAME, ATTR) \\
    ATTR static int NAME(const float* x, long n) { \\
        uint32_t bad = 0; \\
        for (long i = 0; i < n; i++) { \\
            uint32_t b; \\
            memcpy(&b, x + i, sizeof b); \\
            bad |= (b & 0x7f800000u) == 0x7f800000u; \\
        } \\
        return !bad; \\
    }
    WALLE_ALL_FINITE(walle_all_finite_avx2, WALLE_LEVEL_TARGET("avx2"))
    WALLE_ALL_FINITE(walle_all_finite_base, )
    static int walle_all_finite(const float* x, long n, int level) {
        return WALLE_LEVEL(level) >= 1 ? walle_all_finite_avx2(x, n)
                                       : walle_all_finite_base(x, n);
    }
    """
    int walle_all_finite(const float* x, long n, int level) nogil


def all_finite(cnp.ndarray a):
    """Whether the C-contiguous float32 array ``a`` holds no NaN and no infinity (one read,
    no temporaries: a guard before kernels whose zero taps would spread them), at the
    module's level (``set_level``; the CPU's, read once at import: CPUID in a virtual machine
    exits to the hypervisor, ~20 us a call)."""
    if a.dtype != np.float32 or not a.flags.c_contiguous:
        raise ValueError("all_finite takes a C-contiguous float32 array")
    return bool(walle_all_finite(<const float*>cnp.PyArray_DATA(a), a.size, _level))


def _blocked_weights(weight, bias, long cout, long k, long width, long blocks):
    """(weights, bias) for kernels that take ``width`` output channels at a time: the
    [Cout, K] weights as [blocks][K][width] and the bias as [blocks * width], both
    zero-padded past Cout."""
    packed = np.zeros((blocks * width, k), np.float32)
    packed[:cout] = np.asarray(weight, np.float32).reshape(cout, k)
    packed = _lasting_copy(packed.reshape(blocks, width, k).transpose(0, 2, 1))
    padded_bias = np.zeros(blocks * width, np.float32)
    if bias is not None:
        padded_bias[:cout] = np.asarray(bias, np.float32).reshape(-1)
    return packed, padded_bias


def _tap_offsets(region):
    """Each (c, kh, kw) tap's offset into the source from an output column's first tap,
    in that order (int64), of an im2col ``region`` [N, C, KH, KW, OH, OW]."""
    _, c, kh, kw, _, _ = (int(v) for v in region.sizes)
    s = [int(v) for v in region.src_strides]
    return np.ascontiguousarray(
        (np.arange(c, dtype=np.int64)[:, None, None] * s[1]
         + np.arange(kh, dtype=np.int64)[:, None] * s[2]
         + np.arange(kw, dtype=np.int64) * s[3]).ravel())


def _check_inside(str kind, region, x):
    """ValueError naming ``kind`` if the region's strides are negative or it reads past the
    end of ``x``."""
    s = [int(v) for v in region.src_strides]
    last = region.src_offset + sum((size - 1) * st for size, st in zip(region.sizes, s))
    if min(s) < 0 or last >= x.size:
        raise ValueError(f"{kind} kernel: the region reads outside the source")


_GRAIN = 1 << 20  # multiply-adds worth one more thread
# A 3-vector Winograd group (AVX2) costs this much of a 2-vector one per tile it holds
# (VGG-19's 3x3 layers alone, one core: 0.84-0.96).
_WINO_NV3_COST = 0.86


cdef class ConvKernel:
    """y[N, Cout, OH*OW] = act(conv(x) + bias), x read through an im2col region.

    ``region`` is the im2col raster's: sizes (N, C, KH, KW, OH, OW) and source strides and
    offset into ``x`` (the padded input); ``weight`` is [Cout, C*KH*KW]; ``act`` "none",
    "relu", "relu6" or "hard_swish"; ``level`` picks the tiles ("avx512", "avx2", "sse", or "best" this CPU
    runs; default the module's :func:`level`; the tests run each). ``level`` (read-only) is the
    level the kernel runs at.

    With ``pad`` = (top, left, HP, WP), ``x`` is the unpadded [N, C, H, W] source of the
    zero-bordered HP x WP planes the region reads (:func:`pad_fits`), and the bordered copy
    is never written: a band of output rows at a time, their window rows are copied with
    their border into a scratch of about ``band_bytes`` that stays in the caches, and the
    tiles read them there (the same tiles, the same bits). The pad raster before the conv
    wrote the whole copy to lines that in a model come from memory: PP-OCRv6 small
    recognition's 2x2 SAME_UPPER convs on 24 x 160 planes paid 39 and 22 us for it in the
    run (AVX2).
    """

    cdef const float* x
    cdef float* y
    cdef const float* w
    cdef const float* bias
    cdef long p[16]
    cdef long pp[17]
    cdef float relu
    cdef int threads
    cdef readonly int level
    cdef object keep
    cdef float* scratch
    cdef long scratch_floats

    def __init__(self, x, weight, bias, y, region, str act, str level=None, pad=None,
                 long band_bytes=256 * 1024):
        n, c, kh, kw, oh, ow = (int(v) for v in region.sizes)
        cout = int(weight.shape[0])
        cdef float relu = relu_cap("conv kernel", act)
        for a in (x, y):
            if a.dtype != np.float32 or not a.flags.c_contiguous:
                raise ValueError("conv buffers must be C-contiguous float32 arrays")
        if y.size != n * cout * oh * ow or weight.size != cout * c * kh * kw:
            raise ValueError("conv kernel: output or weight size does not match the region")
        packed, padded_bias = _blocked_weights(weight, bias, cout, c * kh * kw, 8, -(-cout // 8))
        self.keep = (x, y, packed, padded_bias)
        self.x = (<const float*><size_t>x.ctypes.data) + <long>region.src_offset
        self.y = <float*><size_t>y.ctypes.data
        self.w = <const float*><size_t>packed.ctypes.data
        self.bias = <const float*><size_t>padded_bias.ctypes.data
        s = [int(v) for v in region.src_strides]
        for i, v in enumerate((n * oh, c, cout, kh, kw, oh, ow, *s)):
            self.p[i] = v
        self.relu = relu
        self.level = _kernel_level("conv", level)
        work = float(y.size) * c * kh * kw
        rows = n * oh
        self.threads = 1 if work < _GRAIN or rows < 2 else max(
            1, min(walle_max_threads(), rows, int(work / _GRAIN)))
        self.scratch = NULL
        if pad is not None:
            top, left, hp, wp = (int(v) for v in pad)
            if not pad_fits(region, tuple(x.shape), pad):
                raise ValueError(f"conv kernel: pad {tuple(pad)} of a {tuple(x.shape)} source "
                                 "does not fit the region (pad_fits)")
            h, w = int(x.shape[2]), int(x.shape[3])
            sh, dh, sw, dw = s[4] // wp, s[2] // wp, s[5], s[3]
            reach = (kh - 1) * dh + 1  # source rows of one output row's windows
            band = max(1, min(oh, (band_bytes // (4 * c * wp) - reach) // sh + 1))
            for i, v in enumerate((c, cout, kh, kw, oh, ow, c * h * w, h, w, top, left, wp,
                                   sh, dh, sw, dw, band)):
                self.pp[i] = v
            self.scratch_floats = c * ((band - 1) * sh + reach) * wp + 16
            scratch = np.empty(self.threads * self.scratch_floats, np.float32)
            self.keep = (*self.keep, scratch)
            self.scratch = <float*><size_t>scratch.ctypes.data

    def run(self):
        cdef long i, chunk, start, stop, rows = self.p[0]
        cdef long* p = self.p
        with nogil:
            if self.threads > 1:
                chunk = (rows + self.threads - 1) // self.threads
                for i in prange(self.threads, num_threads=self.threads, schedule="static"):
                    start = i * chunk
                    stop = min(rows, start + chunk)
                    if start < stop:
                        self._rows(start, stop, i)
            else:
                self._rows(0, rows, 0)

    cdef void _rows(self, long start, long stop, long thread) noexcept nogil:
        cdef long* p = self.p
        if self.scratch != NULL:
            walle_conv_rows_band(self.x, self.w, self.bias, self.y, start, stop, self.pp,
                                 self.relu, self.scratch + thread * self.scratch_floats,
                                 self.level)
        else:
            walle_conv_rows(self.x, self.w, self.bias, self.y, start, stop, p[1], p[2], p[3],
                            p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12],
                            self.relu, self.level)


def pad_fits(region, shape, pad):
    """Whether :class:`ConvKernel` reads the unpadded source of ``shape`` [N, C, H, W] for
    an im2col ``region`` over its zero-bordered copy, ``pad`` = (top, left, HP, WP): the
    region starts at the copy's start, steps its contiguous [N, C, HP, WP] planes whole rows
    at a time and stays inside them, and the source sits inside the border."""
    n, c, kh, kw, oh, ow = (int(v) for v in region.sizes)
    top, left, hp, wp = (int(v) for v in pad)
    if len(shape) != 4 or tuple(int(v) for v in shape[:2]) != (n, c):
        return False
    h, w = int(shape[2]), int(shape[3])
    s = [int(v) for v in region.src_strides]
    rows = s[2] > 0 and s[4] > 0 and s[2] % wp == 0 and s[4] % wp == 0
    return (rows and region.src_offset == 0 and s[0] == c * hp * wp and s[1] == hp * wp
            and s[3] > 0 and s[5] > 0 and (ow - 1) * s[5] + (kw - 1) * s[3] < wp
            and ((oh - 1) * s[4] + (kh - 1) * s[2]) // wp < hp and top >= 0 and left >= 0
            and top + h <= hp and left + w <= wp)


cdef extern from "winograd.h":
    ctypedef struct walle_wino:
        const float* x
        long s_n, s_c, s_h
        long ih, iw
        long n, c, k, oh, ow, th, tw, tiles
        long first
        long r
        long top, left
        long h_org, w_org
        const float* u
        const float* g
        const float* bias
        float* y
        long yk
        float relu
        int pf_out
    long walle_wino_lanes(int level, int nv) nogil
    int walle_wino_max_nv(int level) nogil
    void walle_wino_run(const walle_wino* p, int level, int nv, int m, long g0, long g1,
                        float* vbuf, float* mbuf) nogil


# The filter transforms G of winograd.h's B^T and A^T, per (output tile side, filter
# side): F(4x4, 3x3) and F(2x2, 5x5) share B^T's points 0, 1, -1, 2, -2 and infinity
# (row j of G: f_j * p_j ** k), F(2x2, 3x3) has its own.
_WINO_POINTS = (0.0, 1.0, -1.0, 2.0, -2.0)
_WINO_F = (1.0 / 4.0, -1.0 / 6.0, -1.0 / 6.0, 1.0 / 24.0, 1.0 / 24.0)


def _wino_g6(side):
    g = np.zeros((6, side), np.float64)
    for j in range(5):
        g[j] = [_WINO_F[j] * _WINO_POINTS[j] ** k for k in range(side)]
    g[5, side - 1] = 1.0
    return g


_WINO_G = {
    (4, 3): _wino_g6(3),
    (2, 5): _wino_g6(5),
    (2, 3): np.array([[2.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, -1.0, 1.0], [0.0, 0.0, 2.0]],
                     np.float64) / 2.0,
    # F(6x6, 3x3): points 0, 1, -1, 2, -2, 1/2, -1/2 and infinity (winograd.h's B^T, A^T)
    (6, 3): np.array([[90.0, 0.0, 0.0], [-20.0, -20.0, -20.0], [-20.0, 20.0, -20.0],
                      [1.0, 2.0, 4.0], [1.0, -2.0, 4.0], [64.0, 32.0, 16.0],
                      [64.0, -32.0, 16.0], [0.0, 0.0, 90.0]], np.float64) / 90.0,
}


def winograd_fits(region):
    """Whether an im2col region is a 3x3 or 5x5 window at stride 1 and dilation 1 over rows
    of contiguous columns (what :class:`WinogradKernel` computes)."""
    n, c, kh, kw, oh, ow = (int(v) for v in region.sizes)
    s = [int(v) for v in region.src_strides]
    return kh == kw and kh in (3, 5) and s[2] == s[4] and s[3] == s[5] == 1


def _wino_cost(int level, int nv):
    """The work of one Winograd group of ``nv`` vectors at ``level``, in lanes."""
    return walle_wino_lanes(level, nv) * (_WINO_NV3_COST if nv == 3 else 1.0)


def _wino_groups(int level, long tiles):
    """(nv, groups, last_level, last_nv): ``groups`` groups of ``nv`` vectors at ``level``,
    then, where last_nv is not 0, one narrower group of ``last_nv`` vectors at
    ``last_level`` for the tiles left over, chosen for the fewest lanes' work. An AVX-512
    kernel may end with an AVX2 group: 49 tiles (a 28x28 plane in 4x4 outputs) run as
    32 + 24 lanes instead of 64, at AVX2 as 48 + 8 instead of 72."""
    best = None
    one = tiles <= walle_wino_lanes(level, 1)  # one group: of one vector
    for nv in (1,) if one else range(2, walle_wino_max_nv(level) + 1):
        lanes = walle_wino_lanes(level, nv)
        groups = -(-tiles // lanes)
        rest = tiles - (groups - 1) * lanes
        head = (groups - 1) * _wino_cost(level, nv)
        last, cost = (0, 0), head + _wino_cost(level, nv)
        for lv in [level, 1] if level == 2 else [level]:
            for v in range(1, walle_wino_max_nv(lv) + 1):
                if rest <= walle_wino_lanes(lv, v) < lanes and head + _wino_cost(lv, v) < cost:
                    last, cost = (lv, v), head + _wino_cost(lv, v)
        if best is None or cost < best[0]:
            best = (cost, nv, groups - (last[1] > 0), *last)
    return best[1:]


def _wino_filters(g, int tile, int side):
    """The filters g [Cout, C, side * side] transformed for F(tile x tile, side x side) and
    packed [Cout/8][area][C][8] (a block's filters one stream; Cout padded with zeros)."""
    cout, c = g.shape[0], g.shape[1]
    area = (tile + side - 1) ** 2
    blocks = -(-cout // 8)
    transform = _WINO_G[(tile, side)]
    u = np.einsum("ai,kcij,bj->abkc", transform,
                  g.reshape(cout, c, side, side).astype(np.float64), transform)
    packed = np.zeros((area, blocks * 8, c), np.float32)
    packed[:, :cout] = u.reshape(area, cout, c)
    return _lasting_copy(packed.reshape(area, blocks, 8, c).transpose(1, 0, 3, 2))


# An F(2x2) corner is taken where it saves more than this share of the conv's lanes' work:
# 28x28 planes (49 tiles) save 9% at AVX2 and ran 1.06-1.10x faster (512 -> 512: 31.2
# against 34.2 ms, Zen 1); a 56x56 plane's 4 tiles left over save 0.5% and ran level.
_WINO_F2_MARGIN = 0.02


def _wino_tail_corner(long th, long tw, long rest):
    """(first row, first column) in tiles of the corner the last ``rest`` tiles of an image's
    th x tw grid (row-major) cover, where that is a rectangle (a part of the last row, or
    whole last rows), else None."""
    if rest <= tw:
        return th - 1, tw - rest
    if rest % tw == 0 and rest // tw <= th:
        return th - rest // tw, 0
    return None


def _wino_plan(int level, long n, long th, long tw, long oh, long ow, bint f2_tail=True,
               int tile=4):
    """:func:`_wino_groups`'s choice for the n x th x tw tiles of F(tile x tile, 3x3), or,
    where it is cheaper (in lanes' work), whole groups of ``nv`` vectors then the last
    image's tiles left over computed by F(2x2, 3x3): (nv, groups, last_level, last_nv, tail)
    where ``tail`` is None or (row, column, th2, tw2, level, nv, groups) of that F(2x2)
    corner (output coordinates, its tile grid, its groups). A lane of F(2x2) costs 16
    transformed positions against F(4x4)'s 36 and F(6x6)'s 64 (products and transforms
    alike). A 28x28 plane runs at AVX2 by F(4x4) as 48 tiles then 4 F(2x2) tiles in one
    8-lane group (48 x 36 + 8 x 16 lanes' positions) instead of 48 + 8 lanes (56 x 36), and
    by F(6x6) as 24 tiles then the same 4 (24 x 64 + 8 x 16) instead of 24 + 8 lanes
    (32 x 64): one tile left over costs a whole narrow group, as much as 8 of them."""
    tiles = n * th * tw
    plain = _wino_groups(level, tiles)
    if not f2_tail:
        return (*plain, None)
    nv, groups, last_level, last_nv = plain
    f2_lane = 16.0 / ((tile + 2) * (tile + 2))
    plain_cost = groups * _wino_cost(level, nv) + (
        _wino_cost(last_level, last_nv) if last_nv else 0.0)
    best_cost, best = plain_cost, (*plain, None)
    for hv in range(1, walle_wino_max_nv(level) + 1):
        lanes = walle_wino_lanes(level, hv)
        head, rest = divmod(tiles, lanes)
        corner = _wino_tail_corner(th, tw, rest) if head and rest else None
        if corner is None:
            continue
        row, col = corner[0] * tile, corner[1] * tile
        th2, tw2 = -(-(oh - row) // 2), -(-(ow - col) // 2)
        for lv in [level, 1] if level == 2 else [level]:
            for v in range(1, walle_wino_max_nv(lv) + 1):
                g2 = -(-(th2 * tw2) // walle_wino_lanes(lv, v))
                cost = head * _wino_cost(level, hv) + g2 * _wino_cost(lv, v) * f2_lane
                if cost < best_cost:
                    best_cost, best = cost, (hv, head, 0, 0, (row, col, th2, tw2, lv, v, g2))
    return best if best[4] is None or best_cost < (1 - _WINO_F2_MARGIN) * plain_cost else (
        *plain, None)


# Output planes from which a Winograd conv asks for each block's output lines while its
# products run (winograd.h, pf_out): its stores scatter 4-float rows of 8 channels at once,
# more streams than the prefetchers follow, and a 55x55 plane's lines come from memory in a
# whole model (SqueezeNet's 16 -> 64: 1.2-1.35x its warm time). From 50x50 up: SqueezeNet
# 0.99-0.95x, ResNet-50 0.98x, Inception v2 0.97x (whole models, interleaved, onnxruntime
# run before each); on every plane (13x13 too) SqueezeNet took 1.03x, from 27x27 0.98x.
_WINO_PF_OUT_PLANE = 2500


cdef class WinogradKernel:
    """y[N, Cout, OH*OW] = act(conv(x) + bias) for a 3x3 or 5x5 stride-1 conv, by Winograd
    F(m x m, r x r) (winograd.h). 3x3: ``tile`` m = 6 (8x8 input tiles, 64/324 of the direct
    conv's multiply-adds, filters transformed to 64/9 their size: big planes), 4 (6x6 input
    tiles, a quarter of the multiply-adds, filters transformed to 4x their size) or 2 (4x4
    input tiles, 4/9 of the multiply-adds, filters 16/9: better on small planes and wide
    filters); 5x5: ``tile`` 2 only (6x6 input tiles, 36/100 of the multiply-adds).

    Otherwise the same arguments as :class:`ConvKernel`; ``region`` must pass
    :func:`winograd_fits`. One group of a grouped conv writes its channels into the whole
    output: ``y`` then has ``y_channels`` channels and this conv's start at ``y_channel0``.
    ``pad`` (top, left): ``x`` is the unpadded [N, C, H, W] tensor that lies at (top, left)
    in the zero-padded tensor ``region`` reads, so the pad is never written out.
    ``f2_tail`` (3x3 at ``tile`` 4 or 6): the last image's tiles left past the whole groups
    may run by F(2x2, 3x3) where that is less work (:func:`_wino_plan`; its filters then
    transformed for both). Tiles holding a NaN or infinity are computed directly, so those
    propagate as in the im2col product. The error against the direct sum is a few float32
    ulps of the output's scale (the transforms' constants are small powers of two and
    fractions).
    """

    cdef walle_wino p
    cdef walle_wino last  # the narrower last group's (p with its first tile), if tail_nv
    cdef walle_wino corner  # the F(2x2) corner's (last image, own tiles), if corner_nv
    cdef int nv, threads, m, tail_level, tail_nv, corner_level, corner_nv
    cdef long groups, corner_groups
    cdef float* vbuf
    cdef float* mbuf
    cdef long vsize, msize
    cdef readonly int level
    cdef object keep

    def __init__(self, x, weight, bias, y, region, str act, str level=None, int tile=4,
                 y_channels=None, int y_channel0=0, pad=None, bint f2_tail=True):
        n, c, kh, kw, oh, ow = (int(v) for v in region.sizes)
        cout = int(weight.shape[0])
        if not winograd_fits(region):
            raise ValueError("winograd kernel: the region is not a 3x3 or 5x5 stride-1 window")
        if (tile, kh) not in _WINO_G:
            raise ValueError(f"winograd kernel: tile {tile} for a {kh}x{kh} filter "
                             f"(3x3: 2, 4 or 6; 5x5: 2)")
        cdef float relu = relu_cap("winograd kernel", act)
        for a in (x, y):
            if a.dtype != np.float32 or not a.flags.c_contiguous:
                raise ValueError("conv buffers must be C-contiguous float32 arrays")
        yk = cout if y_channels is None else int(y_channels)
        if not 0 <= y_channel0 <= yk - cout:
            raise ValueError(f"winograd kernel: channels {y_channel0}+{cout} beyond {yk}")
        if y.size != n * yk * oh * ow or weight.size != cout * c * kh * kh:
            raise ValueError("winograd kernel: output or weight size does not match the region")
        self.level = _kernel_level("winograd", level)
        self.m = tile
        side = tile + kh - 1
        area = side * side
        g = np.ascontiguousarray(np.asarray(weight, np.float32).reshape(cout, c, kh * kh))
        packed = _wino_filters(g, tile, kh)
        blocks = -(-cout // 8)
        padded_bias = np.zeros(blocks * 8, np.float32)
        if bias is not None:
            padded_bias[:cout] = np.asarray(bias, np.float32).reshape(-1)
        th, tw = -(-oh // tile), -(-ow // tile)
        tiles = n * th * tw
        plan = _wino_plan(self.level, n, th, tw, oh, ow, f2_tail and tile != 2 and kh == 3,
                          tile)
        self.nv, self.groups, self.tail_level, self.tail_nv, corner = plan
        lanes = walle_wino_lanes(self.level, self.nv)
        work = float(n * cout * oh * ow) * c * kh * kh
        self.threads = 1 if work < 4 * _GRAIN or self.groups < 2 else max(
            1, min(walle_max_threads(), self.groups, int(work / (4 * _GRAIN))))
        self.vsize = area * c * lanes
        self.msize = area * 8 * lanes
        if corner is not None:
            lanes2 = walle_wino_lanes(corner[4], corner[5])
            self.vsize = max(self.vsize, 16 * c * lanes2)
            self.msize = max(self.msize, 16 * 8 * lanes2)
        scratch = _lasting(self.threads * (self.vsize + self.msize) + 16)  # on a cache line
        self.vbuf = <float*><size_t>scratch.ctypes.data
        self.mbuf = self.vbuf + self.threads * self.vsize
        s = [int(v) for v in region.src_strides]
        packed2 = None if corner is None else _wino_filters(g, 2, kh)
        self.keep = (x, y, packed, padded_bias, g, scratch, packed2)
        self.p.r = kh
        if pad is None:
            self.p.x = (<const float*><size_t>x.ctypes.data) + <long>region.src_offset
            self.p.s_n, self.p.s_c, self.p.s_h = s[0], s[1], s[4]
            self.p.ih, self.p.iw = oh + kh - 1, ow + kh - 1
            self.p.top = self.p.left = 0
        else:
            if x.ndim != 4 or x.shape[0] != n or x.shape[1] != c:
                raise ValueError(f"winograd kernel: source {x.shape} is not [{n}, {c}, H, W]")
            if region.src_offset >= s[1]:
                raise ValueError("winograd kernel: the region starts past the first plane")
            self.p.x = <const float*><size_t>x.ctypes.data
            self.p.s_n, self.p.s_c, self.p.s_h = c * x.shape[2] * x.shape[3], \
                x.shape[2] * x.shape[3], x.shape[3]
            self.p.ih, self.p.iw = x.shape[2], x.shape[3]
            self.p.top = int(pad[0]) - region.src_offset // s[4]
            self.p.left = int(pad[1]) - region.src_offset % s[4]
        self.p.n, self.p.c, self.p.k, self.p.oh, self.p.ow = n, c, cout, oh, ow
        self.p.th, self.p.tw, self.p.tiles = th, tw, tiles
        self.p.u = <const float*><size_t>packed.ctypes.data
        self.p.g = <const float*><size_t>g.ctypes.data
        self.p.bias = <const float*><size_t>padded_bias.ctypes.data
        self.p.y = (<float*><size_t>y.ctypes.data) + <long>(y_channel0 * oh * ow)
        self.p.yk = yk
        self.p.relu = relu
        self.p.first = 0
        self.p.pf_out = oh * ow >= _WINO_PF_OUT_PLANE
        self.p.h_org = self.p.w_org = 0
        self.last = self.p
        self.last.first = self.groups * lanes
        self.corner_nv = 0
        if corner is not None:
            row, col, th2, tw2, self.corner_level, self.corner_nv, self.corner_groups = corner
            self.corner = self.p
            self.corner.x = self.p.x + <long>(n - 1) * self.p.s_n
            self.corner.y = self.p.y + <long>((n - 1) * yk * oh * ow)
            self.corner.n = 1
            self.corner.th, self.corner.tw, self.corner.tiles = th2, tw2, th2 * tw2
            self.corner.h_org, self.corner.w_org = row, col
            self.corner.u = <const float*><size_t>packed2.ctypes.data

    @property
    def tile(self):
        """Outputs per tile side: 6, 4 or 2 (F(m x m, 3x3))."""
        return self.m

    @property
    def last_group(self):
        """(level, vectors) of the narrower last group, (0, 0) where there is none."""
        return self.tail_level, self.tail_nv

    @property
    def f2_corner(self):
        """(level, vectors, groups) of the F(2x2, 3x3) tail, (0, 0, 0) where there is none."""
        if not self.corner_nv:
            return 0, 0, 0
        return self.corner_level, self.corner_nv, self.corner_groups

    def run(self):
        cdef long i, chunk, start, stop
        with nogil:
            if self.threads > 1:
                chunk = (self.groups + self.threads - 1) // self.threads
                for i in prange(self.threads, num_threads=self.threads, schedule="static"):
                    start = i * chunk
                    stop = min(self.groups, start + chunk)
                    if start < stop:
                        walle_wino_run(&self.p, self.level, self.nv, self.m, start, stop,
                                       self.vbuf + i * self.vsize, self.mbuf + i * self.msize)
                    if i == self.threads - 1 and self.tail_nv:
                        walle_wino_run(&self.last, self.tail_level, self.tail_nv, self.m, 0, 1,
                                       self.vbuf + i * self.vsize, self.mbuf + i * self.msize)
                    if i == self.threads - 1 and self.corner_nv:
                        walle_wino_run(&self.corner, self.corner_level, self.corner_nv, 2, 0,
                                       self.corner_groups, self.vbuf + i * self.vsize,
                                       self.mbuf + i * self.msize)
            else:
                walle_wino_run(&self.p, self.level, self.nv, self.m, 0, self.groups,
                               self.vbuf, self.mbuf)
                if self.tail_nv:
                    walle_wino_run(&self.last, self.tail_level, self.tail_nv, self.m, 0, 1,
                                   self.vbuf, self.mbuf)
                if self.corner_nv:
                    walle_wino_run(&self.corner, self.corner_level, self.corner_nv, 2, 0,
                                   self.corner_groups, self.vbuf, self.mbuf)


cdef extern from "gemm_conv.h":
    ctypedef struct walle_gemm:
        const float* x
        const long* koff
        const long* poff
        const long* run
        const long* run2
        long s_n
        long n, k, p, cout
        long kc, nc
        const float* w
        const float* bias
        float* y
        const float* res
        long y_k, y_k0
        float relu
        const float* prepacked
        int direct
        long ks
        int wide
        const float* rows
        int pad_tail
    enum: WALLE_GEMM_PF_PLANE  # in place, planes from this size ask for strips ahead
    long walle_gemm_strip(int level, int wide) nogil
    int walle_gemm_rows_fit(const walle_gemm* g, int level) nogil
    int walle_gemm_folds(long rows) nogil
    int walle_gemm_big_b(long k, long p) nogil
    void walle_gemm_run(const walle_gemm* g, int level, long u0, long u1, float* pack) nogil
    void walle_gemm_prepack(const walle_gemm* g, int level, float* dst) nogil
    void walle_gemm_pack_rows(const float* a, long m, long k, float* dst) nogil


_GEMM_PACK_FLOATS = 32768  # a packed block of columns: 128 KiB, to stay in L2
_GEMM_AVX2_KC = 160  # the most reduction rows per packed block at AVX2
# the most reduction rows per packed block of a matmul at AVX-512 and AVX2
# (MatmulPackedKernel), and of a 1x1 stride-1 conv at AVX-512
_MATMUL_KC = 512
# the fewest columns of a constant b for which a matmul pads its leftover columns so that its
# a is read in place and its last rows fold (MatmulPackedKernel)
_FOLD_MIN_COLUMNS = 256
# the largest b (k * n floats: 256 KiB) a matmul packed per call at AVX-512 takes in one chunk
# of all its columns (the bound of gemm_conv.h's lazy pack too: a b that stays in L2)
_MATMUL_ONE_CHUNK_FLOATS = 65536


def _kernel_level(str kind, level):
    """The level a kernel runs at: the module's (``set_level``) for None, the CPU's best for
    "best", else the named one; ValueError naming ``kind`` for an unknown level or one this
    CPU does not run."""
    best = walle_conv_best_level()
    if level is not None and level != "best" and level not in LEVELS:
        raise ValueError(f"{kind} kernel: level {level!r} (best, {', '.join(LEVELS)})")
    value = _level if level is None else best if level == "best" else LEVELS[level]
    if value > best:
        raise ValueError(f"{kind} kernel: this CPU does not run the {level} tiles")
    return value


cdef void _gemm_units(const walle_gemm* g, int level, long units, int threads, float* pack,
                      long psize) noexcept nogil:
    """walle_gemm_run over units [0, units), split into ``threads`` even runs (each with its
    own pack buffer of ``psize`` floats) when there are several."""
    cdef long i, chunk, start, stop
    if threads > 1:
        chunk = (units + threads - 1) // threads
        for i in prange(threads, num_threads=threads, schedule="static"):
            start = i * chunk
            stop = min(units, start + chunk)
            if start < stop:
                walle_gemm_run(g, level, start, stop, pack + i * psize)
    else:
        walle_gemm_run(g, level, 0, units, pack)


def _gemm_blocking(int level, long k, long p, kc, nc, int wide):
    """(kc, nc, chunks): reduction rows per packed block, columns per chunk (whole strips;
    only the last chunk is cut) and chunks, by default or as ``kc``/``nc`` ask."""
    strip = walle_gemm_strip(level, wide)
    if kc is None and level == 1:
        # AVX2 runs each strip twice (two halves of 4 channels): a strip of kc x 24 and
        # the block's weights (8 x kc) stay in L1 for the second half at kc <= 160
        kc = -(-k // -(-k // _GEMM_AVX2_KC))
    kc = int(kc) if kc is not None else (k if k <= 384 else 256)
    if kc < 1:
        raise ValueError(f"gemm conv kernel: kc {kc} < 1")
    kc = min(kc, k)
    most = max(strip, _GEMM_PACK_FLOATS // kc // strip * strip) if nc is None else int(nc)
    if most < 1:
        raise ValueError(f"gemm conv kernel: nc {most} < 1")
    chunks = -(-p // most)
    nc = strip * -(-(-(-p // chunks)) // strip)
    return kc, nc, -(-p // nc)


def _gemm_direct_nc(int level, long p, long cout):
    """Columns per chunk of a 1x1 conv read in place, unless told (None: _gemm_blocking's).

    At AVX2 each 8 channels read a strip twice (two halves of 4), the second time from L1;
    the first read comes from L2 where the chunk's strips outgrow L1. On planes under
    WALLE_GEMM_PF_PLANE (no strips asked for ahead), with 16 blocks of 8 channels or more,
    chunks of two strips (kc x 48 floats, 24 KiB at kc 128) keep every read of them in L1
    across the blocks, for the weights read once per chunk instead of once per conv: an
    Intel Xeon, one core, builds alternating: 384 <-> 768 on 3 x 80 (PP-OCRv6's
    recognisers) 0.97x the time, 384 -> 384 there 0.98-0.99x, 64 -> 256 on 27 x 27
    0.93-0.98x, ResNet-50's 14 x 14 convs and others within 1%; with fewer blocks (384 ->
    48 and 512 -> 64 on 13 x 13) up to 1.025x, hence the bound."""
    strip = walle_gemm_strip(level, 1)
    if level == 1 and p < WALLE_GEMM_PF_PLANE and -(-cout // 8) >= 16 and p > 2 * strip:
        return 2 * strip
    return None


def _gemm_default_kc(int level, long k, region):
    """GemmConvKernel's reduction rows per block unless told (None: _gemm_blocking's)."""
    if level == 2 and gemm_direct_fits(region):
        # a 1x1 stride-1 conv (packed or read in place) as the matmuls: even blocks of at
        # most 512 rows; 256 stored and read back the partial sums of 512 -> 1000 on
        # 13x13 (SqueezeNet's last conv) and 1024 -> 256 on 14x14 for 2-4% more time
        return _gemm_long_kc(k)
    return None


def _gemm_long_kc(long k):
    """Reduction rows per block of ``long_k``: even blocks of at most _MATMUL_KC."""
    return -(-k // -(-k // _MATMUL_KC))


def gemm_long_fits(region, level=None):
    """Whether ``long_k`` changes :class:`GemmConvKernel`'s blocks for an im2col ``region``
    at ``level`` (None: the module's): its reduction is split into more blocks by default."""
    n, c, kh, kw, oh, ow = (int(v) for v in region.sizes)
    cdef int at = _kernel_level("gemm conv", level)
    k = c * kh * kw
    kc = _gemm_blocking(at, k, oh * ow, _gemm_default_kc(at, k, region), None, 1)[0]
    return _gemm_long_kc(k) > kc


def _runs(offsets, step):
    """For each position, how many offsets from it on go up by ``step`` at a time."""
    p = len(offsets)
    ends = np.append(np.flatnonzero(np.diff(offsets) != step), p - 1)
    return ends[np.searchsorted(ends, np.arange(p))] - np.arange(p) + 1


cdef class GemmConvKernel:
    """y[N, Cout, OH*OW] = act(conv(x) + bias) as a packed GEMM over the im2col columns
    (gemm_conv.h): any conv the im2col ``region`` describes (stride, dilation, padded input),
    without writing the column matrix, bias and ReLU applied as the last block is stored.

    The same arguments as :class:`ConvKernel`, and ``y_channels``/``y_channel0`` as
    :class:`WinogradKernel`'s; ``residual`` (laid out as ``y``) is added after the bias,
    before the activation (ResNet's shortcut: y = relu(conv(x) + bias + residual)). ``kc``
    (reduction rows per packed block) and ``nc`` (columns per chunk, rounded up to whole
    strips) override the cache blocking (the tests use small ones to cover every block
    edge); by default blocks of 256 rows (the whole reduction up to 384) and chunks of at
    most 128 KiB (read in place at AVX2, of two strips: :func:`_gemm_direct_nc`).
    ``direct``: the tiles read the columns where they are instead of a packed
    copy (only the leftover columns of a chunk are packed); for a 1x1 stride-1 conv, whose
    columns are the input's rows (:func:`gemm_direct_fits`; ValueError otherwise). Packing
    took a third of a 96 -> 16 1x1 conv on 55x55 planes (its strips are read by 2 blocks of
    8 channels only), a tenth of ShuffleNet's grouped 1x1 convs. ``long_k`` (where ``kc`` is
    not given): the default's chunks of columns, the reduction in even blocks of up to 512
    rows (:func:`gemm_long_fits`: where that is fewer blocks). Each block after the first
    reads back and stores the partial sums of the whole chunk, a pass that cost 3-9% of ResNet's
    1x1 convs on 7x7 and 14x14 planes at AVX2 on Zen 3 (512 -> 2048 on 7x7: 9.3 ms against
    10.1 in blocks of 128); whether it pays depends on the CPU's caches, so the search times it.
    """

    cdef walle_gemm g
    cdef float* pack
    cdef long units, psize
    cdef int threads
    cdef readonly int level
    cdef object keep

    def __init__(self, x, weight, bias, y, region, str act, str level=None, kc=None, nc=None,
                 y_channels=None, int y_channel0=0, residual=None, bint direct=False,
                 bint long_k=False):
        n, c, kh, kw, oh, ow = (int(v) for v in region.sizes)
        cout = int(weight.shape[0])
        cdef float relu = relu_cap("gemm conv kernel", act)
        for a in (x, y):
            if a.dtype != np.float32 or not a.flags.c_contiguous:
                raise ValueError("conv buffers must be C-contiguous float32 arrays")
        yk = cout if y_channels is None else int(y_channels)
        if not 0 <= y_channel0 <= yk - cout:
            raise ValueError(f"gemm conv kernel: channels {y_channel0}+{cout} beyond {yk}")
        k, p = c * kh * kw, oh * ow
        if y.size != n * yk * p or weight.size != cout * k:
            raise ValueError("gemm conv kernel: output or weight size does not match the region")
        if residual is not None and (
                residual.dtype != np.float32 or not residual.flags.c_contiguous
                or residual.size != y.size):
            raise ValueError("gemm conv kernel: the residual must be a C-contiguous float32 "
                             "array the size of the output")
        self.level = _kernel_level("gemm conv", level)
        s = [int(v) for v in region.src_strides]
        _check_inside("gemm conv", region, x)
        koff = _tap_offsets(region) + int(region.src_offset)
        poff = (np.arange(oh, dtype=np.int64)[:, None] * s[4]
                + np.arange(ow, dtype=np.int64) * s[5]).ravel()
        run, run2 = (_runs(poff, step) for step in (1, 2))
        # whole groups of 4 blocks for the leftover columns
        packed, padded_bias = _blocked_weights(weight, bias, cout, k, 8, 4 * -(-cout // 32))
        if kc is None and long_k:
            # the default's chunks of columns, the reduction in the fewest blocks
            kc, nc = _gemm_long_kc(k), _gemm_blocking(
                self.level, k, p, _gemm_default_kc(self.level, k, region), nc, 1)[1]
        elif kc is None:
            kc = _gemm_default_kc(self.level, k, region)
        if nc is None and direct:
            nc = _gemm_direct_nc(self.level, p, cout)
        kc, nc, chunks = _gemm_blocking(self.level, k, p, kc, nc, 1)
        self.units = n * chunks
        work = float(n * cout * p) * k
        self.threads = 1 if work < _GRAIN or self.units < 2 else max(
            1, min(walle_max_threads(), self.units, int(work / _GRAIN)))
        self.psize = kc * nc + 16
        scratch = _lasting(self.threads * self.psize + 16)  # on a cache line
        self.pack = <float*><size_t>scratch.ctypes.data
        koff, poff, run, run2 = (  # read every run, as the weights
            _lasting_copy(np.asarray(v, np.int64)) for v in (koff, poff, run, run2))
        self.keep = (x, y, packed, padded_bias, koff, poff, run, run2, scratch, residual)
        self.g.x = <const float*><size_t>x.ctypes.data
        self.g.koff = <const long*><size_t>koff.ctypes.data
        self.g.poff = <const long*><size_t>poff.ctypes.data
        self.g.run = <const long*><size_t>run.ctypes.data
        self.g.run2 = <const long*><size_t>run2.ctypes.data
        self.g.s_n = s[0]
        self.g.n, self.g.k, self.g.p, self.g.cout = n, k, p, cout
        self.g.kc, self.g.nc = kc, nc
        self.g.w = <const float*><size_t>packed.ctypes.data
        self.g.bias = <const float*><size_t>padded_bias.ctypes.data
        self.g.y = <float*><size_t>y.ctypes.data
        self.g.res = NULL if residual is None else <const float*><size_t>residual.ctypes.data
        self.g.y_k, self.g.y_k0 = yk, y_channel0
        self.g.relu = relu
        self.g.prepacked = NULL  # the columns are packed per call (or read in place)
        if direct and not gemm_direct_fits(region):
            raise ValueError("gemm conv kernel: direct columns need a 1x1 stride-1 region "
                             "whose rows are contiguous")
        self.g.direct = direct
        self.g.ks = s[1]
        self.g.wide = 1
        self.g.rows = NULL

    def run(self):
        with nogil:
            _gemm_units(&self.g, self.level, self.units, self.threads, self.pack, self.psize)


def gemm_direct_fits(region):
    """Whether :class:`GemmConvKernel` can read the columns of an im2col ``region``
    [N, C, KH, KW, OH, OW] in place (``direct``): a 1x1 window whose output rows follow each
    other in the source (stride 1, no crop), so that column p of channel c is at
    ``c * stride + p``."""
    n, c, kh, kw, oh, ow = (int(v) for v in region.sizes)
    s = [int(v) for v in region.src_strides]
    return kh == 1 and kw == 1 and s[5] == 1 and (oh == 1 or s[4] == ow) and s[1] > 0


cdef extern from "conv_lanes.h":
    ctypedef struct walle_lanes:
        const float* x
        const long* toff
        const float* w
        const float* bias
        float* y
        long taps, cout, oh, ow
        long y_row, y_plane
        long s_n, s_oh
        long chunk
        long ahead
        float relu
    long walle_lanes_block(int level, int form) nogil
    long walle_lanes_columns(int level, int form) nogil
    int walle_lanes_form(int level, int form) nogil
    void walle_lanes_run(const walle_lanes* g, int level, int form, long sow, long r0,
                         long r1) nogil
    ctypedef struct walle_lanes_pad:
        const float* src
        const long* toff
        long c, h, w, top, left, wp
        long sh, kext
        long band, rows
    void walle_lanes_padded_run(const walle_lanes* g, const walle_lanes_pad* p, int level,
                                int form, long sow, long r0, long r1, float* scratch) nogil
    void walle_lanes_pad_copy(const walle_lanes_pad* p, long images, long hp, float* dst) nogil
    enum: WALLE_LANES_PF


_LANES_WIDEST = 16  # the most output columns of a LanesConvKernel tile (AVX-512)
def _deep_form(int level, long cout):
    """The deep tile (2 to 4 vectors of channels; 4 at AVX-512 only) whose blocks pad
    ``cout`` least, the widest of those (fewer loads per multiply-add)."""
    best, waste = 2, None
    for form in range(2, 5 if level == 2 else 3):
        cw = walle_lanes_block(level, form)
        pad = -(-cout // cw) * cw - cout
        if waste is None or pad <= waste:
            best, waste = form, pad
    return best


# The bytes of padded input rows a LanesConvKernel reading an unpadded source copies per
# band of output rows (a quarter of a 1 MiB L2).
_LANES_BAND_BYTES = 256 * 1024
# The L2 a LanesConvKernel assumes where its caller does not say (the smallest of the CPUs
# measured: Zen 3's).
_LANES_L2_BYTES = 512 * 1024
# The bytes of input rows a deep LanesConvKernel's blocks of channels read in turn (a
# quarter of a 1 MiB L2: room for a block's weights beside them).
_LANES_DEEP_CHUNK_BYTES = 256 * 1024


def _deep_chunk(region, long blocks, long block_floats, long tile):
    """Output positions per chunk of a deep LanesConvKernel: whole output rows whose input
    rows (every channel's, approximately) take at most _LANES_DEEP_CHUNK_BYTES, a multiple
    of the tile's ``tile`` positions; the whole plane for one block of channels, or where
    every block reading the whole input moves fewer bytes than every chunk reading all the
    weights (``blocks`` of ``block_floats``): 512 -> 512 3x3/2 on 14 x 14 at AVX2 (32
    blocks of 16 channels, 9.4 MB of weights) took 1.45x the packed GEMM's time chunked."""
    n, c, kh, kw, oh, ow = (int(v) for v in region.sizes)
    s = [int(v) for v in region.src_strides]
    if blocks <= 1:
        return oh * ow
    rows = 1
    while rows < oh and c * (rows * s[4] + kh * s[2]) * 4 <= _LANES_DEEP_CHUNK_BYTES:
        rows += 1
    chunks = -(-oh // rows)
    weights, source = blocks * block_floats, c * s[1]
    if chunks == 1 or blocks * source + weights <= chunks * weights + source:
        return oh * ow
    return max(tile, rows * ow // tile * tile)


def _ahead(region, long l2_bytes):
    """Tiles ahead whose input rows a LanesConvKernel's taps ask for (conv_lanes.h's
    WALLE_LANES_PF): none where an image's source fits in ``l2_bytes`` (the L2, where the
    layer before or the input's load has just written it), since asking then only costs
    (AVX2, an Intel Xeon, warm or after an 8 MiB write: PP-HGNet's 96 -> 48 3x3/2 stem conv
    0.90-0.94x the time without, 128 -> 128 3x3/2 on 28 x 28 0.87-0.92x, ResNet-50's 7x7/2
    stem 0.90x; at AVX-512 level, the stem 0.95x); a source beyond it comes from L3 or
    memory, more rows side by side than the hardware prefetchers follow (PP-OCRv6's
    detector's 32 -> 16 3x3/2 conv on 320 x 320, 13 MB: 5.1 -> 3.6 ms)."""
    s = [int(v) for v in region.src_strides]
    return WALLE_LANES_PF if int(region.sizes[1]) * s[1] * 4 > l2_bytes else 0


def lanes_fits(region, bint deep=False):
    """Whether :class:`LanesConvKernel` runs an im2col ``region`` [N, C, KH, KW, OH, OW]: with
    its deep tiles any region that reads forward (they run along the flattened output plane,
    each position at its own offset); else output rows at least as wide as its widest tile,
    source columns 1 to 4 apart (the tiles' compile-time strides)."""
    ow = int(region.sizes[5])
    s = [int(v) for v in region.src_strides]
    if min(s) < 0:
        return False
    return deep or (ow >= _LANES_WIDEST and 1 <= s[5] <= 4)


cdef class LanesConvKernel:
    """y[N, Cout, OH*OW] = act(conv(x) + bias) with the output channels in the vector lanes
    (conv_lanes.h): each input value broadcast where it lies, nothing packed, for convs with
    few input channels (a network's RGB stem), whose im2col pack would cost more than the
    tiles save. The same arguments as :class:`ConvKernel`; the region must pass
    :func:`lanes_fits` (ValueError otherwise). ``wide`` picks AVX-512's tile of 32 channels x
    8 columns (True) or 16 x 16 (False); by default 32 x 8 for strided convs (fewer loads per
    multiply-add: 0.7-0.93x the time of AlexNet's, ResNet-50's, ZFNet's and SqueezeNet's
    stems), 16 x 16 at stride 1 (a 3x3 RGB conv: 32 x 8 took 1.1x) and for 16 output
    channels or fewer (a 32-channel block half zeros: PP-LCNet's 16-channel 3x3/2 stem took
    1.8x). ``wide`` (read-only) says which.

    ``deep`` takes the tiles for convs of many taps instead (conv_lanes.h's deep tiles: the
    ``lanes_deep`` algorithm): 2-4 vectors of channels (the shape whose blocks pad ``cout``
    least) x 6-8 positions of the flattened output plane, any column stride and row width.
    A strided 3x3 conv, 96 -> 48 channels to 12 x 80 (PP-HGNet's stem): 0.71 ms against the
    packed GEMM's 0.85 at AVX-512, 0.76 against 0.84 at AVX2 (one core); 128 -> 128 3x3/2
    on 28 x 28: 0.51 against 0.60. A 1x1 stride-1 conv stays faster in the GEMM (its columns
    read in place).
    """

    cdef walle_lanes g
    cdef walle_lanes_pad pad
    cdef long rows, sow, src_offset, hp, scratch_size
    cdef float* scratch
    cdef readonly int threads
    cdef readonly int form
    cdef readonly int level
    cdef readonly bint padded
    cdef object keep, pad_arrays

    def __init__(self, x, weight, bias, y, region, str act, str level=None, wide=None,
                 bint deep=False, pad=None, long band_bytes=_LANES_BAND_BYTES,
                 long l2_bytes=_LANES_L2_BYTES):
        n, c, kh, kw, oh, ow = (int(v) for v in region.sizes)
        cout = int(weight.shape[0])
        cdef float relu = relu_cap("lanes conv kernel", act)
        for a in (x, y):
            if a.dtype != np.float32 or not a.flags.c_contiguous:
                raise ValueError("conv buffers must be C-contiguous float32 arrays")
        taps = c * kh * kw
        if y.size != n * cout * oh * ow or weight.size != cout * taps:
            raise ValueError("lanes conv kernel: output or weight size does not match the "
                             "region")
        if not lanes_fits(region, deep):
            if min(region.src_strides) < 0:
                raise ValueError("lanes conv kernel: a region that reads backwards")
            raise ValueError(f"lanes conv kernel: output rows of {ow} columns (at least "
                             f"{_LANES_WIDEST}) with source columns {region.src_strides[5]} "
                             "apart (1 to 4)")
        s = [int(v) for v in region.src_strides]
        self.padded = pad is not None
        if self.padded:
            self._set_pad(x, region, pad, band_bytes)
        else:
            _check_inside("lanes conv", region, x)
        self.level = _kernel_level("lanes conv", level)
        if deep:
            self.form = _deep_form(self.level, cout)
        else:
            wide = s[5] > 1 and cout > 16 if wide is None else bool(wide)
            self.form = 1 if self.level == 2 and wide else 0
        cw = walle_lanes_block(self.level, self.form)
        packed, padded_bias = _blocked_weights(weight, bias, cout, taps, cw, -(-cout // cw))
        toff = _tap_offsets(region)
        self.keep = (x, y, packed, padded_bias, toff)
        self.src_offset = int(region.src_offset)
        self.g.x = (<const float*><size_t>x.ctypes.data) + self.src_offset
        self.g.toff = <const long*><size_t>toff.ctypes.data
        self.g.w = <const float*><size_t>packed.ctypes.data
        self.g.bias = <const float*><size_t>padded_bias.ctypes.data
        self.g.y = <float*><size_t>y.ctypes.data
        self.g.taps, self.g.cout, self.g.oh, self.g.ow = taps, cout, oh, ow
        self.g.y_row, self.g.y_plane = ow, oh * ow
        self.g.s_n, self.g.s_oh = s[0], s[4]
        tile = walle_lanes_columns(self.level, self.form)
        self.g.chunk = _deep_chunk(region, -(-cout // cw), taps * cw, tile)
        self.g.ahead = 0 if self.padded else _ahead(region, l2_bytes)
        self.g.relu = relu
        self.rows, self.sow = n * oh, s[5]
        work = float(y.size) * taps
        self.threads = 1 if work < _GRAIN or self.rows < 2 else max(
            1, min(walle_max_threads(), self.rows, int(work / _GRAIN)))
        if self.padded:  # a scratch of padded rows per thread
            scratch = _lasting(self.threads * self.scratch_size)
            self.scratch = <float*><size_t>scratch.ctypes.data
            self.keep = (*self.keep, scratch)

    def _set_pad(self, x, region, pad, long band_bytes):
        """Reads ``x`` [N, C, H, W] as if placed at (top, left) of zero planes of HP x WP
        (``pad``), the region's source: in bands of output rows whose padded input rows
        take about ``band_bytes``."""
        n, c, kh, kw, oh, ow = (int(v) for v in region.sizes)
        s = [int(v) for v in region.src_strides]
        top, left, hp, wp = (int(v) for v in pad)
        if x.ndim != 4 or x.shape[:2] != (n, c):
            raise ValueError(f"lanes conv kernel: an unpadded source of shape {x.shape}, not "
                             f"[{n}, {c}, H, W]")
        h, w = int(x.shape[2]), int(x.shape[3])
        if (region.src_offset or s[0] != c * hp * wp or s[1] != hp * wp or s[2] % wp
                or s[4] % wp or (kw - 1) * s[3] + (ow - 1) * s[5] >= wp
                or min(top, left) < 0 or top + h > hp
                or left + w > wp):
            raise ValueError(f"lanes conv kernel: pad {tuple(pad)} of a {h} x {w} source does "
                             "not match the region's padded planes")
        last = sum((size - 1) * st for size, st in zip(region.sizes, s))
        if min(s) < 0 or last >= n * c * hp * wp:
            raise ValueError("lanes conv kernel: the region reads outside the padded source")
        kext = (kh - 1) * (s[2] // wp) + 1
        sh = s[4] // wp
        per_row = max(1, sh) * c * wp * 4  # bytes of the padded rows one more output row adds
        band = max(1, min(oh, (band_bytes - kext * c * wp * 4) // per_row + 1))
        rows = (band - 1) * sh + kext
        toff = np.ascontiguousarray(
            (np.arange(c, dtype=np.int64)[:, None, None] * (rows * wp)
             + np.arange(kh, dtype=np.int64)[:, None] * s[2]
             + np.arange(kw, dtype=np.int64) * s[3]).ravel())
        self.pad.src = <const float*><size_t>x.ctypes.data
        self.pad.toff = <const long*><size_t>toff.ctypes.data
        self.pad.c, self.pad.h, self.pad.w = c, h, w
        self.pad.top, self.pad.left, self.pad.wp = top, left, wp
        self.pad.sh, self.pad.kext, self.pad.band, self.pad.rows = sh, kext, band, rows
        self.hp = hp
        self.scratch_size = c * rows * wp
        self.pad_arrays = toff

    @property
    def band(self):
        """Output rows a band reads from one scratch of padded rows (with ``pad``), else 0."""
        return self.pad.band if self.padded else 0

    @property
    def wide(self):
        """Whether the kernel runs AVX-512's tile of 32 channels x 8 columns."""
        return self.form == 1

    @property
    def ahead(self):
        """Tiles ahead whose input rows the deep tiles' taps ask for (0: none)."""
        return self.g.ahead

    @property
    def deep(self):
        """Whether the kernel runs the tiles for many taps (conv_lanes.h's deep tiles)."""
        return self.form >= 2

    @property
    def chunk(self):
        """The deep tiles' output positions per chunk (every block of channels in turn)."""
        return self.g.chunk

    def io_arrays(self):
        """The arrays ``run_io`` replaces, in its argument order: the input, the output."""
        return self.keep[0], self.keep[1]

    def run_io(self, cnp.ndarray x, cnp.ndarray y):
        """Run on the caller's arrays (each with its build-time array's size): ``x`` read
        where it lies (a network's input: no copy into the plan), ``y`` written."""
        cdef walle_lanes g = self.g
        cdef walle_lanes_pad p = self.pad
        g.x = _io_ptr(x, self.keep[0].size) + self.src_offset
        p.src = _io_ptr(x, self.keep[0].size)
        g.y = <float*>_io_ptr(y, self.keep[1].size)
        self._run(&g, &p)

    def run(self):
        self._run(&self.g, &self.pad)

    cdef void _run(self, const walle_lanes* g, const walle_lanes_pad* p) noexcept:
        cdef long i, chunk, start, stop
        with nogil:
            if self.threads > 1:
                chunk = (self.rows + self.threads - 1) // self.threads
                for i in prange(self.threads, num_threads=self.threads, schedule="static"):
                    start = i * chunk
                    stop = min(self.rows, start + chunk)
                    if start < stop:
                        self._rows(g, p, start, stop, i)
            else:
                self._rows(g, p, 0, self.rows, 0)

    cdef void _rows(self, const walle_lanes* g, const walle_lanes_pad* p, long r0, long r1,
                    long thread) noexcept nogil:
        if self.padded:
            walle_lanes_padded_run(g, p, self.level, self.form, self.sow, r0, r1,
                                   self.scratch + thread * self.scratch_size)
        else:
            walle_lanes_run(g, self.level, self.form, self.sow, r0, r1)


cdef extern from "conv_pool.h":
    ctypedef struct walle_lanes_pool:
        long kh, kw, sh, sw, ph, pw, top, left, wp, band
        int kind
        float scale, fill
    long walle_lanes_pool_rows(const walle_lanes_pool* p) nogil
    long walle_lanes_pool_bands(const walle_lanes_pool* p) nogil
    void walle_pool_set_ahead() nogil
    long walle_pool_row_scratch(const long* sz, const long* st) nogil
    void walle_lanes_pool_run(const walle_lanes* g, const walle_lanes_pool* p, int level,
                              int form, long sow, int pool_level, long i0, long i1,
                              float* buf, float* y, float* v) nogil


walle_pool_set_ahead()  # from the L2's size, as ops_raster's pools (pool_rows.h)


cdef class LanesPoolKernel:
    """A :class:`LanesConvKernel` and the pooling window that alone reads its output, in
    bands of rows (conv_pool.h): each band's conv rows go to a buffer of about ``band_bytes``
    that the pool reads while L2 holds it, instead of through the conv's whole output (which
    is never written). ``y`` is the pool's output [N, Cout, PH, PW]; ``sizes`` and
    ``strides`` are the pool's region ([KH, KW, N, Cout, PH, PW], offset 0, windows along rows
    at column stride 1 or 2: the row kernels of ops_raster's pools) over the conv's output,
    or with ``pad`` = (top, left, HP, WP) over that output placed at (top, left) in planes of
    HP x WP, the rest ``fill`` (a pad raster's: -inf for a max pool). ``kind`` 0 sum, 1 mean,
    2 max; ``pool_level`` the pool's instruction-set level. The same bits as the kernels
    apart. ValueError on a region that is not such a pooling of the conv's output. The
    conv's threads split the bands (each with a buffer of its own).
    """

    cdef LanesConvKernel conv
    cdef walle_lanes_pool p
    cdef int pool_level
    cdef long items, threads, buf_size, v_size
    cdef float* buf
    cdef float* v
    cdef float* y
    cdef float* padded
    cdef object keep

    def __init__(self, LanesConvKernel conv, y, sizes, strides, int kind, int pool_level,
                 long band_bytes, pad=None, float fill=0.0):
        kh, kw, n, c, ph, pw = (int(v) for v in sizes)
        s = [int(v) for v in strides]
        oh, ow = conv.g.oh, conv.g.ow
        top, left, hp, wp = (0, 0, oh, ow) if pad is None else (int(v) for v in pad)
        images = conv.rows // oh
        if y.dtype != np.float32 or not y.flags.c_contiguous or y.size != n * c * ph * pw:
            raise ValueError("lanes pool kernel: the output must be a C-contiguous float32 "
                             f"array of {n * c * ph * pw} elements")
        if (n != images or c != conv.g.cout or kw < 2 or s[5] not in (1, 2) or s[4] % wp
                or s[:2] != [wp, 1] or s[3] != hp * wp or (n > 1 and s[2] != c * hp * wp)
                or s[4] < wp or (ph - 1) * (s[4] // wp) + kh > hp
                or (pw - 1) * s[5] + kw > wp or min(top, left) < 0 or top + oh > hp
                or left + ow > wp):
            raise ValueError(f"lanes pool kernel: sizes {list(sizes)} strides {s} pad "
                             f"{(top, left, hp, wp)} are not a row-wise pooling of the conv's "
                             f"{n} x {c} x {oh} x {ow} output")
        if not 0 <= pool_level <= 2:
            raise ValueError(f"lanes pool kernel: pool level {pool_level} (0 to 2)")
        self.conv, self.pool_level = conv, pool_level
        self.p.kh, self.p.kw, self.p.sh, self.p.sw = kh, kw, s[4] // wp, s[5]
        self.p.ph, self.p.pw, self.p.kind = ph, pw, kind
        self.p.top, self.p.left, self.p.wp, self.p.fill = top, left, wp, fill
        self.p.scale = 1.0 / (kh * kw) if kind == 1 else 1.0
        rows_fit = (band_bytes // (4 * c * wp) - kh) // self.p.sh + 1
        self.p.band = max(1, min(ph, rows_fit))
        cdef long row_sz[6]
        cdef long row_st[6]
        for i in range(6):
            row_sz[i], row_st[i] = int(sizes[i]), s[i]
        self.items = images * walle_lanes_pool_bands(&self.p)
        self.buf_size = c * walle_lanes_pool_rows(&self.p) * wp
        self.v_size = walle_pool_row_scratch(row_sz, row_st)
        self.threads = max(1, min(conv.threads, self.items))  # each with a buffer of its own
        buf = _lasting(self.threads * self.buf_size)
        buf[...] = fill
        v = _lasting(self.threads * self.v_size)
        self.buf = <float*><size_t>buf.ctypes.data
        self.v = <float*><size_t>v.ctypes.data
        self.y = <float*><size_t>y.ctypes.data
        self.keep = (y, buf, v)
        self.padded = NULL
        if conv.padded:  # the conv's source padded here first: the bands read whole rows
            padded = _lasting(images * conv.pad.c * conv.hp * conv.pad.wp)
            self.padded = <float*><size_t>padded.ctypes.data
            self.keep = (*self.keep, padded)

    @property
    def band(self):
        """Pooled rows per band."""
        return self.p.band

    def run(self):
        self._run(&self.conv.g, self.y, self.conv.pad.src)

    def io_arrays(self):
        """The arrays ``run_io`` replaces, in its argument order: the conv's input, the
        pool's output."""
        return self.conv.keep[0], self.keep[0]

    def run_io(self, cnp.ndarray x, cnp.ndarray y):
        """Run on the caller's arrays (each with its build-time array's size): ``x`` read
        where it lies (a network's input: no copy into the plan), ``y`` written."""
        cdef walle_lanes g = self.conv.g
        g.x = _io_ptr(x, self.conv.keep[0].size) + self.conv.src_offset
        self._run(&g, <float*>_io_ptr(y, self.keep[0].size), _io_ptr(x, self.conv.keep[0].size))

    cdef void _run(self, const walle_lanes* g0, float* y, const float* src) noexcept:
        cdef long t, chunk, start, stop
        cdef long threads = self.threads
        cdef walle_lanes gp = g0[0]
        cdef walle_lanes_pad pad = self.conv.pad
        cdef const walle_lanes* g = g0
        if self.padded != NULL:
            pad.src = src
            gp.x = self.padded
            g = &gp
        with nogil:
            if self.padded != NULL:
                walle_lanes_pad_copy(&pad, self.conv.rows // self.conv.g.oh, self.conv.hp,
                                     self.padded)
            if threads > 1:
                chunk = (self.items + threads - 1) // threads
                for t in prange(threads, num_threads=threads, schedule="static"):
                    start = t * chunk
                    stop = min(self.items, start + chunk)
                    if start < stop:
                        walle_lanes_pool_run(g, &self.p, self.conv.level, self.conv.form,
                                             self.conv.sow, self.pool_level, start, stop,
                                             self.buf + t * self.buf_size, y,
                                             self.v + t * self.v_size)
            else:
                walle_lanes_pool_run(g, &self.p, self.conv.level, self.conv.form,
                                     self.conv.sow, self.pool_level, 0, self.items, self.buf,
                                     y, self.v)


cdef const float* _io_ptr(cnp.ndarray array, long size) except NULL:
    """Address of a caller's array for ``run_io``: float32, C-contiguous, ``size`` elements."""
    if (cnp.PyArray_TYPE(array) != cnp.NPY_FLOAT32 or not cnp.PyArray_IS_C_CONTIGUOUS(array)
            or cnp.PyArray_SIZE(array) != size or size == 0):
        raise ValueError(f"run_io needs C-contiguous float32 arrays of {size} elements "
                         "(sized as the build-time a, b, c)")
    return <const float*>cnp.PyArray_DATA(array)


cdef class MatmulPackedKernel:
    """c[m, n] = act(a @ b + bias) with gemm_conv.h's packed GEMM: a's rows are the output
    channels, b's columns the strips (packed once at build time when ``b_constant``, a
    matmul's weights, else per call).

    The tiles read a's rows where they lie (``a_in_place``), 8 at a time, and only a last
    block of fewer than 8 rows is packed per call: packing all of a (8 rows interleaved per
    reduction row) took 4% of MatMul 256^3 (one core, Zen 5). Where some columns would run
    by the tail tiles (which read 4 packed blocks at once), a is packed whole instead.
    At AVX-512, 1 to 4 rows past a multiple of 8 (9 rows or more) run in the last whole
    block's tile, 9 to 12 rows high, instead of a pass of their own over b; with a constant
    b of 256 or more columns its leftover columns are then a padded strip, so that a is read
    in place (ddddocr's 25 x 1024 x 8210 Gemm: 3.6 -> 3.05 ms, 24 rows 2.85; an Intel Xeon).
    A constant b of more than 2^18 floats is asked for a reduction block ahead by the
    tiles of the block before it, at AVX-512 and AVX2 (gemm_conv.h's walle_gemm_streams;
    its leftover columns padded so too). ``wide`` (AVX-512 only; ignored at the other
    levels): the 8 x 3 tile over strips of 48 columns, neither fold nor b asked ahead.

    ``b_in_place`` (b not constant): the tiles read b's strips where they lie, rows n apart,
    and only the leftover columns are packed: no copy of b per call, which MatMul 100x300x200
    ran in 0.93x the time, but strips whose rows lie 4 KiB or more apart thrash the L1
    (64x1024x1024: 1.14x), so the search times both. A call whose b does not start on a
    64-byte line (a caller's array: numpy aligns to 16 bytes) packs b as ``b_in_place=False``
    would: its 64-byte vectors would each straddle two lines, and MatMul 256^3 took 1.20x
    the time so (an Intel Xeon, AVX-512; the search times in-place reads on the plan's own
    aligned buffers). ``b_read_in_place`` says which the last call did.

    ``bias_mode`` as ops_math.GemmKernel's: 0 none, 1 per column (bias[n], added as the
    kernel's residual, laid out as c), 2 per row (bias[m], the kernel's channel bias).
    ``act``: none, relu, relu6 or hard_swish (which keep NaN). ``kc``/``nc`` as :class:`GemmConvKernel`'s.
    """

    cdef walle_gemm g
    cdef float* pack
    cdef float* apack
    cdef const float* a0
    cdef const float* b0
    cdef readonly long units  # column chunks: the work units the threads split
    cdef long psize, m
    cdef int threads
    cdef readonly int level
    cdef readonly bint prepacked
    cdef readonly bint a_in_place
    cdef readonly bint b_read_in_place
    cdef readonly bint wide
    cdef object keep

    def __init__(self, a, b, c, bias, int bias_mode, str act, bint b_constant=False,
                 str level=None, kc=None, nc=None, bint b_in_place=False, bint wide=False):
        for arr in (a, b, c):
            if arr.dtype != np.float32 or not arr.flags.c_contiguous or arr.ndim != 2:
                raise ValueError("packed matmul kernel: a, b, c must be 2-D C-contiguous "
                                 "float32 arrays")
        m, k = (int(v) for v in a.shape)
        n = int(b.shape[1])
        if b.shape[0] != k or c.shape[0] != m or c.shape[1] != n:
            raise ValueError(f"packed matmul kernel: shapes {a.shape} @ {b.shape} -> {c.shape}")
        cdef float relu = relu_cap("packed matmul kernel", act)
        if bias_mode not in (0, 1, 2) or (bias_mode != 0) != (bias is not None):
            raise ValueError(f"packed matmul kernel: bias mode {bias_mode} with bias {bias!r}")
        if b_in_place and b_constant:
            raise ValueError("packed matmul kernel: b_in_place and b_constant exclude each "
                             "other (a constant b is packed once)")
        self.level = _kernel_level("packed matmul", level)
        if kc is None and self.level >= 1:
            # the whole reduction up to 512 rows, else even blocks of at most 512: each
            # block's partial sums are stored and read back, and 512 took 1.5-2% less than
            # the conv's 256 on products of 743-1024 rows at AVX-512 (one core, Zen 5; a
            # conv's strided im2col pack lost 12% on 256x28x28 3x3 /2 at 461). At AVX2 the
            # conv's 160 (L1 reuse between a strip's two halves) was level with 512 on Zen 5
            # and 2-9% slower on Zen 3 (32x512x512, 112x743x421, 512^3, 155x830x236 with b
            # constant; interleaved, one core)
            kc = -(-k // -(-k // _MATMUL_KC))
            if (self.level == 2 and nc is None and not b_constant
                    and k * n <= _MATMUL_ONE_CHUNK_FLOATS and walle_max_threads() == 1):
                # b packed per call and small enough to stay in L2 whole: one chunk of all
                # its columns, so a is read once per reduction block instead of once per
                # chunk (256^3 1.0-1.7% faster, 11 rounds of 11, 3.5-4% with b read in
                # place; 64-1024 x 64-256 x 256-1024 1-4%); not with several threads,
                # which split the chunks among them
                nc = n
        wide = self.wide = wide and self.level == 2
        kc, nc, chunks = _gemm_blocking(self.level, k, n, kc, nc, wide)
        blocks = 4 * -(-m // 32)  # whole groups of 4 blocks for the leftover columns
        apacked = _lasting(blocks * k * 8 + 16)
        padded_bias = np.zeros(blocks * 8, np.float32)
        residual = None
        if bias_mode == 2:
            padded_bias[:m] = np.asarray(bias, np.float32).reshape(-1)
        elif bias_mode == 1:
            residual = _lasting_copy(
                np.broadcast_to(np.asarray(bias, np.float32).reshape(1, -1), (m, n)))
        koff = _lasting_copy(np.arange(k, dtype=np.int64) * n)
        poff = _lasting_copy(np.arange(n, dtype=np.int64))
        run, run2 = (_lasting_copy(np.asarray(_runs(poff, step), np.int64)) for step in (1, 2))
        self.m = m
        self.units = chunks
        work = float(m * n) * k
        self.threads = 1 if work < _GRAIN or self.units < 2 else max(
            1, min(walle_max_threads(), self.units, int(work / _GRAIN)))
        self.prepacked = b_constant
        self.psize = 0 if b_constant else kc * nc + 16
        scratch = _lasting(self.threads * self.psize + 16)  # on a cache line, as apacked
        self.pack = <float*><size_t>scratch.ctypes.data
        self.apack = <float*><size_t>apacked.ctypes.data
        self.a0 = <const float*><size_t>a.ctypes.data
        self.g.x = self.b0 = <const float*><size_t>b.ctypes.data
        self.g.koff = <const long*><size_t>koff.ctypes.data
        self.g.poff = <const long*><size_t>poff.ctypes.data
        self.g.run = <const long*><size_t>run.ctypes.data
        self.g.run2 = <const long*><size_t>run2.ctypes.data
        self.g.s_n = 0
        self.g.n, self.g.k, self.g.p, self.g.cout = 1, k, n, m
        self.g.kc, self.g.nc = kc, nc
        self.g.w = self.apack
        self.g.bias = <const float*><size_t>padded_bias.ctypes.data
        self.g.y = <float*><size_t>c.ctypes.data
        self.g.res = NULL if residual is None else <const float*><size_t>residual.ctypes.data
        self.g.y_k, self.g.y_k0 = m, 0
        self.g.relu = relu
        self.g.prepacked = NULL
        self.g.direct = b_in_place
        self.g.ks = n
        self.g.wide = wide
        self.g.rows = NULL
        # a constant b's leftover columns as a padded strip (packed once), so that a is read
        # in place where its last rows fold into the AVX-512 tile of the block before them
        # or its tiles ask for a big b ahead (gemm_conv.h's walle_gemm_avx512_rows_ext);
        # only where the strips of 32 hold most columns (the fold runs only those: 25 x 512
        # x 10 took 1.17x the time in place, its narrow strips run by one more block)
        self.g.pad_tail = (b_constant and self.level >= 1 and n >= _FOLD_MIN_COLUMNS
                           and not wide
                           and (self.level == 2 and walle_gemm_folds(m)
                                or walle_gemm_big_b(k, n)))
        self.a_in_place = walle_gemm_rows_fit(&self.g, self.level)
        bpacked = None
        if b_constant:
            bpacked = _lasting((n + 16) * k + 16)  # + a padded strip (gemm_conv.h)
            walle_gemm_prepack(&self.g, self.level, <float*><size_t>bpacked.ctypes.data)
            self.g.prepacked = <const float*><size_t>bpacked.ctypes.data
        self.keep = (a, b, c, apacked, padded_bias, residual, koff, poff, run, run2, scratch,
                     bpacked)

    def io_arrays(self):
        """The arrays ``run_io`` replaces, in its argument order: a, b, c."""
        return self.keep[:3]

    def run(self):
        self._run(self.a0, self.g.x, self.g.y)

    def run_io(self, cnp.ndarray a, cnp.ndarray b, cnp.ndarray c):
        """Run on the caller's arrays (shaped as the build-time a, b, c; with ``b_constant``,
        b must be the build-time weights, read packed): no copies. The checks read the
        arrays' headers directly (``.ctypes.data`` took 4 us of a 45 us product)."""
        cdef const float* pb = _io_ptr(b, self.g.k * self.g.p)
        if self.prepacked and pb != self.b0:
            raise ValueError("run_io: b was packed at build time; pass the same weights")
        self._run(_io_ptr(a, self.m * self.g.k), pb, <float*>_io_ptr(c, self.m * self.g.p))

    cdef void _run(self, const float* a, const float* b, float* c) noexcept:
        cdef walle_gemm g = self.g
        cdef long whole = self.m // 8 * 8 if self.a_in_place else 0
        g.x = b
        g.y = c
        g.rows = a if self.a_in_place else NULL
        g.direct = g.direct and (<size_t>b) % 64 == 0
        self.b_read_in_place = g.direct
        with nogil:
            if whole < self.m:  # the rows the tiles do not read in place
                walle_gemm_pack_rows(a + whole * g.k, self.m - whole, g.k,
                                     self.apack + whole * g.k)
            _gemm_units(&g, self.level, self.units, self.threads, self.pack, self.psize)

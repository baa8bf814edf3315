/* Packed-GEMM convolution for the walle.ops cython backend (ops_conv.pyx, GemmConvKernel):
   y[n][Cout][P] = act(W[Cout][K] x cols_n[K][P] + bias), where cols_n is the im2col matrix of
   image n read through offset tables (any stride, dilation, pad: the columns are never
   written out whole).

   Why not the direct kernel or numpy's BLAS: the direct kernel reads the K input rows of a
   tile with a stride of a whole plane, which on 56x56 planes with few channels per output
   is bound by the caches (18-27 GMAC/s); BLAS needs the column buffer written for strided
   convs, its epilogue (bias, ReLU) is a second pass over an output that no longer sits in
   the cache, and it loses a fifth on 7x7 planes. Here (BLIS's loop order, with the roles of
   the operands swapped so the output rows stay contiguous):

   - the columns of a chunk (<= nc of one image) are packed per block of kc reduction rows
     into strips of SW columns [kc][SW] (one vector copy per row where the source columns
     are contiguous, a gather where they are strided): the block stays in L2;
   - the weights are packed once at build time as [Cout/8][K][8]: a block of 8 output
     channels x kc rows (8 KiB) stays in L1 while it sweeps every strip of the chunk, and
     its first strip prefetches the next block (in a whole model the weights come from
     memory: on 7x7 planes, 2-3 strips per block, that was 15-18% of a layer's time);
   - each (8 channels, strip) pair is one register tile (8 x SW accumulators) over kc,
     added to the partial sums of earlier blocks and, after the last block, stored with the
     bias, a residual (ResNet's shortcut) and ReLU (which keeps NaN) applied: one pass over
     the output;
   - a 1x1 stride-1 conv may skip the packing (``direct``): its columns are the input's
     rows, so the tiles read each strip where it lies (rows ks apart); only the leftover
     columns are packed. Packing took a third of a 96 -> 16 conv on 55x55 planes, whose
     strips only 2 blocks of 8 channels read; with many channels the packed strips are the
     faster read (256 -> 64 at 56x56: 5% slower in place). The search times both;
   - the columns left over after the last whole vector of a chunk (7x7 planes: 1 of 49;
     14x14: 4 of 196) run with the channels in the vector lanes instead (8 channels x 4
     blocks x 1-2 columns), so a short plane does not pay for a mostly empty vector.

   One build per instruction-set level (AVX-512: 8 x 3 vectors of 16, then one of 16 and
   one of 8, so that at most 7 columns are left over: SqueezeNet's 13x13 planes had 9;
   AVX2: two 4 x 3 tiles of 8 floats, SSE: two 4 x 2 tiles of 4, which keep their sums in
   the 16 registers). */

#ifndef WALLE_GEMM_CONV_H
#define WALLE_GEMM_CONV_H

#include "conv_tile.h"
#include "cpu_level.h"

typedef struct {
    const float* x;     /* element (k, p) of image n at x + n * s_n + koff[k] + poff[p] */
    const long* koff;   /* [K] */
    const long* poff;   /* [P] */
    const long* run;    /* [P]: how many columns from p on lie at consecutive addresses */
    const long* run2;   /* [P]: how many from p on lie 2 apart (stride-2 convs) */
    long s_n;
    long n, k, p, cout; /* images, reduction length, columns per image, output channels */
    long kc, nc;        /* reduction rows per packed block, columns per chunk */
    const float* w;     /* [blocks][K][8], blocks a multiple of 4 (zero-padded) */
    const float* bias;  /* [blocks * 8] */
    float* y;           /* [N][y_k][P], this conv's channels from y_k0 */
    const float* res;   /* NULL, or a residual added before the ReLU, laid out as y */
    long y_k, y_k0;
    float relu;
    const float* prepacked; /* NULL, or the columns packed once (walle_gemm_prepack; n = 1) */
    int direct;         /* the tiles read the columns in place (rows ks apart), see below */
    long ks;
    int wide;           /* AVX-512: the 8 x 3 tile over strips of 48 (convs), else 8 x 2 */
    const float* rows;  /* NULL, or the weights' rows [cout][k] read in place where a block
                           has all 8 (a matmul's a: w then holds only the last part block
                           packed; walle_gemm_rows_fit says where this may be set) */
    int pad_tail;       /* a chunk's leftover columns always as one padded strip (never the
                           tail tiles, which read a packed whole): a matmul's constant b,
                           whose padded strip is packed once (walle_gemm_split) */
} walle_gemm;

/* dst[j] = src[2j] for j < n, 4 at a time in 128-bit vectors, whose shuffles every level
   has (SSE, NEON; a wider type would be lowered to scalars at the baseline). A scalar loop
   had moved a float per load and store: a stride-2 1x1 conv ran a fifth slower than a
   stride-1 one of the same work. Each 4 take src[2j .. 2j + 3] and src[2j + 3 .. 2j + 6],
   so that nothing past src[2n - 2] is read. */
WALLE_INLINE void walle_gemm_even(const float* restrict src, long n, float* restrict dst) {
    long j = 0;
    for (; j + 4 <= n; j += 4) {
        walle_v4 lo, hi;
        memcpy(&lo, src + 2 * j, sizeof lo);
        memcpy(&hi, src + 2 * j + 3, sizeof hi);
        walle_v4 even = WALLE_SHUF4(lo, hi, 0, 2, 5, 7);
        memcpy(dst + j, &even, sizeof even);
    }
    for (; j < n; j++) dst[j] = src[2 * j];
}

/* dst[j] = src[j] for j < n, 4 at a time (the runs that an output row's end cuts are a few
   to a few tens of floats: a call of the library's memcpy per run would cost more). */
WALLE_INLINE void walle_gemm_copy(const float* restrict src, long n, float* restrict dst) {
    long j = 0;
    for (; j + 4 <= n; j += 4) memcpy(dst + j, src + j, 4 * sizeof(float));
    for (; j < n; j++) dst[j] = src[j];
}

/* Columns [c0, c0 + cols) of one image (a whole number of strips) into strips of w:
   dst[strip][kc][w], a source row at a time across every strip, so each of the kc rows
   streams front to back (a strip's worth of each row at a time left 256 rows of a 1x1
   conv's input to the prefetchers at once: a fifth of its time in the pack). A strip that
   is one run of the source (contiguous, or 2 apart in stride-2 convs) is one copy; one that
   an output row's end cuts is copied run by run, in vectors too: most strips of a stride-2
   conv are cut (28 columns a row against strips of 24), and their copy a float at a time,
   strip by strip over every row, had made a 1x1/2 conv 1.66x slower than a 1x1/1 one of the
   same work. */
WALLE_INLINE void walle_gemm_pack(const float* restrict xn, const long* restrict koff, long kc,
                                  const long* restrict poff, const long* restrict run,
                                  const long* restrict run2, long c0, long cols, long w,
                                  float* restrict dst) {
    for (long k = 0; k < kc; k++) {
        const float* sk = xn + koff[k];
        for (long s = 0; s < cols; s += w) {
            long c = c0 + s;
            float* d = dst + s * kc + k * w;
            if (run[c] >= w) {
                memcpy(d, sk + poff[c], w * sizeof(float));
            } else if (run2[c] >= w) {
                walle_gemm_even(sk + poff[c], w, d);
            } else {
                for (long j = 0; j < w;) {
                    long one = run[c + j], two = run2[c + j];
                    long n = two > one ? two : one;
                    n = n < w - j ? n : w - j;
                    if (two > one)
                        walle_gemm_even(sk + poff[c + j], n, d + j);
                    else
                        walle_gemm_copy(sk + poff[c + j], n, d + j);
                    j += n;
                }
            }
        }
    }
}

/* Copies the columns [Q, Q + VW) of a tile row that are among its first ``ncols`` (all of
   them in whole strips, where ncols is the constant strip width and this is one memcpy; a
   lane at a time in a padded strip: a memcpy of a variable size is a library call, and 16 of
   them per tile made a padded strip slower than the tail it replaced). */
#define WALLE_GEMM_PART(DST, SRC, Q, VW)                                                       \
    do {                                                                                       \
        if (ncols >= (Q) + (VW)) {                                                             \
            memcpy((DST), (SRC), (VW) * sizeof(float));                                        \
        } else {                                                                               \
            float* dst_ = (float*)(DST);                                                       \
            const float* src_ = (const float*)(SRC);                                           \
            for (int l_ = 0; l_ < (VW); l_++)                                                  \
                if ((Q) + l_ < ncols) dst_[l_] = src_[l_];                                     \
        }                                                                                      \
    } while (0)

/* Columns [c0, c0 + t) of one image as one strip of w > t columns, dst[kc][w], the columns
   past t zero: the leftover columns of a chunk, computed by a vector tile whose last lanes
   are never stored. */
WALLE_INLINE void walle_gemm_pack_padded(const float* restrict xn, const long* restrict koff,
                                         long kc, const long* restrict poff, long c0, long t,
                                         long w, float* restrict dst) {
    for (long k = 0; k < kc; k++) {
        const float* sk = xn + koff[k];
        float* d = dst + k * w;
        for (long j = 0; j < t; j++) d[j] = sk[poff[c0 + j]];
        for (long j = t; j < w; j++) d[j] = 0.0f;
    }
}

/* How a chunk's ``cols`` columns run: ``full`` in strips of sw, ``two`` in one of dw,
   ``mid`` in strips of vw, ``mid2`` in strips of vw2 (<= vw), and the last ``tail`` with
   the channels in the lanes
   (WALLE_GEMM_TAIL) or, where ``pad`` is not 0, as one strip of pad columns whose columns
   past the tail are zeros (walle_gemm_pack_padded) and never stored. A padded strip costs
   a whole strip's time, a tail column about half of it (MatMul 208x409xn, one core, AVX-512
   and AVX2, the columns' part of the time: 7 columns by the tail 17 us, as a padded 8
   12 us; 5 alike): so 6 or more of 8 columns are padded; and at AVX-512 13 to 15 columns
   are one padded 16 (21 us; an 8-wide strip and a tail of 5 took 25, of 7 31), 9 to 12 an
   8-wide strip and a tail (a tail of 1: 15 us).
   ``two``: where ``dw`` is not 0 (AVX-512's strips of 48, the convs), 32 or more columns
   left run one strip of dw = 32 by the 8 x 2 tile first, and 22 to 31 left run as one
   zero-padded strip of 32 by that tile. The 8 x 1 tiles of 16 and 8 load a value per
   multiply-add and the 8-wide one fills half a vector: SqueezeNet's last conv (512 -> 1000
   on 13x13: 3 strips of 48 and 25 left) spent 1.76x a whole strip's time per column on its
   25 (Zen 5, one core, interleaved: 0.956x the conv's time padded to 32; 1-D planes with
   22 to 31 left 0.92-0.99x, 32 to 47 left 0.94-0.98x; 18 to 21 left padded took 1.00-1.05x,
   so they keep the 16-wide strip). */
#define WALLE_GEMM_PAD2_MIN 22
typedef struct { long full, two, mid, mid2, tail, pad; } walle_gemm_cols;
WALLE_INLINE walle_gemm_cols walle_gemm_split(long cols, long sw, long dw, long vw, long vw2,
                                              int pad_tail) {
    walle_gemm_cols s;
    s.full = cols / sw * sw;
    long rem = cols - s.full;
    s.two = dw && rem >= dw ? dw : 0;
    rem -= s.two;
    if (dw && !s.two && rem >= WALLE_GEMM_PAD2_MIN) {
        s.mid = s.mid2 = 0, s.tail = rem, s.pad = dw;
        return s;
    }
    s.mid = rem / vw * vw;
    rem -= s.mid;
    if (vw2 < vw && 2 * (rem - vw2) > vw2) {
        s.mid2 = 0, s.tail = rem, s.pad = vw;
    } else {
        s.mid2 = rem / vw2 * vw2, s.tail = rem - s.mid2;
        s.pad = 3 * s.tail > 2 * vw2 || (pad_tail && s.tail) ? vw2 : 0;
    }
    return s;
}

/* The partial sums of CH channels x NV vectors of a tile from y (zeros when ``first``).
   This macro and WALLE_GEMM_STORE are the tiles' shared prologue and epilogue: they read
   the tile function's own arguments (y, y_c, cvalid, first, ncols: the tile's columns that
   exist, the rest of a padded strip neither read nor written; bias, res, last, relu). */
#define WALLE_GEMM_LOAD(ACC, VT, VW, NV, CH)                                                   \
    for (int c = 0; c < CH; c++)                                                               \
        for (int q = 0; q < NV; q++) {                                                         \
            VT t = (VT){0}; /* not a copy into acc itself: that puts acc in memory */          \
            if (!first && c < cvalid) WALLE_GEMM_PART(&t, y + c * y_c + VW * q, VW * q, VW);   \
            ACC[c][q] = t;                                                                     \
        }

/* A tile's sums back to y, with bias, a residual and ReLU after the ``last`` block, each
   condition tested once a tile, outside the loops over its vectors (inside, GCC tested the
   activation again per vector, reloading it from the stack: a 1x1 64 -> 256 conv on 56x56
   took 8% longer with ReLU than without, 16% with the shortcut too; the same sums, so the
   same bits). */
#define WALLE_GEMM_STORE(ACC, VT, IT, VW, NV, CH)                                              \
    if (last) {                                                                                \
        for (int c = 0; c < CH; c++)                                                           \
            for (int q = 0; q < NV; q++) ACC[c][q] += bias[c];                                 \
        if (res)                                                                               \
            for (int c = 0; c < CH; c++)                                                       \
                for (int q = 0; q < NV; q++)                                                   \
                    if (c < cvalid) {                                                          \
                        VT e = (VT){0};                                                        \
                        WALLE_GEMM_PART(&e, res + c * y_c + VW * q, VW * q, VW);               \
                        ACC[c][q] += e;                                                        \
                    }                                                                          \
        if (relu == WALLE_HARD_SWISH) {                                                        \
            for (int c = 0; c < CH; c++)                                                       \
                for (int q = 0; q < NV; q++) WALLE_HARD_SWISH_V(VT, IT, ACC[c][q]);            \
        } else if (relu < 0.0f) {                                                              \
            for (int c = 0; c < CH; c++)                                                       \
                for (int q = 0; q < NV; q++) WALLE_HARD_SWISH6_V(VT, IT, ACC[c][q]);           \
        } else if (relu != 0.0f) {                                                             \
            for (int c = 0; c < CH; c++)                                                       \
                for (int q = 0; q < NV; q++) WALLE_RELU_ZERO_V(VT, IT, ACC[c][q]);             \
            if (relu < __builtin_inff()) {                                                     \
                VT cap_ = (VT){0} + relu;                                                      \
                for (int c = 0; c < CH; c++)                                                   \
                    for (int q = 0; q < NV; q++) WALLE_RELU_CAP_V(VT, IT, ACC[c][q], cap_);    \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
    for (int c = 0; c < CH; c++)                                                               \
        if (c < cvalid)                                                                        \
            for (int q = 0; q < NV; q++) {                                                     \
                VT r_ = ACC[c][q]; /* not ACC's address: that puts ACC in memory */            \
                WALLE_GEMM_PART(y + c * y_c + VW * q, &r_, VW * q, VW);                        \
            }

/* The parameters of every tile function (WALLE_GEMM_TILE and the tiles after it). */
#define WALLE_GEMM_TILE_PARAMS                                                                 \
    (const float* restrict b, long sb, const float* restrict a, long kc, float* restrict y,    \
     long y_c, long cvalid, long ncols, const float* restrict bias, const float* restrict res, \
     int first, int last, float relu, const float* pf, long pfs, long sa)

/* Where a tile finds weight (reduction row K, channel C of its block) and its channel C's
   first weight: packed ([kc][8], walle_gemm_pack_rows) or a matmul's rows of a read in place
   (``sa`` floats apart, the ``rows`` of walle_gemm). Each tile is built for both. */
#define WALLE_GEMM_AP(K, C) a[(K) * WALLE_CB + (C)]
#define WALLE_GEMM_AR(K, C) a[(C) * sa + (K)]
#define WALLE_GEMM_CP(C) (C)
#define WALLE_GEMM_CR(C) ((C) * sa)

/* CH output channels (of a packed block of 8) x NV vectors of VW columns over kc rows of a
   packed strip (row stride sb), added to the partial sums in y unless ``first``; bias and
   ReLU after the ``last``; ``pf``: rows asked for while it runs, two lines of one per
   reduction row, ``pfs`` floats apart (the next block's weights; in place, the next strip),
   or NULL. */
#define WALLE_GEMM_TILE(NAME, VT, IT, VW, NV, CH, AT)                                          \
WALLE_INLINE void NAME WALLE_GEMM_TILE_PARAMS {                                                \
    VT acc[CH][NV];                                                                            \
    WALLE_GEMM_LOAD(acc, VT, VW, NV, CH)                                                       \
    for (long k = 0; k < kc; k++) {                                                            \
        VT v[NV];                                                                              \
        for (int q = 0; q < NV; q++) memcpy(&v[q], b + k * sb + VW * q, sizeof(VT));           \
        if (pf) {                                                                              \
            __builtin_prefetch(pf + k * pfs);                                                  \
            __builtin_prefetch(pf + k * pfs + 16);                                             \
        }                                                                                      \
        for (int c = 0; c < CH; c++)                                                           \
            for (int q = 0; q < NV; q++) acc[c][q] += AT(k, c) * v[q];                         \
    }                                                                                          \
    WALLE_GEMM_STORE(acc, VT, IT, VW, NV, CH)                                                  \
}

/* The reduction rows of a tile two at a turn, STEP(VT, VW, k, PF) each, the prefetch test
   outside the loop (WALLE_GEMM_TILE4X3 and WALLE_GEMM_TILE8X3; their b, a, kc, pf, pfs). */
#define WALLE_GEMM_TWO_ROWS(STEP, VT, VW, AT)                                                  \
    long k = 0;                                                                                \
    if (pf) {                                                                                  \
        for (; k + 2 <= kc; k += 2) {                                                          \
            STEP(VT, VW, k, 1, AT);                                                            \
            STEP(VT, VW, k + 1, 1, AT);                                                        \
        }                                                                                      \
    } else {                                                                                   \
        for (; k + 2 <= kc; k += 2) {                                                          \
            STEP(VT, VW, k, 0, AT);                                                            \
            STEP(VT, VW, k + 1, 0, AT);                                                        \
        }                                                                                      \
    }                                                                                          \
    if (k < kc) STEP(VT, VW, k, pf != 0, AT);

/* One reduction row k of the 4 x 3 tile below (PF: ask for two lines of the prefetch rows). */
#define WALLE_GEMM_STEP4X3(VT, VW, K, PF, AT)                                                  \
    do {                                                                                       \
        VT v0, v1, v2;                                                                         \
        memcpy(&v0, b + (K) * sb, sizeof(VT));                                                 \
        memcpy(&v1, b + (K) * sb + VW, sizeof(VT));                                            \
        memcpy(&v2, b + (K) * sb + 2 * VW, sizeof(VT));                                        \
        if (PF) {                                                                              \
            __builtin_prefetch(pf + (K) * pfs);                                                \
            __builtin_prefetch(pf + (K) * pfs + 16);                                           \
        }                                                                                      \
        s00 += AT(K, 0) * v0; s01 += AT(K, 0) * v1; s02 += AT(K, 0) * v2;                      \
        s10 += AT(K, 1) * v0; s11 += AT(K, 1) * v1; s12 += AT(K, 1) * v2;                      \
        s20 += AT(K, 2) * v0; s21 += AT(K, 2) * v1; s22 += AT(K, 2) * v2;                      \
        s30 += AT(K, 3) * v0; s31 += AT(K, 3) * v1; s32 += AT(K, 3) * v2;                      \
    } while (0)

#if defined(__x86_64__) && defined(__GNUC__) && !defined(WALLE_GEMM_NO_ASM)
/* The 4 x 3 tile's loop over its kc reduction rows, written out (x86-64; WALLE_GEMM_NO_ASM
   or another CPU builds the C loop): the 12 sums in ymm0-11, a row's 3 column vectors in
   ymm12-14, each weight broadcast into ymm15, two rows a turn. From C, GCC folded the column
   vectors into the multiply-adds' memory operands (up to 16 loads per 12 multiply-adds
   instead of 7) and, in the half that runs without prefetch, kept a sum on the stack across
   the loop (perf annotate, Zen 3). Interleaved A/B against the C loop, one core, Zen 3:
   matmuls 0.83-0.90x the time (128x1024x256, 32x512x512, 256^3, with b constant or packed
   per call), convs 0.83-0.96x (1x1 256 -> 64 on 56x56, 512 -> 128 on 28x28, 3x3/2 128 on
   56x56, the 7x7/2 stem, 3x3 64 on 56x56); one row a turn was level with C on the convs.
   Weight c of reduction row k lies at a + k * KSTEP + c * C1 bytes (C3 = 3 * C1): packed
   weights 32, 4, 12; a matmul's rows of a read in place 4, 4 * sa, 12 * sa. Each sum adds
   the same products in the same order as the C loop (one rounding per multiply-add): same
   bits. */
#define WALLE_GEMM_ASM4X3_ROW(PF)                                                              \
    "vmovups (%%rsi), %%ymm12\n\t"                                                             \
    "vmovups 32(%%rsi), %%ymm13\n\t"                                                           \
    "vmovups 64(%%rsi), %%ymm14\n\t" PF                                                        \
    "vbroadcastss (%%rdi), %%ymm15\n\t"                                                        \
    "vfmadd231ps %%ymm12, %%ymm15, %%ymm0\n\t"                                                 \
    "vfmadd231ps %%ymm13, %%ymm15, %%ymm1\n\t"                                                 \
    "vfmadd231ps %%ymm14, %%ymm15, %%ymm2\n\t"                                                 \
    "vbroadcastss (%%rdi,%%r9), %%ymm15\n\t"                                                   \
    "vfmadd231ps %%ymm12, %%ymm15, %%ymm3\n\t"                                                 \
    "vfmadd231ps %%ymm13, %%ymm15, %%ymm4\n\t"                                                 \
    "vfmadd231ps %%ymm14, %%ymm15, %%ymm5\n\t"                                                 \
    "vbroadcastss (%%rdi,%%r9,2), %%ymm15\n\t"                                                 \
    "vfmadd231ps %%ymm12, %%ymm15, %%ymm6\n\t"                                                 \
    "vfmadd231ps %%ymm13, %%ymm15, %%ymm7\n\t"                                                 \
    "vfmadd231ps %%ymm14, %%ymm15, %%ymm8\n\t"                                                 \
    "vbroadcastss (%%rdi,%%r10), %%ymm15\n\t"                                                  \
    "vfmadd231ps %%ymm12, %%ymm15, %%ymm9\n\t"                                                 \
    "vfmadd231ps %%ymm13, %%ymm15, %%ymm10\n\t"                                                \
    "vfmadd231ps %%ymm14, %%ymm15, %%ymm11\n\t"                                                \
    "add %%r8, %%rsi\n\t"                                                                      \
    "add %%r11, %%rdi\n\t"
/* The fewest reduction rows a conv's tile (packed weights) runs in asm: below, the C loop,
   which GCC compiles without a spill there: 1x1 convs of 8-32 input channels (MobileNet's
   narrow ones, a 3-channel stem's 27 rows) ran 3-12% slower in asm when the sums went through
   memory around it, and still 1-4% with them in registers (Zen 1), 48 level, 64-96 faster. A matmul's tile (a's
   rows in place) runs in asm at any kc: from C it was 8-14% slower even at k = 32-64. */
#define WALLE_GEMM_ASM_MIN_KC 48

/* The loop over a tile's reduction rows, kc / 2 turns in k, then the odd row; the 12 sums
   stay in ymm0-11 from the C code before it to the C code after it (asm operands held in
   those registers: WALLE_GEMM_LOOP4X3). The rest comes in q[10], as 12 in-out operands leave
   no room for more (GCC allows 30): rsi the strip's row, rdi weight 0 of the row (a), rcx
   the turns, r8 the strip's row stride in bytes, r9 and r10 C1 and C3, r11 KSTEP, rax and rdx
   the prefetch row and its stride, q[9] whether kc is odd. */
#define WALLE_GEMM_ASM4X3(PF)                                                                  \
    "mov (%[q]), %%rsi\n\tmov 8(%[q]), %%rdi\n\tmov 16(%[q]), %%rcx\n\t"                       \
    "mov 24(%[q]), %%r8\n\tmov 32(%[q]), %%r9\n\tmov 40(%[q]), %%r10\n\t"                      \
    "mov 48(%[q]), %%r11\n\tmov 56(%[q]), %%rax\n\tmov 64(%[q]), %%rdx\n\t"                    \
    "test %%rcx, %%rcx\n\t"                                                                    \
    "jz 2f\n\t"                                                                                \
    "1:\n\t" WALLE_GEMM_ASM4X3_ROW(PF) WALLE_GEMM_ASM4X3_ROW(PF)                                \
    "dec %%rcx\n\t"                                                                            \
    "jnz 1b\n\t"                                                                               \
    "2:\n\t"                                                                                   \
    "cmpq $0, 72(%[q])\n\t"                                                                    \
    "jz 3f\n\t" WALLE_GEMM_ASM4X3_ROW(PF)                                                      \
    "3:\n\t"
#define WALLE_GEMM_ASM4X3_SUMS                                                                 \
    "+x"(r00), "+x"(r01), "+x"(r02), "+x"(r10), "+x"(r11), "+x"(r12), "+x"(r20), "+x"(r21),    \
        "+x"(r22), "+x"(r30), "+x"(r31), "+x"(r32)
#define WALLE_GEMM_ASM4X3_CLOBBERS                                                             \
    "xmm12", "xmm13", "xmm14", "xmm15", "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10",  \
        "r11", "memory", "cc"
/* The sums are local register variables bound to ymm0-11 (GCC keeps such a variable in its
   register where it is an asm operand): the C prologue loads them from y (or zeroes them) and
   the C epilogue adds the bias, shortcut and ReLU to them in registers. Through an array on
   the stack, as before, the sums took 24 moves a tile and GCC copied them to further stack
   slots on both sides (with WALLE_GEMM_STORE's tests out of its loops, ResNet-50's 1x1 convs
   2-6% faster on Zen 1, its 3x3/2 ones 2-3%: interleaved A/B of the two builds). */
#define WALLE_GEMM_LOOP4X3(VT, VW, AT, C1, C3, KSTEP, MINKC)                                   \
    if ((MINKC) > 0 && kc < (MINKC)) {                                                         \
        WALLE_GEMM_TWO_ROWS(WALLE_GEMM_STEP4X3, VT, VW, AT)                                    \
    } else if (kc > 0) {                                                                       \
        register VT r00 __asm__("ymm0") = s00, r01 __asm__("ymm1") = s01;                      \
        register VT r02 __asm__("ymm2") = s02, r10 __asm__("ymm3") = s10;                      \
        register VT r11 __asm__("ymm4") = s11, r12 __asm__("ymm5") = s12;                      \
        register VT r20 __asm__("ymm6") = s20, r21 __asm__("ymm7") = s21;                      \
        register VT r22 __asm__("ymm8") = s22, r30 __asm__("ymm9") = s30;                      \
        register VT r31 __asm__("ymm10") = s31, r32 __asm__("ymm11") = s32;                    \
        long q[10] = {(long)b, (long)a, kc / 2, sb * 4, (C1), (C3), (KSTEP), (long)pf,        \
                      pfs * 4, kc & 1};                                                        \
        if (pf)                                                                                \
            __asm__ volatile(WALLE_GEMM_ASM4X3("prefetcht0 (%%rax)\n\t"                         \
                                               "prefetcht0 64(%%rax)\n\t"                       \
                                               "add %%rdx, %%rax\n\t")                          \
                             : WALLE_GEMM_ASM4X3_SUMS                                          \
                             : [q] "r"(q)                                                      \
                             : WALLE_GEMM_ASM4X3_CLOBBERS);                                    \
        else                                                                                   \
            __asm__ volatile(WALLE_GEMM_ASM4X3("")                                             \
                             : WALLE_GEMM_ASM4X3_SUMS                                          \
                             : [q] "r"(q)                                                      \
                             : WALLE_GEMM_ASM4X3_CLOBBERS);                                    \
        s00 = r00, s01 = r01, s02 = r02, s10 = r10, s11 = r11, s12 = r12;                      \
        s20 = r20, s21 = r21, s22 = r22, s30 = r30, s31 = r31, s32 = r32;                      \
    }
#else
#define WALLE_GEMM_LOOP4X3(VT, VW, AT, C1, C3, KSTEP, MINKC) \
    WALLE_GEMM_TWO_ROWS(WALLE_GEMM_STEP4X3, VT, VW, AT)
#endif

/* 4 channels x 3 vectors: all 16 registers of AVX2 (12 sums, 3 column vectors, one
   broadcast weight: 7 loads per 12 multiply-adds; the loop: WALLE_GEMM_LOOP4X3). In the C
   loop the sums are named variables, not an array: GCC keeps an array of 12 vectors on the
   stack (6x slower). Two rows a turn, the prefetch test outside the loop: in asm loops of
   this tile alone, one row a turn ran the multiply-adds at 82% of the FMA units' rate on
   Zen 3, two rows 91% (convs 5-9% faster, interleaved A/B of the two builds, both orders).
   An AVX2 tile, compiled as such where it is defined: clang checks there that its asm's
   sums fit the registers they are bound to. */
#define WALLE_GEMM_TILE4X3(NAME, VT, IT, VW, AT, C1, C3, KSTEP, MINKC)                         \
WALLE_LEVEL_TARGET("avx2,fma") WALLE_INLINE void NAME WALLE_GEMM_TILE_PARAMS {                 \
    VT acc[4][3];                                                                              \
    WALLE_GEMM_LOAD(acc, VT, VW, 3, 4)                                                         \
    VT s00 = acc[0][0], s01 = acc[0][1], s02 = acc[0][2], s10 = acc[1][0], s11 = acc[1][1];    \
    VT s12 = acc[1][2], s20 = acc[2][0], s21 = acc[2][1], s22 = acc[2][2], s30 = acc[3][0];    \
    VT s31 = acc[3][1], s32 = acc[3][2];                                                       \
    WALLE_GEMM_LOOP4X3(VT, VW, AT, C1, C3, KSTEP, MINKC)                                       \
    acc[0][0] = s00; acc[0][1] = s01; acc[0][2] = s02; acc[1][0] = s10; acc[1][1] = s11;       \
    acc[1][2] = s12; acc[2][0] = s20; acc[2][1] = s21; acc[2][2] = s22; acc[3][0] = s30;       \
    acc[3][1] = s31; acc[3][2] = s32;                                                          \
    WALLE_GEMM_STORE(acc, VT, IT, VW, 3, 4)                                                    \
}

/* One reduction row k of the 8 x 2 tile below (PF: ask for two lines of the prefetch rows):
   its two column vectors v0, v1 (WALLE_GEMM_ROW2X) and 8 rows' sums (WALLE_GEMM_FMA8X2). */
#define WALLE_GEMM_ROW2X(VT, VW, K, PF)                                                        \
        VT v0, v1;                                                                             \
        memcpy(&v0, b + (K) * sb, sizeof(VT));                                                 \
        memcpy(&v1, b + (K) * sb + VW, sizeof(VT));                                            \
        if (PF) {                                                                              \
            __builtin_prefetch(pf + (K) * pfs);                                                \
            __builtin_prefetch(pf + (K) * pfs + 16);                                           \
        }
#define WALLE_GEMM_FMA8X2(K, AT)                                                               \
        s00 += AT(K, 0) * v0; s01 += AT(K, 0) * v1;                                            \
        s10 += AT(K, 1) * v0; s11 += AT(K, 1) * v1;                                            \
        s20 += AT(K, 2) * v0; s21 += AT(K, 2) * v1;                                            \
        s30 += AT(K, 3) * v0; s31 += AT(K, 3) * v1;                                            \
        s40 += AT(K, 4) * v0; s41 += AT(K, 4) * v1;                                            \
        s50 += AT(K, 5) * v0; s51 += AT(K, 5) * v1;                                            \
        s60 += AT(K, 6) * v0; s61 += AT(K, 6) * v1;                                            \
        s70 += AT(K, 7) * v0; s71 += AT(K, 7) * v1;
#define WALLE_GEMM_STEP8X2(VT, VW, K, PF, AT)                                                  \
    do {                                                                                       \
        WALLE_GEMM_ROW2X(VT, VW, K, PF)                                                        \
        WALLE_GEMM_FMA8X2(K, AT)                                                               \
    } while (0)

#if defined(__x86_64__) && defined(__GNUC__) && !defined(WALLE_GEMM_NO_ASM)
/* AVX-512's matmul tiles' loops over their kc reduction rows, written out as the 4 x 3
   tile's (WALLE_GEMM_ASM4X3): row c's NV sums in zmm NV * c on (zmm0-23), a reduction row's
   NV column vectors in zmm24-26, each weight broadcast into one of zmm27-30, two rows a
   turn. From C, where a's rows are read in place, GCC kept one sum of the 8 x 3 tile on the
   stack across the loop (a load and a store per reduction row) and copied sums between
   registers; in asm the kernel took 0.93-0.96x the time on MatMul 256^3 (b in place), 0.90x
   on 512^3 (b packed per call), the 8 x 2 tile 0.96-0.97x on 64 x 1024 x 4096 and 25 x 1024
   x 8210 (b constant; an Intel Xeon, one core, both builds interleaved in one process). The
   sums come from acc and go back there (24 in-out operands would be 48: GCC allows 30); the
   convs' tiles, whose sums GCC keeps in registers, stay in C (in asm 1x1 and 3x3 convs took
   1.01-1.03x the time: 48 more loads and stores a tile on reductions of 64-576 rows).
   Weight c of reduction row k lies at a + 4 * k + c * C1 bytes (a's rows C1 = 4 * sa bytes
   apart, C3 = 3 * C1): rows 0-3 from rdi, 4-7 from r12, 8-11 from r13. Each sum adds the
   same products in the same order as the C loop: same bits. */
#define WALLE_GEMM_ASM_W2(ADDR, ZW, S0, S1)                                                    \
    "vbroadcastss " ADDR ", %%zmm" #ZW "\n\t"                                                  \
    "vfmadd231ps %%zmm24, %%zmm" #ZW ", %%zmm" #S0 "\n\t"                                      \
    "vfmadd231ps %%zmm25, %%zmm" #ZW ", %%zmm" #S1 "\n\t"
#define WALLE_GEMM_ASM_W3(ADDR, ZW, S0, S1, S2)                                                \
    WALLE_GEMM_ASM_W2(ADDR, ZW, S0, S1) "vfmadd231ps %%zmm26, %%zmm" #ZW ", %%zmm" #S2 "\n\t"
#define WALLE_GEMM_ASM_NEXT "add %%r8, %%rsi\n\tadd %%r11, %%rdi\n\tadd %%r11, %%r12\n\t"
/* One reduction row of the 8 x 3 tile (EXTRA: none), of the 8 x 2 tile and of the (8 + r)
   x 2 one (EXTRA: WALLE_GEMM_ASMX2_R9 ... R12, rows 8-11's sums in zmm16-23). */
#define WALLE_GEMM_ASMX3_ROW(PF, EXTRA)                                                        \
    "vmovups (%%rsi), %%zmm24\n\tvmovups 64(%%rsi), %%zmm25\n\t"                               \
    "vmovups 128(%%rsi), %%zmm26\n\t" PF                                                       \
    WALLE_GEMM_ASM_W3("(%%rdi)", 27, 0, 1, 2)                                                  \
    WALLE_GEMM_ASM_W3("(%%rdi,%%r9)", 28, 3, 4, 5)                                             \
    WALLE_GEMM_ASM_W3("(%%rdi,%%r9,2)", 29, 6, 7, 8)                                           \
    WALLE_GEMM_ASM_W3("(%%rdi,%%r10)", 30, 9, 10, 11)                                          \
    WALLE_GEMM_ASM_W3("(%%r12)", 27, 12, 13, 14)                                               \
    WALLE_GEMM_ASM_W3("(%%r12,%%r9)", 28, 15, 16, 17)                                          \
    WALLE_GEMM_ASM_W3("(%%r12,%%r9,2)", 29, 18, 19, 20)                                        \
    WALLE_GEMM_ASM_W3("(%%r12,%%r10)", 30, 21, 22, 23) WALLE_GEMM_ASM_NEXT
#define WALLE_GEMM_ASMX2_ROW(PF, EXTRA)                                                        \
    "vmovups (%%rsi), %%zmm24\n\tvmovups 64(%%rsi), %%zmm25\n\t" PF                            \
    WALLE_GEMM_ASM_W2("(%%rdi)", 27, 0, 1)                                                     \
    WALLE_GEMM_ASM_W2("(%%rdi,%%r9)", 28, 2, 3)                                                \
    WALLE_GEMM_ASM_W2("(%%rdi,%%r9,2)", 29, 4, 5)                                              \
    WALLE_GEMM_ASM_W2("(%%rdi,%%r10)", 30, 6, 7)                                               \
    WALLE_GEMM_ASM_W2("(%%r12)", 27, 8, 9)                                                     \
    WALLE_GEMM_ASM_W2("(%%r12,%%r9)", 28, 10, 11)                                              \
    WALLE_GEMM_ASM_W2("(%%r12,%%r9,2)", 29, 12, 13)                                            \
    WALLE_GEMM_ASM_W2("(%%r12,%%r10)", 30, 14, 15) EXTRA WALLE_GEMM_ASM_NEXT
#define WALLE_GEMM_ASM_NONE ""
#define WALLE_GEMM_ASMX2_N9 18
#define WALLE_GEMM_ASMX2_N10 20
#define WALLE_GEMM_ASMX2_N11 22
#define WALLE_GEMM_ASMX2_N12 24
/* Rows 8 to R - 1 of the (8 + r) x 2 tile (from r13, which moves on with them). */
#define WALLE_GEMM_ASMX2_R9 WALLE_GEMM_ASM_W2("(%%r13)", 27, 16, 17)
#define WALLE_GEMM_ASMX2_R10 WALLE_GEMM_ASMX2_R9 WALLE_GEMM_ASM_W2("(%%r13,%%r9)", 28, 18, 19)
#define WALLE_GEMM_ASMX2_R11 WALLE_GEMM_ASMX2_R10 WALLE_GEMM_ASM_W2("(%%r13,%%r9,2)", 29, 20, 21)
#define WALLE_GEMM_ASMX2_R12 WALLE_GEMM_ASMX2_R11 WALLE_GEMM_ASM_W2("(%%r13,%%r10)", 30, 22, 23)
/* The first N sums from acc (rbx) into zmm0..N-1, and back. */
#define WALLE_GEMM_ASM_LD(I) "vmovups " #I "*64(%%rbx), %%zmm" #I "\n\t"
#define WALLE_GEMM_ASM_ST(I) "vmovups %%zmm" #I ", " #I "*64(%%rbx)\n\t"
#define WALLE_GEMM_ASM_SUMS16(OP)                                                              \
    OP(0) OP(1) OP(2) OP(3) OP(4) OP(5) OP(6) OP(7) OP(8) OP(9) OP(10) OP(11) OP(12) OP(13)    \
        OP(14) OP(15)
#define WALLE_GEMM_ASM_SUMS18(OP) WALLE_GEMM_ASM_SUMS16(OP) OP(16) OP(17)
#define WALLE_GEMM_ASM_SUMS20(OP) WALLE_GEMM_ASM_SUMS18(OP) OP(18) OP(19)
#define WALLE_GEMM_ASM_SUMS22(OP) WALLE_GEMM_ASM_SUMS20(OP) OP(20) OP(21)
#define WALLE_GEMM_ASM_SUMS24(OP) WALLE_GEMM_ASM_SUMS22(OP) OP(22) OP(23)
#define WALLE_GEMM_ASM_SUMS(N, OP) WALLE_GEMM_ASM_SUMS_(N, OP)
#define WALLE_GEMM_ASM_SUMS_(N, OP) WALLE_GEMM_ASM_SUMS##N(OP)
/* The loop: q[11] = {b's row, a, kc / 2 turns, b's row stride in bytes, C1, C3, a's step
   per reduction row in bytes, the prefetch row (PF: two lines of it a reduction row), its
   stride in bytes, kc odd, acc}. */
#define WALLE_GEMM_ASM(ROW, EXTRA, N, PF)                                                      \
    "mov 80(%[q]), %%rbx\n\t" WALLE_GEMM_ASM_SUMS(N, WALLE_GEMM_ASM_LD)                        \
    "mov (%[q]), %%rsi\n\tmov 8(%[q]), %%rdi\n\tmov 16(%[q]), %%rcx\n\t"                       \
    "mov 24(%[q]), %%r8\n\tmov 32(%[q]), %%r9\n\tmov 40(%[q]), %%r10\n\t"                      \
    "mov 48(%[q]), %%r11\n\tmov 56(%[q]), %%rax\n\tmov 64(%[q]), %%rdx\n\t"                    \
    "lea (%%rdi,%%r9,4), %%r12\n\t"                                                            \
    "lea (%%r12,%%r9,4), %%r13\n\t"                                                            \
    "test %%rcx, %%rcx\n\t"                                                                    \
    "jz 2f\n\t"                                                                                \
    "1:\n\t" ROW(PF, EXTRA) ROW(PF, EXTRA)                                                     \
    "dec %%rcx\n\t"                                                                            \
    "jnz 1b\n\t"                                                                               \
    "2:\n\t"                                                                                   \
    "cmpq $0, 72(%[q])\n\t"                                                                    \
    "jz 3f\n\t" ROW(PF, EXTRA)                                                                 \
    "3:\n\t" WALLE_GEMM_ASM_SUMS(N, WALLE_GEMM_ASM_ST)
#define WALLE_GEMM_ASM_PF "prefetcht0 (%%rax)\n\tprefetcht0 64(%%rax)\n\tadd %%rdx, %%rax\n\t"
#define WALLE_GEMM_ASM_CLOBBERS                                                                \
    "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",     \
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19",       \
        "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28",       \
        "xmm29", "xmm30", "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11",  \
        "r12", "r13", "memory", "cc"
/* A tile's loop over kc reduction rows on the N sums in acc (ROW, EXTRA as above; a's rows
   read in place: C1 = 4 * sa bytes, KSTEP 4). */
#define WALLE_GEMM_ASM_LOOP(ROW, EXTRA, N)                                                     \
    do {                                                                                       \
        long q[11] = {(long)b, (long)a, kc / 2, sb * 4, 4 * sa, 12 * sa, 4, (long)pf,         \
                      pfs * 4, kc & 1, (long)acc};                                             \
        if (pf)                                                                                \
            __asm__ volatile(WALLE_GEMM_ASM(ROW, EXTRA, N, WALLE_GEMM_ASM_PF)                  \
                             :                                                                 \
                             : [q] "r"(q)                                                      \
                             : WALLE_GEMM_ASM_CLOBBERS);                                       \
        else                                                                                   \
            __asm__ volatile(WALLE_GEMM_ASM(ROW, EXTRA, N, "")                                 \
                             :                                                                 \
                             : [q] "r"(q)                                                      \
                             : WALLE_GEMM_ASM_CLOBBERS);                                       \
    } while (0)
/* The tiles below (WALLE_GEMM_TILE8X2, WALLE_GEMM_TILE8PX2, WALLE_GEMM_TILE8X3) on a
   matmul's rows of a read in place (AT: WALLE_GEMM_AR), NV vectors x R rows, their loop in
   asm. The convs' (packed weights) stay the C tiles to the letter: GCC keeps their sums in
   registers, and any change it sees in them moves their register allocation. */
#define WALLE_GEMM_TILE_ASM(NAME, VT, IT, VW, NV, R, ROW, EXTRA, N)                            \
WALLE_LEVEL_TARGET("avx512f,avx2,fma") WALLE_INLINE void NAME WALLE_GEMM_TILE_PARAMS {         \
    VT acc[R][NV];                                                                             \
    WALLE_GEMM_LOAD(acc, VT, VW, NV, R)                                                        \
    if (kc > 0) WALLE_GEMM_ASM_LOOP(ROW, EXTRA, N);                                            \
    WALLE_GEMM_STORE(acc, VT, IT, VW, NV, R)                                                   \
}
#define WALLE_GEMM_TILE8X2_ASM(NAME, VT, IT, VW, AT) \
    WALLE_GEMM_TILE_ASM(NAME, VT, IT, VW, 2, 8, WALLE_GEMM_ASMX2_ROW, WALLE_GEMM_ASM_NONE, 16)
#define WALLE_GEMM_TILE8X3_ASM(NAME, VT, IT, VW, AT) \
    WALLE_GEMM_TILE_ASM(NAME, VT, IT, VW, 3, 8, WALLE_GEMM_ASMX3_ROW, WALLE_GEMM_ASM_NONE, 24)
#define WALLE_GEMM_TILE8PX2_ASM(NAME, VT, IT, VW, AT, R)                                      \
    WALLE_GEMM_TILE_ASM(NAME, VT, IT, VW, 2, R, WALLE_GEMM_ASMX2_ROW,                         \
                        WALLE_GEMM_ASMX2_R##R "add %%r11, %%r13\n\t", WALLE_GEMM_ASMX2_N##R)
#else
#define WALLE_GEMM_TILE8X2_ASM WALLE_GEMM_TILE8X2
#define WALLE_GEMM_TILE8X3_ASM WALLE_GEMM_TILE8X3
#define WALLE_GEMM_TILE8PX2_ASM WALLE_GEMM_TILE8PX2
#endif

/* 8 channels x 2 vectors of 16 (AVX-512's wide tile: 16 sums of the 32 registers, 2 column
   vectors, one broadcast weight: 10 loads per 16 multiply-adds), written as the 4 x 3 tile
   above: named sums, two reduction rows a turn, the prefetch test outside the loop. The
   generic tile (WALLE_GEMM_TILE: one row a turn, the test inside) ran 1x1 convs 1-7% slower
   on a Xeon (Emerald Rapids: 512 -> 1000 on 13x13, 64 -> 256 on 56x56, 1024 -> 256 on
   14x14, 256 -> 1024 on 14x14; interleaved in one process, the minimum 1% and the median
   3-7%; likely because its two 512-bit FMA ports share ports with the loop's integer work).
   The matmuls run it (in asm where a's rows are read in place: WALLE_GEMM_TILE8X2_ASM); the
   convs run the 8 x 3 tile below. */
#define WALLE_GEMM_TILE8X2(NAME, VT, IT, VW, AT)                                               \
WALLE_INLINE void NAME WALLE_GEMM_TILE_PARAMS {                                                \
    VT acc[8][2];                                                                              \
    WALLE_GEMM_LOAD(acc, VT, VW, 2, 8)                                                         \
    VT s00 = acc[0][0], s01 = acc[0][1], s10 = acc[1][0], s11 = acc[1][1];                     \
    VT s20 = acc[2][0], s21 = acc[2][1], s30 = acc[3][0], s31 = acc[3][1];                     \
    VT s40 = acc[4][0], s41 = acc[4][1], s50 = acc[5][0], s51 = acc[5][1];                     \
    VT s60 = acc[6][0], s61 = acc[6][1], s70 = acc[7][0], s71 = acc[7][1];                     \
    WALLE_GEMM_TWO_ROWS(WALLE_GEMM_STEP8X2, VT, VW, AT)                                        \
    acc[0][0] = s00; acc[0][1] = s01; acc[1][0] = s10; acc[1][1] = s11;                        \
    acc[2][0] = s20; acc[2][1] = s21; acc[3][0] = s30; acc[3][1] = s31;                        \
    acc[4][0] = s40; acc[4][1] = s41; acc[5][0] = s50; acc[5][1] = s51;                        \
    acc[6][0] = s60; acc[6][1] = s61; acc[7][0] = s70; acc[7][1] = s71;                        \
    WALLE_GEMM_STORE(acc, VT, IT, VW, 2, 8)                                                    \
}

/* One reduction row k of the (8 + r) x 2 tile below (R_ rows; PF as the 8 x 2 tile's). */
#define WALLE_GEMM_STEP8PX2(VT, VW, K, PF, AT)                                                 \
    do {                                                                                       \
        WALLE_GEMM_ROW2X(VT, VW, K, PF)                                                        \
        WALLE_GEMM_FMA8X2(K, AT)                                                               \
        s80 += AT(K, 8) * v0; s81 += AT(K, 8) * v1;                                            \
        if (R_ > 9) { s90 += AT(K, 9) * v0; s91 += AT(K, 9) * v1; }                            \
        if (R_ > 10) { sa0 += AT(K, 10) * v0; sa1 += AT(K, 10) * v1; }                         \
        if (R_ > 11) { sb0 += AT(K, 11) * v0; sb1 += AT(K, 11) * v1; }                         \
    } while (0)

/* R (9 to 12) rows x 2 vectors of 16: a matmul's last whole block of 8 rows of a, read in
   place, with the 1 to 4 rows after it (the matmul's last ones), so that those rows need
   no pass of their own over b: b comes from L2 for every block of rows, and a 25-row
   product over 1024 x 8210 weights (ddddocr's CRNN's last Gemm) spent 0.5 of its 3.6 ms
   on the 25th row in a 4-row tile (24 rows: 3.1 ms; an Intel Xeon, one core). Up to 24
   sums, 2 column vectors, the weights broadcast from memory: 32 registers. */
#define WALLE_GEMM_TILE8PX2(NAME, VT, IT, VW, AT, R)                                           \
WALLE_INLINE void NAME WALLE_GEMM_TILE_PARAMS {                                                \
    enum { R_ = R };                                                                           \
    VT acc[R][2];                                                                              \
    WALLE_GEMM_LOAD(acc, VT, VW, 2, R)                                                         \
    VT s00 = acc[0][0], s01 = acc[0][1], s10 = acc[1][0], s11 = acc[1][1];                     \
    VT s20 = acc[2][0], s21 = acc[2][1], s30 = acc[3][0], s31 = acc[3][1];                     \
    VT s40 = acc[4][0], s41 = acc[4][1], s50 = acc[5][0], s51 = acc[5][1];                     \
    VT s60 = acc[6][0], s61 = acc[6][1], s70 = acc[7][0], s71 = acc[7][1];                     \
    VT s80 = acc[8][0], s81 = acc[8][1];                                                       \
    VT s90 = acc[R_ > 9 ? 9 : 8][0], s91 = acc[R_ > 9 ? 9 : 8][1];                             \
    VT sa0 = acc[R_ > 10 ? 10 : 8][0], sa1 = acc[R_ > 10 ? 10 : 8][1];                         \
    VT sb0 = acc[R_ > 11 ? 11 : 8][0], sb1 = acc[R_ > 11 ? 11 : 8][1];                         \
    WALLE_GEMM_TWO_ROWS(WALLE_GEMM_STEP8PX2, VT, VW, AT)                                       \
    acc[0][0] = s00; acc[0][1] = s01; acc[1][0] = s10; acc[1][1] = s11;                        \
    acc[2][0] = s20; acc[2][1] = s21; acc[3][0] = s30; acc[3][1] = s31;                        \
    acc[4][0] = s40; acc[4][1] = s41; acc[5][0] = s50; acc[5][1] = s51;                        \
    acc[6][0] = s60; acc[6][1] = s61; acc[7][0] = s70; acc[7][1] = s71;                        \
    acc[8][0] = s80; acc[8][1] = s81;                                                          \
    if (R_ > 9) { acc[R_ > 9 ? 9 : 8][0] = s90; acc[R_ > 9 ? 9 : 8][1] = s91; }                \
    if (R_ > 10) { acc[R_ > 10 ? 10 : 8][0] = sa0; acc[R_ > 10 ? 10 : 8][1] = sa1; }           \
    if (R_ > 11) { acc[R_ > 11 ? 11 : 8][0] = sb0; acc[R_ > 11 ? 11 : 8][1] = sb1; }           \
    WALLE_GEMM_STORE(acc, VT, IT, VW, 2, R)                                                    \
}

/* One reduction row k of the 8 x 3 tile below (PF: ask for two lines of the prefetch rows). */
#define WALLE_GEMM_STEP8X3(VT, VW, K, PF, AT)                                                  \
    do {                                                                                       \
        VT v0, v1, v2;                                                                         \
        memcpy(&v0, b + (K) * sb, sizeof(VT));                                                 \
        memcpy(&v1, b + (K) * sb + VW, sizeof(VT));                                            \
        memcpy(&v2, b + (K) * sb + 2 * VW, sizeof(VT));                                        \
        if (PF) {                                                                              \
            __builtin_prefetch(pf + (K) * pfs);                                                \
            __builtin_prefetch(pf + (K) * pfs + 16);                                           \
        }                                                                                      \
        s00 += AT(K, 0) * v0; s01 += AT(K, 0) * v1; s02 += AT(K, 0) * v2;                      \
        s10 += AT(K, 1) * v0; s11 += AT(K, 1) * v1; s12 += AT(K, 1) * v2;                      \
        s20 += AT(K, 2) * v0; s21 += AT(K, 2) * v1; s22 += AT(K, 2) * v2;                      \
        s30 += AT(K, 3) * v0; s31 += AT(K, 3) * v1; s32 += AT(K, 3) * v2;                      \
        s40 += AT(K, 4) * v0; s41 += AT(K, 4) * v1; s42 += AT(K, 4) * v2;                      \
        s50 += AT(K, 5) * v0; s51 += AT(K, 5) * v1; s52 += AT(K, 5) * v2;                      \
        s60 += AT(K, 6) * v0; s61 += AT(K, 6) * v1; s62 += AT(K, 6) * v2;                      \
        s70 += AT(K, 7) * v0; s71 += AT(K, 7) * v1; s72 += AT(K, 7) * v2;                      \
    } while (0)

/* 8 channels x 3 vectors of 16 (AVX-512's wide tile: 24 sums of the 32 registers, 3 column
   vectors, one broadcast weight: 11 loads per 24 multiply-adds), written as the 4 x 3 tile
   above: named sums, two reduction rows a turn, the prefetch test outside the loop (the
   generic tile, one row a turn with the test inside, ran 1x1 convs 1-7% slower on a Xeon).
   The convs run it (``wide``), in strips of 48 columns: on an Emerald Rapids Xeon,
   interleaved in one process against the 8 x 2 tile, it took 0.94-1.00x the time on
   ResNet-50's 1x1 convs alone (1.05x on one), 0.80x on its 7x7 ones read in place, and 0.96x
   of ResNet-50 and SqueezeNet whole, 0.99x of Inception v2. On the Emerald Rapids the
   matmuls ran 1.00-1.07x slower in it (256^3 1.04x: a strip of 16 left over per 240
   columns, run by the 8 x 1 tile, against none in strips of 32), on a later Xeon 0.94-0.98x:
   they run either (``wide``, the search times both), in asm where a's rows are read in place
   (WALLE_GEMM_TILE8X3_ASM). */
#define WALLE_GEMM_TILE8X3(NAME, VT, IT, VW, AT)                                               \
WALLE_INLINE void NAME WALLE_GEMM_TILE_PARAMS {                                                \
    VT acc[8][3];                                                                              \
    WALLE_GEMM_LOAD(acc, VT, VW, 3, 8)                                                         \
    VT s00 = acc[0][0], s01 = acc[0][1], s02 = acc[0][2], s10 = acc[1][0], s11 = acc[1][1];    \
    VT s12 = acc[1][2], s20 = acc[2][0], s21 = acc[2][1], s22 = acc[2][2], s30 = acc[3][0];    \
    VT s31 = acc[3][1], s32 = acc[3][2], s40 = acc[4][0], s41 = acc[4][1], s42 = acc[4][2];    \
    VT s50 = acc[5][0], s51 = acc[5][1], s52 = acc[5][2], s60 = acc[6][0], s61 = acc[6][1];    \
    VT s62 = acc[6][2], s70 = acc[7][0], s71 = acc[7][1], s72 = acc[7][2];                     \
    WALLE_GEMM_TWO_ROWS(WALLE_GEMM_STEP8X3, VT, VW, AT)                                        \
    acc[0][0] = s00; acc[0][1] = s01; acc[0][2] = s02; acc[1][0] = s10; acc[1][1] = s11;       \
    acc[1][2] = s12; acc[2][0] = s20; acc[2][1] = s21; acc[2][2] = s22; acc[3][0] = s30;       \
    acc[3][1] = s31; acc[3][2] = s32; acc[4][0] = s40; acc[4][1] = s41; acc[4][2] = s42;       \
    acc[5][0] = s50; acc[5][1] = s51; acc[5][2] = s52; acc[6][0] = s60; acc[6][1] = s61;       \
    acc[6][2] = s62; acc[7][0] = s70; acc[7][1] = s71; acc[7][2] = s72;                        \
    WALLE_GEMM_STORE(acc, VT, IT, VW, 3, 8)                                                    \
}

/* The leftover columns: T (1 or 2) columns x 4 blocks of 8 output channels, the channels in
   the lanes of H vectors of VW (H * VW = 8); a block past Cout is zero weights, not stored. */
#define WALLE_GEMM_TAIL(NAME, VT, VW, T)                                                       \
WALLE_INLINE void NAME(const float* restrict b, long sb, const float* restrict a, long sa,     \
                       long kc, float* restrict y, long y_c, long cvalid,                      \
                       const float* restrict bias, const float* restrict res, int first,       \
                       int last, float relu) {                                                 \
    enum { H = WALLE_CB / VW };                                                                \
    VT acc[T][4][H];                                                                           \
    for (int t = 0; t < T; t++)                                                                \
        for (int g = 0; g < 4; g++)                                                            \
            for (int h = 0; h < H; h++) {                                                      \
                float part[VW];                                                                \
                for (int l = 0; l < VW; l++) {                                                 \
                    long c = g * WALLE_CB + h * VW + l;                                        \
                    part[l] = !first && c < cvalid ? y[c * y_c + t] : 0.0f;                    \
                }                                                                              \
                memcpy(&acc[t][g][h], part, sizeof(VT));                                       \
            }                                                                                  \
    for (long k = 0; k < kc; k++)                                                              \
        for (int g = 0; g < 4; g++)                                                            \
            for (int h = 0; h < H; h++) {                                                      \
                VT w;                                                                          \
                memcpy(&w, a + g * sa + k * WALLE_CB + h * VW, sizeof(VT));                    \
                for (int t = 0; t < T; t++) acc[t][g][h] += b[k * sb + t] * w;                 \
            }                                                                                  \
    for (int t = 0; t < T; t++)                                                                \
        for (int g = 0; g < 4; g++)                                                            \
            for (int h = 0; h < H; h++) {                                                      \
                float part[VW];                                                                \
                memcpy(part, &acc[t][g][h], sizeof(VT));                                       \
                for (int l = 0; l < VW; l++) {                                                 \
                    long c = g * WALLE_CB + h * VW + l;                                        \
                    if (c >= cvalid) break;                                                    \
                    float r = part[l];                                                         \
                    if (last) {                                                                \
                        r += bias[c];                                                          \
                        if (res) r += res[c * y_c + t];                                        \
                        r = WALLE_RELU_S(r, relu);                                             \
                    }                                                                          \
                    y[c * y_c + t] = r;                                                        \
                }                                                                              \
            }                                                                                  \
}

WALLE_GEMM_TILE8X2(walle_gemm_v16x2, walle_v16, walle_i16, 16, WALLE_GEMM_AP)
WALLE_GEMM_TILE8X3(walle_gemm_v16x3, walle_v16, walle_i16, 16, WALLE_GEMM_AP)
WALLE_GEMM_TILE(walle_gemm_v16x1, walle_v16, walle_i16, 16, 1, 8, WALLE_GEMM_AP)
/* AVX-512's wide tile for a last block of at most 4 channels (a matmul of 212 rows spent a
   whole 8-channel tile's time on its last 4). */
WALLE_GEMM_TILE(walle_gemm_v16x2c4, walle_v16, walle_i16, 16, 2, 4, WALLE_GEMM_AP)
WALLE_GEMM_TILE(walle_gemm_v16x3c4, walle_v16, walle_i16, 16, 3, 4, WALLE_GEMM_AP)
WALLE_GEMM_TILE(walle_gemm_v8x1, walle_v8, walle_i8, 8, 1, 8, WALLE_GEMM_AP)
WALLE_GEMM_TILE4X3(walle_gemm_v8x3c4, walle_v8, walle_i8, 8, WALLE_GEMM_AP, 4, 12, 32,
                   WALLE_GEMM_ASM_MIN_KC)
WALLE_GEMM_TILE(walle_gemm_v4x1, walle_v4, walle_i4, 4, 1, 8, WALLE_GEMM_AP)
WALLE_GEMM_TILE(walle_gemm_v4x2c4, walle_v4, walle_i4, 4, 2, 4, WALLE_GEMM_AP)
/* The same tiles reading a matmul's rows of a in place (the whole blocks of 8 channels; the
   tiles of 4 run only a last part block, which stays packed). */
WALLE_GEMM_TILE8X2_ASM(walle_gemm_v16x2_rows, walle_v16, walle_i16, 16, WALLE_GEMM_AR)
WALLE_GEMM_TILE8X3_ASM(walle_gemm_v16x3_rows, walle_v16, walle_i16, 16, WALLE_GEMM_AR)
WALLE_GEMM_TILE(walle_gemm_v16x1_rows, walle_v16, walle_i16, 16, 1, 8, WALLE_GEMM_AR)
WALLE_GEMM_TILE8PX2_ASM(walle_gemm_v16x2r9_rows, walle_v16, walle_i16, 16, WALLE_GEMM_AR, 9)
WALLE_GEMM_TILE8PX2_ASM(walle_gemm_v16x2r10_rows, walle_v16, walle_i16, 16, WALLE_GEMM_AR, 10)
WALLE_GEMM_TILE8PX2_ASM(walle_gemm_v16x2r11_rows, walle_v16, walle_i16, 16, WALLE_GEMM_AR, 11)
WALLE_GEMM_TILE8PX2_ASM(walle_gemm_v16x2r12_rows, walle_v16, walle_i16, 16, WALLE_GEMM_AR, 12)
/* The (8 + r) x 2 tile for cvalid = 8 + r rows (9 to 12). */
WALLE_LEVEL_TARGET("avx512f,avx2,fma") WALLE_INLINE void walle_gemm_v16x2_fold_rows
WALLE_GEMM_TILE_PARAMS {
    if (cvalid == 9)
        walle_gemm_v16x2r9_rows(b, sb, a, kc, y, y_c, cvalid, ncols, bias, res, first, last,
                                relu, pf, pfs, sa);
    else if (cvalid == 10)
        walle_gemm_v16x2r10_rows(b, sb, a, kc, y, y_c, cvalid, ncols, bias, res, first, last,
                                 relu, pf, pfs, sa);
    else if (cvalid == 11)
        walle_gemm_v16x2r11_rows(b, sb, a, kc, y, y_c, cvalid, ncols, bias, res, first, last,
                                 relu, pf, pfs, sa);
    else
        walle_gemm_v16x2r12_rows(b, sb, a, kc, y, y_c, cvalid, ncols, bias, res, first, last,
                                 relu, pf, pfs, sa);
}
WALLE_GEMM_TILE(walle_gemm_v8x1_rows, walle_v8, walle_i8, 8, 1, 8, WALLE_GEMM_AR)
WALLE_GEMM_TILE4X3(walle_gemm_v8x3c4_rows, walle_v8, walle_i8, 8, WALLE_GEMM_AR, 4 * sa,
                   12 * sa, 4, 0)
WALLE_GEMM_TILE(walle_gemm_v4x1_rows, walle_v4, walle_i4, 4, 1, 8, WALLE_GEMM_AR)
WALLE_GEMM_TILE(walle_gemm_v4x2c4_rows, walle_v4, walle_i4, 4, 2, 4, WALLE_GEMM_AR)
WALLE_GEMM_TAIL(walle_gemm_tail8_1, walle_v8, 8, 1)
WALLE_GEMM_TAIL(walle_gemm_tail8_2, walle_v8, 8, 2)
WALLE_GEMM_TAIL(walle_gemm_tail4_1, walle_v4, 4, 1)
WALLE_GEMM_TAIL(walle_gemm_tail4_2, walle_v4, 4, 2)

/* The wide tile of the 16-register levels: the block's two halves of 4 channels x 3
   vectors at AVX2 (4 x 2 at SSE; 8 x 1 loads 9 values per 8 multiply-adds, these 7 per 12
   and 6 per 8). */
#define WALLE_GEMM_HALVES(NAME, TILE, CH, ATTR)                                                \
ATTR WALLE_INLINE void NAME WALLE_GEMM_TILE_PARAMS {                                           \
    TILE(b, sb, a, kc, y, y_c, cvalid, ncols, bias, res, first, last, relu, pf, pfs, sa);      \
    if (cvalid > 4)                                                                            \
        TILE(b, sb, a + CH(4), kc, y + 4 * y_c, y_c, cvalid - 4, ncols, bias + 4,              \
             res ? res + 4 * y_c : res, first, last, relu, (const float*)0, 0, sa);            \
}
WALLE_GEMM_HALVES(walle_gemm_v8x3h, walle_gemm_v8x3c4, WALLE_GEMM_CP,
                  WALLE_LEVEL_TARGET("avx2,fma"))
WALLE_GEMM_HALVES(walle_gemm_v4x2h, walle_gemm_v4x2c4, WALLE_GEMM_CP, )
WALLE_GEMM_HALVES(walle_gemm_v8x3h_rows, walle_gemm_v8x3c4_rows, WALLE_GEMM_CR,
                  WALLE_LEVEL_TARGET("avx2,fma"))
WALLE_GEMM_HALVES(walle_gemm_v4x2h_rows, walle_gemm_v4x2c4_rows, WALLE_GEMM_CR, )

/* Asks for the lines of a strip's output rows (written, and read too after the first block
   of rows) and, with the last block, its residual rows, while the strip before it runs (a
   block's last strip asks for the next block's first: ResNet-50's 64 -> 256 1x1 convs with
   their shortcut on 56x56, 0.97x the time in the run, `ops_steps.py`). Each
   of a block's 8 channels is a stream of its own, 8-16 streams at once, which the prefetchers
   did not follow far enough ahead: ResNet's 1x1 convs with a shortcut at batch 8, whose
   outputs and shortcuts no longer fit in the caches, ran at 34 GMAC/s against 40 at batch 1,
   and on a busy machine (whose other work takes the caches) even at batch 1. */
WALLE_INLINE void walle_gemm_prefetch_out(const float* y, const float* res, long y_c,
                                          long cvalid, long w) {
    for (long c = 0; c < cvalid; c++) {
        for (long j = 0; j < w; j += 16) __builtin_prefetch(y + c * y_c + j, 1);
    }
    for (long c = 0; res && c < cvalid; c++) {
        for (long j = 0; j < w; j += 16) __builtin_prefetch(res + c * y_c + j);
    }
}

/* Read in place (``direct``), the K rows of a strip are K streams a plane apart, more than
   the prefetchers follow: on planes of 28x28 and up, the tiles that ask for no weights ask
   for strips ahead, two lines of each row a tile: block 0's for the next strip of their
   chunk (SqueezeNet's 128 -> 16 1x1 conv on 55x55 planes: 0.88-0.96x the time with its
   source just written; ResNet's 256 -> 64 on 56x56: 0.92-0.94x), the chunk's last ones for
   the first strips of what comes next (walle_gemm_ahead). On 13x13 planes, whose source the
   caches hold, asking cost 5-6%. */
#define WALLE_GEMM_PF_PLANE 784

/* What the last tiles of one chunk and reduction block ask for when read in place: the
   first two strips of the next chunk (or, where the reduction has more blocks, of this
   chunk's next rows), which block 0's tiles never ask for (each asks for the strip after its
   own; the first asks for the next block's weights). ``duties`` asks of two lines of every
   row each, ``halves`` per strip of SW columns (whatever its alignment), handed to the last
   ``duties`` of the chunk's tiles that ask for no weights (the ``skip`` before them ask only
   as block 0's do): the strips arrive while the chunk's last blocks run, not before its
   first blocks are done with their own. With 2 strips a chunk (AVX-512: 256 -> 64 on 56x56,
   reduction blocks of 256) no strip had been asked for: alone, 0.90-0.93x the time (64 ->
   256 and 128 -> 256 on 56x56 0.91-0.97x; at batch 8, 256 -> 64 0.70-0.86x, 64 -> 256 and
   128 -> 512 on 28x28 0.90-0.97x; an Intel Xeon, one core, builds alternated). At AVX2
   (reduction blocks of 128, 10 strips a chunk) the same within the host's noise. */
typedef struct {
    const float* x; /* the first strip's row 0 (NULL: nothing to ask for) */
    long duties, skip, halves;
} walle_gemm_next;

WALLE_INLINE walle_gemm_next walle_gemm_ahead(const walle_gemm* g, long u, long u1, long chunks,
                                              long k0, long kc, long p0, long full, long blocks,
                                              long sw) {
    walle_gemm_next a = {(const float*)0, 0, 0, (sw + 47) / 32};
    if (!g->direct || g->p < WALLE_GEMM_PF_PLANE || full < sw) return a;
    long strips = 0;
    if (k0 + kc < g->k) {
        a.x = g->x + (u / chunks) * g->s_n + g->koff[k0 + kc] + g->poff[p0];
        strips = full / sw;
    } else if (u + 1 < u1) {
        long n = (u + 1) / chunks, q0 = ((u + 1) % chunks) * g->nc;
        long cols = g->p - q0 < g->nc ? g->p - q0 : g->nc;
        a.x = g->x + n * g->s_n + g->koff[0] + g->poff[q0];
        strips = (cols + sw - 1) / sw;
    }
    a.duties = (strips < 2 ? strips : 2) * a.halves;
    long free_tiles = blocks * (full / sw) - (blocks - 1); /* block cb < blocks - 1: weights */
    a.skip = free_tiles > a.duties ? free_tiles - a.duties : 0;
    return a;
}

/* Block cb's weights from reduction row k0 and, in place, their rows' distance (*sa; 0 where
   packed): a matmul's rows of a where ``rows`` is set and the block has all 8 (ROWS: the level
   has the in-place tiles), else the packed w. */
WALLE_INLINE const float* walle_gemm_block(const walle_gemm* g, int rows, long cb, long k0,
                                           long* sa) {
    *sa = 0;
    if (rows && g->rows && (cb + 1) * WALLE_CB <= g->cout) {
        *sa = g->k;
        return g->rows + cb * WALLE_CB * g->k + k0;
    }
    return g->w + cb * g->k * WALLE_CB + k0 * WALLE_CB;
}

/* TILE(args) on packed weights, or its _rows twin where the block is read in place (sa). */
#define WALLE_GEMM_CALL(ROWS, TILE, ...)                                                       \
    do {                                                                                       \
        if (ROWS && sa)                                                                        \
            TILE##_rows(__VA_ARGS__, sa);                                                      \
        else                                                                                   \
            TILE(__VA_ARGS__, 0);                                                              \
    } while (0)

/* A matmul's levels (ROWS) whose b has at most WALLE_GEMM_LAZY_FLOATS floats pack each whole
   strip just before block 0's tile reads it (``lazy``), not all of them before the first
   tile: the strip is in L1 when that tile reads it and the pack's stores overlap the tiles
   around them. MatMul 256^3 at AVX-512 0.5-2% faster on Zen 5 (interleaved A/Bs, at the
   edge of the host's noise; 512^3 and 100 x 300 x 200 level); with b beyond L2 (64 x 1024 x
   1024: 4 MiB), where each strip's rows come from L3 a few lines at a time, 5% slower, hence
   the bound: 256 KiB, a b that stays in the L2 of every CPU with AVX2 or AVX-512 (512 KiB on
   Zen 3 and Ice Lake clients). WALLE_GEMM_LAZY=0 builds the eager pack (A/B). */
#ifndef WALLE_GEMM_LAZY
#define WALLE_GEMM_LAZY 1
#endif
#ifndef WALLE_GEMM_LAZY_FLOATS
#define WALLE_GEMM_LAZY_FLOATS 65536
#endif
/* Code only in the ROWS levels: the convs' levels stay as they were to the letter (a change
   the compiler sees in them, even dead code, moves their register allocation). */
#define WALLE_GEMM_IF_ROWS_0(...)
#define WALLE_GEMM_IF_ROWS_1(...) __VA_ARGS__

/* Whether a matmul of ``rows`` rows of a (read in place) runs its last 1 to 4 rows in its
   last whole block's tile at AVX-512 (walle_gemm_v16x2_fold_rows): at least 9 rows, and
   1 to 4 past a multiple of 8. */
WALLE_INLINE int walle_gemm_folds(long rows) {
    return rows > WALLE_CB && rows % WALLE_CB >= 1 && rows % WALLE_CB <= 4;
}

/* Whether a matmul's constant b is big enough that its tiles (AVX-512 and AVX2, the
   walle_gemm_*_rows_ext levels) ask for the next reduction block's packed b (or the next
   chunk's) while they run, spread over every tile of the block before it, 1 or 2 lines a
   reduction row: each block of rows reads the current one from L2, but only block 0 found
   it missing, and the hardware prefetchers follow only the stream that block reads, not
   the blocks after it, which read from L2: ddddocr's 25 x 1024 x 8210 Gemm took 5.6 ms
   right after a 128 MB write and 3.7 with b in L3, 4.6 and 3.1 so (onnxruntime: 5.1 and
   3.5), PP-OCRv6's 41 x 384 x 18710 7.0 and 5.0, 5.8 and 4.2 (onnxruntime 5.8 and 4.1; an
   Intel Xeon, one core). Over 1 MiB: a b that the L2 of no CPU measured so far holds with
   the rest (2 MiB on that Xeon). */
WALLE_INLINE int walle_gemm_big_b(long k, long p) { return k * p > (1L << 18); }
WALLE_INLINE int walle_gemm_streams(const walle_gemm* g) {
    return g->prepacked && walle_gemm_big_b(g->k, g->p);
}

/* Work units [u0, u1) (unit u: image u / chunks, column chunk u % chunks) at one level:
   strips of SW columns (WIDE; WIDE4 for a last block of at most 4 channels), then one of DW
   (TWO; none where DW is 0), then of VW (NARROW) while that many are left, then of VW2
   (NARROW2: AVX-512's 8-wide strip for 8 to 15 columns left; the same as VW elsewhere,
   where it finds none), the rest by TAIL1/2 or as one zero-padded strip (of DW by TWO, VW
   or VW2: walle_gemm_split). ROWS: the whole blocks of a matmul's a read in place where
   ``rows`` is set (walle_gemm_block, WALLE_GEMM_CALL). EXT (ROWS levels): 1, a big
   constant b asked for a block ahead (walle_gemm_streams); 2, that and a's last 1 to 4
   rows run by FOLD, the last whole block's (8 + r)-row tile (walle_gemm_folds); 0 neither.
   ``pack`` holds kc * nc floats. */
#define WALLE_GEMM_LEVEL(NAME, ATTR, WIDE, WIDE4, TWO, NARROW, NARROW2, TAIL1, TAIL2, VW, VW2, \
                         DW, SW, ROWS, FOLD, EXT)                                            \
ATTR static void NAME(const walle_gemm* g, long u0, long u1, float* pack) {                    \
    long chunks = (g->p + g->nc - 1) / g->nc;                                                  \
    long blocks = (g->cout + WALLE_CB - 1) / WALLE_CB;                                         \
    long wblock = g->k * WALLE_CB;                                                             \
    WALLE_GEMM_IF_ROWS_##ROWS(int lazy = WALLE_GEMM_LAZY && !g->prepacked && !g->direct      \
                                         && g->k * g->p <= WALLE_GEMM_LAZY_FLOATS;             \
                              long fold = EXT == 2 && walle_gemm_folds(g->cout)                \
                                          ? g->cout % WALLE_CB : 0;                            \
                              int streams = EXT && walle_gemm_streams(g);)                     \
    for (long u = u0; u < u1; u++) {                                                           \
        long n = u / chunks, p0 = (u % chunks) * g->nc;                                        \
        long cols = g->p - p0 < g->nc ? g->p - p0 : g->nc;                                     \
        walle_gemm_cols split = walle_gemm_split(cols, SW, DW, VW, VW2, ROWS && g->pad_tail);  \
        long full = split.full, two = split.two, mid = split.mid, mid2 = split.mid2;           \
        long tail = split.tail;                                                                \
        long pad = split.pad, pcols = pad ? cols - tail + pad : cols; /* columns as packed */  \
        const float* xn = g->x + n * g->s_n;                                                   \
        float* yn = g->y + (n * g->y_k + g->y_k0) * g->p + p0;                                 \
        const float* rn = g->res ? g->res + (n * g->y_k + g->y_k0) * g->p + p0 : g->res;       \
        for (long k0 = 0; k0 < g->k; k0 += g->kc) {                                            \
            long kc = g->k - k0 < g->kc ? g->k - k0 : g->kc;                                   \
            int first = k0 == 0, last = k0 + kc == g->k;                                       \
            const long* koff = g->koff + k0;                                                   \
            const long* poff = g->poff + p0;                                                   \
            const long* run = g->run + p0;                                                     \
            const long* run2 = g->run2 + p0;                                                   \
            float* bp = g->prepacked ? (float*)g->prepacked + p0 * g->k + k0 * pcols : pack;   \
            float* ptwo = bp + full * kc;                                                      \
            float* pmid = ptwo + two * kc;                                                     \
            float* pmid2 = pmid + mid * kc;                                                    \
            float* ptail = g->direct ? pack : pmid2 + mid2 * kc;                               \
            long left = full + two + mid + mid2; /* the first leftover column */               \
            /* in place: strip s at xd + s, rows ks apart; packed: at bp + s * kc, rows SW */  \
            const float* xd = xn + koff[0] + poff[0];                                          \
            long sw = g->direct ? g->ks : SW, vw = g->direct ? g->ks : VW;                     \
            long vw2 = g->direct ? g->ks : VW2;                                                \
            const float* bw = g->direct ? xd : bp;                                             \
            const float* b2 = g->direct ? xd + full : ptwo;                                    \
            const float* bm = g->direct ? xd + full + two : pmid;                              \
            const float* bm2 = g->direct ? xd + full + two + mid : pmid2;                      \
            long kw = g->direct ? 1 : kc; /* strip s from bw + s * kw */                       \
            walle_gemm_next ahead = walle_gemm_ahead(g, u, u1, chunks, k0, kc, p0, full,       \
                                                     blocks, SW);                              \
            long free_tile = 0; /* the tiles so far that ask for no weights */                \
            if (!g->prepacked && !g->direct) {                                                 \
                long f2 = full + two;                                                          \
                WALLE_GEMM_IF_ROWS_##ROWS(if (!lazy))                                          \
                    walle_gemm_pack(xn, koff, kc, poff, run, run2, 0, full, SW, bp);           \
                walle_gemm_pack(xn, koff, kc, poff, run, run2, full, two, DW, ptwo);           \
                walle_gemm_pack(xn, koff, kc, poff, run, run2, f2, mid, VW, pmid);             \
                walle_gemm_pack(xn, koff, kc, poff, run, run2, f2 + mid, mid2, VW2, pmid2);    \
            }                                                                                  \
            if (!g->prepacked) {                                                               \
                if (pad)                                                                       \
                    walle_gemm_pack_padded(xn, koff, kc, poff, left, tail, pad, ptail);        \
                else if (tail)                                                                 \
                    walle_gemm_pack(xn, koff, kc, poff, run, run2, left, tail, tail, ptail);   \
            }                                                                                  \
            for (long cb = 0; cb < blocks; cb++) {                                             \
                const float* bias = g->bias + cb * WALLE_CB;                                   \
                float* yb = yn + cb * WALLE_CB * g->p;                                         \
                const float* rb = rn ? rn + cb * WALLE_CB * g->p : rn;                         \
                long cvalid = g->cout - cb * WALLE_CB < WALLE_CB ? g->cout - cb * WALLE_CB     \
                                                                 : WALLE_CB;                   \
                long sa = 0; /* in place: a's rows sa apart (WALLE_GEMM_CALL) */               \
                const float* a = walle_gemm_block(g, ROWS, cb, k0, &sa);                       \
                const float* pf = (const float*)0; /* the next block's weights */              \
                if (cb + 1 < blocks) {                                                         \
                    long nsa = 0;                                                              \
                    pf = walle_gemm_block(g, ROWS, cb + 1, k0, &nsa);                          \
                    if (nsa && kc != nsa) pf = (const float*)0; /* not one run of 8 kc */      \
                }                                                                              \
                for (long s = 0; s < full; s += SW) {                                          \
                    WALLE_GEMM_IF_ROWS_##ROWS(if (fold && cb == blocks - 1) break;)            \
                    /* the next block's weights, else (in place) a share of the next strips */ \
                    const float* spf = s ? (const float*)0 : pf;                               \
                    long pfs = WALLE_CB;                                                       \
                    if (g->direct && g->p >= WALLE_GEMM_PF_PLANE && !spf) {                    \
                        long d = ahead.x ? free_tile++ - ahead.skip : -1;                      \
                        if (d >= 0 && d < ahead.duties)                                        \
                            spf = ahead.x + d / ahead.halves * SW + d % ahead.halves * 32,     \
                            pfs = g->ks;                                                       \
                        else if (cb == 0 && s + SW < full)                                     \
                            spf = bw + s + SW, pfs = sw;                                       \
                    }                                                                          \
                    if (kc >= 64 && s + SW < full)                                             \
                        walle_gemm_prefetch_out(yb + s + SW,                                   \
                                                rb && last ? rb + s + SW : (const float*)0,    \
                                                g->p, cvalid, SW);                             \
                    else if (kc >= 64 && cb + 1 < blocks) /* the next block's first strip */   \
                        walle_gemm_prefetch_out(                                               \
                            yb + WALLE_CB * g->p,                                              \
                            rb && last ? rb + WALLE_CB * g->p : (const float*)0, g->p,         \
                            g->cout - (cb + 1) * WALLE_CB < WALLE_CB                           \
                                ? g->cout - (cb + 1) * WALLE_CB : WALLE_CB, SW);               \
                    WALLE_GEMM_IF_ROWS_##ROWS(if (lazy && cb == 0) walle_gemm_pack(            \
                        xn, koff, kc, poff, run, run2, s, SW, SW, bp + s * kc);)               \
                    WALLE_GEMM_IF_ROWS_##ROWS(if (streams) {                                   \
                        /* a share of the next reduction block's (or chunk's) b */             \
                        long tiles_ = (blocks - (fold != 0)) * (full / SW);                    \
                        long per_ = ((kc * pcols + 15) / 16 + tiles_ - 1) / tiles_;            \
                        spf = bp + kc * pcols + (cb * (full / SW) + s / SW) * per_ * 16;       \
                        pfs = per_ > kc ? 32 : 16;                                             \
                    })                                                                         \
                    /* the last whole block with the rows after it: the (8 + fold) x 2 tile */ \
                    WALLE_GEMM_IF_ROWS_##ROWS(if (fold && cb == blocks - 2)                    \
                        FOLD(bw + s * kw, sw, a, kc, yb + s, g->p, cvalid + fold, SW, bias,    \
                             rb ? rb + s : rb, first, last, g->relu, spf, pfs, sa);            \
                        else)                                                                  \
                    if (cvalid <= 4)                                                           \
                        WIDE4(bw + s * kw, sw, a, kc, yb + s, g->p, cvalid, SW, bias,          \
                              rb ? rb + s : rb, first, last, g->relu, spf, pfs, 0);            \
                    else                                                                       \
                        WALLE_GEMM_CALL(ROWS, WIDE, bw + s * kw, sw, a, kc, yb + s, g->p,      \
                                        cvalid, SW, bias, rb ? rb + s : rb, first, last,       \
                                        g->relu, spf, pfs);                                    \
                }                                                                              \
                if (two)                                                                       \
                    WALLE_GEMM_CALL(ROWS, TWO, b2, g->direct ? g->ks : DW, a, kc, yb + full,   \
                                    g->p, cvalid, DW, bias, rb ? rb + full : rb, first, last,  \
                                    g->relu, full ? (const float*)0 : pf, WALLE_CB);           \
                for (long s = 0; s < mid; s += VW)                                             \
                    WALLE_GEMM_CALL(ROWS, NARROW, bm + s * kw, vw, a, kc,                      \
                                    yb + full + two + s, g->p, cvalid, VW, bias,               \
                                    rb ? rb + full + two + s : rb, first, last, g->relu,       \
                                    full || two || s ? (const float*)0 : pf, WALLE_CB);        \
                for (long s = 0; s < mid2; s += VW2)                                           \
                    WALLE_GEMM_CALL(ROWS, NARROW2, bm2 + s * kw, vw2, a, kc,                   \
                                    yb + full + two + mid + s, g->p, cvalid, VW2, bias,        \
                                    rb ? rb + full + two + mid + s : rb, first, last,          \
                                    g->relu, (const float*)0, 0);                              \
                if (pad && pad == DW)                                                          \
                    WALLE_GEMM_CALL(ROWS, TWO, ptail, DW, a, kc, yb + left, g->p, cvalid,      \
                                    tail, bias, rb ? rb + left : rb, first, last, g->relu,     \
                                    (const float*)0, 0);                                       \
                else if (pad == VW2)                                                           \
                    WALLE_GEMM_CALL(ROWS, NARROW2, ptail, VW2, a, kc, yb + left, g->p,         \
                                    cvalid, tail, bias, rb ? rb + left : rb, first, last,      \
                                    g->relu, (const float*)0, 0);                              \
                else if (pad)                                                                  \
                    WALLE_GEMM_CALL(ROWS, NARROW, ptail, VW, a, kc, yb + left, g->p,           \
                                    cvalid, tail, bias, rb ? rb + left : rb, first, last,      \
                                    g->relu, (const float*)0, 0);                              \
            }                                                                                  \
            for (long cb = 0; tail && !pad && cb < blocks; cb += 4) {                          \
                const float* a = g->w + cb * wblock + k0 * WALLE_CB;                           \
                const float* bias = g->bias + cb * WALLE_CB;                                   \
                float* yb = yn + cb * WALLE_CB * g->p + left;                                  \
                const float* rb = rn ? rn + cb * WALLE_CB * g->p + left : rn;                  \
                long cvalid = g->cout - cb * WALLE_CB;                                         \
                long t = 0;                                                                    \
                for (; t + 2 <= tail; t += 2)                                                  \
                    TAIL2(ptail + t, tail, a, wblock, kc, yb + t, g->p, cvalid, bias,          \
                          rb ? rb + t : rb, first, last, g->relu);                             \
                if (t < tail)                                                                  \
                    TAIL1(ptail + t, tail, a, wblock, kc, yb + t, g->p, cvalid, bias,          \
                          rb ? rb + t : rb, first, last, g->relu);                             \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
}

WALLE_GEMM_LEVEL(walle_gemm_avx512, WALLE_LEVEL_TARGET("avx512f,avx2,fma"), walle_gemm_v16x2,
                 walle_gemm_v16x2c4, walle_gemm_v16x2, walle_gemm_v16x1, walle_gemm_v8x1,
                 walle_gemm_tail8_1, walle_gemm_tail8_2, 16, 8, 0, 32, 0, walle_gemm_v16x2, 0)
WALLE_GEMM_LEVEL(walle_gemm_avx512w, WALLE_LEVEL_TARGET("avx512f,avx2,fma"), walle_gemm_v16x3,
                 walle_gemm_v16x3c4, walle_gemm_v16x2, walle_gemm_v16x1, walle_gemm_v8x1,
                 walle_gemm_tail8_1, walle_gemm_tail8_2, 16, 8, 32, 48, 0, walle_gemm_v16x3,
                 0)
WALLE_GEMM_LEVEL(walle_gemm_avx2, WALLE_LEVEL_TARGET("avx2,fma"), walle_gemm_v8x3h,
                 walle_gemm_v8x3h, walle_gemm_v8x3h, walle_gemm_v8x1, walle_gemm_v8x1,
                 walle_gemm_tail8_1, walle_gemm_tail8_2, 8, 8, 0, 24, 0, walle_gemm_v8x3h, 0)
WALLE_GEMM_LEVEL(walle_gemm_base, , walle_gemm_v4x2h, walle_gemm_v4x2h, walle_gemm_v4x2h,
                 walle_gemm_v4x1, walle_gemm_v4x1, walle_gemm_tail4_1, walle_gemm_tail4_2, 4, 4,
                 0, 8, 0, walle_gemm_v4x2h, 0)
/* The levels of the matmuls whose a is read in place (``rows``): their own functions, so that
   the convs' code stays as it was (in one function with the in-place tiles, the AVX2 level
   ran ResNet-50's and SqueezeNet's convs 6% slower on Zen 5). */
WALLE_GEMM_LEVEL(walle_gemm_avx512_rows, WALLE_LEVEL_TARGET("avx512f,avx2,fma"),
                 walle_gemm_v16x2, walle_gemm_v16x2c4, walle_gemm_v16x2, walle_gemm_v16x1,
                 walle_gemm_v8x1, walle_gemm_tail8_1, walle_gemm_tail8_2, 16, 8, 0, 32, 1,
                 walle_gemm_v16x2_rows, 0)
/* ... and for a's last 1 to 4 rows folded into the last whole block (walle_gemm_folds) or
   a big constant b asked for a block ahead (walle_gemm_streams): a function of its own, so
   that the other matmuls' code stays as it was (with the fold in the same function MatMul
   256^3 and 64 x 1024 x 4096 ran 4-5% slower, interleaved A/B). */
WALLE_GEMM_LEVEL(walle_gemm_avx512_rows_ext, WALLE_LEVEL_TARGET("avx512f,avx2,fma"),
                 walle_gemm_v16x2, walle_gemm_v16x2c4, walle_gemm_v16x2, walle_gemm_v16x1,
                 walle_gemm_v8x1, walle_gemm_tail8_1, walle_gemm_tail8_2, 16, 8, 0, 32, 1,
                 walle_gemm_v16x2_fold_rows, 2)
/* AVX-512's 8 x 3 tile over strips of 48 for a matmul (``wide``): 24 sums and 11 loads per
   24 multiply-adds against the 8 x 2 tile's 16 and 10 per 16. MatMul 512^3 took 0.91x the
   8 x 2 tile's time and 256^3 0.98x with a packed whole (an Intel Xeon with two 512-bit FMA
   ports, interleaved, one core); the search times both (``packed_wide``). */
WALLE_GEMM_LEVEL(walle_gemm_avx512w_rows, WALLE_LEVEL_TARGET("avx512f,avx2,fma"),
                 walle_gemm_v16x3, walle_gemm_v16x3c4, walle_gemm_v16x2, walle_gemm_v16x1,
                 walle_gemm_v8x1, walle_gemm_tail8_1, walle_gemm_tail8_2, 16, 8, 32, 48, 1,
                 walle_gemm_v16x3_rows, 0)
/* AVX2's: a big constant b asked for a block ahead (walle_gemm_streams; no fold: its tiles
   have no registers for more rows). */
WALLE_GEMM_LEVEL(walle_gemm_avx2_rows_ext, WALLE_LEVEL_TARGET("avx2,fma"), walle_gemm_v8x3h,
                 walle_gemm_v8x3h, walle_gemm_v8x3h, walle_gemm_v8x1, walle_gemm_v8x1,
                 walle_gemm_tail8_1, walle_gemm_tail8_2, 8, 8, 0, 24, 1, walle_gemm_v8x3h_rows,
                 1)
WALLE_GEMM_LEVEL(walle_gemm_avx2_rows, WALLE_LEVEL_TARGET("avx2,fma"), walle_gemm_v8x3h,
                 walle_gemm_v8x3h, walle_gemm_v8x3h, walle_gemm_v8x1, walle_gemm_v8x1,
                 walle_gemm_tail8_1, walle_gemm_tail8_2, 8, 8, 0, 24, 1, walle_gemm_v8x3h_rows,
                 0)
WALLE_GEMM_LEVEL(walle_gemm_base_rows, , walle_gemm_v4x2h, walle_gemm_v4x2h, walle_gemm_v4x2h,
                 walle_gemm_v4x1, walle_gemm_v4x1, walle_gemm_tail4_1, walle_gemm_tail4_2, 4, 4,
                 0, 8, 1, walle_gemm_v4x2h_rows, 0)

/* Columns per strip at a level (2: AVX-512F, 1: AVX2 + FMA, 0: baseline); ``wide``: the
   AVX-512 strips of the 8 x 3 tile. */
static long walle_gemm_strip(int level, int wide) {
    return level == 2 ? (wide ? 48 : 32) : level == 1 ? 24 : 8;
}

/* The strip widths walle_gemm_run splits a chunk's columns into at ``level`` (the SW, DW, VW
   and VW2 of its WALLE_GEMM_LEVEL). */
typedef struct { long sw, dw, vw, vw2; } walle_gemm_widths;
static walle_gemm_widths walle_gemm_widths_at(const walle_gemm* g, int level) {
    walle_gemm_widths w;
    w.sw = walle_gemm_strip(level, g->wide);
    w.vw = level == 2 ? 16 : level == 1 ? 8 : 4;
    w.vw2 = level == 2 ? 8 : w.vw;
    w.dw = level == 2 && g->wide ? 32 : 0;
    return w;
}

/* Whether walle_gemm_run may read the weights' rows in place (``rows``) at ``level``: no
   chunk leaves columns to the tail tiles, which read 4 packed blocks at once. */
static int walle_gemm_rows_fit(const walle_gemm* g, int level) {
    walle_gemm_widths wd = walle_gemm_widths_at(g, level);
    for (long p0 = 0; p0 < g->p; p0 += g->nc) {
        long cols = g->p - p0 < g->nc ? g->p - p0 : g->nc;
        walle_gemm_cols split = walle_gemm_split(cols, wd.sw, wd.dw, wd.vw, wd.vw2, g->pad_tail);
        if (split.tail && !split.pad) return 0;
    }
    return 1;
}

/* Every chunk's column blocks packed as walle_gemm_run would pack them at ``level``, into
   dst[(p + 16) * k] (chunk from p0: its blocks from dst + p0 * k, the block of rows from k0
   at + k0 * pcols, pcols its columns with a padded strip's zeros): for columns that stay
   the same from call to call (a matmul's weights), so that each call reads them packed
   instead of packing them again. One image (n = 1). */
static void walle_gemm_prepack(const walle_gemm* g, int level, float* dst) {
    walle_gemm_widths wd = walle_gemm_widths_at(g, level);
    long sw = wd.sw, dw = wd.dw, vw = wd.vw, vw2 = wd.vw2;
    for (long p0 = 0; p0 < g->p; p0 += g->nc) {
        long cols = g->p - p0 < g->nc ? g->p - p0 : g->nc;
        walle_gemm_cols split = walle_gemm_split(cols, sw, dw, vw, vw2, g->pad_tail);
        long full = split.full, two = split.two, mid = split.mid, mid2 = split.mid2;
        long left = full + two + mid + mid2, pcols = split.pad ? left + split.pad : cols;
        for (long k0 = 0; k0 < g->k; k0 += g->kc) {
            long kc = g->k - k0 < g->kc ? g->k - k0 : g->kc;
            float* d = dst + p0 * g->k + k0 * pcols;
            const long *koff = g->koff + k0, *poff = g->poff + p0;
            const long *run = g->run + p0, *run2 = g->run2 + p0;
            long f2 = full + two;
            walle_gemm_pack(g->x, koff, kc, poff, run, run2, 0, full, sw, d);
            walle_gemm_pack(g->x, koff, kc, poff, run, run2, full, two, dw, d + full * kc);
            walle_gemm_pack(g->x, koff, kc, poff, run, run2, f2, mid, vw, d + f2 * kc);
            walle_gemm_pack(g->x, koff, kc, poff, run, run2, f2 + mid, mid2, vw2,
                            d + (f2 + mid) * kc);
            if (split.pad)
                walle_gemm_pack_padded(g->x, koff, kc, poff, left, cols - left, split.pad,
                                       d + left * kc);
            else if (cols > left)
                walle_gemm_pack(g->x, koff, kc, poff, run, run2, left, cols - left,
                                cols - left, d + left * kc);
        }
    }
}

/* Rows [0, m) of a row-major a[m][k] as the kernel's packed weights: dst[m / 8][k][8] (the
   8 rows of a block interleaved per reduction row). The rows of a last part block are
   written with zeros after them; blocks past it are left as they are (zeros). Whole blocks
   go 4 reduction rows at a time through two 4 x 4 transposes: a matmul packs its a on
   every call, and the scalar copy took 11 us of MatMul 208x409x192's 300. */
static void walle_gemm_pack_rows(const float* restrict a, long m, long k, float* restrict dst) {
    for (long b = 0; b * WALLE_CB < m; b++) {
        const float* src = a + b * WALLE_CB * k;
        float* d = dst + b * k * WALLE_CB;
        long rows = m - b * WALLE_CB < WALLE_CB ? m - b * WALLE_CB : WALLE_CB;
        if (rows == WALLE_CB) {
            long j = 0;
            for (; j + 4 <= k; j += 4) {
                walle_v4 lo[4], hi[4];
                for (int r = 0; r < 4; r++) {
                    memcpy(&lo[r], src + r * k + j, sizeof(walle_v4));
                    memcpy(&hi[r], src + (r + 4) * k + j, sizeof(walle_v4));
                }
                walle_t4x4(lo);
                walle_t4x4(hi);
                for (int t = 0; t < 4; t++) {
                    memcpy(d + (j + t) * WALLE_CB, &lo[t], sizeof(walle_v4));
                    memcpy(d + (j + t) * WALLE_CB + 4, &hi[t], sizeof(walle_v4));
                }
            }
            for (; j < k; j++)
                for (int r = 0; r < WALLE_CB; r++) d[j * WALLE_CB + r] = src[r * k + j];
        } else {
            for (long j = 0; j < k; j++)
                for (int r = 0; r < WALLE_CB; r++)
                    d[j * WALLE_CB + r] = r < rows ? src[r * k + j] : 0.0f;
        }
    }
}

static void walle_gemm_run(const walle_gemm* g, int level, long u0, long u1, float* pack) {
    if (g->rows && WALLE_LEVEL(level) == 2 && g->wide)
        walle_gemm_avx512w_rows(g, u0, u1, pack);
    else if (g->rows && WALLE_LEVEL(level) == 2 && !g->wide
        && (walle_gemm_folds(g->cout) || walle_gemm_streams(g)))
        walle_gemm_avx512_rows_ext(g, u0, u1, pack);
    else if (g->rows && WALLE_LEVEL(level) == 2 && !g->wide)
        walle_gemm_avx512_rows(g, u0, u1, pack);
    else if (g->rows && WALLE_LEVEL(level) == 1 && walle_gemm_streams(g))
        walle_gemm_avx2_rows_ext(g, u0, u1, pack);
    else if (g->rows && WALLE_LEVEL(level) == 1)
        walle_gemm_avx2_rows(g, u0, u1, pack);
    else if (g->rows && WALLE_LEVEL(level) == 0)
        walle_gemm_base_rows(g, u0, u1, pack);
    else if (WALLE_LEVEL(level) == 2 && g->wide)
        walle_gemm_avx512w(g, u0, u1, pack);
    else if (WALLE_LEVEL(level) == 2)
        walle_gemm_avx512(g, u0, u1, pack);
    else if (WALLE_LEVEL(level) == 1)
        walle_gemm_avx2(g, u0, u1, pack);
    else
        walle_gemm_base(g, u0, u1, pack);
}

#endif

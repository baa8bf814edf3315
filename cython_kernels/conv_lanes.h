/* A convolution with the output channels in the vector lanes, for the cython backend's
   ``lanes`` algorithm (ops_conv.pyx, LanesConvKernel): a network's first layer, whose few
   input channels (RGB) make every other kernel pay for its input's layout.

   The other kernels put output columns in the lanes, so a strided conv must first gather
   its input columns: the packed GEMM's im2col pack of ResNet-50's 7x7 /2 stem (147 rows x
   12544 columns, every copy a stride-2 gather) costs ~40% of its multiply time, and only 8
   blocks of 8 channels share each packed strip; AlexNet's 11x11 /4 stem ran at 12 GMAC/s.
   Here each tap's input value is broadcast from wherever it lies (any dilation or pad: a
   table of per-tap offsets) and multiplied into vectors of output channels' weights, so
   nothing is packed:

   - a tile is NC vectors of VW output channels x NP output columns of one row, accumulated
     over every tap: AVX-512 16 x 16, or 32 x 8 for strided convs (10 loads per 16
     multiply-adds instead of 17: AlexNet's, ResNet-50's, ZFNet's and SqueezeNet's stems
     0.7-0.93x the time of 16 x 16; at stride 1, a 3x3 RGB conv, 1.1x); AVX2 16 x 4 (0.85-1.0x the
     time of 8 x 8); the baseline 8 x 4;
   - a block's weights are packed once at build time as [taps][NC * VW] (a 7x7 RGB stem's:
     18.8 KiB at 32 channels, in L1 while the block sweeps a row);
   - the sums are transposed in registers, VW vectors at a time (log2(VW) rounds of
     interleaving pairs of rows), so that each channel's NP columns are stored as one
     vector (or half of one), bias and ReLU applied;
   - a row's last columns (fewer than NP) rerun the row's last whole tile, shifted back to
     end at the row's end: the overlapping columns are written twice with the same values.
     A row narrower than 16 columns is not taken (:func:`lanes_fits`).

   The source column stride (the conv's horizontal stride) is a compile-time constant of
   each tile (1 to 4, AlexNet's stem): the tile's addresses are then immediate offsets of
   one pointer. */

#ifndef WALLE_CONV_LANES_H
#define WALLE_CONV_LANES_H

#include "conv_tile.h"
#include "cpu_level.h"

/* The lo and hi halves of the interleaving of a and b (a0 b0 a1 b1 ...). */
#ifdef __clang__
#define WALLE_ZIPLO16(a, b) \
    __builtin_shufflevector(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23)
#define WALLE_ZIPHI16(a, b) \
    __builtin_shufflevector(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31)
#define WALLE_ZIPLO8(a, b) __builtin_shufflevector(a, b, 0, 8, 1, 9, 2, 10, 3, 11)
#define WALLE_ZIPHI8(a, b) __builtin_shufflevector(a, b, 4, 12, 5, 13, 6, 14, 7, 15)
#define WALLE_ZIPLO4(a, b) __builtin_shufflevector(a, b, 0, 4, 1, 5)
#define WALLE_ZIPHI4(a, b) __builtin_shufflevector(a, b, 2, 6, 3, 7)
#define WALLE_HIGH16(a) \
    __builtin_shufflevector(a, a, 8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15)
#define WALLE_HIGH8(a) __builtin_shufflevector(a, a, 4, 5, 6, 7, 4, 5, 6, 7)
#define WALLE_HIGH4(a) __builtin_shufflevector(a, a, 2, 3, 2, 3)
#else
#define WALLE_ZIPLO16(a, b) \
    __builtin_shuffle(a, b, (walle_i16){0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23})
#define WALLE_ZIPHI16(a, b) \
    __builtin_shuffle(a, b, (walle_i16){8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, \
                                        15, 31})
#define WALLE_ZIPLO8(a, b) __builtin_shuffle(a, b, (walle_i8){0, 8, 1, 9, 2, 10, 3, 11})
#define WALLE_ZIPHI8(a, b) __builtin_shuffle(a, b, (walle_i8){4, 12, 5, 13, 6, 14, 7, 15})
#define WALLE_ZIPLO4(a, b) __builtin_shuffle(a, b, (walle_i4){0, 4, 1, 5})
#define WALLE_ZIPHI4(a, b) __builtin_shuffle(a, b, (walle_i4){2, 6, 3, 7})
#define WALLE_HIGH16(a) \
    __builtin_shuffle(a, (walle_i16){8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15})
#define WALLE_HIGH8(a) __builtin_shuffle(a, (walle_i8){4, 5, 6, 7, 4, 5, 6, 7})
#define WALLE_HIGH4(a) __builtin_shuffle(a, (walle_i4){2, 3, 2, 3})
#endif

/* The VW x VW transpose of r[0..VW): rows i and i + VW/2 interleaved into rows 2i and
   2i + 1, log2(VW) times. */
#define WALLE_LANES_TRANSPOSE(NAME, VT, VW, ZIPLO, ZIPHI)                                      \
    WALLE_INLINE void NAME(VT* r) {                                                            \
        for (int round = 1; round < VW; round *= 2) {                                          \
            VT t[VW];                                                                          \
            for (int i = 0; i < VW / 2; i++) {                                                 \
                t[2 * i] = ZIPLO(r[i], r[i + VW / 2]);                                         \
                t[2 * i + 1] = ZIPHI(r[i], r[i + VW / 2]);                                     \
            }                                                                                  \
            for (int i = 0; i < VW; i++) r[i] = t[i];                                          \
        }                                                                                      \
    }
WALLE_LANES_TRANSPOSE(walle_lanes_t16, walle_v16, 16, WALLE_ZIPLO16, WALLE_ZIPHI16)
WALLE_LANES_TRANSPOSE(walle_lanes_t8, walle_v8, 8, WALLE_ZIPLO8, WALLE_ZIPHI8)
WALLE_LANES_TRANSPOSE(walle_lanes_t4, walle_v4, 4, WALLE_ZIPLO4, WALLE_ZIPHI4)

/* How many tiles ahead a tile asks for its channels' output lines (for writing): a stem's
   output (3 MiB and more) is written as VW rows of separate planes per tile, which the
   hardware prefetchers do not follow; without it SqueezeNet's stem took 1.2x the time in
   the model (ResNet-50's, 7x7 /2, 1.2x), with 4 or 16 tiles ahead about as with 8. */
#define WALLE_LANES_AHEAD 8

/* How many tiles ahead a tile asks for the input row each tap reads: a conv of tens of
   channels reads as many rows side by side (32 channels x 3 tap rows: 96), more streams
   than the hardware prefetchers follow, and in a whole model its input comes from L3 or
   memory. PP-OCRv6's detector's 32 -> 16 3x3/2 conv on 320 x 320, as the search times it:
   5.1 -> 3.6 ms at AVX2, 7.4 -> 3.3 at AVX-512 (2 tiles ahead: 3.4 and 7.0; 8: 3.9, 4.7).
   Only there: a source the L2 holds (a band of padded rows, an input the layer before has
   just written) ran 5-14% faster at AVX2 without asking (``ahead`` 0; ops_conv.pyx's
   _ahead). */
#define WALLE_LANES_PF 4

typedef struct {
    const float* x;    /* the (padded) source */
    const long* toff;  /* [taps]: each tap's offset from an output column's first tap */
    const float* w;    /* [blocks][taps][CW], CW = NC * VW channels per block, zero-padded */
    const float* bias; /* [blocks * CW] */
    float* y;          /* [N][Cout][OH][OW], rows y_row apart, planes y_plane apart */
    long taps, cout, oh, ow;
    long y_row, y_plane; /* OW and OH * OW, or a wider buffer's (conv_pool.h's bands) */
    long s_n, s_oh;    /* source strides of an image and of an output row */
    long chunk;        /* deep tiles: output positions every block of channels takes in turn */
    long ahead;        /* tiles ahead whose input rows each tap asks for (0: none) */
    float relu;
} walle_lanes;

/* acc[h * NP + p] = act(acc[h * NP + p] + the bias of vector h of channels). */
#define WALLE_LANES_BIAS_ACT(VT, IT, VW, NC, NP, acc, bias, relu)                              \
    do {                                                                                       \
        for (int h_ = 0; h_ < (NC); h_++) {                                                    \
            VT b_;                                                                             \
            memcpy(&b_, (bias) + h_ * (VW), sizeof(b_));                                       \
            for (int p_ = 0; p_ < (NP); p_++) {                                                \
                VT r_ = (acc)[h_ * (NP) + p_] + b_;                                            \
                WALLE_RELU_V(VT, IT, r_, relu);                                                \
                (acc)[h_ * (NP) + p_] = r_;                                                    \
            }                                                                                  \
        }                                                                                      \
    } while (0)

/* NC vectors of VW channels x NP columns from column j of output row (n, oh), SOW the
   source column stride. NC * NP is a multiple of VW: the sums, rows (h, p) in that order,
   are transposed VW rows at a time; lane l of a transposed group holds row l of it, so its
   lanes are VW / NP runs of the NP columns of one channel (NP is VW or VW / 2). */
#define WALLE_LANES_TILE(NAME, VT, IT, VW, NC, NP, SOW, TRANSPOSE, HIGH)                       \
    WALLE_INLINE void NAME(const walle_lanes* g, const float* restrict xr,                     \
                           const float* restrict w, const float* restrict bias,                \
                           float* restrict yr, long cvalid) {                                  \
        VT acc[NC * NP];                                                                       \
        for (int i = 0; i < NC * NP; i++) acc[i] = (VT){0};                                    \
        for (long c = 0; c < NC * VW; c++)                                                     \
            __builtin_prefetch(yr + c * g->y_plane + WALLE_LANES_AHEAD * NP, 1, 3);            \
        const long* restrict toff = g->toff;                                                   \
        for (long t = 0; t < g->taps; t++) {                                                   \
            const float* s = xr + toff[t];                                                     \
            if (g->ahead) __builtin_prefetch(s + g->ahead * NP * SOW, 0, 1);                   \
            VT wv[NC];                                                                         \
            for (int h = 0; h < NC; h++) memcpy(&wv[h], w + (t * NC + h) * VW, sizeof(VT));    \
            for (int p = 0; p < NP; p++)                                                       \
                for (int h = 0; h < NC; h++) acc[h * NP + p] += s[p * SOW] * wv[h];            \
        }                                                                                      \
        WALLE_LANES_BIAS_ACT(VT, IT, VW, NC, NP, acc, bias, g->relu);                          \
        long plane = g->y_plane;                                                               \
        for (int q = 0; q < NC * NP / VW; q++) {                                               \
            TRANSPOSE(acc + q * VW);                                                           \
            for (int c = 0; c < VW; c++) {                                                     \
                VT v = acc[q * VW + c];                                                        \
                for (int l = 0; l < VW; l += NP) {                                             \
                    int h = (q * VW + l) / NP;                                                 \
                    if (h * VW + c < cvalid)                                                   \
                        memcpy(yr + (h * VW + c) * plane, &v, NP * sizeof(float));             \
                    v = HIGH(v);                                                               \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }

/* The same sums for a conv with many taps (an input of many channels): NC vectors of
   channels x NP output positions, NC * NP accumulators filling the registers the weights and
   the broadcast leave (AVX-512 16-24 of 32, AVX2 and the baseline 12 of 16). The positions
   run along the flattened output plane (a tile may cross rows: a 7x7 or 14x14 plane wastes
   no lanes), each read through its own offset ``xo`` (any column stride), and the sums are
   stored through a scratch block one value at a time: NC * VW * NP stores, about 1-2% of a
   tile's multiply-adds where there are hundreds of taps. ``nvalid`` of the NP positions are
   stored (the others repeat the last one). */
#define WALLE_LANES_DEEP_TILE(NAME, VT, IT, VW, NC, NP)                                        \
    WALLE_INLINE void NAME(const walle_lanes* g, const float* restrict xn,                     \
                           const long* restrict xo, const float* restrict w,                   \
                           const float* restrict bias, float* restrict yn,                     \
                           const long* restrict yo, long nvalid, long cvalid, long pf) {       \
        VT acc[NC * NP];                                                                       \
        const float* xp[NP]; /* a base register per position, the tap's offset its index */    \
        for (int p = 0; p < NP; p++) xp[p] = xn + xo[p];                                       \
        for (int i = 0; i < NC * NP; i++) acc[i] = (VT){0};                                    \
        const long* restrict toff = g->toff;                                                   \
        /* unrolled: a tap's loop control and offset load had taken FMA ports' slots (AVX2, */ \
        /* 96 -> 48 3x3/2 on 24 x 160: 0.92x the time unrolled 8 times, 4 times 0.94x;     */ \
        /* AVX-512 0.97x)                                                                   */ \
        _Pragma("GCC unroll 8")                                                                \
        for (long t = 0; t < g->taps; t++) {                                                   \
            const long k = toff[t];                                                            \
            if (pf) __builtin_prefetch(xp[NP - 1] + k + pf, 0, 1);                             \
            VT wv[NC];                                                                         \
            for (int h = 0; h < NC; h++) memcpy(&wv[h], w + (t * NC + h) * VW, sizeof(VT));    \
            for (int p = 0; p < NP; p++)                                                       \
                for (int h = 0; h < NC; h++) acc[h * NP + p] += xp[p][k] * wv[h];              \
        }                                                                                      \
        WALLE_LANES_BIAS_ACT(VT, IT, VW, NC, NP, acc, bias, g->relu);                          \
        float out[NC * NP * VW] __attribute__((aligned(64)));                                  \
        memcpy(out, acc, sizeof(out));                                                         \
        long plane = g->y_plane;                                                               \
        for (long c = 0; c < cvalid; c++) {                                                    \
            const float* oc = out + (c / VW) * NP * VW + c % VW;                              \
            float* yc = yn + c * plane;                                                        \
            for (long p = 0; p < nvalid; p++) yc[yo[p]] = oc[p * VW];                          \
        }                                                                                      \
    }

/* Output rows [r0, r1) of r = n * OH + oh with the deep tiles: per image, per chunk of
   ``chunk`` positions (their input rows stay in L2 while every block of channels reads
   them), per block of channels, the chunk's positions NP at a time. */
#define WALLE_LANES_DEEP_ROWS(NAME, ATTR, VW, NC, NP, TILE)                                    \
    ATTR static void NAME(const walle_lanes* g, long sow, long r0, long r1) {                  \
        const long cw = NC * VW, blocks = (g->cout + cw - 1) / cw, ow = g->ow;                 \
        const long pf = g->ahead * NP * sow; /* the input a few tiles ahead */                 \
        for (long n = r0 / g->oh; n * g->oh < r1; n++) {                                       \
            long lo = (r0 > n * g->oh ? r0 - n * g->oh : 0) * ow;                              \
            long hi = ((r1 < (n + 1) * g->oh ? r1 : (n + 1) * g->oh) - n * g->oh) * ow;        \
            const float* xn = g->x + n * g->s_n;                                               \
            for (long c0 = lo; c0 < hi; c0 += g->chunk) {                                      \
                long c1 = c0 + g->chunk < hi ? c0 + g->chunk : hi;                             \
                for (long cb = 0; cb < blocks; cb++) {                                         \
                    const float* w = g->w + cb * g->taps * cw;                                 \
                    const float* bias = g->bias + cb * cw;                                     \
                    float* yn = g->y + (n * g->cout + cb * cw) * g->y_plane;                   \
                    long cvalid = g->cout - cb * cw < cw ? g->cout - cb * cw : cw;             \
                    for (long p0 = c0; p0 < c1; p0 += NP) {                                    \
                        long xo[NP], yo[NP];                                                   \
                        for (int i = 0; i < NP; i++) {                                         \
                            long p = p0 + i < c1 ? p0 + i : c1 - 1;                            \
                            long row = p / ow, col = p % ow;                                   \
                            xo[i] = row * g->s_oh + col * sow;                                 \
                            yo[i] = row * g->y_row + col;                                      \
                        }                                                                      \
                        long nvalid = c1 - p0 < NP ? c1 - p0 : NP;                             \
                        TILE(g, xn, xo, w, bias, yn, yo, nvalid, cvalid, pf);                  \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }

/* Output rows [r0, r1) of r = n * OH + oh, every block of channels, with the tiles T1 .. T4
   (source column stride 1 to 4). */
#define WALLE_LANES_ROWS(NAME, ATTR, VW, NC, NP, T1, T2, T3, T4)                               \
    ATTR static void NAME(const walle_lanes* g, long sow, long r0, long r1) {                  \
        const long cw = NC * VW, blocks = (g->cout + cw - 1) / cw, plane = g->y_plane;         \
        for (long r = r0; r < r1; r++) {                                                       \
            long n = r / g->oh, oh = r % g->oh;                                                \
            const float* xr = g->x + n * g->s_n + oh * g->s_oh;                                \
            for (long cb = 0; cb < blocks; cb++) {                                             \
                const float* w = g->w + cb * g->taps * cw;                                     \
                const float* bias = g->bias + cb * cw;                                         \
                float* yr = g->y + (n * g->cout + cb * cw) * plane + oh * g->y_row;            \
                long cvalid = g->cout - cb * cw < cw ? g->cout - cb * cw : cw;                 \
                for (long j = 0; j < g->ow; j += NP) {                                         \
                    long j0 = j + NP <= g->ow ? j : g->ow - NP; /* the last: shifted back */   \
                    const float* s = xr + j0 * sow;                                            \
                    if (sow == 1) T1(g, s, w, bias, yr + j0, cvalid);                          \
                    else if (sow == 2) T2(g, s, w, bias, yr + j0, cvalid);                     \
                    else if (sow == 3) T3(g, s, w, bias, yr + j0, cvalid);                     \
                    else T4(g, s, w, bias, yr + j0, cvalid);                                   \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }

#define WALLE_LANES_LEVEL(PREFIX, ATTR, VT, IT, VW, NC, NP, TRANSPOSE, HIGH)                   \
    WALLE_LANES_TILE(PREFIX##_s1, VT, IT, VW, NC, NP, 1, TRANSPOSE, HIGH)                      \
    WALLE_LANES_TILE(PREFIX##_s2, VT, IT, VW, NC, NP, 2, TRANSPOSE, HIGH)                      \
    WALLE_LANES_TILE(PREFIX##_s3, VT, IT, VW, NC, NP, 3, TRANSPOSE, HIGH)                      \
    WALLE_LANES_TILE(PREFIX##_s4, VT, IT, VW, NC, NP, 4, TRANSPOSE, HIGH)                      \
    WALLE_LANES_ROWS(PREFIX##_rows, ATTR, VW, NC, NP, PREFIX##_s1, PREFIX##_s2, PREFIX##_s3,   \
                     PREFIX##_s4)

#define WALLE_LANES_DEEP_LEVEL(PREFIX, ATTR, VT, IT, VW, NC, NP)                                \
    WALLE_LANES_DEEP_TILE(PREFIX##_tile, VT, IT, VW, NC, NP)                                   \
    WALLE_LANES_DEEP_ROWS(PREFIX##_rows, ATTR, VW, NC, NP, PREFIX##_tile)

WALLE_LANES_LEVEL(walle_lanes_avx512, WALLE_LEVEL_TARGET("avx512f,avx2,fma"), walle_v16,
                  walle_i16, 16, 1, 16, walle_lanes_t16, WALLE_HIGH16)
WALLE_LANES_LEVEL(walle_lanes_avx512w, WALLE_LEVEL_TARGET("avx512f,avx2,fma"), walle_v16,
                  walle_i16, 16, 2, 8, walle_lanes_t16, WALLE_HIGH16)
WALLE_LANES_LEVEL(walle_lanes_avx2, WALLE_LEVEL_TARGET("avx2,fma"), walle_v8, walle_i8, 8, 2, 4,
                  walle_lanes_t8, WALLE_HIGH8)
WALLE_LANES_LEVEL(walle_lanes_base, , walle_v4, walle_i4, 4, 2, 4, walle_lanes_t4, WALLE_HIGH4)

WALLE_LANES_DEEP_LEVEL(walle_lanes_avx512d2, WALLE_LEVEL_TARGET("avx512f,avx2,fma"), walle_v16,
                       walle_i16, 16, 2, 8)
WALLE_LANES_DEEP_LEVEL(walle_lanes_avx512d3, WALLE_LEVEL_TARGET("avx512f,avx2,fma"), walle_v16,
                       walle_i16, 16, 3, 8)
WALLE_LANES_DEEP_LEVEL(walle_lanes_avx512d4, WALLE_LEVEL_TARGET("avx512f,avx2,fma"), walle_v16,
                       walle_i16, 16, 4, 6)
WALLE_LANES_DEEP_LEVEL(walle_lanes_avx2d2, WALLE_LEVEL_TARGET("avx2,fma"), walle_v8, walle_i8, 8,
                       2, 6)
WALLE_LANES_DEEP_LEVEL(walle_lanes_based2, , walle_v4, walle_i4, 4, 2, 6)

/* A tile's shape (``form``): WALLE_LANES_NARROW (AVX-512 16 channels x 16 columns, AVX2 16 x
   4, the baseline 8 x 4), WALLE_LANES_WIDE (AVX-512 32 x 8; elsewhere narrow) or
   WALLE_LANES_DEEP2..4 (NC = 2..4 vectors of channels, the deep tiles above; 4 at AVX-512
   only, 3 elsewhere). */
#define WALLE_LANES_NARROW 0
#define WALLE_LANES_WIDE 1
#define WALLE_LANES_DEEP2 2
#define WALLE_LANES_DEEP3 3
#define WALLE_LANES_DEEP4 4

/* The form a level runs for ``form`` (a deep tile of 4 vectors is AVX-512's only). */
static int walle_lanes_form(int level, int form) {
    if (WALLE_LEVEL(level) == 2) return form;
    if (form == WALLE_LANES_WIDE) return WALLE_LANES_NARROW;
    return form >= WALLE_LANES_DEEP2 ? WALLE_LANES_DEEP2 : form;
}

/* Channels per block at a level (2 AVX-512, 1 AVX2, 0 the baseline) and form. */
static long walle_lanes_block(int level, int form) {
    long vw = level == 2 ? 16 : level == 1 ? 8 : 4;
    form = walle_lanes_form(level, form);
    if (form >= WALLE_LANES_DEEP2) return form * vw;
    return level == 2 ? (form == WALLE_LANES_WIDE ? 32 : 16) : level == 1 ? 16 : 8;
}

/* Output columns per tile at a level and form (rows narrower than this are not taken). */
static long walle_lanes_columns(int level, int form) {
    form = walle_lanes_form(level, form);
    if (form >= WALLE_LANES_DEEP2)
        return level == 2 ? (form == WALLE_LANES_DEEP4 ? 6 : 8) : 6;
    return level == 2 ? (form == WALLE_LANES_WIDE ? 8 : 16) : 4;
}

/* Output rows [r0, r1) at ``level`` and ``form``, source column stride ``sow`` (1 to 4). */
static void walle_lanes_run(const walle_lanes* g, int level, int form, long sow, long r0,
                            long r1) {
    int lv = WALLE_LEVEL(level);
    form = walle_lanes_form(level, form);
    if (lv == 2) {
        switch (form) {
        case WALLE_LANES_WIDE: walle_lanes_avx512w_rows(g, sow, r0, r1); return;
        case WALLE_LANES_DEEP2: walle_lanes_avx512d2_rows(g, sow, r0, r1); return;
        case WALLE_LANES_DEEP3: walle_lanes_avx512d3_rows(g, sow, r0, r1); return;
        case WALLE_LANES_DEEP4: walle_lanes_avx512d4_rows(g, sow, r0, r1); return;
        default: walle_lanes_avx512_rows(g, sow, r0, r1); return;
        }
    }
    if (lv == 1) {
        switch (form) {
        case WALLE_LANES_DEEP2: walle_lanes_avx2d2_rows(g, sow, r0, r1); return;
        default: walle_lanes_avx2_rows(g, sow, r0, r1); return;
        }
    }
    switch (form) {
    case WALLE_LANES_DEEP2: walle_lanes_based2_rows(g, sow, r0, r1); return;
    default: walle_lanes_base_rows(g, sow, r0, r1); return;
    }
}

/* A conv whose zero pad has not been written: its unpadded source [N][C][H][W] placed at
   (top, left) of planes of HP x WP, read in bands of ``band`` output rows, each band's
   padded input rows (every channel's) first copied into ``scratch`` (C x ``rows`` x WP
   floats: a few hundred KiB, in L2 while the tiles read it). Without it the pad was a pass
   of its own, whose padded copy the conv then read back from L3 or memory: PP-OCRv6's
   detector's 32 -> 16 3x3/2 conv on 320 x 320 reads 13 MB. */
typedef struct {
    const float* src;      /* [N][C][H][W] */
    const long* toff;      /* [taps]: tap offsets in the scratch's layout (channels rows x WP) */
    long c, h, w, top, left, wp;
    long sh, kext;         /* output rows' input row stride; input rows one output row spans */
    long band, rows;       /* output rows a band; the scratch's rows a channel */
} walle_lanes_pad;

/* Output rows [r0, r1) of r = n * OH + oh, as walle_lanes_run, from the unpadded source. */
static void walle_lanes_padded_run(const walle_lanes* g, const walle_lanes_pad* p, int level,
                                   int form, long sow, long r0, long r1, float* scratch) {
    const long wp = p->wp, w = p->w, right = wp - p->left - w;
    for (long r = r0; r < r1;) {
        const long n = r / g->oh, oh0 = r % g->oh;
        long b = p->band;
        if (b > g->oh - oh0) b = g->oh - oh0;
        if (b > r1 - r) b = r1 - r;
        const long first = oh0 * p->sh - p->top, rows = (b - 1) * p->sh + p->kext;
        for (long c = 0; c < p->c; c++) {
            const float* plane = p->src + (n * p->c + c) * p->h * w;
            for (long q = 0; q < rows; q++) {
                float* d = scratch + (c * p->rows + q) * wp;
                const long sr = first + q;
                if (sr < 0 || sr >= p->h) {
                    memset(d, 0, (size_t)wp * sizeof(float));
                    continue;
                }
                memset(d, 0, (size_t)p->left * sizeof(float));
                memcpy(d + p->left, plane + sr * w, (size_t)w * sizeof(float));
                memset(d + p->left + w, 0, (size_t)right * sizeof(float));
            }
        }
        walle_lanes band = *g;
        band.x = scratch;
        band.toff = p->toff;
        band.s_n = 0;
        band.oh = b;
        band.y = g->y + n * g->cout * g->y_plane + oh0 * g->y_row;
        band.chunk = b * g->ow;
        band.ahead = 0; /* the scratch's rows are in L2 */
        walle_lanes_run(&band, level, form, sow, 0, b);
        r += b;
    }
}

/* The padded source [images][C][HP][WP] (its border already zero) from the unpadded one. */
static void walle_lanes_pad_copy(const walle_lanes_pad* p, long images, long hp, float* dst) {
    for (long i = 0; i < images * p->c; i++)
        for (long q = 0; q < p->h; q++)
            memcpy(dst + (i * hp + p->top + q) * p->wp + p->left, p->src + (i * p->h + q) * p->w,
                   (size_t)p->w * sizeof(float));
}

#endif

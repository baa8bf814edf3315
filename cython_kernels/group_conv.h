/* Grouped and depthwise 2-D convolution, bias and ReLU fused (ops_group.pyx's kernel).

   The input is read through an im2col region (sizes N, C, KH, KW, OH, OW; element strides
   s_n, s_c, s_kh, s_kw, s_oh, s_ow from x) and the output y is NCHW, contiguous. Channels
   split into `groups` groups of `cin` inputs and `cout` outputs each.

   - block mode (cin > 1): per output row (n, g, oh), register tiles of 8 output channels x
     NV vectors of columns, accumulated over (ci, kh, kw): ops_conv's tiles, per group. Column
     tiles are the outer loop, channel blocks the inner one, so the input run of one tile stays
     in L1 while every block reads it. The last columns of a row are a tile shifted back to end
     at the row's end (it recomputes a few columns, identically) when the row is a vector wide.
   - depthwise mode (cin == 1): one output channel at a time. At stride 1 its plane is one
     flat run of positions p = oh * R + ow (R = s_oh, the padded input's row pitch), so short
     rows (7, 14, 28 wide) do not leave vector lanes idle; the R - OW positions between rows
     are computed into a scratch plane and dropped when the rows are copied out. At stride 2
     each output row loads two vectors of input per tap row and splits even and odd lanes.

   Each mode is compiled once per instruction-set level with its own vector width (AVX-512:
   16 floats, AVX2: 8, baseline SSE: 4), as in ops_conv. ReLU keeps NaN; reads never leave
   the region's addresses. */
#include <string.h>

#include "conv_tile.h"
#include "cpu_level.h"

#define WALLE_GCB WALLE_CB
#define WALLE_GINLINE static inline __attribute__((always_inline))

typedef float walle_g16 __attribute__((vector_size(64)));
typedef int walle_gi16 __attribute__((vector_size(64)));
typedef float walle_g8 __attribute__((vector_size(32)));
typedef int walle_gi8 __attribute__((vector_size(32)));
typedef float walle_g4 __attribute__((vector_size(16)));
typedef int walle_gi4 __attribute__((vector_size(16)));
typedef float walle_g2 __attribute__((vector_size(8)));
typedef int walle_gi2 __attribute__((vector_size(8)));


typedef struct {
    const float* x;    /* at the region's source offset */
    const float* w;    /* block: [G][blocks][cin*KH*KW][8]; depthwise: [G*cout][KH*KW] */
    const float* bias; /* block: [G][blocks * 8]; depthwise: [G*cout] (zeros if none) */
    float* y;          /* [N][G*cout][OH][OW] */
    long n, kh, kw, oh, ow;
    long s_n, s_c, s_kh, s_kw, s_oh, s_ow;
    long groups, cin, cout, blocks;
    float relu;
    /* Depthwise only, `base` not NULL: x is the unpadded source, plane (n, g) has `ih` rows of
       `iw` floats at x + base[n * groups + g] + r * irs; it is copied into a zero-bordered
       scratch plane [hp][wp] at (top, left), which the region (offset `off`) then reads. */
    const long* base;
    long ih, iw, irs, top, left, hp, wp, off;
} walle_gconv;

/* y = act(acc + bias), stored to VW floats at d. */
#define WALLE_GSTORE(VT, IT, d, acc, b, relu)                                  \
    do {                                                                       \
        VT r_ = (acc) + (b);                                                   \
        WALLE_RELU_V(VT, IT, r_, relu);                                        \
        memcpy((d), &r_, sizeof(VT));                                          \
    } while (0)

/* --- block mode: ops_conv's register tiles (conv_tile.h), per group ------------------- */

/* Every channel block of one column tile starting at column j. */
#define WALLE_GBLOCKS(TILE, j)                                                              \
    for (long cb = 0; cb < p->blocks; cb++) {                                               \
        long cvalid = p->cout - cb * WALLE_GCB < WALLE_GCB ? p->cout - cb * WALLE_GCB       \
                                                           : WALLE_GCB;                     \
        TILE(xr + (j), wg + cb * wblock, bg + cb * WALLE_GCB, yr + cb * WALLE_GCB * plane + (j), \
             p->cin, p->kh, p->kw, p->s_c, p->s_kh, p->s_kw, plane, cvalid, p->relu);       \
    }

/* Rows [i0, i1) of i = (n * groups + g) * OH + oh, at one level (VW floats a vector). */
#define WALLE_GBLOCK_ROWS(NAME, ATTR, T3, W3, T2, T1, TH, TQ, VW)                           \
    ATTR static void NAME(const walle_gconv* p, long i0, long i1) {                         \
        long plane = p->oh * p->ow, ow = p->ow;                                             \
        long wblock = p->cin * p->kh * p->kw * WALLE_GCB;                                   \
        for (long i = i0; i < i1; i++) {                                                    \
            long oh = i % p->oh, g = (i / p->oh) % p->groups, n = i / (p->oh * p->groups);  \
            const float* xr = p->x + n * p->s_n + g * p->cin * p->s_c + oh * p->s_oh;       \
            float* yr = p->y + (n * p->groups + g) * p->cout * plane + oh * ow;             \
            const float* wg = p->w + g * p->blocks * wblock;                                \
            const float* bg = p->bias + g * p->blocks * WALLE_GCB;                          \
            /* a group's first row asks for the next group's weights (the first row of the  \
               range for its own too): in a model they come from memory, and ShuffleNet's   \
               grouped 1x1 convs (one flattened row per group) met them at its latency:      \
               0.81-0.92x the time inside the model, interleaved with onnxruntime, the      \
               whole model 0.97-0.99x (a few 7x7 and 14x14 ones 1.05-1.08x) */              \
            long pf0 = i == i0 ? g : g + 1, pf1 = g + 2 < p->groups ? g + 2 : p->groups;    \
            if ((oh == 0 || i == i0) && pf0 < pf1)                                          \
                walle_prefetch_floats(p->w + pf0 * p->blocks * wblock,                      \
                                      (pf1 - pf0) * p->blocks * wblock);                    \
            long j = 0;                                                                     \
            if (p->s_ow == 1 && ow >= VW) {                                                 \
                for (; W3 && j + W3 <= ow; j += W3) WALLE_GBLOCKS(T3, j)                    \
                for (; j + 2 * VW <= ow; j += 2 * VW) WALLE_GBLOCKS(T2, j)                  \
                for (; j + VW <= ow; j += VW) WALLE_GBLOCKS(T1, j)                          \
                if (j < ow) WALLE_GBLOCKS(T1, ow - VW) /* shifted back: overlaps */         \
                continue;                                                                   \
            }                                                                               \
            if (p->s_ow == 1) {                                                             \
                if (j + VW / 2 <= ow) { WALLE_GBLOCKS(TH, j) j += VW / 2; }                 \
                if (VW >= 8 && j + VW / 4 <= ow) { WALLE_GBLOCKS(TQ, j) j += VW / 4; }      \
            }                                                                               \
            for (; j < ow; j += 16) {                                                       \
                long width = ow - j < 16 ? ow - j : 16;                                     \
                for (long cb = 0; cb < p->blocks; cb++) {                                   \
                    long cvalid = p->cout - cb * WALLE_GCB < WALLE_GCB                      \
                                      ? p->cout - cb * WALLE_GCB : WALLE_GCB;               \
                    walle_conv_tile_any(xr + j * p->s_ow, wg + cb * wblock, bg + cb * WALLE_GCB, \
                                    yr + cb * WALLE_GCB * plane + j, p->cin, p->kh, p->kw,  \
                                    p->s_c, p->s_kh, p->s_kw, p->s_ow, plane, cvalid, width, \
                                    p->relu);                                               \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
    }

/* --- depthwise mode ------------------------------------------------------------------- */

/* VW*NV consecutive positions: y[t] = act(bias + sum w[a, b] x[t + a s_kh + b s_kw]). */
#define WALLE_DWTILE(NAME, VT, IT, VW, NV)                                                  \
    WALLE_GINLINE void NAME(const float* restrict x, const float* restrict w, float bias,   \
                            float* restrict y, long kh, long kw, long s_kh, long s_kw,      \
                            float relu) {                                                     \
        VT acc[NV];                                                                         \
        for (int q = 0; q < NV; q++) acc[q] = (VT){0};                                      \
        for (long a = 0; a < kh; a++)                                                       \
            for (long b = 0; b < kw; b++) {                                                 \
                const float* s = x + a * s_kh + b * s_kw;                                   \
                float wv = w[a * kw + b];                                                   \
                for (int q = 0; q < NV; q++) {                                              \
                    VT v;                                                                   \
                    memcpy(&v, s + VW * q, sizeof(VT));                                     \
                    acc[q] += wv * v;                                                       \
                }                                                                           \
            }                                                                               \
        for (int q = 0; q < NV; q++) WALLE_GSTORE(VT, IT, y + VW * q, acc[q], bias, relu);  \
    }
WALLE_DWTILE(walle_dw_16x8, walle_g16, walle_gi16, 16, 8)
WALLE_DWTILE(walle_dw_16x4, walle_g16, walle_gi16, 16, 4)
WALLE_DWTILE(walle_dw_16x1, walle_g16, walle_gi16, 16, 1)
WALLE_DWTILE(walle_dw_8x8, walle_g8, walle_gi8, 8, 8)
WALLE_DWTILE(walle_dw_8x4, walle_g8, walle_gi8, 8, 4)
WALLE_DWTILE(walle_dw_8x1, walle_g8, walle_gi8, 8, 1)
WALLE_DWTILE(walle_dw_4x8, walle_g4, walle_gi4, 4, 8)
WALLE_DWTILE(walle_dw_4x4, walle_g4, walle_gi4, 4, 4)
WALLE_DWTILE(walle_dw_4x1, walle_g4, walle_gi4, 4, 1)

/* K x K stride 1 (K 3 or 5), NV output vectors one row pitch apart (positions t + q * pitch,
   q < NV): the NV + K - 1 input rows under them are loaded once at column shifts 0 .. K - 1
   and each load feeds the up to K output rows it is a tap of: K (NV + K - 1) loads per
   K^2 NV multiply-adds, where a vector of WALLE_DWTILE loads for each of its taps
   (load-bound: 16 x 14 x 14 planes ran at ~140 ns a channel at 3x3; PP-LCNet's 5x5 planes
   of 14 x 14 and 7 x 7 1.4-2x onnxruntime's time). Every position sums its taps in the same
   order (rows a = 0..K-1, columns b = 0..K-1), WALLE_DWTILE's, whichever tile computes it,
   so tiles that overlap write the same bits. */
#define WALLE_DWKV(NAME, VT, IT, NV, K)                                                     \
    WALLE_GINLINE void NAME(const float* restrict x, const float* restrict w, float bias,   \
                            float* restrict y, long pitch, long ypitch, float relu) {         \
        VT acc[NV];                                                                         \
        for (int q = 0; q < NV; q++) acc[q] = (VT){0};                                      \
        _Pragma("GCC unroll 10") /* constant indexes: acc stays in registers */             \
        for (int u = 0; u < NV + K - 1; u++) {                                              \
            VT v[K];                                                                        \
            _Pragma("GCC unroll 5")                                                         \
            for (int b = 0; b < K; b++) memcpy(&v[b], x + u * pitch + b, sizeof(VT));       \
            _Pragma("GCC unroll 5")                                                         \
            for (int a = K - 1; a >= 0; a--) { /* output row u - a: its tap row a */        \
                int q = u - a;                                                              \
                if (q < 0 || q >= NV) continue;                                             \
                _Pragma("GCC unroll 5")                                                     \
                for (int b = 0; b < K; b++) acc[q] += w[K * a + b] * v[b];                  \
            }                                                                               \
        }                                                                                   \
        for (int q = 0; q < NV; q++) /* in row order: see WALLE_DW3_PICK */                 \
            WALLE_GSTORE(VT, IT, y + q * ypitch, acc[q], bias, relu);                       \
    }
#define WALLE_DW3V(NAME, VT, IT, NV) WALLE_DWKV(NAME, VT, IT, NV, 3)
WALLE_DW3V(walle_dw3_16x6, walle_g16, walle_gi16, 6)
WALLE_DW3V(walle_dw3_16x2, walle_g16, walle_gi16, 2)
WALLE_DW3V(walle_dw3_16x1, walle_g16, walle_gi16, 1)
WALLE_DW3V(walle_dw3_8x6, walle_g8, walle_gi8, 6)
WALLE_DW3V(walle_dw3_8x4, walle_g8, walle_gi8, 4)
WALLE_DW3V(walle_dw3_8x2, walle_g8, walle_gi8, 2)
WALLE_DW3V(walle_dw3_8x1, walle_g8, walle_gi8, 1)
WALLE_DW3V(walle_dw3_4x6, walle_g4, walle_gi4, 6)
WALLE_DW3V(walle_dw3_4x4, walle_g4, walle_gi4, 4)
WALLE_DW3V(walle_dw3_4x2, walle_g4, walle_gi4, 2)
WALLE_DW3V(walle_dw3_4x1, walle_g4, walle_gi4, 1)
WALLE_DWKV(walle_dw5_16x4, walle_g16, walle_gi16, 4, 5)
WALLE_DWKV(walle_dw5_16x2, walle_g16, walle_gi16, 2, 5)
WALLE_DWKV(walle_dw5_16x1, walle_g16, walle_gi16, 1, 5)
WALLE_DWKV(walle_dw5_8x4, walle_g8, walle_gi8, 4, 5)
WALLE_DWKV(walle_dw5_8x2, walle_g8, walle_gi8, 2, 5)
WALLE_DWKV(walle_dw5_8x1, walle_g8, walle_gi8, 1, 5)
WALLE_DWKV(walle_dw5_4x4, walle_g4, walle_gi4, 4, 5)
WALLE_DWKV(walle_dw5_4x2, walle_g4, walle_gi4, 2, 5)
WALLE_DWKV(walle_dw5_4x1, walle_g4, walle_gi4, 1, 5)

/* The flat run of an oh x ow plane at row pitch `pitch` (3x3, stride 1) in bands of NV rows
   of WALLE_DW3V tiles VW wide: columns 0, VW, ... and one shifted back to end at ow; where
   ow <= VW one vector a row, whose lanes past ow compute the run's next positions (the
   caller leaves VW floats of slack past the input plane and the output run). */
#define WALLE_DW3_PLANE(NAME, VW, NV, TN, T2, T1)                                           \
    WALLE_GINLINE void NAME(const float* restrict x, const float* restrict w, float bias,   \
                            float* restrict y, long oh, long ow, long pitch, long ypitch,   \
                            float relu) {                                                     \
        long r = 0, last = ow > VW ? ow - VW : 0;                                           \
        for (; r + NV <= oh; r += NV)                                                       \
            for (long j = 0;; j = j + VW < last ? j + VW : last) {                          \
                TN(x + r * pitch + j, w, bias, y + r * ypitch + j, pitch, ypitch, relu);    \
                if (j == last) break;                                                       \
            }                                                                               \
        for (; r + 2 <= oh; r += 2)                                                         \
            for (long j = 0;; j = j + VW < last ? j + VW : last) {                          \
                T2(x + r * pitch + j, w, bias, y + r * ypitch + j, pitch, ypitch, relu);    \
                if (j == last) break;                                                       \
            }                                                                               \
        for (; r < oh; r++)                                                                 \
            for (long j = 0;; j = j + VW < last ? j + VW : last) {                          \
                T1(x + r * pitch + j, w, bias, y + r * ypitch + j, pitch, ypitch, relu);    \
                if (j == last) break;                                                       \
            }                                                                               \
    }
WALLE_DW3_PLANE(walle_dw3_plane16, 16, 6, walle_dw3_16x6, walle_dw3_16x2, walle_dw3_16x1)
WALLE_DW3_PLANE(walle_dw3_plane8w, 8, 6, walle_dw3_8x6, walle_dw3_8x2, walle_dw3_8x1)
WALLE_DW3_PLANE(walle_dw3_plane4w, 4, 6, walle_dw3_4x6, walle_dw3_4x2, walle_dw3_4x1)
WALLE_DW3_PLANE(walle_dw3_plane8, 8, 4, walle_dw3_8x4, walle_dw3_8x2, walle_dw3_8x1)
WALLE_DW3_PLANE(walle_dw3_plane4, 4, 4, walle_dw3_4x4, walle_dw3_4x2, walle_dw3_4x1)
WALLE_DW3_PLANE(walle_dw5_plane16, 16, 4, walle_dw5_16x4, walle_dw5_16x2, walle_dw5_16x1)
WALLE_DW3_PLANE(walle_dw5_plane8, 8, 4, walle_dw5_8x4, walle_dw5_8x2, walle_dw5_8x1)
WALLE_DW3_PLANE(walle_dw5_plane4, 4, 4, walle_dw5_4x4, walle_dw5_4x2, walle_dw5_4x1)

/* The 3x3 stride-1 plane at a vector width for its row: with slack, the narrowest of 4, 8,
   16 (up to the level's VW) that holds a row (one vector a row), else the widest that fits
   in one. Rows go straight to y (returns 2) unless a vector is wider than a row and spills
   past the plane by more than `room` floats, those of the planes the caller computes after
   this one (returns 1: the flat run went to `run`, rows `pitch` apart, for the caller to copy
   out): a wider vector spills into the next rows of y, which the tiles store later (bands
   and rows in order), and past the last row into the next planes, which the caller writes
   later. 0 when the row is under 4 wide and there is no slack (the caller's tiles then). */
#define WALLE_DW3_PICK(NAME, VW, P16, P8, P4)                                               \
    WALLE_GINLINE int NAME(const float* restrict x, const float* restrict w, float bias,    \
                           float* restrict y, float* restrict run, long oh, long ow,        \
                           long pitch, float relu, int slack, long room) {                    \
        long v = slack ? (ow <= 4 ? 4 : ow <= 8 ? 8 : 16)                                   \
                       : (ow >= 16 ? 16 : ow >= 8 ? 8 : ow >= 4 ? 4 : 0);                   \
        if (v > VW) v = VW;                                                                 \
        if (v == 0) return 0;                                                               \
        int direct = v - ow <= room; /* the last row's vector ends v - ow past the plane */ \
        float* d = direct ? y : run;                                                        \
        long dp = direct ? ow : pitch;                                                      \
        if (v == 16) P16(x, w, bias, d, oh, ow, pitch, dp, relu);                           \
        else if (v == 8) P8(x, w, bias, d, oh, ow, pitch, dp, relu);                        \
        else P4(x, w, bias, d, oh, ow, pitch, dp, relu);                                    \
        return direct ? 2 : 1;                                                              \
    }
WALLE_DW3_PICK(walle_dw3_avx512, 16, walle_dw3_plane16, walle_dw3_plane8w, walle_dw3_plane4w)
WALLE_DW3_PICK(walle_dw3_avx2, 8, walle_dw3_plane8, walle_dw3_plane8, walle_dw3_plane4)
WALLE_DW3_PICK(walle_dw3_base, 4, walle_dw3_plane4, walle_dw3_plane4, walle_dw3_plane4)
WALLE_DW3_PICK(walle_dw5_avx512, 16, walle_dw5_plane16, walle_dw5_plane8, walle_dw5_plane4)
WALLE_DW3_PICK(walle_dw5_avx2, 8, walle_dw5_plane8, walle_dw5_plane8, walle_dw5_plane4)
WALLE_DW3_PICK(walle_dw5_base, 4, walle_dw5_plane4, walle_dw5_plane4, walle_dw5_plane4)

/* VW outputs of a stride-2 row (column stride 1 between taps): for each tap row, two vectors
   of input split into even lanes (tap 0) and odd lanes read one float on (taps b >= 1), in
   the order of in-lane picks (WALLE_PAIR_EVEN/ODD: the outputs put in order once, before
   the store). The loads stay inside the window's addresses: the first ends at tap 1's last
   column. */
#define WALLE_DWTILE_S2(NAME, VT, IT, VW)                                                   \
    WALLE_GINLINE void NAME(const float* restrict x, const float* restrict w, float bias,   \
                            float* restrict y, long kh, long kw, long s_kh, float relu) {     \
        VT acc = (VT){0}, lo, hi;                                                           \
        for (long a = 0; a < kh; a++) {                                                     \
            const float* s = x + a * s_kh;                                                  \
            memcpy(&lo, s, sizeof(VT));                                                     \
            memcpy(&hi, s + VW, sizeof(VT));                                                \
            acc += w[a * kw] * (VT)WALLE_PAIR_EVEN##VW(lo, hi);                             \
            for (long b = 1; b < kw; b++) {                                                 \
                memcpy(&lo, s + b - 1, sizeof(VT));                                         \
                memcpy(&hi, s + b - 1 + VW, sizeof(VT));                                    \
                acc += w[a * kw + b] * (VT)WALLE_PAIR_ODD##VW(lo, hi);                      \
            }                                                                               \
        }                                                                                   \
        acc = (VT)WALLE_PAIR_ORDER##VW(acc);                                                \
        WALLE_GSTORE(VT, IT, y, acc, bias, relu);                                           \
    }
WALLE_DWTILE_S2(walle_dws2_16, walle_g16, walle_gi16, 16)
WALLE_DWTILE_S2(walle_dws2_8, walle_g8, walle_gi8, 8)
WALLE_DWTILE_S2(walle_dws2_4, walle_g4, walle_gi4, 4)

/* Input row u of a stride-2 band (its columns for taps 0, 1 and 2: e, o1, o2) into the
   one or two of the band's NV output rows it is a tap row of. */
#define WALLE_DW3S2_TAPS(acc, NV, u, w, e, o1, o2)                                          \
    do {                                                                                    \
        _Pragma("GCC unroll 3")                                                             \
        for (int a = 2; a >= 0; a--) { /* output row (u - a) / 2: its tap row a */          \
            int q = (u - a) / 2;                                                            \
            if ((u) < a || ((u) - a) % 2 || q >= (NV)) continue;                            \
            acc[q] += (w)[3 * a] * (e);                                                     \
            acc[q] += (w)[3 * a + 1] * (o1);                                                \
            acc[q] += (w)[3 * a + 2] * (o2);                                                \
        }                                                                                   \
    } while (0)

/* 3x3 stride 2 (tap rows s_kh apart, output rows 2 s_kh), NV output rows of VW outputs at
   once: each of the 2 NV + 1 input rows under them is loaded once (columns 0 and 1 on, two
   vectors each), split into even lanes (tap 0), odd lanes (tap 1) and odd lanes one on (tap
   2), and fed to the one or two output rows it is a tap row of; NV accumulators, where
   WALLE_DWTILE_S2's one chained its 9 multiply-adds. Loads end at the window's last
   column, as there. The lanes are picked in the order of in-lane picks (WALLE_PAIR_EVEN/ODD)
   and each output row put in order once, before its store: at AVX2 one vshufps a split
   where the in-order picks took three instructions, and those shuffles, not the
   multiply-adds, had set the pace (MobileNetV2's 3x3/2 convs had taken 2-2.4x onnxruntime's
   time on a Zen 3). Until then AVX2 split wide rows (48 floats and up) into even and odd
   columns as it copied them, so that the tiles' taps were plain loads; picked in lanes, the
   tiles on rows as they lie took 0.83-0.95x that time (a C driver over this header, the
   builds interleaved, one core of a Zen 4: 32 x 112 x 112 -> 56 x 56 77 -> 65 us,
   96 x 112 x 112 241 -> 209, 64 x 56 x 56 40.5 -> 37.8, 144 x 56 x 56 87.5 -> 83.3,
   16 x 224 x 224 162 -> 145; on 128 x 28 x 28, never split, 24.9 -> 21.7). The same sums
   in the same order: the same bits. */
#define WALLE_DW3S2V(NAME, VT, IT, VW, NV)                                                   \
    WALLE_GINLINE void NAME(const float* restrict x, const float* restrict w, float bias,   \
                            float* restrict y, long s_kh, long ypitch, float relu) {          \
        VT acc[NV];                                                                         \
        for (int q = 0; q < NV; q++) acc[q] = (VT){0};                                      \
        _Pragma("GCC unroll 16")                                                            \
        for (int u = 0; u < 2 * NV + 1; u++) {                                              \
            const float* s = x + u * s_kh;                                                  \
            VT lo, hi, e, o1, o2;                                                           \
            memcpy(&lo, s, sizeof(VT));                                                     \
            memcpy(&hi, s + VW, sizeof(VT));                                                \
            e = (VT)WALLE_PAIR_EVEN##VW(lo, hi);                                            \
            o1 = (VT)WALLE_PAIR_ODD##VW(lo, hi);                                            \
            memcpy(&lo, s + 1, sizeof(VT));                                                 \
            memcpy(&hi, s + 1 + VW, sizeof(VT));                                            \
            o2 = (VT)WALLE_PAIR_ODD##VW(lo, hi);                                            \
            WALLE_DW3S2_TAPS(acc, NV, u, w, e, o1, o2);                                     \
        }                                                                                   \
        for (int q = 0; q < NV; q++) {                                                      \
            acc[q] = (VT)WALLE_PAIR_ORDER##VW(acc[q]);                                      \
            WALLE_GSTORE(VT, IT, y + q * ypitch, acc[q], bias, relu);                       \
        }                                                                                   \
    }
WALLE_DW3S2V(walle_dw3s2_16x4, walle_g16, walle_gi16, 16, 4)
WALLE_DW3S2V(walle_dw3s2_16x1, walle_g16, walle_gi16, 16, 1)
WALLE_DW3S2V(walle_dw3s2_8x4, walle_g8, walle_gi8, 8, 4)
WALLE_DW3S2V(walle_dw3s2_8x1, walle_g8, walle_gi8, 8, 1)
WALLE_DW3S2V(walle_dw3s2_4x4, walle_g4, walle_gi4, 4, 4)
WALLE_DW3S2V(walle_dw3s2_4x1, walle_g4, walle_gi4, 4, 1)

/* An oh x ow stride-2 3x3 plane (ow >= VW) in bands of 4 rows of WALLE_DW3S2V tiles:
   columns 0, VW, ... and one shifted back to end at ow; y rows are ow apart. */
#define WALLE_DW3S2_PLANE(NAME, VW, T4, T1)                                                 \
    WALLE_GINLINE void NAME(const float* restrict x, const float* restrict w, float bias,   \
                            float* restrict y, long oh, long ow, long s_kh, float relu) {     \
        long r = 0, last = ow - VW;                                                         \
        for (; r + 4 <= oh; r += 4)                                                         \
            for (long j = 0;; j = j + VW < last ? j + VW : last) {                          \
                T4(x + 2 * r * s_kh + 2 * j, w, bias, y + r * ow + j, s_kh, ow, relu);      \
                if (j == last) break;                                                       \
            }                                                                               \
        for (; r < oh; r++)                                                                 \
            for (long j = 0;; j = j + VW < last ? j + VW : last) {                          \
                T1(x + 2 * r * s_kh + 2 * j, w, bias, y + r * ow + j, s_kh, ow, relu);      \
                if (j == last) break;                                                       \
            }                                                                               \
    }
WALLE_DW3S2_PLANE(walle_dw3s2_plane16, 16, walle_dw3s2_16x4, walle_dw3s2_16x1)
WALLE_DW3S2_PLANE(walle_dw3s2_plane8, 8, walle_dw3s2_8x4, walle_dw3s2_8x1)
WALLE_DW3S2_PLANE(walle_dw3s2_plane4, 4, walle_dw3s2_4x4, walle_dw3s2_4x1)

/* The stride-2 3x3 plane at the widest of 16, 8, 4 lanes (up to the level's VW) that fits
   in a row; 0 when the row is under 4 wide (the caller's row tiles then). */
#define WALLE_DW3S2_PICK(NAME, VW, P16, P8, P4)                                             \
    WALLE_GINLINE int NAME(const float* restrict x, const float* restrict w, float bias,    \
                           float* restrict y, long oh, long ow, long s_kh, float relu) {      \
        long v = ow >= 16 ? 16 : ow >= 8 ? 8 : ow >= 4 ? 4 : 0;                             \
        if (v > VW) v = VW;                                                                 \
        if (v == 16) P16(x, w, bias, y, oh, ow, s_kh, relu);                                \
        else if (v == 8) P8(x, w, bias, y, oh, ow, s_kh, relu);                             \
        else if (v == 4) P4(x, w, bias, y, oh, ow, s_kh, relu);                             \
        else return 0;                                                                      \
        return 1;                                                                           \
    }
WALLE_DW3S2_PICK(walle_dw3s2_avx512, 16, walle_dw3s2_plane16, walle_dw3s2_plane8,
                 walle_dw3s2_plane4)
WALLE_DW3S2_PICK(walle_dw3s2_avx2, 8, walle_dw3s2_plane8, walle_dw3s2_plane8, walle_dw3s2_plane4)
WALLE_DW3S2_PICK(walle_dw3s2_base, 4, walle_dw3s2_plane4, walle_dw3s2_plane4, walle_dw3s2_plane4)

/* n outputs at any strides, one at a time. */
WALLE_GINLINE void walle_dw_any(const float* restrict x, const float* restrict w, float bias,
                                float* restrict y, long n, long kh, long kw, long s_kh,
                                long s_kw, long s_ow, float relu) {
    for (long t = 0; t < n; t++) {
        float acc = 0.0f;
        for (long a = 0; a < kh; a++)
            for (long b = 0; b < kw; b++) acc += w[a * kw + b] * x[t * s_ow + a * s_kh + b * s_kw];
        float r = acc + bias;
        y[t] = WALLE_RELU_S(r, relu);
    }
}

/* Positions [0, count) of a flat run at stride 1: tiles of 8 and 4 vectors (independent
   accumulators hide the FMA latency of the taps' chain), then single vectors, then one
   vector shifted back to end at `count` (or scalars if the run is under a vector). */
#define WALLE_DW_FLAT(X8, X4, X1, VW, x, w, bias, y, count, kh, kw, s_kh, s_kw, relu)       \
    do {                                                                                    \
        long t_ = 0;                                                                        \
        for (; t_ + 8 * VW <= (count); t_ += 8 * VW)                                        \
            X8((x) + t_, w, bias, (y) + t_, kh, kw, s_kh, s_kw, relu);                      \
        for (; t_ + 4 * VW <= (count); t_ += 4 * VW)                                        \
            X4((x) + t_, w, bias, (y) + t_, kh, kw, s_kh, s_kw, relu);                      \
        for (; t_ + VW <= (count); t_ += VW)                                                \
            X1((x) + t_, w, bias, (y) + t_, kh, kw, s_kh, s_kw, relu);                      \
        if (t_ < (count) && (count) >= VW)                                                  \
            X1((x) + (count) - VW, w, bias, (y) + (count) - VW, kh, kw, s_kh, s_kw, relu);  \
        else if (t_ < (count))                                                              \
            walle_dw_any((x) + t_, w, bias, (y) + t_, (count) - t_, kh, kw, s_kh, s_kw, 1,  \
                         relu);                                                             \
    } while (0)

/* One stride-2 row of `ow` outputs in tiles of the widest vector that fits (the last one
   shifted back to end at `ow`), or scalars for a row narrower than 4. */
#define WALLE_DW_S2ROW(S2W, S2H, S2Q, VW, x, w, bias, y, ow, kh, kw, s_kh, relu)            \
    do {                                                                                    \
        long t_;                                                                            \
        if ((ow) >= VW) {                                                                   \
            for (t_ = 0; t_ + VW <= (ow); t_ += VW)                                         \
                S2W((x) + 2 * t_, w, bias, (y) + t_, kh, kw, s_kh, relu);                   \
            if (t_ < (ow))                                                                  \
                S2W((x) + 2 * ((ow) - VW), w, bias, (y) + (ow) - VW, kh, kw, s_kh, relu);   \
        } else if (VW >= 8 && (ow) >= VW / 2) {                                             \
            for (t_ = 0; t_ + VW / 2 <= (ow); t_ += VW / 2)                                 \
                S2H((x) + 2 * t_, w, bias, (y) + t_, kh, kw, s_kh, relu);                   \
            if (t_ < (ow))                                                                  \
                S2H((x) + 2 * ((ow) - VW / 2), w, bias, (y) + (ow) - VW / 2, kh, kw, s_kh,  \
                    relu);                                                                  \
        } else if (VW >= 16 && (ow) >= VW / 4) {                                            \
            for (t_ = 0; t_ + VW / 4 <= (ow); t_ += VW / 4)                                 \
                S2Q((x) + 2 * t_, w, bias, (y) + t_, kh, kw, s_kh, relu);                   \
            if (t_ < (ow))                                                                  \
                S2Q((x) + 2 * ((ow) - VW / 4), w, bias, (y) + (ow) - VW / 4, kh, kw, s_kh,  \
                    relu);                                                                  \
        } else {                                                                            \
            walle_dw_any(x, w, bias, y, ow, kh, kw, s_kh, 1, 2, relu);                      \
        }                                                                                   \
    } while (0)

/* A depthwise 3x3/2 plane read from an unpadded source, padded plane over L1 (over
   WALLE_DW_BAND_PLANE floats: 112 x 112 inputs), one output a channel: its
   outputs in bands of WALLE_DW_BAND rows, each band's 2 x 16 + 1 padded rows copied into
   one buffer (15 KiB at rows of 114) just before the band reads them. Copied whole into a
   scratch plane (52 KiB), the copy's stores had missed L1 and it was a third of the conv:
   AVX-512, one core, 32 x 112 x 112 -> 56 x 56 82 -> 73-74 us, 96 x 112 x 112 251 ->
   221-230, SSE 161-163 -> 153 and 494 -> 457-464 (bands of 4 and 8 rows 74-75 us; planes
   of 56 x 56, which fit in L1, keep the whole-plane copy). AVX2 likewise: 32 x 112 x 112
   -> 56 x 56 124-127 -> 86-89 us, 96 x 112 x 112 357-369 -> 281-283, 16 x 224 x 224
   260 -> 228-230, 24 x 80 x 320 208-210 -> 179-181 (bands of 4, 8 and 32 rows within noise
   of 16; its rows then split into even and odd columns as they were copied, see
   WALLE_DW3S2V). A multiple of the plane tiles' 4 rows: the same tiles, the same bits.
   Asking for the next band's source rows ahead (while the tiles of this one run) took
   1.11-1.13x the time at AVX2 on 112 x 112 and 224 x 224 planes.
   (AVX-512's 3x3/2 planes now skip the copy: dw_masked.h reads their source in place.)
   3x3 and 5x5 at stride 1 (rows of 16 and more) likewise, in bands of WALLE_DW_BAND1 rows
   (their tiles sum every position in one order, whichever computes it: the same bits):
   16 x 112 x 112 3x3 AVX-512 70 -> 65 us, AVX2 98 -> 78-80; 32 x 112 x 112 142 -> 129,
   196 -> 156-159; 5x5 144 -> 138, 220 -> 202. */
#define WALLE_DW_BAND 16
#define WALLE_DW_BAND_PLANE 8192
#define WALLE_DW_BAND1 24 /* at stride 1: 3x3, 5x5, rows of 16 and more */

/* Output planes [i0, i1) of i = n * (G*cout) + co. `scratch` holds OH * s_oh floats (the
   flat run before its rows are copied out). */
#define WALLE_DW_PLANES(NAME, ATTR, X8, X4, X1, S2W, S2H, S2Q, COPY, DW3, DW5, DW3S2, VW) \
    ATTR static void NAME(const walle_gconv* p, long i0, long i1, float* scratch) {         \
        long ow = p->ow, oh = p->oh, plane = oh * ow, kk = p->kh * p->kw;                   \
        long channels = p->groups * p->cout, pitch = p->s_oh;                               \
        int flat = p->s_ow == 1 && pitch >= ow;                                             \
        int s2 = p->s_ow == 2 && p->s_kw == 1 && p->kw >= 2;                                \
        int over_l1 = p->base && p->cout == 1 && p->hp * p->wp > WALLE_DW_BAND_PLANE &&     \
                      p->s_kh == p->wp && p->kh == p->kw;                                   \
        int banded = over_l1 && s2 && p->kh == 3 && p->s_oh == 2 * p->s_kh && ow >= 4;      \
        int banded1 = over_l1 && p->s_ow == 1 && p->s_kw == 1 && p->s_oh == p->s_kh &&      \
                      (p->kh == 3 || p->kh == 5) && ow >= 16;                               \
        for (long i = i0; i < i1; i++) {                                                    \
            long n = i / channels, co = i % channels;                                       \
            const float* xc = p->x + n * p->s_n + (co / p->cout) * p->s_c;                  \
            const float* w = p->w + co * kk;                                                \
            float bias = p->bias[co];                                                       \
            float* yc = p->y + i * plane;                                                   \
            if (p->base) {                                                                  \
                float* pl = scratch + oh * pitch + 16;                                      \
                const float* src = p->x + p->base[n * p->groups + co / p->cout];            \
                int fresh = co % p->cout == 0 || i == i0; /* a new input plane */           \
                if (banded || banded1) { /* bands of output rows, their rows at pl */      \
                    long r_off = p->off / p->wp, c_off = p->off % p->wp;                    \
                    long band = banded ? WALLE_DW_BAND : WALLE_DW_BAND1, s = banded ? 2 : 1; \
                    for (long rb = 0; rb < oh; rb += band) {                                \
                        long nb = oh - rb < band ? oh - rb : band;                          \
                        for (long u = 0; u < s * (nb - 1) + p->kh; u++) {                   \
                            long sr = r_off + s * rb + u - p->top; /* its source row */     \
                            float* d = pl + u * p->wp;                                      \
                            if (sr < 0 || sr >= p->ih) /* a padding row: zeros */           \
                                memset(d, 0, p->wp * sizeof(float));                        \
                            else                                                            \
                                COPY(d + p->left, src + sr * p->irs, p->iw);                \
                        }                                                                   \
                        float* yb = yc + rb * ow;                                           \
                        if (banded)                                                         \
                            DW3S2(pl + c_off, w, bias, yb, nb, ow, p->s_kh, p->relu);       \
                        else if (p->kh == 3) /* rows ow >= 16 wide: straight to y */        \
                            DW3(pl + c_off, w, bias, yb, scratch, nb, ow, p->wp, p->relu, 0, 0); \
                        else                                                                \
                            DW5(pl + c_off, w, bias, yb, scratch, nb, ow, p->wp, p->relu, 0, 0); \
                    }                                                                       \
                    continue;                                                               \
                }                                                                           \
                if (fresh)                                                                  \
                    for (long r = 0; r < p->ih; r++)                                        \
                        COPY(pl + (r + p->top) * p->wp + p->left, src + r * p->irs, p->iw); \
                xc = pl + p->off;                                                           \
            }                                                                               \
            if (flat) {                                                                     \
                long count = (oh - 1) * pitch + ow;                                         \
                float* t = pitch == ow ? yc : scratch;                                      \
                int rows = p->kh == p->kw && p->s_kw == 1 && p->s_kh == pitch;              \
                int slack = p->base != NULL && t != yc;                                     \
                long room = (i1 - 1 - i) * plane;                                           \
                int dw3 = rows && p->kh == 3                                                \
                              ? DW3(xc, w, bias, yc, t, oh, ow, pitch, p->relu, slack, room) \
                          : rows && p->kh == 5                                              \
                              ? DW5(xc, w, bias, yc, t, oh, ow, pitch, p->relu, slack, room) \
                              : 0;                                                          \
                if (dw3) {                                                                  \
                } else if (p->kh == 3 && p->kw == 3)                                        \
                    WALLE_DW_FLAT(X8, X4, X1, VW, xc, w, bias, t, count, 3, 3, p->s_kh,     \
                                  p->s_kw, p->relu);                                        \
                else                                                                        \
                    WALLE_DW_FLAT(X8, X4, X1, VW, xc, w, bias, t, count, p->kh, p->kw,      \
                                  p->s_kh, p->s_kw, p->relu);                               \
                if (t != yc && dw3 != 2)                                                    \
                    for (long r = 0; r < oh; r++) COPY(yc + r * ow, t + r * pitch, ow);     \
            } else if (s2 && p->kh == 3 && p->kw == 3 && p->s_oh == 2 * p->s_kh &&         \
                       DW3S2(xc, w, bias, yc, oh, ow, p->s_kh, p->relu)) {                  \
            } else if (s2) {                                                                \
                for (long r = 0; r < oh; r++) {                                             \
                    if (p->kh == 3 && p->kw == 3)                                           \
                        WALLE_DW_S2ROW(S2W, S2H, S2Q, VW, xc + r * p->s_oh, w, bias,        \
                                       yc + r * ow, ow, 3, 3, p->s_kh, p->relu);            \
                    else                                                                    \
                        WALLE_DW_S2ROW(S2W, S2H, S2Q, VW, xc + r * p->s_oh, w, bias,        \
                                       yc + r * ow, ow, p->kh, p->kw, p->s_kh, p->relu);    \
                }                                                                           \
            } else {                                                                        \
                for (long r = 0; r < oh; r++)                                               \
                    walle_dw_any(xc + r * p->s_oh, w, bias, yc + r * ow, ow, p->kh, p->kw,  \
                                 p->s_kh, p->s_kw, p->s_ow, p->relu);                       \
            }                                                                               \
        }                                                                                   \
    }

/* d[0, n) = s[0, n) inline (rows of 7 to 56 floats: a libc call per row costs more than
   the copy): vectors, the last one shifted back to end at n, scalars under a vector. */
#define WALLE_COPY_ROW(NAME, VT, VW)                                                        \
    WALLE_GINLINE void NAME(float* restrict d, const float* restrict s, long n) {           \
        VT v;                                                                               \
        long t = 0;                                                                         \
        if (n < VW) {                                                                       \
            for (; t < n; t++) d[t] = s[t];                                                 \
            return;                                                                         \
        }                                                                                   \
        for (; t + VW <= n; t += VW) {                                                      \
            memcpy(&v, s + t, sizeof(VT));                                                  \
            memcpy(d + t, &v, sizeof(VT));                                                  \
        }                                                                                   \
        if (t < n) {                                                                        \
            memcpy(&v, s + n - VW, sizeof(VT));                                             \
            memcpy(d + n - VW, &v, sizeof(VT));                                             \
        }                                                                                   \
    }
WALLE_COPY_ROW(walle_copy_8, walle_g8, 8)
WALLE_COPY_ROW(walle_copy_4, walle_g4, 4)

WALLE_GBLOCK_ROWS(walle_gblock_avx512, WALLE_LEVEL_TARGET("avx512f,avx2,fma"), walle_conv_v16x2, 0,
                  walle_conv_v16x2, walle_conv_v16x1, walle_conv_v8x1, walle_conv_v4x1, 16)
WALLE_GBLOCK_ROWS(walle_gblock_avx2, WALLE_LEVEL_TARGET("avx2,fma"), walle_conv_v8x3h, 24,
                  walle_conv_v8x2h, walle_conv_v8x1, walle_conv_v4x1, walle_conv_v2x1, 8)
WALLE_GBLOCK_ROWS(walle_gblock_base, , walle_conv_v4x3h, 12, walle_conv_v4x2h,
                  walle_conv_v4x1, walle_conv_v2x1, walle_conv_v2x1, 4)
WALLE_DW_PLANES(walle_dw_avx512, WALLE_LEVEL_TARGET("avx512f,avx2,fma"), walle_dw_16x8,
                walle_dw_16x4, walle_dw_16x1, walle_dws2_16, walle_dws2_8, walle_dws2_4,
                walle_copy_8, walle_dw3_avx512, walle_dw5_avx512, walle_dw3s2_avx512, 16)
WALLE_DW_PLANES(walle_dw_avx2, WALLE_LEVEL_TARGET("avx2,fma"), walle_dw_8x8, walle_dw_8x4,
                walle_dw_8x1, walle_dws2_8, walle_dws2_4, walle_dws2_4, walle_copy_8,
                walle_dw3_avx2, walle_dw5_avx2, walle_dw3s2_avx2, 8)
WALLE_DW_PLANES(walle_dw_base, , walle_dw_4x8, walle_dw_4x4, walle_dw_4x1, walle_dws2_4,
                walle_dws2_4, walle_dws2_4, walle_copy_4, walle_dw3_base, walle_dw5_base,
                walle_dw3s2_base, 4)

/* y[i, :] = act(y[i, :] + bias[i % channels] (+ res[i, :])) over `rows` rows of `plane`
   floats: the epilogue of a grouped 1x1 conv done by numpy's BLAS, with the shortcut of a
   residual unit (ShuffleNet's) when res is not NULL. */
#define WALLE_BIAS_ACT(NAME, ATTR)                                                          \
    ATTR static void NAME(float* restrict y, const float* restrict bias,                    \
                          const float* restrict res, long rows, long channels, long plane,  \
                          float relu) {                                                       \
        for (long i = 0; i < rows; i++) {                                                   \
            float b = bias[i % channels];                                                   \
            float* r = y + i * plane;                                                       \
            if (!res) {                                                                     \
                if (relu)                                                                   \
                    for (long t = 0; t < plane; t++) {                                      \
                        float v = r[t] + b;                                                 \
                        r[t] = WALLE_RELU_S(v, relu);                                       \
                    }                                                                       \
                else                                                                        \
                    for (long t = 0; t < plane; t++) r[t] += b;                             \
                continue;                                                                   \
            }                                                                               \
            const float* e = res + i * plane;                                               \
            if (relu)                                                                       \
                for (long t = 0; t < plane; t++) {                                          \
                    float v = r[t] + b + e[t];                                              \
                    r[t] = WALLE_RELU_S(v, relu);                                           \
                }                                                                           \
            else                                                                            \
                for (long t = 0; t < plane; t++) r[t] = r[t] + b + e[t];                    \
        }                                                                                   \
    }
WALLE_BIAS_ACT(walle_bias_act_avx512, WALLE_LEVEL_TARGET("avx512f,avx2,fma"))
WALLE_BIAS_ACT(walle_bias_act_avx2, WALLE_LEVEL_TARGET("avx2,fma"))
WALLE_BIAS_ACT(walle_bias_act_base, )
static void walle_bias_act(float* y, const float* bias, const float* res, long rows,
                           long channels, long plane, float relu, int level) {
    if (WALLE_LEVEL(level) == 2)
        walle_bias_act_avx512(y, bias, res, rows, channels, plane, relu);
    else if (WALLE_LEVEL(level) == 1)
        walle_bias_act_avx2(y, bias, res, rows, channels, plane, relu);
    else
        walle_bias_act_base(y, bias, res, rows, channels, plane, relu);
}

/* 2: AVX-512F, 1: AVX2 + FMA, 0: baseline; the best this CPU runs. */
static int walle_gconv_best_level(void) {
    return walle_cpu_level();
}

#include "dw_channel_lanes.h"
#include "dw_masked.h"

/* Work items [i0, i1): rows (block mode), output planes (depthwise mode: depthwise 1) or
   (image, channel block) pairs (depthwise in channel lanes: depthwise 2). */
static void walle_gconv_run(const walle_gconv* p, int depthwise, int level, long i0, long i1,
                            float* scratch) {
    if (depthwise == 2) {
        walle_dwc_run(p, level, i0, i1, scratch);
    } else if (depthwise) {
#ifdef WALLE_X86
        if (WALLE_LEVEL(level) == 2 && walle_dwm_fits(p)) {
            walle_dwm_avx512(p, i0, i1);
            return;
        }
#endif
        if (WALLE_LEVEL(level) == 2) walle_dw_avx512(p, i0, i1, scratch);
        else if (WALLE_LEVEL(level) == 1) walle_dw_avx2(p, i0, i1, scratch);
        else walle_dw_base(p, i0, i1, scratch);
    } else {
        if (WALLE_LEVEL(level) == 2) walle_gblock_avx512(p, i0, i1);
        else if (WALLE_LEVEL(level) == 1) walle_gblock_avx2(p, i0, i1);
        else walle_gblock_base(p, i0, i1);
    }
}

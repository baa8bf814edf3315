/* Depthwise 3x3 and 5x5 convs (stride 1 or 2, one output channel per input channel) with the
   channels in the vector lanes: L channels (the level's vector width: AVX-512 16, AVX2 8,
   baseline 4) at a time, their padded planes transposed into a scratch [rows][cols][L], each
   output position then K^2 multiply-adds of whole vectors (a tap's L weights times the L
   channels' inputs), its rows transposed back to the L NCHW planes as they are stored.

   For small planes (PP-LCNet's and MobileNetV3's 14 x 14 and 7 x 7, 5x5 taps): the NCHW
   kernels' vectors run along a row, and a row of 7 or 14 leaves lanes idle, a 5x5 tap row
   loads its input 5 times, a stride-2 row splits even and odd lanes (256 x 14 x 14 5x5/2:
   2.8x onnxruntime's time, which keeps its activations channel-blocked, NCHWc). The
   transposes cost about what the multiply-adds do on such planes; the search times this
   kernel against the NCHW ones per conv.

   Every position sums its taps in the order rows a = 0..K-1, columns b = 0..K-1 from zero,
   multiply-adds fused, then adds the bias, as WALLE_DWTILE: the same bits as the NCHW
   depthwise kernels' vector tiles (their scalar path for rows under 4 wide, walle_dw_any,
   does not fuse its multiply-adds: an ulp apart there). */
#ifndef WALLE_DW_CHANNEL_LANES_H
#define WALLE_DW_CHANNEL_LANES_H

#include <string.h>

#include "conv_tile.h"
#include "cpu_level.h"

/* v[0..L) (L vectors of L floats: row i of an L x L block in v[i]) transposed in place:
   log2(L) rounds that each take every pair's even lanes to the first half and odd lanes to
   the second (each round rotates the 2 log2(L) bits of (vector, lane) right by one). */
#define WALLE_DWC_TRANSPOSE(VT, L, EVEN, ODD, v)                                            \
    do {                                                                                    \
        _Pragma("GCC unroll 4")                                                             \
        for (int s_ = 1; s_ < (L); s_ *= 2) {                                               \
            VT t_[L];                                                                       \
            _Pragma("GCC unroll 8")                                                         \
            for (int i_ = 0; i_ < (L) / 2; i_++) {                                          \
                t_[i_] = (VT)EVEN(v[2 * i_], v[2 * i_ + 1]);                                \
                t_[i_ + (L) / 2] = (VT)ODD(v[2 * i_], v[2 * i_ + 1]);                       \
            }                                                                               \
            _Pragma("GCC unroll 16")                                                        \
            for (int i_ = 0; i_ < (L); i_++) v[i_] = t_[i_];                                \
        }                                                                                   \
    } while (0)

/* The same transpose of 8 vectors of 8 floats in 24 single-instruction shuffles (unpack
   pairs, shufps pairs of pairs, swap 128-bit halves) where the rounds above take 48-72 at
   AVX2 (a two-source even/odd pick is two lane permutes and a blend there): the AVX2
   level's transposes cost as much as its multiply-adds on 14 x 14 planes. Same bits. */
#ifdef __clang__
#define WALLE_DWC_SHUF8(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define WALLE_DWC_SHUF8(a, b, ...) __builtin_shuffle(a, b, (walle_gi8){__VA_ARGS__})
#endif
#define WALLE_DWC_TRANSPOSE8(VT, L, EVEN, ODD, v)                                           \
    do {                                                                                    \
        VT u_[8], s_[8];                                                                    \
        for (int i_ = 0; i_ < 8; i_ += 2) {                                                 \
            u_[i_] = WALLE_DWC_SHUF8(v[i_], v[i_ + 1], 0, 8, 1, 9, 4, 12, 5, 13);          \
            u_[i_ + 1] = WALLE_DWC_SHUF8(v[i_], v[i_ + 1], 2, 10, 3, 11, 6, 14, 7, 15);    \
        }                                                                                   \
        for (int i_ = 0; i_ < 8; i_ += 4)                                                   \
            for (int j_ = 0; j_ < 2; j_++) {                                                \
                s_[i_ + 2 * j_] = WALLE_DWC_SHUF8(u_[i_ + j_], u_[i_ + j_ + 2],            \
                                                  0, 1, 8, 9, 4, 5, 12, 13);                \
                s_[i_ + 2 * j_ + 1] = WALLE_DWC_SHUF8(u_[i_ + j_], u_[i_ + j_ + 2],        \
                                                      2, 3, 10, 11, 6, 7, 14, 15);          \
            }                                                                               \
        for (int i_ = 0; i_ < 4; i_++) {                                                    \
            v[i_] = WALLE_DWC_SHUF8(s_[i_], s_[i_ + 4], 0, 1, 2, 3, 8, 9, 10, 11);         \
            v[i_ + 4] = WALLE_DWC_SHUF8(s_[i_], s_[i_ + 4], 4, 5, 6, 7, 12, 13, 14, 15);   \
        }                                                                                   \
    } while (0)

/* v[0..n) to dst + l * stride: all L vectors unrolled (a loop over a runtime count copied
   each vector through the stack in halves: at AVX2 that had set the kernel's pace). */
#define WALLE_DWC_STORE(VT, L, v, n, dst, stride)                                           \
    do {                                                                                    \
        float* dst_ = (dst);                                                                \
        if ((n) == (L)) {                                                                   \
            _Pragma("GCC unroll 16")                                                        \
            for (int l_ = 0; l_ < (L); l_++) memcpy(dst_ + l_ * (stride), &v[l_], sizeof(VT)); \
        } else                                                                              \
            for (long l_ = 0; l_ < (n); l_++) memcpy(dst_ + l_ * (stride), &v[l_], sizeof(VT)); \
    } while (0)

/* R output positions (``step`` floats apart in t, at stride S: S * L) of L channels:
   sum over taps (a, b) of w[a][b] x t[a][b], + bias[0..L), the activation, to yr[r * L]. */
#define WALLE_DWC_TILE(NAME, VT, IT, L, R)                                                  \
    WALLE_GINLINE void NAME(const float* restrict t, long tp, long step,                    \
                            const float* restrict w, long k, const float* restrict bias,    \
                            float* restrict yr, float relu) {                               \
        VT acc[R], bv; /* (a pointer to the L biases: a vector argument has no fixed ABI) */ \
        memcpy(&bv, bias, sizeof bv);                                                       \
        for (int r = 0; r < (R); r++) acc[r] = (VT){0};                                     \
        for (long a = 0; a < k; a++)                                                        \
            for (long b = 0; b < k; b++) {                                                  \
                VT wv;                                                                      \
                memcpy(&wv, w + (a * k + b) * (L), sizeof wv);                              \
                const float* s = t + a * tp + b * (L);                                      \
                _Pragma("GCC unroll 8")                                                     \
                for (int r = 0; r < (R); r++) {                                             \
                    VT v;                                                                   \
                    memcpy(&v, s + r * step, sizeof v);                                     \
                    acc[r] += wv * v;                                                       \
                }                                                                           \
            }                                                                               \
        for (int r = 0; r < (R); r++) {                                                     \
            VT o = acc[r] + bv;                                                             \
            WALLE_RELU_V(VT, IT, o, relu);                                                  \
            memcpy(yr + r * (L), &o, sizeof o);                                             \
        }                                                                                   \
    }

/* Work items [i0, i1): (image n, block of L channels). Scratch: the transposed padded
   input [rows][pitch][L] (borders zero: only the interior is ever written), then one
   output row [ow][L] and L more positions (read, never used, when a row is under a vector). */
#define WALLE_DWC_PLANES(NAME, ATTR, VT, IT, L, TRANSPOSE, EVEN, ODD, T8, T4, T1)           \
    ATTR static void NAME(const walle_gconv* p, long i0, long i1, float* scratch) {         \
        long k = p->kh, s = p->s_ow, ow = p->ow, oh = p->oh, c = p->groups;                 \
        long blocks = (c + (L) - 1) / (L);                                                  \
        int based = p->base != NULL;                                                        \
        /* the rows and columns copied, where they go, and where the taps start reading */  \
        long rows = based ? p->ih : (oh - 1) * s + k, cols = based ? p->iw : (ow - 1) * s + k; \
        long pitch = based ? p->wp : cols, top = based ? p->top : 0;                        \
        long left = based ? p->left : 0;                                                    \
        long r0 = based ? p->off / p->wp : 0, c0 = based ? p->off % p->wp : 0;              \
        long hp = based ? p->hp : rows;                                                     \
        float* tb = scratch;                                                                \
        float* yr = scratch + hp * pitch * (L);                                             \
        long tp = pitch * (L), step = s * (L);                                              \
        for (long item = i0; item < i1; item++) {                                           \
            long n = item / blocks, cb = item % blocks, ch = cb * (L);                      \
            long nl = c - ch < (L) ? c - ch : (L);                                          \
            const float* src[L];                                                            \
            for (long l = 0; l < (L); l++) {                                                \
                long cc = ch + (l < nl ? l : 0);                                            \
                src[l] = based ? p->x + p->base[n * c + cc] : p->x + n * p->s_n + cc * p->s_c; \
            }                                                                               \
            long rs = based ? p->irs : p->s_kh;                                             \
            long extent = (rows - 1) * rs + cols; /* floats of a channel's plane read */    \
            for (long r = 0; r < rows; r++) {                                               \
                float* d = tb + ((r + top) * pitch + left) * (L);                           \
                if (cols < (L) && r * rs + (L) > extent) { /* a vector would leave it */    \
                    for (long j = 0; j < cols; j++)                                         \
                        for (long l = 0; l < (L); l++) d[j * (L) + l] = src[l][r * rs + j]; \
                    continue;                                                               \
                }                                                                           \
                long last = cols < (L) ? 0 : cols - (L), n_ = cols < (L) ? cols : (L);      \
                for (long j = 0;; j = j + (L) < last ? j + (L) : last) {                    \
                    VT v[L]; /* a row shorter than a vector: the floats after it too */     \
                    _Pragma("GCC unroll 16")                                                \
                    for (int l = 0; l < (L); l++) memcpy(&v[l], src[l] + r * rs + j, sizeof(VT)); \
                    TRANSPOSE(VT, L, EVEN, ODD, v);                                         \
                    WALLE_DWC_STORE(VT, L, v, n_, d + j * (L), (L));                        \
                    if (j == last) break;                                                   \
                }                                                                           \
            }                                                                               \
            const float* w = p->w + cb * k * k * (L);                                       \
            const float* bias = p->bias + ch;                                               \
            for (long i = 0; i < oh; i++) {                                                 \
                const float* t = tb + ((r0 + i * s) * pitch + c0) * (L);                    \
                long j = 0;                                                                 \
                for (; j + 8 <= ow; j += 8)                                                 \
                    T8(t + j * step, tp, step, w, k, bias, yr + j * (L), p->relu);          \
                if (j < ow && ow >= 8)                                                      \
                    T8(t + (ow - 8) * step, tp, step, w, k, bias, yr + (ow - 8) * (L),      \
                       p->relu);                                                            \
                else { /* rows of 4-7: a last T4 shifted back, not T1s, whose one chain  */ \
                    /* of k^2 multiply-adds waited on their latency (512 x 7 x 7 5x5 39 -> */ \
                    /* 33 us at AVX-512, 43 -> 34 at AVX2; the same bits)                  */ \
                    for (; j + 4 <= ow; j += 4)                                             \
                        T4(t + j * step, tp, step, w, k, bias, yr + j * (L), p->relu);      \
                    if (j < ow && ow >= 4)                                                  \
                        T4(t + (ow - 4) * step, tp, step, w, k, bias, yr + (ow - 4) * (L),  \
                           p->relu);                                                        \
                    else                                                                    \
                        for (; j < ow; j++)                                                 \
                            T1(t + j * step, tp, step, w, k, bias, yr + j * (L), p->relu);  \
                }                                                                           \
                float* y0 = p->y + ((n * c + ch) * oh + i) * ow;                            \
                long plane = oh * ow;                                                       \
                /* a row shorter than a vector is stored a vector wide while that stays in  \
                   its channel's plane: the rest lands on the rows after it, written later */ \
                if (ow < (L) && i * ow + (L) > plane) {                                     \
                    for (long l = 0; l < nl; l++)                                           \
                        for (long jj = 0; jj < ow; jj++) y0[l * plane + jj] = yr[jj * (L) + l]; \
                    continue;                                                               \
                }                                                                           \
                long last = ow < (L) ? 0 : ow - (L);                                        \
                for (long jj = 0;; jj = jj + (L) < last ? jj + (L) : last) {                \
                    VT v[L];                                                                \
                    _Pragma("GCC unroll 16")                                                \
                    for (int l = 0; l < (L); l++) memcpy(&v[l], yr + (jj + l) * (L), sizeof(VT)); \
                    TRANSPOSE(VT, L, EVEN, ODD, v);                                         \
                    WALLE_DWC_STORE(VT, L, v, nl, y0 + jj, plane);                          \
                    if (jj == last) break;                                                  \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
    }

WALLE_DWC_TILE(walle_dwc16_8, walle_g16, walle_gi16, 16, 8)
WALLE_DWC_TILE(walle_dwc16_4, walle_g16, walle_gi16, 16, 4)
WALLE_DWC_TILE(walle_dwc16_1, walle_g16, walle_gi16, 16, 1)
WALLE_DWC_TILE(walle_dwc8_8, walle_g8, walle_gi8, 8, 8)
WALLE_DWC_TILE(walle_dwc8_4, walle_g8, walle_gi8, 8, 4)
WALLE_DWC_TILE(walle_dwc8_1, walle_g8, walle_gi8, 8, 1)
WALLE_DWC_TILE(walle_dwc4_8, walle_g4, walle_gi4, 4, 8)
WALLE_DWC_TILE(walle_dwc4_4, walle_g4, walle_gi4, 4, 4)
WALLE_DWC_TILE(walle_dwc4_1, walle_g4, walle_gi4, 4, 1)

WALLE_DWC_PLANES(walle_dwc_avx512, WALLE_LEVEL_TARGET("avx512f,avx2,fma"), walle_g16, walle_gi16,
                 16, WALLE_DWC_TRANSPOSE, WALLE_EVEN16, WALLE_ODD16, walle_dwc16_8, walle_dwc16_4,
                 walle_dwc16_1)
WALLE_DWC_PLANES(walle_dwc_avx2, WALLE_LEVEL_TARGET("avx2,fma"), walle_g8, walle_gi8, 8,
                 WALLE_DWC_TRANSPOSE8, WALLE_EVEN8, WALLE_ODD8, walle_dwc8_8, walle_dwc8_4,
                 walle_dwc8_1)
WALLE_DWC_PLANES(walle_dwc_base, , walle_g4, walle_gi4, 4, WALLE_DWC_TRANSPOSE, WALLE_EVEN4,
                 WALLE_ODD4, walle_dwc4_8, walle_dwc4_4, walle_dwc4_1)

/* The lanes (channels a block) at a level: its vector width. */
static long walle_dwc_lanes(int level) {
    return WALLE_LEVEL(level) == 2 ? 16 : WALLE_LEVEL(level) == 1 ? 8 : 4;
}

static void walle_dwc_run(const walle_gconv* p, int level, long i0, long i1, float* scratch) {
    if (WALLE_LEVEL(level) == 2) walle_dwc_avx512(p, i0, i1, scratch);
    else if (WALLE_LEVEL(level) == 1) walle_dwc_avx2(p, i0, i1, scratch);
    else walle_dwc_base(p, i0, i1, scratch);
}

#endif

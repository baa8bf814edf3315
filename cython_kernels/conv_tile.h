/* The direct convolution's register tiles, shared by ops_conv.pyx (ConvKernel) and
   group_conv.h (each group of a grouped conv): 8 output channels x NV vectors of VW
   contiguous output columns of one row, accumulated over (ci, kh, kw) from weights packed
   [C][KH][KW][8], stored with bias and ReLU (which keeps NaN). */
#ifndef WALLE_CONV_TILE_H
#define WALLE_CONV_TILE_H

#include <string.h>

#include "hard_swish.h"

/* The kernels' ``relu`` (a float): 0 no activation; above 0 a ReLU capped at it (INFINITY: a
   plain ReLU; 6: ReLU6, ONNX's Clip(0, 6)), which takes inputs below 0 (and -0) to +0 and
   keeps NaN; below 0 HardSwish (hard_swish.h: -1 ONNX's, -2 Paddle's x * relu6(x + 3) / 6). */
#define WALLE_RELU_S(r, cap) \
    ((cap) < 0.0f ? WALLE_HARD_SWISH_ANY_S(r, cap) \
     : (cap) != 0.0f && (r) <= 0.0f ? 0.0f : (cap) != 0.0f && (r) > (cap) ? (cap) : (r))
/* One vector's ReLU in two steps: below 0 (and -0) to +0, then above ``capv`` (a vector
   of the cap) to the cap; NaN stays NaN (neither test holds for it). */
#define WALLE_RELU_ZERO_V(VT, IT, r) ((r) = (VT)((IT)(r) & ~(IT)((r) <= 0.0f)))
#define WALLE_RELU_CAP_V(VT, IT, r, capv) \
    do { \
        IT over_ = (IT)((r) > (capv)); \
        (r) = (VT)(((IT)(r) & ~over_) | ((IT)(capv) & over_)); \
    } while (0)
/* The cap's step only for a finite cap (a plain ReLU's INFINITY clamps nothing). */
#define WALLE_RELU_V(VT, IT, r, cap) \
    do { \
        if ((cap) < 0.0f) { \
            WALLE_HARD_SWISH_ANY_V(VT, IT, r, cap); \
        } else if ((cap) != 0.0f) { \
            WALLE_RELU_ZERO_V(VT, IT, r); \
            if ((cap) < __builtin_inff()) WALLE_RELU_CAP_V(VT, IT, r, (VT){0} + (cap)); \
        } \
    } while (0)

#define WALLE_CB 8
#define WALLE_INLINE static inline __attribute__((always_inline))

/* GCC vector extensions, one width per instruction set: a width the target lacks is
   lowered to scalars (measured 20-40x slower), so each level has its own tiles. */
typedef float walle_v16 __attribute__((vector_size(64)));
typedef int walle_i16 __attribute__((vector_size(64)));
typedef float walle_v8 __attribute__((vector_size(32)));
typedef int walle_i8 __attribute__((vector_size(32)));
typedef float walle_v4 __attribute__((vector_size(16)));
typedef int walle_i4 __attribute__((vector_size(16)));
typedef float walle_v2 __attribute__((vector_size(8)));
typedef int walle_i2 __attribute__((vector_size(8)));

/* Even and odd lanes of the 2 * W floats in (lo, hi): GCC's __builtin_shuffle takes the lane
   indices as a vector, clang's __builtin_shufflevector as constants (the kernels build with
   either: clang is the compiler on macOS, Apple's ARM included). */
#ifdef __clang__
#define WALLE_EVEN16(a, b) \
    __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
#define WALLE_ODD16(a, b) \
    __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31)
#define WALLE_EVEN8(a, b) __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14)
#define WALLE_ODD8(a, b) __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15)
#define WALLE_EVEN4(a, b) __builtin_shufflevector(a, b, 0, 2, 4, 6)
#define WALLE_ODD4(a, b) __builtin_shufflevector(a, b, 1, 3, 5, 7)
#else
#define WALLE_EVEN16(a, b) \
    __builtin_shuffle(a, b, (walle_i16){0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30})
#define WALLE_ODD16(a, b) \
    __builtin_shuffle(a, b, (walle_i16){1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31})
#define WALLE_EVEN8(a, b) __builtin_shuffle(a, b, (walle_i8){0, 2, 4, 6, 8, 10, 12, 14})
#define WALLE_ODD8(a, b) __builtin_shuffle(a, b, (walle_i8){1, 3, 5, 7, 9, 11, 13, 15})
#define WALLE_EVEN4(a, b) __builtin_shuffle(a, b, (walle_i4){0, 2, 4, 6})
#define WALLE_ODD4(a, b) __builtin_shuffle(a, b, (walle_i4){1, 3, 5, 7})
#endif

/* The same even and odd lanes in the order of in-lane picks, and that order undone: 8 lanes
   pick within each 128-bit half (one vshufps each; the in-order picks take two or three
   instructions at AVX2), so outputs made of them come out as 0 1 4 5 | 2 3 6 7 and are put
   in order once, after the arithmetic (one 64-bit permute). 4 and 16 lanes pick in order.
   Lanes combine as they would in order: the same bits. */
#define WALLE_PAIR_EVEN16 WALLE_EVEN16
#define WALLE_PAIR_ODD16 WALLE_ODD16
#define WALLE_PAIR_ORDER16(a) (a)
#define WALLE_PAIR_EVEN4 WALLE_EVEN4
#define WALLE_PAIR_ODD4 WALLE_ODD4
#define WALLE_PAIR_ORDER4(a) (a)
#ifdef __clang__
#define WALLE_PAIR_EVEN8(a, b) __builtin_shufflevector(a, b, 0, 2, 8, 10, 4, 6, 12, 14)
#define WALLE_PAIR_ODD8(a, b) __builtin_shufflevector(a, b, 1, 3, 9, 11, 5, 7, 13, 15)
#define WALLE_PAIR_ORDER8(a) __builtin_shufflevector(a, a, 0, 1, 4, 5, 2, 3, 6, 7)
#else
#define WALLE_PAIR_EVEN8(a, b) __builtin_shuffle(a, b, (walle_i8){0, 2, 8, 10, 4, 6, 12, 14})
#define WALLE_PAIR_ODD8(a, b) __builtin_shuffle(a, b, (walle_i8){1, 3, 9, 11, 5, 7, 13, 15})
#define WALLE_PAIR_ORDER8(a) __builtin_shuffle(a, (walle_i8){0, 1, 4, 5, 2, 3, 6, 7})
#endif

/* Asks for the n floats from p, a request per 64-byte line: weights that the next tiles
   read for the first time in a run, which in a whole model come from memory (the direct and
   grouped convs' next block of weights, asked for a block ahead). */
WALLE_INLINE void walle_prefetch_floats(const float* p, long n) {
    for (long t = 0; t < n; t += 16) __builtin_prefetch(p + t);
}

/* 4 x 4 transpose of float vectors r[0..3] (GCC's and clang's shuffles): gathers and
   scatters of 4 rows at a time without scalar loads and stores (Winograd's tiles, the
   packed GEMM's row packing). */
#ifdef __clang__
#define WALLE_SHUF4(A, B, I, J, K, M) __builtin_shufflevector(A, B, I, J, K, M)
#else
#define WALLE_SHUF4(A, B, I, J, K, M) __builtin_shuffle(A, B, (walle_i4){I, J, K, M})
#endif
WALLE_INLINE void walle_t4x4(walle_v4* r) {
    walle_v4 t0 = WALLE_SHUF4(r[0], r[1], 0, 4, 1, 5), t1 = WALLE_SHUF4(r[0], r[1], 2, 6, 3, 7);
    walle_v4 t2 = WALLE_SHUF4(r[2], r[3], 0, 4, 1, 5), t3 = WALLE_SHUF4(r[2], r[3], 2, 6, 3, 7);
    r[0] = WALLE_SHUF4(t0, t2, 0, 1, 4, 5);
    r[1] = WALLE_SHUF4(t0, t2, 2, 3, 6, 7);
    r[2] = WALLE_SHUF4(t1, t3, 0, 1, 4, 5);
    r[3] = WALLE_SHUF4(t1, t3, 2, 3, 6, 7);
}

/* The taps' loop: BODY with s (the tap's source columns) and wp (its weights from channel
   C0 of the block of 8). A 1x1 conv's taps are its input channels, one flat loop: three
   nested loops of one tap each made ShuffleNet's grouped 1x1 convs 1.2-2x slower at AVX2
   and SSE (7x7 planes, whose narrow tiles have the fewest multiply-adds per tap, the most).
   A 3x3 conv's row of 3 taps unrolled was 4-10% slower. */
#define WALLE_CONV_TAPS(C0, BODY)                                                              \
    if (kh == 1 && kw == 1) {                                                                  \
        for (long ci = 0; ci < cin; ci++) {                                                    \
            const float* s = x + ci * s_c;                                                     \
            const float* wp = w + ci * WALLE_CB + (C0);                                        \
            BODY                                                                               \
        }                                                                                      \
    } else                                                                                     \
        for (long ci = 0; ci < cin; ci++)                                                      \
            for (long a = 0; a < kh; a++)                                                      \
                for (long b = 0; b < kw; b++) {                                                \
                    const float* s = x + ci * s_c + a * s_kh + b * s_kw;                       \
                    const float* wp = w + ((ci * kh + a) * kw + b) * WALLE_CB + (C0);          \
                    BODY                                                                       \
                }

/* 8 output channels x VW*NV contiguous columns of one output row, in registers. */
#define WALLE_CONV_TILE(NAME, VT, IT, VW, NV) \
WALLE_INLINE void NAME(const float* restrict x, const float* restrict w, \
                       const float* restrict bias, float* restrict y, long cin, long kh, \
                       long kw, long s_c, long s_kh, long s_kw, long y_c, long cvalid, \
                       float relu) { \
    VT acc[WALLE_CB][NV]; \
    for (int c = 0; c < WALLE_CB; c++) \
        for (int q = 0; q < NV; q++) acc[c][q] = (VT){0}; \
    WALLE_CONV_TAPS(0, \
        VT v[NV]; \
        for (int q = 0; q < NV; q++) memcpy(&v[q], s + VW * q, sizeof(VT)); \
        for (int c = 0; c < WALLE_CB; c++) \
            for (int q = 0; q < NV; q++) acc[c][q] += wp[c] * v[q];) \
    for (long c = 0; c < cvalid; c++) \
        for (int q = 0; q < NV; q++) { \
            VT r = acc[c][q] + bias[c]; \
            WALLE_RELU_V(VT, IT, r, relu); \
            memcpy(y + c * y_c + VW * q, &r, sizeof(VT)); \
        } \
}
WALLE_CONV_TILE(walle_conv_v16x2, walle_v16, walle_i16, 16, 2)
WALLE_CONV_TILE(walle_conv_v16x1, walle_v16, walle_i16, 16, 1)
WALLE_CONV_TILE(walle_conv_v8x1, walle_v8, walle_i8, 8, 1)
WALLE_CONV_TILE(walle_conv_v4x1, walle_v4, walle_i4, 4, 1)

/* Any source stride and the last columns of a row (fewer than one tile): plain loops. */
static void walle_conv_tile_any(const float* restrict x, const float* restrict w,
                                const float* restrict bias, float* restrict y, long cin,
                                long kh, long kw, long s_c, long s_kh, long s_kw, long s_ow,
                                long y_c, long cvalid, long width, float relu) {
    float acc[WALLE_CB][16] = {{0}};
    for (long ci = 0; ci < cin; ci++)
        for (long a = 0; a < kh; a++)
            for (long b = 0; b < kw; b++) {
                const float* s = x + ci * s_c + a * s_kh + b * s_kw;
                const float* wp = w + ((ci * kh + a) * kw + b) * WALLE_CB;
                for (long t = 0; t < width; t++) {
                    float v = s[t * s_ow];
                    for (int c = 0; c < WALLE_CB; c++) acc[c][t] += wp[c] * v;
                }
            }
    for (long c = 0; c < cvalid; c++)
        for (long t = 0; t < width; t++) {
            float r = acc[c][t] + bias[c];
            y[c * y_c + t] = WALLE_RELU_S(r, relu);
        }
}

/* The last columns of a row (7, 14, 13 or 27 wide in ResNet, Inception, SqueezeNet) in
   half- and quarter-width vectors before the scalar loop takes the rest (< VW / 4). */
WALLE_CONV_TILE(walle_conv_v2x1, walle_v2, walle_i2, 2, 1)
/* The wide tiles of the 16-register levels (AVX2, SSE): 3 or 2 vectors of columns x 8
   channels, as two passes of 4 channels (8 x 2 vectors of sums would not fit). The sums
   are named variables: GCC spilled an array of 12, and also one macro for both widths with
   the third vector's sums under a constant condition. At 3 vectors a tap takes 3 loads
   and 4 broadcasts per 12 multiply-adds, where the 8 x 1 tile takes 9 per 8: a 3 -> 8 3x3
   conv on 64x64 planes (a first layer, few taps per output) was load-bound at 21 GMAC/s
   at AVX2 in two 8 x 1 tiles, 38 in these. Each output sums its taps in the 8 x 1 tile's
   order: the same bits. */
#define WALLE_CONV_TILE8H_ARGS                                                                 \
    const float* restrict x, const float* restrict w, const float* restrict bias,            \
        float* restrict y, long cin, long kh, long kw, long s_c, long s_kh, long s_kw,        \
        long y_c, long cvalid, float relu
/* The sums of channels [4h, 4h + 4) and NV vectors back to y with bias and ReLU. */
#define WALLE_CONV_STORE4(ACC, VT, IT, VW, NV)                                                 \
    for (long c = 0; c < 4 && 4 * h + c < cvalid; c++)                                         \
        for (int q = 0; q < NV; q++) {                                                         \
            VT r = ACC[c][q] + bias[4 * h + c];                                                \
            WALLE_RELU_V(VT, IT, r, relu);                                                     \
            memcpy(y + (4 * h + c) * y_c + VW * q, &r, sizeof(r));                             \
        }
/* The taps' loop of one pass: BODY with s (the tap's source columns) and wp (its 4
   weights). */
#define WALLE_CONV_TAPS4(BODY) WALLE_CONV_TAPS(4 * h, BODY)

/* VT: the vector type of VW floats, IT its int type. */
#define WALLE_CONV_TILE4X3H(NAME, VT, IT, VW)                                                  \
WALLE_INLINE void NAME(WALLE_CONV_TILE8H_ARGS) {                                               \
    for (int h = 0; h < 2 && 4 * h < cvalid; h++) {                                            \
        VT s00 = {0}, s01 = {0}, s02 = {0}, s10 = {0}, s11 = {0}, s12 = {0};                   \
        VT s20 = {0}, s21 = {0}, s22 = {0}, s30 = {0}, s31 = {0}, s32 = {0};                   \
        WALLE_CONV_TAPS4(                                                                      \
            VT v0; VT v1; VT v2;                                                               \
            memcpy(&v0, s, sizeof(v0));                                                        \
            memcpy(&v1, s + VW, sizeof(v1));                                                   \
            memcpy(&v2, s + 2 * VW, sizeof(v2));                                               \
            s00 += wp[0] * v0; s01 += wp[0] * v1; s02 += wp[0] * v2;                           \
            s10 += wp[1] * v0; s11 += wp[1] * v1; s12 += wp[1] * v2;                           \
            s20 += wp[2] * v0; s21 += wp[2] * v1; s22 += wp[2] * v2;                           \
            s30 += wp[3] * v0; s31 += wp[3] * v1; s32 += wp[3] * v2;)                          \
        VT acc[4][3] = {{s00, s01, s02}, {s10, s11, s12}, {s20, s21, s22}, {s30, s31, s32}};   \
        WALLE_CONV_STORE4(acc, VT, IT, VW, 3)                                                  \
    }                                                                                          \
}

#define WALLE_CONV_TILE4X2H(NAME, VT, IT, VW)                                                  \
WALLE_INLINE void NAME(WALLE_CONV_TILE8H_ARGS) {                                               \
    for (int h = 0; h < 2 && 4 * h < cvalid; h++) {                                            \
        VT s00 = {0}, s01 = {0}, s10 = {0}, s11 = {0};                                         \
        VT s20 = {0}, s21 = {0}, s30 = {0}, s31 = {0};                                         \
        WALLE_CONV_TAPS4(                                                                      \
            VT v0; VT v1;                                                                      \
            memcpy(&v0, s, sizeof(v0));                                                        \
            memcpy(&v1, s + VW, sizeof(v1));                                                   \
            s00 += wp[0] * v0; s01 += wp[0] * v1;                                              \
            s10 += wp[1] * v0; s11 += wp[1] * v1;                                              \
            s20 += wp[2] * v0; s21 += wp[2] * v1;                                              \
            s30 += wp[3] * v0; s31 += wp[3] * v1;)                                             \
        VT acc[4][2] = {{s00, s01}, {s10, s11}, {s20, s21}, {s30, s31}};                       \
        WALLE_CONV_STORE4(acc, VT, IT, VW, 2)                                                  \
    }                                                                                          \
}
WALLE_CONV_TILE4X3H(walle_conv_v8x3h, walle_v8, walle_i8, 8)
WALLE_CONV_TILE4X2H(walle_conv_v8x2h, walle_v8, walle_i8, 8)
WALLE_CONV_TILE4X3H(walle_conv_v4x3h, walle_v4, walle_i4, 4)
WALLE_CONV_TILE4X2H(walle_conv_v4x2h, walle_v4, walle_i4, 4)
#endif

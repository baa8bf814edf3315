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
#include "cpu_level.h"
#include "vec_max.h"

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif


/* kind 2: max that keeps NaN; else (0 sum, 1 mean) the sum. */
WALLE_INLINE float walle_pool_op1(float a, float b, int kind) {
    if (kind == 2) return ((b > a) | (b != b)) ? b : a;
    return a + b;
}

/* acc = acc op r in vectors (a statement in the level's own function: compiled apart, in an
   inline helper without the level's target, GCC lowered the compares to scalars). The max
   keeps NaN: r where r > acc or r is NaN, else acc. That is vec_max.h's max(r, acc) (r > acc
   ? r : acc, so acc where either is NaN) with r's NaNs put back: the same bits, and only the
   max (one maxps on x86) waits on acc. As a select on (r > acc) | (r != r), GCC's compares
   into mask registers, their OR and the blend all waited on acc at every tap: the 3x3/2 max
   pools took 1.4-1.5x the time at AVX-512 (SqueezeNet's 111 -> 55 and 55 -> 27 on a Zen 5),
   1.02-1.09x at AVX2 and SSE. */
#define WALLE_POOL_VMAX_walle_v16 walle_vmax16
#define WALLE_POOL_VMAX_walle_v8 walle_vmax8
#define WALLE_POOL_VMAX_walle_v4 walle_vmax4
#define WALLE_POOL_APPLY(VT, IT, acc, r)                                                       \
    if (kind == 2) {                                                                           \
        VT m_ = WALLE_POOL_VMAX_##VT(r, acc);                                                  \
        IT nan_ = (IT)((r) != (r));                                                            \
        acc = (VT)(((IT)(r) & nan_) | ((IT)m_ & ~nan_));                                       \
    } else {                                                                                   \
        acc += (r);                                                                            \
    }

/* The KW taps of a reduced row ``v`` into ``dst``'s n outputs at column stride s (1 or 2,
   stride 2 picking each tap's even columns by a permute), scaled for a mean: a statement of
   walle_pool_rows_* and walle_pool_padded_* (their n, s, kw, kind, scale, v and dst). */
#define WALLE_POOL_TAPS(VT, IT, VW, EVEN)                                                      \
        if (n >= VW) {                                                                         \
            for (long t = 0;; t += VW) {                                                       \
                if (t > n - VW) t = n - VW;                                                    \
                VT acc = {0}, r, hi;                                                           \
                for (long b = 0; b < kw; b++) {                                                \
                    memcpy(&r, v + s * t + b, sizeof(VT));                                     \
                    if (s == 2) {                                                              \
                        memcpy(&hi, v + 2 * t + b + VW, sizeof(VT));                           \
                        r = EVEN(r, hi);                                                       \
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
        }

/* The column-sums (or maxima) of a window's KH rows for the VW columns at c: a statement of
   WALLE_POOL_PAIRS and WALLE_POOL_CARRY (their kh, rs and kind). */
#define WALLE_POOL_VERT(VT, IT, out, c)                                                        \
    do {                                                                                       \
        VT r_;                                                                                 \
        memcpy(&out, (c), sizeof(VT));                                                         \
        for (long a_ = 1; a_ < kh; a_++) {                                                     \
            memcpy(&r_, (c) + a_ * rs, sizeof(VT));                                            \
            WALLE_POOL_APPLY(VT, IT, out, r_)                                                  \
        }                                                                                      \
    } while (0);

/* Stride 2, KW 2 (VGG's 2x2 max pools): each vector of outputs straight from the KH source
   rows, no reduced row in between: the rows reduced two vectors at a time, tap 0 the even
   lanes of the pair, tap 1 its odd lanes. Taps and rows are taken in the same order as the
   two-pass path, so the results are the same bits. The two-pass path stored the reduced row
   and read it back: 2x the time on 2x2 max pools. A statement of walle_pool_rows_* (their
   kh, n, rs, kind, scale, base and dst). */
#define WALLE_POOL_PAIRS(VT, IT, VW)                                                           \
        for (long t = 0;; t += VW) {                                                           \
            if (t > n - VW) t = n - VW;                                                        \
            VT lo, hi, acc, tap;                                                               \
            WALLE_POOL_VERT(VT, IT, lo, base + 2 * t)                                          \
            WALLE_POOL_VERT(VT, IT, hi, base + 2 * t + VW)                                     \
            acc = (VT)WALLE_PAIR_EVEN##VW(lo, hi);                                             \
            tap = (VT)WALLE_PAIR_ODD##VW(lo, hi);                                              \
            WALLE_POOL_APPLY(VT, IT, acc, tap)                                                 \
            acc = (VT)WALLE_PAIR_ORDER##VW(acc);                                               \
            if (kind == 1) acc *= scale;                                                       \
            memcpy(dst + t, &acc, sizeof(VT));                                                 \
            if (t == n - VW) break;                                                            \
        }

/* WALLE_POOL_PAIRS's taps are conv_tile.h's WALLE_PAIR_EVEN/ODD, its outputs put in order
   by WALLE_PAIR_ORDER. For 8 lanes the taps are picked within each 128-bit half (one vshufps each) and
   the outputs put in order after the reduction, a 64-bit pair at a time (GCC: one vpermd):
   the same lanes reduced, so the same bits, for 3 shuffles per 8 outputs where GCC made 4
   vpermd and 2 blends of the cross-lane picks: 2x2/2 max and average pools on a Zen 1,
   one core, interleaved, 0.76-0.90x the time on 128 x 112 x 112, 256 x 56 x 56 and
   512 x 28 x 28. The loop for pools bigger than the caches (walle_pool_ahead) takes them
   too: there (memory-bound) 64 x 224 x 224, 96 x 224 x 224, 128 x 112 x 112 and
   64 x 160 x 160 took 0.89-1.08x the time of the in-order picks at the median (both builds
   loaded in one process, interleaved, four runs: level). 4 and 16 lanes pick in order
   (16: one vpermt2ps per tap). */

/* Lanes 2, 4, .., 2 VW - 2 of (a, b) in lanes 0 .. VW - 2 (lane VW - 1: any), and that vector
   with lane VW - 1 taken from lane 0 of c (LAST; 8 lanes carry by in-lane picks instead,
   WALLE_CARRY_NEXT2_8) or lane VW - 1 of c (LASTHI): tap 2 of a stride-2 window of 3. */
#ifdef __clang__
#define WALLE_NEXT2_16(a, b) __builtin_shufflevector(a, b, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, \
                                                     22, 24, 26, 28, 30, 30)
#define WALLE_LAST16(a, c) __builtin_shufflevector(a, c, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, \
                                                   12, 13, 14, 16)
#define WALLE_NEXT2_8(a, b) __builtin_shufflevector(a, b, 2, 4, 6, 8, 10, 12, 14, 14)
#define WALLE_NEXT2_4(a, b) __builtin_shufflevector(a, b, 2, 4, 6, 6)
#define WALLE_LAST4(a, c) __builtin_shufflevector(a, c, 0, 1, 2, 4)
#define WALLE_LASTHI16(a, c) __builtin_shufflevector(a, c, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,   \
                                                     11, 12, 13, 14, 31)
#define WALLE_LASTHI8(a, c) __builtin_shufflevector(a, c, 0, 1, 2, 3, 4, 5, 6, 15)
#define WALLE_LASTHI4(a, c) __builtin_shufflevector(a, c, 0, 1, 2, 7)
#else
#define WALLE_NEXT2_16(a, b) __builtin_shuffle(a, b, (walle_i16){2, 4, 6, 8, 10, 12, 14, 16, 18, \
                                                                 20, 22, 24, 26, 28, 30, 30})
#define WALLE_LAST16(a, c) __builtin_shuffle(a, c, (walle_i16){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, \
                                                               11, 12, 13, 14, 16})
#define WALLE_NEXT2_8(a, b) __builtin_shuffle(a, b, (walle_i8){2, 4, 6, 8, 10, 12, 14, 14})
#define WALLE_NEXT2_4(a, b) __builtin_shuffle(a, b, (walle_i4){2, 4, 6, 6})
#define WALLE_LAST4(a, c) __builtin_shuffle(a, c, (walle_i4){0, 1, 2, 4})
#define WALLE_LASTHI16(a, c) __builtin_shuffle(a, c, (walle_i16){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, \
                                                                 10, 11, 12, 13, 14, 31})
#define WALLE_LASTHI8(a, c) __builtin_shuffle(a, c, (walle_i8){0, 1, 2, 3, 4, 5, 6, 15})
#define WALLE_LASTHI4(a, c) __builtin_shuffle(a, c, (walle_i4){0, 1, 2, 7})
#endif

/* WALLE_POOL_CARRY's tap 2 where the next reduced vector c2 is there to carry, in the lane
   order of WALLE_PAIR_EVEN/ODD. 8 lanes pick within 128-bit halves: taps 0 and 1 as
   WALLE_PAIR_EVEN8/ODD8 (outputs 0 1 4 5 | 2 3 6 7), tap 2 (columns 2 4 10 12 | 6 8 14 16 of
   c0, c1, c2) by in-lane picks from (c0, c1) and the vectors between them and (c1, c2) (one
   128-bit swap each), and the outputs put in order once (WALLE_PAIR_ORDER8). 4 and 16 lanes
   pick in order: the shifted even lanes and c2's first. */
#define WALLE_CARRY_NEXT2_4(c0, c1, c2) WALLE_LAST4(WALLE_NEXT2_4(c0, c1), c2)
#define WALLE_CARRY_NEXT2_16(c0, c1, c2) WALLE_LAST16(WALLE_NEXT2_16(c0, c1), c2)
#ifdef __clang__
#define WALLE_CARRY_MID8(a, b) __builtin_shufflevector(a, b, 4, 5, 6, 7, 8, 9, 10, 11)
#define WALLE_CARRY_UPPER8(a, m) __builtin_shufflevector(a, m, 2, 3, 8, 9, 6, 7, 12, 13)
#else
#define WALLE_CARRY_MID8(a, b) __builtin_shuffle(a, b, (walle_i8){4, 5, 6, 7, 8, 9, 10, 11})
#define WALLE_CARRY_UPPER8(a, m) __builtin_shuffle(a, m, (walle_i8){2, 3, 8, 9, 6, 7, 12, 13})
#endif
#define WALLE_CARRY_NEXT2_8(c0, c1, c2)                                                        \
    WALLE_PAIR_EVEN8(WALLE_CARRY_UPPER8(c0, WALLE_CARRY_MID8(c0, c1)),                        \
                     WALLE_CARRY_UPPER8(c1, WALLE_CARRY_MID8(c1, c2)))

/* Stride 2, KW 3 (SqueezeNet's, AlexNet's and Inception's 3x3/2 max pools): the KH rows are
   reduced once per VW columns, left to right, and each vector of outputs takes taps 0 and 1
   from the even and odd lanes of two reduced vectors, tap 2 from the same two shifted by a
   lane and the first lane of the next reduced vector, which the next outputs start from.
   The last vectors (whose next reduced vector would read past the row; the last one
   overlapping the one before it) take tap 2's last lane from a reduced vector that ends at
   their window's last column instead. The pairs it replaces (WALLE_POOL_PAIRS, now KW 2
   only) reduced each window column twice, at column offsets 0 and 1 (about 62 operations
   per vector of outputs at AVX2 against these 42): 0.75-0.79x the time on SqueezeNet's
   first max pool (111x111 planes) from a warm source, 0.85-0.89x on 55x55, 0.86-0.90x on
   14x14, level on 27x27; from a source just written (in a model, the conv before it),
   0.90-0.94x on 111x111 and 109x109. Taps and rows in the same order, so the same bits. A
   statement of walle_pool_rows_* (their kh, n, span, rs, kind, scale, base and dst). */
#define WALLE_POOL_CARRY(VT, IT, VW, EVEN, ODD, NEXT2, LASTHI)                                 \
        {                                                                                      \
            VT c0, c1, c2, acc, tap;                                                           \
            int have = 0; /* c0 holds the reduced columns [2t, 2t + VW) */                     \
            for (long t = 0;; t += VW) {                                                       \
                if (t > n - VW) t = n - VW, have = 0;                                          \
                if (!have) WALLE_POOL_VERT(VT, IT, c0, base + 2 * t)                           \
                WALLE_POOL_VERT(VT, IT, c1, base + 2 * t + VW)                                 \
                int carry = 2 * t + 3 * VW <= span;                                            \
                WALLE_POOL_VERT(VT, IT, c2, base + 2 * t + VW + (carry ? VW : 1))              \
                if (carry) {                                                                   \
                    acc = (VT)WALLE_PAIR_EVEN##VW(c0, c1);                                     \
                    tap = (VT)WALLE_PAIR_ODD##VW(c0, c1);                                      \
                    WALLE_POOL_APPLY(VT, IT, acc, tap)                                         \
                    tap = (VT)WALLE_CARRY_NEXT2_##VW(c0, c1, c2);                              \
                    WALLE_POOL_APPLY(VT, IT, acc, tap)                                         \
                    acc = (VT)WALLE_PAIR_ORDER##VW(acc);                                       \
                } else {                                                                       \
                    acc = (VT)EVEN(c0, c1);                                                    \
                    tap = (VT)ODD(c0, c1);                                                     \
                    WALLE_POOL_APPLY(VT, IT, acc, tap)                                         \
                    tap = (VT)LASTHI(NEXT2(c0, c1), c2);                                       \
                    WALLE_POOL_APPLY(VT, IT, acc, tap)                                         \
                }                                                                              \
                if (kind == 1) acc *= scale;                                                   \
                memcpy(dst + t, &acc, sizeof(VT));                                             \
                if (t == n - VW) break;                                                        \
                c0 = c2, have = carry;                                                         \
            }                                                                                  \
        }

/* Outputs rows (n, c, oh) of sizes sz = [KH, KW, N, C, OH, OW] and source strides st
   (column step 1, column stride st[5] of 1 or 2); ``v`` holds a reduced row + 2 VW floats. */
/* Pools that read more than walle_pool_ahead bytes ask for the rows of the output row two
   ahead while one runs: VGG's first 2x2 max pool reads 12.8 MB, which no cache keeps, and
   ran at a third of the memory's speed (2.0 -> 0.91 ms with the rows asked for; a copy of
   its input takes 1.8). Pools whose source the caches hold ran 1-13% slower with them. Where
   that turns is the core's share of the caches: 8 MiB on a Zen 5 (1 MiB of L2), between 3.5
   and 4.7 MB on a Zen 1 guest (512 KiB of L2, an L3 shared with other guests: 3x3/2 max
   pools, one core, both builds in one process, interleaved: 64 x 111 x 111 and 96 x 109 x
   109, 4.7 and 6.7 MB read, 0.85x and 0.73x the time at the fastest, 0.6x at the median,
   with them; 192 x 56 x 56 and 128 x 55 x 55, 3.5 and 2.3 MB, 1.06-1.11x). So the turn is 8
   times the L2 up to 8 MiB (walle_pool_set_ahead, at import; 8 MiB where the C library does
   not say): bigger L2s (the Xeon's 2 MiB) keep the 8 MiB that no measurement there moved. */
static double walle_pool_ahead = 8.0 * 1024 * 1024;
static void walle_pool_set_ahead(void) {
#ifdef _SC_LEVEL2_CACHE_SIZE
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (l2 >= 64 * 1024 && l2 < 1024 * 1024) walle_pool_ahead = 8.0 * (double)l2;
#endif
}

/* The loop over output rows of walle_pool_rows_* (AHEAD: with the rows two ahead asked
   for; a loop of its own, as the test inside the loop made the pools without it 5-15%
   slower). */
#define WALLE_POOL_ROWS_LOOP(VT, IT, VW, EVEN, ODD, NEXT2, LASTHI, AHEAD)                      \
    for (long i = 0; i < sz[2]; i++)                                                           \
    for (long j = 0; j < sz[3]; j++)                                                           \
    for (long q = 0; q < sz[4]; q++, o++) {                                                    \
        const float* base = x + i * st[2] + j * st[3] + q * st[4];                             \
        float* dst = y + o * n;                                                                \
        if (AHEAD && q + 2 < sz[4])                                                            \
            for (long a = 0; a < kh; a++)                                                      \
                for (long t = 0; t < span; t += 16)                                            \
                    __builtin_prefetch(base + 2 * st[4] + a * rs + t);                         \
        if (s == 2 && kw <= 3 && n >= VW) {                                                    \
            if (kw == 3) {                                                                     \
                WALLE_POOL_CARRY(VT, IT, VW, EVEN, ODD, NEXT2, LASTHI)                         \
            } else {                                                                           \
                WALLE_POOL_PAIRS(VT, IT, VW)                                                   \
            }                                                                                  \
            continue;                                                                          \
        }                                                                                      \
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
        WALLE_POOL_TAPS(VT, IT, VW, EVEN)                                                      \
    }

#define WALLE_POOL_ROWS(NAME, ATTR, VT, IT, VW, EVEN, ODD, NEXT2, LASTHI)                      \
ATTR static void NAME(const float* x, float* y, const long* sz, const long* st, int kind,      \
                      float scale, float* v) {                                                 \
    long kh = sz[0], kw = sz[1], n = sz[5], rs = st[0], s = st[5], o = 0;                      \
    long span = (n - 1) * s + kw;                                                              \
    if ((double)sz[2] * sz[3] * sz[4] * kh * span * sizeof(float) > walle_pool_ahead) {        \
        WALLE_POOL_ROWS_LOOP(VT, IT, VW, EVEN, ODD, NEXT2, LASTHI, 1)                          \
    } else {                                                                                   \
        WALLE_POOL_ROWS_LOOP(VT, IT, VW, EVEN, ODD, NEXT2, LASTHI, 0)                          \
    }                                                                                          \
}

WALLE_POOL_ROWS(walle_pool_rows_l2, WALLE_LEVEL_TARGET("avx512f,avx2,fma"), walle_v16, walle_i16,
                16, WALLE_EVEN16, WALLE_ODD16, WALLE_NEXT2_16, WALLE_LASTHI16)
WALLE_POOL_ROWS(walle_pool_rows_l1, WALLE_LEVEL_TARGET("avx2,fma"), walle_v8, walle_i8, 8,
                WALLE_EVEN8, WALLE_ODD8, WALLE_NEXT2_8, WALLE_LASTHI8)
WALLE_POOL_ROWS(walle_pool_rows_l0, , walle_v4, walle_i4, 4, WALLE_EVEN4, WALLE_ODD4,
                WALLE_NEXT2_4, WALLE_LASTHI4)

/* Rows of at most VW outputs whose window columns span VW to 2 VW (SqueezeNet's and
   AlexNet's 27 -> 13 max pools at AVX-512, their 13 -> 6 at AVX2): the KH rows are reduced
   into two vectors, the row's first VW columns and its last VW (overlapping), and each tap
   of every output comes out of that pair by one two-source permute (a table of lanes per
   tap, made once per call); the row is stored under a mask (AVX-512) or whole, the next
   rows' stores covering the lanes past it (AVX2; the last rows, whose vector would reach
   past the output, through a scratch). Any stride, taps and rows in the order of
   walle_pool_rows_*, so the same bits. The row path it replaces ran these rows at the next
   level down, its last vector overlapping, reducing some columns twice: 3x3/2 max pools on
   a Zen 5, one core, interleaved, 256 x 27 x 27 0.38-0.48x the time at AVX-512, 96 x 27 x 27
   0.50-0.51x, 256 x 13 x 13 0.33-0.38x at AVX-512 and AVX2. x86 only (the permutes are
   intrinsics). */
#define WALLE_POOL_SHORT_MOST_TAPS 32
#if defined(__x86_64__) && defined(__GNUC__)
WALLE_INLINE __attribute__((target("avx512f,avx2,fma"))) walle_v16
walle_pool_perm16(walle_v16 lo, walle_v16 hi, walle_i16 idx) {
    return (walle_v16)_mm512_permutex2var_ps((__m512)lo, (__m512i)idx, (__m512)hi);
}
/* Lanes idx of (lo, hi), lanes 0-7 lo's and 8-15 hi's: two one-source permutes and a
   blend (AVX2 has no two-source permute of floats). */
WALLE_INLINE __attribute__((target("avx2,fma"))) walle_v8
walle_pool_perm8(walle_v8 lo, walle_v8 hi, walle_i8 idx) {
    __m256 a = _mm256_permutevar8x32_ps((__m256)lo, (__m256i)idx);
    __m256 b = _mm256_permutevar8x32_ps((__m256)hi, (__m256i)idx);
    return (walle_v8)_mm256_blendv_ps(a, b, (__m256)(idx > 7));
}
#define WALLE_POOL_SHORT(NAME, ATTR, VT, IT, VW, PERM, STORE)                                 \
ATTR static void NAME(const float* x, float* y, const long* sz, const long* st, int kind,      \
                      float scale, float* v) {                                                 \
    long kh = sz[0], kw = sz[1], n = sz[5], rs = st[0], s = st[5], o = 0;                      \
    long span = (n - 1) * s + kw, rows = sz[2] * sz[3] * sz[4];                                \
    IT idx[WALLE_POOL_SHORT_MOST_TAPS];                                                        \
    for (long b = 0; b < kw; b++)                                                              \
        for (int l = 0; l < VW; l++) {                                                         \
            long c = s * (l < n ? l : n - 1) + b; /* the column of tap b of output l */        \
            idx[b][l] = (int)(c < VW ? c : c - (span - VW) + VW);                              \
        }                                                                                      \
    for (long i = 0; i < sz[2]; i++)                                                           \
    for (long j = 0; j < sz[3]; j++)                                                           \
    for (long q = 0; q < sz[4]; q++, o++) {                                                    \
        const float* base = x + i * st[2] + j * st[3] + q * st[4];                             \
        VT lo, hi, acc, tap;                                                                   \
        WALLE_POOL_VERT(VT, IT, lo, base)                                                      \
        WALLE_POOL_VERT(VT, IT, hi, base + span - VW)                                          \
        acc = PERM(lo, hi, idx[0]);                                                            \
        for (long b = 1; b < kw; b++) {                                                        \
            tap = PERM(lo, hi, idx[b]);                                                        \
            WALLE_POOL_APPLY(VT, IT, acc, tap)                                                 \
        }                                                                                      \
        if (kind == 1) acc *= scale;                                                           \
        STORE(VT, VW, y + o * n, acc, (rows - o) * n < VW)                                     \
    }                                                                                          \
}
#define WALLE_POOL_STORE_MASK(VT, VW, DST, ACC, END)                                           \
    _mm512_mask_storeu_ps((DST), (__mmask16)((1u << n) - 1), (__m512)(ACC));
#define WALLE_POOL_STORE_OVER(VT, VW, DST, ACC, END)                                           \
    if (END) {                                                                                \
        memcpy(v, &(ACC), sizeof(VT));                                                         \
        for (long t = 0; t < n; t++) (DST)[t] = v[t];                                          \
    } else {                                                                                   \
        memcpy((DST), &(ACC), sizeof(VT));                                                     \
    }
WALLE_POOL_SHORT(walle_pool_short_l2, WALLE_LEVEL_TARGET("avx512f,avx2,fma"), walle_v16,
                 walle_i16, 16, walle_pool_perm16, WALLE_POOL_STORE_MASK)
WALLE_POOL_SHORT(walle_pool_short_l1, WALLE_LEVEL_TARGET("avx2,fma"), walle_v8, walle_i8, 8,
                 walle_pool_perm8, WALLE_POOL_STORE_OVER)
#define WALLE_POOL_SHORT_X86 1
#endif

/* Whether walle_pool_short_* compute a region of walle_pool_rows_fit at vectors of VW. */
static inline int walle_pool_short_fit(const long* sz, const long* st, long vw) {
    long span = (sz[5] - 1) * st[5] + sz[1];
#ifdef WALLE_POOL_SHORT_X86
    return sz[5] <= vw && span >= vw && span <= 2 * vw && sz[1] <= WALLE_POOL_SHORT_MOST_TAPS;
#else
    (void)span, (void)vw;
    return 0;
#endif
}

/* dst[t] = op over `taps` of src[t + a * step], t < len, in whole vectors of VW (the last
   one overlapping), or of 4 where len is shorter than VW, or scalars (under 4: a scalar max
   branches, and the border rows of 14x14 planes at AVX-512 made a pool 2.5x slower). */
#define WALLE_POOL_PASS_V(VT, IT, VW, dst, src, len, taps, step)                               \
        for (long t_ = 0;; t_ += VW) {                                                         \
            if (t_ > (len) - VW) t_ = (len) - VW;                                              \
            VT acc, r;                                                                         \
            memcpy(&acc, (src) + t_, sizeof(VT));                                              \
            for (long a_ = 1; a_ < (taps); a_++) {                                             \
                memcpy(&r, (src) + a_ * (step) + t_, sizeof(VT));                              \
                WALLE_POOL_APPLY(VT, IT, acc, r)                                               \
            }                                                                                  \
            memcpy((dst) + t_, &acc, sizeof(VT));                                              \
            if (t_ == (len) - VW) break;                                                       \
        }
#define WALLE_POOL_PASS(VT, IT, VW, dst, src, len, taps, step)                                 \
    if ((len) >= VW) {                                                                         \
        WALLE_POOL_PASS_V(VT, IT, VW, dst, src, len, taps, step)                               \
    } else if ((len) >= 4) {                                                                   \
        WALLE_POOL_PASS_V(walle_v4, walle_i4, 4, dst, src, len, taps, step)                    \
    } else {                                                                                   \
        for (long t_ = 0; t_ < (len); t_++) {                                                  \
            float acc = (src)[t_];                                                             \
            for (long a_ = 1; a_ < (taps); a_++)                                               \
                acc = walle_pool_op1(acc, (src)[a_ * (step) + t_], kind);                      \
            (dst)[t_] = acc;                                                                   \
        }                                                                                      \
    }

/* Stride 1, planes at one pitch P = st[3]: a run of whole planes (up to WALLE_POOL_RUN floats)
   as one flat array: the KH rows pass and the KW taps pass each one vector loop over every
   position a window could start at (the rows between two planes are computed and never
   read), then the output rows are copied out. Small planes (7x7 to 16x16) cost one loop
   per pass per run instead of per plane. ``u`` holds 2 * (max(run, P) + KW + VW) floats. */
#define WALLE_POOL_RUN 4096
#define WALLE_POOL_PLANES(NAME, ATTR, VT, IT, VW)                                              \
ATTR static void NAME(const float* x, float* y, const long* sz, const long* st, int kind,      \
                      float scale, float* u) {                                                 \
    long kh = sz[0], kw = sz[1], n = sz[5], oh = sz[4], rs = st[0], pitch = st[3], o = 0;      \
    long planes = sz[2] * sz[3];                                                               \
    long run = WALLE_POOL_RUN / pitch > 1 ? WALLE_POOL_RUN / pitch : 1;                        \
    float* z = u + run * pitch + kw + VW;                                                      \
    for (long g0 = 0; g0 < planes; g0 += run) {                                                \
        long gn = planes - g0 < run ? planes - g0 : run;                                       \
        const float* base = x + g0 * pitch;                                                    \
        long lz = (gn - 1) * pitch + (oh - 1) * rs + n;                                        \
        WALLE_POOL_PASS(VT, IT, VW, u, base, lz + kw - 1, kh, rs)                              \
        WALLE_POOL_PASS(VT, IT, VW, z, u, lz, kw, 1)                                           \
        for (long g = 0; g < gn; g++)                                                          \
            for (long q = 0; q < oh; q++, o++) {                                               \
                float* dst = y + o * n;                                                        \
                const float* src = z + g * pitch + q * rs;                                     \
                if (kind == 1) {                                                               \
                    for (long t = 0; t < n; t++) dst[t] = src[t] * scale;                      \
                } else {                                                                       \
                    memcpy(dst, src, n * sizeof(float));                                       \
                }                                                                              \
            }                                                                                  \
    }                                                                                          \
}

WALLE_POOL_PLANES(walle_pool_planes_l2, WALLE_LEVEL_TARGET("avx512f,avx2,fma"), walle_v16,
                  walle_i16, 16)
WALLE_POOL_PLANES(walle_pool_planes_l1, WALLE_LEVEL_TARGET("avx2,fma"), walle_v8, walle_i8, 8)
WALLE_POOL_PLANES(walle_pool_planes_l0, , walle_v4, walle_i4, 4)

/* Pooling a zero- or -inf-bordered tensor without writing it (its pad raster's work): plane
   o of the bordered tensor is the source's rows x cols block at x + base[o] (row stride
   g[4]) placed at row g[5], column g[6]; windows sz = [KH, KW, N, C, OH, OW] at strides g[0]
   (rows) and g[1] (columns: 1 or 2). Per output row, the window rows that lie on the source
   are reduced into ``v`` at the source's columns, the border columns of ``v`` take ``fill``
   (a border row adds nothing: -inf under max, 0 under a sum), then the KW taps run as in
   walle_pool_rows_*. ``v`` holds a bordered row + 2 VW floats. */
#define WALLE_POOL_PADDED(NAME, ATTR, VT, IT, VW, EVEN)                                        \
ATTR static void NAME(const float* x, const long* base, float* y, const long* sz,              \
                      const long* g, int kind, float scale, float fill, float* v) {            \
    long kh = sz[0], kw = sz[1], n = sz[5], sh = g[0], s = g[1], rows = g[2], cols = g[3];     \
    long rs = g[4], top = g[5], left = g[6], o = 0;                                            \
    long span = (n - 1) * s + kw;                                                              \
    long c0 = left < span ? left : span, c1 = left + cols < span ? left + cols : span;         \
    for (long p = 0; p < sz[2] * sz[3]; p++)                                                   \
    for (long q = 0; q < sz[4]; q++, o++) {                                                    \
        long r0 = q * sh - top, a0 = r0 < 0 ? -r0 : 0;                                         \
        long a1 = rows - r0 < kh ? rows - r0 : kh;                                             \
        float* dst = y + o * n;                                                                \
        for (long t = 0; t < c0; t++) v[t] = fill;                                             \
        for (long t = c1; t < span; t++) v[t] = fill;                                          \
        if (a1 > a0 && c1 > c0) {                                                              \
            const float* src = x + base[p] + (r0 + a0) * rs + (c0 - left);                     \
            WALLE_POOL_PASS(VT, IT, VW, v + c0, src, c1 - c0, a1 - a0, rs)                     \
        } else {                                                                               \
            for (long t = c0; t < c1; t++) v[t] = fill;                                        \
        }                                                                                      \
        WALLE_POOL_TAPS(VT, IT, VW, EVEN)                                                      \
    }                                                                                          \
}

WALLE_POOL_PADDED(walle_pool_padded_l2, WALLE_LEVEL_TARGET("avx512f,avx2,fma"), walle_v16,
                  walle_i16, 16, WALLE_EVEN16)
WALLE_POOL_PADDED(walle_pool_padded_l1, WALLE_LEVEL_TARGET("avx2,fma"), walle_v8, walle_i8, 8,
                  WALLE_EVEN8)
WALLE_POOL_PADDED(walle_pool_padded_l0, , walle_v4, walle_i4, 4, WALLE_EVEN4)

/* Windows over small contiguous source planes, read in place, whose stride-1 result with the
   same top and left pads covers every output (walle_pool_same_fit): Inception's and
   GoogLeNet's 3x3/1 pools, whose output has the input's size, and 3x3/2 pools of small
   planes. Each plane is one flat array of H * W floats: the rows pass is one vector loop
   over the rows whose every window row lies on the plane and one per border row (its own
   taps), into ``v``; the taps pass is one vector loop over the whole plane, the lanes whose
   tap falls off the row taking ``fill`` through a mask per tap. At stride 2 that stride-1
   result is written aside and every other row and column of it copied out. Taps and rows
   are taken in the order of walle_pool_padded_*, so the same bits (a sum's border 0 aside).
   A row at a time (walle_pool_padded_*) ran 14x14 planes in scalars at AVX-512 and paid its
   border and loop set-up per row: 576 x 14 x 14 took 3.5x onnxruntime's time inside
   Inception v2 (its 7x7 outputs of stride 2, 7x). ``v`` holds walle_pool_same_scratch
   floats. */
#define WALLE_POOL_SAME(NAME, ATTR, VT, IT, VW)                                                \
ATTR static void NAME(const float* x, const long* base, float* y, const long* sz,              \
                      const long* g, int kind, float scale, float fill, float* v) {            \
    long kh = sz[0], kw = sz[1], h = g[2], w = g[3], top = g[5], left = g[6], hw = h * w;     \
    long s = g[0], ohw = sz[4] * sz[5];                                                        \
    float* rows = v + kw + VW; /* margins: a tap's lanes may read kw before or after */       \
    int* mask = (int*)(rows + hw + kw + VW); /* [b * hw + f]: -1 where tap b of f is on */   \
    float* whole = (float*)(mask + kw * hw); /* stride 2: the stride-1 result */              \
    for (long b = 0; b < kw; b++)                                                              \
        for (long f = 0, c = 0; f < hw; f++, c = c + 1 == w ? 0 : c + 1)                      \
            mask[b * hw + f] = c + b - left >= 0 && c + b - left < w ? -1 : 0;                \
    VT border;                                                                                 \
    for (int l = 0; l < VW; l++) border[l] = fill;                                             \
    for (long p = 0; p < sz[2] * sz[3]; p++) {                                                 \
        const float* xp = x + base[p];                                                         \
        float* dst = s == 1 ? y + p * hw : whole;                                              \
        for (long i0 = 0; i0 < h;) {                                                           \
            long a0 = top > i0 ? top - i0 : 0, a1 = h - i0 + top < kh ? h - i0 + top : kh;    \
            long i1 = i0 + 1;                                                                  \
            if (a0 == 0 && a1 == kh)                                                           \
                while (i1 < h && i1 - top + kh <= h) i1++;                                     \
            WALLE_POOL_PASS(VT, IT, VW, rows + i0 * w, xp + (i0 - top + a0) * w,              \
                            (i1 - i0) * w, a1 - a0, w)                                         \
            i0 = i1;                                                                           \
        }                                                                                      \
        if (hw >= VW) {                                                                        \
            for (long f = 0;; f += VW) {                                                       \
                if (f > hw - VW) f = hw - VW;                                                  \
                VT acc = border, r;                                                            \
                for (long b = 0; b < kw; b++) {                                                \
                    memcpy(&r, rows + f + b - left, sizeof(VT));                               \
                    if (b != left) {                                                           \
                        IT on;                                                                 \
                        memcpy(&on, mask + b * hw + f, sizeof(IT));                            \
                        r = (VT)(((IT)r & on) | ((IT)border & ~on));                           \
                    }                                                                          \
                    if (b == 0) {                                                              \
                        acc = r;                                                               \
                    } else {                                                                   \
                        WALLE_POOL_APPLY(VT, IT, acc, r)                                       \
                    }                                                                          \
                }                                                                              \
                if (kind == 1) acc *= scale;                                                   \
                memcpy(dst + f, &acc, sizeof(VT));                                             \
                if (f == hw - VW) break;                                                       \
            }                                                                                  \
        } else {                                                                               \
            for (long f = 0; f < hw; f++) {                                                    \
                float acc = fill;                                                              \
                for (long b = 0; b < kw; b++) {                                                \
                    float r = mask[b * hw + f] ? rows[f + b - left] : fill;                    \
                    acc = b == 0 ? r : walle_pool_op1(acc, r, kind);                           \
                }                                                                              \
                dst[f] = kind == 1 ? acc * scale : acc;                                        \
            }                                                                                  \
        }                                                                                      \
        if (s == 2) {                                                                          \
            float* out = y + p * ohw;                                                          \
            for (long i = 0; i < sz[4]; i++)                                                   \
                for (long j = 0; j < sz[5]; j++) out[i * sz[5] + j] = whole[2 * i * w + 2 * j]; \
        }                                                                                      \
    }                                                                                          \
}

WALLE_POOL_SAME(walle_pool_same_l2, WALLE_LEVEL_TARGET("avx512f,avx2,fma"), walle_v16,
                walle_i16, 16)
WALLE_POOL_SAME(walle_pool_same_l1, WALLE_LEVEL_TARGET("avx2,fma"), walle_v8, walle_i8, 8)
WALLE_POOL_SAME(walle_pool_same_l0, , walle_v4, walle_i4, 4)

/* Stride-2 windows over contiguous source planes twice as wide as the output (ResNet's,
   Inception's and GoogLeNet's 3x3/2 pad-1 max pools on 112x112 to 14x14 planes), read in
   place: per output row, its window rows reduced into ``rows`` (one vector loop over the
   source row); then one vector loop over the whole output plane for the column taps, each
   vector of outputs taking tap b from the even lanes of two vectors of ``rows`` (its
   output columns are 2j + b - left of a row that is twice their width, so the plane's
   reduced rows back to back are one stride-2 run), the lanes whose column falls off the
   row taking ``fill`` through a mask per tap. Taps and rows in walle_pool_padded_*'s order.
   A row at a time paid the border and loop set-up per output row and ran 14-wide output
   rows in 8-wide vectors: 320 x 28 x 28 -> 14 x 14 took 3.5x onnxruntime's time inside
   Inception v2. ``v`` holds walle_pool_even2_scratch floats. Its taps loop is written out
   as walle_pool_same_*'s is: one macro for both made GCC allocate the stride-1 max loop's
   registers otherwise, 1.13-1.41x slower on 7x7 to 28x28 planes. */
#define WALLE_POOL_EVEN2(NAME, ATTR, VT, IT, VW, EVEN)                                         \
ATTR static void NAME(const float* x, const long* base, float* y, const long* sz,              \
                      const long* g, int kind, float scale, float fill, float* v) {            \
    long kh = sz[0], kw = sz[1], oh = sz[4], ow = sz[5], h = g[2], w = g[3], top = g[5];       \
    long left = g[6], ohw = oh * ow;                                                           \
    float* rows = v + kw + VW; /* margins: a tap's vectors may read kw before or 2 VW after */ \
    int* mask = (int*)(rows + oh * w + kw + 2 * VW); /* [b * ohw + q]: -1 where on the row */ \
    for (long b = 0; b < kw; b++)                                                              \
        for (long q = 0, j = 0; q < ohw; q++, j = j + 1 == ow ? 0 : j + 1)                     \
            mask[b * ohw + q] = 2 * j + b - left >= 0 && 2 * j + b - left < w ? -1 : 0;       \
    VT border;                                                                                 \
    for (int l = 0; l < VW; l++) border[l] = fill;                                             \
    for (long p = 0; p < sz[2] * sz[3]; p++) {                                                 \
        const float* xp = x + base[p];                                                         \
        float* dst = y + p * ohw;                                                              \
        for (long i = 0; i < oh; i++) {                                                        \
            long r0 = 2 * i - top, a0 = r0 < 0 ? -r0 : 0, a1 = h - r0 < kh ? h - r0 : kh;     \
            WALLE_POOL_PASS(VT, IT, VW, rows + i * w, xp + (r0 + a0) * w, w, a1 - a0, w)       \
        }                                                                                      \
        for (long f = 0;; f += VW) {                                                           \
            if (f > ohw - VW) f = ohw - VW;                                                    \
            VT acc = border, r, hi;                                                            \
            for (long b = 0; b < kw; b++) {                                                    \
                memcpy(&r, rows + 2 * f + b - left, sizeof(VT));                               \
                memcpy(&hi, rows + 2 * f + b - left + VW, sizeof(VT));                          \
                r = EVEN(r, hi);                                                               \
                IT on;                                                                         \
                memcpy(&on, mask + b * ohw + f, sizeof(IT));                                   \
                r = (VT)(((IT)r & on) | ((IT)border & ~on));                                   \
                if (b == 0) {                                                                  \
                    acc = r;                                                                   \
                } else {                                                                       \
                    WALLE_POOL_APPLY(VT, IT, acc, r)                                           \
                }                                                                              \
            }                                                                                  \
            if (kind == 1) acc *= scale;                                                       \
            memcpy(dst + f, &acc, sizeof(VT));                                                 \
            if (f == ohw - VW) break;                                                          \
        }                                                                                      \
    }                                                                                          \
}

WALLE_POOL_EVEN2(walle_pool_even2_l2, WALLE_LEVEL_TARGET("avx512f,avx2,fma"), walle_v16,
                 walle_i16, 16, WALLE_EVEN16)
WALLE_POOL_EVEN2(walle_pool_even2_l1, WALLE_LEVEL_TARGET("avx2,fma"), walle_v8, walle_i8, 8,
                 WALLE_EVEN8)
WALLE_POOL_EVEN2(walle_pool_even2_l0, , walle_v4, walle_i4, 4, WALLE_EVEN4)

/* Source planes of at most this many floats take walle_pool_even2_*: alone, one thread,
   against a row at a time, 28x28 -> 14x14 ran in 0.46x the time at AVX-512 and 0.84x at
   AVX2, 14x14 -> 7x7 0.43x at AVX2 (at AVX-512 0.77-0.79x the time of the stride-1
   whole-plane path), 56x56 -> 28x28 0.95-0.97x; 112x112 -> 56x56 1.14-1.21x (its reduced
   rows, 25 KB, are read back from L1 twice over). */
#define WALLE_POOL_EVEN2_MOST 4096

/* Whether walle_pool_even2_* compute a bordered pooling (walle_pool_padded_*'s sz and g):
   stride 2 both ways over contiguous rows twice the output's width, every window with a
   source row and column, source planes of at most WALLE_POOL_EVEN2_MOST floats and an
   output plane of at least 16 (one AVX-512 vector). */
static inline int walle_pool_even2_fit(const long* sz, const long* g) {
    return g[0] == 2 && g[1] == 2 && g[4] == g[3] && g[3] == 2 * sz[5] && g[5] < sz[0]
           && g[6] < sz[1] && 2 * (sz[4] - 1) - g[5] < g[2] && sz[4] * sz[5] >= 16
           && g[2] * g[3] <= WALLE_POOL_EVEN2_MOST;
}

/* Floats walle_pool_even2_* need in ``v``: the plane's reduced rows with margins, then one
   mask of the output plane per tap (32-bit ints). */
static inline long walle_pool_even2_scratch(const long* sz, const long* g) {
    long ohw = sz[4] * sz[5];
    return sz[4] * g[3] + 2 * sz[1] + 3 * 16 + sz[1] * ohw + 16;
}

/* Planes of at most this many floats take walle_pool_same_* at stride 2, which computes 4x
   the outputs it keeps (whole planes, walle_pool_same_fit) or at stride 1 at the baseline
   level (ops_raster.pyx's dispatch). */
#define WALLE_POOL_SAME_SMALL 256

/* Whether walle_pool_same_* compute a bordered pooling (walle_pool_padded_*'s sz and g): the
   source's rows back to back, windows whose top and left pads leave every window a source
   row and column, and stride 1 with an output the size of the source, or stride 2 on planes
   of at most WALLE_POOL_SAME_SMALL floats whose outputs all start on the source. */
static inline int walle_pool_same_fit(const long* sz, const long* g) {
    if (g[4] != g[3] || g[5] >= sz[0] || g[6] >= sz[1] || g[0] != g[1]) return 0;
    if (g[0] == 1) return sz[4] == g[2] && sz[5] == g[3];
    return g[0] == 2 && g[2] * g[3] <= WALLE_POOL_SAME_SMALL && 2 * (sz[4] - 1) < g[2]
           && 2 * (sz[5] - 1) < g[3];
}

/* Floats walle_pool_same_* need in ``v``: a plane's rows pass with margins, one mask of a
   plane per tap (32-bit ints), and at stride 2 the plane's stride-1 result. */
static inline long walle_pool_same_scratch(const long* sz, const long* g) {
    long hw = g[2] * g[3];
    return 2 * hw + 2 * (sz[1] + 16) + 16 + sz[1] * hw + 16;
}

/* Windows that are each one contiguous run of KH * KW floats, one per plane (a global
   pool: OH = OW = 1, the window's rows back to back): each run reduced in vectors, then its
   lanes and its last floats. The plane-at-a-time path took every tap of the run separately
   (KH + KW passes over the run for one output), 2-3x the time of this read. */
#define WALLE_POOL_FLAT(NAME, ATTR, VT, IT, VW)                                                \
ATTR static void NAME(const float* x, float* y, const long* sz, const long* st, int kind,      \
                      float scale) {                                                           \
    long len = sz[0] * sz[1], o = 0;                                                           \
    for (long i = 0; i < sz[2]; i++)                                                           \
    for (long j = 0; j < sz[3]; j++, o++) {                                                    \
        const float* b = x + i * st[2] + j * st[3];                                            \
        float r = b[0];                                                                        \
        long t = 1;                                                                            \
        if (len >= 2 * VW) {                                                                   \
            VT acc, acc2, v;                                                                   \
            memcpy(&acc, b, sizeof(VT));                                                       \
            memcpy(&acc2, b + VW, sizeof(VT));                                                 \
            for (t = 2 * VW; t + 2 * VW <= len; t += 2 * VW) {                                 \
                memcpy(&v, b + t, sizeof(VT));                                                 \
                WALLE_POOL_APPLY(VT, IT, acc, v)                                               \
                memcpy(&v, b + t + VW, sizeof(VT));                                            \
                WALLE_POOL_APPLY(VT, IT, acc2, v)                                              \
            }                                                                                  \
            WALLE_POOL_APPLY(VT, IT, acc, acc2)                                                \
            r = acc[0];                                                                        \
            for (int l = 1; l < VW; l++) r = walle_pool_op1(r, acc[l], kind);                  \
        }                                                                                      \
        for (; t < len; t++) r = walle_pool_op1(r, b[t], kind);                                \
        y[o] = kind == 1 ? r * scale : r;                                                      \
    }                                                                                          \
}

WALLE_POOL_FLAT(walle_pool_flat_l2, WALLE_LEVEL_TARGET("avx512f,avx2,fma"), walle_v16, walle_i16,
                16)
WALLE_POOL_FLAT(walle_pool_flat_l1, WALLE_LEVEL_TARGET("avx2,fma"), walle_v8, walle_i8, 8)
WALLE_POOL_FLAT(walle_pool_flat_l0, , walle_v4, walle_i4, 4)

/* Whether walle_pool_flat_* compute a region: one output per plane whose window is one
   contiguous run (rows of KW floats back to back, columns at step 1). */
static inline int walle_pool_flat_fit(const long* sz, const long* st) {
    return sz[4] == 1 && sz[5] == 1 && st[1] == 1 && (sz[0] == 1 || st[0] == sz[1]);
}

/* Whether walle_pool_planes_* compute a region: separable windows at stride 1 over rows of
   the input's pitch, planes at one pitch. */
static inline int walle_pool_planes_fit(const long* sz, const long* st) {
    return st[1] == 1 && sz[1] > 1 && st[5] == 1 && st[4] == st[0] && st[3] > 0
           && (sz[2] == 1 || st[2] == sz[3] * st[3]);
}

/* Floats walle_pool_planes_* need in ``u``. */
static inline long walle_pool_planes_scratch(const long* sz, const long* st) {
    long pitch = st[3] > 0 ? st[3] : 1;
    long run = WALLE_POOL_RUN / pitch > 1 ? WALLE_POOL_RUN / pitch : 1;
    return 2 * (run * pitch + sz[1] + 16) + 16;
}

/* Whether walle_pool_rows_* compute a region: separable windows (column step 1, KW > 1) at
   column stride 1 or 2. */
static inline int walle_pool_rows_fit(const long* sz, const long* st) {
    return st[1] == 1 && sz[1] > 1 && (st[5] == 1 || st[5] == 2);
}

/* Floats walle_pool_rows_at's scratch must hold: one reduced row, which the row kernels
   read 2 vectors past. */
static inline long walle_pool_row_scratch(const long* sz, const long* st) {
    return (sz[5] - 1) * st[5] + sz[1] + 48;
}

/* A region of walle_pool_rows_fit at instruction-set ``level`` (2 AVX-512, 1 AVX2, 0 SSE):
   rows of at most a vector by walle_pool_short_*, the others by walle_pool_rows_* at the
   widest level no wider than a row. ``v`` holds walle_pool_row_scratch floats. */
static void walle_pool_rows_at(int level, const float* x, float* y, const long* sz,
                               const long* st, int kind, float scale, float* v) {
#ifdef WALLE_POOL_SHORT_X86
    if (level == 2 && walle_pool_short_fit(sz, st, 16)) {
        walle_pool_short_l2(x, y, sz, st, kind, scale, v);
        return;
    }
    if (level >= 1 && walle_pool_short_fit(sz, st, 8)) {
        walle_pool_short_l1(x, y, sz, st, kind, scale, v);
        return;
    }
#endif
    while (level > 0 && sz[5] < (4L << level)) level--; /* no wider than a row */
    if (WALLE_LEVEL(level) == 2)
        walle_pool_rows_l2(x, y, sz, st, kind, scale, v);
    else if (WALLE_LEVEL(level) == 1)
        walle_pool_rows_l1(x, y, sz, st, kind, scale, v);
    else
        walle_pool_rows_l0(x, y, sz, st, kind, scale, v);
}

#endif

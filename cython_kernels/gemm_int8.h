/* Integer GEMM for quantized matmuls: c[m, n] = float(a @ b) (+ bias, ReLU), where a [m, k]
   holds whole numbers in [0, 255] (floats, converted as they are packed) and b [k, n] whole
   numbers packed once, at build time (ops_int8.pyx), as 8-bit quads or 16-bit pairs.

   The sums are int32 and exact (no rounding until the one conversion to float), so for sums
   below 2**24 in magnitude the result is the float kernels' to the bit, and above it the
   closer one. Four forms, by what the CPU has:

   - WALLE_I8_VNNI: AVX-512 VNNI's vpdpbusd, u8 x s8 quads (b in [-128, 127]) into int32
     lanes, 64 multiply-adds an instruction (4x an fp32 FMA's); 8 rows x 32 columns a tile;
   - WALLE_I8_PAIRS512: AVX-512BW's vpmaddwd on 16-bit pairs (b in [-255, 255]), 32 an
     instruction; 8 x 32;
   - WALLE_I8_PAIRS256: AVX2's vpmaddwd, 16 an instruction (2x an AVX2 FMA's); 4 x 16;
   - WALLE_I8_PAIRS128: SSE2's pmaddwd (NEON and other CPUs: the same in C); 4 x 8.

   AVX2's vpmaddubsw (u8 x s8 pairs into 16 bits) would be 2x vpmaddwd, but it saturates:
   255 * 127 * 2 does not fit, so its sums are not exact (onnxruntime's AVX2 u8s8 path can
   differ from the spec there); the pairs are widened to 16 bits instead.

   a is packed per call into rows of whole quads or pairs (k padded with zeros), rows padded
   to a whole tile; b as [panels][k / group][columns of the panel][group]. */
#ifndef WALLE_GEMM_INT8_H
#define WALLE_GEMM_INT8_H

#include <stdint.h>
#include <string.h>

#include "cpu_level.h"

#ifdef WALLE_X86
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

enum { WALLE_I8_PAIRS128 = 0, WALLE_I8_PAIRS256 = 1, WALLE_I8_PAIRS512 = 2, WALLE_I8_VNNI = 3 };

/* The tiles' accumulators are named, not an array: GCC kept an array's in registers but
   copied each one to another register around every multiply-add (and spilled some), which
   ran the VNNI tile at 60% of its rate. R(r) expands a statement for each row. */
#define WALLE_I8_ROWS8(R) R(0) R(1) R(2) R(3) R(4) R(5) R(6) R(7)
#define WALLE_I8_ROWS4(R) R(0) R(1) R(2) R(3)

/* The widest form this CPU runs at instruction-set level ``level`` (cpu_level.h's), and
   whether b's values (``quads``: all in [-128, 127]) allow the VNNI one. */
static int walle_i8_form(int level, int quads) {
#ifdef WALLE_X86
    unsigned a, b, c, d;
    if (level >= 2 && __get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        int bw = (b >> 30) & 1, vnni = (c >> 11) & 1;
        if (bw && vnni && quads) return WALLE_I8_VNNI;
        if (bw) return WALLE_I8_PAIRS512;
    }
    return level >= 1 ? WALLE_I8_PAIRS256 : WALLE_I8_PAIRS128;
#else
    (void)level;
    (void)quads;
    return WALLE_I8_PAIRS128;
#endif
}

/* Whether this CPU has the VNNI form at all (AVX-512 VNNI and BW, the OS saving ZMM state). */
static int walle_i8_has_vnni(void) {
    return walle_cpu_level() >= 2 && walle_i8_form(2, 1) == WALLE_I8_VNNI;
}

/* Rows of a tile, columns of a panel and values of a group (4: quads, 2: pairs), by form. */
static const int walle_i8_rows[4] = {4, 4, 8, 8};
static const int walle_i8_cols[4] = {8, 16, 32, 32};
static const int walle_i8_group[4] = {2, 2, 2, 4};

typedef struct {
    long m, k, n;     /* c[m, n] = a[m, k] @ b[k, n] */
    long lda, ldc;    /* a's and c's row strides (floats) */
    long kg;          /* groups per packed row: ceil(k / group) */
    int form;         /* WALLE_I8_* */
    const float* a;
    void* apack;      /* [ceil(m / rows) * rows][kg * group] u8 (VNNI) or int16 */
    const void* bpack;
    float* c;
    const float* bias; /* NULL, or per column (bias_mode 1) or per row (2) */
    int bias_mode;
    int relu;
} walle_i8_gemm;

/* a's rows as whole numbers in [0, 255] (saturated: a value outside came from no quantizer,
   but must not wrap; NaN gives 0), converted row by row, contiguously. GCC left the plain
   loop scalar (1.1 ns a value: 37 of a 32 x 1024 x 32 product's 42 us), hence the
   intrinsics. */
static inline int32_t walle_i8_whole(float v) {
    v = v > 0.0f ? v : 0.0f;
    return (int32_t)(v < 255.0f ? v : 255.0f);
}

#ifdef WALLE_X86
WALLE_LEVEL_TARGET("avx512f,avx512bw")
static void walle_i8_pack512(const walle_i8_gemm* g) {
    long width = g->kg * walle_i8_group[g->form], k = g->k;
    __m512 zero = _mm512_setzero_ps(), top = _mm512_set1_ps(255.0f);
    for (long i = 0; i < g->m; i++) {
        const float* src = g->a + i * g->lda;
        long j = 0;
        if (g->form == WALLE_I8_VNNI) {
            uint8_t* dst = (uint8_t*)g->apack + i * width;
            for (; j + 16 <= k; j += 16) {  /* max(v, 0) is 0 for NaN: the second operand */
                __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_loadu_ps(src + j), zero), top);
                _mm_storeu_si128((__m128i*)(dst + j), _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(v)));
            }
            for (; j < k; j++) dst[j] = (uint8_t)walle_i8_whole(src[j]);
        } else {
            int16_t* dst = (int16_t*)g->apack + i * width;
            for (; j + 16 <= k; j += 16) {
                __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_loadu_ps(src + j), zero), top);
                _mm256_storeu_si256((__m256i*)(dst + j),
                                    _mm512_cvtepi32_epi16(_mm512_cvttps_epi32(v)));
            }
            for (; j < k; j++) dst[j] = (int16_t)walle_i8_whole(src[j]);
        }
    }
}

WALLE_LEVEL_TARGET("avx2")
static void walle_i8_pack256(const walle_i8_gemm* g) {
    long width = g->kg * 2, k = g->k;
    __m256 zero = _mm256_setzero_ps(), top = _mm256_set1_ps(255.0f);
    for (long i = 0; i < g->m; i++) {
        const float* src = g->a + i * g->lda;
        int16_t* dst = (int16_t*)g->apack + i * width;
        long j = 0;
        for (; j + 8 <= k; j += 8) {
            __m256 v = _mm256_min_ps(_mm256_max_ps(_mm256_loadu_ps(src + j), zero), top);
            __m256i w = _mm256_cvttps_epi32(v);
            __m128i h = _mm_packs_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
            _mm_storeu_si128((__m128i*)(dst + j), h);
        }
        for (; j < k; j++) dst[j] = (int16_t)walle_i8_whole(src[j]);
    }
}
#endif

static void walle_i8_pack128(const walle_i8_gemm* g) {
    long width = g->kg * 2;
    for (long i = 0; i < g->m; i++) {
        const float* src = g->a + i * g->lda;
        int16_t* dst = (int16_t*)g->apack + i * width;
        for (long j = 0; j < g->k; j++) dst[j] = (int16_t)walle_i8_whole(src[j]);
    }
}

/* The int32 tile t [rows][cols], its first mr rows and nr columns, into dst (rows ldc
   apart) as float, plus the bias (per column, per row, or none), through ReLU (which keeps
   a NaN bias). */
static inline void walle_i8_store(const int32_t* t, int cols, long mr, long nr, float* dst,
                                  long ldc, const float* col_bias, const float* row_bias,
                                  int relu) {
    for (long r = 0; r < mr; r++) {
        float* out = dst + r * ldc;
        const int32_t* src = t + r * cols;
        float shift = row_bias ? row_bias[r] : 0.0f;
        for (long j = 0; j < nr; j++) {
            float v = (float)src[j];
            if (col_bias) v += col_bias[j];
            else if (row_bias) v += shift;
            if (relu && v < 0.0f) v = 0.0f;
            out[j] = v;
        }
    }
}

#ifdef WALLE_X86
/* walle_i8_store for the 32-column tiles at AVX-512 and the 16-column ones at AVX2: the same
   conversion, sums and ReLU a vector at a time (the plain loop, compiled at the baseline,
   took a 1x1 conv over 64 channels (16 steps a tile) 25% of its time). */
WALLE_LEVEL_TARGET("avx512f")
static void walle_i8_store512(const int32_t* t, long mr, long nr, float* dst, long ldc,
                              const float* col_bias, const float* row_bias, int relu) {
    __mmask16 m0 = nr >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? (__mmask16)0xffff : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
    __m512 zero = _mm512_setzero_ps();
    __m512 cb0 = col_bias ? _mm512_maskz_loadu_ps(m0, col_bias) : zero;
    __m512 cb1 = col_bias ? _mm512_maskz_loadu_ps(m1, col_bias + 16) : zero;
    for (long r = 0; r < mr; r++) {
        __m512 v0 = _mm512_cvtepi32_ps(_mm512_loadu_si512(t + r * 32));
        __m512 v1 = _mm512_cvtepi32_ps(_mm512_loadu_si512(t + r * 32 + 16));
        if (col_bias) {
            v0 = _mm512_add_ps(v0, cb0);
            v1 = _mm512_add_ps(v1, cb1);
        } else if (row_bias) {
            __m512 shift = _mm512_set1_ps(row_bias[r]);
            v0 = _mm512_add_ps(v0, shift);
            v1 = _mm512_add_ps(v1, shift);
        }
        if (relu) { /* below 0 to 0; NaN compares false and stays */
            v0 = _mm512_mask_mov_ps(v0, _mm512_cmp_ps_mask(v0, zero, _CMP_LT_OQ), zero);
            v1 = _mm512_mask_mov_ps(v1, _mm512_cmp_ps_mask(v1, zero, _CMP_LT_OQ), zero);
        }
        _mm512_mask_storeu_ps(dst + r * ldc, m0, v0);
        _mm512_mask_storeu_ps(dst + r * ldc + 16, m1, v1);
    }
}

WALLE_LEVEL_TARGET("avx2")
static void walle_i8_store256(const int32_t* t, long mr, long nr, float* dst, long ldc,
                              const float* col_bias, const float* row_bias, int relu) {
    __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr > 8 ? 8 : (int)nr), lanes);
    __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr > 16 ? 8 : (int)nr - 8), lanes);
    __m256 zero = _mm256_setzero_ps();
    __m256 cb0 = col_bias ? _mm256_maskload_ps(col_bias, m0) : zero;
    __m256 cb1 = col_bias ? _mm256_maskload_ps(col_bias + 8, m1) : zero;
    for (long r = 0; r < mr; r++) {
        __m256 v0 = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i*)(t + r * 16)));
        __m256 v1 = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i*)(t + r * 16 + 8)));
        if (col_bias) {
            v0 = _mm256_add_ps(v0, cb0);
            v1 = _mm256_add_ps(v1, cb1);
        } else if (row_bias) {
            __m256 shift = _mm256_set1_ps(row_bias[r]);
            v0 = _mm256_add_ps(v0, shift);
            v1 = _mm256_add_ps(v1, shift);
        }
        if (relu) {
            v0 = _mm256_blendv_ps(v0, zero, _mm256_cmp_ps(v0, zero, _CMP_LT_OQ));
            v1 = _mm256_blendv_ps(v1, zero, _mm256_cmp_ps(v1, zero, _CMP_LT_OQ));
        }
        _mm256_maskstore_ps(dst + r * ldc, m0, v0);
        _mm256_maskstore_ps(dst + r * ldc + 8, m1, v1);
    }
}
#endif

/* The tile's store at its form's width. */
static inline void walle_i8_store_form(int form, const int32_t* t, int cols, long mr, long nr,
                                       float* dst, long ldc, const float* col_bias,
                                       const float* row_bias, int relu) {
#ifdef WALLE_X86
    if (form >= WALLE_I8_PAIRS512) {
        walle_i8_store512(t, mr, nr, dst, ldc, col_bias, row_bias, relu);
        return;
    }
    if (form == WALLE_I8_PAIRS256) {
        walle_i8_store256(t, mr, nr, dst, ldc, col_bias, row_bias, relu);
        return;
    }
#endif
    walle_i8_store(t, cols, mr, nr, dst, ldc, col_bias, row_bias, relu);
}

/* A tile: ROWS rows of the broadcast side a (``width`` values apart, a group of 32 bits at
   a time) times a panel of 2 vectors of columns of b (a group per column and step), into
   t [ROWS][2 vectors]. One body for every form; each form names its pieces first
   (WALLE_I8_T_*: the vector type, b's elements per step, load, broadcast, zero, store, and
   the multiply-add of a broadcast v into an accumulator c with b's vector w). */
#define WALLE_I8_T_ZERO(r) WALLE_I8_T_VT c##r##0 = WALLE_I8_T_SETZERO(), c##r##1 = c##r##0;
#define WALLE_I8_T_DOT(r)                                                                    \
    {                                                                                        \
        int32_t q;                                                                           \
        memcpy(&q, a + r * width + s * (4 / sizeof *a), 4);                                  \
        WALLE_I8_T_VT v = WALLE_I8_T_SET1(q);                                                \
        c##r##0 = WALLE_I8_T_MAC(c##r##0, v, b0);                                            \
        c##r##1 = WALLE_I8_T_MAC(c##r##1, v, b1);                                            \
    }
#define WALLE_I8_T_STORE(r)                                                                  \
    WALLE_I8_T_STOREU(t + r * 2 * WALLE_I8_T_LANES, c##r##0);                                \
    WALLE_I8_T_STOREU(t + r * 2 * WALLE_I8_T_LANES + WALLE_I8_T_LANES, c##r##1);
#define WALLE_I8_TILE(NAME, ATTR, TA, TB, ROWS, PREFETCH)                                    \
    ATTR static void NAME(const TA* a, long width, const TB* b, long kg, int32_t* t) {       \
        ROWS(WALLE_I8_T_ZERO)                                                                \
        for (long s = 0; s < kg; s++) {                                                      \
            const TB* bs = b + s * 2 * WALLE_I8_T_LANES * (4 / sizeof *b);                   \
            WALLE_I8_T_VT b0 = WALLE_I8_T_LOADU(bs);                                         \
            WALLE_I8_T_VT b1 = WALLE_I8_T_LOADU(bs + WALLE_I8_T_LANES * (4 / sizeof *b));    \
            if (PREFETCH) { /* the panel 8 steps on: b's first tile of rows reads it from    \
                               L3 (a [1024, 1024] b is 1 MiB, an L2): 5% of a dense layer */ \
                _mm_prefetch((const char*)bs + 1024, _MM_HINT_T0);                          \
                _mm_prefetch((const char*)bs + 1088, _MM_HINT_T0);                          \
            }                                                                                \
            ROWS(WALLE_I8_T_DOT)                                                             \
        }                                                                                    \
        ROWS(WALLE_I8_T_STORE)                                                               \
    }

#ifdef WALLE_X86
#define WALLE_I8_T_VT __m512i
#define WALLE_I8_T_LANES 16
#define WALLE_I8_T_SETZERO _mm512_setzero_si512
#define WALLE_I8_T_SET1 _mm512_set1_epi32
#define WALLE_I8_T_LOADU(p) _mm512_loadu_si512(p)
#define WALLE_I8_T_STOREU(p, v) _mm512_storeu_si512(p, v)
/* VNNI, 8 x 32: a's u8 quads broadcast (vpdpbusd's unsigned side) against b's s8 ones */
#define WALLE_I8_T_MAC(c, v, w) _mm512_dpbusd_epi32(c, v, w)
WALLE_I8_TILE(walle_i8_tile_vnni, WALLE_LEVEL_TARGET("avx512f,avx512bw,avx512vnni"), uint8_t,
              int8_t, WALLE_I8_ROWS8, 1)
#undef WALLE_I8_T_MAC
/* the conv form's: a the weights' s8 quads, b the columns' u8 ones (the unsigned side) */
#define WALLE_I8_T_MAC(c, v, w) _mm512_dpbusd_epi32(c, w, v)
WALLE_I8_TILE(walle_i8_tile_vnni_left, WALLE_LEVEL_TARGET("avx512f,avx512bw,avx512vnni"),
              int8_t, uint8_t, WALLE_I8_ROWS8, 1)
#undef WALLE_I8_T_MAC
/* 16-bit pairs, 8 x 32 (AVX-512BW) */
#define WALLE_I8_T_MAC(c, v, w) _mm512_add_epi32(c, _mm512_madd_epi16(v, w))
WALLE_I8_TILE(walle_i8_tile_pairs512, WALLE_LEVEL_TARGET("avx512f,avx512bw"), int16_t,
              int16_t, WALLE_I8_ROWS8, 0)
#undef WALLE_I8_T_MAC
#undef WALLE_I8_T_VT
#undef WALLE_I8_T_LANES
#undef WALLE_I8_T_SETZERO
#undef WALLE_I8_T_SET1
#undef WALLE_I8_T_LOADU
#undef WALLE_I8_T_STOREU

/* 16-bit pairs, 4 x 16 (AVX2; an array of accumulators ran at 0.9x, 6 rows, which fill the
   16 registers, at 0.66x: 32 x 1024 x 1024, Zen 4) */
#define WALLE_I8_T_VT __m256i
#define WALLE_I8_T_LANES 8
#define WALLE_I8_T_SETZERO _mm256_setzero_si256
#define WALLE_I8_T_SET1 _mm256_set1_epi32
#define WALLE_I8_T_LOADU(p) _mm256_loadu_si256((const __m256i*)(p))
#define WALLE_I8_T_STOREU(p, v) _mm256_storeu_si256((__m256i*)(p), v)
#define WALLE_I8_T_MAC(c, v, w) _mm256_add_epi32(c, _mm256_madd_epi16(v, w))
WALLE_I8_TILE(walle_i8_tile_pairs256, WALLE_LEVEL_TARGET("avx2"), int16_t, int16_t,
              WALLE_I8_ROWS4, 0)
#undef WALLE_I8_T_MAC
#undef WALLE_I8_T_VT
#undef WALLE_I8_T_LANES
#undef WALLE_I8_T_SETZERO
#undef WALLE_I8_T_SET1
#undef WALLE_I8_T_LOADU
#undef WALLE_I8_T_STOREU
#endif

/* 16-bit pairs, 4 x 8: SSE2's pmaddwd, or the same sums in C */
#if defined(WALLE_X86) || defined(__SSE2__)
#define WALLE_I8_T_VT __m128i
#define WALLE_I8_T_LANES 4
#define WALLE_I8_T_SETZERO _mm_setzero_si128
#define WALLE_I8_T_SET1 _mm_set1_epi32
#define WALLE_I8_T_LOADU(p) _mm_loadu_si128((const __m128i*)(p))
#define WALLE_I8_T_STOREU(p, v) _mm_storeu_si128((__m128i*)(p), v)
#define WALLE_I8_T_MAC(c, v, w) _mm_add_epi32(c, _mm_madd_epi16(v, w))
WALLE_I8_TILE(walle_i8_tile_pairs128, , int16_t, int16_t, WALLE_I8_ROWS4, 0)
#else
static void walle_i8_tile_pairs128(const int16_t* a, long width, const int16_t* b, long kg,
                                   int32_t* t) {
    int32_t c[4][8] = {{0}};
    for (long s = 0; s < kg; s++) {
        const int16_t* bs = b + s * 16;
        for (int r = 0; r < 4; r++) {
            int32_t a0 = a[r * width + 2 * s], a1 = a[r * width + 2 * s + 1];
            for (int j = 0; j < 8; j++) c[r][j] += a0 * bs[2 * j] + a1 * bs[2 * j + 1];
        }
    }
    memcpy(t, c, sizeof c);
}
#endif
#undef WALLE_I8_T_MAC
#undef WALLE_I8_T_VT
#undef WALLE_I8_T_LANES
#undef WALLE_I8_T_SETZERO
#undef WALLE_I8_T_SET1
#undef WALLE_I8_T_LOADU
#undef WALLE_I8_T_STOREU

/* Packs a (every row, once per call): before walle_i8_run. */
static void walle_i8_pack(const walle_i8_gemm* g) {
#ifdef WALLE_X86
    if (g->form >= WALLE_I8_PAIRS512) walle_i8_pack512(g);
    else if (g->form == WALLE_I8_PAIRS256) walle_i8_pack256(g);
    else
#endif
        walle_i8_pack128(g);
}

/* Panels [p0, p1) of c: every tile of rows of each. */
static void walle_i8_run(const walle_i8_gemm* g, long p0, long p1) {
    int form = g->form, rows = walle_i8_rows[form], cols = walle_i8_cols[form];
    long width = g->kg * walle_i8_group[form];
    long tiles = (g->m + rows - 1) / rows;
    int32_t t[8 * 32] __attribute__((aligned(64)));
    for (long p = p0; p < p1; p++) {
        for (long i = 0; i < tiles; i++) {
#ifdef WALLE_X86
            if (form == WALLE_I8_VNNI) {
                const uint8_t* a = (const uint8_t*)g->apack + i * rows * width;
                const int8_t* b = (const int8_t*)g->bpack + p * g->kg * 128;
                walle_i8_tile_vnni(a, width, b, g->kg, t);
            } else if (form == WALLE_I8_PAIRS512) {
                const int16_t* a = (const int16_t*)g->apack + i * rows * width;
                const int16_t* b = (const int16_t*)g->bpack + p * g->kg * 64;
                walle_i8_tile_pairs512(a, width, b, g->kg, t);
            } else if (form == WALLE_I8_PAIRS256) {
                const int16_t* a = (const int16_t*)g->apack + i * rows * width;
                const int16_t* b = (const int16_t*)g->bpack + p * g->kg * 32;
                walle_i8_tile_pairs256(a, width, b, g->kg, t);
            } else
#endif
            {
                const int16_t* a = (const int16_t*)g->apack + i * rows * width;
                const int16_t* b = (const int16_t*)g->bpack + p * g->kg * 16;
                walle_i8_tile_pairs128(a, width, b, g->kg, t);
            }
            long i0 = i * rows, j0 = p * cols;
            walle_i8_store_form(form, t, cols, g->m - i0 < rows ? g->m - i0 : rows,
                           g->n - j0 < cols ? g->n - j0 : cols, g->c + i0 * g->ldc + j0, g->ldc,
                           g->bias_mode == 1 ? g->bias + j0 : NULL,
                           g->bias_mode == 2 ? g->bias + i0 : NULL, g->relu);
        }
    }
}

/* The conv form: y[m, n] = w[m, k] @ x[k, n] (+ bias per row, ReLU), w the constant
   weights (packed once, as rows: the broadcast side) and x an image's im2col columns of
   quantized values (whole numbers in [0, 255], floats), packed per call a chunk of panels at
   a time, [panel][k / group][cols][group], so that a chunk stays in L2 while every tile of
   weight rows passes over it.

   x is read through two tables: column j of row r is x[rowoff[r] + pixoff[j]]. For a matrix
   of columns these are r * n and j; for a conv read in place (no im2col matrix: a 3x3
   conv's is 9x its input, written and read back through L3) rowoff is a filter tap's offset
   (channel, kh, kw) and pixoff an output pixel's (oh, ow) in the padded input. A vector's
   run of columns that lies along one row of x (``run`` set: pixoff rises by 1 across it) is
   one masked load; any other (a run across an output row's end, a strided conv) a gather. */
typedef struct {
    long m, k, n;    /* one image's product: n output pixels */
    long ldy;        /* y's row stride (floats) */
    long kg;
    int form;
    const void* wpack; /* [ceil(m / rows) * rows][kg * group] int8 (VNNI) or int16 */
    const float* bias; /* per row, or NULL */
    int relu;
    const long* rowoff;    /* [k] */
    const int32_t* pixoff; /* [panels * cols] (0 past n) */
    const uint8_t* run;    /* [panels * cols / lanes]: a vector of columns is one run of x */
} walle_i8_conv;

/* The columns [j0, j0 + nr) of rows s * group + e as one vector of quads or pairs: rows past
   k and columns past nr give 0. */
#ifdef WALLE_X86
WALLE_LEVEL_TARGET("avx512f,avx512bw")
static inline __m512i walle_i8_group512(const walle_i8_conv* g, const float* x, long s, long j0,
                                        long nr, int group) {
    __mmask16 cols = nr >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1);
    __m512 zero = _mm512_setzero_ps(), top = _mm512_set1_ps(255.0f);
    __m512i q = _mm512_setzero_si512();
    int run = g->run[j0 / 16];
    __m512i at = _mm512_maskz_loadu_epi32(cols, g->pixoff + j0);
    for (int e = 0; e < group; e++) {
        long row = s * group + e;
        if (row >= g->k) break;
        const float* base = x + g->rowoff[row];
        __m512 v = run ? _mm512_maskz_loadu_ps(cols, base + g->pixoff[j0])
                       : _mm512_mask_i32gather_ps(zero, cols, at, base, 4);
        v = _mm512_min_ps(_mm512_max_ps(v, zero), top);
        q = _mm512_or_si512(q, _mm512_slli_epi32(_mm512_cvttps_epi32(v), 32 / group * e));
    }
    return q;
}

WALLE_LEVEL_TARGET("avx512f,avx512bw")
static void walle_i8_conv_pack512(const walle_i8_conv* g, const float* x, void* xpack, long p0,
                                  long p1) {
    int group = walle_i8_group[g->form];
    int32_t* out = (int32_t*)xpack; /* a quad or pair is 32 bits: 32 of them a row of a panel */
    /* along x's rows (the panels inner): down a panel's columns first read 4 KiB-apart runs
       of 128 bytes, half a 3x3 conv's time over a 56 x 56 plane */
    for (long s = 0; s < g->kg; s++)
        for (long p = p0; p < p1; p++)
            for (int h = 0; h < 2; h++) {
                long j0 = p * 32 + 16 * h, nr = g->n - j0;
                __m512i q = nr > 0 ? walle_i8_group512(g, x, s, j0, nr, group)
                                   : _mm512_setzero_si512();
                _mm512_storeu_si512(out + ((p - p0) * g->kg + s) * 32 + 16 * h, q);
            }
}

WALLE_LEVEL_TARGET("avx2")
static void walle_i8_conv_pack256(const walle_i8_conv* g, const float* x, void* xpack, long p0,
                                  long p1) {
    int32_t* out = (int32_t*)xpack;
    __m256 zero = _mm256_setzero_ps(), top = _mm256_set1_ps(255.0f);
    __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (long s = 0; s < g->kg; s++)
        for (long p = p0; p < p1; p++)
            for (int h = 0; h < 2; h++) {
                long j0 = p * 16 + 8 * h, nr = g->n - j0;
                __m256i q = _mm256_setzero_si256();
                __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr > 8 ? 8 : (int)nr), lanes);
                int run = nr > 0 && g->run[j0 / 8];
                __m256i at = nr > 0 ? _mm256_maskload_epi32(g->pixoff + j0, mask) : mask;
                for (int e = 0; e < 2 && nr > 0; e++) {
                    long row = 2 * s + e;
                    if (row >= g->k) break;
                    const float* base = x + g->rowoff[row];
                    __m256 v = run ? _mm256_maskload_ps(base + g->pixoff[j0], mask)
                                   : _mm256_mask_i32gather_ps(zero, base, at,
                                                              _mm256_castsi256_ps(mask), 4);
                    v = _mm256_min_ps(_mm256_max_ps(v, zero), top);
                    q = _mm256_or_si256(q, _mm256_slli_epi32(_mm256_cvttps_epi32(v), 16 * e));
                }
                _mm256_storeu_si256((__m256i*)(out + ((p - p0) * g->kg + s) * 16 + 8 * h), q);
            }
}
#endif

static void walle_i8_conv_pack128(const walle_i8_conv* g, const float* x, void* xpack, long p0,
                                  long p1) {
    int16_t* out = (int16_t*)xpack;
    for (long s = 0; s < g->kg; s++)
        for (long p = p0; p < p1; p++)
            for (int j = 0; j < 8; j++)
                for (int e = 0; e < 2; e++) {
                    long row = 2 * s + e, col = p * 8 + j;
                    int16_t v = 0;
                    if (row < g->k && col < g->n)
                        v = (int16_t)walle_i8_whole(x[g->rowoff[row] + g->pixoff[col]]);
                    out[(((p - p0) * g->kg + s) * 8 + j) * 2 + e] = v;
                }
}

/* Panels [p0, p1) of one image: x packed into xpack, then every tile of weight rows over
   them. */
static void walle_i8_conv_run(const walle_i8_conv* g, const float* x, float* y, void* xpack,
                              long p0, long p1) {
    int form = g->form, rows = walle_i8_rows[form], cols = walle_i8_cols[form];
    int group = walle_i8_group[form];
    long width = g->kg * group, tiles = (g->m + rows - 1) / rows;
    int32_t t[8 * 32] __attribute__((aligned(64)));
#ifdef WALLE_X86
    if (form >= WALLE_I8_PAIRS512) walle_i8_conv_pack512(g, x, xpack, p0, p1);
    else if (form == WALLE_I8_PAIRS256) walle_i8_conv_pack256(g, x, xpack, p0, p1);
    else
#endif
        walle_i8_conv_pack128(g, x, xpack, p0, p1);
    long panel = g->kg * cols * group; /* elements of a packed panel */
    for (long i = 0; i < tiles; i++) {
        long i0 = i * rows, mr = g->m - i0 < rows ? g->m - i0 : rows;
        for (long p = p0; p < p1; p++) {
#ifdef WALLE_X86
            if (form == WALLE_I8_VNNI) {
                const int8_t* w = (const int8_t*)g->wpack + i0 * width;
                walle_i8_tile_vnni_left(w, width, (const uint8_t*)xpack + (p - p0) * panel,
                                        g->kg, t);
            } else if (form == WALLE_I8_PAIRS512) {
                const int16_t* w = (const int16_t*)g->wpack + i0 * width;
                walle_i8_tile_pairs512(w, width, (const int16_t*)xpack + (p - p0) * panel,
                                       g->kg, t);
            } else if (form == WALLE_I8_PAIRS256) {
                const int16_t* w = (const int16_t*)g->wpack + i0 * width;
                walle_i8_tile_pairs256(w, width, (const int16_t*)xpack + (p - p0) * panel,
                                       g->kg, t);
            } else
#endif
            {
                const int16_t* w = (const int16_t*)g->wpack + i0 * width;
                walle_i8_tile_pairs128(w, width, (const int16_t*)xpack + (p - p0) * panel,
                                       g->kg, t);
            }
            long j0 = p * cols;
            walle_i8_store_form(form, t, cols, mr, g->n - j0 < cols ? g->n - j0 : cols,
                           y + i0 * g->ldy + j0, g->ldy, NULL, g->bias ? g->bias + i0 : NULL,
                           g->relu);
        }
    }
}

#endif

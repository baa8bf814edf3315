/* Depthwise 3x3 stride-2 planes read straight from an unpadded source at AVX-512, with
   masked loads where a tile's columns or rows fall in the padding.

   The NCHW depthwise kernels of group_conv.h read a zero-bordered copy of each input plane:
   the copy is a separate pass, and its row stores (rows of 58 floats: most vector stores
   split a cache line) took about a third of a 3x3 conv on 56 x 56 planes even with the
   source in L1 (perf; 64 x 56 x 56 3x3/2 40 us in PP-LCNet's run against onnxruntime's 25).
   Here a tile loads its input rows from the source itself: a load whose lanes leave the
   source row (the left and right padding) masks them to zero, a padding row is loaded with
   an empty mask (all zeros, nothing read), and a row's last columns are stored under a
   mask rather than by a tile shifted back. Each output still sums zeros for its padding
   taps, in the order of group_conv.h's tiles (WALLE_DW3S2V): the same bits.

   x86-64 only (GCC or clang, AVX-512F at run time); elsewhere the copy path runs. */
#ifndef WALLE_DW_MASKED_H
#define WALLE_DW_MASKED_H

#ifdef WALLE_X86
#include <immintrin.h>

#define WALLE_DWM_TARGET WALLE_LEVEL_TARGET("avx512f,avx2,fma")
#define WALLE_DWM_INLINE static inline __attribute__((always_inline)) WALLE_DWM_TARGET

/* The lanes l < 16 whose column first + l lies in [0, n). */
WALLE_DWM_INLINE __mmask16 walle_dwm_cols(long first, long n) {
    long lo = first < 0 ? -first : 0, hi = n - first < 16 ? n - first : 16;
    if (hi <= lo) return 0;
    return (__mmask16)((((1u << hi) - 1u) >> lo) << lo);
}

/* 16 floats at p, lanes outside k zero (and not read). */
WALLE_DWM_INLINE walle_g16 walle_dwm_load(__mmask16 k, const float* p) {
    return (walle_g16)_mm512_maskz_loadu_ps(k, p);
}

/* act(acc + bias) to the lanes k of y. */
#define WALLE_DWM_STORE(y, k, acc, bias, relu)                                              \
    do {                                                                                    \
        walle_g16 r_ = (acc) + (bias);                                                      \
        WALLE_RELU_V(walle_g16, walle_gi16, r_, relu);                                      \
        _mm512_mask_storeu_ps((y), (k), (__m512)r_);                                        \
    } while (0)

/* 3x3 stride 2, NV output rows of 16 columns: WALLE_DW3S2V's loads (columns c and c + 1
   on, two vectors each, split into even and odd lanes) and sums. */
#define WALLE_DWM3S2(NAME, NV)                                                              \
    WALLE_DWM_INLINE void NAME(const float* restrict src, long irs, long ih, long iw,       \
                               long sr0, long c, const float* restrict w, float bias,       \
                               float* restrict y, long ypitch, __mmask16 ky, float relu) {  \
        __mmask16 k0 = walle_dwm_cols(c, iw), k1 = walle_dwm_cols(c + 16, iw);              \
        __mmask16 k2 = walle_dwm_cols(c + 1, iw), k3 = walle_dwm_cols(c + 17, iw);          \
        walle_g16 acc[NV], wv[9];                                                           \
        for (int q = 0; q < NV; q++) acc[q] = (walle_g16){0};                               \
        for (int t = 0; t < 9; t++) /* the taps' weights broadcast once */                  \
            wv[t] = (walle_g16){w[t], w[t], w[t], w[t], w[t], w[t], w[t], w[t], w[t], w[t], \
                                w[t], w[t], w[t], w[t], w[t], w[t]};                        \
        _Pragma("GCC unroll 16")                                                            \
        for (int u = 0; u < 2 * NV + 1; u++) {                                              \
            long sr_ = sr0 + u;                                                             \
            int in_ = sr_ >= 0 && sr_ < ih;                                                 \
            const float* s = src + (in_ ? sr_ : 0) * irs + c;                               \
            walle_g16 lo = walle_dwm_load(in_ ? k0 : 0, s);                                 \
            walle_g16 hi = walle_dwm_load(in_ ? k1 : 0, s + 16);                            \
            walle_g16 e = (walle_g16)WALLE_EVEN16(lo, hi), o1 = (walle_g16)WALLE_ODD16(lo, hi); \
            lo = walle_dwm_load(in_ ? k2 : 0, s + 1);                                       \
            hi = walle_dwm_load(in_ ? k3 : 0, s + 17);                                      \
            walle_g16 o2 = (walle_g16)WALLE_ODD16(lo, hi);                                  \
            WALLE_DW3S2_TAPS(acc, NV, u, wv, e, o1, o2);                                    \
        }                                                                                   \
        for (int q = 0; q < NV; q++) WALLE_DWM_STORE(y + q * ypitch, ky, acc[q], bias, relu); \
    }
WALLE_DWM3S2(walle_dwm3s2_4, 4)
WALLE_DWM3S2(walle_dwm3s2_1, 1)

/* One plane in bands of 4 rows (then single rows) of tiles 16 columns wide, the last
   column tile's store masked to the row. r0, c0: the source row and column of the first
   output's first tap (negative in the padding). */
WALLE_DWM_INLINE void walle_dwm3s2_plane(const float* restrict src, long irs, long ih, long iw,
                                         long r0, long c0, const float* restrict w,
                                         float bias, float* restrict y, long oh, long ow,
                                         float relu) {
    long r = 0;
    for (; r + 4 <= oh; r += 4)
        for (long j = 0; j < ow; j += 16)
            walle_dwm3s2_4(src, irs, ih, iw, r0 + 2 * r, c0 + 2 * j, w, bias, y + r * ow + j,
                           ow, walle_dwm_cols(j, ow), relu);
    for (; r < oh; r++)
        for (long j = 0; j < ow; j += 16)
            walle_dwm3s2_1(src, irs, ih, iw, r0 + 2 * r, c0 + 2 * j, w, bias, y + r * ow + j,
                           ow, walle_dwm_cols(j, ow), relu);
}

/* Whether the masked planes take the conv: 3x3 stride 2 from an unpadded source, taps one
   row and one column apart, rows over 8 outputs. AVX-512, one core, with HardSwish, the
   copy path's time -> these planes' (masked loads alone; with the weights broadcast once
   and hard_swish.h's vmaxps clip): 128 x 28 x 28 29 -> 23 -> 20 us, 64 x 56 x 56 42 ->
   37 -> 33, 32 x 112 x 112 78 -> 71 -> 63, 96 x 112 x 112 230 -> 205. Rows of 8 and 7,
   whose tiles of 16 leave half their lanes idle, ran 9-11% slower than group_conv.h's
   narrower tiles. At stride 1 (3x3 on 16-128 channels of 28-112) the masked loads did not
   pay for the copy they save (4-9% slower; the copy is a fifth of those convs), nor at
   AVX2 (vmaskmovps, whose even/odd splits cost three instructions each: 1.2-1.3x the time
   of group_conv.h's rows then split as they were copied; its tiles now pick in lanes, one
   vshufps a split: masked loads with those picks not measured). */
static int walle_dwm_fits(const walle_gconv* p) {
    return p->base && p->kh == 3 && p->kw == 3 && p->s_kh == p->wp && p->s_kw == 1 &&
           p->s_ow == 2 && p->s_oh == 2 * p->s_kh && p->ow > 8;
}

/* Output planes [i0, i1) of i = n * (G*cout) + co (walle_dwm_fits' convs). */
WALLE_DWM_TARGET static void walle_dwm_avx512(const walle_gconv* p, long i0, long i1) {
    long channels = p->groups * p->cout, plane = p->oh * p->ow;
    long r0 = p->off / p->wp - p->top, c0 = p->off % p->wp - p->left;
    for (long i = i0; i < i1; i++) {
        long n = i / channels, co = i % channels;
        const float* src = p->x + p->base[n * p->groups + co / p->cout];
        walle_dwm3s2_plane(src, p->irs, p->ih, p->iw, r0, c0, p->w + co * 9, p->bias[co],
                           p->y + i * plane, p->oh, p->ow, p->relu);
    }
}
#endif /* WALLE_X86 */

#endif /* WALLE_DW_MASKED_H */

/* Winograd convolution for the walle.ops cython backend (ops_conv.pyx): F(4x4, 3x3),
   F(2x2, 3x3) and F(2x2, 5x5) (6x6 tiles: 36 multiply-adds per 4 outputs instead of 100).

   A 3x3, stride-1, dilation-1 convolution computed on input tiles of (m+2)x(m+2) that give
   m x m outputs each (m = 4: 6x6 tiles; m = 2: 4x4): the input tile is transformed
   (B^T d B), multiplied element-wise by the transformed filter (G g G^T, done once at build
   time) and summed over input channels -- (m+2)^2 independent matrix products
   [Cout, C] x [C, tiles] -- then transformed back (A^T m A). F(4x4, 3x3) does 36
   multiply-adds per 16 outputs and input channel instead of 144, F(2x2, 3x3) 16 per 4
   instead of 36, for a few adds per tile in the transforms.

   Work is split in groups of L tiles (L = NV vectors of VW floats, one lane per tile, so
   the transforms run lane-wise in vectors); the tiles left over past the last whole group
   may run in a narrower group (``first`` says where it starts; ops_conv.pyx chooses it), or
   as F(2x2) tiles over the corner of the plane they cover (h_org, w_org). Per group: the
   input tiles of every channel are gathered 4 at a time through 4x4 transposes, their rows
   transformed in registers (a tile cut by the source's edge is first copied into a zeroed
   one: the source need not be padded), and transformed into V[(m+2)^2][C][L]; then for each
   block of 8 output channels the products run in a register tile of 8 channels x NV vectors
   (two tiles of 4 channels x 2 vectors where the ISA has 16 vector registers; the filters
   broadcast from U packed [Cout/8][(m+2)^2][C][8], so a block's filters are one contiguous
   stream, prefetched WALLE_WINO_AHEAD ahead: in a whole model they come from memory) into
   M[(m+2)^2][8][L], which is transformed back, biased, rectified and written to the NCHW
   output at once (again 4 whole tiles at a time through transposes).

   Non-finite inputs: a tile whose inputs hold a NaN or an infinity would spread it to all
   outputs of the tile (and inf - inf makes NaN where the direct sum keeps inf), so such
   tiles are found while they are gathered (a lane sum of x * 0) and their outputs are
   computed directly instead: NaN and inf propagate exactly as in the im2col product. */

#ifndef WALLE_WINOGRAD_H
#define WALLE_WINOGRAD_H

#include <string.h>

#include "conv_tile.h"
#include "cpu_level.h"

typedef struct {
    const float* x;  /* element (n, c, h, w) of the padded input at x + n*s_n + c*s_c + ... */
    long s_n, s_c, s_h;  /* columns are contiguous */
    long ih, iw;     /* rows and columns of the source: OH + r - 1, OW + r - 1 unless padded */
    long n, c, k, oh, ow, th, tw, tiles;
    long first;      /* the first tile of group 0: 0, or where a narrower last group starts */
    long r;          /* filter side: 3, or 5 for F(2x2, 5x5) */
    long top, left;  /* where the source's (0, 0) lies in the windows' coordinates: the
                        zero padding around it is never stored (0, 0: none) */
    long h_org, w_org; /* the output (row, column) of tile 0: the tiles cover the plane's
                        th x tw tiles from there (0, 0: the whole plane; a kernel's F(2x2)
                        tail covers a corner of the last image's plane) */
    const float* u;  /* transformed filters, [k8 / 8][A*A][c][8]: one stream per block */
    const float* g;  /* the filters, [k][c][9], for the non-finite tiles */
    const float* bias; /* [k8], zero past k */
    float* y;        /* channel 0 of this conv's outputs in [n][yk][oh][ow] */
    long yk;         /* channels of y per image: k, or more for one group of a grouped conv */
    float relu;
    int pf_out;      /* ask for each block's output lines while its products run (big
                        planes: ops_conv.pyx, _WINO_PF_OUT_PLANE) */
} walle_wino;

typedef float walle_wv16 __attribute__((vector_size(64)));
typedef float walle_wv8 __attribute__((vector_size(32)));
typedef float walle_wv4 __attribute__((vector_size(16)));

/* The outputs (4 x 4, channel kk) of one tile computed directly, for the tiles that hold a
   non-finite input. */
static void walle_wino_direct_tile(const walle_wino* p, long t, long kk, long m) {
    long per = p->th * p->tw, n = t / per, r = t % per, side = p->r;
    long h0 = p->h_org + (r / p->tw) * m, w0 = p->w_org + (r % p->tw) * m;
    for (long a = 0; a < m && h0 + a < p->oh; a++)
        for (long b = 0; b < m && w0 + b < p->ow; b++) {
            float acc = 0.0f;
            for (long ci = 0; ci < p->c; ci++) {
                const float* xs = p->x + n * p->s_n + ci * p->s_c;
                const float* gs = p->g + (kk * p->c + ci) * side * side;
                for (long i = 0; i < side; i++)
                    for (long j = 0; j < side; j++) {
                        long hr = h0 + a + i - p->top, wr = w0 + b + j - p->left;
                        if (hr >= 0 && hr < p->ih && wr >= 0 && wr < p->iw)
                            acc += gs[i * side + j] * xs[hr * p->s_h + wr];
                    }
            }
            float v = acc + p->bias[kk];
            v = WALLE_RELU_S(v, p->relu);
            p->y[((n * p->yk + kk) * p->oh + h0 + a) * p->ow + w0 + b] = v;
        }
}

/* yo_j[a * ow + b] = d[(a * 4 + b) * L + j] for 4 whole 4x4 output tiles j. */
static inline __attribute__((always_inline)) void walle_wino_scatter4(
        const float* d, long L, float* const* yo, long ow) {
    for (int a = 0; a < 4; a++) {
        walle_v4 r[4];
        for (int b = 0; b < 4; b++) memcpy(&r[b], d + (a * 4 + b) * L, sizeof(walle_v4));
        walle_t4x4(r);
        for (int j = 0; j < 4; j++) memcpy(yo[j] + a * ow, &r[j], sizeof(walle_v4));
    }
}

/* F(4x4, 3x3), 6x6 input tiles. B^T applied to 6 values d0..d5 (floats or vectors of
   them), into o[0..5]. */
#define WALLE_WINO_BT6_OF(d0, d1, d2, d3, d4, d5, o)                                           \
    do {                                                                                       \
        (o)[0] = 4.0f * (d0) - 5.0f * (d2) + (d4);                                             \
        (o)[1] = -4.0f * ((d1) + (d2)) + (d3) + (d4);                                          \
        (o)[2] = 4.0f * ((d1) - (d2)) - (d3) + (d4);                                           \
        (o)[3] = 2.0f * ((d3) - (d1)) - (d2) + (d4);                                           \
        (o)[4] = 2.0f * ((d1) - (d3)) - (d2) + (d4);                                           \
        (o)[5] = 4.0f * (d1) - 5.0f * (d3) + (d5);                                             \
    } while (0)

/* The same on lane arrays: the input transform's columns. */
#define WALLE_WINO_BT6(D, S, OUT, OS, L)                                                       \
    _Pragma("GCC ivdep") for (int l = 0; l < L; l++) {                                         \
        float o_[6];                                                                           \
        WALLE_WINO_BT6_OF(D[0 * S + l], D[1 * S + l], D[2 * S + l], D[3 * S + l],              \
                          D[4 * S + l], D[5 * S + l], o_);                                     \
        for (int k_ = 0; k_ < 6; k_++) OUT[k_ * OS + l] = o_[k_];                              \
    }

/* A^T applied to 6 values: the output transform's rows (4 outputs). */
#define WALLE_WINO_AT6(M, S, OUT, OS, L)                                                       \
    _Pragma("GCC ivdep") for (int l = 0; l < L; l++) {                                                              \
        float m0 = M[0 * S + l], m1 = M[1 * S + l], m2 = M[2 * S + l];                         \
        float m3 = M[3 * S + l], m4 = M[4 * S + l], m5 = M[5 * S + l];                         \
        float s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;                      \
        OUT[0 * OS + l] = m0 + s12 + s34;                                                      \
        OUT[1 * OS + l] = d12 + 2.0f * d34;                                                    \
        OUT[2 * OS + l] = s12 + 4.0f * s34;                                                    \
        OUT[3 * OS + l] = d12 + 8.0f * d34 + m5;                                               \
    }

/* F(2x2, 5x5): the same 6x6 input tiles and B^T (the same interpolation points), A^T's
   two rows (2 outputs). */
#define WALLE_WINO_AT62(M, S, OUT, OS, L)                                                      \
    _Pragma("GCC ivdep") for (int l = 0; l < L; l++) {                                         \
        float m0 = M[0 * S + l], m1 = M[1 * S + l], m2 = M[2 * S + l];                         \
        float m3 = M[3 * S + l], m4 = M[4 * S + l], m5 = M[5 * S + l];                         \
        OUT[0 * OS + l] = m0 + m1 + m2 + m3 + m4;                                              \
        OUT[1 * OS + l] = m1 - m2 + 2.0f * (m3 - m4) + m5;                                     \
    }

/* F(2x2, 3x3), 4x4 input tiles: fewer tiles idle on small planes (7x7 gives 16 tiles, not
   4) and the transformed filters are 16/9 of the filters, not 4x. */
#define WALLE_WINO_BT4_OF(d0, d1, d2, d3, o)                                                   \
    do {                                                                                       \
        (o)[0] = (d0) - (d2);                                                                  \
        (o)[1] = (d1) + (d2);                                                                  \
        (o)[2] = (d2) - (d1);                                                                  \
        (o)[3] = (d1) - (d3);                                                                  \
    } while (0)

#define WALLE_WINO_BT4(D, S, OUT, OS, L)                                                       \
    _Pragma("GCC ivdep") for (int l = 0; l < L; l++) {                                         \
        float o_[4];                                                                           \
        WALLE_WINO_BT4_OF(D[0 * S + l], D[1 * S + l], D[2 * S + l], D[3 * S + l], o_);         \
        for (int k_ = 0; k_ < 4; k_++) OUT[k_ * OS + l] = o_[k_];                              \
    }

#define WALLE_WINO_AT4(M, S, OUT, OS, L)                                                       \
    _Pragma("GCC ivdep") for (int l = 0; l < L; l++) {                                         \
        float m0 = M[0 * S + l], m1 = M[1 * S + l], m2 = M[2 * S + l], m3 = M[3 * S + l];      \
        OUT[0 * OS + l] = m0 + m1 + m2;                                                        \
        OUT[1 * OS + l] = m1 - m2 - m3;                                                        \
    }

/* F(6x6, 3x3), 8x8 input tiles (points 0, 1, -1, 2, -2, 1/2, -1/2 and infinity): 64
   multiply-adds per 36 outputs and input channel instead of 324, filters transformed to
   64/9 of their size; a few ulps more error than F(4x4) (its constants reach 21/4 and 32). */
#define WALLE_WINO_BT8_OF(d0, d1, d2, d3, d4, d5, d6, d7, o)                                   \
    do {                                                                                       \
        (o)[0] = (d0) - (d6) + 5.25f * ((d4) - (d2));                                          \
        (o)[7] = (d7) - (d1) + 5.25f * ((d3) - (d5));                                          \
        __typeof__((o)[0]) p1_ = (d1) + (d5) - 4.25f * (d3), p2_ = (d2) + (d6) - 4.25f * (d4);   \
        (o)[1] = p2_ + p1_;                                                                    \
        (o)[2] = p2_ - p1_;                                                                    \
        __typeof__((o)[0]) q1_ = 0.5f * (d1) - 2.5f * (d3) + 2.0f * (d5);                        \
        __typeof__((o)[0]) q2_ = 0.25f * (d2) - 1.25f * (d4) + (d6);                             \
        (o)[3] = q2_ + q1_;                                                                    \
        (o)[4] = q2_ - q1_;                                                                    \
        __typeof__((o)[0]) r1_ = 2.0f * (d1) - 2.5f * (d3) + 0.5f * (d5);                        \
        __typeof__((o)[0]) r2_ = 4.0f * (d2) - 5.0f * (d4) + (d6);                               \
        (o)[5] = r2_ + r1_;                                                                    \
        (o)[6] = r2_ - r1_;                                                                    \
    } while (0)

#define WALLE_WINO_BT8(D, S, OUT, OS, L)                                                       \
    _Pragma("GCC ivdep") for (int l = 0; l < L; l++) {                                         \
        float o_[8];                                                                           \
        WALLE_WINO_BT8_OF(D[0 * S + l], D[1 * S + l], D[2 * S + l], D[3 * S + l],              \
                          D[4 * S + l], D[5 * S + l], D[6 * S + l], D[7 * S + l], o_);         \
        for (int k_ = 0; k_ < 8; k_++) OUT[k_ * OS + l] = o_[k_];                              \
    }

/* A^T applied to 8 values: 6 outputs. */
#define WALLE_WINO_AT8(M, S, OUT, OS, L)                                                       \
    _Pragma("GCC ivdep") for (int l = 0; l < L; l++) {                                         \
        float m0 = M[0 * S + l], m1 = M[1 * S + l], m2 = M[2 * S + l], m3 = M[3 * S + l];      \
        float m4 = M[4 * S + l], m5 = M[5 * S + l], m6 = M[6 * S + l], m7 = M[7 * S + l];      \
        float s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;                      \
        float s56 = m5 + m6, d56 = m5 - m6;                                                    \
        OUT[0 * OS + l] = m0 + s12 + s34 + s56;                                                \
        OUT[1 * OS + l] = d12 + 2.0f * d34 + 0.5f * d56;                                       \
        OUT[2 * OS + l] = s12 + 4.0f * s34 + 0.25f * s56;                                      \
        OUT[3 * OS + l] = d12 + 8.0f * d34 + 0.125f * d56;                                     \
        OUT[4 * OS + l] = s12 + 16.0f * s34 + 0.0625f * s56;                                   \
        OUT[5 * OS + l] = d12 + 32.0f * d34 + 0.03125f * d56 + m7;                             \
    }

/* The input transform's first pass fused with the gather: for 4 interior A x A tiles j
   (A = 4, 6 or 8, a constant where it is inlined), t[(a * A + b) * L + j] = (B^T applied
   to row a of tile j)[b], each row read as 4 columns (and the last 4 where A > 4: at A = 6
   they overlap by 2), transposed into lanes and transformed in registers; *sum gets every
   input value of the 4 tiles (the non-finite check). */
static inline __attribute__((always_inline)) void walle_wino_gather4_bt(
        const float* const* xs, const long* sh, float* t, long L, walle_v4* sum, int A) {
    walle_v4 s = *sum;
    for (int a = 0; a < A; a++) {
        walle_v4 lo[4], hi[4], o[8];
        for (int j = 0; j < 4; j++) {
            memcpy(&lo[j], xs[j] + a * sh[j], sizeof(walle_v4));
            if (A > 4) memcpy(&hi[j], xs[j] + a * sh[j] + A - 4, sizeof(walle_v4));
        }
        walle_t4x4(lo);
        s += (lo[0] + lo[1]) + (lo[2] + lo[3]);
        if (A == 4) {
            WALLE_WINO_BT4_OF(lo[0], lo[1], lo[2], lo[3], o);
        } else {
            walle_t4x4(hi);
            if (A == 6) {
                s += hi[2] + hi[3];
                WALLE_WINO_BT6_OF(lo[0], lo[1], lo[2], lo[3], hi[2], hi[3], o);
            } else {
                s += (hi[0] + hi[1]) + (hi[2] + hi[3]);
                WALLE_WINO_BT8_OF(lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3], o);
            }
        }
        for (int b = 0; b < A; b++) memcpy(t + (a * A + b) * L, &o[b], sizeof(walle_v4));
    }
    *sum = s;
}

/* yo_j[a * ow + b] = d[(a * 6 + b) * L + j] for 4 whole 6x6 output tiles j: columns 0-3
   through transposes, 4 and 5 one at a time. */
static inline __attribute__((always_inline)) void walle_wino_scatter6(
        const float* d, long L, float* const* yo, long ow) {
    for (int a = 0; a < 6; a++) {
        walle_v4 r[4], c4, c5;
        for (int b = 0; b < 4; b++) memcpy(&r[b], d + (a * 6 + b) * L, sizeof(walle_v4));
        memcpy(&c4, d + (a * 6 + 4) * L, sizeof(walle_v4));
        memcpy(&c5, d + (a * 6 + 5) * L, sizeof(walle_v4));
        walle_t4x4(r);
        for (int j = 0; j < 4; j++) {
            memcpy(yo[j] + a * ow, &r[j], sizeof(walle_v4));
            yo[j][a * ow + 4] = c4[j];
            yo[j][a * ow + 5] = c5[j];
        }
    }
}

/* One input channel ci of the products' NJ x NQ tile (acc, v, u at ci, j0, q0). With 4 x 4
   outputs a tile (6 x 6 inputs) the channels run two a turn: 5-22% faster convs at AVX2
   (deep channels the most: 64 -> 256 on 13x13 0.79-0.82x the time, 256 -> 256 on 14x14
   0.79-0.96x; interleaved A/B of the two builds, both orders), level to 4% faster at SSE.
   With 2 x 2 outputs, 3x3 in groups of up to 2 vectors: 2-7% faster (256 -> 256 on 7x7
   0.94-0.96x); in groups of 3 vectors GCC then spills sums to the stack (1.5x slower on 49
   tiles), and 5x5 was 30% slower, so those keep one a turn. */
/* Floats of U asked for ahead of the products. In a whole model U comes from memory (it is
   4x the filters, 16/9 at F(2x2): SqueezeNet's 64 -> 256 on 13x13 reads 2.4 MB per call, and
   other work, ours and the host's neighbours', takes the L3 between calls), and on small
   planes (16 tiles: one broadcast filter per vector multiply-add) the products consume it
   at ~8 bytes a cycle. 2 KiB ahead was less than the memory's latency at that rate: after a
   64 MB scrub, 48 -> 192 and 64 -> 256 on 13x13 took 1.55-1.6x their warm time; 8 KiB
   ahead, 0.81-0.83x of that (interleaved A/B, Zen 5, AVX-512), warm time level. Whole
   models, each walle run right after an onnxruntime run, both orders: SqueezeNet 1.1
   0.937-0.95x the time, Inception v2 0.91-0.94x, ResNet-50 0.96-0.98x (0.955x and 0.985x
   at batch 8); at AVX2 0.98-0.99x. 16 and 32 KiB ahead, or an L2 prefetch farther ahead
   with an L1 one nearer, were no better. */
#define WALLE_WINO_AHEAD 2048
#define WALLE_WINO_ROW(VT, VW, NJ, NQ, L)                                                      \
    {                                                                                          \
        VT x[NQ];                                                                              \
        for (int q = 0; q < NQ; q++) memcpy(&x[q], v + ci * L + (q0 + q) * VW, sizeof(VT));    \
        const float* w = u + ci * 8 + j0;                                                      \
        __builtin_prefetch(w + WALLE_WINO_AHEAD);                                              \
        for (int j = 0; j < NJ; j++)                                                           \
            for (int q = 0; q < NQ; q++) acc[j][q] += w[j] * x[q];                             \
    }

/* One instruction-set level and tile size: vectors VT of VW floats, NV of them per group
   (L = VW * NV tiles); input tiles A x A (6 or 4) giving OT x OT outputs (4 or 2), with
   the transforms BT and AT. vbuf holds A*A * c * L floats, mbuf A*A * 8 * L. The input
   rows are contiguous (stride-1 columns). */
#define WALLE_WINO_LEVEL(NAME, ATTR, VT, VW, NV, A, OT, BT, AT)                                \
ATTR static void NAME(const walle_wino* p, long g0, long g1, float* vbuf, float* mbuf) {       \
    enum { L = VW * NV, AA = A * A };                                                          \
    long base[L], ybase[L];                                                                    \
    int ra[L], hn[L], ca[L], wn[L], on[L], om[L];                                              \
    float d[AA * L], t[AA * L], chk[L], stage[4][AA];                                          \
    long blocks = (p->k + 7) / 8;                                                              \
    for (long g = g0; g < g1; g++) {                                                           \
        long t0 = p->first + g * L, per = p->th * p->tw;                                       \
        int any_bad = 0;                                                                       \
        for (int l = 0; l < L; l++) {                                                          \
            long tt = t0 + l;                                                                  \
            chk[l] = 0.0f;                                                                     \
            if (tt >= p->tiles) {                                                              \
                base[l] = ybase[l] = 0;                                                        \
                ra[l] = hn[l] = ca[l] = wn[l] = on[l] = om[l] = 0;                             \
                continue;                                                                      \
            }                                                                                  \
            long n = tt / per, r = tt % per;                                                   \
            long h0 = p->h_org + (r / p->tw) * OT, w0 = p->w_org + (r % p->tw) * OT;           \
            /* rows [ra, hn) and columns [ca, wn) of the tile lie on the source */              \
            long sh0 = h0 - p->top, sw0 = w0 - p->left;                                        \
            base[l] = n * p->s_n + sh0 * p->s_h + sw0;                                         \
            ra[l] = sh0 < 0 ? (int)(-sh0) : 0;                                                 \
            ca[l] = sw0 < 0 ? (int)(-sw0) : 0;                                                 \
            hn[l] = p->ih - sh0 < A ? (int)(p->ih - sh0) : A;                                  \
            wn[l] = p->iw - sw0 < A ? (int)(p->iw - sw0) : A;                                  \
            ybase[l] = (n * p->yk * p->oh + h0) * p->ow + w0;                                  \
            on[l] = p->oh - h0 < OT ? (int)(p->oh - h0) : OT;                                  \
            om[l] = p->ow - w0 < OT ? (int)(p->ow - w0) : OT;                                  \
        }                                                                                      \
        int whole4[L / 4], out4[L / 4]; /* 4-lane blocks of whole input / output tiles */      \
        for (int q = 0; q < L / 4; q++) {                                                      \
            whole4[q] = out4[q] = 1;                                                           \
            for (int j = 4 * q; j < 4 * q + 4; j++) {                                          \
                whole4[q] &= !ra[j] && !ca[j] && hn[j] == A && wn[j] == A;                     \
                out4[q] &= on[j] == OT && om[j] == OT;                                         \
            }                                                                                  \
        }                                                                                      \
        for (long ci = 0; ci < p->c; ci++) {                                                   \
            const float* xc = p->x + ci * p->s_c;                                              \
            /* 4 tiles at a time gathered and row-transformed in registers; a tile cut by  \
               the source's edge (or past the last) is first copied into a zeroed A x A    \
               (only its lane: the block's others read the source) */                       \
            for (int q = 0; q < L / 4; q++) {                                                  \
                const float* xs4[4];                                                           \
                long sh4[4];                                                                   \
                for (int j = 0; j < 4; j++) {                                                  \
                    int l = 4 * q + j;                                                         \
                    if (whole4[q] || (!ra[l] && !ca[l] && hn[l] == A && wn[l] == A)) {         \
                        xs4[j] = xc + base[l];                                                 \
                        sh4[j] = p->s_h;                                                       \
                        continue;                                                              \
                    }                                                                          \
                    float* st = stage[j];                                                      \
                    memset(st, 0, sizeof(stage[j]));                                           \
                    for (int a = ra[l]; a < hn[l]; a++)                                        \
                        for (int b = ca[l]; b < wn[l]; b++)                                    \
                            st[a * A + b] = xc[base[l] + a * p->s_h + b];                      \
                    xs4[j] = st;                                                               \
                    sh4[j] = A;                                                                \
                }                                                                              \
                walle_v4 sum = (walle_v4){0}, c4;                                              \
                walle_wino_gather4_bt(xs4, sh4, t + 4 * q, L, &sum, A);                        \
                /* a non-finite value (or a sum that overflows: then the tile is only        \
                   computed directly, needlessly) makes the sum non-finite */                \
                memcpy(&c4, chk + 4 * q, sizeof(c4));                                          \
                c4 += sum * 0.0f;                                                              \
                memcpy(chk + 4 * q, &c4, sizeof(c4));                                          \
            }                                                                                  \
            for (int b = 0; b < A; b++) {                                                      \
                const float* tc = t + b * L;                                                   \
                float* vc = vbuf + ((long)b * p->c + ci) * L;                                  \
                BT(tc, A * L, vc, A * p->c * L, L)                                             \
            }                                                                                  \
        }                                                                                      \
        for (int l = 0; l < L; l++) any_bad |= chk[l] != chk[l];                               \
        /* the group's output span per channel (one image: first to last tile), in lines */    \
        long lastl = t0 + L <= p->tiles ? L - 1 : p->tiles - 1 - t0;                           \
        long span = ybase[lastl] + (OT - 1) * p->ow + OT - ybase[0];                           \
        int pfo = p->pf_out && (t0 + lastl) / per == t0 / per;                                 \
        long lines = (span + 15) / 16 + 1;                                                     \
        for (long kb = 0; kb < blocks; kb++) {                                                 \
            long kv = p->k - kb * 8 < 8 ? p->k - kb * 8 : 8;                                   \
            long pfn = pfo ? kv * lines : 0;                                                   \
            const float* yb0 = p->y + kb * 8 * p->oh * p->ow + ybase[0];                       \
            for (int i = 0; i < AA; i++) {                                                     \
                for (long q = i * pfn / AA; q < (i + 1) * pfn / AA; q++)                       \
                    __builtin_prefetch(yb0 + q / lines * p->oh * p->ow + q % lines * 16, 1);   \
                const float* u = p->u + ((long)kb * AA + i) * p->c * 8;                        \
                const float* v = vbuf + (long)i * p->c * L;                                    \
                /* NJ channels x NQ vectors in registers: 8 x NV (16 accumulators) where        \
                   the ISA has 32 vector registers (AVX-512); where it has 16 (AVX2, SSE),      \
                   4 x 2 for two vectors (6 loads per 8 multiply-adds), else 8 x 1 */           \
                enum { NQ = VW == 16 || NV >= 2 ? NV : 1, NJ = VW == 16 || NV == 1 ? 8 : 4 };   \
                /* where that takes passes (4 channels at a time), more than 128 input     \
                   channels run in blocks of 64 (v's 4-6 KiB then stays in L1 for the second \
                   pass instead of coming from L2 again), the sums kept in mbuf between      \
                   blocks; up to 128 run in one block (12 KiB at most): 96 as 64 + 32 spent  \
                   a block's sums' round trip on a short second block, and one block of 80  \
                   to 128 ran 0.95-0.99x the time (AVX2, Zen 4; 0.98-0.99x at SSE), while   \
                   512 in blocks of 128 took 1.09x */                                         \
                long cblock = (NJ == 8 && NQ == NV) || p->c <= 128 ? p->c : 64;                \
                for (long c0 = 0; c0 < p->c; c0 += cblock) {                                   \
                long c1 = p->c - c0 < cblock ? p->c : c0 + cblock;                             \
                for (int j0 = 0; j0 < 8; j0 += NJ)                                             \
                for (int q0 = 0; q0 < NV; q0 += NQ) {                                          \
                    VT acc[NJ][NQ];                                                            \
                    for (int j = 0; j < NJ; j++)                                               \
                        for (int q = 0; q < NQ; q++) {                                         \
                            VT a0 = (VT){0};                                                   \
                            if (c0) memcpy(&a0, mbuf + (i * 8 + j0 + j) * L + (q0 + q) * VW,   \
                                           sizeof(VT));                                        \
                            acc[j][q] = a0;                                                    \
                        }                                                                      \
                    if (OT >= 4 || (A == 4 && NV <= 2)) {                                      \
                        _Pragma("GCC unroll 2")                                                \
                        for (long ci = c0; ci < c1; ci++) WALLE_WINO_ROW(VT, VW, NJ, NQ, L)    \
                    } else {                                                                   \
                        for (long ci = c0; ci < c1; ci++) WALLE_WINO_ROW(VT, VW, NJ, NQ, L)    \
                    }                                                                          \
                    for (int j = 0; j < NJ; j++)                                               \
                        for (int q = 0; q < NQ; q++)                                           \
                            memcpy(mbuf + (i * 8 + j0 + j) * L + (q0 + q) * VW, &acc[j][q],    \
                                   sizeof(VT));                                                \
                }                                                                              \
                }                                                                              \
            }                                                                                  \
            long kvalid = p->k - kb * 8 < 8 ? p->k - kb * 8 : 8;                               \
            for (long j = 0; j < kvalid; j++) {                                                \
                long kk = kb * 8 + j;                                                          \
                float bias = p->bias[kk];                                                      \
                /* rows of every column, then columns of every row: Y = A^T m A */             \
                for (int b = 0; b < A; b++) {                                                  \
                    const float* mc = mbuf + (b * 8 + j) * L;                                  \
                    float* tc = t + b * L;                                                     \
                    AT(mc, A * 8 * L, tc, A * L, L)                                            \
                }                                                                              \
                for (int a = 0; a < OT; a++) {                                                 \
                    const float* tr = t + a * A * L;                                           \
                    float* dr = d + a * OT * L;                                                \
                    AT(tr, L, dr, L, L)                                                        \
                }                                                                              \
                for (int i = 0; i < OT * OT * L; i++) {                                        \
                    float v = d[i] + bias;                                                     \
                    d[i] = WALLE_RELU_S(v, p->relu);                                           \
                }                                                                              \
                float* yk = p->y + kk * p->oh * p->ow;                                         \
                for (int l = 0; l < L; l++) {                                                  \
                    if (OT >= 4 && (l & 3) == 0 && out4[l >> 2] && !any_bad) {                 \
                        float* yo4[4] = {yk + ybase[l], yk + ybase[l + 1], yk + ybase[l + 2],  \
                                         yk + ybase[l + 3]};                                   \
                        if (OT == 6) walle_wino_scatter6(d + l, L, yo4, p->ow);                \
                        else walle_wino_scatter4(d + l, L, yo4, p->ow);                        \
                        l += 3;                                                                \
                        continue;                                                              \
                    }                                                                          \
                    if (any_bad && chk[l] != chk[l]) {                                         \
                        walle_wino_direct_tile(p, t0 + l, kk, OT);                             \
                        continue;                                                              \
                    }                                                                          \
                    float* yo = yk + ybase[l];                                                 \
                    if (on[l] == OT && om[l] == OT) {                                          \
                        for (int a = 0; a < OT; a++)                                           \
                            for (int b = 0; b < OT; b++)                                       \
                                yo[a * p->ow + b] = d[(a * OT + b) * L + l];                   \
                    } else {                                                                   \
                        for (int a = 0; a < on[l]; a++)                                        \
                            for (int b = 0; b < om[l]; b++)                                    \
                                yo[a * p->ow + b] = d[(a * OT + b) * L + l];                   \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
}

#define WALLE_WINO_SIZES(NAME, ATTR, VT, VW)                                                   \
    WALLE_WINO_LEVEL(NAME##_f25_2, ATTR, VT, VW, 2, 6, 2, WALLE_WINO_BT6, WALLE_WINO_AT62)    \
    WALLE_WINO_LEVEL(NAME##_f25_1, ATTR, VT, VW, 1, 6, 2, WALLE_WINO_BT6, WALLE_WINO_AT62)    \
    WALLE_WINO_LEVEL(NAME##_f4_2, ATTR, VT, VW, 2, 6, 4, WALLE_WINO_BT6, WALLE_WINO_AT6)      \
    WALLE_WINO_LEVEL(NAME##_f4_1, ATTR, VT, VW, 1, 6, 4, WALLE_WINO_BT6, WALLE_WINO_AT6)      \
    WALLE_WINO_LEVEL(NAME##_f2_2, ATTR, VT, VW, 2, 4, 2, WALLE_WINO_BT4, WALLE_WINO_AT4)      \
    WALLE_WINO_LEVEL(NAME##_f2_1, ATTR, VT, VW, 1, 4, 2, WALLE_WINO_BT4, WALLE_WINO_AT4)      \
    WALLE_WINO_LEVEL(NAME##_f6_2, ATTR, VT, VW, 2, 8, 6, WALLE_WINO_BT8, WALLE_WINO_AT8)      \
    WALLE_WINO_LEVEL(NAME##_f6_1, ATTR, VT, VW, 1, 8, 6, WALLE_WINO_BT8, WALLE_WINO_AT8)

WALLE_WINO_SIZES(walle_wino_avx512, WALLE_LEVEL_TARGET("avx512f,avx2,fma"), walle_wv16, 16)
WALLE_WINO_SIZES(walle_wino_avx2, WALLE_LEVEL_TARGET("avx2,fma"), walle_wv8, 8)
WALLE_WINO_SIZES(walle_wino_base, , walle_wv4, 4)
/* AVX2 also runs groups of 3 vectors (24 tiles): 4 channels x 3 vectors in the products,
   12 accumulators, 3 loads and a broadcast filling the 16 registers (7 loads per 12
   multiply-adds, where 4 x 2 takes 6 per 8). */
WALLE_WINO_LEVEL(walle_wino_avx2_f25_3, WALLE_LEVEL_TARGET("avx2,fma"), walle_wv8, 8, 3, 6, 2,
                 WALLE_WINO_BT6, WALLE_WINO_AT62)
WALLE_WINO_LEVEL(walle_wino_avx2_f4_3, WALLE_LEVEL_TARGET("avx2,fma"), walle_wv8, 8, 3, 6, 4,
                 WALLE_WINO_BT6, WALLE_WINO_AT6)
WALLE_WINO_LEVEL(walle_wino_avx2_f2_3, WALLE_LEVEL_TARGET("avx2,fma"), walle_wv8, 8, 3, 4, 2,
                 WALLE_WINO_BT4, WALLE_WINO_AT4)
WALLE_WINO_LEVEL(walle_wino_avx2_f6_3, WALLE_LEVEL_TARGET("avx2,fma"), walle_wv8, 8, 3, 8, 6,
                 WALLE_WINO_BT8, WALLE_WINO_AT8)

typedef void (*walle_wino_fn)(const walle_wino*, long, long, float*, float*);

/* Tiles per group at a level (2: AVX-512F, 1: AVX2 + FMA, 0: baseline) and vector count. */
static long walle_wino_lanes(int level, int nv) { return (level == 2 ? 16 : level == 1 ? 8 : 4) * nv; }
/* The most vectors a group takes at a level (3 at AVX2, else 2). */
static int walle_wino_max_nv(int level) { return level == 1 ? 3 : 2; }

/* Groups [g0, g1) of L = walle_wino_lanes(level, nv) tiles each; ``m`` outputs per tile
   side: 6 (F(6x6, 3x3)), 4 (F(4x4, 3x3)) or 2 (F(2x2, 3x3), or F(2x2, 5x5) when p->r is
   5). */
static void walle_wino_run(const walle_wino* p, int level, int nv, int m, long g0, long g1,
                           float* vbuf, float* mbuf) {
    int kind = p->r == 5 ? 2 : m == 6 ? 3 : m == 4;
    if (WALLE_LEVEL(level) == 2) {
        static const walle_wino_fn fns[4][2] = {
            {walle_wino_avx512_f2_1, walle_wino_avx512_f2_2},
            {walle_wino_avx512_f4_1, walle_wino_avx512_f4_2},
            {walle_wino_avx512_f25_1, walle_wino_avx512_f25_2},
            {walle_wino_avx512_f6_1, walle_wino_avx512_f6_2}};
        fns[kind][nv == 2](p, g0, g1, vbuf, mbuf);
    } else if (WALLE_LEVEL(level) == 1) {
        static const walle_wino_fn fns[4][3] = {
            {walle_wino_avx2_f2_1, walle_wino_avx2_f2_2, walle_wino_avx2_f2_3},
            {walle_wino_avx2_f4_1, walle_wino_avx2_f4_2, walle_wino_avx2_f4_3},
            {walle_wino_avx2_f25_1, walle_wino_avx2_f25_2, walle_wino_avx2_f25_3},
            {walle_wino_avx2_f6_1, walle_wino_avx2_f6_2, walle_wino_avx2_f6_3}};
        fns[kind][nv - 1](p, g0, g1, vbuf, mbuf);
    } else {
        static const walle_wino_fn fns[4][2] = {
            {walle_wino_base_f2_1, walle_wino_base_f2_2},
            {walle_wino_base_f4_1, walle_wino_base_f4_2},
            {walle_wino_base_f25_1, walle_wino_base_f25_2},
            {walle_wino_base_f6_1, walle_wino_base_f6_2}};
        fns[kind][nv == 2](p, g0, g1, vbuf, mbuf);
    }
}

#endif

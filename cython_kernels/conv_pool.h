/* A lanes conv (conv_lanes.h: a network's RGB stem) and the pooling window that alone reads
   its output, run together a band of rows at a time (ops_conv.pyx, LanesPoolKernel).

   Apart, the stem writes its whole output (SqueezeNet 1.1's 64 x 111 x 111: 3.15 MB, more
   than L2) and the pool reads it back from L3 or memory: in a model run the stem took
   1.19x and the 3x3/2 max pool 1.44x their warm times. Here the conv writes the rows one
   band of pooled rows needs into a buffer of the band's size, which the pool reads while L2
   holds it; the rows two bands' windows share (KH - stride) are moved to the buffer's top
   instead of computed twice. A pool with a pad (ResNet-50's, DenseNet's: 3x3/2, pad 1)
   reads a bordered buffer: the conv's rows go inside the border, border rows and columns
   hold the fill (-inf for max). The conv's output tensor is never written. Each output is
   the same sum and the same window reduction as apart: the same bits. */

#ifndef WALLE_CONV_POOL_H
#define WALLE_CONV_POOL_H

#include <string.h>

#include "conv_lanes.h"
#include "pool_rows.h"

typedef struct {
    long kh, kw, sh, sw; /* the pool's window and its row and column strides */
    long ph, pw;         /* its output rows and columns per plane */
    long top, left, wp;  /* the conv's output placed at (top, left) in rows of wp (its pad) */
    long band;           /* pooled rows per band */
    int kind;            /* as pool_rows.h: 0 sum, 1 mean (times scale), 2 max */
    float scale, fill;   /* fill: the border (-inf for max, 0 for a sum) */
} walle_lanes_pool;

/* Bordered rows a band buffer holds per channel. */
static inline long walle_lanes_pool_rows(const walle_lanes_pool* p) {
    return (p->band - 1) * p->sh + p->kh;
}

/* Bands the pool's output rows make per image. */
static inline long walle_lanes_pool_bands(const walle_lanes_pool* p) {
    return (p->ph + p->band - 1) / p->band;
}

/* Bands [i0, i1) of the pooled output y [images][cout][ph][pw] (band i: image i / bands,
   pooled rows from (i % bands) * band) of conv ``g`` (its y unused) at the lanes
   ``level``/``form``/``sow`` and the pool's ``pool_level``; ``buf`` holds cout x
   walle_lanes_pool_rows x wp floats whose border columns hold ``fill`` (the conv writes
   only its own), ``v`` walle_pool_row_scratch's. Buffer row i of a band starting at pooled
   row p0 is bordered row p0 * sh + i: conv row p0 * sh + i - top, or a border row. A band
   after the one before it in the same image takes that band's last rows from the buffer;
   the first of a call computes them (a thread's share starts anywhere). */
static void walle_lanes_pool_run(const walle_lanes* g, const walle_lanes_pool* p, int level,
                                 int form, long sow, int pool_level, long i0, long i1,
                                 float* buf, float* y, float* v) {
    const long oh = g->oh, cout = g->cout, wp = p->wp, bands = walle_lanes_pool_bands(p);
    const long rows = walle_lanes_pool_rows(p), plane = rows * wp;
    const long shared = p->kh > p->sh ? p->kh - p->sh : 0;
    walle_lanes b = *g;
    b.oh = rows;
    b.y_row = wp;
    b.y_plane = plane;
    const long st[6] = {wp, 1, 0, plane, p->sh * wp, p->sw};
    for (long i = i0; i < i1; i++) {
        const long n = i / bands, p0 = i % bands * p->band;
        const long p1 = p0 + p->band < p->ph ? p0 + p->band : p->ph;
        long have = 0;
        if (i > i0 && p0 > 0 && shared > 0) { /* the last band's rows this band's windows read */
            for (long c = 0; c < cout; c++)
                memmove(buf + c * plane, buf + c * plane + p->band * p->sh * wp,
                        (size_t)(shared * wp) * sizeof(float));
            have = shared;
        }
        const long first = p0 * p->sh, need = (p1 - 1 - p0) * p->sh + p->kh;
        /* bordered rows [first + have, first + need): conv rows where they fall inside */
        const long lo = first + have, hi = first + need;
        const long c_lo = lo > p->top ? lo : p->top;
        const long c_hi = hi < p->top + oh ? hi : p->top + oh;
        for (long r = lo; r < hi; r++) {
            if (r >= c_lo && r < c_hi) continue;
            for (long c = 0; c < cout; c++) {
                float* row = buf + c * plane + (r - first) * wp;
                for (long j = 0; j < wp; j++) row[j] = p->fill;
            }
        }
        if (c_lo < c_hi) {
            b.x = g->x + n * g->s_n + (c_lo - p->top) * g->s_oh;
            b.y = buf + (c_lo - first) * wp + p->left;
            walle_lanes_run(&b, level, form, sow, 0, c_hi - c_lo);
        }
        const long sz[6] = {p->kh, p->kw, 1, 1, p1 - p0, p->pw};
        for (long c = 0; c < cout; c++)
            walle_pool_rows_at(pool_level, buf + c * plane,
                               y + ((n * cout + c) * p->ph + p0) * p->pw, sz, st, p->kind,
                               p->scale, v);
    }
}

#endif

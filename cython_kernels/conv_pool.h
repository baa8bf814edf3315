/* A lanes conv (conv_lanes.h: a network's RGB stem) and the pooling window that alone reads
   its output, run together a band of rows at a time (ops_conv.pyx, LanesPoolKernel).

   Apart, the stem writes its whole output (SqueezeNet 1.1's 64 x 111 x 111: 3.15 MB, more
   than L2) and the pool reads it back from L3 or memory: in a model run the stem took
   1.19x and the 3x3/2 max pool 1.44x their warm times. Here the conv writes the rows one
   band of pooled rows needs into a buffer of the band's size, which the pool reads while L2
   holds it; the rows two bands' windows share (KH - stride) are moved to the buffer's top
   instead of computed twice. The conv's output tensor is never written. Each output is the
   same sum and the same window reduction as apart: the same bits. */

#ifndef WALLE_CONV_POOL_H
#define WALLE_CONV_POOL_H

#include <string.h>

#include "conv_lanes.h"
#include "pool_rows.h"

typedef struct {
    long kh, kw, sh, sw; /* the pool's window and its row and column strides */
    long ph, pw;         /* its output rows and columns per plane */
    long band;           /* pooled rows per band */
    int kind;            /* as pool_rows.h: 0 sum, 1 mean (times scale), 2 max */
    float scale;
} walle_lanes_pool;

/* Conv rows a band buffer holds per channel. */
static inline long walle_lanes_pool_rows(const walle_lanes_pool* p) {
    return (p->band - 1) * p->sh + p->kh;
}

/* The pooled output y [images][cout][ph][pw] of conv ``g`` (its y unused) at the lanes
   ``level``/``wide``/``sow`` and the pool's ``pool_level``; ``buf`` holds cout x
   walle_lanes_pool_rows x ow floats, ``v`` walle_pool_row_scratch's. */
static void walle_lanes_pool_run(const walle_lanes* g, const walle_lanes_pool* p, int level,
                                 int wide, long sow, int pool_level, long images, float* buf,
                                 float* y, float* v) {
    const long ow = g->ow, cout = g->cout, rows = walle_lanes_pool_rows(p);
    const long shared = p->kh > p->sh ? p->kh - p->sh : 0;
    walle_lanes b = *g;
    b.oh = rows;
    b.y = buf;
    const long st[6] = {ow, 1, 0, rows * ow, p->sh * ow, p->sw};
    for (long n = 0; n < images; n++)
        for (long p0 = 0; p0 < p->ph; p0 += p->band) {
            long p1 = p0 + p->band < p->ph ? p0 + p->band : p->ph, have = 0;
            if (p0 > 0 && shared > 0) { /* the last band's rows this band's windows read */
                for (long c = 0; c < cout; c++)
                    memmove(buf + c * rows * ow, buf + (c * rows + p->band * p->sh) * ow,
                            (size_t)(shared * ow) * sizeof(float));
                have = shared;
            }
            b.x = g->x + n * g->s_n + p0 * p->sh * g->s_oh;
            walle_lanes_run(&b, level, wide, sow, have, (p1 - 1 - p0) * p->sh + p->kh);
            const long sz[6] = {p->kh, p->kw, 1, 1, p1 - p0, p->pw};
            for (long c = 0; c < cout; c++)
                walle_pool_rows_at(pool_level, buf + c * rows * ow,
                                   y + ((n * cout + c) * p->ph + p0) * p->pw, sz, st, p->kind,
                                   p->scale, v);
        }
}

#endif

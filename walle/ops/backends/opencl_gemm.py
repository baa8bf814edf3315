"""GPU-shaped OpenCL kernels of the ``opencl`` backend: register-blocked GEMM, implicit-GEMM conv.

Both kernels share one scheme. A work-group computes a ``BM x BN`` tile of the output; each
of its ``(BN / TN) x (BM / TM)`` work-items keeps a ``TM x TN`` block of outputs in registers
(rows ``ty + i * WG_Y``, columns ``tx + j * WG_X``: neighbouring work-items write neighbouring
columns, so stores coalesce and local-memory reads do not conflict). The K dimension is walked
in slices of ``BK``: the work-group stages an A tile (``BM x BK``, stored transposed) and a B
tile (``BK x BN``) in local memory, with ``vload4`` where four elements are in range, then
every work-item multiplies its registers from them. Edge tiles (M, N, K not multiples of the
tile) load zeros and skip their stores. The bias and activation are applied in the epilogue,
so a fused ``matmul -> add bias -> activation`` (or conv) tail is one launch.

- ``matmul_blocked`` (matmul algorithm ``blocked``; ``matmul_blocked8``, algorithm
  ``blocked8``, is the same kernel with 128x128 tiles of 8x8 blocks where the device fits
  them): the contract of ``matmul`` in
  :mod:`walle.ops.backends.opencl_kernels` (batched on dim 2, a_step / b_step = 0 share an
  operand, bias per column or per row, activation code);
- ``conv_implicit`` (``fused.conv2d`` algorithm ``implicit``): y[n, co, p] = w[co, :] @ cols,
  where the B tile's loads compute each input address from the output position and the
  filter tap through the im2col region of the step (offset and strides of
  [N, C, KH, KW, OH, OW]), so stride and dilation come from the region, padding from the pad
  raster before it, and no im2col buffer is built. Groups: work-item dim 2 is ``n * G + g``.

Tile sizes are build-time defines (``GEMM_BM`` ...), chosen per device by
:func:`choose_config` from its maximum work-group size and local memory, so the program
builds on any OpenCL device (PoCL on a CPU, a laptop GPU, a data-centre GPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GemmConfig:
    """Output tile per work-group (``bm x bn``), K slice ``bk``, block per work-item."""

    bm: int
    bn: int
    bk: int
    tm: int
    tn: int

    @property
    def local_size(self) -> tuple[int, int]:
        """Work-group shape (columns, rows)."""
        return self.bn // self.tn, self.bm // self.tm

    @property
    def local_bytes(self) -> int:
        """Local memory of the two tiles."""
        return 4 * self.bk * (self.bm + self.bn)

    def defines(self) -> str:
        """The ``#define`` lines the kernels are built with."""
        sizes = {"BM": self.bm, "BN": self.bn, "BK": self.bk, "TM": self.tm, "TN": self.tn}
        return "".join(f"#define GEMM_{k} {v}\n" for k, v in sizes.items())


# Largest first: 64x64 tiles of 4x4 blocks (256 work-items, 8 KB of local memory) suit GPUs.
CONFIGS = (
    GemmConfig(64, 64, 16, 4, 4),
    GemmConfig(32, 32, 16, 4, 4),
    GemmConfig(16, 16, 8, 2, 2),
    GemmConfig(8, 8, 4, 2, 2),
)


# A second matmul tiling for large products on GPUs (algorithm ``blocked8``): 128x128 tiles
# of 8x8 blocks, twice the work per loaded element; offered only where it fits, and kept
# only where the search measures it faster.
WIDE = GemmConfig(128, 128, 8, 8, 8)


def fits(config: GemmConfig, max_group: int, local_mem: int, max_items: tuple[int, ...]) -> bool:
    """Whether ``config``'s work-group and tiles fit a device's limits."""
    gx, gy = config.local_size
    fits_items = gx <= max_items[0] and gy <= max_items[1]
    return gx * gy <= max_group and config.local_bytes <= local_mem and fits_items


def choose_config(max_group: int, local_mem: int, max_items: tuple[int, ...]) -> GemmConfig:
    """The largest tiling whose work-group and tiles fit the device's limits."""
    for config in CONFIGS:
        if fits(config, max_group, local_mem, max_items):
            return config
    return CONFIGS[-1]


def gemm_range(
    config: GemmConfig, m: int, n: int, batch: int
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(global, local) sizes of a blocked launch over an ``m x n`` output, ``batch`` times."""
    gx, gy = config.local_size
    return (-(-n // config.bn) * gx, -(-m // config.bm) * gy, batch), (gx, gy, 1)


def conv_spec(
    region_offset: int,
    region_strides: tuple[int, ...],
    sizes: tuple[int, ...],
    weight_shape: tuple[int, ...],
) -> tuple[np.ndarray, int, int, int, int]:
    """The conv kernel's int spec and its GEMM shape (M per group, N pixels, K, batch).

    ``sizes`` are the im2col region's [N, C, KH, KW, OH, OW]; ``weight_shape`` is
    [Cout, C*KH*KW] (one group) or [G, Cout/G, C/G*KH*KW].
    """
    n, c, kh, kw, oh, ow = sizes
    groups, m_g = (1, weight_shape[0]) if len(weight_shape) == 2 else weight_shape[:2]
    c_g = c // groups
    spec = np.array([region_offset, *region_strides, c_g, kh, kw, oh, ow, m_g, groups], np.int32)
    return spec, m_g, oh * ow, c_g * kh * kw, n * groups


_MACROS = """
#define WG_X (GEMM_BN / GEMM_TN)
#define WG_Y (GEMM_BM / GEMM_TM)
#define WG_N (WG_X * WG_Y)

/* A tile [BM rows x BK] of row-major a (m x k) into as[BK][BM], four columns per load. */
#define GEMM_LOAD_A(a, m, k, row0, t)                                                   \\
    for (int i = tid; i < GEMM_BM * (GEMM_BK / 4); i += WG_N) {                           \\
        int r = i / (GEMM_BK / 4), p = (i % (GEMM_BK / 4)) * 4;                           \\
        int gr = (row0) + r, gp = (t) + p;                                                \\
        float4 v = (float4)(0.0f);                                                        \\
        if (gr < (m)) {                                                                   \\
            __global const float* src = (a) + gr * (k) + gp;                              \\
            if (gp + 3 < (k)) v = vload4(0, src);                                         \\
            else {                                                                        \\
                if (gp < (k)) v.s0 = src[0];                                              \\
                if (gp + 1 < (k)) v.s1 = src[1];                                          \\
                if (gp + 2 < (k)) v.s2 = src[2];                                          \\
            }                                                                             \\
        }                                                                                 \\
        as[p][r] = v.s0; as[p + 1][r] = v.s1; as[p + 2][r] = v.s2; as[p + 3][r] = v.s3;   \\
    }

/* acc[i][j] += sum over the slice of as[p][row i] * bs[p][column j]. */
#define GEMM_PRODUCT()                                                                  \\
    for (int p = 0; p < GEMM_BK; p++) {                                                   \\
        float ar[GEMM_TM], br[GEMM_TN];                                                   \\
        for (int i = 0; i < GEMM_TM; i++) ar[i] = as[p][ty + i * WG_Y];                   \\
        for (int j = 0; j < GEMM_TN; j++) br[j] = bs[p][tx + j * WG_X];                   \\
        for (int i = 0; i < GEMM_TM; i++)                                                 \\
            for (int j = 0; j < GEMM_TN; j++) acc[i][j] += ar[i] * br[j];                 \\
    }

#define GEMM_ACC_INIT()                                                                 \\
    float acc[GEMM_TM][GEMM_TN];                                                          \\
    for (int i = 0; i < GEMM_TM; i++)                                                     \\
        for (int j = 0; j < GEMM_TN; j++) acc[i][j] = 0.0f;
"""

_MATMUL = """
__kernel __attribute__((reqd_work_group_size(WG_X, WG_Y, 1)))
void KERNEL_NAME(__global const float* a, __global const float* b, __global float* c,
                    __global const float* bias, const int m, const int n, const int k,
                    const int a_step, const int b_step, const int bias_mode, const int act) {
    __local float as[GEMM_BK][GEMM_BM];
    __local float bs[GEMM_BK][GEMM_BN];
    int tx = get_local_id(0), ty = get_local_id(1), tid = ty * WG_X + tx;
    int col0 = get_group_id(0) * GEMM_BN, row0 = get_group_id(1) * GEMM_BM;
    int bat = get_global_id(2);
    a += bat * a_step;
    b += bat * b_step;
    c += bat * m * n;
    GEMM_ACC_INIT()
    for (int t = 0; t < k; t += GEMM_BK) {
        GEMM_LOAD_A(a, m, k, row0, t)
        for (int i = tid; i < GEMM_BK * (GEMM_BN / 4); i += WG_N) {
            int p = i / (GEMM_BN / 4), cc = (i % (GEMM_BN / 4)) * 4;
            int gp = t + p, gc = col0 + cc;
            float4 v = (float4)(0.0f);
            if (gp < k) {
                __global const float* src = b + gp * n + gc;
                if (gc + 3 < n) v = vload4(0, src);
                else {
                    if (gc < n) v.s0 = src[0];
                    if (gc + 1 < n) v.s1 = src[1];
                    if (gc + 2 < n) v.s2 = src[2];
                }
            }
            vstore4(v, 0, &bs[p][cc]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        GEMM_PRODUCT()
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    for (int i = 0; i < GEMM_TM; i++) {
        int row = row0 + ty + i * WG_Y;
        if (row >= m) break;
        for (int j = 0; j < GEMM_TN; j++) {
            int col = col0 + tx + j * WG_X;
            if (col >= n) break;
            float v = acc[i][j];
            if (bias_mode == 1) v += bias[col];
            else if (bias_mode == 2) v += bias[row];
            c[row * n + col] = walle_act(v, act);
        }
    }
}
"""

_CONV = """
/* y[n, g * M + co, p] = w[g, co, :] @ cols(n, g)[:, p] (+ bias[g * M + co]) (act), where
   cols(n, g)[kk, p] is read from x through the im2col region: kk = (ci, ki, kj) within the
   group's channels, p = (oy, ox). s = [offset, strides of N C KH KW OH OW, C/G, KH, KW, OH,
   OW, M = Cout/G, G]. */
__kernel __attribute__((reqd_work_group_size(WG_X, WG_Y, 1)))
void conv_implicit(__global const float* x, __global const float* w, __global float* y,
                   __global const float* bias, __constant int* s, const int has_bias,
                   const int act) {
    __local float as[GEMM_BK][GEMM_BM];
    __local float bs[GEMM_BK][GEMM_BN];
    const int s_c = s[2], s_kh = s[3], s_kw = s[4], s_oh = s[5], s_ow = s[6];
    const int cg = s[7], kh = s[8], kw = s[9], oh = s[10], ow = s[11], m = s[12], groups = s[13];
    const int khw = kh * kw, k = cg * khw, npix = oh * ow;
    int tx = get_local_id(0), ty = get_local_id(1), tid = ty * WG_X + tx;
    int col0 = get_group_id(0) * GEMM_BN, row0 = get_group_id(1) * GEMM_BM;
    int bat = get_global_id(2), nb = bat / groups, g = bat - nb * groups;
    __global const float* a = w + g * m * k;
    __global const float* xb = x + s[0] + nb * s[1] + g * cg * s_c;
    y += bat * m * npix;
    GEMM_ACC_INIT()
    for (int t = 0; t < k; t += GEMM_BK) {
        GEMM_LOAD_A(a, m, k, row0, t)
        for (int i = tid; i < GEMM_BK * GEMM_BN; i += WG_N) {
            int p = i / GEMM_BN, cc = i - p * GEMM_BN;
            int kk = t + p, pp = col0 + cc;
            float v = 0.0f;
            if (kk < k && pp < npix) {
                int ci = kk / khw, r = kk - ci * khw, ki = r / kw, kj = r - ki * kw;
                int oy = pp / ow, ox = pp - oy * ow;
                v = xb[ci * s_c + ki * s_kh + kj * s_kw + oy * s_oh + ox * s_ow];
            }
            bs[p][cc] = v;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        GEMM_PRODUCT()
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    for (int i = 0; i < GEMM_TM; i++) {
        int row = row0 + ty + i * WG_Y;
        if (row >= m) break;
        for (int j = 0; j < GEMM_TN; j++) {
            int col = col0 + tx + j * WG_X;
            if (col >= npix) break;
            float v = acc[i][j];
            if (has_bias) v += bias[g * m + row];
            y[row * npix + col] = walle_act(v, act);
        }
    }
}
"""


_UNDEF = "".join(
    f"#undef {name}\n"
    for name in (
        *(f"GEMM_{k}" for k in ("BM", "BN", "BK", "TM", "TN")),
        *("WG_X", "WG_Y", "WG_N", "GEMM_LOAD_A", "GEMM_PRODUCT", "GEMM_ACC_INIT"),
    )
)


def gemm_source(config: GemmConfig, wide: GemmConfig | None = None) -> str:
    """OpenCL C of ``matmul_blocked`` and ``conv_implicit`` tiled by ``config`` and, when
    ``wide`` is given, ``matmul_blocked8`` tiled by it (needs ``walle_act`` defined before)."""
    source = config.defines() + _MACROS + _MATMUL.replace("KERNEL_NAME", "matmul_blocked")
    source += _CONV + _UNDEF
    if wide is not None:
        source += wide.defines() + _MACROS + _MATMUL.replace("KERNEL_NAME", "matmul_blocked8")
        source += _UNDEF
    return source

"""Pooling as one OpenCL launch: the ``fused.window_reduce`` step of the ``opencl`` backend.

Fusion groups a pooling window raster (one rank-6 region, contiguous destination) with the
reduce over its first two axes (:mod:`walle.ops.fusion`). Run as parts that is two launches
and a window buffer ``KH * KW`` times the output; ``pool_<kind>`` instead gives each
work-item one output element and reads its window straight from the source through the
region (offset and strides), so pooling costs one launch and no buffer. On a GPU, where a
launch costs ~96 us (../shared/GPU.md), that is what counts.

spec = [offset, region strides[6], region sizes[6]]; sizes are [R0, R1, O0, O1, O2, O3]:
the reduce runs over R0 x R1 and the output is O0..O3, contiguous (for a pool:
[KH, KW, N, C, OH, OW]).
"""

from __future__ import annotations

import math

import numpy as np

from walle.ops.backends.opencl_kernels import REDUCE_STEP

POOL_KINDS = ("max", "sum", "mean")

_KERNEL = """
__kernel void pool_{kind}(__global const float* x, __global float* y, __constant int* s,
                          const int total) {{
    int i = get_global_id(0);
    if (i >= total) return;
    const int r0 = s[7], r1 = s[8], o1 = s[10], o2 = s[11], o3 = s[12];
    int q3 = i % o3, rest = i / o3;
    int q2 = rest % o2;
    rest /= o2;
    int q1 = rest % o1, q0 = rest / o1;
    __global const float* src = x + s[0] + q0 * s[3] + q1 * s[4] + q2 * s[5] + q3 * s[6];
    float acc = {init};
    for (int a = 0; a < r0; a++)
        for (int b = 0; b < r1; b++) {{ float v = src[a * s[1] + b * s[2]]; {step}; }}
    y[i] = {finish};
}}
"""


def pool_source() -> str:
    """OpenCL C of ``pool_max``, ``pool_sum`` and ``pool_mean``."""
    parts = []
    for kind in POOL_KINDS:
        init, step = REDUCE_STEP[kind]
        finish = "acc / (float)(r0 * r1)" if kind == "mean" else "acc"
        parts.append(_KERNEL.format(kind=kind, init=init, step=step, finish=finish))
    return "".join(parts)


def pool_spec(offset: int, strides: tuple[int, ...], sizes: tuple[int, ...]) -> np.ndarray:
    """The kernel's spec for a window raster region."""
    return np.array([offset, *strides, *sizes], np.int32)


def pool_outputs(sizes: tuple[int, ...]) -> int:
    """Output elements (work-items) of a window region: the product of its last four sizes."""
    return math.prod(sizes[2:])

# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The raster kernel of the walle.ops ``cython`` backend: region copies, GIL released.

Regions arrive padded to rank 6 (leading size-1 dims); the innermost dim is copied with
``memcpy`` when both sides are contiguous, else element by element.
"""

from libc.string cimport memcpy

import numpy as np

DEF RANK = 6


cdef class RasterKernel:
    """Fill the output (optional), then copy each region from its input."""

    cdef long[:, ::1] spec
    cdef size_t[::1] sources
    cdef float* out
    cdef long out_size
    cdef bint has_fill
    cdef float fill
    cdef object keep

    def __init__(self, inputs, out, regions, fill):
        """``regions``: (input, src_offset, src_strides, dst_offset, dst_strides, sizes)."""
        self.keep = (tuple(inputs), out)
        for a in (*inputs, out):
            if a.dtype != np.float32 or not a.flags.c_contiguous:
                raise ValueError("raster buffers must be C-contiguous float32 arrays")
        self.out = <float*><size_t>out.ctypes.data
        self.out_size = out.size
        self.has_fill = fill is not None
        self.fill = 0.0 if fill is None else fill
        rows = []
        srcs = []
        for r in regions:
            pad = RANK - len(r.sizes)
            sizes = (1,) * pad + tuple(r.sizes)
            ss = (0,) * pad + tuple(r.src_strides)
            ds = (0,) * pad + tuple(r.dst_strides)
            rows.append([r.src_offset, r.dst_offset, *sizes, *ss, *ds])
            srcs.append(inputs[r.input].ctypes.data)
        self.spec = np.array(rows, dtype=np.int64).reshape(len(rows), 2 + 3 * RANK)
        self.sources = np.array(srcs, dtype=np.uintp)

    def run(self):
        cdef long i
        with nogil:
            if self.has_fill:
                for i in range(self.out_size):
                    self.out[i] = self.fill
            for i in range(self.spec.shape[0]):
                self._region(i)

    cdef void _region(self, long r) noexcept nogil:
        cdef long[:] s = self.spec[r]
        cdef const float* src = <const float*>self.sources[r]
        cdef long i0, i1, i2, i3, i4, j, so, do
        cdef long n = s[2 + 5]
        cdef long ss = s[2 + RANK + 5]
        cdef long ds = s[2 + 2 * RANK + 5]
        for i0 in range(s[2]):
            for i1 in range(s[3]):
                for i2 in range(s[4]):
                    for i3 in range(s[5]):
                        for i4 in range(s[6]):
                            so = (s[0] + i0 * s[8] + i1 * s[9] + i2 * s[10] + i3 * s[11]
                                  + i4 * s[12])
                            do = (s[1] + i0 * s[14] + i1 * s[15] + i2 * s[16] + i3 * s[17]
                                  + i4 * s[18])
                            if ss == 1 and ds == 1:
                                memcpy(self.out + do, src + so, n * sizeof(float))
                            else:
                                for j in range(n):
                                    self.out[do + j * ds] = src[so + j * ss]

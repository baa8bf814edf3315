"""Float32 arrays that start on a cache line: the results walle hands its callers (the memory
a plan keeps comes from :mod:`walle._kernels.hugepages`, on a cache line too).

numpy places an array where its allocator does: 16 bytes past a page for a large one, any
16-byte boundary for a small one, so from one process to the next a kernel read the same
weights and wrote the same buffers at a different offset within a 64-byte line. A vector
load that straddles two lines costs two (every 64-byte AVX-512 load off the line does), and
the AVX2 panel GEMM reads a panel of b in place or copies it by its offset: on a Zen 3,
MatMul 256^3 ran 355 us from one process and 420 from the next, and the search chose
between the kernels by where the allocator had put their arrays. On a cache line, the
same plan runs at the same speed in every process.
"""

from __future__ import annotations

import math

import numpy as np

from walle._kernels.hugepages import LINE_BYTES
from walle.ops.ir import FloatArray

_LINE_FLOATS = LINE_BYTES // 4


def empty(shape: tuple[int, ...] | int) -> FloatArray:
    """An uninitialised C-contiguous float32 array whose first element starts a cache line."""
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    size = math.prod(dims)
    raw = np.empty(size + _LINE_FLOATS, np.float32)
    start = (-raw.ctypes.data % LINE_BYTES) // 4
    return raw[start : start + size].reshape(dims)


# Where numpy's allocator puts a large array (malloc's mmap: its 16-byte header past a page).
CALLERS_OFFSET = 16


def as_callers(x: FloatArray) -> FloatArray:
    """A C-contiguous float32 copy of ``x`` that starts CALLERS_OFFSET bytes past a cache line,
    as a caller's array commonly does: what a plan that reads its callers' arrays in place
    sees, and so what a search times its candidates on (MatMul 256^3 at AVX-512, b read in
    place: 304 us on a line, 328 at 16 bytes past one; the panel GEMM, which copies b's
    panels, 293 and 299)."""
    raw = np.empty(x.size + _LINE_FLOATS, np.float32)
    start = ((CALLERS_OFFSET - raw.ctypes.data) % LINE_BYTES) // 4
    out = raw[start : start + x.size].reshape(x.shape)
    out[...] = x
    return out

"""Arrays that live as long as a plan (its buffers, weights and kernels' scratch), carved from
memory that asks the kernel for transparent huge pages.

A plan's run reads tens of MB of weights and buffers spread over thousands of 4 KiB pages,
more than the TLB maps (2048 entries on an Intel Golden Cove core: 8 MiB), so every layer of
a whole model paid page walks. On 2 MiB pages the same bytes take a few dozen entries: with
a plan's memory from here, SqueezeNet 1.1 ran 0.97-0.99x onnxruntime's speed -> 1.05-1.07x
and ResNet-50 1.00-1.02x -> 1.04-1.05x (batch 1, one core of an Intel Xeon; onnxruntime's
memory on ordinary pages in both). Linux backs memory with huge pages where it asks
(``madvise``, the default mode of /sys/kernel/mm/transparent_hugepage/enabled on Debian and
Ubuntu), which numpy does only for arrays of 4 MiB and more; here arrays share 2 MiB-aligned
chunks that ask, so small ones sit on huge pages too. Where the kernel has no such pages
(THP "never", another OS) the chunks are ordinary memory: the same arrays, nothing lost.

Carved memory is never handed out twice: a chunk is unmapped when the last array cut from it
is gone, so one long-lived array keeps its chunk (at most ``_CHUNK_BYTES``) resident. Hence
only for memory a plan keeps, never for a call's results.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import threading

import numpy as np
import numpy.typing as npt

_HUGE_PAGE = 2 << 20
# Bytes per shared chunk; an array of more than a quarter of it takes a mapping of its own.
_CHUNK_BYTES = 32 << 20
# Every array starts on a cache line (walle.ops.aligned takes this size from here).
LINE_BYTES = 64


class _Arena:
    """Bump allocation over chunks of anonymous memory (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._chunk: np.ndarray | None = None  # uint8 view of the current chunk's mapping
        self._used = 0

    def take(self, nbytes: int) -> np.ndarray:
        """``nbytes`` of zeroed bytes on a cache line (uint8)."""
        size = -(-max(nbytes, 1) // LINE_BYTES) * LINE_BYTES
        if size > _CHUNK_BYTES // 4:
            return _mapping(size)[:nbytes]
        with self._lock:
            if self._chunk is None or self._used + size > self._chunk.size:
                self._chunk, self._used = _mapping(_CHUNK_BYTES), 0
            start = self._used
            self._used += size
            return self._chunk[start : start + nbytes]


def _mapping(nbytes: int) -> np.ndarray:
    """A fresh anonymous mapping of at least ``nbytes`` (zeros), its usable part starting on
    a huge page and asking for huge pages (uint8 view; the mapping lives while views do).
    Where mmap has no private mappings (Windows), numpy's zeros."""
    size = -(-nbytes // _HUGE_PAGE) * _HUGE_PAGE
    if not hasattr(mmap, "MAP_PRIVATE"):
        whole = np.zeros(size + LINE_BYTES, np.uint8)
        start = -whole.ctypes.data % LINE_BYTES
        return whole[start : start + size]
    # private: a shared anonymous mapping is shmem, whose huge pages are another setting
    area = mmap.mmap(-1, size + _HUGE_PAGE, flags=mmap.MAP_PRIVATE)
    whole = np.frombuffer(area, np.uint8)
    start = -whole.ctypes.data % _HUGE_PAGE  # a multiple of the 4 KiB page: mmap's start is
    advise = getattr(mmap, "MADV_HUGEPAGE", None)
    if advise is not None:
        # a kernel built without transparent huge pages refuses: ordinary memory then
        with contextlib.suppress(OSError):
            area.madvise(advise, start, size)
    return whole[start : start + size]


_arena = _Arena()


def zeros(shape: int | tuple[int, ...], dtype: npt.DTypeLike = np.float32) -> np.ndarray:
    """A C-contiguous array of zeros on a cache line, on huge-page memory where the kernel
    gives it (see the module's docstring: for memory a plan keeps)."""
    dims = (shape,) if isinstance(shape, int) else tuple(int(d) for d in shape)
    kind = np.dtype(dtype)
    raw = _arena.take(math.prod(dims) * kind.itemsize)
    return raw.view(kind).reshape(dims)


def copy(array: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``array`` (its dtype and shape) on huge-page memory."""
    out = zeros(array.shape, array.dtype)
    out[...] = array
    return out

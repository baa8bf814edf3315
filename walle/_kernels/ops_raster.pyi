"""Types of the compiled raster and pooling kernels (cython_kernels/ops_raster.pyx)."""

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from walle.ops.ir import FloatArray, Region

# Instruction-set levels, widest first: {"avx512": 2, "avx2": 1, "sse": 0}.
LEVELS: dict[str, int]

def best_level() -> int:
    """The widest level this CPU runs (2 AVX-512F, 1 AVX2 + FMA, 0 baseline SSE2)."""

def level() -> int:
    """The level the pooling kernel (WindowReduceKernel) dispatches to now."""

def set_level(value: int) -> None:
    """Run the pooling kernel at ``value``; ValueError above the CPU's best level."""

def normalise(
    sizes: Sequence[int], src_strides: Sequence[int], dst_strides: Sequence[int]
) -> tuple[list[int], list[int], list[int], int]:
    """(sizes, src strides, dst strides, mode) of a region in the order it is copied (mode 0:
    element runs, 1: blocked, a transpose, 2: repeat, each float of a row several times)."""

def first_bad_index(ids: npt.NDArray[Any], bound: int) -> int:
    """The flat position of the first value of the C-contiguous ``ids`` (int32, int64,
    float32 or float64) that is not a whole number in [-bound, bound), or -1 (TypeError for
    another dtype or layout)."""

class GatherKernel:
    """out[o, t, :] = data[o, indices[t], :]: rows of ``inner`` floats picked by the float
    indices (whole numbers in [-rows, rows), checked before each run by the backend; others
    are clamped).

    ValueError if a buffer is not C-contiguous float32 or the sizes do not agree.
    """

    def __init__(
        self,
        data: FloatArray,
        indices: FloatArray,
        out: FloatArray,
        outer: int,
        rows: int,
        inner: int,
    ) -> None: ...
    def run(self) -> None: ...

class ResampleKernel:
    """y[o, t, :] = sum over taps k of x[o, index[k, t], :] * weights[k, t], added in tap
    order with each product and sum rounded to float (a ``fused.resample`` step: a linear or
    cubic Resize's pass along one axis, the bits of its take, mul and add parts).

    ValueError if a buffer is not C-contiguous float32, index and weights are not [taps, n]
    alike, an index lies outside [0, dim) or the sizes do not agree.
    """

    def __init__(
        self,
        x: FloatArray,
        y: FloatArray,
        outer: int,
        dim: int,
        inner: int,
        index: npt.NDArray[Any],
        weights: npt.NDArray[Any],
    ) -> None: ...
    def run(self) -> None: ...

class RasterKernel:
    """Fill the output (unless ``fill`` is None; only the [start, stop) runs of ``gaps``
    where given: the elements no region writes), then copy each region from its input.

    ValueError if a buffer is not C-contiguous float32, a region has rank above 6 or a gap
    lies outside the output.
    """

    bordered: bool  # a pad (one copy of whole planes, the fill around them): one pass

    def __init__(
        self,
        inputs: Sequence[FloatArray],
        out: FloatArray,
        regions: Iterable[Region],
        fill: float | None,
        gaps: npt.NDArray[np.int64] | None = None,
    ) -> None: ...
    def run(self) -> None: ...
    def io_arrays(self) -> tuple[FloatArray, FloatArray] | tuple[()]:
        """The arrays ``run_io`` replaces: the input and the output (empty for a raster of
        several inputs, which ``run_io`` does not take)."""

    def run_io(self, x: FloatArray, y: FloatArray) -> None:
        """Run on the caller's arrays (each with the build-time size): no copies."""

# (x, y, sizes, strides, offset, kind, planes or None, fill) of a pooling kernel
Pooling = tuple[
    FloatArray,
    FloatArray,
    tuple[int, ...],
    tuple[int, ...],
    int,
    int,
    tuple[npt.NDArray[np.int64], int, int, int, int, int, int, int] | None,
    float,
]

class WindowReduceKernel:
    """Pooling without the window tensor: y = reduce over the first 2 dims of ``region``.

    ``region`` is a pooling raster's (sizes [KH, KW, N, C, OH, OW]); ``kind`` 0 sums,
    1 averages, 2 takes the max.
    """

    def __init__(self, x: FloatArray, y: FloatArray, region: Region, kind: int) -> None: ...
    def run(self) -> None: ...
    def pooling(self) -> Pooling:
        """``(x, y, sizes, strides, offset, kind, None, 0.0)`` as built."""

class PaddedWindowReduceKernel:
    """:class:`WindowReduceKernel` over a bordered tensor read through its pad raster's
    source in place; ``planes`` as ``ops_group.GroupConvKernel``'s, ``fill`` the border
    (-inf for max, 0 for a sum or mean)."""

    def __init__(
        self,
        x: FloatArray,
        y: FloatArray,
        region: Region,
        kind: int,
        planes: tuple[npt.NDArray[np.int64], int, int, int, int, int, int, int],
        fill: float,
    ) -> None: ...
    def run(self) -> None: ...
    def pooling(self) -> Pooling:
        """``(x, y, sizes, strides, 0, kind, planes, fill)`` as built (over the bordered
        tensor)."""

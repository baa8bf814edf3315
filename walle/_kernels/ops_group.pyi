"""Types of the compiled grouped/depthwise conv kernels (cython_kernels/ops_group.pyx)."""

import numpy as np
import numpy.typing as npt

from walle.ops.ir import FloatArray, Region

# Instruction-set levels, widest first: {"avx512": 2, "avx2": 1, "sse": 0}.
LEVELS: dict[str, int]

def best_level() -> int:
    """The widest level this CPU runs (2 AVX-512F, 1 AVX2 + FMA, 0 baseline SSE2)."""

class GroupConvKernel:
    """y[N, Cout, OH, OW] = act(grouped conv(x) + bias), x read through an im2col ``region``.

    ``weight`` holds [groups, Cout / groups, C / groups * KH * KW] values; ``act`` "none" or
    "relu"; ``level`` "avx512", "avx2", "sse", or None / "best"; ``planes`` (depthwise
    only): ``(base, rows, cols, row_stride, top, left, hp, wp)``, the padded input's planes
    read in place from ``x``. ValueError on a bad buffer, activation, level or planes.
    """

    def __init__(
        self,
        x: FloatArray,
        weight: FloatArray,
        bias: FloatArray | None,
        y: FloatArray,
        region: Region,
        groups: int,
        act: str,
        level: str | None = None,
        planes: tuple[npt.NDArray[np.int64], int, int, int, int, int, int, int] | None = None,
    ) -> None: ...
    @property
    def level(self) -> int:
        """The level this kernel runs at (read-only)."""

    @property
    def depthwise(self) -> bool:
        """Whether the per-channel (one input channel a group) mode runs (read-only)."""

    def run(self) -> None:
        """Compute y from the build-time buffers (GIL released, OpenMP over rows or planes)."""

class BiasActKernel:
    """y[N, C, ...] = act(y + bias[c] (+ residual)) in place; ``bias`` C values or None;
    ``residual`` laid out as y, or None; ``act`` "none" or "relu" (keeps NaN). ValueError on
    a bad buffer, activation or level."""

    def __init__(
        self,
        y: FloatArray,
        bias: FloatArray | None,
        channels: int,
        act: str,
        level: str | None = None,
        residual: FloatArray | None = None,
    ) -> None: ...
    @property
    def level(self) -> int:
        """The level this kernel runs at (read-only)."""

    def run(self) -> None:
        """Apply bias and activation to the build-time buffer (GIL released)."""

"""Types of the compiled grouped/depthwise conv kernels (cython_kernels/ops_group.pyx)."""

import numpy as np
import numpy.typing as npt

from walle.ops.ir import FloatArray, Region

# Instruction-set levels, widest first: {"avx512": 2, "avx2": 1, "sse": 0}.
LEVELS: dict[str, int]

def best_level() -> int:
    """The widest level this CPU runs (2 AVX-512F, 1 AVX2 + FMA, 0 baseline SSE2)."""

def channel_lanes_fits(
    region: Region,
    groups: int,
    outputs: int,
    planes: tuple[npt.NDArray[np.int64], int, int, int, int, int, int, int] | None = None,
) -> bool:
    """Whether :class:`GroupConvKernel` runs this conv with ``channel_lanes``: depthwise
    (one input and one output channel a group), 3x3 or 5x5, dilation 1, stride 1 or 2, a
    padded plane of at most 64 x 64 floats."""

class GroupConvKernel:
    """y[N, Cout, OH, OW] = act(grouped conv(x) + bias), x read through an im2col ``region``.

    ``weight`` holds [groups, Cout / groups, C / groups * KH * KW] values; ``act`` "none",
    "relu", "relu6" or "hard_swish"; ``level`` "avx512", "avx2", "sse", or None / "best";
    ``planes`` (depthwise only): ``(base, rows, cols, row_stride, top, left, hp, wp)``, the
    padded input's planes read in place from ``x``; ``channel_lanes``: the depthwise conv
    with its channels in the vector lanes (:func:`channel_lanes_fits`). ValueError on a bad
    buffer, activation, level or planes, or a conv channel lanes do not run.
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
        channel_lanes: bool = False,
    ) -> None: ...
    @property
    def level(self) -> int:
        """The level this kernel runs at (read-only)."""

    @property
    def depthwise(self) -> bool:
        """Whether the per-channel (one input channel a group) mode runs (read-only)."""

    @property
    def channel_lanes(self) -> bool:
        """Whether the depthwise conv runs with its channels in the vector lanes (read-only)."""

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

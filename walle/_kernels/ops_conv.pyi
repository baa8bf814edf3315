"""Types of the compiled convolution kernels, direct, Winograd and packed GEMM
(cython_kernels/ops_conv.pyx)."""

from walle.ops.ir import FloatArray, Region

# Instruction-set levels, widest first: {"avx512": 2, "avx2": 1, "sse": 0}.
LEVELS: dict[str, int]

def best_level() -> int:
    """The widest level this CPU runs (2 AVX-512F, 1 AVX2 + FMA, 0 baseline SSE2)."""

def level() -> int:
    """The level new ConvKernels are built at (the CPU's best unless set_level lowered it)."""

def set_level(value: int) -> None:
    """Build every later ConvKernel at ``value``; ValueError above the CPU's best level."""

def relu_cap(kind: str, act: str) -> float:
    """The kernels' ``relu``: 0 for "none", inf for "relu", 6 for "relu6", -1 for
    "hard_swish", -2 for "hard_swish6"."""

def all_finite(a: FloatArray) -> bool:
    """Whether the C-contiguous float32 array holds no NaN and no infinity."""

class ConvKernel:
    """y[N, Cout, OH*OW] = act(conv(x) + bias), x read through an im2col ``region``.

    ``weight`` is [Cout, C*KH*KW]; ``act`` a :func:`relu_cap` name; ``level`` "avx512",
    "avx2", "sse", "best", or None for the module's :func:`level`. With ``pad`` = (top,
    left, HP, WP), ``x`` is the unpadded source of the zero-bordered planes the region
    reads (:func:`pad_fits`), copied a band of rows at a time into a scratch of about
    ``band_bytes``. ValueError on a bad buffer, activation, level or pad.
    """

    def __init__(
        self,
        x: FloatArray,
        weight: FloatArray,
        bias: FloatArray | None,
        y: FloatArray,
        region: Region,
        act: str,
        level: str | None = None,
        pad: tuple[int, int, int, int] | None = None,
        band_bytes: int = 262144,
    ) -> None: ...
    @property
    def level(self) -> int:
        """The level this kernel runs at (read-only)."""

    def run(self) -> None:
        """Compute y from the build-time buffers (GIL released, OpenMP over output rows)."""

def pad_fits(region: Region, shape: tuple[int, ...], pad: tuple[int, int, int, int]) -> bool:
    """Whether :class:`ConvKernel` reads the unpadded source of ``shape`` for ``region``
    over its zero-bordered copy (``pad``: top, left, HP, WP)."""

def winograd_fits(region: Region) -> bool:
    """Whether an im2col region is a 3x3 window at stride 1 and dilation 1."""

class WinogradKernel:
    """y[N, Cout, OH*OW] = act(conv(x) + bias) for a 3x3 stride-1 conv by Winograd
    F(tile x tile, 3x3), ``tile`` 6, 4 or 2 (5x5: 2).

    Otherwise the same arguments as :class:`ConvKernel`; ``y_channels``/``y_channel0``: one
    group of a grouped conv writing its channels into the whole output; ``pad`` (top,
    left): ``x`` is the unpadded source inside the zero-padded tensor ``region`` reads.
    ``f2_tail``: the last image's tiles past the whole groups may run by F(2x2, 3x3) where
    that is less work.
    ValueError on a
    region :func:`winograd_fits` turns down, a bad buffer, activation, level or tile.
    """

    def __init__(
        self,
        x: FloatArray,
        weight: FloatArray,
        bias: FloatArray | None,
        y: FloatArray,
        region: Region,
        act: str,
        level: str | None = None,
        tile: int = 4,
        y_channels: int | None = None,
        y_channel0: int = 0,
        pad: tuple[int, int] | None = None,
        f2_tail: bool = True,
    ) -> None: ...
    @property
    def tile(self) -> int:
        """Outputs per tile side: 6, 4 or 2."""
    @property
    def last_group(self) -> tuple[int, int]:
        """(level, vectors) of the narrower last group, (0, 0) where there is none."""
    @property
    def f2_corner(self) -> tuple[int, int, int]:
        """(level, vectors, groups) of the F(2x2, 3x3) tail, (0, 0, 0) where there is none."""
    @property
    def level(self) -> int:
        """The level this kernel runs at (read-only)."""

    def run(self) -> None:
        """Compute y from the build-time buffers (GIL released, OpenMP over tile groups)."""

class GemmConvKernel:
    """y[N, Cout, OH*OW] = act(conv(x) + bias) as a packed GEMM over the im2col columns of
    ``region`` (any stride, dilation, padded input), the columns never written whole.

    Otherwise the same arguments as :class:`WinogradKernel` (no ``tile``, no ``pad``);
    ``residual`` (laid out as ``y``) is added before the activation; ``kc``/``nc``
    override the cache blocking (reduction rows per packed block, columns per chunk);
    ``direct`` reads the columns in place instead of packing them (a 1x1 stride-1 region,
    :func:`gemm_direct_fits`); ``long_k`` (no ``kc``) splits the reduction into the fewest
    blocks of up to 512 rows, the chunks of columns as by default (:func:`gemm_long_fits`).
    ValueError on a bad buffer, activation, level or block
    size, a region that reads outside ``x``, or ``direct`` on a region that does not fit.
    """

    def __init__(
        self,
        x: FloatArray,
        weight: FloatArray,
        bias: FloatArray | None,
        y: FloatArray,
        region: Region,
        act: str,
        level: str | None = None,
        kc: int | None = None,
        nc: int | None = None,
        y_channels: int | None = None,
        y_channel0: int = 0,
        residual: FloatArray | None = None,
        direct: bool = False,
        long_k: bool = False,
    ) -> None: ...
    @property
    def level(self) -> int:
        """The level this kernel runs at (read-only)."""

    def run(self) -> None:
        """Compute y from the build-time buffers (GIL released, OpenMP over column chunks)."""

def gemm_long_fits(region: Region, level: str | None = None) -> bool:
    """Whether ``long_k`` gives :class:`GemmConvKernel` fewer reduction blocks for
    ``region`` at ``level`` (None: the module's)."""

def gemm_direct_fits(region: Region) -> bool:
    """Whether :class:`GemmConvKernel` can read ``region``'s columns in place (a 1x1
    window over output rows that follow each other in the source)."""

def lanes_fits(region: Region, deep: bool = False) -> bool:
    """Whether :class:`LanesConvKernel` runs ``region``: with ``deep``, any region that reads
    forward; else output rows of 16 columns or more, source columns 1 to 4 apart."""

class LanesConvKernel:
    """y[N, Cout, OH*OW] = act(conv(x) + bias) with the output channels in the vector lanes,
    each input value broadcast where it lies (nothing packed): a first layer's conv.

    The same arguments as :class:`ConvKernel`; ``wide`` picks AVX-512's tile of 32 channels
    x 8 columns (True) or 16 x 16 (False; None: 32 x 8 for strided columns); ``deep`` the
    tiles for convs of many taps (2-4 vectors of channels x 6-8 positions of the flattened
    output plane, any column stride). With ``pad`` = (top, left, HP, WP), ``x`` is the
    unpadded source [N, C, H, W] of the region's zero-padded HP x WP planes: each band of
    output rows copies its padded input rows (about ``band_bytes``) into a scratch first,
    so the padded tensor is never written. The tiles ask for their input rows a few tiles
    ahead where an image's source is bigger than ``l2_bytes`` (the L2 cache). ValueError
    on a bad buffer, activation or level, a pad that does not match the region, or a region
    :func:`lanes_fits` refuses.
    """

    def __init__(
        self,
        x: FloatArray,
        weight: FloatArray,
        bias: FloatArray | None,
        y: FloatArray,
        region: Region,
        act: str,
        level: str | None = None,
        wide: bool | None = None,
        deep: bool = False,
        pad: tuple[int, int, int, int] | None = None,
        band_bytes: int = ...,
        l2_bytes: int = ...,
    ) -> None: ...
    @property
    def level(self) -> int:
        """The level this kernel runs at (read-only)."""
    @property
    def wide(self) -> bool:
        """Whether it runs AVX-512's 32 x 8 tile (read-only)."""
    @property
    def ahead(self) -> int:
        """Tiles ahead whose input rows the deep tiles' taps ask for (0: none)."""
    @property
    def deep(self) -> bool:
        """Whether it runs the deep tiles (read-only)."""
    @property
    def form(self) -> int:
        """The tile shape: 0 narrow, 1 wide, 2-4 deep with that many vectors of channels."""
    @property
    def chunk(self) -> int:
        """The deep tiles' output positions per chunk (every block of channels in turn)."""
    @property
    def padded(self) -> bool:
        """Whether x is the unpadded source (``pad``), read a band of padded rows at a time."""
    @property
    def band(self) -> int:
        """Output rows per band of padded rows (with ``pad``), else 0."""
    @property
    def threads(self) -> int:
        """OpenMP threads a run splits its rows over (read-only)."""
    def run(self) -> None:
        """Compute y from the build-time buffers (GIL released, OpenMP over output rows)."""
    def io_arrays(self) -> tuple[FloatArray, FloatArray]: ...
    def run_io(self, x: FloatArray, y: FloatArray) -> None:
        """Run on the caller's x (read where it lies) and y, sized as the build-time ones."""

class LanesPoolKernel:
    """A :class:`LanesConvKernel` and the row-wise pooling that alone reads its output, run a
    band of rows at a time through a buffer of about ``band_bytes`` (the conv's output is
    never written): the same bits as the kernels apart. ``sizes``/``strides``: the pool's
    region over the conv's output (offset 0), or with ``pad`` = (top, left, HP, WP) over it
    placed in planes of HP x WP, bordered by ``fill``; ``kind`` 0 sum, 1 mean, 2 max.
    ValueError on a region that is not such a pooling. The conv's threads split the bands.
    """

    def __init__(
        self,
        conv: LanesConvKernel,
        y: FloatArray,
        sizes: tuple[int, ...],
        strides: tuple[int, ...],
        kind: int,
        pool_level: int,
        band_bytes: int,
        pad: tuple[int, int, int, int] | None = None,
        fill: float = 0.0,
    ) -> None: ...
    @property
    def band(self) -> int:
        """Pooled rows per band."""
    def run(self) -> None: ...
    def io_arrays(self) -> tuple[FloatArray, FloatArray]: ...
    def run_io(self, x: FloatArray, y: FloatArray) -> None:
        """Run on the caller's x (the conv's input, read where it lies) and y."""

class MatmulPackedKernel:
    """c[m, n] = act(a @ b + bias) as a packed GEMM: a's rows read in place 8 at a time
    (``a_in_place``; packed per call where some columns run by the tail tiles), b's columns
    packed once at build time when ``b_constant`` (a matmul's weights), read where they lie
    with ``b_in_place`` (only the leftover columns packed; a call whose b is not 64-byte
    aligned packs it instead: ``b_read_in_place`` says which the last call did), else packed
    per call.

    ``bias_mode``: 0 none, 1 per column (``bias[n]``), 2 per row (``bias[m]``); ``act``:
    none or relu (which keeps NaN); ``kc``/``nc`` as :class:`GemmConvKernel`'s; ``wide``:
    AVX-512's 8 x 3 tile over strips of 48 (ignored at other levels: ``wide`` says which).
    ValueError on a bad buffer, shape, activation, bias or level.
    """

    level: int
    wide: bool
    prepacked: bool
    a_in_place: bool
    b_read_in_place: bool
    units: int  # column chunks: the work units its threads split

    def __init__(
        self,
        a: FloatArray,
        b: FloatArray,
        c: FloatArray,
        bias: FloatArray | None,
        bias_mode: int,
        act: str,
        b_constant: bool = False,
        level: str | None = None,
        kc: int | None = None,
        nc: int | None = None,
        b_in_place: bool = False,
        wide: bool = False,
    ) -> None: ...
    def run(self) -> None: ...
    def io_arrays(self) -> tuple[FloatArray, FloatArray, FloatArray]: ...
    def run_io(self, a: FloatArray, b: FloatArray, c: FloatArray) -> None: ...

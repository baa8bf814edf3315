"""Types of the compiled integer matmul kernel (cython_kernels/ops_int8.pyx)."""

from walle.ops.ir import FloatArray, Region

# Instruction-set levels, widest first: {"avx512": 2, "avx2": 1, "sse": 0}.
LEVELS: dict[str, int]
# The tiles' forms, by the index gemm_int8.h gives them.
FORMS: tuple[str, ...]
# The longest reduction whose int32 sums cannot overflow.
MAX_K: int

def has_vnni() -> bool:
    """Whether this CPU runs the VNNI tiles (AVX-512 VNNI and BW, ZMM state saved)."""

def weights_fit(b: FloatArray) -> bool:
    """Whether a constant b can be this kernel's: whole numbers in [-255, 255], rows at
    most MAX_K."""

class MatmulInt8Kernel:
    """c[m, n] = float(a @ b) (+ bias, ReLU), the sums in int32; a's values whole numbers in
    [0, 255], b's in [-255, 255]."""

    form: str
    panels: int

    def __init__(
        self,
        a: FloatArray,
        b: FloatArray,
        c: FloatArray,
        bias: FloatArray | None = None,
        bias_mode: int = 0,
        act: str = "none",
        level: str | None = None,
        vnni: bool | None = None,
    ) -> None: ...
    def run(self) -> None:
        """One product, a packed anew from its buffer."""

class ConvInt8Kernel:
    """y[i] = float(w @ x[i]) (+ bias per row, ReLU) for each image i, the sums in int32:
    a conv's constant weights w [m, k] times its im2col columns x [batch, k, n] of a
    quantized value (whole numbers in [0, 255]), or, with ``region`` (the im2col raster's),
    the conv's input read in place; y [batch, m, n]."""

    form: str
    panels: int

    def __init__(
        self,
        w: FloatArray,
        x: FloatArray,
        y: FloatArray,
        bias: FloatArray | None = None,
        act: str = "none",
        level: str | None = None,
        vnni: bool | None = None,
        region: Region | None = None,
    ) -> None: ...
    def run(self) -> None:
        """Every image's product, its columns packed anew a chunk at a time."""

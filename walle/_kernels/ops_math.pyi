"""Types of the compiled math kernels of the cython ops backend (cython_kernels/ops_math.pyx).

Every kernel is built once over fixed float32 buffers (ValueError if one is not a non-empty
C-contiguous float32 array) and ``run()`` is the only per-call work.
"""

from collections.abc import Sequence
from typing import Literal

from walle.ops.ir import FloatArray

# Kind and activation names to the kernels' codes (an unknown name raises KeyError).
UNARY_KINDS: dict[str, int]
BINARY_KINDS: dict[str, int]
REDUCE_KINDS: dict[str, int]
ACTS: dict[str, int]
# Instruction-set levels, widest first: {"avx512": 2, "avx2": 1, "sse": 0}.
LEVELS: dict[str, int]

def best_level() -> int:
    """The widest level this CPU runs (2 AVX-512F, 1 AVX2 + FMA, 0 baseline SSE2)."""

def level() -> int:
    """The level every kernel of this module dispatches to now."""

def set_level(value: int) -> None:
    """Run every kernel of this module at ``value``; ValueError above the CPU's best level."""

class GemmKernel:
    """c[batch, m, n] = a @ b (+ bias) (+ res) (activation); a or b may be shared across the
    batch.

    ``bias_mode`` 0 none, 1 per column, 2 per row; ``act`` a key of :data:`ACTS`;
    ``epilogue_only``: c already holds the product, only bias and activation are applied;
    ``wide=False`` keeps off the AVX-512 panel kernel; ``res``: a residual laid out as c,
    added after the bias (at AVX2, with a per-row bias, in the panels' stores).
    """

    def __init__(
        self,
        a: FloatArray,
        b: FloatArray,
        c: FloatArray,
        bias: FloatArray | None,
        bias_mode: int,
        act: str,
        epilogue_only: bool = False,
        wide: bool = True,
        res: FloatArray | None = None,
    ) -> None: ...
    def io_arrays(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """The arrays ``run_io`` replaces, in its argument order: a, b, c."""

    def run(self) -> None: ...
    def run_io(self, a: FloatArray, b: FloatArray, c: FloatArray) -> None:
        """Run on the caller's arrays (sized like the build-time a, b, c): no copies."""

class RowKernel:
    """Softmax or layer norm over the last axis of x, into y. ``most``: the widest
    instruction-set level a softmax runs at (2 AVX-512, 1 AVX2; the module's level where
    that is lower); ValueError outside 0-2."""

    def __init__(
        self,
        kind: Literal["softmax", "layernorm"],
        x: FloatArray,
        y: FloatArray,
        gamma: FloatArray | None = None,
        beta: FloatArray | None = None,
        eps: float = 0.0,
        most: int = 2,
    ) -> None: ...
    def run(self) -> None: ...
    def io_arrays(self) -> tuple[FloatArray, FloatArray]:
        """The arrays ``run_io`` replaces, in its argument order: x, y."""

    def run_io(self, x: FloatArray, y: FloatArray) -> None:
        """Run on the caller's arrays (shaped like the build-time ones): no copy in or out."""

class UnaryKernel:
    """y = f(x) element-wise over contiguous buffers of the same size (``kind``: UNARY_KINDS)."""

    def __init__(self, kind: str, x: FloatArray, y: FloatArray) -> None: ...
    def run(self) -> None: ...
    def io_arrays(self) -> tuple[FloatArray, FloatArray]:
        """The arrays ``run_io`` replaces, in its argument order: x, y."""

    def run_io(self, x: FloatArray, y: FloatArray) -> None:
        """Run on the caller's arrays (each of the build-time size): no copy in or out."""

class BinaryKernel:
    """y = a op b with broadcasting (``kind``: BINARY_KINDS).

    ``sizes`` (at most 4 dims) and the element strides (0 where broadcast) come collapsed
    from the backend; the innermost dim has strides 1 or 0 on each side.
    """

    def __init__(
        self,
        kind: str,
        a: FloatArray,
        b: FloatArray,
        y: FloatArray,
        sizes: Sequence[int],
        a_strides: Sequence[int],
        b_strides: Sequence[int],
    ) -> None: ...
    def run(self) -> None: ...
    def io_arrays(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """The arrays ``run_io`` replaces, in its argument order: a, b, y."""

    def run_io(self, a: FloatArray, b: FloatArray, y: FloatArray) -> None:
        """Run on the caller's arrays (each of its build-time array's size): no copies."""

class ChainKernel:
    """y = a chain of element-wise ops over broadcast operands, computed in one pass.

    ``ops`` lists ``(op, kind, operand, side)``: ``op`` "unary" (kind of UNARY_KINDS) or
    "binary" (kind of BINARY_KINDS) with ``operands[operand]`` on the right of the chain's
    value (side 0), on its left (side 1), or the chain's value on both sides (side 2); the
    first op's chain value is ``operands[0]``. ``sizes`` (at most 4 dims) and one list of
    element strides per operand (0 where broadcast; the innermost 1 or 0) come collapsed
    from the backend; y is contiguous. At most 32 ops and 16 operands (else ValueError).
    ``affine``: the chain is x * a + b with one a and b a row (then ReLU or not), run as one
    pass of the same bits; ``hard``: it is clip(x * a + b, lo, hi) (4, HardSigmoid) or that
    times x (5, HardSwish), one pass of the same bits, else 0. ``silu``: it is
    x * sigmoid(x) (Sigmoid, then Mul by its input), one pass of the same bits (a NaN's sign
    bit aside). ``quant_runs``: how many
    quantizers' runs (x / s, round, [+ zp], fmax, min, [- zp,] * s by one value a row) run
    as one op each, in the chain's order and bits.
    """

    affine: int
    hard: int
    silu: int
    quant_runs: int

    def __init__(
        self,
        ops: Sequence[tuple[str, str, int, int]],
        operands: Sequence[FloatArray],
        y: FloatArray,
        sizes: Sequence[int],
        strides: Sequence[Sequence[int]],
    ) -> None: ...
    def run(self) -> None: ...
    def io_arrays(self) -> tuple[FloatArray, ...]:
        """The arrays ``run_io`` replaces, in its argument order: the operands, then y."""

    def run_io(self, *arrays: FloatArray) -> None:
        """Run on the caller's arrays (one per ``io_arrays`` entry, each with its build-time
        array's size): no copies in or out (a plan's last step writes the array it returns)."""

class TopKKernel:
    """y = the indices (as floats) of the k first of x's middle axis ([outer, r, inner]) in
    rank order: NaN ranks above every number, ties to the lower index."""

    def __init__(
        self, x: FloatArray, y: FloatArray, outer: int, r: int, inner: int, k: int, largest: bool
    ) -> None: ...
    def run(self) -> None: ...

class CumSumKernel:
    """y = running float32 sums of x along its middle axis ([outer, r, inner])."""

    def __init__(
        self,
        x: FloatArray,
        y: FloatArray,
        outer: int,
        r: int,
        inner: int,
        exclusive: bool,
        reverse: bool,
    ) -> None: ...
    def run(self) -> None: ...

class TakeAlongKernel:
    """y[o, j, q] = x[o, idx[o, j, q], q] (indices checked by the caller)."""

    def __init__(
        self,
        x: FloatArray,
        idx: FloatArray,
        y: FloatArray,
        outer: int,
        r: int,
        m: int,
        inner: int,
    ) -> None: ...
    def run(self) -> None: ...

class ReduceKernel:
    """y = reduce(x) over the middle axis of x viewed as [outer, r, inner] (REDUCE_KINDS)."""

    def __init__(
        self, kind: str, x: FloatArray, y: FloatArray, outer: int, r: int, inner: int
    ) -> None: ...
    def run(self) -> None: ...

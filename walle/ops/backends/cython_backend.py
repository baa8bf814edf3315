"""The cython backend: compiled kernels (cython_kernels/ops_*.pyx) that release the GIL.

Atomic ops map to the kernels of ``walle._kernels.ops_math`` and ``ops_raster``; fused
``matmul_bias_act``, ``softmax``, ``layernorm`` and ``window_reduce`` (pooling) run as one
kernel call each (on an AVX-512 CPU ``softmax`` also offers ``fused_avx2``, its AVX2 loop,
which some CPUs run faster: the search times both). ``conv2d`` offers ``direct``
(``ops_conv``: register-tiled convolution reading the padded input in place, bias and ReLU
fused), ``gemm`` (``ops_conv``'s packed GEMM over the im2col columns, packed a cache-sized
block at a time and never written whole, bias, a residual shortcut and ReLU fused: the 1x1
and strided convs, and with ``panel`` the only ones for a conv step that took a shortcut
add; ``panel``, at AVX2, an unpadded 1x1 stride-1 conv as ops_math's matmul panels, bias,
shortcut and activation in their stores), ``im2col``
(the column raster, numpy's BLAS over the whole batch, then the epilogue) and, for 3x3
stride-1 convs, ``winograd`` (F(4x4, 3x3): a quarter of the multiply-adds),
``winograd_f2`` (F(2x2, 3x3): 4/9 of them, but fewer idle tiles on small planes and a third
of the transformed filters' bytes) and, on planes of 24x24 and up, ``winograd_f6``
(F(6x6, 3x3): 64/324 of them, filters transformed to 64/9 their bytes), bias and ReLU
fused; the search times them. Matrix
products offer ``direct`` (the tiled C kernel, best for small products where numpy's call
overhead dominates), ``blas`` (numpy's matmul, then the C epilogue for bias and activation)
and, for products by a 2-D b of 8 or more rows of a (its leading dims flattened), ``packed``
(``ops_conv.MatmulPackedKernel``: the packed GEMM above with a's rows as its output
channels, read in place, constant weights packed once at build time, bias and ReLU fused)
and, where b is not a constant, ``packed_direct`` (the same reading b's columns in place:
faster while b's rows lie close, slower once they are 4 KiB apart), and at AVX-512
``packed_wide`` and ``packed_direct_wide`` (the same in the convs' 8 x 3 tile over strips
of 48 columns: 0.93-0.98x the time on MatMul 256^3-512^3 on an Intel Xeon with two 512-bit
FMA ports, level on 64-row products), measured by the search.
A quantized product (the ``integer`` attribute: a of whole numbers in [0, 255], a constant b
of whole numbers in [-255, 255]) also offers ``int8`` (``ops_int8``: int32 sums, VNNI's
8-bit dot products where the CPU has them, else 16-bit multiply-adds; bias and ReLU fused),
and so does a quantized conv (``int8``: its im2col columns, then the integer product;
``int8_direct``: the same reading the input in place, no column matrix).

``group_conv2d`` (grouped and depthwise convs) offers ``direct`` (``ops_group``: block tiles
per group, or a per-channel depthwise kernel that also reads a channel shuffle and zero pad
in place), ``gemm`` and the Winograd kernels once per group (4 or more input channels per
group) and, for 1x1 convs, ``blas`` (one batched numpy matmul on the input, then
``ops_group``'s bias/ReLU epilogue); it runs at the conv family's level.

The kernels run at the widest instruction-set level the CPU has, or the one
``WALLE_OPS_ISA`` forces (:mod:`walle.ops.backends.cython_isa`, applied when the backend is
built); :attr:`CythonBackend.isa` says which, and the level is part of the backend's
identity, so search decisions timed at one level are never reused at another.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt

from walle.errors import BackendError
from walle.ops.backends import cython_isa
from walle.ops.backends.base import (
    Backend,
    Buffers,
    Call,
    MatmulCall,
    gather_call,
    is_aliased_part,
)
from walle.ops.cpu_caches import l2_bytes as _l2_bytes
from walle.ops.fusion import FusedStep, take_indices
from walle.ops.ir import (
    FloatArray,
    Graph,
    Node,
    Region,
    contiguous_strides,
    raster_sources,
    same_float,
    unfilled_runs,
)

try:
    from walle._kernels import ops_conv, ops_group, ops_int8, ops_math, ops_raster
except ImportError as exc:  # pragma: no cover - depends on the build
    raise BackendError(f"compiled kernels missing ({exc})") from exc

_BLAS_MIN_FLOPS = 2 * 32 * 32 * 32
# The activations the conv and packed-GEMM kernels apply as they store (relu6: Clip(0, 6);
# hard_swish: ONNX's HardSwish; hard_swish6: Paddle's x * relu6(x + 3) / 6)
_KERNEL_ACTS = ("none", "relu", "relu6", "hard_swish", "hard_swish6")


class CythonBackend(Backend):
    """Kernels compiled from cython_kernels/ops_*.pyx."""

    name = "cython"
    fused_ops = frozenset(
        {
            "fused.matmul_bias_act",
            "fused.softmax",
            "fused.layernorm",
            "fused.window_reduce",
            "fused.resample",
            "fused.conv2d",
            "fused.group_conv2d",
            "fused.elementwise",
        }
    )
    # Measured on a 2-core EPYC (AVX-512), one thread: exp over 64k floats ~22 us,
    # [64,256]@[256,256] direct ~80 us (~100 GFlop/s), numpy's BLAS similar plus ~1.5 us.
    call_overhead_s = 0.4e-6
    flops_per_s = 2.0e10
    bytes_per_s = 20.0e9

    def __init__(self) -> None:
        cython_isa.configure()  # WALLE_OPS_ISA, once per process

    @property
    def isa(self) -> str:
        """The instruction-set level the kernels dispatch to (asked of the kernels)."""
        return cython_isa.kernel_level()

    def identity(self) -> dict[str, str]:
        """The device plus the kernels' instruction-set level and the CPU model."""
        return {**super().identity(), "isa": self.isa, "cpu": cython_isa.cpu_model()}

    def supports(self, node: Node, graph: Graph) -> bool:
        if node.op == "gather_elements":  # the kernel's: indices as long as data off the axis
            data, where = graph.shape(node.inputs[0]), graph.shape(node.output)
            off_axis = [i for i in range(len(data)) if i != node.attr("axis")]
            return all(where[i] == data[i] for i in off_axis)
        if node.op == "reduce":
            return _reduce_view(graph.shape(node.inputs[0]), node.attr("axes")) is not None
        if node.op == "binary":
            return _collapse(graph, node) is not None
        if node.op == "matmul":
            return (
                _matmul_views(graph.shape(node.inputs[0]), graph.shape(node.inputs[1])) is not None
            )
        if node.op == "raster":
            return all(len(r.sizes) <= 6 for r in node.attr("regions"))
        return True

    def algorithms(self, step: FusedStep, graph: Graph) -> list[str]:
        """As :meth:`Backend.algorithms`, but a grouped conv's kernel does not need its
        parts to run here (the batched matmul of 4-D operands does not)."""
        if step.op == "fused.group_conv2d":
            parts = ["parts"] if all(self.supports(p, graph) for p in step.parts) else []
            return [*self.fused_algorithms(step, graph), *parts]
        return super().algorithms(step, graph)

    def atomic_algorithms(self, node: Node, graph: Graph) -> list[str]:
        if node.op == "matmul":
            return _matmul_algorithms(node, graph)
        return ["default"]

    def fused_algorithms(self, step: FusedStep, graph: Graph) -> list[str]:
        if step.op == "fused.matmul_bias_act":
            return _matmul_algorithms(step.parts[0], graph, step.attr("act"))
        if step.op == "fused.conv2d":
            if step.attr("act") not in _KERNEL_ACTS:
                return [] if step.attr("residual") else ["im2col"]
            region = _conv_im2col(step).attr("regions")[0]
            gemm = ["gemm", *_gemm_long(region), *_gemm_direct(region)]
            gemm += _panel(step, graph, region)
            if step.attr("residual"):  # only the GEMMs add a shortcut in their epilogue
                return gemm
            lanes = _lanes(region, graph.shape(step.output)[1])
            winograd = _winograd_algorithms(region, step, graph)
            integer = []
            if _int8_conv_fits(step, graph):  # int8_direct: the input read in place
                plain = _is_plain_view(region, graph.shape(_conv_im2col(step).inputs[0]))
                integer = ["int8"] if plain else ["int8", "int8_direct"]
            return ["direct", *gemm, "im2col", *winograd, *lanes, *integer]
        if step.op == "fused.group_conv2d":
            if step.attr("act") not in _KERNEL_ACTS:
                return []
            im2col = step.parts[step.attr("prologue", 0)]
            region = im2col.attr("regions")[0]
            plain = region.sizes[1] > step.attr("group") and _is_plain_view(
                region, graph.shape(im2col.inputs[0])
            )
            # not depthwise: a packed-GEMM kernel (or, 3x3/5x5 stride 1, Winograd) per group
            per_group = region.sizes[1] // step.attr("group") >= 4 and not step.attr("prologue")
            gemm = ["gemm", *_gemm_direct(region)] if per_group else []
            if step.attr("residual"):  # the shortcut: in BLAS's epilogue or the packed GEMM's
                return [*(["blas"] if plain else []), *gemm]
            kernels = [*gemm, *_winograd_algorithms(region, step, graph)] if per_group else []
            kernels += _channel_lanes(step, graph, region)
            return ["direct", "blas", *kernels] if plain else ["direct", *kernels]
        if step.op == "fused.elementwise":
            return ["fused"] if _chain_program(step, graph) is not None else []
        if step.op == "fused.softmax" and ops_math.level() == cython_isa.LEVELS["avx512"]:
            # the AVX2 loop beside the AVX-512 one: which is faster depends on the CPU and on
            # where the rows are read from (ops_math's walle_softmax_rows_most), so the
            # search times both
            return ["fused", "fused_avx2"]
        return ["fused"]

    def writes_channel_slice(self, step: FusedStep, algorithm: str, graph: Graph) -> bool:
        """The packed GEMM and Winograd kernels of a conv without shortcut (y_channels /
        y_channel0); Winograd only where its weights are finite (else its step falls back
        to im2col + BLAS, which writes a whole output)."""
        if step.op != "fused.conv2d" or step.attr("residual"):
            return False
        if algorithm in _GEMMS:
            return True
        if not algorithm.startswith("winograd"):
            return False
        n_pro = step.attr("prologue", 0)
        weight = graph.constants.get(step.parts[n_pro + 2].inputs[0])
        return weight is not None and bool(np.isfinite(weight).all())

    def matmul_rate(self, algorithm: str) -> float:
        if algorithm == "winograd":  # a quarter of the multiply-adds, some of it in transforms
            return 2.2e11
        if algorithm == "winograd_f2":  # 4/9 of them
            return 1.4e11
        if algorithm == "winograd_f6":  # 64/324 of them, more of it in transforms
            return 2.6e11
        if algorithm in (*_GEMMS, "packed", "packed_wide"):
            return 1.0e11
        if algorithm in ("int8", "int8_direct"):  # 4x an fp32 FMA's with VNNI, 2x without
            return 3.5e11 if ops_int8.has_vnni() else 1.6e11
        return 9.0e10 if algorithm in ("blas", "im2col") else 6.0e10

    def estimate(self, step: FusedStep, algorithm: str, graph: Graph) -> float:
        seconds = super().estimate(step, algorithm, graph)
        if algorithm in ("blas", "im2col"):
            seconds += 1.5e-6  # numpy's BLAS: a higher fixed cost per call
        first = _conv_im2col(step) if step.op == "fused.conv2d" else step.parts[0]
        if algorithm == "im2col" and not _is_plain_view(  # the column buffer: written, read
            first.attr("regions")[0], graph.shape(first.inputs[0])
        ):
            seconds += 8.0 * math.prod(graph.shape(first.output)) / self.bytes_per_s
        elif step.parts[0].op == "matmul" and graph.shape(step.parts[0].output)[-1] < 16:
            seconds *= 4.0  # fewer than 16 columns: the direct kernel's scalar edge loop
        if algorithm.startswith("winograd"):  # outputs in m x m tiles, 16-32 lanes a group
            m = _WINO_TILES[algorithm]  # and a last group of 8-24
            n, _, _, _, oh, ow = first.attr("regions")[0].sizes
            tiles = n * -(-oh // m) * -(-ow // m)
            lanes = 8 * -(-tiles // 8)
            seconds *= (m * m * tiles / (n * oh * ow)) * (lanes / tiles)
        return seconds

    def compile_atomic(
        self, node: Node, algorithm: str, graph: Graph, buffers: Buffers
    ) -> list[Call]:
        ins = [buffers[i] for i in node.inputs]
        out = buffers[node.output]
        if node.op == "unary":
            return [ops_math.UnaryKernel(node.attr("kind"), ins[0], out).run]
        if node.op == "binary":
            collapsed = _collapse(graph, node)
            if collapsed is None:  # supports() turned these down: a caller skipped it
                raise BackendError(
                    f"cython: node {node.output!r} broadcasts beyond 4 merged dims or strides "
                    "its innermost dim"
                )
            sizes, sa, sb = collapsed
            return [
                ops_math.BinaryKernel(node.attr("kind"), ins[0], ins[1], out, sizes, sa, sb).run
            ]
        if node.op == "reduce":
            view = _reduce_view(graph.shape(node.inputs[0]), node.attr("axes"))
            if view is None:  # supports() turned these down: a caller skipped it
                raise BackendError(f"cython: node {node.output!r} reduces non-adjacent axes")
            outer, r, inner = view
            return [ops_math.ReduceKernel(node.attr("kind"), ins[0], out, outer, r, inner).run]
        if node.op == "matmul":
            b_constant = node.inputs[1] in graph.constants
            views = _matmul_views(graph.shape(node.inputs[0]), graph.shape(node.inputs[1]))
            if views is None:  # supports() turned these down: a caller skipped it
                raise BackendError(f"cython: node {node.output!r} broadcasts its batch dims")
            va, vb, vout = views
            a, b, out = ins[0].reshape(va), ins[1].reshape(vb), out.reshape(vout)
            return _gemm(algorithm, a, b, out, None, 0, "none", b_constant)
        if node.op == "topk":
            shape, axis, k = graph.shape(node.inputs[0]), node.attr("axis"), node.attr("k")
            outer, inner = _around(shape, axis)
            topk = ops_math.TopKKernel(
                ins[0], out, outer, shape[axis], inner, k, node.attr("largest")
            )
            return [topk.run]
        if node.op == "cumsum":
            shape, axis = graph.shape(node.inputs[0]), node.attr("axis")
            outer, inner = _around(shape, axis)
            sums = ops_math.CumSumKernel(
                ins[0], out, outer, shape[axis], inner, node.attr("exclusive"), node.attr("reverse")
            )
            return [sums.run]
        if node.op == "gather_elements":
            shape, axis = graph.shape(node.inputs[0]), node.attr("axis")
            m = graph.shape(node.output)[axis]
            outer, inner = _around(shape, axis)
            along = ops_math.TakeAlongKernel(ins[0], ins[1], out, outer, shape[axis], m, inner)
            return [gather_call(node, graph, ins[1], shape[axis], along.run)]
        if node.op == "gather":
            shape, axis = graph.shape(node.inputs[0]), node.attr("axis")
            outer, inner = _around(shape, axis)
            kernel = ops_raster.GatherKernel(ins[0], ins[1], out, outer, shape[axis], inner)
            return [gather_call(node, graph, ins[1], shape[axis], kernel.run)]
        return [_raster(ins, out, node.attr("regions"), node.attr("fill"))]

    def compile_fused(
        self, step: FusedStep, algorithm: str, graph: Graph, buffers: Buffers
    ) -> list[Call]:
        ins = [buffers[i] for i in step.inputs]
        out = buffers[step.output]
        if step.op == "fused.softmax":
            most = 1 if algorithm == "fused_avx2" else 2
            return [ops_math.RowKernel("softmax", ins[0], out, most=most).run]
        if step.op == "fused.window_reduce":
            return _window_reduce(step, graph, buffers)
        if step.op == "fused.resample":
            return [_resample(step, graph, buffers)]
        if step.op == "fused.conv2d":
            return _conv(step, algorithm, graph, buffers)
        if step.op == "fused.group_conv2d":
            return _group_conv(step, algorithm, graph, buffers)
        if step.op == "fused.elementwise":
            return _chain(step, graph, buffers)
        if step.op == "fused.layernorm":
            gamma = ins[1].reshape(-1) if step.attr("has_gamma") else None
            beta = ins[2].reshape(-1) if step.attr("has_beta") else None
            return [
                ops_math.RowKernel("layernorm", ins[0], out, gamma, beta, step.attr("epsilon")).run
            ]
        bias = ins[2].reshape(-1) if step.attr("has_bias") else None
        mode = 0 if bias is None else (1 if step.attr("side") == "right" else 2)
        b_constant = step.inputs[1] in graph.constants
        # a [..., k] @ W as a 2-D or 3-D product (the act may follow a reshape of its output)
        views = _matmul_views(graph.shape(step.inputs[0]), graph.shape(step.inputs[1]))
        if views is None:  # fusion matches 2-D weights (or a 2-D a): never so
            raise BackendError(f"cython: step {step.name!r} broadcasts its batch dims")
        a, b, out = ins[0].reshape(views[0]), ins[1].reshape(views[1]), out.reshape(views[2])
        return _gemm(algorithm, a, b, out, bias, mode, step.attr("act"), b_constant)

    def may_interleave(
        self, first: FusedStep, first_algorithm: str, then: FusedStep, then_algorithm: str
    ) -> bool:
        return (
            first.op == "fused.conv2d"
            and first_algorithm in _LANES
            and then.op == ("fused.window_reduce")
        )

    def interleave(self, first: Call, then: Call) -> Call | None:
        """A lanes conv (a network's RGB stem) and the row-wise pooling that alone reads its
        output, padded or not, as one ``ops_conv.LanesPoolKernel``: the conv's rows go to a
        buffer of half the L2 that the pool reads before they leave it (SqueezeNet 1.1's stem
        and 3x3/2 max pool: 3.15 MB between them otherwise, read back from L3; ResNet-50's
        3.2 MB)."""
        conv, pool = getattr(first, "__self__", None), getattr(then, "__self__", None)
        pools = (ops_raster.WindowReduceKernel, ops_raster.PaddedWindowReduceKernel)
        if not (
            isinstance(conv, ops_conv.LanesConvKernel)
            and isinstance(pool, pools)
            and getattr(first, "__name__", "") == getattr(then, "__name__", "") == "run"
        ):
            return None
        x, y, sizes, strides, offset, kind, planes, fill = pool.pooling()
        written = conv.io_arrays()[1]
        if offset or x.ctypes.data != written.ctypes.data or x.nbytes != written.nbytes:
            return None
        pad = None
        if planes is not None:
            base, rows, cols, row_stride, top, left, hp, wp = planes
            plane = rows * cols  # the conv's output planes, whole and in order
            if row_stride != cols or not np.array_equal(base, np.arange(len(base)) * plane):
                return None
            pad = (top, left, hp, wp)
        try:
            kernel = ops_conv.LanesPoolKernel(
                conv, y, sizes, strides, kind, ops_raster.level(), _l2_bytes() // 2, pad, fill
            )
        except ValueError:  # not a row-wise pooling of the whole output
            return None
        return kernel.run


# A chain's op list for ops_math.ChainKernel: (op, kind, operand, side) each.
_ChainOps = list[tuple[str, str, int, int]]
_CHAIN_MAX_OPS, _CHAIN_MAX_OPERANDS = 32, 16


def _chain(step: FusedStep, graph: Graph, buffers: Buffers) -> list[Call]:
    """A ``fused.elementwise`` step as one ops_math.ChainKernel pass."""
    program = _chain_program(step, graph)
    if program is None:  # fused_algorithms turned it down: a caller skipped it
        raise BackendError(f"cython: chain {step.name!r} does not fit the chain kernel")
    names, ops, sizes, strides = program
    operands = [buffers[n] for n in names]
    return [ops_math.ChainKernel(ops, operands, buffers[step.output], sizes, strides).run]


def _chain_program(
    step: FusedStep, graph: Graph
) -> tuple[list[str], _ChainOps, list[int], list[list[int]]] | None:
    """The chain's operands (the first node's chain value first), its ops, and the output
    sizes and operand strides collapsed to at most 4 dims; None if beyond the kernel."""
    first = step.parts[0]
    names = [first.inputs[0]]
    # one operand for equal one-element constants: each quantizer of a QDQ chain brings its
    # own clamp bounds (0 and 255), and a residual unit's chain (two requantized branches,
    # their add, the next quantizer) held 17 operands, one past the kernel's 16, of which
    # 4 repeated: it ran op by op, 4.9 of QDQ ResNet-50's 55 ms in one step
    scalars: dict[tuple[tuple[int, ...], bytes], str] = {}
    ops: _ChainOps = []
    value = None  # the chain value's name after the previous node
    for node in step.parts:
        kind = node.attr("kind")
        if node.op == "unary":
            ops.append(("unary", kind, 0, 0))
        else:
            a, b = node.inputs
            if value is None:  # the first node: operand 0 is its chain value
                value = a
            if a == value and b == value:
                ops.append(("binary", kind, 0, 2))
            else:
                other, side = (b, 0) if a == value else (a, 1)
                constant = graph.constants.get(other)
                if constant is not None and constant.size == 1:
                    key = (constant.shape, constant.astype(np.float32).tobytes())
                    other = scalars.setdefault(key, other)
                if other not in names:
                    names.append(other)
                ops.append(("binary", kind, names.index(other), side))
        value = node.output
    if len(ops) > _CHAIN_MAX_OPS or len(names) > _CHAIN_MAX_OPERANDS:
        return None
    collapsed = _collapse_many(graph.shape(step.output), [graph.shape(n) for n in names])
    if collapsed is None:
        return None
    return names, ops, *collapsed


def _collapse_many(
    out: tuple[int, ...], shapes: list[tuple[int, ...]]
) -> tuple[list[int], list[list[int]]] | None:
    """Output sizes and each operand's broadcast element strides, size-1 dims dropped and
    adjacent dims merged where every operand allows; None beyond 4 dims."""
    columns: list[list[int]] = []
    for shape in shapes:
        full = (1,) * (len(out) - len(shape)) + shape
        own = contiguous_strides(full)
        columns.append([0 if d == 1 else s for d, s in zip(full, own, strict=True)])
    dims = [(size, [c[i] for c in columns]) for i, size in enumerate(out) if size != 1]
    merged: list[tuple[int, list[int]]] = []
    for size, strides in reversed(dims):
        if merged and all(
            s == t * merged[-1][0] for s, t in zip(strides, merged[-1][1], strict=True)
        ):
            merged[-1] = (merged[-1][0] * size, merged[-1][1])
        else:
            merged.append((size, strides))
    merged.reverse()
    if not merged:
        merged = [(1, [0] * len(shapes))]
    if len(merged) > 4:
        return None
    return [m[0] for m in merged], [[m[1][k] for m in merged] for k in range(len(shapes))]


def _around(shape: tuple[int, ...], axis: int) -> tuple[int, int]:
    """The sizes of ``shape`` before and after ``axis`` (a [outer, dim, inner] view)."""
    return math.prod(shape[:axis]), math.prod(shape[axis + 1 :])


def _conv_im2col(step: FusedStep) -> Node:
    """A fused.conv2d step's im2col raster (after its zero-pad prologue, if any)."""
    return step.parts[int(step.attr("prologue", 0))]


# A Winograd conv's source from which its zero padding is read in place rather than copied
# first: the copy's reads and writes then come from L3 or memory (VGG-19's 224x224x64 in a
# whole model: 2.5 ms, against 0.6-0.8 ms more in the kernel read in place; 112x112x128: 1.07
# against 0.6, 56x56x256: 0.44 against 0.1-0.2). At 56x56x64 (0.8 MB) the copy took 0.04 ms
# and reading in place 0.13 ms more (Zen 1, one core).
_WINO_IN_PLACE_BYTES = 2 << 20


def _conv(step: FusedStep, algorithm: str, graph: Graph, buffers: Buffers) -> list[Call]:
    """The Winograd or direct kernel, or im2col raster + numpy's BLAS + the bias/activation
    epilogue. A zero-pad prologue is read in place by a Winograd kernel on a narrow plane or
    a big source (the padded tensor is never written) and runs first, as a raster,
    otherwise."""
    n_pro = step.attr("prologue", 0)
    prologue, (im2col, flat, mm) = step.parts[:n_pro], step.parts[n_pro : n_pro + 3]
    weight = buffers[mm.inputs[0]]
    bias = buffers[step.inputs[2]].reshape(-1) if step.attr("has_bias") else None
    region = im2col.attr("regions")[0]
    host = step.attr("slot_host")
    if host is not None:  # into channels of a concat's buffer (writes_channel_slice)
        out = buffers[host]
        channels: tuple[int | None, int] = (graph.shape(host)[1], step.attr("slot_channel"))
    else:
        out = buffers[step.output].reshape(graph.shape(mm.output))
        channels = (None, 0)
    if algorithm.startswith("winograd") and np.isfinite(weight).all():  # else they spread
        tile = _WINO_TILES[algorithm]
        # Reading in place copies each border tile into a zeroed one first: it pays on
        # narrow planes, where the pad copy is most of the cost it saves, and on big
        # sources (_WINO_IN_PLACE_BYTES); the others run the pad first.
        narrow = region.sizes[5] <= 16
        big = buffers[step.inputs[0]].nbytes >= _WINO_IN_PLACE_BYTES
        pad = _unpadded_source(prologue, graph) if prologue and (narrow or big) else None
        src = buffers[step.inputs[0]] if pad is not None else buffers[im2col.inputs[0]]
        kernel = ops_conv.WinogradKernel(
            src, weight, bias, out, region, step.attr("act"), None, tile, *channels, pad=pad
        )
        return [*(_prologue_calls(prologue, buffers) if pad is None else []), kernel.run]
    if host is not None and algorithm not in _GEMMS:
        raise RuntimeError(f"{step.name}: {algorithm} cannot write a channel slice")
    lanes = algorithm in _LANES
    # a zero-pad prologue never written: the lanes and direct kernels copy each band of
    # bordered rows into a quarter of the L2 themselves (not the direct kernel's stride-2
    # convs: _conv_stride2 splits its input's columns instead)
    direct = algorithm == "direct" and not _stride2_columns(region)
    pad = _unpadded_source(prologue, graph) if prologue and (lanes or direct) else None
    if pad is not None:
        hp, wp = graph.shape(im2col.inputs[0])[2:]
        src, border = buffers[step.inputs[0]], (*pad, hp, wp)
        act, band_bytes = step.attr("act"), _l2_bytes() // 4
        if lanes:
            wide, deep = _lanes_wide(algorithm), algorithm == "lanes_deep"
            return [
                ops_conv.LanesConvKernel(
                    src, weight, bias, out, region, act, wide=wide, deep=deep, pad=border,
                    band_bytes=band_bytes,
                ).run
            ]  # fmt: skip
        if ops_conv.pad_fits(region, src.shape, border):
            return [
                ops_conv.ConvKernel(
                    src, weight, bias, out, region, act, pad=border, band_bytes=band_bytes
                ).run
            ]
    calls = _prologue_calls(prologue, buffers)
    return calls + _conv_padded(im2col, flat, weight, bias, out, algorithm, step, buffers)


def _stride2_columns(region: Region) -> bool:
    """Whether an im2col region strides its columns by 2 (and its rows by 2) with adjacent
    filter taps, from the start of a contiguous [N, C, H, W] tensor."""
    s = region.src_strides
    return s[3] == 1 and s[5] == 2 and s[4] == 2 * s[2] and region.src_offset == 0


def _conv_stride2(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    out: np.ndarray,
    region: Region,
    step: FusedStep,
) -> list[Call]:
    """A stride-2 conv (ResNet's and Inception's 7x7 stems) as the direct kernel's vector
    tiles: the input's even and odd columns are split into planes of their own (one cheap
    copy), so tap b of a window reads plane b % 2 at column j + b // 2 and every tap is a
    stride-1 row; the filters are rearranged to [C][2][KH][ceil(KW / 2)] to match (a zero
    tap where KW is odd: 8 taps for 7, 4 for 3).

    That zero tap reads the column just past the window, so a NaN or an infinity there would
    reach an output whose window does not hold it (NaN * 0): where KW is odd, a call whose
    split planes hold one runs the direct kernel on the strided input instead (its scalar
    tile, exact; only inputs with non-finite values pay for it)."""
    n, c, kh, kw, oh, ow = region.sizes
    plane, row = region.src_strides[1], region.src_strides[2]
    rows = plane // row
    half, taps = -(-row // 2), -(-kw // 2)
    phases = np.zeros((n, c, 2, rows, half), np.float32)
    split = [
        Region(0, p, (c * plane, plane, row, 2), p * rows * half,
               (2 * c * rows * half, 2 * rows * half, half, 1), (n, c, rows, (row - p + 1) // 2))
        for p in (0, 1)
    ]  # fmt: skip
    w = np.zeros((weight.shape[0], c, 2, kh, taps), np.float32)
    full = weight.reshape(weight.shape[0], c, kh, kw)
    w[:, :, 0] = full[..., 0::2]
    w[:, :, 1, :, : kw // 2] = full[..., 1::2]
    plane2 = rows * half
    conv = Region(
        0, 0, (2 * c * plane2, plane2, half, 1, 2 * half, 1), 0, region.dst_strides,
        (n, 2 * c, kh, taps, oh, ow),
    )  # fmt: skip
    kernel = ops_conv.ConvKernel(
        phases, w.reshape(weight.shape[0], -1), bias, out, conv, step.attr("act")
    )
    if kw % 2 == 0:
        return [ops_raster.RasterKernel([x], phases, split, None).run, kernel.run]
    split_run, fast = ops_raster.RasterKernel([x], phases, split, None).run, kernel.run
    exact = ops_conv.ConvKernel(x, weight, bias, out, region, step.attr("act")).run
    finite = ops_conv.all_finite

    def run() -> None:
        split_run()
        if finite(phases):
            fast()
        else:
            exact()

    return [run]


def _prologue_calls(prologue: tuple[Node, ...], buffers: Buffers) -> list[Call]:
    """The prologue rasters as kernels (those that are not views of their input)."""
    calls: list[Call] = []
    for part in prologue:
        if not is_aliased_part(part, buffers):
            ins = [buffers[i] for i in part.inputs]
            out = buffers[part.output]
            calls.append(_raster(ins, out, part.attr("regions"), part.attr("fill")))
    return calls


def _unpadded_source(prologue: tuple[Node, ...], graph: Graph) -> tuple[int, int] | None:
    """(top, left) when the prologue only places its whole contiguous NCHW input at (top,
    left) of a zero-filled tensor (a Winograd kernel then reads the input in place)."""
    shape = graph.shape(prologue[0].inputs[0])
    planes = _prologue_planes(prologue, graph, shape)
    if planes is None or len(shape) != 4:
        return None
    base, rows, cols, row_stride, top, left, _, _ = planes
    n, c, h, w = shape
    if (rows, cols, row_stride) != (h, w, w) or not np.array_equal(
        base, np.arange(n * c, dtype=np.int64) * h * w
    ):
        return None
    return top, left


def _conv_padded(
    im2col: Node,
    flat: Node,
    weight: np.ndarray,
    bias: np.ndarray | None,
    out: np.ndarray,
    algorithm: str,
    step: FusedStep,
    buffers: Buffers,
) -> list[Call]:
    """The direct or packed-GEMM kernel, or im2col + BLAS, over the (padded) input of the
    im2col raster."""
    region = im2col.attr("regions")[0]
    if algorithm in _GEMMS:
        x = buffers[im2col.inputs[0]]
        shortcut = buffers[step.inputs[-1]] if step.attr("residual") else None
        host = step.attr("slot_host")
        kernel = ops_conv.GemmConvKernel(
            x,
            weight,
            bias,
            out,
            region,
            step.attr("act"),
            y_channels=None if host is None else out.shape[1],  # out: the host [N, C, ...]
            y_channel0=step.attr("slot_channel", 0),
            residual=shortcut,
            direct=algorithm == "gemm_direct",
            long_k=algorithm == "gemm_long",
        )
        return [kernel.run]
    if algorithm == "panel":  # a plain 1x1 conv (_panel): W @ x itself, x's rows the columns
        cols = buffers[im2col.inputs[0]].reshape(buffers[flat.output].shape)
        shortcut = buffers[step.inputs[-1]].reshape(out.shape) if step.attr("residual") else None
        rows_bias = bias if bias is not None else np.zeros(out.shape[-2], np.float32)
        act = step.attr("act")
        return [ops_math.GemmKernel(weight, cols, out, rows_bias, 2, act, res=shortcut).run]
    if algorithm in _LANES:
        x = buffers[im2col.inputs[0]]
        deep, wide = algorithm == "lanes_deep", _lanes_wide(algorithm)
        act = step.attr("act")
        lanes = ops_conv.LanesConvKernel(
            x, weight, bias, out, region, act, wide=wide, deep=deep, l2_bytes=_l2_bytes()
        )
        return [lanes.run]
    if algorithm == "direct" and _stride2_columns(region):
        return _conv_stride2(buffers[im2col.inputs[0]], weight, bias, out, region, step)
    if algorithm == "direct":
        x = buffers[im2col.inputs[0]]
        if _is_plain_view(region, x.shape):  # 1x1: one row of OH*OW columns, full tiles
            n, c, _, _, oh, ow = region.sizes
            s = region.src_strides
            region = dataclasses.replace(
                region, sizes=(n, c, 1, 1, 1, oh * ow), src_strides=(s[0], s[1], 0, 0, 0, 1)
            )
        return [ops_conv.ConvKernel(x, weight, bias, out, region, step.attr("act")).run]
    x = buffers[im2col.inputs[0]]
    if algorithm in ("int8", "int8_direct"):
        return _conv_int8(algorithm, x, weight, bias, out, (im2col, flat), step, buffers)
    mode = 0 if bias is None else 2
    if _is_plain_view(region, x.shape):  # a 1x1, stride-1, unpadded conv: a GEMM on x itself
        cols = x.reshape(buffers[flat.output].shape)
        return _gemm("blas", weight, cols, out, bias, mode, step.attr("act"))
    cols = buffers[im2col.output]
    calls = [ops_raster.RasterKernel([x], cols, (region,), None).run]
    return calls + _gemm("blas", weight, buffers[flat.output], out, bias, mode, step.attr("act"))


def _conv_int8(
    algorithm: str,
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    out: np.ndarray,
    parts: tuple[Node, Node],
    step: FusedStep,
    buffers: Buffers,
) -> list[Call]:
    """ops_int8's conv over the (padded) input x: read in place through the im2col region
    (``int8_direct``), or over its im2col columns (``int8``: x itself for a plain 1x1, else
    the column raster first)."""
    im2col, flat = parts
    region = im2col.attr("regions")[0]
    w2, act = weight.reshape(weight.shape[0], -1), step.attr("act")
    level = cython_isa.NAMES[ops_conv.level()]
    if algorithm == "int8_direct":
        return [ops_int8.ConvInt8Kernel(w2, x, out, bias, act, level, region=region).run]
    if _is_plain_view(region, x.shape):
        cols = x.reshape(buffers[flat.output].shape)
        return [ops_int8.ConvInt8Kernel(w2, cols, out, bias, act, level).run]
    kernel = ops_int8.ConvInt8Kernel(w2, buffers[flat.output], out, bias, act, level)
    return [ops_raster.RasterKernel([x], buffers[im2col.output], (region,), None).run, kernel.run]


def _group_conv(step: FusedStep, algorithm: str, graph: Graph, buffers: Buffers) -> list[Call]:
    """A grouped conv at the conv family's instruction-set level: ``direct`` (ops_group's
    kernel; ``channel_lanes`` the same with a depthwise conv's channels in the vector lanes)
    or, for a 1x1 conv whose input is its own column matrix, ``blas`` (one batched
    numpy matmul [G, Cout/G, C/G] @ x viewed [N, G, C/G, OH*OW], then bias, a residual
    unit's shortcut and ReLU).

    A depthwise step's prologue rasters (channel shuffle, zero pad) are read in place when
    they only move whole rows of their source into a zero-bordered tensor
    (:func:`_prologue_planes`); else they run first, as rasters."""
    n_pro = step.attr("prologue", 0)
    prologue, (im2col, _, mm) = step.parts[:n_pro], step.parts[n_pro : n_pro + 3]
    x, weight, out = buffers[im2col.inputs[0]], buffers[mm.inputs[0]], buffers[step.output]
    bias = buffers[step.inputs[2]].reshape(-1) if step.attr("has_bias") else None
    shortcut = buffers[step.inputs[-1]] if step.attr("residual") else None
    region, group, act = im2col.attr("regions")[0], step.attr("group"), step.attr("act")
    level = cython_isa.NAMES[ops_conv.level()]
    lanes = algorithm == "channel_lanes"
    if algorithm in _GEMMS or (algorithm.startswith("winograd") and np.isfinite(weight).all()):
        return _per_group(x, weight, bias, out, region, group, act, algorithm, shortcut)
    if algorithm == "blas":
        n, c, _, _, oh, ow = region.sizes
        cols = x.reshape(n, group, c // group, oh * ow)
        calls: list[Call] = [MatmulCall(weight, cols, out.reshape(n, group, -1, oh * ow)).run]
        if bias is not None or act != "none" or shortcut is not None:
            channels = weight.size // cols.shape[2]
            epilogue = ops_group.BiasActKernel(out, bias, channels, act, level, shortcut)
            calls.append(epilogue.run)
        return calls
    if prologue:
        src = buffers[step.inputs[0]]
        planes = _prologue_planes(prologue, graph, graph.shape(step.inputs[0]))
        if planes is not None:
            try:
                kernel = ops_group.GroupConvKernel(
                    src, weight, bias, out, region, group, act, level, planes, lanes
                )
                return [kernel.run]
            except ValueError:  # the planes do not fit the region: run the rasters
                pass
    kernel = ops_group.GroupConvKernel(x, weight, bias, out, region, group, act, level, None, lanes)
    return [*_prologue_calls(prologue, buffers), kernel.run]


# The packed-GEMM conv kernel, packing its columns (gemm; gemm_long: its reduction in the
# fewest blocks) or reading them in place (gemm_direct: a 1x1 stride-1 conv, whose columns
# are the input's rows).
_GEMMS = ("gemm", "gemm_long", "gemm_direct")
# The lanes conv kernel's algorithms (_lanes).
_LANES = ("lanes", "lanes16", "lanes_deep")


def _lanes_wide(algorithm: str) -> bool | None:
    """The lanes kernel's ``wide`` for an algorithm of _LANES: lanes16 its 16 x 16 tile,
    the others the kernel's default."""
    return False if algorithm == "lanes16" else None


def _channel_lanes(step: FusedStep, graph: Graph, region: Region) -> list[str]:
    """``channel_lanes`` for a depthwise 3x3 or 5x5 conv (stride 1 or 2, one output a
    channel) on a small plane: ops_group's kernel with the channels in the vector lanes."""
    mm = step.parts[step.attr("prologue", 0) + 2]
    outputs = graph.shape(mm.output)[1] * graph.shape(mm.output)[2]  # [N, G, Cout/G, OH*OW]
    fits = ops_group.channel_lanes_fits(region, step.attr("group"), outputs)
    return ["channel_lanes"] if fits else []


def _gemm_long(region: Region) -> list[str]:
    """``gemm_long`` where it splits the reduction into fewer blocks than ``gemm``."""
    return ["gemm_long"] if ops_conv.gemm_long_fits(region) else []


def _gemm_direct(region: Region) -> list[str]:
    """``gemm_direct`` where the packed-GEMM kernel can read the columns in place."""
    return ["gemm_direct"] if ops_conv.gemm_direct_fits(region) else []


def _panel(step: FusedStep, graph: Graph, region: Region) -> list[str]:
    """``panel`` for a 1x1 stride-1 unpadded conv at AVX2 (any activation the conv kernels
    apply): y = W x as ops_math's AVX2 matmul panels, the bias, shortcut and activation in
    their stores (GemmKernel's rows form). Their 6 x 16 tiles over the whole reduction beat
    the packed conv GEMM's 4 x 24 over reduction blocks on some shapes (ResNet-50's 128 ->
    512 convs with their shortcut on 28 x 28, in the model at AVX2: 1,037 against 1,165 us
    for the product alone) and lose on others (256 -> 1024 on 14 x 14: 1,220 against
    1,106); the search times both. At AVX-512 and SSE the panels have no such epilogue."""
    if ops_math.level() != cython_isa.LEVELS["avx2"] or step.attr("prologue", 0):
        return []  # (its caller offers it only for an activation of _KERNEL_ACTS)
    *_, oh, ow = region.sizes
    cout = graph.shape(step.output)[1]
    plain = _is_plain_view(region, graph.shape(_conv_im2col(step).inputs[0]))
    return ["panel"] if plain and cout >= 4 and oh * ow >= 16 else []


# The most input channels of a conv offered the ``lanes`` kernel (channels in the vector
# lanes, nothing packed): a network's first layer (RGB, a depth map, grayscale) at any
# stride, and a strided conv of up to 64 channels, whose im2col pack (a gather) only a few
# blocks of output channels share: PP-HGNet's 3x3/2 stem conv, 32 -> 16 channels on
# 320 x 320 (PP-OCRv6's detector), 2.2 ms against the packed GEMM's 3.6 (best of 40, one
# core, AVX-512); 64 -> 32 on 160 x 160 2.2 against 2.9, 32 -> 64 on 112 x 112 1.0 against
# 1.2. At stride 1 Winograd or the GEMM wins (64 -> 64 on 56 x 56: 0.8 ms against 2.3).
_LANES_MOST_CHANNELS = 4
_LANES_MOST_CHANNELS_STRIDED = 64
# The fewest taps (input channels x KH x KW) of a conv offered ``lanes_deep`` (the same
# kernel's deep tiles, whose sums are stored one value at a time): 128 keeps those stores
# under ~2% of a tile's multiply-adds.
_LANES_DEEP_TAPS = 128


def _lanes(region: Region, cout: int) -> list[str]:
    """``lanes`` for a conv with few input channels whose rows the kernel takes (more of
    them where it strides its columns), and at AVX-512, where that kernel takes its tile of
    32 channels x 8 columns (a strided conv to more than 16 channels), ``lanes16`` too, its
    16 x 16 tile; ``lanes_deep`` for one of _LANES_DEEP_TAPS taps or more that is not a 1x1
    stride-1 conv (whose columns the GEMM reads in place)."""
    _, c, kh, kw, _, _ = region.sizes
    strided = region.src_strides[5] > 1
    most = _LANES_MOST_CHANNELS_STRIDED if strided else _LANES_MOST_CHANNELS
    few = ["lanes"] if c <= most and ops_conv.lanes_fits(region) else []
    if few and strided and cout > 16 and ops_conv.level() == cython_isa.LEVELS["avx512"]:
        few.append("lanes16")
    deep = c * kh * kw >= _LANES_DEEP_TAPS and not ops_conv.gemm_direct_fits(region)
    return [*few, *(["lanes_deep"] if deep and ops_conv.lanes_fits(region, True) else [])]


# Output tiles' side of each Winograd algorithm (F(m x m, r x r)).
_WINO_TILES = {"winograd": 4, "winograd_f2": 2, "winograd_f6": 6}
# The smallest output plane offered F(6x6, 3x3): below it its 6x6 tiles leave as many
# outputs idle as they save (14x14: 9 tiles x 64 positions, F(4x4)'s 16 x 36, 576 either
# way), and its transformed filters take 64/9 the filters' bytes.
_WINO_F6_FROM_PLANE = 24 * 24


def _winograd_algorithms(region: Region, step: FusedStep, graph: Graph) -> list[str]:
    """The Winograd kernels for a conv's im2col region: F(4x4, 3x3) (``winograd``),
    F(2x2, 3x3) (``winograd_f2``) and, on planes from _WINO_F6_FROM_PLANE, F(6x6, 3x3)
    (``winograd_f6``) for 3x3 stride-1 windows, F(2x2, 5x5) (``winograd_f2``) for 5x5 ones;
    none for others, and none where every weight is a whole number: the conv of an integer
    model (ConvInteger, QLinearConv) whose sums must come out exact, which Winograd's
    transforms (fractions such as 1/6) would round, moving a requantized output a step."""
    if not ops_conv.winograd_fits(region):
        return []
    matmul = next(p for p in step.parts if p.op == "matmul")
    weight = graph.constants.get(matmul.inputs[0])
    if weight is not None and bool((np.round(weight) == weight).all()):
        return []
    if region.sizes[2] != 3:
        return ["winograd_f2"]
    big = region.sizes[4] * region.sizes[5] >= _WINO_F6_FROM_PLANE
    return ["winograd", "winograd_f2", *(["winograd_f6"] if big else [])]


def _per_group(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    out: np.ndarray,
    region: Region,
    group: int,
    act: str,
    algorithm: str,
    shortcut: np.ndarray | None = None,
) -> list[Call]:
    """A grouped conv as one packed-GEMM (``gemm``, ``gemm_long``, ``gemm_direct``) or, 3x3
    or 5x5 stride 1, Winograd kernel per group: group g reads its input channels (the region
    moved to its first channel) and writes its output channels of the whole output (adding
    the shortcut's, packed GEMM only)."""
    n, c, kh, kw, oh, ow = region.sizes
    per_in, per_out = c // group, weight.shape[1]
    tile = _WINO_TILES.get(algorithm, 4)
    calls: list[Call] = []
    for g in range(group):
        sub = dataclasses.replace(
            region,
            sizes=(n, per_in, kh, kw, oh, ow),
            src_offset=region.src_offset + g * per_in * region.src_strides[1],
        )
        b = None if bias is None else bias[g * per_out : (g + 1) * per_out]
        if algorithm in _GEMMS:
            gemm = ops_conv.GemmConvKernel(
                x,
                weight[g],
                b,
                out,
                sub,
                act,
                y_channels=group * per_out,
                y_channel0=g * per_out,
                residual=shortcut,
                direct=algorithm == "gemm_direct",
                long_k=algorithm == "gemm_long",
            )
            calls.append(gemm.run)
            continue
        kernel = ops_conv.WinogradKernel(
            x, weight[g], b, out, sub, act, None, tile, group * per_out, g * per_out
        )
        calls.append(kernel.run)
    return calls


def _raster(
    ins: list[FloatArray], out: FloatArray, regions: tuple[Region, ...], fill: float | None
) -> Call:
    """A raster kernel whose fill writes only what no region writes (a pad's border)."""
    gaps = None if fill is None else unfilled_runs(regions, out.size)
    return ops_raster.RasterKernel(ins, out, regions, fill, gaps).run


def _resample(step: FusedStep, graph: Graph, buffers: Buffers) -> Call:
    """A ``fused.resample`` step as one ops_raster.ResampleKernel: each take's indices (found
    again by running it on element indices), each term's weights (1 where it has none)."""
    axis = step.attr("axis")
    x = step.inputs[0]
    shape = graph.shape(x)
    takes = [p for p in step.parts if p.op == "raster"]
    weights = iter(step.inputs[1:])
    index, scale = [], []
    for take, weighted in zip(takes, step.attr("weighted"), strict=True):
        found = take_indices(graph, take, axis)
        if found is None:  # fusion matched only takes: never so
            raise BackendError(f"cython: step {step.name!r} holds a raster that is no take")
        index.append(found)
        w = graph.constants[next(weights)].reshape(-1) if weighted else np.ones(len(found))
        scale.append(w)
    kernel = ops_raster.ResampleKernel(
        buffers[x],
        buffers[step.output],
        math.prod(shape[:axis]),
        shape[axis],
        math.prod(shape[axis + 1 :]),
        np.array(index),
        np.array(scale, dtype=np.float32),
    )
    return kernel.run


def _window_reduce(step: FusedStep, graph: Graph, buffers: Buffers) -> list[Call]:
    """A pooling step as one kernel: over the unpadded source in place where its pad
    prologue only borders whole planes (:func:`_prologue_planes`), else after the pad."""
    n_pro = step.attr("prologue", 0)
    prologue, raster = step.parts[:n_pro], step.parts[n_pro]
    region = raster.attr("regions")[0]
    kind = {"sum": 0, "mean": 1, "max": 2}[step.attr("kind")]
    out = buffers[step.output]
    if prologue:
        fill = prologue[-1].attr("fill")  # the pad, after any reshapes of the source
        src = buffers[step.inputs[0]]
        planes = _prologue_planes(prologue, graph, graph.shape(step.inputs[0]), fill)
        if planes is not None:
            try:
                return [
                    ops_raster.PaddedWindowReduceKernel(src, out, region, kind, planes, fill).run
                ]
            except ValueError:  # a region the kernel does not take: pad first
                pass
    padded = buffers[raster.inputs[0]]
    kernel = ops_raster.WindowReduceKernel(padded, out, region, kind)
    return [*_prologue_calls(prologue, buffers), kernel.run]


def _prologue_planes(
    prologue: tuple[Node, ...], graph: Graph, shape: tuple[int, ...], border: float = 0.0
) -> tuple[npt.NDArray[np.int64], int, int, int, int, int, int, int] | None:
    """Where each plane of the rasters' result [N, C, HP, WP] comes from in their source:
    ``(base, rows, cols, row_stride, top, left, hp, wp)`` (see ops_group.GroupConvKernel)
    when every plane is one ``rows`` x ``cols`` block of source rows at (top, left) and the
    rest is ``border`` (+0.0 by default); else None. Found by running the rasters on element
    indices."""
    index = np.arange(math.prod(shape), dtype=np.int64)
    for node in prologue:
        fill = node.attr("fill")
        if fill is not None and not same_float(fill, border):
            return None  # the kernel's borders are ``border``
        index = raster_sources(node.attr("regions"), index, math.prod(graph.shape(node.output)))
    final = graph.shape(prologue[-1].output)
    if len(final) != 4 or index.size == 0:
        return None
    n, c, hp, wp = final
    planes = index.reshape(n * c, hp, wp)
    rows, cols = np.nonzero((planes[0] >= 0).any(1))[0], np.nonzero((planes[0] >= 0).any(0))[0]
    if rows.size == 0:
        return None
    top, left, ih, iw = (
        int(rows[0]),
        int(cols[0]),
        int(rows[-1] - rows[0] + 1),
        int(cols[-1] - cols[0] + 1),
    )
    base = planes[:, top, left]
    irs = int(planes[0, top + 1, left] - base[0]) if ih > 1 else 0
    want = np.full((hp, wp), -1, np.int64)
    want[top : top + ih, left : left + iw] = np.arange(ih)[:, None] * irs + np.arange(iw)
    inside = want >= 0
    if not (planes[:, ~inside] == -1).all():
        return None
    if not (planes[:, inside] == base[:, None] + want[inside]).all():
        return None
    return base, ih, iw, irs, top, left, hp, wp


def _is_plain_view(region: Region, shape: tuple[int, ...]) -> bool:
    """Whether an im2col region [N, C, KH, KW, OH, OW] reads its whole NCHW input in order
    (KH = KW = 1, stride 1, no padding): then the column buffer is the input itself."""
    n, c, kh, kw, oh, ow = region.sizes
    if kh != 1 or kw != 1 or region.src_offset != 0 or math.prod(shape) != n * c * oh * ow:
        return False
    s = region.src_strides
    want = contiguous_strides((n, c, oh, ow))
    return (s[0], s[1], s[4], s[5]) == want or (n == 1 and (s[1], s[4], s[5]) == want[1:])


def _unit_led(dims: tuple[int, ...]) -> tuple[int, ...]:
    """``dims`` without its leading 1s (those broadcast against anything)."""
    i = 0
    while i < len(dims) and dims[i] == 1:
        i += 1
    return tuple(dims[i:])


def _matmul_views(
    sa: tuple[int, ...], sb: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None:
    """The 2-D or 3-D shapes a [..., m, k] @ b [..., k, n] runs as (a, b, out), or None: the
    batch dims (all but the last two) of an operand are merged into one, dropped where they
    are all 1, and must be the other's where both have them (the kernels do not broadcast
    a batch dim). Attention's [1, heads, tokens, d] products are 3-D products of heads."""
    if len(sa) < 2 or len(sb) < 2:
        return None
    (m, k), (_, n) = sa[-2:], sb[-2:]
    batch_a, batch_b = math.prod(sa[:-2]), math.prod(sb[:-2])
    if batch_a > 1 and batch_b > 1 and _unit_led(sa[:-2]) != _unit_led(sb[:-2]):
        return None
    batch = max(batch_a, batch_b)
    va = (batch_a, m, k) if batch_a > 1 else (m, k)
    vb = (batch_b, k, n) if batch_b > 1 else (k, n)
    return va, vb, ((batch, m, n) if batch > 1 else (m, n))


def _matmul_algorithms(node: Node, graph: Graph, act: str = "none") -> list[str]:
    flops = 2 * math.prod(graph.shape(node.output)) * graph.shape(node.inputs[0])[-1]
    integer = ["int8"] if _int8_fits(node, graph, act) else []
    if flops < _BLAS_MIN_FLOPS:
        return ["direct", *integer]
    views = _matmul_views(graph.shape(node.inputs[0]), graph.shape(node.inputs[1]))
    # the packed GEMM: products by a 2-D b of 8 or more rows of a (a's rows are its output
    # channels, computed 8 at a time; a [..., k] @ b [k, n] is a's rows flattened: a
    # transformer's dense layers over [batch, tokens, features])
    packed = (
        views is not None
        and len(views[1]) == 2
        and math.prod(views[0][:-1]) >= 8
        and act in _KERNEL_ACTS
    )
    if not packed:
        return ["direct", "blas", *integer]
    constant = node.inputs[1] in graph.constants
    avx512 = ops_conv.level() == cython_isa.LEVELS["avx512"]
    gemms = [
        name
        for name, (b_in_place, wide) in _PACKED.items()
        if not (b_in_place and constant) and (avx512 or not wide)
    ]
    return ["direct", "blas", *gemms, *integer]


# The packed-GEMM matmul's algorithms: (b read in place, AVX-512's 8 x 3 tile).
_PACKED = {
    "packed": (False, False),
    "packed_direct": (True, False),
    "packed_wide": (False, True),
    "packed_direct_wide": (True, True),
}


def _int8_conv_fits(step: FusedStep, graph: Graph) -> bool:
    """Whether ``ops_int8`` runs this conv (its im2col columns, then the integer product):
    a quantized conv (its matmul ``integer``) by constant whole-number weights in
    [-255, 255], ReLU or no activation after it."""
    mm = step.parts[step.attr("prologue", 0) + 2]
    weight = graph.constants.get(mm.inputs[0])
    return (
        bool(mm.attr("integer"))
        and weight is not None
        and step.attr("act") in ("none", "relu")
        and ops_int8.weights_fit(weight.reshape(weight.shape[0], -1).T)
    )


def _int8_fits(node: Node, graph: Graph, act: str) -> bool:
    """Whether ``ops_int8`` runs this matmul: a quantized product (``integer``) by a 2-D
    constant b of whole numbers in [-255, 255], ReLU or no activation after it."""
    b = graph.constants.get(node.inputs[1])
    return (
        bool(node.attr("integer"))
        and b is not None
        and act in ("none", "relu")
        and len(_unit_led(b.shape)) <= 2
        and ops_int8.weights_fit(b.reshape(b.shape[-2:]))
    )


def _gemm(
    algorithm: str,
    a: np.ndarray,
    b: np.ndarray,
    out: np.ndarray,
    bias: np.ndarray | None,
    mode: int,
    act: str,
    b_constant: bool = False,
) -> list[Call]:
    if algorithm in _PACKED:  # b packed once if it is a constant
        b_in_place, wide = _PACKED[algorithm]
        rows = (-1, a.shape[-1]), (-1, out.shape[-1])  # a's leading dims as rows (views)
        kernel = ops_conv.MatmulPackedKernel(
            a.reshape(rows[0]),
            b,
            out.reshape(rows[1]),
            bias,
            mode,
            act,
            b_constant,
            b_in_place=b_in_place,
            wide=wide,
        )
        return [kernel.run]
    if algorithm == "int8":  # a's leading dims as rows; b a constant of whole numbers
        rows = (-1, a.shape[-1]), (-1, out.shape[-1])
        level = cython_isa.NAMES[ops_conv.level()]
        b2 = b.reshape(b.shape[-2:])
        int8 = ops_int8.MatmulInt8Kernel(
            a.reshape(rows[0]), b2, out.reshape(rows[1]), bias, mode, act, level
        )
        return [int8.run]
    if algorithm == "blas":
        calls: list[Call] = [MatmulCall(a, b, out).run]
        if mode or act != "none":
            calls.append(ops_math.GemmKernel(a, b, out, bias, mode, act, True).run)
        return calls
    return [ops_math.GemmKernel(a, b, out, bias, mode, act).run]


def _reduce_view(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, int, int] | None:
    """[outer, r, inner] when ``axes`` are one contiguous run of dims, else None."""
    if not axes or list(axes) != list(range(axes[0], axes[-1] + 1)):
        return None
    return (
        math.prod(shape[: axes[0]]),
        math.prod(shape[axes[0] : axes[-1] + 1]),
        math.prod(shape[axes[-1] + 1 :]),
    )


def _collapse(graph: Graph, node: Node) -> tuple[list[int], list[int], list[int]] | None:
    """Output sizes and broadcast element strides of both inputs, adjacent dims merged."""
    out = graph.shape(node.output)
    strides = []
    for name in node.inputs:
        shape = (1,) * (len(out) - len(graph.shape(name))) + graph.shape(name)
        own = contiguous_strides(shape)
        strides.append(
            [0 if d == 1 and o != 1 else s for d, o, s in zip(shape, out, own, strict=True)]
        )
    # size-1 dims go first, whatever their strides: left in, one at the end made the inner
    # run 1 element long ((1, 2048, 1, 1) * scalar ran 2048 one-element calls, 14 us)
    dims = [d for d in zip(out, strides[0], strides[1], strict=True) if d[0] != 1]
    if not dims:  # one element: both operands hold one
        return [1], [1], [1]
    merged: list[list[int]] = [list(dims[-1])]
    for size, a, b in reversed(dims[:-1]):
        last = merged[-1]
        if a == last[1] * last[0] and b == last[2] * last[0]:
            last[0] *= size
        else:
            merged.append([size, a, b])
    merged.reverse()
    if len(merged) > 4 or merged[-1][1] > 1 or merged[-1][2] > 1:
        return None
    if merged[-1][1] == 0 and merged[-1][2] == 0:
        return None
    return [m[0] for m in merged], [m[1] for m in merged], [m[2] for m in merged]

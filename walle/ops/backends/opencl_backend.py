"""The opencl backend: pyopencl kernels, device-resident buffers, one sync per run of steps.

``compile`` turns each step into :class:`Launch` descriptions (kernel name, ranges, which
plan values it reads and writes). ``finish`` then binds a whole run of consecutive OpenCL
steps into one :class:`LaunchSequence` (``opencl_launch``): device buffers are created once,
values from outside the run are uploaded with non-blocking copies, every kernel is enqueued
without waiting, values read after the run are copied back, and the queue is waited on once.
On PoCL (the CPU platform of ``pyopencl[pocl]``) a queued launch costs a few microseconds
while a blocking one costs 64-108 us, so this batching is what makes the backend usable at
all; the cost model
(:meth:`OpenCLBackend.estimate`) charges that sync and the transfers so that the search only
picks OpenCL where it pays (large products; vendor GPUs elsewhere).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from walle.errors import BackendError, StateError
from walle.logging import get_logger
from walle.ops.backends.base import Backend, Buffers, Call
from walle.ops.backends.opencl_devices import open_device
from walle.ops.backends.opencl_gemm import (
    WIDE,
    GemmConfig,
    choose_config,
    conv_spec,
    fits,
    gemm_range,
    gemm_source,
)
from walle.ops.backends.opencl_kernels import ACTS, TILE, program_source
from walle.ops.backends.opencl_launch import Launch, LaunchSequence, ValueArg
from walle.ops.backends.opencl_pool import pool_outputs, pool_source, pool_spec
from walle.ops.fusion import FusedStep
from walle.ops.ir import Graph, Node, check_indices, contiguous_strides

try:
    import pyopencl as cl
except ImportError as exc:  # pragma: no cover - depends on the install
    raise BackendError(f"pyopencl is not installed ({exc})") from exc

if TYPE_CHECKING:
    pass

_log = get_logger("walle.ops.opencl")
_MAX_ELEMENTS = 2**31 - 1
_MAX_RANK = 6
_GROUP = 64
_MATMUL_KERNELS = {
    "tiled": ("matmul", TILE),
    "rows4": ("matmul_rows4", 4),
    "blocked": ("matmul_blocked", 0),  # opencl_gemm: register-blocked tiles (GPUs)
    "blocked8": ("matmul_blocked8", 0),  # the same, 8x8 per work-item (where it fits)
}


class OpenCLBackend(Backend):
    """Atomic ops and fused matmul/softmax/layer norm as OpenCL kernels (pyopencl)."""

    name = "opencl"
    extra = "opencl"
    fused_ops = frozenset(
        {
            "fused.matmul_bias_act",
            "fused.softmax",
            "fused.layernorm",
            "fused.conv2d",
            "fused.window_reduce",
        }
    )
    # An OpenCL runtime's threads may keep spinning after a run (PoCL's CPU workers do),
    # slowing whatever host kernel runs next: its trials are not interleaved with theirs.
    trial_group = "opencl"
    memory = "device"  # device buffers: the placement charges copies and a sync per run
    # Cost model, measured on PoCL 3 on a 2-core EPYC (see estimate()).
    call_overhead_s = 4.0e-6  # one queued kernel launch
    sync_s = 50.0e-6  # enqueue copies + wait for the queue, once per run
    flops_per_s = 1.5e9  # element-wise (exp ~5.6 ns per element on PoCL)
    bytes_per_s = 3.0e9
    transfer_bytes_per_s = 5.0e9
    # Replaced whole (never mutated) by a GPU's figures in __init__.
    matmul_flops_per_s: Mapping[str, float] = {
        "tiled": 3.0e9,
        "rows4": 9.0e9,
        "blocked": 6.0e9,
        "blocked8": 4.0e9,
    }
    default_matmul = "rows4"  # for a matmul run among a fused step's parts

    def __init__(self, gemm: tuple[GemmConfig, GemmConfig | None] | None = None) -> None:
        """Opens the first device that builds walle's program; ``gemm``: the GEMM tiles
        (default: fitted to the device's limits; a smaller one as a small device gets)."""

        def source(device: cl.Device) -> str:
            return program_source() + gemm_source(*(gemm or _gemm_configs(device))) + pool_source()

        self.context, self.cl_device, self._program = open_device(source)
        self.gemm, self.gemm_wide = gemm or _gemm_configs(self.cl_device)
        self._local = threading.local()
        if not self.cl_device.type & cl.device_type.CPU:
            # A GPU: fast kernels; the transfers and the sync dominate small models.
            self.flops_per_s, self.bytes_per_s, self.sync_s = 1e12, 2e11, 30e-6
            self.matmul_flops_per_s = {
                "tiled": 5e12,
                "rows4": 1e12,
                "blocked": 2e13,
                "blocked8": 3e13,
            }
            self.default_matmul = "blocked"

    @property
    def device(self) -> str:
        platform = self.cl_device.platform
        return f"opencl:{platform.name}:{self.cl_device.name}".replace(" ", "_")

    def identity(self) -> dict[str, str]:
        """Platform, device and driver: measured costs and decisions are kept per identity."""
        d, p = self.cl_device, self.cl_device.platform
        return {
            "backend": self.name,
            "platform": f"{p.name} {p.version}",
            "device": f"{d.name} {d.version}",
            "driver": d.driver_version,
            "units": str(d.max_compute_units),
            "memory": str(d.global_mem_size),
        }

    # -- program and queues ---------------------------------------------------------------
    def program(self) -> cl.Program:
        """walle's program, built for this device when it was opened."""
        return self._program

    def queue(self) -> cl.CommandQueue:
        """This thread's in-order command queue (plans are compiled per thread)."""
        queue = getattr(self._local, "queue", None)
        if queue is None:
            queue = self._local.queue = cl.CommandQueue(self.context, self.cl_device)
        return queue

    def copy_probe(self, nbytes: int) -> tuple[Call, Call]:
        """Blocking copies of ``nbytes`` host -> device and back (timed by calibration)."""
        host = np.zeros(max(nbytes // 4, 1), np.float32)
        buf = cl.Buffer(self.context, cl.mem_flags.READ_WRITE, size=host.nbytes)
        queue = self.queue()
        up = partial(cl.enqueue_copy, queue, buf, host, is_blocking=True)
        return up, partial(cl.enqueue_copy, queue, host, buf, is_blocking=True)

    # -- what runs here -------------------------------------------------------------------
    def supports(self, node: Node, graph: Graph) -> bool:
        sizes = [math.prod(graph.shape(n)) for n in (*node.inputs, node.output)]
        if max(sizes) > _MAX_ELEMENTS:
            return False
        if node.op in ("topk", "gather_elements", "cumsum"):  # per row, one after another: host
            return False
        if node.op == "gather":  # ids given with each call: checked and looked up on the host
            return node.inputs[1] in graph.constants
        if node.op == "reduce":
            return _reduce_view(graph.shape(node.inputs[0]), node.attr("axes")) is not None
        if node.op == "binary":
            out = graph.shape(node.output)
            return len(_collapse(out, [graph.shape(i) for i in node.inputs])[0]) <= _MAX_RANK
        if node.op == "matmul":
            return _matmul_steps(graph, node) is not None
        if node.op == "raster":
            return all(len(r.sizes) <= _MAX_RANK for r in node.attr("regions"))
        return True

    def algorithms(self, step: FusedStep, graph: Graph) -> list[str]:
        """As every backend, but the implicit-GEMM conv needs no im2col or batched-matmul
        kernel: it is offered where its parts could not run (a grouped conv over a batch)."""
        found = super().algorithms(step, graph)
        if (
            step.op == "fused.conv2d"
            and not found
            and step.attr("act", "none") in ACTS
            and self.supports(step.parts[-1], graph)
        ):
            return [] if step.attr("residual") else ["implicit"]
        return found

    def fused_algorithms(self, step: FusedStep, graph: Graph) -> list[str]:
        if step.attr("act", "none") not in ACTS:  # relu6: run as its parts
            return []
        if step.op == "fused.conv2d":  # opencl_gemm's implicit GEMM: no im2col buffer
            return [] if step.attr("residual") else ["implicit"]  # no shortcut epilogue
        return self._matmuls() if step.op == "fused.matmul_bias_act" else ["fused"]

    def atomic_algorithms(self, node: Node, graph: Graph) -> list[str]:
        return self._matmuls() if node.op == "matmul" else ["default"]

    def _matmuls(self) -> list[str]:
        return [a for a in _MATMUL_KERNELS if a != "blocked8" or self.gemm_wide is not None]

    def _tiling(self, algorithm: str) -> GemmConfig:
        """The tile sizes of a blocked matmul algorithm."""
        return self.gemm_wide if algorithm == "blocked8" and self.gemm_wide else self.gemm

    def matmul_rate(self, algorithm: str) -> float:
        return self.matmul_flops_per_s[
            algorithm if algorithm in _MATMUL_KERNELS else self.default_matmul
        ]

    def estimate(self, step: FusedStep, algorithm: str, graph: Graph) -> float:
        """Kernel time plus, for the step run alone, the transfers and one queue sync.

        A step the search times alone pays its uploads, read-back and the wait; that is
        also its true price in a plan where its neighbours run on another backend.
        """
        seconds = super().estimate(step, algorithm, graph)
        moved = sum(
            math.prod(graph.shape(i)) for i in step.inputs if i not in graph.constants
        ) + math.prod(graph.shape(step.output))
        return seconds + self.sync_s + 4.0 * moved / self.transfer_bytes_per_s

    # -- compile --------------------------------------------------------------------------
    def compile_atomic(
        self, node: Node, algorithm: str, graph: Graph, buffers: Buffers
    ) -> list[Call]:
        launch = partial(Launch, nodes=frozenset({node.name}), graph=graph, buffers=buffers)
        out = ValueArg(node.output, write=True)
        if node.op == "unary":
            n = math.prod(graph.shape(node.output))
            return [
                launch(
                    f"u_{node.attr('kind')}",
                    *_range1(n),
                    (ValueArg(node.inputs[0]), out, np.int32(n)),
                )
            ]
        if node.op == "binary":
            return [_binary(launch, node, graph, out)]
        if node.op == "reduce":
            outer, r, inner = _reduce_dims(graph, node)
            g, lsize = _range2(inner, outer)
            return [
                launch(
                    f"r_{node.attr('kind')}",
                    g,
                    lsize,
                    (ValueArg(node.inputs[0]), out, *_ints(outer, r, inner)),
                )
            ]
        if node.op == "matmul":
            algo = algorithm if algorithm in _MATMUL_KERNELS else self.default_matmul
            return [
                _matmul(
                    launch, algo, graph, node, node.inputs, out, None, 0, "none", self._tiling(algo)
                )
            ]
        if node.op == "gather":  # constant indices (supports): checked once, here
            shape, axis = graph.shape(node.inputs[0]), node.attr("axis")
            ids = graph.constants[node.inputs[1]]
            check_indices(ids, shape[axis], f"gather {node.name!r}: its indices", node.name)
            outer, inner = math.prod(shape[:axis]), math.prod(shape[axis + 1 :])
            count = math.prod(graph.shape(node.inputs[1]))
            g, lsize = _range2(inner, outer * count)
            args = (ValueArg(node.inputs[0]), ValueArg(node.inputs[1]), out)
            return [launch("gather", g, lsize, (*args, *_ints(shape[axis], count, inner)))]
        return _raster(launch, node, graph, out)

    def compile_fused(
        self, step: FusedStep, algorithm: str, graph: Graph, buffers: Buffers
    ) -> list[Call]:
        launch = partial(
            Launch, nodes=frozenset(p.name for p in step.parts), graph=graph, buffers=buffers
        )
        out = ValueArg(step.output, write=True)
        if step.op == "fused.conv2d":  # a zero-pad prologue runs first, as its own launch
            n_pro = int(step.attr("prologue", 0))
            pads = [
                c for p in step.parts[:n_pro] for c in self.compile_atomic(p, "", graph, buffers)
            ]
            return [*pads, _conv(launch, self.gemm, step, graph, out)]
        if step.op == "fused.window_reduce":  # opencl_pool: the window read in place
            n_pro = int(step.attr("prologue", 0))  # a pad prologue runs first, as its own launch
            pads = [
                c for p in step.parts[:n_pro] for c in self.compile_atomic(p, "", graph, buffers)
            ]
            raster = step.parts[n_pro]
            r = raster.attr("regions")[0]
            n = pool_outputs(r.sizes)
            spec = pool_spec(r.src_offset, r.src_strides, r.sizes)
            args = (ValueArg(raster.inputs[0]), out, spec, np.int32(n))
            return [*pads, launch(f"pool_{step.attr('kind')}", *_range1(n), args)]
        shape = graph.shape(step.inputs[0])
        cols = shape[-1]
        rows = math.prod(shape) // cols
        if step.op == "fused.softmax":
            return [
                launch(
                    "softmax_rows",
                    *_range1(rows),
                    (ValueArg(step.inputs[0]), out, np.int32(rows), np.int32(cols)),
                )
            ]
        if step.op == "fused.layernorm":
            extra = list(step.inputs[1:])
            g = ValueArg(extra.pop(0)) if step.attr("has_gamma") else _dummy()
            b = ValueArg(extra.pop(0)) if step.attr("has_beta") else _dummy()
            return [
                launch(
                    "layernorm_rows",
                    *_range1(rows),
                    (
                        ValueArg(step.inputs[0]),
                        out,
                        g,
                        b,
                        np.int32(rows),
                        np.int32(cols),
                        np.float32(step.attr("epsilon")),
                        np.int32(step.attr("has_gamma")),
                        np.int32(step.attr("has_beta")),
                    ),
                )
            ]
        bias = step.inputs[2] if step.attr("has_bias") else None
        mode = 0 if bias is None else (1 if step.attr("side") == "right" else 2)
        return [
            _matmul(
                launch,
                algorithm,
                graph,
                step.parts[0],
                step.inputs[:2],
                out,
                bias,
                mode,
                step.attr("act"),
                self._tiling(algorithm),
            )
        ]

    def finish(self, calls: list[Call]) -> list[Call]:
        """Bind a run of launches into one call: uploads, queued kernels, read-back, wait."""
        if not calls:
            return []
        launches = [c for c in calls if isinstance(c, Launch)]
        if len(launches) != len(calls):
            raise StateError("OpenCLBackend.finish() got calls it did not compile")
        try:
            return [LaunchSequence(self.context, self.queue(), self.program(), launches)]
        except cl.Error as exc:
            raise BackendError(f"OpenCL could not set up kernels on {self.device}: {exc}") from exc


def _gemm_configs(device: cl.Device) -> tuple[GemmConfig, GemmConfig | None]:
    """The GEMM tiles for ``device``'s limits: the default, and the wide one where it fits."""
    limits = (device.max_work_group_size, device.local_mem_size, tuple(device.max_work_item_sizes))
    return choose_config(*limits), (WIDE if fits(WIDE, *limits) else None)


def _dummy() -> npt.NDArray[np.float32]:
    """A placeholder for an absent optional operand (bias, gamma, beta)."""
    return np.zeros(1, np.float32)


def _ints(*values: int) -> tuple[np.int32, ...]:
    """Scalar kernel arguments, as the kernels' ``int`` (32-bit)."""
    return tuple(np.int32(v) for v in values)


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def _range1(n: int) -> tuple[tuple[int], tuple[int]]:
    group = min(_GROUP, 1 << max(0, (n - 1).bit_length()))
    return (_round_up(n, group),), (group,)


def _range2(inner: int, outer: int) -> tuple[tuple[int, int], tuple[int, int]]:
    group = min(_GROUP, 1 << max(0, (inner - 1).bit_length()))
    return (_round_up(inner, group), outer), (group, 1)


def _collapse(
    out: tuple[int, ...], shapes: list[tuple[int, ...]]
) -> tuple[list[int], list[list[int]]]:
    """Sizes and per-input element strides (0 = broadcast), size-1 and mergeable dims folded."""
    strides = []
    for shape in shapes:
        full = (1,) * (len(out) - len(shape)) + tuple(shape)
        own = contiguous_strides(full)
        strides.append([0 if d == 1 else s for d, s in zip(full, own, strict=True)])
    sizes: list[int] = []
    merged: list[list[int]] = [[] for _ in shapes]
    for d, size in enumerate(out):
        if size == 1:
            continue
        if sizes and all(m[-1] == s[d] * size for m, s in zip(merged, strides, strict=True)):
            sizes[-1] *= size
            for m, s in zip(merged, strides, strict=True):
                m[-1] = s[d]
            continue
        sizes.append(size)
        for m, s in zip(merged, strides, strict=True):
            m.append(s[d])
    if not sizes:
        return [1], [[0] for _ in shapes]
    return sizes, merged


def _binary(launch: partial[Launch], node: Node, graph: Graph, out: ValueArg) -> Launch:
    shape = graph.shape(node.output)
    sizes, (sa, sb) = _collapse(shape, [graph.shape(i) for i in node.inputs])
    a, b = (ValueArg(i) for i in node.inputs)
    kind = node.attr("kind")
    if len(sizes) == 1 and sa == sb == [1]:
        n = sizes[0]
        return launch(f"b_{kind}_flat", *_range1(n), (a, b, out, np.int32(n)))
    rank = len(sizes)
    spec = np.zeros(19, np.int32)
    spec[0] = rank
    spec[1 : 1 + rank], spec[7 : 7 + rank], spec[13 : 13 + rank] = sizes, sa, sb
    g, lsize = _range2(sizes[-1], math.prod(sizes[:-1]))
    return launch(f"b_{kind}", g, lsize, (a, b, out, spec))


def _raster(launch: partial[Launch], node: Node, graph: Graph, out: ValueArg) -> list[Call]:
    """A raster node as launches: an optional fill, then one copy kernel per region."""
    launches: list[Call] = []
    fill = node.attr("fill")
    if fill is not None:
        launches.append(launch(None, (), None, (out,), fill=float(fill)))
    for r in node.attr("regions"):
        if min(r.sizes, default=1) <= 0:
            continue
        pad = _MAX_RANK - len(r.sizes)
        sizes = (1,) * pad + tuple(r.sizes)
        spec = np.array(
            [
                r.src_offset,
                r.dst_offset,
                *sizes,
                *(0,) * pad,
                *r.src_strides,
                *(0,) * pad,
                *r.dst_strides,
            ],
            np.int32,
        )
        g, lsize = _range2(sizes[-1], math.prod(sizes[:-1]))
        launches.append(launch("raster", g, lsize, (ValueArg(node.inputs[r.input]), out, spec)))
    return launches


def _matmul_steps(graph: Graph, node: Node) -> tuple[int, int, int] | None:
    """(batch, a_step, b_step) when each operand's batch dims are all 1 or the output's."""
    sa, sb = graph.shape(node.inputs[0]), graph.shape(node.inputs[1])
    out = graph.shape(node.output)
    batch = math.prod(out[:-2])
    steps = []
    for shape, step in ((sa, sa[-2] * sa[-1]), (sb, sb[-2] * sb[-1])):
        own = (1,) * (len(out) - len(shape)) + tuple(shape[:-2])
        if math.prod(own) == 1:
            steps.append(0)
        elif own == tuple(out[:-2]):
            steps.append(step)
        else:
            return None
    return batch, steps[0], steps[1]


def _matmul(
    launch: partial[Launch],
    algorithm: str,
    graph: Graph,
    node: Node,
    inputs: tuple[str, ...],
    out: ValueArg,
    bias: str | None,
    mode: int,
    act: str,
    gemm: GemmConfig,
) -> Launch:
    steps = _matmul_steps(graph, node)
    if steps is None:
        raise BackendError(
            f"opencl cannot run matmul {node.name!r}: the batch dims of "
            f"{graph.shape(node.inputs[0])} and {graph.shape(node.inputs[1])} are neither 1 "
            "nor the output's (supports() refuses it; run it on another backend)"
        )
    batch, a_step, b_step = steps
    m, n = graph.shape(node.output)[-2:]
    k = graph.shape(node.inputs[0])[-1]
    kernel, rows = _MATMUL_KERNELS[algorithm]
    if algorithm == "tiled":
        g, lsize = (_round_up(n, TILE), _round_up(m, TILE), batch), (TILE, TILE, 1)
    elif algorithm in ("blocked", "blocked8"):
        g, lsize = gemm_range(gemm, m, n, batch)
    else:
        (g0,), (l0,) = _range1(n)
        g, lsize = (g0, -(-m // rows), batch), (l0, 1, 1)
    return launch(
        kernel,
        g,
        lsize,
        (
            ValueArg(inputs[0]),
            ValueArg(inputs[1]),
            out,
            ValueArg(bias) if bias is not None else _dummy(),
            *_ints(m, n, k, a_step, b_step, mode, ACTS[act]),
        ),
    )


def _conv(
    launch: partial[Launch], gemm: GemmConfig, step: FusedStep, graph: Graph, out: ValueArg
) -> Launch:
    """A ``fused.conv2d`` step as one implicit-GEMM launch (bias and activation fused) over
    the input of its im2col raster (the padded tensor when the step has a pad prologue)."""
    im2col = step.parts[int(step.attr("prologue", 0))]
    region = im2col.attr("regions")[0]
    spec, m, npix, _k, batch = conv_spec(
        region.src_offset, region.src_strides, region.sizes, graph.shape(step.inputs[1])
    )
    bias = ValueArg(step.inputs[2]) if step.attr("has_bias") else _dummy()
    g, lsize = gemm_range(gemm, m, npix, batch)
    flags = (np.int32(bool(step.attr("has_bias"))), np.int32(ACTS[step.attr("act")]))
    args = (ValueArg(im2col.inputs[0]), ValueArg(step.inputs[1]), out, bias, spec, *flags)
    return launch("conv_implicit", g, lsize, args)


def _reduce_dims(graph: Graph, node: Node) -> tuple[int, int, int]:
    """A reduce node's [outer, r, inner] (BackendError when its axes are not one run)."""
    shape, axes = graph.shape(node.inputs[0]), node.attr("axes")
    view = _reduce_view(shape, axes)
    if view is None:
        raise BackendError(
            f"opencl cannot reduce {node.name!r} of shape {shape} over axes {axes}: they are "
            "not one contiguous run of dims (supports() refuses it; run it on another backend)"
        )
    return view


def _reduce_view(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, int, int] | None:
    """[outer, r, inner] when ``axes`` are one contiguous run of dims, else None."""
    if not axes or list(axes) != list(range(axes[0], axes[-1] + 1)):
        return None
    return (
        math.prod(shape[: axes[0]]),
        math.prod(shape[axes[0] : axes[-1] + 1]),
        math.prod(shape[axes[-1] + 1 :]),
    )

"""What a backend is: it compiles steps into zero-argument calls over pre-allocated buffers.

A backend implements the atomic ops (``unary``, ``binary``, ``reduce``, ``matmul``,
``raster``) and may declare fused kernels (``fused_ops``). Any fused step can also run as
its atomic ``parts`` (algorithm ``"parts"``), so every backend can run every step it
supports atomically. The plan (:mod:`walle.ops.plan`) owns the buffers; a compiled call only
reads and writes them, which keeps per-call Python work to one loop over bound callables.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol, runtime_checkable

import numpy as np

from walle.ops.fusion import FusedStep, atomic_step
from walle.ops.ir import FloatArray, Graph, Node, check_indices

Call = Callable[[], object]
Buffers = dict[str, FloatArray]

_UNARY_COST = {
    "exp": 8.0,
    "log": 8.0,
    "tanh": 10.0,
    "sigmoid": 10.0,
    "erf": 30.0,
    "gelu": 20.0,
    "sqrt": 3.0,
    "reciprocal": 2.0,
    "sin": 15.0,
    "cos": 15.0,
    "tan": 20.0,
    "asin": 20.0,
    "acos": 20.0,
    "atan": 20.0,
    "sinh": 20.0,
    "cosh": 20.0,
    "asinh": 20.0,
    "acosh": 20.0,
    "atanh": 20.0,
}


@dataclass(frozen=True)
class DeviceCosts:
    """What a backend with memory of its own costs beyond its kernels' work.

    A run of consecutive steps on such a backend uploads the values it reads from outside
    the run, queues its launches, copies back what is read after it and waits once
    (``sync_s``). ``rates`` are measured kernel throughputs by family: ``"bytes"`` (bytes
    per second of a memory-bound kernel), ``"elementwise"``, ``"matmul"`` and
    ``"matmul.<algorithm>"`` (flops per second). Times in seconds.
    """

    launch_s: float
    sync_s: float
    copy_s: float
    upload_bytes_per_s: float
    download_bytes_per_s: float
    rates: tuple[tuple[str, float], ...] = ()

    def upload_s(self, nbytes: float) -> float:
        """Seconds to copy ``nbytes`` from host memory to the device."""
        return self.copy_s + nbytes / self.upload_bytes_per_s

    def download_s(self, nbytes: float) -> float:
        """Seconds to copy ``nbytes`` from the device back to host memory."""
        return self.copy_s + nbytes / self.download_bytes_per_s

    def rate(self, family: str) -> float | None:
        """The measured throughput of a kernel family, if it was probed."""
        return dict(self.rates).get(family)


class Backend(ABC):
    """Base of every ops backend."""

    name: str = ""
    extra: str | None = None
    fused_ops: frozenset[str] = frozenset()
    # Candidates of one trial group are timed in interleaved rounds; groups one after another.
    trial_group: str = "host"
    # Cost model constants: seconds per call, flops per second, bytes per second.
    call_overhead_s: float = 1e-6
    flops_per_s: float = 1e9
    bytes_per_s: float = 5e9
    # "host": buffers are the plan's numpy arrays. "device": memory of its own, so values
    # crossing to or from other backends are copied and each run of its steps syncs once.
    memory: str = "host"
    sync_s: float = 0.0
    transfer_bytes_per_s: float = 5e9
    calibrated: DeviceCosts | None = None

    @property
    def device(self) -> str:
        """A string naming the device this backend runs on (part of the search cache key)."""
        return self.name

    def identity(self) -> dict[str, str]:
        """What identifies the device (cached costs and decisions are kept per identity)."""
        return {"backend": self.name, "device": self.device}

    def device_costs(self) -> DeviceCosts | None:
        """Copy, launch and sync costs: None on host memory; measured once calibrated
        (:mod:`walle.ops.calibration`), else from the class's constants."""
        if self.memory == "host":
            return None
        if self.calibrated is not None:
            return self.calibrated
        return DeviceCosts(
            launch_s=self.call_overhead_s,
            sync_s=self.sync_s,
            copy_s=0.0,
            upload_bytes_per_s=self.transfer_bytes_per_s,
            download_bytes_per_s=self.transfer_bytes_per_s,
        )

    def writes_channel_slice(self, step: FusedStep, algorithm: str, graph: Graph) -> bool:
        """Whether ``step`` compiled with ``algorithm`` can write its [N, C, ...] output into
        a channel range of a wider [N, C_host, ...] buffer: the step then carries attrs
        ``slot_host`` (the value whose buffer that is) and ``slot_channel`` (its first
        channel), and its output's buffer is that strided view. None do by default."""
        return False

    def copy_probe(self, nbytes: int) -> tuple[Call, Call]:
        """Two calls copying ``nbytes`` to the device and back, each waiting for its copy
        (calibration times them); only for a backend with memory of its own."""
        raise NotImplementedError(f"{self.name} works on host memory: nothing to copy")

    def use_costs(self, costs: DeviceCosts) -> None:
        """Take measured costs instead of the constants (launch, sync, copies, rates)."""
        self.calibrated = costs
        self.call_overhead_s = costs.launch_s
        self.sync_s = costs.sync_s
        up, down = costs.upload_bytes_per_s, costs.download_bytes_per_s
        self.transfer_bytes_per_s = 2.0 / (1.0 / up + 1.0 / down)
        self.flops_per_s = costs.rate("elementwise") or self.flops_per_s
        self.bytes_per_s = costs.rate("bytes") or self.bytes_per_s

    def supports(self, node: Node, graph: Graph) -> bool:
        """Whether this backend can run the atomic ``node`` (default: every atomic op)."""
        return True

    def algorithms(self, step: FusedStep, graph: Graph) -> list[str]:
        """Algorithms this backend offers for ``step`` (empty when it cannot run it)."""
        if step.fused:
            if not all(self.supports(p, graph) for p in step.parts):
                return []
            own = self.fused_algorithms(step, graph) if step.op in self.fused_ops else []
            return [*own, "parts"]
        return (
            self.atomic_algorithms(step.parts[0], graph)
            if self.supports(step.parts[0], graph)
            else []
        )

    def atomic_algorithms(self, node: Node, graph: Graph) -> list[str]:
        """Algorithms for an atomic node."""
        return ["default"]

    def fused_algorithms(self, step: FusedStep, graph: Graph) -> list[str]:
        """Algorithms for a fused step this backend declares."""
        return ["fused"]

    def compile(
        self, step: FusedStep, algorithm: str, graph: Graph, buffers: Buffers
    ) -> list[Call]:
        """Calls that compute ``step`` into ``buffers[step.output]``."""
        if algorithm == "parts":
            calls: list[Call] = []
            for part in step.parts:
                if not is_aliased_part(part, buffers):
                    calls += self.compile(atomic_step(part), "default", graph, buffers)
            return calls
        if step.fused:
            return self.compile_fused(step, algorithm, graph, buffers)
        return self.compile_atomic(step.parts[0], algorithm, graph, buffers)

    @abstractmethod
    def compile_atomic(
        self, node: Node, algorithm: str, graph: Graph, buffers: Buffers
    ) -> list[Call]:
        """Calls computing one atomic node."""

    def compile_fused(
        self, step: FusedStep, algorithm: str, graph: Graph, buffers: Buffers
    ) -> list[Call]:
        """Calls computing a fused step (only for ops in ``fused_ops``)."""
        raise NotImplementedError(f"{self.name}: no fused kernel for {step.op}")

    def finish(self, calls: list[Call]) -> list[Call]:
        """Hook to batch consecutive calls of this backend (e.g. one queue flush)."""
        return calls

    def may_interleave(
        self, first: FusedStep, first_algorithm: str, then: FusedStep, then_algorithm: str
    ) -> bool:
        """Whether :meth:`interleave` may join the calls of these two steps (the plan asks
        before it allocates, to keep ``first``'s inputs alive through ``then``)."""
        return False

    def interleave(self, first: Call, then: Call) -> Call | None:
        """One call that does ``first`` and then ``then`` in a single pass (a conv and the
        pooling that reads its output, a band of rows at a time), or None where this backend
        has no such kernel. The plan asks only for steps :meth:`may_interleave` allowed,
        where ``then``'s step alone reads what ``first``'s step writes, so nothing else
        misses the intermediate tensor."""
        return None

    # -- cost model -----------------------------------------------------------------------
    def estimate(self, step: FusedStep, algorithm: str, graph: Graph) -> float:
        """Predicted seconds for ``step`` run alone with ``algorithm`` (the search ranks by
        this); a backend with its own memory adds its copies and sync here."""
        return self.kernel_estimate(step, algorithm, graph)

    def kernel_estimate(self, step: FusedStep, algorithm: str, graph: Graph) -> float:
        """Predicted seconds of the step's launches and kernels inside a run, no copies."""
        compute, traffic, calls = 0.0, 0.0, 0
        for part in step.parts:
            f, t = node_work(part, graph)
            if part.op == "matmul":
                rate = self._measured_matmul_rate(algorithm) or self.matmul_rate(algorithm)
            else:
                rate = self.flops_per_s
            compute, traffic, calls = compute + f / rate, traffic + t, calls + 1
        if step.fused and algorithm != "parts":
            calls = 1
            traffic = 4.0 * (
                sum(math.prod(graph.shape(i)) for i in step.inputs)
                + math.prod(graph.shape(step.output))
            )
        return calls * self.call_overhead_s + compute + traffic / self.bytes_per_s

    def matmul_rate(self, algorithm: str) -> float:
        """Flops per second of this backend's matrix product with ``algorithm``."""
        return self.flops_per_s

    def _measured_matmul_rate(self, algorithm: str) -> float | None:
        if self.calibrated is None:
            return None
        return self.calibrated.rate(f"matmul.{algorithm}") or self.calibrated.rate("matmul")


def node_work(node: Node, graph: Graph) -> tuple[float, float]:
    """(flops, bytes moved) of an atomic node: the inputs of the cost model."""
    out = math.prod(graph.shape(node.output))
    ins = sum(math.prod(graph.shape(i)) for i in node.inputs)
    if node.op == "matmul":
        k = graph.shape(node.inputs[0])[-1]
        return 2.0 * out * k, 4.0 * (ins + out)
    if node.op == "unary":
        return out * _UNARY_COST.get(node.attr("kind"), 1.0), 8.0 * out
    if node.op == "raster":
        return 0.0, 8.0 * out
    if node.op == "gather":  # reads the rows it copies, not the whole table
        return 0.0, 8.0 * out + 4.0 * math.prod(graph.shape(node.inputs[1]))
    return float(max(ins, out)), 4.0 * (ins + out)


def checked_gather(indices: FloatArray, rows: int, node: Node, run: Call) -> None:
    """Run a gather's (or gather_elements') kernel once its indices are checked: whole
    numbers in [-rows, rows), else a ValidationError naming the node and the position (a
    read outside the table would be a wrong answer or a crash)."""
    check_indices(indices, rows, f"{node.op} {node.name!r}: its indices", field=node.name)
    run()


def gather_call(node: Node, graph: Graph, indices: FloatArray, rows: int, run: Call) -> Call:
    """A gather's call: its kernel ``run`` behind the indices' check (:func:`checked_gather`),
    or, where the indices are one of the graph's constants (a Gather of constant ids), the
    kernel alone, the constant checked once here."""
    if node.inputs[1] in graph.constants:
        check_indices(indices, rows, f"{node.op} {node.name!r}: its indices", field=node.name)
        return run
    return partial(checked_gather, indices, rows, node, run)


def is_aliased_part(node: Node, buffers: Buffers) -> bool:
    """A reshape raster whose output buffer is its input's memory: nothing to run."""
    if node.op != "raster" or len(node.inputs) != 1:
        return False
    src, dst = buffers[node.inputs[0]], buffers[node.output]
    return (
        src.__array_interface__["data"][0] == dst.__array_interface__["data"][0]
        and src.nbytes == dst.nbytes
    )


@runtime_checkable
class DirectKernel(Protocol):
    """A plan's kernel call that can also run on a caller's arrays, skipping the plan's
    input and output copies: ``run_io(*inputs, out)`` in the order of ``io_arrays()``."""

    def io_arrays(self) -> tuple[FloatArray, ...]:
        """The plan buffers ``run_io`` replaces, in its argument order (inputs, then output)."""
        ...

    @property
    def run_io(self) -> Callable[..., None]:
        """The kernel on the caller's arrays (one per ``io_arrays`` entry; arity varies)."""
        ...


class MatmulCall:
    """``np.matmul(a, b, out=c)`` bound to plan buffers (numpy's BLAS).

    ``run`` is the plan's call; ``run_io`` computes the same product on a caller's arrays of
    the same shapes, which lets a one-matmul plan skip its input and output copies.
    """

    __slots__ = ("a", "b", "c")

    def __init__(self, a: FloatArray, b: FloatArray, c: FloatArray) -> None:
        self.a, self.b, self.c = a, b, c

    def run(self) -> None:
        """c = a @ b in the plan's buffers."""
        np.matmul(self.a, self.b, out=self.c)

    def io_arrays(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """The arrays ``run_io`` replaces, in its argument order."""
        return self.a, self.b, self.c

    def run_io(self, a: FloatArray, b: FloatArray, c: FloatArray) -> None:
        """c = a @ b on the caller's arrays (shapes as the plan's; ``c`` may be reshaped)."""
        if a.shape != self.a.shape or b.shape != self.b.shape or c.size != self.c.size:
            raise ValueError("run_io needs arrays shaped like the plan's buffers")
        np.matmul(a, b, out=c.reshape(self.c.shape))

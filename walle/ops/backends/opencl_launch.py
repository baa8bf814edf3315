"""OpenCL launches before and after binding: what a compiled step is, and a bound run of them.

A :class:`Launch` names a kernel, its ranges and its arguments (:class:`ValueArg` for plan
values, host arrays uploaded read-only, scalars by value). A :class:`LaunchSequence` binds a
run of consecutive launches to device buffers once (constants uploaded once, reshape aliases
sharing one buffer), then each call uploads what comes from outside the run, enqueues every
kernel without waiting, copies back what is read after the run, and waits on the queue once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
import numpy.typing as npt

from walle.errors import BackendError, StateError
from walle.ops.backends.base import Buffers, Call
from walle.ops.ir import Graph

try:
    import pyopencl as cl
except ImportError as exc:  # pragma: no cover - depends on the install
    raise BackendError(f"pyopencl is not installed ({exc})") from exc

if TYPE_CHECKING:
    from pyopencl.typing import KernelArg

_RO_COPY = cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR


@dataclass(frozen=True)
class ValueArg:
    """A launch argument naming a plan value (``write``: the launch's output)."""

    name: str
    write: bool = False


# A launch argument before binding: a plan value, a host array uploaded read-only (a spec
# or a dummy), or a scalar passed by value.
LaunchArg: TypeAlias = (
    ValueArg | npt.NDArray[np.int32] | npt.NDArray[np.float32] | np.int32 | np.float32
)


@dataclass(frozen=True, eq=False)
class Launch:
    """One kernel launch (or a buffer fill when ``kernel`` is None), not yet bound."""

    kernel: str | None
    global_size: tuple[int, ...]
    local_size: tuple[int, ...] | None
    args: tuple[LaunchArg, ...]
    nodes: frozenset[str]
    graph: Graph
    buffers: Buffers
    fill: float | None = None

    def __call__(self) -> None:
        raise StateError(
            "an OpenCL launch runs only inside the sequence built by OpenCLBackend.finish()"
        )


class LaunchSequence:
    """A run of launches bound to device buffers and this thread's queue."""

    def __init__(
        self,
        context: cl.Context,
        queue: cl.CommandQueue,
        program: cl.Program,
        launches: list[Launch],
    ) -> None:
        graph, buffers = launches[0].graph, launches[0].buffers
        self._context = context
        self._queue = queue
        keys = {name: _key(array) for name, array in buffers.items()}
        self._device: dict[tuple[int, int], cl.Buffer] = {}
        self._uploads: list[tuple[cl.Buffer, np.ndarray]] = []
        self._steps: list[Call] = []
        self._keep: list[cl.Buffer] = []
        written: dict[tuple[int, int], str] = {}
        for launch in launches:
            args = [self._bind(graph, buffers, keys, arg, written) for arg in launch.args]
            self._steps.append(self._enqueue(program, launch, args))
        nodes = frozenset().union(*(launch.nodes for launch in launches))
        self._downloads = [
            (buffers[name], self._device[key])
            for key, name in written.items()
            if _escapes(key, graph, keys, nodes)
        ]

    def _bind(
        self,
        graph: Graph,
        buffers: Buffers,
        keys: dict[str, tuple[int, int]],
        arg: LaunchArg,
        written: dict[tuple[int, int], str],
    ) -> KernelArg:
        """What the kernel gets for one launch argument."""
        if isinstance(arg, ValueArg):
            return self._buffer(graph, buffers, keys, arg, written)
        if isinstance(arg, np.ndarray):  # a spec or dummy: kept alive with us
            self._keep.append(cl.Buffer(self._context, _RO_COPY, hostbuf=arg))
            return self._keep[-1]
        return arg

    def _enqueue(self, program: cl.Program, launch: Launch, args: list[KernelArg]) -> Call:
        """The queued kernel launch, or buffer fill, of one bound launch."""
        if launch.kernel is not None:
            kernel = cl.Kernel(program, launch.kernel)
            kernel.set_args(*args)
            return partial(
                cl.enqueue_nd_range_kernel,
                self._queue,
                kernel,
                launch.global_size,
                launch.local_size,
            )
        target = args[0]
        if not isinstance(target, cl.Buffer) or launch.fill is None:
            raise StateError("an OpenCL fill launch takes one plan value and a fill value")
        pattern = np.array([launch.fill], np.float32)
        return partial(cl.enqueue_fill_buffer, self._queue, target, pattern, 0, target.size)

    def _buffer(
        self,
        graph: Graph,
        buffers: Buffers,
        keys: dict[str, tuple[int, int]],
        arg: ValueArg,
        written: dict[tuple[int, int], str],
    ) -> cl.Buffer:
        key = keys[arg.name]
        host = buffers[arg.name]
        buf = self._device.get(key)
        if buf is None:
            if arg.name in graph.constants:
                buf = cl.Buffer(self._context, _RO_COPY, hostbuf=np.ascontiguousarray(host))
            else:
                buf = cl.Buffer(self._context, cl.mem_flags.READ_WRITE, size=max(host.nbytes, 4))
                if not arg.write:
                    self._uploads.append((buf, host))
            self._device[key] = buf
        if arg.write:
            written[key] = arg.name
        return buf

    def __call__(self) -> None:
        queue = self._queue
        for buf, host in self._uploads:
            cl.enqueue_copy(queue, buf, host, is_blocking=False)
        for step in self._steps:
            step()
        for host, buf in self._downloads:
            cl.enqueue_copy(queue, host, buf, is_blocking=False)
        queue.finish()


def _key(array: np.ndarray) -> tuple[int, int]:
    """Host memory identity: reshape views (plan aliases) share one device buffer."""
    return array.__array_interface__["data"][0], array.nbytes


def _escapes(
    key: tuple[int, int], graph: Graph, keys: dict[str, tuple[int, int]], nodes: frozenset[str]
) -> bool:
    """Whether a value written in the run is read after it (graph output, other backend)."""
    if any(keys[name] == key for name in graph.outputs):
        return True
    for node in graph.nodes:
        if node.name in nodes or not any(keys[i] == key for i in node.inputs):
            continue
        if node.op == "raster" and keys[node.output] == key:
            continue  # a reshape alias: same buffer, its readers are checked by key
        return True
    return False

"""Where each step of a plan runs, chosen over the whole plan with copies and syncs priced.

A backend on host memory (numpy, cython) reads and writes the plan's arrays. A backend with
memory of its own (OpenCL) runs each maximal run of consecutive steps placed on it as one
sequence (:meth:`walle.ops.backends.opencl_backend.OpenCLBackend.finish`): it uploads every
non-constant value the run reads from outside it, queues the launches, downloads every value
written in the run that is read after it (or is a graph output) and waits once. So a run's
price depends only on where it starts and ends, and the cheapest placement is a shortest path
over the step sequence: :func:`place` is a dynamic programme over run boundaries,
``best[j] = min(best[j-1] + host step j-1, best[i] + run [i, j) on a device)``, with the
device run's uploads and downloads kept incrementally, O(steps^2) per device backend.

Costs come from a :class:`CostTable`: per step and backend, the best algorithm's seconds
inside a plan (kernels and launches only); per device backend, its
:class:`~walle.ops.backends.base.DeviceCosts` (measured by :mod:`walle.ops.calibration`).
Tests inject tables; the search fills them from estimates and timed trials.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from walle.ops.backends.base import DeviceCosts
from walle.ops.fusion import FusedStep
from walle.ops.ir import Graph


@dataclass(frozen=True)
class Option:
    """One backend's best way to run one step: algorithm and seconds inside a plan."""

    algorithm: str
    seconds: float


@dataclass
class CostTable:
    """Per step name and backend name, an :class:`Option`; per device backend, its costs.

    A backend missing from ``devices`` (or mapped to None) works on host memory.
    """

    options: dict[str, dict[str, Option]]
    devices: dict[str, DeviceCosts | None] = field(default_factory=dict)

    def device(self, backend: str) -> DeviceCosts | None:
        """The device costs of ``backend`` (None: host memory, no copies)."""
        return self.devices.get(backend)


@dataclass(frozen=True)
class Move:
    """A planned copy: ``value`` (``nbytes``) up to a device before a run, or down after."""

    value: str
    direction: str  # "up" (host -> device) or "down" (device -> host)
    nbytes: int
    seconds: float


@dataclass(frozen=True)
class Flow:
    """The placed steps (aliases left out) and the values they read and write.

    Values are named by their root: a reshape alias shares its input's buffer, so it is
    the same value for copies. Constants are uploaded once when the plan is built.
    """

    steps: tuple[FusedStep, ...]
    reads: tuple[tuple[str, ...], ...]
    writes: tuple[str, ...]
    last_read: dict[str, int]
    outputs: frozenset[str]
    nbytes: dict[str, int]

    @classmethod
    def of(cls, graph: Graph, steps: list[FusedStep], aliases: set[str]) -> Flow:
        """The flow of ``steps``; ``aliases`` names the steps that are buffer views."""
        root: dict[str, str] = {}
        placed = []
        for step in steps:
            if step.name in aliases:
                root[step.output] = root.get(step.inputs[0], step.inputs[0])
            else:
                placed.append(step)

        def find(value: str) -> str:
            return root.get(value, value)

        reads = tuple(
            tuple(dict.fromkeys(find(i) for i in s.inputs if i not in graph.constants))
            for s in placed
        )
        last_read: dict[str, int] = {}
        for index, values in enumerate(reads):
            for value in values:
                last_read[value] = index
        names = {*(v for r in reads for v in r), *(find(s.output) for s in placed)}
        return cls(
            steps=tuple(placed),
            reads=reads,
            writes=tuple(find(s.output) for s in placed),
            last_read=last_read,
            outputs=frozenset(find(o) for o in graph.outputs),
            nbytes={v: 4 * math.prod(graph.shape(v), start=1) for v in names},
        )

    def escapes(self, value: str, end: int) -> bool:
        """Whether ``value`` is read at or after step ``end`` or is a graph output."""
        return value in self.outputs or self.last_read.get(value, -1) >= end


def place(flow: Flow, table: CostTable) -> list[str]:
    """The backend of each placed step that makes the plan cheapest under ``table``."""
    n = len(flow.steps)
    best = [0.0] + [math.inf] * n
    back: list[tuple[int, str]] = [(0, "")] * (n + 1)
    device_backends = sorted(
        {b for o in table.options.values() for b in o if table.device(b) is not None}
    )
    for i in range(n):
        if best[i] == math.inf:
            continue
        for backend, option in table.options[flow.steps[i].name].items():
            if table.device(backend) is None and best[i] + option.seconds < best[i + 1]:
                best[i + 1], back[i + 1] = best[i] + option.seconds, (i, backend)
        for backend in device_backends:
            for j, cost in _runs_from(flow, table, backend, i):
                if best[i] + cost < best[j]:
                    best[j], back[j] = best[i] + cost, (i, backend)
    if best[n] == math.inf:
        raise ValueError("no placement runs every step (a step no backend offers)")
    placed: list[str] = []
    j = n
    while j > 0:
        i, backend = back[j]
        placed[:0] = [backend] * (j - i)
        j = i
    return placed


def _runs_from(
    flow: Flow, table: CostTable, backend: str, start: int
) -> Iterator[tuple[int, float]]:
    """(end, seconds) of each run of ``backend`` over steps [start, end) it can all run."""
    costs = table.device(backend)
    if costs is None:
        return
    written: set[str] = set()
    uploaded: set[str] = set()
    pending: dict[int, float] = {}  # last reader -> download seconds of values still read
    down_total = 0.0  # downloads: graph outputs and values read after the run's end so far
    seconds = costs.sync_s
    for j in range(start, len(flow.steps)):
        option = table.options[flow.steps[j].name].get(backend)
        if option is None:
            return
        seconds += option.seconds
        for value in flow.reads[j]:
            if value not in written and value not in uploaded:
                uploaded.add(value)
                seconds += costs.upload_s(flow.nbytes[value])
        value = flow.writes[j]
        written.add(value)
        down = costs.download_s(flow.nbytes[value])
        if value in flow.outputs:
            down_total += down
        elif flow.last_read.get(value, -1) > j:
            last = flow.last_read[value]
            pending[last] = pending.get(last, 0.0) + down
            down_total += down
        down_total -= pending.pop(j, 0.0)  # values last read by step j: read inside the run
        yield j + 1, seconds + down_total


def runs(assigned: list[str]) -> list[tuple[int, int, str]]:
    """The maximal runs ``(start, end, backend)`` of consecutive steps on one backend."""
    out: list[tuple[int, int, str]] = []
    for index, backend in enumerate(assigned):
        if out and out[-1][2] == backend:
            out[-1] = (out[-1][0], index + 1, backend)
        else:
            out.append((index, index + 1, backend))
    return out


def moves(flow: Flow, assigned: list[str], table: CostTable) -> list[list[Move]]:
    """Per placed step, the copies the plan makes around it: uploads before the step that
    first reads a value in its run, downloads after the step that writes a value."""
    per_step: list[list[Move]] = [[] for _ in flow.steps]
    for start, end, backend in runs(assigned):
        costs = table.device(backend)
        if costs is None:
            continue
        seen: set[str] = set()  # written or already uploaded in this run
        for j in range(start, end):
            for value in flow.reads[j]:
                if value not in seen:
                    seen.add(value)
                    nbytes = flow.nbytes[value]
                    per_step[j].append(Move(value, "up", nbytes, costs.upload_s(nbytes)))
            seen.add(flow.writes[j])
        for j in range(start, end):
            value = flow.writes[j]
            if flow.escapes(value, end):
                nbytes = flow.nbytes[value]
                per_step[j].append(Move(value, "down", nbytes, costs.download_s(nbytes)))
    return per_step


def plan_seconds(flow: Flow, assigned: list[str], table: CostTable) -> float:
    """Modelled seconds of one call of the plan placed as ``assigned``."""
    total = sum(table.options[s.name][b].seconds for s, b in zip(flow.steps, assigned, strict=True))
    total += sum(
        costs.sync_s
        for _, _, backend in runs(assigned)
        if (costs := table.device(backend)) is not None
    )
    return total + sum(m.seconds for step in moves(flow, assigned, table) for m in step)

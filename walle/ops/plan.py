"""A compiled plan: buffers allocated once, each step bound to a backend's calls.

Values whose lives do not overlap share memory blocks (:mod:`walle.ops.reuse`), so a step
mostly writes memory that an earlier step of the same run has just read.

Running the plan is a copy of the inputs into their buffers, one Python loop over bound
zero-argument calls, and a copy of the outputs; where the last call alone writes the one
output and its kernel can write a caller's array, it writes the returned array instead. A
plan is not thread-safe (its buffers are shared); :class:`walle.ops.model.Model` keeps one
plan per thread. A plan that is one kernel
from its inputs to one output (softmax, layer norm, transpose, matmul) skips both copies: the
kernel reads the caller's arrays and writes an output array that no caller holds
(``run_io``). A :class:`SubBatchPlan` runs a batch as several runs of a plan compiled for
fewer rows (see :mod:`walle.ops.subbatch`, which decides when).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TypeGuard

import numpy as np
import numpy.typing as npt

from walle._kernels import hugepages
from walle.errors import ValidationError
from walle.ops import aligned
from walle.ops.aliasing import (
    NO_SLOTS,
    ChannelSlot,
    ConcatSlots,
    Slot,
    concat_slots,
    is_alias,
    reshape_aliases,
)
from walle.ops.backends.base import Backend, Buffers, Call, DirectKernel
from walle.ops.fusion import FusedStep
from walle.ops.ir import FloatArray, Graph, check_index_input
from walle.ops.reuse import BlockPlan, share_blocks

__all__ = ["Choice", "CompiledPlan", "SubBatchPlan", "allocate", "is_alias"]


@dataclass(frozen=True)
class Choice:
    """Where one step runs and why: backend, algorithm, estimated and measured seconds."""

    backend: str
    algorithm: str
    estimate_s: float
    measured_s: float | None = None


def allocate(
    graph: Graph,
    steps: list[FusedStep],
    fill: float | None = None,
    slots: Mapping[str, Slot] | None = None,
    channels: Mapping[str, ChannelSlot] | None = None,
    shared: Collection[str] | None = None,
    also_read: Mapping[str, tuple[str, ...]] | None = None,
    callers_inputs: bool = False,
) -> Buffers:
    """One buffer per value (where ``shared`` says, values share memory blocks); aliases for
    reshape rasters; constants as given.

    ``shared``: the steps (by name; they run in ``steps``' order, on host memory) whose
    values may share memory blocks (:mod:`walle.ops.reuse`); a value that another step
    touches, and the graph's inputs and outputs, keep their own. The values inside a step
    (its parts' outputs but its own) share blocks apart from those: each lives within its
    step. None: only those share (a search's buffers, each candidate timed alone).

    A value with a slot (:func:`walle.ops.aliasing.concat_slots`) gets its block of the
    host value's buffer instead, so every view exists before a kernel captures a pointer.
    Every buffer is a C-contiguous float32 array, but for a value with a channel slot: its
    channels of the host's buffer, a strided view (its producer writes through the host).
    ``also_read``: values a step (by name) reads beyond its inputs, which then live through
    it (the step before's inputs, where the two may run as one call). ``callers_inputs``:
    the graph's inputs where a caller's numpy arrays lie (:func:`walle.ops.aligned.as_callers`),
    not on a cache line: a search's buffers, since the plan reads its callers' arrays in place
    where it can (a plan of one kernel, a network's first conv).
    """
    placed = slots or {}
    in_channels = channels or {}
    flat: dict[str, FloatArray] = {}
    alias = reshape_aliases(graph, steps)
    blocks: list[FloatArray] = []
    plan = _blocks(graph, steps, alias, placed, in_channels, shared, also_read or {})
    blocks = [_new((size,), fill) for size in plan.sizes]

    def memory(name: str) -> FloatArray:
        # A value's flat memory: its own, or its block of its host's (hosts come later in
        # the graph, so they are made on demand; nested concats recurse outward).
        found = flat.get(name)
        if found is None:
            slot = placed.get(name)
            block = plan.block.get(name)
            if block is not None:
                found = blocks[block][: math.prod(graph.shape(name))]
            elif slot is None:
                found = _new((math.prod(graph.shape(name)),), fill)
            else:
                found = memory(slot.host)[slot.offset : slot.offset + slot.size]
            flat[name] = found
        return found

    buffers: Buffers = dict(graph.constants)
    for name in graph.inputs:
        if fill is not None and name in graph.index_inputs:
            buffers[name] = np.zeros(graph.shape(name), np.float32)  # ids: row 0 of a table
        else:
            buffers[name] = _new(graph.shape(name), fill)
            if callers_inputs:
                buffers[name] = aligned.as_callers(buffers[name])
    for node in graph.nodes:
        channel = in_channels.get(node.output)
        if node.output in alias:
            buffers[node.output] = buffers[alias[node.output]].reshape(graph.shape(node.output))
        elif channel is not None:
            host = memory(channel.host).reshape(graph.shape(channel.host))
            count = graph.shape(node.output)[1]
            buffers[node.output] = host[:, channel.channel0 : channel.channel0 + count]
        else:
            buffers[node.output] = memory(node.output).reshape(graph.shape(node.output))
    return buffers


def _blocks(
    graph: Graph,
    steps: list[FusedStep],
    alias: Mapping[str, str],
    placed: Mapping[str, Slot],
    channels: Mapping[str, ChannelSlot],
    shared: Collection[str] | None,
    also_read: Mapping[str, tuple[str, ...]],
) -> BlockPlan:
    """The memory blocks that the values of ``shared`` steps share, each value taken to
    the value whose memory it is (a reshape's source, a concat slot's host). None: only
    the values inside steps share blocks (a search's buffers, each step timed alone)."""

    def root(name: str) -> str:
        while True:
            if name in alias:
                name = alias[name]
            elif name in channels:
                name = channels[name].host
            elif name in placed:
                name = placed[name].host
            else:
                return name

    touched: list[list[str]] = []
    pinned = {root(n) for n in (*graph.inputs, *graph.outputs)}
    for step in steps:
        # A step's inputs and output: the values inside it (a fused kernel's im2col matrix,
        # which only a run of its parts writes) take blocks apart (below), so that the block
        # freed last is one that a kernel has just read.
        names = (step.output, *step.inputs, *also_read.get(step.name, ()))
        roots = list(dict.fromkeys(root(n) for n in names if n not in graph.constants))
        touched.append(roots)
        if (shared is None or step.name not in shared) and not is_alias(step, graph):
            pinned.update(roots)  # (an alias runs nothing)
    sizes = {n: math.prod(graph.shape(n)) for step_roots in touched for n in step_roots}
    main = share_blocks(touched, sizes, pinned)
    # The values inside steps share blocks of their own: each lives within its step, so a
    # few blocks hold them all. With memory of their own, ~25x a model's weights were
    # allocated (PP-LCNet: 122 MB of im2col matrices for 6.8 MB of weights), and in a
    # search, whose buffers are filled, all of it resident (PP-OCRv4 detection at 640 x 640
    # peaked at 1.5 GB).
    outer = pinned.union(*touched)
    inner: list[list[str]] = []
    for step in steps:
        values: list[str] = []
        if (shared is None or step.name in shared) and not is_alias(step, graph):
            parts = (root(p.output) for p in step.parts if p.output != step.output)
            values = [n for n in dict.fromkeys(parts) if n not in outer | graph.constants.keys()]
        # the largest first: each then takes the block it had the step before, none grows
        inner.append(sorted(values, key=lambda n: -math.prod(graph.shape(n))))
    inner_sizes = {n: math.prod(graph.shape(n)) for values in inner for n in values}
    scratch = share_blocks(inner, inner_sizes, set())
    first = len(main.sizes)
    block = {**main.block, **{n: first + b for n, b in scratch.block.items()}}
    return BlockPlan(block, [*main.sizes, *scratch.sizes])


def _new(shape: tuple[int, ...], fill: float | None) -> FloatArray:
    """A buffer the plan keeps, on huge-page memory (:mod:`walle._kernels.hugepages`: a
    run's page walks cost whole models 3-6%); ``fill``: values in [fill, fill + 1)."""
    buffer = hugepages.zeros(shape)
    if fill is not None:
        buffer[...] = np.random.default_rng(0).uniform(fill, fill + 1.0, shape)
    return buffer


def _in_place(
    graph: Graph, steps: list[FusedStep], choices: dict[str, Choice], backends: dict[str, Backend]
) -> ConcatSlots:
    """Concat inputs written in place by the steps that run on host memory."""
    host = {name for name, c in choices.items() if backends[c.backend].memory == "host"}
    by_name = {s.name: s for s in steps}
    channel = {
        name
        for name, c in choices.items()
        if name in by_name
        and backends[c.backend].writes_channel_slice(by_name[name], c.algorithm, graph)
    }
    return concat_slots(graph, steps, host, channel)


class CompiledPlan:
    """A graph bound to buffers and backend calls; call it with input arrays."""

    def __init__(
        self,
        graph: Graph,
        steps: list[FusedStep],
        choices: dict[str, Choice],
        backends: dict[str, Backend],
        *,
        concat_in_place: bool = True,
        share_memory: bool = True,
    ) -> None:
        """``concat_in_place``: concat inputs write into their concat's buffer where safe
        (:func:`walle.ops.aliasing.concat_slots`); False keeps every concat a copy.
        ``share_memory``: values whose lives do not overlap share memory blocks (see
        :mod:`walle.ops.reuse`); False gives each value its own."""
        self.graph = graph
        self.steps = steps
        self.choices = choices
        self.backends = backends
        self.in_place = _in_place(graph, steps, choices, backends) if concat_in_place else NO_SLOTS
        host = {n for n, c in choices.items() if backends[c.backend].memory == "host"}
        pairs = _interleavable(graph, steps, choices, backends)
        self.buffers = allocate(
            graph,
            steps,
            slots=self.in_place.slots,
            channels=self.in_place.channels,
            shared=host if share_memory else None,
            also_read={b.name: a.inputs for a, b in pairs},
        )
        calls: list[Call] = []
        run: list[Call] = []
        owner: dict[int, str] = {}  # id of a step's call -> the step's name
        current: Backend | None = None
        for planned in steps:
            step = None if is_alias(planned, graph) else self.in_place.step(planned)
            if step is None:  # a reshape alias, or a concat whose inputs all wrote in place
                continue
            choice = choices[step.name]
            backend = backends[choice.backend]
            channel = self.in_place.channels.get(step.output)
            if channel is not None:  # its kernel writes through the host's buffer
                slot_attrs = (("slot_host", channel.host), ("slot_channel", channel.channel0))
                step = dataclasses.replace(step, attrs=(*step.attrs, *slot_attrs))
            if backend is not current and current is not None:
                calls += current.finish(run)
                run = []
            current = backend
            compiled = backend.compile(step, choice.algorithm, graph, self.buffers)
            owner.update((id(call), step.name) for call in compiled)
            run += compiled
        if current is not None:
            calls += current.finish(run)
        calls = _interleaved(pairs, calls, owner, choices, backends, self.buffers)
        self._calls = tuple(calls)
        self._call_steps = tuple(owner.get(id(call)) for call in calls)
        self._in = tuple(self.buffers[n] for n in graph.inputs)
        self._out = tuple(self.buffers[n] for n in graph.outputs)
        # A direct plan reads the caller's arrays as they are: not for ids, checked on load.
        checked = bool(graph.index_inputs)
        self._direct = None if checked else _direct_io(calls, self._in, self._out)
        self._fast_load = not checked
        # Else its first call may read the one input in place (run1 then skips the copy).
        self._reader = (
            None
            if checked or self._direct is not None
            else _input_reader(graph, steps, calls, owner, self._in)
        )
        # Its last call may write a caller's output array (run1 then skips the copy out).
        self._writer = (
            None
            if self._direct is not None
            else _output_writer(graph, steps, calls, owner, self._out, self._slot_hosts())
        )
        self._head = self._calls[:-1] if self._writer is not None else self._calls
        self._after_reader = self._head[1:]  # the calls run1 makes after the reader
        self._spare: FloatArray | None = None

    def _slot_hosts(self) -> list[FloatArray]:
        """The buffers that other values write into in place (concats' and their parts)."""
        slots = self.in_place
        names = {s.host for s in slots.slots.values()} | {c.host for c in slots.channels.values()}
        return [self.buffers[n] for n in sorted(names)]

    def __call__(self, *arrays: npt.ArrayLike) -> list[FloatArray]:
        """Run on ``arrays`` (one per graph input, exact shapes); fresh output arrays."""
        _check_arity(self.graph, len(arrays))
        if self._direct is not None and _all_ready(arrays, self._in):
            return [self._run_direct(*arrays)]
        for name, buf, x in zip(self.graph.inputs, self._in, arrays, strict=True):
            self._load(name, buf, x)
        for call in self._head:
            call()
        if self._writer is not None:
            return [self._write_out()]
        return [o.copy() for o in self._out]

    def run1(self, x: npt.NDArray[np.generic]) -> FloatArray:
        """Fast path for one input and one output (the batch-1 scoring case)."""
        buf = self._in[0]
        if self._direct is not None and len(self._in) == 1 and _is_ready(x, buf):
            return self._run_direct(x)
        reader = self._reader
        if reader is not None and _is_ready(x, buf) and not np.may_share_memory(x, reader[1]):
            reader[0](x, reader[1])
            for call in self._after_reader:
                call()
        else:
            if x.shape != buf.shape or x.dtype != np.float32 or not self._fast_load:
                self._load(self.graph.inputs[0], buf, x)
            else:
                buf[...] = x
            for call in self._head:
                call()
        if self._writer is not None:
            return self._write_out()
        return self._out[0].copy()

    def run_into(self, arrays: list[FloatArray], outputs: list[FloatArray]) -> None:
        """Run on ``arrays`` and write the outputs into ``outputs`` (a sub-batch's rows of
        the caller's arrays: no fresh arrays, no second copy). Ids are not checked again:
        the :class:`SubBatchPlan` checked the whole batch's."""
        for name, buf, x in zip(self.graph.inputs, self._in, arrays, strict=True):
            self._load(name, buf, x, check_ids=False)
        for call in self._head:
            call()
        writer = self._writer
        if writer is not None and _is_ready(outputs[0], self._out[0]):
            writer[0](*writer[1], outputs[0])  # the rows of the caller's batch: written there
            return
        if writer is not None:
            writer[0](*writer[1], self._out[0])
        for buf, out in zip(self._out, outputs, strict=True):
            np.copyto(out, buf)

    def _run_direct(self, *arrays: FloatArray) -> FloatArray:
        """The one kernel reads ``arrays`` and writes an output no caller holds: no copies."""
        out = self._free_output()
        if self._direct is not None:  # always so here: __call__ and run1 check first
            self._direct(*arrays, out)
        return out

    def _write_out(self) -> FloatArray:
        """The last call, writing an output no caller holds instead of the plan's buffer:
        no copy out (PP-OCRv6's 40 x 18710 scores: 240-380 us a run, 1.3% of it)."""
        out = self._free_output()
        if self._writer is not None:  # always so here: the callers check first
            self._writer[0](*self._writer[1], out)
        return out

    def _free_output(self) -> FloatArray:
        """An output array no caller holds: the previous result where nothing else refers to
        it any more (no caller, no view: a view holds its base), else a new one. Recycling it
        spares a fresh allocation per call, which costs ~18 us of page faults for a 1 MB
        output whenever malloc has given the memory back to the system."""
        out = self._spare
        # held: more references than self._spare, `out` and the argument, or a view of it
        # (a view holds the memory it shares with ``out``: ``out.base``, aligned.empty's)
        if out is None or sys.getrefcount(out) > 3 or sys.getrefcount(out.base) > 2:
            out = aligned.empty(self._out[0].shape)
            self._spare = out
        return out

    def _load(self, name: str, buf: FloatArray, x: npt.ArrayLike, check_ids: bool = True) -> None:
        _check_shape(name, buf.shape, np.shape(x))
        if check_ids and name in self.graph.index_inputs:
            check_index_input(name, np.asarray(x))
        try:
            np.copyto(buf, x, casting="same_kind")
        except TypeError as exc:
            raise ValidationError(f"input {name!r}: {exc}", field=name) from exc

    @property
    def call_count(self) -> int:
        """How many Python-level calls one run makes (lower is better at batch 1)."""
        return len(self._calls)

    @property
    def step_calls(self) -> tuple[tuple[str | None, Call], ...]:
        """The calls one run makes, in order, each with the name of the step it runs (None
        for a call its backend adds around the steps'): to time a plan step by step
        (``benchmarks/ops_steps.py``). A call reads and writes the plan's ``buffers``."""
        return tuple(zip(self._call_steps, self._calls, strict=True))


class SubBatchPlan:
    """A batch run as runs of ``inner``, a plan compiled for fewer rows, through every step.

    ``graph`` is the whole batch's graph (its inputs and outputs are the caller's); run
    ``i`` takes rows ``[i * b, (i + 1) * b)`` of every input to the same rows of every
    output, ``b`` being ``inner``'s rows (a divisor of the batch). Only right where the
    graph treats rows independently: :mod:`walle.ops.subbatch` checks that before it builds
    one. Its steps and choices are ``inner``'s (the same for every run).
    """

    def __init__(self, graph: Graph, inner: CompiledPlan) -> None:
        self.graph = graph
        self.inner = inner
        self.rows = graph.shape(graph.inputs[0])[0]
        self.rows_per_run = inner.graph.shape(inner.graph.inputs[0])[0]
        if self.rows_per_run < 1 or self.rows % self.rows_per_run:
            raise ValidationError(
                f"a sub-batch of {self.rows_per_run} rows does not divide {self.rows} rows"
            )

    @property
    def steps(self) -> list[FusedStep]:
        """The steps of one run."""
        return self.inner.steps

    @property
    def choices(self) -> dict[str, Choice]:
        """Where each step of a run runs."""
        return self.inner.choices

    @property
    def runs(self) -> int:
        """Runs of ``inner`` per call."""
        return self.rows // self.rows_per_run

    def __call__(self, *arrays: npt.ArrayLike) -> list[FloatArray]:
        """Run on ``arrays`` (one per graph input, exact shapes); fresh output arrays."""
        _check_arity(self.graph, len(arrays))
        xs = [np.asarray(x) for x in arrays]
        for name, x in zip(self.graph.inputs, xs, strict=True):
            _check_shape(name, self.graph.shape(name), x.shape)
            if name in self.graph.index_inputs:  # here: an error gives the batch's position
                check_index_input(name, x)
        outs = [np.empty(self.graph.shape(n), np.float32) for n in self.graph.outputs]
        b = self.rows_per_run
        for start in range(0, self.rows, b):
            rows = slice(start, start + b)
            try:
                self.inner.run_into([x[rows] for x in xs], [o[rows] for o in outs])
            except ValidationError as exc:  # a gather's ids: its position is the run's
                raise ValidationError(
                    f"{exc} (in the run of rows {start} to {start + b - 1} of the batch, "
                    f"which runs {b} rows at a time)",
                    field=exc.field,
                ) from exc
        return outs

    def run1(self, x: npt.NDArray[np.generic]) -> FloatArray:
        """One input, the first output."""
        return self(x)[0]

    @property
    def call_count(self) -> int:
        """How many Python-level calls one run of the whole batch makes."""
        return self.inner.call_count * self.runs


def _check_arity(graph: Graph, given: int) -> None:
    if given != len(graph.inputs):
        raise ValidationError(f"model takes {len(graph.inputs)} inputs {graph.inputs}, got {given}")


def _check_shape(name: str, want: tuple[int, ...], got: tuple[int, ...]) -> None:
    if want != got:
        raise ValidationError(f"input {name!r} must have shape {want}, got {got}", field=name)


def _direct_io(
    calls: list[Call], ins: tuple[FloatArray, ...], outs: tuple[FloatArray, ...]
) -> Callable[..., None] | None:
    """``run_io`` of the plan's kernel when the whole plan is one kernel call that reads every
    graph input once and writes the one output (softmax, layer norm, transpose, a matmul),
    else None.

    Then a call reads the caller's arrays in place and returns the array the kernel wrote,
    fresh each call, instead of copying into the plan's input buffers and out of its output.
    A kernel input may be an aliased reshape of a graph input (a transpose of a [1, k] or
    [k, 1] matrix, a flatten): it then gets the caller's array viewed in its own shape. Its
    other inputs are the step's constants (a matmul's weights: the plan is this one call, so
    nothing else writes them), passed as they are.
    """
    if len(calls) != 1 or len(outs) != 1 or getattr(calls[0], "__name__", "") != "run":
        return None
    kernel: object = getattr(calls[0], "__self__", None)
    if not isinstance(kernel, DirectKernel):
        return None
    bound = kernel.io_arrays()
    if not bound:  # a kernel that takes no caller arrays (a raster of several inputs)
        return None
    *operands, written = bound
    if not _same_memory(written, outs[0]) or any(np.may_share_memory(i, outs[0]) for i in ins):
        return None
    # where[j]: the graph input kernel operand j reads, or None for a constant
    where = [next((i for i, x in enumerate(ins) if _same_memory(k, x)), None) for k in operands]
    if sorted(i for i in where if i is not None) != list(range(len(ins))):
        return None
    run_io = kernel.run_io
    if where == list(range(len(ins))) and all(
        k.shape == x.shape for k, x in zip(operands, ins, strict=True)
    ):
        return run_io

    template = list(operands)  # the constants stay; the graph inputs are filled per call
    fills = [
        (j, i, None if operands[j].shape == ins[i].shape else operands[j].shape)
        for j, i in enumerate(where)
        if i is not None
    ]

    def run_mapped(*arrays: FloatArray) -> None:
        args = template.copy()
        for j, i, shape in fills:
            # The caller's inputs are C-contiguous (_is_ready), so a reshape is a view.
            args[j] = arrays[i] if shape is None else arrays[i].reshape(shape)
        run_io(*args, arrays[-1])

    return run_mapped


def _interleavable(
    graph: Graph,
    steps: list[FusedStep],
    choices: Mapping[str, Choice],
    backends: Mapping[str, Backend],
) -> list[tuple[FusedStep, FusedStep]]:
    """Neighbouring steps that their backend may run as one call
    (:meth:`Backend.may_interleave`: a stem conv and its pooling): on the same backend, the
    second alone reading the first's output (no other step, no alias, not a graph output),
    so the joint call need never write that tensor. The plan keeps the first's inputs alive
    through the second (values whose lives do not overlap share memory blocks, and a pooled
    stem's output would fit in the block of the padded image before it: ShuffleNet's), since
    the joint call writes the second's output while it still reads them."""
    pairs = []
    for a, b in itertools.pairwise(steps):
        if a.name not in choices or b.name not in choices:  # an alias runs nothing
            continue
        ca, cb = choices[a.name], choices[b.name]
        if (
            ca.backend == cb.backend
            and a.output not in graph.outputs
            and [s.name for s in steps if a.output in s.inputs] == [b.name]
            and backends[ca.backend].may_interleave(a, ca.algorithm, b, cb.algorithm)
        ):
            pairs.append((a, b))
    return pairs


def _interleaved(
    pairs: list[tuple[FusedStep, FusedStep]],
    calls: list[Call],
    owner: dict[int, str],
    choices: Mapping[str, Choice],
    backends: Mapping[str, Backend],
    buffers: Buffers,
) -> list[Call]:
    """``calls`` with the calls of each pair of :func:`_interleavable` steps replaced by
    the one call their backend makes of them (:meth:`Backend.interleave`), where each is
    its step's one call, they run in a row, and the second's output shares no memory with
    the first's inputs; ``owner`` gives the joint call to the first step."""
    per_step: dict[str | None, int] = {}
    for call in calls:
        name = owner.get(id(call))
        per_step[name] = per_step.get(name, 0) + 1
    wanted = {(a.name, b.name): (a, b) for a, b in pairs}
    out: list[Call] = []
    i = 0
    while i < len(calls):
        first = calls[i]
        joint = None
        if i + 1 < len(calls):
            then = calls[i + 1]
            pair = wanted.get((owner.get(id(first), ""), owner.get(id(then), "")))
            if pair is not None:
                a, b = pair
                if per_step[a.name] == per_step[b.name] == 1 and not any(
                    np.may_share_memory(buffers[b.output], buffers[n]) for n in a.inputs
                ):
                    joint = backends[choices[a.name].backend].interleave(first, then)
        if joint is None:
            out.append(first)
            i += 1
        else:
            owner[id(joint)] = owner.pop(id(first))
            del owner[id(calls[i + 1])]  # ids of dropped calls may come back as new objects
            out.append(joint)
            i += 2
    return out


def _input_reader(
    graph: Graph,
    steps: list[FusedStep],
    calls: list[Call],
    owner: Mapping[int, str],
    ins: tuple[FloatArray, ...],
) -> tuple[Callable[..., None], FloatArray] | None:
    """``(run_io, out)`` of the plan's first call where it alone reads the one graph input
    and can read a caller's array in place (a network's first conv or pad: ``run_io(x,
    out)``), else None. Then ``run1`` hands it the caller's array instead of copying it into
    the input buffer first (a 3x224x224 image: 23-52 us per call, 0.8% of SqueezeNet 1.1).

    Only the first call: nothing runs before it, so nothing can have written the caller's
    array; and the input must have no other reader (no alias of it either), so that no later
    call looks for it in the buffer that was not filled. The reader's other calls, if any,
    must not read it either: where the step makes more than one call, the input is its pad
    prologue's alone (:func:`_read_by_prologue_alone`), whose raster is the first call.
    """
    if len(ins) != 1 or len(graph.outputs) != 1 or not calls:
        return None
    name, buffer = graph.inputs[0], ins[0]
    readers = [s for s in steps if name in s.inputs]
    if len(readers) != 1 or is_alias(readers[0], graph):
        return None
    first = calls[0]
    if owner.get(id(first)) != readers[0].name or getattr(first, "__name__", "") != "run":
        return None
    own_calls = sum(owner.get(id(call)) == readers[0].name for call in calls)
    if own_calls != 1 and not _read_by_prologue_alone(readers[0], name):
        return None
    kernel: object = getattr(first, "__self__", None)
    if not isinstance(kernel, DirectKernel):
        return None
    bound = kernel.io_arrays()
    if len(bound) != 2 or not _same_memory(bound[0], buffer) or bound[0].shape != buffer.shape:
        return None
    if np.may_share_memory(bound[1], buffer):
        return None
    return kernel.run_io, bound[1]


def _read_by_prologue_alone(step: FusedStep, name: str) -> bool:
    """Whether value ``name`` is read by ``step``'s first part alone, its prologue (a conv's
    pad raster of a network's input: the step's first call; the others read what it
    wrote)."""
    if step.attr("prologue", 0) < 1 or step.inputs.count(name) != 1 or not step.parts:
        return False
    readers = [part for part in step.parts if name in part.inputs]
    return readers == [step.parts[0]] and step.parts[0].inputs == (name,)


def _output_writer(
    graph: Graph,
    steps: list[FusedStep],
    calls: list[Call],
    owner: Mapping[int, str],
    outs: tuple[FloatArray, ...],
    slot_hosts: list[FloatArray],
) -> tuple[Callable[..., None], tuple[FloatArray, ...]] | None:
    """``(run_io, inputs)`` of the plan's last call where it alone writes the one graph
    output and can write a caller's array (``run_io(*inputs, out)``: a softmax, a matmul, a
    raster of one input), else None. Then ``run1`` hands it the array it returns instead of
    copying the plan's output buffer into a fresh one, as onnxruntime hands out the memory
    its last kernel wrote.

    Only the last call, and only if it is its step's one call and that step makes the graph
    output (or the value the output is a reshape of): nothing runs after it, so nothing can
    look for the output in the plan's buffer, which that run leaves unwritten; it must not
    read the output's memory; and no other step may write into that memory in place (a
    concat's parts, ``slot_hosts``), for the call would then write only what they left.
    """
    if len(outs) != 1 or len(calls) < 2:
        return None
    if any(np.may_share_memory(host, outs[0]) for host in slot_hosts):
        return None
    by_output = {s.output: s for s in steps}
    producer = by_output.get(graph.outputs[0])
    while producer is not None and is_alias(producer, graph):  # a reshape of the result
        producer = by_output.get(producer.inputs[0])
    last = calls[-1]
    if producer is None or owner.get(id(last)) != producer.name:
        return None
    if (
        getattr(last, "__name__", "") != "run"
        or sum(owner.get(id(call)) == producer.name for call in calls) != 1
    ):
        return None
    kernel: object = getattr(last, "__self__", None)
    if not isinstance(kernel, DirectKernel):
        return None
    bound = kernel.io_arrays()
    if len(bound) < 2 or not _same_memory(bound[-1], outs[0]):
        return None
    inputs = tuple(bound[:-1])
    if any(np.may_share_memory(i, outs[0]) for i in inputs):
        return None
    return kernel.run_io, inputs


def _same_memory(a: FloatArray, b: FloatArray) -> bool:
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.nbytes == b.nbytes
    )


def _all_ready(
    xs: tuple[object, ...], bufs: tuple[FloatArray, ...]
) -> TypeGuard[tuple[FloatArray, ...]]:
    """Every input is :func:`_is_ready` for its buffer."""
    return all(map(_is_ready, xs, bufs))


def _is_ready(x: object, buf: FloatArray) -> TypeGuard[FloatArray]:
    """A C-contiguous float32 ndarray of the buffer's shape: usable without a copy."""
    return (
        type(x) is np.ndarray
        and x.dtype == np.float32
        and x.shape == buf.shape
        and x.flags.c_contiguous
    )

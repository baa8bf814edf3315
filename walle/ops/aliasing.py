"""Which values of a plan share memory: reshape aliases, and concat inputs written in place.

A reshape raster (:func:`is_alias`) never copies: its output is its input's buffer viewed in
another shape. A concat raster need not copy either: each input whose producer writes host
memory can write straight into its block of the concat's buffer (:func:`concat_slots`), so
the concat step shrinks to the regions still to copy, or disappears. Concats of concats nest
(DenseNet's chain): the inner concat's buffer is itself a block of the outer one. At batch
N > 1 an NCHW channel concat's inputs are no contiguous blocks; an input whose producer's
kernel writes a channel range of a wider output (a conv's packed GEMM or Winograd kernel)
and that nothing else reads is written there all the same (a :class:`ChannelSlot`).

Only the final plan places values in concat blocks: the search's timed trials give every
value its own buffer, which is always correct.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Set
from dataclasses import dataclass, field

from walle.ops.fusion import FusedStep
from walle.ops.ir import Graph, Region, contiguous_strides, is_identity_raster


def is_alias(step: FusedStep, graph: Graph) -> bool:
    """True for a reshape-like raster that can share its input's buffer."""
    return (
        not step.fused
        and step.op == "raster"
        and is_identity_raster(step.parts[0], graph.shape(step.inputs[0]), graph.shape(step.output))
    )


def reshape_aliases(graph: Graph, steps: list[FusedStep]) -> dict[str, str]:
    """For each value that is a reshape of another, the value it views.

    A reshape inside a fused step aliases too (conv2d's im2col reshape): a backend running
    the step's parts skips it (:func:`walle.ops.backends.base.is_aliased_part`).
    """
    alias = {s.output: s.inputs[0] for s in steps if is_alias(s, graph)}
    alias.update(
        {
            node.output: node.inputs[0]
            for s in steps
            if s.fused
            for node in s.parts
            if node.op == "raster"
            and is_identity_raster(node, graph.shape(node.inputs[0]), graph.shape(node.output))
        }
    )
    return alias


@dataclass(frozen=True)
class Slot:
    """A value's buffer as the block of ``size`` elements at ``offset`` in ``host``'s buffer."""

    host: str
    offset: int
    size: int


@dataclass(frozen=True)
class ChannelSlot:
    """A value [N, C, ...] written by its producer into channels [channel0, channel0 + C)
    of ``host``'s buffer [N, C_host, ...]: its buffer is that strided view."""

    host: str
    channel0: int


@dataclass(frozen=True)
class ConcatSlots:
    """The in-place placement of a plan: ``slots`` by value (each the root of its reshape
    aliases), ``channels`` by value, and for each concat step that lost regions the step
    left to run (``None``: nothing left, the step is skipped)."""

    slots: dict[str, Slot]
    steps: dict[str, FusedStep | None]
    channels: dict[str, ChannelSlot] = field(default_factory=dict)

    def step(self, step: FusedStep) -> FusedStep | None:
        """What to compile for ``step``: itself, its remaining copies, or None (nothing)."""
        return self.steps.get(step.name, step)


NO_SLOTS = ConcatSlots({}, {})


def concat_slots(
    graph: Graph,
    steps: list[FusedStep],
    host_steps: Set[str],
    channel_steps: Set[str] = frozenset(),
) -> ConcatSlots:
    """Place concat inputs in their concat's buffer where that is safe.

    ``host_steps`` names the steps that run on a backend writing host memory (``memory ==
    "host"``): a device backend's results are copied down into their buffers, so its
    outputs, and the concats it runs, keep their copies. A value (with its reshape aliases)
    moves into a concat's block when the concat runs on the host, copies it whole into one
    contiguous block (an NCHW channel concat at batch 1, any concat on axis 0), reads it in
    that one region only, and the value is no graph input, output or constant, is not
    already placed elsewhere (a value two concats read goes to the first) and is written
    by a host step. Every value is written once, by its producer, so its block is never
    overwritten while later steps read it. A block is always smaller than its host, so two
    values never share both address and size (backends tell buffers apart by those).

    A region that copies a whole [N, C, ...] value (N > 1) into a channel range of the
    concat instead gets a :class:`ChannelSlot` when the value's producer is in
    ``channel_steps`` (its kernel writes a channel range of a wider output), the value is
    that step's output, and the concat is the value's only reader (no reshape alias).
    """
    alias = reshape_aliases(graph, steps)

    def root(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    pinned = {root(n) for n in (*graph.inputs, *graph.outputs, *graph.constants)}
    producer = {node.output: s for s in steps for node in s.parts}
    readers: dict[str, set[str]] = {}
    for s in steps:
        for name in s.inputs:
            readers.setdefault(name, set()).add(s.name)
    slots: dict[str, Slot] = {}
    channels: dict[str, ChannelSlot] = {}
    left: dict[str, FusedStep | None] = {}
    for step in steps:
        if step.name not in host_steps or not _is_copy(step, graph):
            continue
        regions: tuple[Region, ...] = step.parts[0].attr("regions")
        roots = [root(step.inputs[r.input]) for r in regions]
        keep: list[Region] = []
        for i, r in enumerate(regions):
            value = roots[i]
            placeable = (
                value not in pinned
                and value not in slots
                and roots.count(value) == 1
                and value in producer
                and producer[value].name in host_steps
                and _whole_block(r, math.prod(graph.shape(value)))
                and math.prod(graph.shape(value)) < math.prod(graph.shape(step.output))
                and _apart(r, [o for o in regions if o is not r])
            )
            channel0 = _channel_block(r, graph.shape(value), graph.shape(step.output))
            by_channel = (
                not placeable
                and channel0 is not None
                and value not in pinned
                and value not in slots
                and value not in channels
                and value not in alias.values()
                and readers.get(value) == {step.name}
                and value in producer
                and producer[value].output == value
                and producer[value].name in channel_steps
                and _channels_apart(r, [o for o in regions if o is not r], graph.shape(step.output))
            )
            if placeable:
                slots[value] = Slot(step.output, r.dst_offset, math.prod(graph.shape(value)))
            elif by_channel and channel0 is not None:
                channels[value] = ChannelSlot(step.output, channel0)
            else:
                keep.append(r)
        if len(keep) < len(regions):
            left[step.name] = _with_regions(step, tuple(keep)) if keep else None
    _slice_views(graph, steps, host_steps, alias, pinned, producer, slots, channels, left)
    return ConcatSlots(slots, left, channels)


def _slice_views(
    graph: Graph,
    steps: list[FusedStep],
    host_steps: Set[str],
    alias: dict[str, str],
    pinned: set[str],
    producer: dict[str, FusedStep],
    slots: dict[str, Slot],
    channels: dict[str, ChannelSlot],
    left: dict[str, FusedStep | None],
) -> None:
    """Make each slice that copies one contiguous block of its input a view of it: the
    value becomes a :class:`Slot` of its input's buffer and the step runs nothing (a Split
    of channels at batch 1, a recurrent op's gates and steps: walle.ops.onnx_import.recurrent).

    Where the slice runs on the host, the input (its reshape root) is written by a host
    step and is no graph input, output or constant, placed in no channel slot, and every
    step that reads the slice (or a reshape of it) runs on the host; the slice itself is no
    graph output and not placed elsewhere. The input is written once, by its producer,
    before the slice's readers run, and its block lives while they read it (a slot's
    value shares its host's lifetime, :func:`walle.ops.plan.allocate`).
    """

    def root(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    readers: dict[str, set[str]] = {}
    for s in steps:
        for name in s.inputs:
            readers.setdefault(root(name), set()).add(s.name)
    for step in steps:
        if step.name not in host_steps or step.name in left or not _is_copy(step, graph):
            continue
        offset = _contiguous_slice(step, graph)
        if offset is None:
            continue
        value, host = step.output, root(step.inputs[0])
        if (
            value in pinned
            or value in slots
            or value in channels
            or host in pinned
            or host in channels
            or host not in producer
            or producer[host].name not in host_steps
            or not readers.get(value, set()) <= host_steps
        ):
            continue
        slots[value] = Slot(host, offset, math.prod(graph.shape(value)))
        left[step.name] = None


def _contiguous_slice(step: FusedStep, graph: Graph) -> int | None:
    """Where a one-region raster copies a contiguous block of its one input, in order, into
    its whole output: the block's first element in the input, else None."""
    regions: tuple[Region, ...] = step.parts[0].attr("regions")
    if len(step.inputs) != 1 or len(regions) != 1:
        return None
    r = regions[0]
    size = math.prod(graph.shape(step.output))
    dims = [i for i, n in enumerate(r.sizes) if n != 1]
    flat = contiguous_strides(tuple(r.sizes[i] for i in dims))
    fits = (
        size > 0
        and math.prod(r.sizes) == size
        and r.dst_offset == 0
        and tuple(r.src_strides[i] for i in dims) == flat
        and tuple(r.dst_strides[i] for i in dims) == flat
        and r.src_offset + size <= math.prod(graph.shape(step.inputs[0]))
    )
    return r.src_offset if fits else None


def _is_copy(step: FusedStep, graph: Graph) -> bool:
    """An atomic raster that is no reshape alias and does not fill its output first."""
    return (
        not step.fused
        and step.op == "raster"
        and step.parts[0].attr("fill") is None
        and not is_alias(step, graph)
    )


def _whole_block(r: Region, size: int) -> bool:
    """The region copies its whole input, in order, into one contiguous destination block."""
    dims = [i for i, s in enumerate(r.sizes) if s != 1]
    sizes = tuple(r.sizes[i] for i in dims)
    flat = contiguous_strides(sizes)
    return (
        size > 0
        and math.prod(r.sizes) == size
        and r.src_offset == 0
        and tuple(r.src_strides[i] for i in dims) == flat
        and tuple(r.dst_strides[i] for i in dims) == flat
    )


def _channel_block(r: Region, shape: tuple[int, ...], host: tuple[int, ...]) -> int | None:
    """The first host channel where the region copies its whole [N, C, ...] input (N > 1)
    into channels of a [N, C_host, ...] host with the same N and plane, else None."""
    if len(shape) < 2 or len(host) != len(shape) or shape[0] < 2:
        return None
    if shape[0] != host[0] or shape[2:] != host[2:] or tuple(r.sizes) != tuple(shape):
        return None
    if r.src_offset != 0 or tuple(r.src_strides) != contiguous_strides(shape):
        return None
    plane = math.prod(shape[2:])
    if tuple(r.dst_strides) != contiguous_strides(host) or plane == 0 or r.dst_offset % plane:
        return None
    channel0 = r.dst_offset // plane
    return channel0 if channel0 + shape[1] <= host[1] else None


def _channels_apart(r: Region, others: list[Region], host: tuple[int, ...]) -> bool:
    """No other region writes into ``r``'s channels of the host: each other region is a
    channel block elsewhere, or its whole extent lies outside ``r``'s."""
    first = r.dst_offset // math.prod(host[2:])
    last = first + r.sizes[1]
    lo, hi = _extent(r)
    for o in others:
        if math.prod(o.sizes) == 0:
            continue
        start = _channel_block(o, tuple(o.sizes), host)
        if start is not None:
            if start < last and first < start + o.sizes[1]:
                return False
        elif not (_extent(o)[1] <= lo or _extent(o)[0] >= hi):
            return False
    return True


def _extent(r: Region) -> tuple[int, int]:
    """First and one-past-last destination element the region may touch."""
    spans = [(n - 1) * s for n, s in zip(r.sizes, r.dst_strides, strict=True)]
    lo = r.dst_offset + sum(s for s in spans if s < 0)
    hi = r.dst_offset + sum(s for s in spans if s > 0)
    return lo, hi + 1


def _apart(r: Region, others: list[Region]) -> bool:
    """No other region writes into ``r``'s destination block."""
    lo, hi = _extent(r)
    return all(
        math.prod(o.sizes) == 0 or _extent(o)[1] <= lo or _extent(o)[0] >= hi for o in others
    )


def _with_regions(step: FusedStep, regions: tuple[Region, ...]) -> FusedStep:
    """The raster step copying only ``regions``, reading only the inputs they copy (an input
    written in place may be a strided view, which a raster kernel would refuse)."""
    used = sorted({r.input for r in regions})
    index = {old: new for new, old in enumerate(used)}
    regions = tuple(dataclasses.replace(r, input=index[r.input]) for r in regions)
    inputs = tuple(step.inputs[i] for i in used)
    node = step.parts[0]
    attrs = tuple((k, regions if k == "regions" else v) for k, v in node.attrs)
    node = dataclasses.replace(node, inputs=inputs, attrs=attrs)
    return dataclasses.replace(step, inputs=inputs, attrs=attrs, parts=(node,))

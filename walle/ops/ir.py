"""The graph IR of walle.ops: a closed set of atomic ops over static-shape float32 tensors.

Every model, whether imported from ONNX or built in Python, lowers to these six ops:

- ``unary``: element-wise function of one tensor (``kind`` in :data:`UNARY_KINDS`);
- ``binary``: element-wise function of two tensors with numpy broadcasting;
- ``reduce``: sum/mean/max/min over a set of axes;
- ``matmul``: numpy ``matmul`` semantics (batched, broadcasting batch dims); with the
  ``integer`` attribute, one operand is a constant of whole numbers and the other holds
  whole numbers in [0, 255] (a quantized product: a dense layer's, a conv's), so a backend
  may sum in int32: exact, the float sums' bits wherever those are exact (below 2**24);
- ``raster``: an MNN-style region copy. Each :class:`Region` copies a block of ``sizes``
  elements from one input (``src_offset`` + ``src_strides``) into the output
  (``dst_offset`` + ``dst_strides``); strides and offsets count elements of flat, C-ordered
  buffers. Transpose, slice, concat, pad, reshape, im2col and pooling windows are rasters.
- ``gather``: ``np.take(data, indices, axis)`` with indices computed at run time (ids given
  with each call: an embedding lookup), or a constant of many irregular indices (a Gather of
  constant ids, which as a raster would be a region per run). The one op whose reads depend
  on the data: each kernel checks its indices (whole numbers in [-rows, rows)) before it
  reads; constant ones once, when it is built.

A backend implements only these; composites (see :mod:`walle.ops.builder`) decompose into them.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from walle.errors import ModelError, ValidationError

# topk: the indices (float32, exact below 2**24) of the k first along an axis;
# gather_elements: numpy's take_along_axis (ONNX's GatherElements; TopK's values);
# cumsum: running sums along an axis (exclusive, reverse: ONNX's CumSum)
ATOMIC_OPS = (
    "unary", "binary", "reduce", "matmul", "raster", "gather", "topk", "gather_elements",
    "cumsum",
)  # fmt: skip
# An index input's values travel as float32, exact up to 2**24: a gather reads at most this
# many rows, so that every index that is out of range stays out of range as a float.
MAX_GATHER_ROWS = 1 << 24
# The most elements one value may hold (8 GiB of float32): the OpenCL kernels index with 32-bit
# ints, and a shape past it is a damaged or mistaken model far more often than a real one.
MAX_ELEMENTS = (1 << 31) - 1
# The most indices a take holds (a Gather of constant indices, an axis of a resize): its runs
# are found at import (builder._take_runs), in a few passes over them.
MAX_TAKE = 1 << 20


def check_size(shape: Sequence[int], what: str) -> None:
    """ModelError unless ``shape`` has no negative dim and at most ``MAX_ELEMENTS`` elements
    (``what`` names the value)."""
    if any(d < 0 for d in shape) or math.prod(shape) > MAX_ELEMENTS:
        raise ModelError(
            f"{what} has shape {tuple(shape)}: dims must be >= 0 and hold at most "
            f"{MAX_ELEMENTS:,} elements"
        )


UNARY_KINDS = (
    "identity", "neg", "abs", "exp", "log", "sqrt", "reciprocal",
    "relu", "sigmoid", "tanh", "erf", "gelu", "floor", "ceil", "round", "sin", "cos",
    "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh",
)  # fmt: skip
# comparisons give 1.0 where true and 0.0 where not (ONNX's booleans, as numbers; NaN compares
# false); "mask" is b where a is nonzero and 0 elsewhere (b's NaN and inf only where a is):
# ONNX's Where(c, x, y) is mask(c, x) + mask(1 - c, y); "fmod" is C's (the dividend's sign);
# "fmax" and "fmin" are C's too: a NaN on one side gives the other side (quantization's
# clamp, which takes its bound where the value is NaN), where "max" and "min" keep NaN
COMPARE_KINDS = ("eq", "gt", "ge", "lt", "le")
BINARY_KINDS = (
    "add", "sub", "mul", "div", "max", "min", "pow", *COMPARE_KINDS, "mask", "fmod", "fmax",
    "fmin",
)  # fmt: skip
# the index of the max or min along one axis, as float32 (exact below 2**24); "_last": the
# last index of a tie (ONNX's ArgMax/ArgMin with select_last_index)
ARG_KINDS = ("argmax", "argmin", "argmax_last", "argmin_last")
# "fmax" and "fmin" leave NaN out, as C's fmax and fmin (a slice of NaN only gives -inf and
# +inf: their identities): a quantizer's range, which onnxruntime takes over the numbers
REDUCE_KINDS = ("sum", "mean", "max", "min", *ARG_KINDS, "fmax", "fmin")

Shape = tuple[int, ...]
# A numpy float32 array: every tensor of walle.ops (inputs, constants, buffers) is float32.
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Region:
    """One block copy of a raster: ``sizes`` elements from input ``input`` into the output."""

    input: int
    src_offset: int
    src_strides: tuple[int, ...]
    dst_offset: int
    dst_strides: tuple[int, ...]
    sizes: tuple[int, ...]


# An attribute value of a node or step: a kind or activation name, a flag, an epsilon or a
# raster fill, reduce axes, raster regions.
AttrValue = str | bool | int | float | None | tuple[int, ...] | tuple[Region, ...]


@dataclass(frozen=True)
class Value:
    """A named tensor of the graph with its static shape (float32 throughout)."""

    name: str
    shape: Shape

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)


@dataclass(frozen=True)
class Node:
    """One atomic op: ``op`` applied to ``inputs`` (value names) producing ``output``.

    ``attrs`` is a sorted tuple of (key, value) pairs so that nodes hash and compare.
    """

    name: str
    op: str
    inputs: tuple[str, ...]
    output: str
    attrs: tuple[tuple[str, AttrValue], ...] = ()

    def attr(self, key: str, default: Any = None) -> Any:
        """The attribute ``key`` (or ``default``). Typed ``Any``: the value's type is fixed per
        key (``axes`` a tuple of ints, ``regions`` a tuple of Regions, ...), not per call."""
        for k, v in self.attrs:
            if k == key:
                return v
        return default


@dataclass
class Graph:
    """A model: inputs, constants (weights), atomic nodes in topological order, outputs."""

    inputs: list[str]
    outputs: list[str]
    values: dict[str, Value]
    constants: dict[str, FloatArray] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    # Inputs that hold ids (integers, for gathers): each value must be a whole number below
    # MAX_GATHER_ROWS in magnitude (float32 carries it exactly), checked when a plan loads it.
    index_inputs: list[str] = field(default_factory=list)

    def shape(self, name: str) -> Shape:
        """The static shape of value ``name``."""
        return self.values[name].shape

    def signature(self) -> str:
        """A hash of structure and shapes (not weights): the search cache key's graph part."""
        h = hashlib.sha256()
        for name in self.inputs:
            h.update(f"in {name} {self.shape(name)}\n".encode())
        for name in sorted(self.constants):
            h.update(f"const {name} {self.shape(name)}\n".encode())
        for node in self.nodes:
            h.update(f"{node.op} {node.inputs} {node.output} {node.attrs}\n".encode())
        h.update(f"out {self.outputs}\n".encode())
        return h.hexdigest()[:24]

    def validate(self) -> None:
        """Check names are defined before use and ops are atomic (ModelError names the node)."""
        known = set(self.inputs) | set(self.constants)
        for node in self.nodes:
            if node.op not in ATOMIC_OPS:
                raise ModelError(f"node {node.name!r}: op {node.op!r} is not atomic")
            for name in node.inputs:
                if name not in known:
                    raise ModelError(f"node {node.name!r} ({node.op}): input {name!r} undefined")
            if node.op == "gather":
                self._check_gather(node)
            known.add(node.output)
        for name in self.index_inputs:
            if name not in self.inputs:
                raise ModelError(f"index input {name!r} is not a graph input")
        for name in self.outputs:
            if name not in known:
                raise ModelError(f"graph output {name!r} is not produced by any node")

    def _check_gather(self, node: Node) -> None:
        rows = self.shape(node.inputs[0])[node.attr("axis")]
        if not 0 < rows <= MAX_GATHER_ROWS:
            raise ModelError(
                f"node {node.name!r} (gather): {rows} rows to pick from, 1 to "
                f"{MAX_GATHER_ROWS} run (float32 carries ids exactly below that)"
            )

    def consumers(self) -> dict[str, list[Node]]:
        """For each value name, the nodes that read it (each node once)."""
        found: dict[str, list[Node]] = {name: [] for name in self.values}
        for node in self.nodes:
            for name in dict.fromkeys(node.inputs):
                found[name].append(node)
        return found

    def __str__(self) -> str:
        lines = [f"graph({', '.join(f'{n}{self.shape(n)}' for n in self.inputs)})"]
        for node in self.nodes:
            attrs = {k: v for k, v in node.attrs if k != "regions"}
            lines.append(
                f"  {node.output}{self.shape(node.output)} = {node.op}({', '.join(node.inputs)})"
                f" {attrs}"
            )
        lines.append(f"  return {', '.join(self.outputs)}")
        return "\n".join(lines)


def check_indices(x: npt.NDArray[Any], bound: int, what: str, field: str | None = None) -> None:
    """Refuse ids unless each is a whole number in [-bound, bound): the error names ``what``
    holds them (an input, a gather), the first bad position and its value."""
    compiled = _compiled_check()
    if compiled is not None:
        try:
            if compiled(x, bound) < 0:
                return  # the common case: one pass in C
        except TypeError:  # a dtype or layout it does not take: numpy's check below
            pass
    if x.dtype.kind in "iu":
        bad = (x < -bound) | (x >= bound)
    elif x.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~((x >= -bound) & (x < bound) & (np.floor(x) == x))
    else:
        raise ValidationError(f"{what} must hold integers, got {x.dtype} values", field=field)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        value = x[where].item()
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # ids travel as floats: show 7, not 7.0
        raise ValidationError(
            f"{what} at position {where}: {value} is not a whole number in [-{bound}, {bound - 1}]",
            field=field,
        )


def check_index_input(name: str, x: npt.NDArray[Any]) -> None:
    """An index input's values: whole numbers that float32 carries exactly."""
    check_indices(x, MAX_GATHER_ROWS, f"index input {name!r}", field=name)


@functools.cache
def _compiled_check() -> Callable[[npt.NDArray[Any], int], int] | None:
    """The compiled one-pass check, when walle's kernels are built."""
    try:
        from walle._kernels.ops_raster import first_bad_index
    except ImportError:  # pragma: no cover - a build without the kernels
        return None
    return first_bad_index


def sample_inputs(graph: Graph, seed: int = 0) -> list[FloatArray]:
    """Inputs for timing and comparing plans: uniform in [0.5, 1.5), and ids of 0 (a row
    of every table, also after the offsets a multi-field model adds)."""
    rng = np.random.default_rng(seed)
    out = []
    for name in graph.inputs:
        shape = graph.shape(name)
        if name in graph.index_inputs:
            out.append(np.zeros(shape, np.float32))
        else:
            out.append(rng.uniform(0.5, 1.5, shape).astype(np.float32))
    return out


def contiguous_strides(shape: Shape) -> tuple[int, ...]:
    """Element strides of a C-ordered array of ``shape``."""
    strides = []
    step = 1
    for dim in reversed(shape):
        strides.append(step)
        step *= dim
    return tuple(reversed(strides))


def same_float(a: float, b: float) -> bool:
    """Equal and of the same sign, +0.0 not -0.0 (whether a kernel's +0.0 border stands
    for a pad's fill bit for bit: a sum of -0.0 values and a +0.0 border is +0.0);
    infinities compare equal."""
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


# Above this many output elements a raster's fill covers the whole output (the index
# arrays that find its gaps would cost more memory than the fill saves time).
GAP_SEARCH_LIMIT = 1 << 24


def unfilled_runs(regions: tuple[Region, ...], size: int) -> npt.NDArray[np.int64] | None:
    """The [start, stop) runs of a raster's ``size`` output elements that no region
    writes, as an [n, 2] array: all that its fill must write (a pad's border, ~3% of
    ResNet-50's padded stem input). None where filling the whole output is as cheap: more
    than one run per 8 elements, or an output over :data:`GAP_SEARCH_LIMIT` elements."""
    if size > GAP_SEARCH_LIMIT:
        return None
    covered = np.zeros(size + 2, np.int8)  # one guard element each side
    for r in regions:
        index = np.full((1,) * len(r.sizes), r.dst_offset + 1, np.int64)
        for axis, (n, stride) in enumerate(zip(r.sizes, r.dst_strides, strict=True)):
            shape = [1] * len(r.sizes)
            shape[axis] = n
            index = index + (np.arange(n, dtype=np.int64) * stride).reshape(shape)
        covered[index.reshape(-1)] = 1
    covered[0] = covered[-1] = 1
    edges = np.flatnonzero(np.diff(covered)).reshape(-1, 2)  # each gap's start and stop
    if len(edges) * 8 > size:
        return None
    return np.ascontiguousarray(edges, dtype=np.int64)


def raster_sources(
    regions: tuple[Region, ...], source: npt.NDArray[np.signedinteger[Any]], size: int
) -> npt.NDArray[np.signedinteger[Any]]:
    """What each of a one-input raster's ``size`` output elements copies from ``source`` (the
    input's elements as integer labels of its dtype: element indices, say), -1 where no
    region writes: a raster's layout worked out by running it on labels (a chain of
    rasters: on the last one's result)."""
    out = np.full(size, -1, source.dtype)
    item = out.itemsize
    for r in regions:
        np.copyto(
            np.lib.stride_tricks.as_strided(
                out[r.dst_offset :], r.sizes, tuple(v * item for v in r.dst_strides)
            ),
            np.lib.stride_tricks.as_strided(
                source[r.src_offset :], r.sizes, tuple(v * item for v in r.src_strides)
            ),
        )
    return out


def is_identity_raster(node: Node, in_shape: Shape, out_shape: Shape) -> bool:
    """True when the raster copies its single input unchanged (a reshape): it can alias."""
    regions: tuple[Region, ...] = node.attr("regions")
    if len(regions) != 1 or node.attr("fill") is not None:
        return False
    total = math.prod(out_shape)
    if math.prod(in_shape) != total:
        return False
    r = regions[0]
    return _covers_flat(r.sizes, r.src_strides, r.src_offset, total) and _covers_flat(
        r.sizes, r.dst_strides, r.dst_offset, total
    )


def _covers_flat(sizes: tuple[int, ...], strides: tuple[int, ...], offset: int, total: int) -> bool:
    dims = [(s, st) for s, st in zip(sizes, strides, strict=True) if s != 1]
    return (
        offset == 0
        and math.prod(sizes) == total
        and (tuple(st for _, st in dims) == contiguous_strides(tuple(s for s, _ in dims)))
    )

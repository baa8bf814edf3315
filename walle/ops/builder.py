"""Build walle graphs in Python: atomic ops, raster-based layout ops, and composites.

``GraphBuilder`` emits only atomic nodes (see :mod:`walle.ops.ir`). Layout ops (reshape,
transpose, slice, concat, pad) become ``raster`` nodes; composites (linear, conv2d, pooling,
softmax, layer norm, gelu, ...) live in :class:`walle.ops.composites.CompositeOps` and
decompose into these.

>>> b = GraphBuilder()
>>> x = b.input("x", (2, 3))
>>> y = b.softmax(x)
>>> g = b.build([y])
>>> sorted({n.op for n in g.nodes})
['binary', 'reduce', 'unary']
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import TypeGuard, overload

import numpy as np
import numpy.typing as npt

from walle._kernels import hugepages
from walle.errors import ModelError, ValidationError
from walle.ops.composites import CompositeOps
from walle.ops.ir import (
    ARG_KINDS,
    BINARY_KINDS,
    MAX_GATHER_ROWS,
    MAX_TAKE,
    REDUCE_KINDS,
    UNARY_KINDS,
    AttrValue,
    FloatArray,
    Graph,
    Node,
    Region,
    Shape,
    Value,
    check_indices,
    check_size,
    contiguous_strides,
)
from walle.ops.reference import evaluate


class GraphBuilder(CompositeOps):
    """Accumulates values and atomic nodes; ``build`` returns a validated :class:`Graph`."""

    def __init__(self) -> None:
        self._values: dict[str, Value] = {}
        self._inputs: list[str] = []
        self._constants: dict[str, FloatArray] = {}
        self._nodes: list[Node] = []
        self._concats: set[str] = set()  # outputs of concat nodes
        self._index_inputs: list[str] = []
        self._counter = 0
        self.scope = ""

    # -- values ---------------------------------------------------------------------------
    def _fresh(self, hint: str) -> str:
        self._counter += 1
        return f"{self.scope or hint}:{self._counter}"

    def shape(self, name: str) -> Shape:
        """Static shape of the value ``name``."""
        return self._values[name].shape

    def input(self, name: str, shape: Sequence[int]) -> str:
        """Declare a graph input of a static ``shape``."""
        if name in self._values:
            raise ModelError(f"input {name!r} declared twice")
        dims = tuple(int(d) for d in shape)
        check_size(dims, f"input {name!r}")
        self._values[name] = Value(name, dims)
        self._inputs.append(name)
        return name

    def index_input(self, name: str, shape: Sequence[int]) -> str:
        """Declare a graph input of ids for :meth:`gather` (integers; a plan checks that
        float32 carries them exactly when it loads them)."""
        self.input(name, shape)
        self._index_inputs.append(name)
        return name

    def const(self, array: npt.ArrayLike, name: str | None = None) -> str:
        """Add a constant (weights); stored as contiguous float32 on a cache line, on
        huge-page memory (:mod:`walle._kernels.hugepages`)."""
        data = hugepages.copy(np.asarray(array, dtype=np.float32))  # keeps 0-d
        name = name or self._fresh("const")
        self._values[name] = Value(name, data.shape)
        self._constants[name] = data
        return name

    def constant_value(self, name: str) -> FloatArray | None:
        """The array of a constant value, or None if ``name`` is computed."""
        return self._constants.get(name)

    def _emit(self, op: str, inputs: Sequence[str], shape: Shape, **attrs: AttrValue) -> str:
        out = self._fresh(op)
        shape = tuple(int(d) for d in shape)
        check_size(shape, f"the {op} output")
        if 0 in shape:
            # Empty (a Slice that keeps nothing: a rotary embedding's pass-through part when
            # it rotates every dim): nothing to compute, whatever it reads. It stands as an
            # empty constant, which a concat leaves out and a graph may output; a step may
            # not read one.
            return self.const(np.zeros(shape, np.float32), name=out)
        empty = [i for i in inputs if 0 in self._values[i].shape]
        if empty:
            raise ModelError(
                f"the {op} output {shape} reads the empty value {self.shape(empty[0])} "
                "(walle.ops has no empty tensors: only a concat may take one, and leaves it out)"
            )
        node = Node(out, op, tuple(inputs), out, tuple(sorted(attrs.items())))
        if inputs and all(i in self._constants for i in inputs):
            # Constant folding: weights reshaped or transposed once, at build time.
            folded = evaluate(node, [self._constants[i] for i in inputs], shape)
            return self.const(folded, name=out)
        self._values[out] = Value(out, shape)
        self._nodes.append(node)
        return out

    def build(self, outputs: Sequence[str]) -> Graph:
        """The graph computing ``outputs`` (unused nodes are dropped; an element-wise op
        that alone reads a concat is applied to its inputs instead, see
        :meth:`_unaries_before_concats`)."""
        kept, needed = _needed(self._nodes, outputs)
        kept, needed = _needed(self._gelus(kept, outputs), outputs)
        kept, needed = _needed(self._unaries_before_concats(kept, outputs), outputs)
        names = set(self._inputs) | {n.output for n in kept} | needed
        graph = Graph(
            inputs=list(self._inputs),
            outputs=list(outputs),
            values={k: v for k, v in self._values.items() if k in names},
            constants={k: v for k, v in self._constants.items() if k in needed},
            nodes=kept,
            index_inputs=list(self._index_inputs),
        )
        graph.validate()
        return graph

    def _gelus(self, nodes: list[Node], outputs: Sequence[str]) -> list[Node]:
        """The nodes, with each GELU spelled out as exporters write it, x * 0.5 * (1 +
        erf(x / sqrt 2)) (the scale a Div by sqrt 2 or a Mul by 1 / sqrt 2; the halving
        before or after either product), as one ``gelu`` unary in the place of its last Mul.
        One pass instead of five, and a kernel that is cheaper than the erf alone; the
        intermediate values must have no other reader and be no graph output."""
        producers = {n.output: n for n in nodes}
        readers: dict[str, list[Node]] = {}
        for node in nodes:
            for name in node.inputs:
                readers.setdefault(name, []).append(node)
        kept = set(outputs)

        def only_reader(value: str) -> Node | None:
            users = readers.get(value, [])
            return users[0] if len(users) == 1 and value not in kept else None

        def scalar(name: str, want: float) -> bool:
            c = self._constants.get(name)
            return c is not None and c.size == 1 and abs(float(c.reshape(-1)[0]) - want) <= 1e-6

        def binary(node: Node | None, kind: str) -> TypeGuard[Node]:
            return node is not None and node.op == "binary" and node.attr("kind") == kind

        def mul_by(node: Node | None, want: float) -> str | None:
            """The other operand of ``node`` when it is a Mul by the scalar ``want``."""
            if node is None or not binary(node, "mul"):
                return None
            a, b = node.inputs
            return a if scalar(b, want) else b if scalar(a, want) else None

        def other(node: Node, value: str) -> str | None:
            a, b = node.inputs
            return b if a == value else a if b == value else None

        gelus: dict[str, Node] = {}
        for erf in nodes:
            if erf.op != "unary" or erf.attr("kind") != "erf" or only_reader(erf.inputs[0]) is None:
                continue
            scale = producers.get(erf.inputs[0])
            x = mul_by(scale, 1.0 / math.sqrt(2.0))
            if x is None and scale is not None and binary(scale, "div"):
                x = scale.inputs[0] if scalar(scale.inputs[1], math.sqrt(2.0)) else None
            add = only_reader(erf.output)
            if x is None or add is None or not binary(add, "add"):
                continue
            if not scalar(other(add, erf.output) or "", 1.0):
                continue
            product = only_reader(add.output)
            if product is None or not binary(product, "mul"):
                continue
            factor = other(product, add.output)
            last = None
            if factor == x:  # (x * (1 + erf)) * 0.5
                last = only_reader(product.output)
                last = last if mul_by(last, 0.5) == product.output else None
            elif factor is not None and mul_by(producers.get(factor), 0.5) == x:
                last = product if only_reader(factor) is product else None  # (x * 0.5) * ...
            elif mul_by(product, 0.5) == add.output:  # ((1 + erf) * 0.5) * x
                last = only_reader(product.output)
                last = last if binary(last, "mul") and other(last, product.output) == x else None
            if last is None or self.shape(last.output) != self.shape(x):
                continue
            gelus[last.output] = Node(last.name, "unary", (x,), last.output, (("kind", "gelu"),))
        return [gelus.get(n.output, n) for n in nodes]

    def _unaries_before_concats(self, nodes: list[Node], outputs: Sequence[str]) -> list[Node]:
        """The nodes, with f(concat(a, b, ...)) as concat(f(a), f(b), ...) for a unary f
        that is the concat's only reader. The same values, the same number of passes, but
        each f can then fuse into its input's producer (ShuffleNet's ReLU after the concat
        of a pool and a conv becomes the conv's activation: a pass over the whole concat
        saved per downsampling unit); the concat's inputs then write in place as before."""
        readers: dict[str, int] = {}
        for node in nodes:
            for name in node.inputs:
                readers[name] = readers.get(name, 0) + 1
        concats = {n.output: n for n in nodes if n.output in self._concats}
        rewritten: list[Node] = []
        for node in nodes:
            cat = concats.get(node.inputs[0]) if node.op == "unary" else None
            if (
                cat is None
                or readers[cat.output] != 1
                or cat.output in outputs
                or any(i in self._constants for i in cat.inputs)
            ):
                rewritten.append(node)
                continue
            parts = []
            for i, name in enumerate(cat.inputs):
                part = f"{node.output}.{i}"
                self._values[part] = Value(part, self.shape(name))
                rewritten.append(Node(part, "unary", (name,), part, node.attrs))
                parts.append(part)
            rewritten.append(Node(node.name, "raster", tuple(parts), node.output, cat.attrs))
        return rewritten

    # -- atomic ops -----------------------------------------------------------------------
    def unary(self, kind: str, x: str) -> str:
        """Element-wise ``kind`` of ``x``."""
        if kind not in UNARY_KINDS:
            raise ModelError(f"unknown unary kind {kind!r}; expected one of {UNARY_KINDS}")
        return self._emit("unary", [x], self.shape(x), kind=kind)

    def binary(self, kind: str, a: str, b: str) -> str:
        """Element-wise ``kind`` of ``a`` and ``b`` with numpy broadcasting."""
        if kind not in BINARY_KINDS:
            raise ModelError(f"unknown binary kind {kind!r}; expected one of {BINARY_KINDS}")
        try:
            shape = np.broadcast_shapes(self.shape(a), self.shape(b))
        except ValueError as exc:
            raise ModelError(
                f"{kind}: shapes {self.shape(a)} and {self.shape(b)} do not broadcast"
            ) from exc
        return self._emit("binary", [a, b], shape, kind=kind)

    def reduce(self, kind: str, x: str, axes: Sequence[int], keepdims: bool = True) -> str:
        """Reduce ``x`` over ``axes`` (negative allowed) with ``kind``."""
        if kind not in REDUCE_KINDS:
            raise ModelError(f"unknown reduce kind {kind!r}; expected one of {REDUCE_KINDS}")
        shape = self.shape(x)
        norm = tuple(sorted({_axis(a, len(shape), "reduce") for a in axes}))
        if kind in ARG_KINDS:
            if len(norm) != 1:
                raise ModelError(f"{kind}: takes one axis, got {list(axes)}")
            _check_index_axis(kind, shape, norm[0])
        out = (
            [1 if i in norm else d for i, d in enumerate(shape)]
            if keepdims
            else [d for i, d in enumerate(shape) if i not in norm]
        )
        return self._emit("reduce", [x], tuple(out), kind=kind, axes=norm, keepdims=keepdims)

    def matmul(self, a: str, b: str, integer: bool = False) -> str:
        """``a @ b`` with numpy semantics (1-D operands are not supported: reshape first).

        ``integer``: the caller's promise that one operand is a constant of whole numbers
        and the other holds whole numbers in [0, 255] (a quantized value), so that a backend
        may sum in integers (the ``integer`` attribute, see :mod:`walle.ops.ir`)."""
        sa, sb = self.shape(a), self.shape(b)
        if len(sa) < 2 or len(sb) < 2 or sa[-1] != sb[-2]:
            raise ModelError(f"matmul: shapes {sa} and {sb} do not multiply")
        try:
            batch = np.broadcast_shapes(sa[:-2], sb[:-2])
        except ValueError as exc:
            raise ModelError(f"matmul: batch dims of {sa} and {sb} do not broadcast") from exc
        if integer and a not in self._constants and b not in self._constants:
            raise ModelError("matmul: an integer product needs a constant operand")
        attrs = {"integer": True} if integer else {}
        return self._emit("matmul", [a, b], (*batch, sa[-2], sb[-1]), **attrs)

    def raster(
        self,
        inputs: Sequence[str],
        shape: Sequence[int],
        regions: Sequence[Region],
        fill: float | None = None,
    ) -> str:
        """Copy ``regions`` of ``inputs`` into a new tensor of ``shape`` (rest = ``fill``)."""
        total = math.prod(shape)
        for r in regions:
            _check_region(r, len(inputs), [math.prod(self.shape(i)) for i in inputs], total)
        return self._emit("raster", list(inputs), tuple(shape), regions=tuple(regions), fill=fill)

    # -- layout ops as rasters ------------------------------------------------------------
    def gather(self, data: str, indices: str, axis: int = 0) -> str:
        """``np.take(data, indices, axis)``: the rows of ``data`` along ``axis`` that the run
        time value ``indices`` names (whole numbers in [-rows, rows), negative ones counting
        from the end: the kernel checks them)."""
        shape = self.shape(data)
        axis = _axis(axis, len(shape), "gather")
        rows = shape[axis]
        if not 0 < rows <= MAX_GATHER_ROWS:
            raise ModelError(f"gather: axis {axis} has {rows} rows, 1 to {MAX_GATHER_ROWS} run")
        known = self.constant_value(indices)
        if known is not None:  # constant indices: refused now, not at the first call
            try:
                check_indices(known, rows, "gather: its constant indices")
            except ValidationError as exc:
                raise ModelError(str(exc)) from exc
        out = (*shape[:axis], *self.shape(indices), *shape[axis + 1 :])
        return self._emit("gather", [data, indices], out, axis=axis)

    def topk(self, x: str, k: int, axis: int = -1, largest: bool = True) -> tuple[str, str]:
        """The ``k`` largest (or smallest) values along ``axis`` and their indices, in order:
        NaN counts as larger than every number (first when largest, last otherwise), ties
        go to the lower index (ONNX's TopK as onnxruntime runs it). The indices are a
        ``topk`` node, the values a ``gather_elements`` of ``x`` by them."""
        shape = self.shape(x)
        axis = _axis(axis, len(shape), "topk")
        _check_index_axis("topk", shape, axis)
        if not 0 <= k <= shape[axis]:
            raise ModelError(f"topk: k {k} must be in [0, {shape[axis]}] (axis {axis})")
        out = (*shape[:axis], k, *shape[axis + 1 :])
        indices = self._emit("topk", [x], out, axis=axis, k=k, largest=largest)
        return self.gather_elements(x, indices, axis), indices

    def cumsum(self, x: str, axis: int, exclusive: bool = False, reverse: bool = False) -> str:
        """Running sums along ``axis``, in float32 one element after the other (so NaN and
        inf reach the sums after them, not before): ``exclusive`` leaves each element out
        of its own sum, ``reverse`` sums from the end."""
        axis = _axis(axis, len(self.shape(x)), "cumsum")
        return self._emit(
            "cumsum", [x], self.shape(x), axis=axis, exclusive=exclusive, reverse=reverse
        )

    def gather_elements(self, data: str, indices: str, axis: int) -> str:
        """numpy's ``take_along_axis``: out[..., j, ...] = data[..., indices[..., j, ...],
        ...] along ``axis``; ``indices`` has data's rank and dims no larger than data's
        (ONNX's GatherElements), whole numbers in [-dim, dim) (checked with each call, or
        once where they are constant)."""
        shape, where = self.shape(data), self.shape(indices)
        axis = _axis(axis, len(shape), "gather_elements")
        if len(where) != len(shape) or any(
            w > d for i, (w, d) in enumerate(zip(where, shape, strict=True)) if i != axis
        ):
            raise ModelError(
                f"gather_elements: indices of shape {where} do not fit data of shape {shape} "
                f"(the same rank, no larger dims but along axis {axis})"
            )
        _check_index_axis("gather_elements", shape, axis)
        known = self.constant_value(indices)
        if known is not None:
            try:
                check_indices(known, shape[axis], "gather_elements: its constant indices")
            except ValidationError as exc:
                raise ModelError(str(exc)) from exc
        return self._emit("gather_elements", [data, indices], where, axis=axis)

    def take(self, x: str, indices: _Indices, axis: int, shape: Sequence[int] | None = None) -> str:
        """``np.take(x, indices, axis)`` for constant ``indices`` in [0, dim): a raster whose
        regions each copy a run of the slabs of ``x`` (:func:`_take_runs`: output positions
        e apart reading indices d apart, d 0 for a repeat), not one region per index; where
        each index of one such run comes e times in a row (a nearest upsampling by e), one
        region that reads each slab e times (along the innermost axis the cython raster's
        repeat mode). Indices in more than _TAKE_GATHER_FROM runs (a Gather of arbitrary
        constant ids) are a gather whose indices are a constant instead: a raster of one
        region per run cost each backend plan time and a launch or a call per region (2^16
        random ids had taken 34 s to plan, 2^20 nine minutes).
        ``shape``: the output's, where the indices are not one flat axis (as many
        elements)."""
        axis = _axis(axis, len(self.shape(x)), "take")
        out = self._take_shape(x, {axis: indices})
        if shape is not None and math.prod(shape) != math.prod(out):
            raise ModelError(f"take: shape {tuple(shape)} does not hold {out}")
        gather = self.shape(x)[axis] <= MAX_GATHER_ROWS
        runs = _axis_runs(indices, _TAKE_GATHER_FROM if gather else None)
        if runs is None:
            ids = self.const(np.asarray(indices, np.float32))  # exact: rows <= 2^24
            taken = self.gather(x, ids, axis)
            return taken if shape is None else self.reshape(taken, shape)
        regions = _take_regions(self.shape(x), {axis: indices}, {axis: runs})
        assert regions is not None  # one axis: always one raster
        return self.raster([x], out if shape is None else tuple(shape), regions)

    def take_axes(self, x: str, takes: Mapping[int, Sequence[int]]) -> str:
        """``np.take`` along each axis of ``takes`` in turn (constant indices in [0, dim)), as
        one raster where the product of the axes' runs is at most _TAKE_GRID regions of rank
        at most 6 (a nearest upsampling along several axes: one region, the output written
        once), else one take per axis, in the order given."""
        rank = len(self.shape(x))
        axes = {_axis(a, rank, "take"): list(i) for a, i in takes.items()}
        if len(axes) != len(takes):
            raise ModelError(f"take: axes {list(takes)} name one axis twice")
        out = self._take_shape(x, axes)
        regions = _take_regions(self.shape(x), axes)
        if regions is not None:
            return self.raster([x], out, regions)
        for axis, indices in axes.items():
            x = self.take(x, indices, axis)
        return x

    def _take_shape(self, x: str, takes: Mapping[int, _Indices]) -> tuple[int, ...]:
        """The output shape of taking ``indices`` along each axis of ``takes`` (checked)."""
        dims = list(self.shape(x))
        for axis, indices in takes.items():
            if len(indices) > MAX_TAKE:
                raise ModelError(f"take: {len(indices):,} indices, more than {MAX_TAKE:,}")
            values = np.asarray(indices, dtype=np.int64)
            if values.size and (values.min() < 0 or values.max() >= dims[axis]):
                raise ModelError(f"take: indices outside [0, {dims[axis] - 1}] on axis {axis}")
            dims[axis] = len(indices)
        return tuple(dims)

    def reshape(self, x: str, shape: Sequence[int]) -> str:
        """Same elements, new ``shape`` (one -1 allowed)."""
        shape = _resolve_reshape(self.shape(x), shape)
        n = math.prod(shape)
        return self.raster([x], shape, [Region(0, 0, (1,), 0, (1,), (n,))])

    def transpose(self, x: str, perm: Sequence[int]) -> str:
        """Permute the axes of ``x`` (``perm`` as in numpy)."""
        shape = self.shape(x)
        if sorted(perm) != list(range(len(shape))):
            raise ModelError(f"transpose: perm {tuple(perm)} invalid for shape {shape}")
        src = contiguous_strides(shape)
        out_shape = tuple(shape[p] for p in perm)
        region = Region(
            0, 0, tuple(src[p] for p in perm), 0, contiguous_strides(out_shape), out_shape
        )
        return self.raster([x], out_shape, [region])

    def slice(
        self,
        x: str,
        starts: Sequence[int],
        stops: Sequence[int],
        axes: Sequence[int],
        steps: Sequence[int] | None = None,
    ) -> str:
        """Numpy-style slice on ``axes`` (clamped like ONNX Slice)."""
        shape = list(self.shape(x))
        src = contiguous_strides(tuple(shape))
        begin = [0] * len(shape)
        step = [1] * len(shape)
        out = list(shape)
        for i, axis in enumerate(axes):
            a = _axis(axis, len(shape), "slice")
            st = 1 if steps is None else int(steps[i])
            if st == 0:
                raise ModelError("slice: step 0")
            first, count = _slice_range(shape[a], int(starts[i]), int(stops[i]), st)
            begin[a], step[a], out[a] = first, st, count
        offset = sum(b * s for b, s in zip(begin, src, strict=True))
        region = Region(
            0,
            offset,
            tuple(s * t for s, t in zip(src, step, strict=True)),
            0,
            contiguous_strides(tuple(out)),
            tuple(out),
        )
        return self.raster([x], out, [region])

    def concat(self, xs: Sequence[str], axis: int) -> str:
        """Join ``xs`` along ``axis``: one region per input."""
        shapes = [self.shape(x) for x in xs]
        a = _axis(axis, len(shapes[0]), "concat")
        for s in shapes:
            if len(s) != len(shapes[0]) or any(
                d != e for i, (d, e) in enumerate(zip(s, shapes[0], strict=True)) if i != a
            ):
                raise ModelError(f"concat: shapes {shapes} differ off axis {axis}")
        out = list(shapes[0])
        out[a] = sum(s[a] for s in shapes)
        if 0 not in out:  # an empty input adds nothing: left out (see _emit)
            kept = [(x, s) for x, s in zip(xs, shapes, strict=True) if 0 not in s]
            xs, shapes = [x for x, _ in kept], [s for _, s in kept]
        dst = contiguous_strides(tuple(out))
        regions, pos = [], 0
        for i, s in enumerate(shapes):
            regions.append(Region(i, 0, contiguous_strides(s), pos * dst[a], dst, s))
            pos += s[a]
        joined = self.raster(list(xs), out, regions)
        self._concats.add(joined)
        return joined

    def pad(self, x: str, pads: Sequence[tuple[int, int]], value: float = 0.0) -> str:
        """Constant-pad ``x`` by (before, after) per axis."""
        shape = self.shape(x)
        out = tuple(d + p0 + p1 for d, (p0, p1) in zip(shape, pads, strict=True))
        dst = contiguous_strides(out)
        offset = sum(p0 * s for (p0, _), s in zip(pads, dst, strict=True))
        region = Region(0, 0, contiguous_strides(shape), offset, dst, shape)
        return self.raster([x], out, [region], fill=float(value))

    def flatten(self, x: str, axis: int = 1) -> str:
        """Reshape to 2-D: dims before ``axis`` and dims from ``axis`` on."""
        shape = self.shape(x)
        a = axis if axis >= 0 else axis + len(shape)
        return self.reshape(x, (math.prod(shape[:a]), math.prod(shape[a:])))


# The most output positions apart that a run of a take may step (the taps of an upsampling
# by an integer scale up to 8: a run per phase, the clipped edges apart).
_TAKE_PERIODS = 8

# The most regions a take along several axes makes as one raster (the product of its axes'
# runs); beyond it, one take per axis.
_TAKE_GRID = 64
# A take of one axis whose indices fall in more runs than this is a gather of constant
# indices, not a raster (builder.take). Alone, one core (cython): 256 random rows of 1-64
# floats took the raster 12-16 us and the gather kernel 6-23; 1024 rows 43-60 against
# 11-50, and each region costs ~11 us of plan time and a call per region on some backends.
_TAKE_GATHER_FROM = 256

# A take's constant indices: a list, or an int64 array (a Gather's, as read from the model).
_Indices = Sequence[int] | npt.NDArray[np.int64]
# A region's dim: (size, source stride, destination stride), in elements.
_Dim = tuple[int, int, int]
# A take's run along one axis: (first output position, first index, its dims).
_Run = tuple[int, int, list[_Dim]]


def _take_regions(
    dims: Sequence[int],
    takes: Mapping[int, _Indices],
    found: Mapping[int, list[_Run]] | None = None,
) -> list[Region] | None:
    """The regions of one raster taking ``takes[axis]`` along each of its axes of a tensor of
    ``dims``: one per combination of the axes' runs (:func:`_axis_runs`, or ``found[axis]``
    where the caller has them), their dims merged where both sides are contiguous; None past
    _TAKE_GRID regions or rank 6."""
    out = [len(takes[a]) if a in takes else d for a, d in enumerate(dims)]
    src, dst = contiguous_strides(tuple(dims)), contiguous_strides(tuple(out))
    found = found or {}
    runs = {a: found[a] if a in found else _axis_runs(i) for a, i in takes.items()}
    if len(takes) > 1 and math.prod(len(r) for r in runs.values()) > _TAKE_GRID:
        return None
    regions = []
    for combo in itertools.product(*runs.values()):
        chosen = dict(zip(runs, combo, strict=True))
        src_offset = dst_offset = 0
        parts: list[_Dim] = []
        for a, d in enumerate(dims):
            if a not in chosen:
                parts.append((d, src[a], dst[a]))
                continue
            t0, i0, steps = chosen[a]
            src_offset += i0 * src[a]
            dst_offset += t0 * dst[a]
            parts.extend((n, s * src[a], t * dst[a]) for n, s, t in steps)
        merged = _merged(parts)
        if len(takes) > 1 and len(merged) > 6:
            return None
        regions.append(
            Region(
                0,
                src_offset,
                tuple(s for _, s, _ in merged),
                dst_offset,
                tuple(t for _, _, t in merged),
                tuple(n for n, _, _ in merged),
            )
        )
    return regions


@overload
def _axis_runs(indices: _Indices) -> list[_Run]: ...
@overload
def _axis_runs(indices: _Indices, most: int | None) -> list[_Run] | None: ...
def _axis_runs(indices: _Indices, most: int | None = None) -> list[_Run] | None:
    """A take's runs along one axis as (first output position, first index, dims in
    positions and indices): one repeat of each slab e times over where there is one
    (:func:`_repeated_run`), else :func:`_take_runs`'s; None where they are more than
    ``most`` (counted before they are listed: 2^20 random indices are ~10^6 runs)."""
    values = np.asarray(indices, dtype=np.int64)
    repeat = _repeated_run(values)
    if repeat is not None:
        i0, d, m, e = repeat
        return [(0, i0, [(m, d, e), (e, 0, 1)])]
    e, parts = _fewest_runs(values)
    if most is not None and sum(len(part[0]) for part in parts) > most:
        return None
    return [(t0, i0, [(m, d, e)]) for t0, e, i0, d, m in _listed_runs(e, parts)]


def _merged(parts: list[_Dim]) -> list[_Dim]:
    """``parts`` without size-1 dims, each dim merged into the one before it where that one
    steps over it whole on both sides."""
    merged: list[_Dim] = []
    for n, s, t in parts:
        if n == 1:
            continue
        if merged and merged[-1][1] == s * n and merged[-1][2] == t * n:
            merged[-1] = (merged[-1][0] * n, s, t)
        else:
            merged.append((n, s, t))
    return merged or [(1, 1, 1)]


def _take_runs(indices: _Indices) -> list[tuple[int, int, int, int, int]]:
    """Runs (t0, e, i0, d, m) that cover each output position of a take once: positions
    t0 + e * j read index i0 + d * j for j < m (d >= 0). Of the periods e from 1 to
    _TAKE_PERIODS, the one that needs the fewest runs."""
    return _listed_runs(*_fewest_runs(np.asarray(indices, dtype=np.int64)))


def _listed_runs(
    e: int, parts: list[tuple[npt.NDArray[np.int64], ...]]
) -> list[tuple[int, int, int, int, int]]:
    """The runs (t0, e, i0, d, m) of :func:`_fewest_runs`' period and residue classes."""
    return [
        (r + e * int(j), e, int(i0), int(d), int(m))
        for r, part in enumerate(parts)
        for j, i0, d, m in zip(*part, strict=True)
    ]


def _fewest_runs(
    values: npt.NDArray[np.int64],
) -> tuple[int, list[tuple[npt.NDArray[np.int64], ...]]]:
    """The period e (1 to _TAKE_PERIODS) whose residue classes split ``values`` into the
    fewest arithmetic runs, and each class's runs (:func:`_arithmetic_runs`)."""
    best: tuple[int, list[tuple[npt.NDArray[np.int64], ...]]] = (1, [])
    count = len(values) + 1
    for e in range(1, min(_TAKE_PERIODS, len(values)) + 1):
        parts = [_arithmetic_runs(values[r::e]) for r in range(e)]
        runs = sum(len(p[0]) for p in parts)
        if runs < count:
            count, best = runs, (e, parts)
        if count <= 1:
            break
    return best


def _repeated_run(indices: _Indices) -> tuple[int, int, int, int] | None:
    """(i0, d, m, e) where ``indices`` are i0, i0 + d, ... (m of them, d >= 0), each e > 1
    times in a row; else None."""
    values = np.asarray(indices, dtype=np.int64)
    changes = np.flatnonzero(np.diff(values) != 0)
    e = int(changes[0]) + 1 if len(changes) else len(values)
    if e < 2 or len(values) % e:
        return None
    firsts = values[::e]
    if not np.array_equal(np.repeat(firsts, e), values):
        return None
    steps = np.diff(firsts)
    if len(steps) and (steps[0] < 0 or np.any(steps != steps[0])):
        return None
    return int(firsts[0]), int(steps[0]) if len(steps) else 0, len(firsts), e


def _arithmetic_runs(seq: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], ...]:
    """``seq`` cut into runs, as arrays (j, i0, d, m): seq[j + k] = i0 + d * k for k < m,
    d >= 0. Each stretch of equal steps is a run (the element two stretches share goes to
    the first); a step down ends a run, so decreasing values are runs of one. Vectorised:
    a take may hold 2^20 indices."""
    n = len(seq)
    steps = np.diff(seq)
    # the steps where a stretch starts: the first, a change, and every step down
    first = np.ones(max(n - 1, 0), dtype=bool)
    first[1:] = (steps[1:] != steps[:-1]) | (steps[1:] < 0) | (steps[:-1] < 0)
    starts = np.flatnonzero(first)
    # stretch i runs over elements starts[i] + (i > 0) .. ends[i]
    ends = np.append(starts[1:], n - 1) if n > 1 else np.zeros(0, np.int64)
    begin = starts + (np.arange(len(starts)) > 0)
    length = ends - begin + 1
    d = np.where(length > 1, steps[starts] if len(starts) else 0, 0)
    down = (d < 0) & (length > 1)
    if n == 1 or (n > 1 and ends[-1] < n - 1):
        begin, length, d = np.append(begin, n - 1), np.append(length, 1), np.append(d, 0)
    if down.any():  # a falling stretch: one run per element
        keep = ~np.append(down, np.zeros(len(begin) - len(down), bool))
        fell = np.concatenate(
            [np.arange(b, b + m) for b, m in zip(begin[~keep], length[~keep], strict=True)]
        )
        begin = np.concatenate([begin[keep], fell])
        length = np.concatenate([length[keep], np.ones(len(fell), np.int64)])
        d = np.concatenate([d[keep], np.zeros(len(fell), np.int64)])
    keep = length > 0
    begin, length, d = begin[keep], length[keep], d[keep]
    return begin, seq[begin], d, length


def _check_index_axis(op: str, shape: Shape, axis: int) -> None:
    """An axis that indices count along: 1 to 2**24 long, so that float32 holds every index."""
    if not 0 < shape[axis] <= MAX_GATHER_ROWS:
        raise ModelError(
            f"{op}: axis {axis} has {shape[axis]} values; indices are float32, "
            f"exact for 1 to {MAX_GATHER_ROWS} values"
        )


def _axis(axis: int, rank: int, where: str) -> int:
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank:
        raise ModelError(f"{where}: axis {axis} out of range for rank {rank}")
    return a


def _slice_range(dim: int, start: int, stop: int, step: int) -> tuple[int, int]:
    """(first index, count) of an ONNX Slice on an axis of ``dim``: negative indices count
    from the end, then clamp to [0, dim] (step > 0) or start to [0, dim - 1] and stop to
    [-1, dim - 1] (step < 0; unlike a Python slice, a start before the axis is index 0)."""
    start = start + dim if start < 0 else start
    stop = stop + dim if stop < 0 else stop
    if step > 0:
        start, stop = min(max(start, 0), dim), min(max(stop, 0), dim)
        count = max(0, -(-(stop - start) // step))
    else:
        start, stop = min(max(start, 0), dim - 1), min(max(stop, -1), dim - 1)
        count = max(0, -(-(start - stop) // -step))
    return (start if count else 0), count


def _resolve_reshape(shape: Shape, target: Sequence[int]) -> tuple[int, ...]:
    total = math.prod(shape)
    dims = [shape[i] if d == 0 and i < len(shape) else int(d) for i, d in enumerate(target)]
    if dims.count(-1) > 1:
        raise ModelError(f"reshape: more than one -1 in {tuple(target)}")
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        if known == 0 or total % known:
            raise ModelError(f"reshape: cannot reshape {shape} to {tuple(target)}")
        dims[dims.index(-1)] = total // known
    if math.prod(dims) != total:
        raise ModelError(f"reshape: cannot reshape {shape} to {tuple(target)}")
    return tuple(dims)


def _check_region(r: Region, n_inputs: int, in_sizes: list[int], out_size: int) -> None:
    if not 0 <= r.input < n_inputs:
        raise ModelError(f"raster region reads input {r.input} of {n_inputs}")
    if not len(r.sizes) == len(r.src_strides) == len(r.dst_strides):
        raise ModelError(f"raster region {r}: sizes and strides differ in rank")
    if any(s <= 0 for s in r.sizes):
        return
    for offset, strides, limit, what in (
        (r.src_offset, r.src_strides, in_sizes[r.input], "source"),
        (r.dst_offset, r.dst_strides, out_size, "destination"),
    ):
        lo = offset + sum((s - 1) * st for s, st in zip(r.sizes, strides, strict=True) if st < 0)
        hi = offset + sum((s - 1) * st for s, st in zip(r.sizes, strides, strict=True) if st > 0)
        if lo < 0 or hi >= limit:
            raise ModelError(f"raster region {r} runs outside its {what} ({limit} elements)")


def _needed(nodes: list[Node], outputs: Sequence[str]) -> tuple[list[Node], set[str]]:
    """The nodes that ``outputs`` depend on (in order) and every value they read."""
    needed = set(outputs)
    kept: list[Node] = []
    for node in reversed(nodes):
        if node.output in needed:
            kept.append(node)
            needed.update(node.inputs)
    kept.reverse()
    return kept, needed

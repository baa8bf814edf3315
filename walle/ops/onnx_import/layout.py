"""Layout ONNX ops, all rasters: Reshape, Flatten, Transpose, Concat, Slice, Pad, Split,
Gather, Squeeze, Unsqueeze, Expand, Tile; and the constant producers Constant and
ConstantOfShape.

Shape-like operands (Reshape's shape, Slice's starts/ends/axes/steps, Pad's pads, Split's
split, Gather's indices, Expand's shape, Tile's repeats, ...) must be constants: walle plans
static shapes, so a value known only at run time is refused when the graph is built, naming
the node.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from walle.errors import ModelError
from walle.ops.ir import Region, check_size, contiguous_strides
from walle.ops.onnx_import.node import INT64_MAX, INT64_MIN, HandlerTable, OnnxNode

if TYPE_CHECKING:
    from walle.ops.builder import GraphBuilder
    from walle.ops.onnx_import.core import Importer

_REGION_RANK = 6
"""The most dims a raster region may keep once merged: the rank the cython and OpenCL raster
kernels take."""


def _axis(node: OnnxNode, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ModelError(f"{node.where}: axis {axis} out of range for rank {rank}")
    return axis % rank


def _reshape(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """``allowzero`` changes what a 0 in the shape means (a 0 dim, not the input's): with
    no 0 in the shape it changes nothing (ONNX's function bodies set it)."""
    shape = _required_ints(im, node, 1, "shape")
    if 0 in shape:
        node.require("allowzero", 0, 0)
    return im.b.reshape(ins[0], im.batch_dim(shape, ins[0]))


def _flatten(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    rank = len(im.b.shape(ins[0]))
    axis = int(node.get("axis", 1))
    if not -rank <= axis <= rank:
        raise ModelError(f"{node.where}: axis {axis} out of range for rank {rank}")
    return im.b.flatten(ins[0], axis + rank if axis < 0 else axis)


def _transpose(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    rank = len(im.b.shape(ins[0]))
    perm = node.get("perm", list(range(rank))[::-1])
    return im.b.transpose(ins[0], [int(p) for p in perm])


def _depth_to_space(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """[N, C, H, W] to [N, C / b^2, H * b, W * b]: a reshape, a transpose and a reshape,
    the channels read as [b, b, C / b^2] (DCR, the default) or [C / b^2, b, b] (CRD)."""
    n, c, h, w = _nchw(im, node, ins[0])
    b = _block(node, c, "channels", c % (_block_size(node) ** 2) == 0)
    mode = node.choice("mode", "DCR", ("DCR", "CRD"))
    if mode == "DCR":
        x = im.b.reshape(ins[0], [n, b, b, c // (b * b), h, w])
        x = im.b.transpose(x, [0, 3, 4, 1, 5, 2])
    else:
        x = im.b.reshape(ins[0], [n, c // (b * b), b, b, h, w])
        x = im.b.transpose(x, [0, 1, 4, 2, 5, 3])
    return im.b.reshape(x, [n, c // (b * b), h * b, w * b])


def _space_to_depth(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """[N, C, H, W] to [N, C * b^2, H / b, W / b], the inverse of DepthToSpace in the same
    ``mode``."""
    n, c, h, w = _nchw(im, node, ins[0])
    b = _block(node, h, "height and width", h % _block_size(node) == 0 == w % _block_size(node))
    mode = node.choice("mode", "DCR", ("DCR", "CRD"))
    x = im.b.reshape(ins[0], [n, c, h // b, b, w // b, b])
    x = im.b.transpose(x, [0, 3, 5, 1, 2, 4] if mode == "DCR" else [0, 1, 3, 5, 2, 4])
    return im.b.reshape(x, [n, c * b * b, h // b, w // b])


def _nchw(im: Importer, node: OnnxNode, x: str) -> tuple[int, int, int, int]:
    shape = im.b.shape(x)
    if len(shape) != 4:
        raise ModelError(f"{node.where}: expected an NCHW input, got shape {shape}")
    n, c, h, w = shape
    return n, c, h, w


def _block_size(node: OnnxNode) -> int:
    if "blocksize" not in node.attrs or int(node.get("blocksize")) < 1:
        raise ModelError(f"{node.where}: attribute 'blocksize' (>= 1) is required")
    return int(node.get("blocksize"))


def _block(node: OnnxNode, dim: int, what: str, divides: bool) -> int:
    b = _block_size(node)
    if not divides:
        raise ModelError(f"{node.where}: blocksize {b} does not divide the {what} ({dim})")
    return b


def _concat(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    if "axis" not in node.attrs:
        raise ModelError(f"{node.where}: attribute 'axis' is required")
    return im.b.concat(ins, int(node.get("axis")))


_INT_MAXES = (2**31 - 1, INT64_MAX)


def _slice(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """Starts/ends/axes/steps (attributes before opset 10, constant inputs after); negative
    indices count from the end and out-of-range ones are clamped, as numpy slices."""
    rank = len(im.b.shape(ins[0]))
    if im.opset < 10:
        starts, ends = node.get("starts"), node.get("ends")
        if starts is None or ends is None:
            raise ModelError(f"{node.where}: attributes 'starts' and 'ends' are required")
        axes, steps = node.get("axes", list(range(len(starts)))), None
    else:
        if node.attrs:
            raise ModelError(f"{node.where}: starts/ends/axes are inputs from opset 10")
        given_starts, given_ends = node.ints(im, 1), node.ints(im, 2)
        if given_starts is None or given_ends is None:
            raise ModelError(f"{node.where}: inputs 'starts' and 'ends' are required")
        starts, ends = given_starts, given_ends
        axes, steps = node.ints(im, 3), node.ints(im, 4)
        axes = list(range(len(starts))) if axes is None else axes
        if steps is not None and len(steps) == len(ends):
            # onnxruntime reads an end of INT32_MAX or INT64_MAX as "to the end the step
            # goes", so backwards to the start (ONNX's reference clamps it to the last
            # element, which keeps nothing); the oracle is onnxruntime
            pairs = zip(ends, steps, strict=True)
            ends = [INT64_MIN if st < 0 and e in _INT_MAXES else e for e, st in pairs]
    counts = {len(starts), len(ends), len(axes), len(starts) if steps is None else len(steps)}
    if len(counts) != 1:
        raise ModelError(f"{node.where}: starts, ends, axes and steps differ in length")
    norm = [_axis(node, int(a), rank) for a in axes]
    if len(set(norm)) != len(norm):
        raise ModelError(f"{node.where}: axes {list(axes)} repeat an axis")
    return im.b.slice(
        ins[0],
        [int(s) for s in starts],
        [int(e) for e in ends],
        norm,
        None if steps is None else [int(s) for s in steps],
    )


def _pad(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """Pads (an attribute before opset 11, then an input), modes constant/reflect/edge/wrap;
    negative pads crop. From opset 18, ``axes`` selects the padded axes."""
    shape = im.b.shape(ins[0])
    rank = len(shape)
    mode = node.choice("mode", "constant", ("constant", "reflect", "edge", "wrap"))
    if im.opset < 11:
        pads = [int(p) for p in node.get("pads", [])]
        value = float(node.get("value", 0.0))
        axes = list(range(rank))
    else:
        pads = node.ints(im, 1) or []
        value_name = node.input_name(2)
        const = im.const(value_name, node.where).reshape(-1) if value_name else None
        value = float(const[0]) if const is not None and const.size else 0.0
        given = node.ints(im, 3)
        axes = list(range(rank)) if given is None else [_axis(node, a, rank) for a in given]
    if len(pads) != 2 * len(axes):
        raise ModelError(f"{node.where}: {len(pads)} pads for {len(axes)} axes")
    per_axis = [(0, 0)] * rank
    for i, a in enumerate(axes):
        per_axis[a] = (pads[i], pads[i + len(axes)])
    x = ins[0]
    if any(p < 0 for pair in per_axis for p in pair):
        x = im.b.slice(
            x,
            [max(0, -p0) for p0, _ in per_axis],
            [d - max(0, -p1) for d, (_, p1) in zip(shape, per_axis, strict=True)],
            list(range(rank)),
        )
        per_axis = [(max(0, p0), max(0, p1)) for p0, p1 in per_axis]
    if mode == "constant":
        return im.b.pad(x, per_axis, value)
    return im.b.pad_edges(x, per_axis, mode)


def _split(im: Importer, node: OnnxNode, ins: list[str]) -> list[str]:
    """Sizes from ``split`` (attribute before opset 13, then input), else ``num_outputs``
    (opset 18: the last part may be smaller), else equal parts, one per output."""
    shape = im.b.shape(ins[0])
    axis = _axis(node, int(node.get("axis", 0)), len(shape))
    dim = shape[axis]
    outputs = len(node.proto.output)
    sizes = node.get("split") if im.opset < 13 else node.ints(im, 1)
    if sizes is None:
        parts = int(node.get("num_outputs", outputs))
        if parts != outputs:
            raise ModelError(f"{node.where}: num_outputs={parts} but {outputs} outputs")
        step = -(-dim // parts) if "num_outputs" in node.attrs else dim // parts
        if "num_outputs" not in node.attrs and dim % parts:
            raise ModelError(f"{node.where}: {dim} does not split into {parts} equal parts")
        sizes = [min(step, dim - i * step) for i in range(parts)]
    sizes = [int(s) for s in sizes]
    if len(sizes) != outputs or sum(sizes) != dim or min(sizes) < 0:
        raise ModelError(
            f"{node.where}: split {sizes} does not cut axis {axis} of {shape} into {outputs}"
        )
    starts = np.cumsum([0, *sizes[:-1]])
    return [
        im.b.slice(ins[0], [int(s)], [int(s) + n], [axis])
        for s, n in zip(starts, sizes, strict=True)
    ]


def _gather(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """Constant indices: a take (:meth:`GraphBuilder.take`: a raster copying runs of slabs,
    or a gather reading a constant of the indices where they fall in many runs). Indices
    known at run time only (ids given with each call, see
    :mod:`walle.ops.onnx_import.ids`, or computed: TopK's, ArgMax's): a gather, whose kernel
    checks them with each call. Negative ones count from the end."""
    shape = im.b.shape(ins[0])
    axis = _axis(node, int(node.get("axis", 0)), len(shape))
    name = node.proto.input[1]
    computed = im.b.constant_value(ins[1]) is None and name not in im.graph_inputs
    if name in im.ids or computed:
        return im.b.gather(ins[0], ins[1], axis)
    given = im.const(name, node.where)  # refused unless a constant
    exact = im.integers.get(name)  # a float32 constant is exact only below 2**24
    with np.errstate(invalid="ignore"):  # NaN: far outside, refused below
        indices = given.astype(np.int64) if exact is None else exact.reshape(given.shape)
    dim = shape[axis]
    if indices.size and (indices.min() < -dim or indices.max() >= dim):
        raise ModelError(f"{node.where}: indices outside [-{dim}, {dim - 1}] on axis {axis}")
    flat = np.where(indices < 0, indices + dim, indices).reshape(-1)
    out = (*shape[:axis], *indices.shape, *shape[axis + 1 :])
    return im.b.take(ins[0], flat, axis, out)


def _gather_elements(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """numpy's take_along_axis along ``axis`` (default 0): indices constant (checked now),
    ids given with each call or computed in the graph (TopK's, ArgMax's: checked with each
    call)."""
    name = node.proto.input[1]
    if name in im.graph_inputs and name not in im.ids:
        raise ModelError(f"{node.where}: input {name!r} holds no integer indices")
    shape = im.b.shape(ins[0])
    axis = _axis(node, int(node.get("axis", 0)), len(shape))
    return im.b.gather_elements(ins[0], ins[1], axis)


def _expand(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """The data broadcast against the constant ``shape`` by numpy's rules, both ways: the
    output's shape is ``np.broadcast_shapes(data, shape)``, so a 1 in ``shape`` keeps the
    data's dim and ``shape`` may have a lower or a higher rank than the data."""
    data = im.b.shape(ins[0])
    shape = tuple(_required_ints(im, node, 1, "shape"))
    if any(d < 0 for d in shape):
        raise ModelError(f"{node.where}: shape {shape} holds a negative dim")
    try:
        out = tuple(int(d) for d in np.broadcast_shapes(data, shape))
    except ValueError as exc:
        raise ModelError(
            f"{node.where}: shape {shape} does not broadcast with the data's shape {data}"
        ) from exc
    _refuse_empty(node, out, f"shape {shape} against the data's shape {data}")
    return _broadcast(im.b, ins[0], out)


def _tile(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """``np.tile`` by the constant ``repeats`` (one per data dim): the data [d0, d1, ...]
    viewed as [1, d0, 1, d1, ...] and broadcast to [r0, d0, r1, d1, ...] holds the copies
    in np.tile's order, and reshapes to [r0 * d0, r1 * d1, ...] for free."""
    if im.opset < 6:
        raise ModelError(
            f"{node.where}: Tile before opset 6 (inputs 'tiles' and 'axis') is not supported"
        )
    data = im.b.shape(ins[0])
    repeats = _required_ints(im, node, 1, "repeats")
    if len(repeats) != len(data):
        raise ModelError(
            f"{node.where}: {len(repeats)} repeats {repeats} for data of rank {len(data)}"
        )
    if any(r < 0 for r in repeats):
        raise ModelError(f"{node.where}: repeats {repeats} hold a negative count")
    pairs = list(zip(repeats, data, strict=True))
    out = tuple(r * d for r, d in pairs)
    _refuse_empty(node, out, f"a repeat of 0 (repeats {repeats})" if 0 in repeats else "")
    view = im.b.reshape(ins[0], [v for _, d in pairs for v in (1, d)])
    copies = _broadcast(im.b, view, tuple(v for pair in pairs for v in pair))
    return im.b.reshape(copies, out)


def _refuse_empty(node: OnnxNode, out: tuple[int, ...], cause: str) -> None:
    """Refuse an output ``shape`` with a dim of 0: walle.ops has no empty tensors (the
    cython kernels take none). ``cause`` names what gives it (else the data's own 0)."""
    if 0 in out:
        raise ModelError(
            f"{node.where}: {cause or 'data with a dim of 0'} is not supported: it gives the "
            f"empty shape {out} (walle.ops has no empty tensors)"
        )


def _required_ints(im: Importer, node: OnnxNode, i: int, what: str) -> list[int]:
    """The constant integer input ``i`` (``what`` names it), which must be given."""
    values = node.ints(im, i)
    if values is None:
        raise ModelError(f"{node.where}: input {what!r} is required")
    return values


def _broadcast(b: GraphBuilder, x: str, target: tuple[int, ...]) -> str:
    """``x`` broadcast one way to ``target`` (``x``'s dims, aligned from the last, each 1 or
    ``target``'s): rasters whose regions read each broadcast dim with stride 0. One raster
    in general; another for each further set of broadcast dims, innermost first, that would
    take a region over :data:`_REGION_RANK` merged dims (a Tile of 4-D data on every axis).
    Without a broadcast dim, a reshape (free: an alias)."""
    have = (1,) * (len(target) - len(b.shape(x))) + tuple(b.shape(x))
    pending = [i for i, (h, t) in enumerate(zip(have, target, strict=True)) if h != t]
    if not pending:  # the same elements: a new shape at most
        return b.reshape(x, target)
    while pending:
        step, taken = list(have), 0
        for i in reversed(pending):
            trial = [*step[:i], target[i], *step[i + 1 :]]
            if taken and len(_broadcast_region(have, trial).sizes) > _REGION_RANK:
                break
            step, taken = trial, taken + 1
        x = b.raster([x], step, [_broadcast_region(have, step)])
        have, pending = tuple(step), pending[: len(pending) - taken]
    return x


def _broadcast_region(have: Sequence[int], out: Sequence[int]) -> Region:
    """The region copying a C-ordered [have] into [out] (each dim equal, or 1 in ``have``:
    read with stride 0), its size-1 dims dropped and the dims that are contiguous in the
    source merged (the destination is written in order, so contiguous throughout): its rank
    is the number of runs of broadcast and of kept dims."""
    strides = contiguous_strides(tuple(have))
    dims: list[tuple[int, int]] = []  # (size, source stride), outermost first
    for n, h, s in zip(out, have, strides, strict=True):
        stride = 0 if h != n else s
        if n == 1:
            continue
        if dims and dims[-1][1] == stride * n:
            dims[-1] = (dims[-1][0] * n, stride)
        else:
            dims.append((n, stride))
    sizes = tuple(n for n, _ in dims) or (1,)
    src = tuple(s for _, s in dims) or (1,)
    return Region(0, 0, src, 0, contiguous_strides(sizes), sizes)


def _axes(im: Importer, node: OnnxNode) -> list[int] | None:
    """``axes``: an attribute before opset 13, an optional constant input after."""
    if im.opset >= 13:
        return node.ints(im, 1)
    given = node.get("axes")
    return None if given is None else [int(a) for a in given]


def _unsqueeze(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    axes = _axes(im, node)
    if not axes:
        raise ModelError(f"{node.where}: axes are required")
    shape = list(im.b.shape(ins[0]))
    rank = len(shape) + len(axes)
    norm = sorted(a + rank if a < 0 else a for a in axes)
    if len(set(norm)) != len(norm) or any(not 0 <= a < rank for a in norm):
        raise ModelError(f"{node.where}: axes {axes} invalid for output rank {rank}")
    for a in norm:
        shape.insert(a, 1)
    return im.b.reshape(ins[0], shape)


def _squeeze(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    shape = im.b.shape(ins[0])
    axes = _axes(im, node)
    if axes is None:
        drop = {i for i, d in enumerate(shape) if d == 1}
    else:
        drop = {_axis(node, a, len(shape)) for a in axes}
        if any(shape[a] != 1 for a in drop):
            raise ModelError(f"{node.where}: axes {axes} of {shape} are not all of size 1")
    return im.b.reshape(ins[0], [d for i, d in enumerate(shape) if i not in drop])


def _constant(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    from onnx import numpy_helper

    if "value" in node.attrs:
        value = numpy_helper.to_array(node.attrs["value"])
        im.remember_integers(node.proto.output[0], value)
        return im.b.const(value)
    for key in ("value_float", "value_floats", "value_int", "value_ints"):
        if key in node.attrs:
            if key.startswith("value_int"):
                im.remember_integers(node.proto.output[0], np.asarray(node.attrs[key], np.int64))
            return im.b.const(np.asarray(node.attrs[key], np.float32))
    raise ModelError(f"{node.where}: only value, value_float(s) and value_int(s) are supported")


def _constant_of_shape(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    from onnx import numpy_helper

    shape = _required_ints(im, node, 0, "input")
    check_size(shape, "the ConstantOfShape output")
    value = node.attrs.get("value")
    fill = 0.0 if value is None else float(numpy_helper.to_array(value).reshape(-1)[0])
    return im.b.const(np.full(shape, fill, np.float32))


def _shape_of(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """The input's shape (its dims from ``start`` to ``end``, clamped as the spec says) as
    a constant: walle plans static shapes, and imports a model anew for each batch size, so
    a shape read here is the one the plan runs with. Exporters compute a flatten's or a
    reshape's target from it (``x.view(x.size(0), -1)``); the Gather, Concat and Reshape
    that follow it then fold at import."""
    shape = im.b.shape(ins[0])
    rank = len(shape)

    def clamp(bound: int) -> int:
        return min(max(bound + rank if bound < 0 else bound, 0), rank)

    start, end = clamp(int(node.get("start", 0))), clamp(int(node.get("end", rank)))
    return im.b.const(np.asarray(shape[start:end], np.float32).reshape(-1))


def _size(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """The input's element count, a scalar constant (see :func:`_shape_of`)."""
    return im.b.const(np.float32(math.prod(im.b.shape(ins[0]))))


def _range(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """Range of constant start, limit and delta (a Shape's dims among them): a constant of
    max(ceil((limit - start) / delta), 0) values, start + i * delta, as the spec computes
    them."""
    start, limit, delta = (
        float(im.const(name, node.where).reshape(-1)[0]) for name in node.proto.input[:3]
    )
    if delta == 0:
        raise ModelError(f"{node.where}: delta is 0")
    count = max(math.ceil((limit - start) / delta), 0)
    check_size((count,), "the Range output")
    return im.b.const(start + np.arange(count, dtype=np.float64) * delta)


HANDLERS: HandlerTable = {
    "Reshape": ({"allowzero"}, _reshape),
    "Flatten": ({"axis"}, _flatten),
    "Transpose": ({"perm"}, _transpose),
    "Concat": ({"axis"}, _concat),
    "Slice": ({"starts", "ends", "axes"}, _slice),
    "Pad": ({"mode", "pads", "value"}, _pad),
    "Split": ({"axis", "split", "num_outputs"}, _split),
    "GatherElements": ({"axis"}, _gather_elements),
    "Gather": ({"axis"}, _gather),
    "Expand": (set(), _expand),
    "Tile": (set(), _tile),
    "Unsqueeze": ({"axes"}, _unsqueeze),
    "Squeeze": ({"axes"}, _squeeze),
    "Constant": ({"value", "value_float", "value_floats", "value_int", "value_ints"}, _constant),
    "ConstantOfShape": ({"value"}, _constant_of_shape),
    "Shape": ({"start", "end"}, _shape_of),
    "Size": (set(), _size),
    "Range": (set(), _range),
    "DepthToSpace": ({"blocksize", "mode"}, _depth_to_space),
    "SpaceToDepth": ({"blocksize", "mode"}, _space_to_depth),
}

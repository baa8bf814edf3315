"""Layout ONNX ops, all rasters: Reshape, Flatten, Transpose, Concat, Slice, Pad, Split,
Gather, Squeeze, Unsqueeze; and the constant producers Constant and ConstantOfShape.

Shape-like operands (Reshape's shape, Slice's starts/ends/axes/steps, Pad's pads, Split's
split, Gather's indices, ...) must be constants: walle plans static shapes, so a value known
only at run time is refused when the graph is built, naming the node.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from walle.errors import ModelError
from walle.ops.ir import Region
from walle.ops.onnx_import.node import HandlerTable, OnnxNode

if TYPE_CHECKING:
    from walle.ops.onnx_import.core import Importer


def _axis(node: OnnxNode, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ModelError(f"{node.where}: axis {axis} out of range for rank {rank}")
    return axis % rank


def _reshape(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    node.require("allowzero", 0, 0)
    shape = [int(d) for d in im.const(node.proto.input[1], node.where).reshape(-1)]
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


def _concat(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    if "axis" not in node.attrs:
        raise ModelError(f"{node.where}: attribute 'axis' is required")
    return im.b.concat(ins, int(node.get("axis")))


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
    """A raster with one region per index: data[..., i, ...] blocks into the output.
    Indices must be constant; negative ones count from the end."""
    shape = im.b.shape(ins[0])
    axis = _axis(node, int(node.get("axis", 0)), len(shape))
    indices = im.const(node.proto.input[1], node.where).astype(np.int64)
    dim = shape[axis]
    if indices.size and (indices.min() < -dim or indices.max() >= dim):
        raise ModelError(f"{node.where}: indices outside [-{dim}, {dim - 1}] on axis {axis}")
    flat = np.where(indices < 0, indices + dim, indices).reshape(-1)
    outer, inner = math.prod(shape[:axis]), math.prod(shape[axis + 1 :])
    out = (*shape[:axis], *indices.shape, *shape[axis + 1 :])
    src = (dim * inner, 1)
    dst = (flat.size * inner, 1)
    regions = [
        Region(0, int(i) * inner, src, t * inner, dst, (outer, inner)) for t, i in enumerate(flat)
    ]
    return im.b.raster([ins[0]], out, regions)


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
        return im.b.const(numpy_helper.to_array(node.attrs["value"]))
    for key in ("value_float", "value_floats", "value_int", "value_ints"):
        if key in node.attrs:
            return im.b.const(np.asarray(node.attrs[key], np.float32))
    raise ModelError(f"{node.where}: only value, value_float(s) and value_int(s) are supported")


def _constant_of_shape(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    from onnx import numpy_helper

    shape = [int(d) for d in im.const(node.proto.input[0], node.where).reshape(-1)]
    value = node.attrs.get("value")
    fill = 0.0 if value is None else float(numpy_helper.to_array(value).reshape(-1)[0])
    return im.b.const(np.full(shape, fill, np.float32))


HANDLERS: HandlerTable = {
    "Reshape": ({"allowzero"}, _reshape),
    "Flatten": ({"axis"}, _flatten),
    "Transpose": ({"perm"}, _transpose),
    "Concat": ({"axis"}, _concat),
    "Slice": ({"starts", "ends", "axes"}, _slice),
    "Pad": ({"mode", "pads", "value"}, _pad),
    "Split": ({"axis", "split", "num_outputs"}, _split),
    "Gather": ({"axis"}, _gather),
    "Unsqueeze": ({"axes"}, _unsqueeze),
    "Squeeze": ({"axes"}, _squeeze),
    "Constant": ({"value", "value_float", "value_floats", "value_int", "value_ints"}, _constant),
    "ConstantOfShape": ({"value"}, _constant_of_shape),
}

"""Reductions: ReduceMean, ReduceSum, ReduceMax, ReduceMin, ArgMax, ArgMin.

``axes`` is an attribute up to the opset that made it an input (13 for ReduceSum, 18 for the
others); with no axes every axis is reduced, unless ``noop_with_empty_axes`` makes the op a
copy. ``keepdims`` defaults to 1. ArgMax and ArgMin reduce one ``axis`` (default 0) to the
index of its first extreme value (the last with ``select_last_index``); the indices are
float32 in walle (exact: the axis is at most 2**24 long), int64 where a Model returns
them as a graph output the file declares so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from walle.errors import ModelError
from walle.ops.onnx_import.node import Handler, HandlerTable, OnnxNode

if TYPE_CHECKING:
    from walle.ops.onnx_import.core import Importer


def _reduce(kind: str, axes_input_from: int) -> Handler:
    def lower(im: Importer, node: OnnxNode, ins: list[str]) -> str:
        rank = len(im.b.shape(ins[0]))
        if im.opset >= axes_input_from:
            if "axes" in node.attrs:
                raise ModelError(f"{node.where}: axes is an input from opset {axes_input_from}")
            axes = node.ints(im, 1) or []
        else:
            if node.input_name(1):
                raise ModelError(
                    f"{node.where}: axes is an attribute before opset {axes_input_from}"
                )
            axes = [int(a) for a in node.get("axes", [])]
        if not axes:
            if node.get("noop_with_empty_axes", 0):
                return im.b.unary("identity", ins[0])
            axes = list(range(rank))
        if any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) != len(axes):
            raise ModelError(f"{node.where}: axes {axes} invalid for rank {rank}")
        return im.b.reduce(kind, ins[0], axes, keepdims=bool(node.get("keepdims", 1)))

    return lower


def _arg(kind: str) -> Handler:
    def lower(im: Importer, node: OnnxNode, ins: list[str]) -> str:
        rank = len(im.b.shape(ins[0]))
        axis = int(node.get("axis", 0))
        if not -rank <= axis < rank:
            raise ModelError(f"{node.where}: axis {axis} invalid for rank {rank}")
        last = "_last" if node.get("select_last_index", 0) else ""
        return im.b.reduce(kind + last, ins[0], [axis], keepdims=bool(node.get("keepdims", 1)))

    return lower


_ATTRS = {"axes", "keepdims", "noop_with_empty_axes"}
_ARG_ATTRS = {"axis", "keepdims", "select_last_index"}
HANDLERS: HandlerTable = {
    "ReduceMean": (_ATTRS, _reduce("mean", 18)),
    "ReduceSum": (_ATTRS, _reduce("sum", 13)),
    "ReduceMax": (_ATTRS, _reduce("max", 18)),
    "ReduceMin": (_ATTRS, _reduce("min", 18)),
    "ArgMax": (_ARG_ATTRS, _arg("argmax")),
    "ArgMin": (_ARG_ATTRS, _arg("argmin")),
}

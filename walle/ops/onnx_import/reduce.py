"""Reductions: ReduceMean, ReduceSum, ReduceMax, ReduceMin, ReduceL1, ReduceL2,
ReduceSumSquare, ReduceLogSum, ReduceLogSumExp, ArgMax, ArgMin; and TopK and CumSum.

``axes`` is an attribute up to the opset that made it an input (13 for ReduceSum, 18 for the
others); with no axes every axis is reduced, unless ``noop_with_empty_axes`` makes the op a
copy. ``keepdims`` defaults to 1. ArgMax and ArgMin reduce one ``axis`` (default 0) to the
index of its first extreme value (the last with ``select_last_index``); the indices are
float32 in walle (exact: the axis is at most 2**24 long), int64 where a Model returns
them as a graph output the file declares so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from walle.errors import ModelError
from walle.ops.onnx_import.node import Handler, HandlerTable, OnnxNode

if TYPE_CHECKING:
    from walle.ops.onnx_import.core import Importer


def _axes(im: Importer, node: OnnxNode, x: str, axes_input_from: int) -> list[int] | None:
    """The axes a reduction reduces (every axis where none are given), or None where
    ``noop_with_empty_axes`` makes it reduce none."""
    rank = len(im.b.shape(x))
    if im.opset >= axes_input_from:
        if "axes" in node.attrs:
            raise ModelError(f"{node.where}: axes is an input from opset {axes_input_from}")
        axes = node.ints(im, 1) or []
    else:
        if node.input_name(1):
            raise ModelError(f"{node.where}: axes is an attribute before opset {axes_input_from}")
        axes = [int(a) for a in node.get("axes", [])]
    if not axes:
        if node.get("noop_with_empty_axes", 0):
            return None
        axes = list(range(rank))
    if any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) != len(axes):
        raise ModelError(f"{node.where}: axes {axes} invalid for rank {rank}")
    return axes


def _reduce(kind: str, axes_input_from: int) -> Handler:
    def lower(im: Importer, node: OnnxNode, ins: list[str]) -> str:
        axes = _axes(im, node, ins[0], axes_input_from)
        if axes is None:
            return im.b.unary("identity", ins[0])
        return im.b.reduce(kind, ins[0], axes, keepdims=bool(node.get("keepdims", 1)))

    return lower


def _terms(kind: str, im: Importer, x: str) -> str:
    """The values a composite reduction sums: |x|, x * x or x itself."""
    if kind == "l1":
        return im.b.unary("abs", x)
    if kind in ("l2", "sum_square"):
        return im.b.binary("mul", x, x)
    return x


def _composite(kind: str) -> Handler:
    """ReduceL1 (sum |x|), ReduceL2 (sqrt of sum x * x), ReduceSumSquare, ReduceLogSum (log
    of the sum) from a sum; with ``noop_with_empty_axes`` and no axes, each op's transform
    of each value alone (|x|, sqrt(x * x), x * x, log x), as onnxruntime and the spec."""

    def lower(im: Importer, node: OnnxNode, ins: list[str]) -> str:
        axes = _axes(im, node, ins[0], 18)
        terms = _terms(kind, im, ins[0])
        if axes is not None:
            terms = im.b.reduce("sum", terms, axes, keepdims=bool(node.get("keepdims", 1)))
        if kind == "l2":
            return im.b.unary("sqrt", terms)
        if kind == "log_sum":
            return im.b.unary("log", terms)
        return terms

    return lower


def _log_sum_exp(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """log(sum(exp(x))) as m + log(sum(exp(x - m))), m the slice's max clamped to the finite
    floats: no overflow for large x ([1000, 1000] gives 1000.69, as onnxruntime), -inf where
    every value is -inf, +inf where one is, NaN where one is NaN."""
    x = ins[0]
    axes = _axes(im, node, x, 18)
    if axes is None:
        return im.b.unary("identity", x)
    big = float(np.finfo(np.float32).max)
    top = im.b.reduce("max", x, axes, keepdims=True)
    top = im.b.binary("max", im.b.binary("min", top, im.b.const(big)), im.b.const(-big))
    total = im.b.reduce("sum", im.b.unary("exp", im.b.binary("sub", x, top)), axes, keepdims=True)
    y = im.b.binary("add", im.b.unary("log", total), top)
    if node.get("keepdims", 1):
        return y
    shape = im.b.shape(y)
    rank = len(shape)
    dropped = {a % rank for a in axes}
    return im.b.reshape(y, [d for i, d in enumerate(shape) if i not in dropped])


def _arg(kind: str) -> Handler:
    def lower(im: Importer, node: OnnxNode, ins: list[str]) -> str:
        rank = len(im.b.shape(ins[0]))
        axis = int(node.get("axis", 0))
        if not -rank <= axis < rank:
            raise ModelError(f"{node.where}: axis {axis} invalid for rank {rank}")
        last = "_last" if node.get("select_last_index", 0) else ""
        return im.b.reduce(kind + last, ins[0], [axis], keepdims=bool(node.get("keepdims", 1)))

    return lower


def _topk(im: Importer, node: OnnxNode, ins: list[str]) -> list[str]:
    """TopK: ``k`` as an attribute before opset 10, a constant input after; ``axis``
    (default -1), ``largest`` (default 1); with ``sorted`` 0 the order is the spec's to
    choose, and walle's is the sorted one."""
    if im.opset < 10:
        k = node.get("k")
        if k is not None and k < 1:
            raise ModelError(f"{node.where}: attribute k {k} must be at least 1")
    else:
        ks = node.ints(im, 1)
        if ks is None or len(ks) != 1:
            raise ModelError(f"{node.where}: K must be a constant of one value")
        k = ks[0]
    if k is None:
        raise ModelError(f"{node.where}: TopK needs its 'k' attribute")
    axis = int(node.get("axis", -1))
    rank = len(im.b.shape(ins[0]))
    if not -rank <= axis < rank:
        raise ModelError(f"{node.where}: axis {axis} invalid for rank {rank}")
    values, indices = im.b.topk(ins[0], int(k), axis, largest=bool(node.get("largest", 1)))
    return [values, indices]


def _cumsum(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """CumSum along the constant ``axis`` input, ``exclusive`` and ``reverse`` (default 0)."""
    axes = node.ints(im, 1)
    if axes is None or len(axes) != 1:
        raise ModelError(f"{node.where}: axis must be one constant, got {axes}")
    rank = len(im.b.shape(ins[0]))
    if not -rank <= axes[0] < rank:
        raise ModelError(f"{node.where}: axis {axes[0]} invalid for rank {rank}")
    exclusive, reverse = bool(node.get("exclusive", 0)), bool(node.get("reverse", 0))
    return im.b.cumsum(ins[0], axes[0], exclusive=exclusive, reverse=reverse)


_ATTRS = {"axes", "keepdims", "noop_with_empty_axes"}
_ARG_ATTRS = {"axis", "keepdims", "select_last_index"}
HANDLERS: HandlerTable = {
    "ReduceMean": (_ATTRS, _reduce("mean", 18)),
    "ReduceSum": (_ATTRS, _reduce("sum", 13)),
    "ReduceMax": (_ATTRS, _reduce("max", 18)),
    "ReduceMin": (_ATTRS, _reduce("min", 18)),
    "ReduceL1": (_ATTRS, _composite("l1")),
    "ReduceL2": (_ATTRS, _composite("l2")),
    "ReduceSumSquare": (_ATTRS, _composite("sum_square")),
    "ReduceLogSum": (_ATTRS, _composite("log_sum")),
    "ReduceLogSumExp": (_ATTRS, _log_sum_exp),
    "TopK": ({"k", "axis", "largest", "sorted"}, _topk),
    "CumSum": ({"exclusive", "reverse"}, _cumsum),
    "ArgMax": (_ARG_ATTRS, _arg("argmax")),
    "ArgMin": (_ARG_ATTRS, _arg("argmin")),
}

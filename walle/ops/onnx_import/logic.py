"""Comparisons and boolean logic: Equal, Greater, GreaterOrEqual, Less, LessOrEqual, IsNaN,
IsInf, Not, And, Or, Xor, Where; and the masks made of them: Trilu, OneHot.

walle computes in float32, so ONNX's booleans are numbers here: 1.0 for true, 0.0 for false
(a comparison with NaN is false, as in onnxruntime). Not, And, Or and Xor then are
arithmetic on those (1 - a, a * b, max(a, b), |a - b|), and Where(c, x, y) is
mask(c, x) + mask(1 - c, y), each mask taking its values only where its condition holds, so
that a NaN or an infinity of the side not taken never reaches the sum (a -inf fill for an
attention mask, say). One difference in bits: where y is -0 and not c, the sum is +0. An
output the file declares as a boolean comes back as one from ``Model.run``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from walle.errors import ModelError
from walle.ops.onnx_import import legacy
from walle.ops.onnx_import.node import Handler, HandlerTable, OnnxNode

if TYPE_CHECKING:
    from walle.ops.onnx_import.core import Importer

_LEGACY_BROADCAST = {"broadcast", "axis"}  # comparisons and logic ops up to opset 6


def _compare(kind: str) -> Handler:
    def lower(im: Importer, node: OnnxNode, ins: list[str]) -> str:
        return im.b.binary(kind, ins[0], legacy.right_operand(im, node, ins[0], ins[1]))

    return lower


def _not(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    return im.b.binary("sub", im.b.const(1.0), ins[0])


def _logic(kind: str) -> Handler:
    """And (a * b), Or (max(a, b)) and Xor (|a - b|) of booleans as 0.0 and 1.0."""

    def lower(im: Importer, node: OnnxNode, ins: list[str]) -> str:
        b = legacy.right_operand(im, node, ins[0], ins[1])
        if kind == "xor":
            return im.b.unary("abs", im.b.binary("sub", ins[0], b))
        return im.b.binary("mul" if kind == "and" else "max", ins[0], b)

    return lower


def _is_nan(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    return im.b.binary("sub", im.b.const(1.0), im.b.binary("eq", ins[0], ins[0]))


def _is_inf(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """+inf (``detect_positive``, default 1) or -inf (``detect_negative``, default 1)."""
    x = ins[0]
    hits = [
        im.b.binary("eq", x, im.b.const(value))
        for attr, value in (("detect_positive", np.inf), ("detect_negative", -np.inf))
        if node.get(attr, 1)
    ]
    if not hits:  # neither: false everywhere, in x's shape
        return im.b.binary("mul", im.b.binary("eq", x, x), im.b.const(0.0))
    return hits[0] if len(hits) == 1 else im.b.binary("max", *hits)


def _trilu(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """The upper (``upper`` 1, the default) or lower triangle of the last two dims from
    diagonal ``k`` (a constant input, default 0) on; the rest 0, whatever it held (a mask,
    not a product: NaN off the triangle does not reach the output)."""
    shape = im.b.shape(ins[0])
    if len(shape) < 2:
        raise ModelError(f"{node.where}: the input has rank {len(shape)}; Trilu needs 2 or more")
    ks = node.ints(im, 1)
    if ks is not None and len(ks) != 1:
        raise ModelError(f"{node.where}: k must be one value, got {ks}")
    k = ks[0] if ks else 0
    rows, cols = np.indices(shape[-2:])
    keep = cols - rows >= k if node.get("upper", 1) else cols - rows <= k
    return im.b.binary("mask", im.b.const(keep.astype(np.float32)), ins[0])


def _one_hot(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """OneHot (:meth:`CompositeOps.one_hot`) of ids or computed indices, ``depth`` a
    constant, ``values`` a constant [off, on], ``axis`` (default -1) of the output."""
    name = node.proto.input[0]
    if name in im.graph_inputs and name not in im.ids:
        raise ModelError(f"{node.where}: input {name!r} holds no integer indices")
    depth = node.ints(im, 1)
    if depth is None or len(depth) != 1 or depth[0] < 1:
        raise ModelError(f"{node.where}: depth must be one constant of at least 1, got {depth}")
    values = im.const(node.proto.input[2], node.where).reshape(-1)
    if values.size != 2:
        raise ModelError(f"{node.where}: values must be [off, on], got {values.size} values")
    rank = len(im.b.shape(ins[0])) + 1
    axis = int(node.get("axis", -1))
    if not -rank <= axis < rank:
        raise ModelError(f"{node.where}: axis {axis} invalid for an output of rank {rank}")
    return im.b.one_hot(ins[0], depth[0], axis, float(values[0]), float(values[1]))


def _where(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    condition, x, y = ins
    taken = im.b.binary("mask", condition, x)
    other = im.b.binary("mask", im.b.binary("sub", im.b.const(1.0), condition), y)
    return im.b.binary("add", taken, other)


HANDLERS: HandlerTable = {
    "Equal": (_LEGACY_BROADCAST, _compare("eq")),
    "Greater": (_LEGACY_BROADCAST, _compare("gt")),
    "GreaterOrEqual": (set(), _compare("ge")),
    "Less": (_LEGACY_BROADCAST, _compare("lt")),
    "LessOrEqual": (set(), _compare("le")),
    "Not": (set(), _not),
    "And": (_LEGACY_BROADCAST, _logic("and")),
    "Or": (_LEGACY_BROADCAST, _logic("or")),
    "Xor": (_LEGACY_BROADCAST, _logic("xor")),
    "Where": (set(), _where),
    "Trilu": ({"upper"}, _trilu),
    "OneHot": ({"axis"}, _one_hot),
    "IsNaN": (set(), _is_nan),
    "IsInf": ({"detect_positive", "detect_negative"}, _is_inf),
}

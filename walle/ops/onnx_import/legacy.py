"""Attributes that ops carried before opset 7 and lost after it: ``broadcast`` and ``axis``
on Add/Sub/Mul/Div, ``broadcast`` on Gemm, ``is_test`` on BatchNormalization.

PyTorch exported models at opset 6 with them (the onnx wheel's PyTorch tests still are), and
their meaning differs from today's: a binary op broadcasts its right operand only where
``broadcast=1`` says so, matched to the left one's dims from ``axis`` rather than numpy's
suffix rule; without it the shapes must be equal. Each is read as that opset meant it, and
refused by name in a model of opset 7 or later, where it is not part of the op.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from walle.errors import ModelError
from walle.ops.onnx_import.node import OnnxNode

if TYPE_CHECKING:
    from walle.ops.onnx_import.core import Importer

LAST_OPSET = 6
"""The last opset whose ops take these attributes."""


def refuse_after(im: Importer, node: OnnxNode, names: tuple[str, ...]) -> None:
    """Refuse any of the attributes ``names`` in a model of opset 7 or later."""
    present = sorted(n for n in names if n in node.attrs)
    if present and im.opset > LAST_OPSET:
        raise ModelError(
            f"{node.where}: attribute(s) {present} exist only up to opset {LAST_OPSET} "
            f"(this model is opset {im.opset})"
        )


def right_operand(im: Importer, node: OnnxNode, a: str, b: str) -> str:
    """The right operand of Add/Sub/Mul/Div as numpy broadcasting should see it.

    From opset 7: ``b`` itself. Before: with ``broadcast=1``, ``b`` holds a single value,
    or its dims (each equal to ``a``'s or 1) match ``a``'s from ``axis`` on (default: its
    last dims), and it is reshaped so that numpy aligns them there; without it, ``b``'s
    shape must be ``a``'s. The result always has ``a``'s shape."""
    refuse_after(im, node, ("axis", "broadcast"))
    if im.opset > LAST_OPSET:
        return b
    sa, sb = im.b.shape(a), im.b.shape(b)
    if not node.get("broadcast", 0):
        if "axis" in node.attrs:
            raise ModelError(f"{node.where}: attribute 'axis' needs broadcast=1")
        if sa != sb:
            raise ModelError(
                f"{node.where}: shapes {sa} and {sb} differ and broadcast is not set "
                f"(opset {im.opset})"
            )
        return b
    if math.prod(sb) == 1 and len(sb) <= len(sa):
        return b
    axis = int(node.get("axis", len(sa) - len(sb)))
    axis = axis + len(sa) if axis < 0 else axis
    aligned = 0 <= axis <= len(sa) - len(sb)
    if not aligned or any(d not in (1, sa[axis + i]) for i, d in enumerate(sb)):
        raise ModelError(
            f"{node.where}: shape {sb} does not broadcast to {sa} from axis "
            f"{node.get('axis', 'by suffix')}"
        )
    return im.b.reshape(b, (*sb, *(1,) * (len(sa) - axis - len(sb))))


def gemm_bias(im: Importer, node: OnnxNode, c: str, rows: int, cols: int) -> None:
    """Check Gemm's C against the product's [rows, cols]: before opset 7, C must be exactly
    that shape unless ``broadcast=1``; in every opset it must broadcast to it one way."""
    refuse_after(im, node, ("broadcast",))
    shape = im.b.shape(c)
    if im.opset <= LAST_OPSET and not node.get("broadcast", 0) and shape != (rows, cols):
        raise ModelError(
            f"{node.where}: C of shape {shape} is not [{rows}, {cols}] and broadcast is not "
            f"set (opset {im.opset})"
        )
    if len(shape) > 2 or any(
        d not in (1, want) for d, want in zip(shape[::-1], (cols, rows), strict=False)
    ):
        raise ModelError(f"{node.where}: C of shape {shape} does not broadcast to [{rows}, {cols}]")


def batchnorm_training(im: Importer, node: OnnxNode) -> bool:
    """Whether a BatchNormalization asks for training-mode statistics: ``training_mode=1``
    (opset 14 on), or, up to opset 6, ``is_test`` unset or 0 (its default)."""
    refuse_after(im, node, ("is_test",))
    if im.opset <= LAST_OPSET and not node.get("is_test", 0):
        return True
    return bool(node.get("training_mode", 0))

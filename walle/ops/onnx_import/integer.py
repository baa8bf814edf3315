"""Quantized products summed in integers: the matmuls and convs of an 8-bit quantized value
by constant integer weights, as products marked ``integer`` (a backend may sum them in
int32: the cython backend's int8 kernels).

(a - za) @ (b - zb) is a @ (b - zb) less za * colsum(b - zb), and conv(x - zx, w - zw) is
conv(x, w - zw) with x's pads filled with zx, less zx * rowsum(w - zw) per output channel:
exact in integers, so the sums are those of the product as written. An int8 value is
shifted to uint8 by 128 first, its zero point with it (the kernels take unsigned values).

Three sources of such products: MatMulInteger and ConvInteger (onnxruntime's
``quantize_dynamic``), QLinearMatMul and QLinearConv (the operator format), and MatMul and
Conv of DequantizeLinear outputs (the QDQ format, ``quantize_static``'s default), which the
importer records here (:class:`Dequantized`) as their integers, zero points and scales. A
QDQ product is then its integer sums times x's scale times w's (per output channel), plus
the bias: the integer product onnxruntime's optimiser makes of it, not the float product of
dequantized values as written (the two differ by float rounding, within one quantum of a
requantized output).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from walle.ops.ir import FloatArray

if TYPE_CHECKING:
    from walle.ops.onnx_import.core import Importer
    from walle.ops.onnx_import.node import OnnxNode

# the quantized types a product may sum in integers
BYTE_TYPES = ("UINT8", "INT8")
# an int8 value plus this is a uint8
_SHIFT = 128.0


@dataclass(frozen=True)
class Dequantized:
    """A DequantizeLinear output as (values - zero_point) * scale: ``values`` the walle
    value of its 8-bit integers (a quantizer's saturated output, or a constant), ``kind``
    their type; ``zero_point`` and ``scale`` constants, one value or one per slice of
    ``axis``."""

    values: str
    kind: str
    zero_point: FloatArray
    scale: FloatArray
    axis: int


def record(im: Importer, node: OnnxNode, ins: list[str], kind: str) -> None:
    """Note a DequantizeLinear's output as :class:`Dequantized` when its integers are a
    quantizer's output or a constant of ``kind`` (8-bit) and its scale and zero point are
    constants."""
    source = node.proto.input[0]
    scale = im.b.constant_value(ins[1])
    zero = im.b.constant_value(ins[2]) if len(ins) > 2 and ins[2] else np.zeros((), np.float32)
    constant = im.b.constant_value(ins[0]) is not None
    if kind not in BYTE_TYPES or scale is None or zero is None:
        return
    if not constant and (im.quantized.get(source) != kind or scale.size != 1 or zero.size != 1):
        return
    im.dequantized[node.proto.output[0]] = Dequantized(
        ins[0], kind, zero.astype(np.float32), scale.astype(np.float32), int(node.get("axis", 1))
    )


def _shifted(im: Importer, x: str, kind: str) -> tuple[str, float]:
    """x as a uint8 (an int8 plus 128) and the shift added."""
    if kind == "INT8":
        return im.b.binary("add", x, im.b.const(_SHIFT)), _SHIFT
    return x, 0.0


def matmul(im: Importer, a: str, kind: str, za: str | None, offset: FloatArray) -> str:
    """(a - za) @ offset as an ``integer`` product: a an 8-bit quantized value of ``kind``
    (2-D or more), ``za`` its zero point (a walle value broadcasting over a's rows, or None
    for 0), ``offset`` 2-D constant weights less their zero point (whole, in [-255, 255])."""
    b = im.b
    a, shift = _shifted(im, a, kind)
    if shift:
        za = b.const(shift) if za is None else b.binary("add", za, b.const(shift))
    product = b.matmul(a, b.const(offset), integer=True)
    if za is None:
        return product
    colsum = b.const(offset.sum(axis=0, dtype=np.float64).astype(np.float32))
    return b.binary("sub", product, b.binary("mul", za, colsum))


@dataclass(frozen=True)
class ConvOperands:
    """What a conv of a quantized x runs as an ``integer`` conv: ``x`` (uint8), ``weight``
    (w - zw), ``bias`` and the pads' ``fill`` (zx; a run-time value's name, or a number),
    and what to take off its output after (``taken``: zx * rowsum for a run-time zx)."""

    x: str
    weight: str
    bias: str | None
    fill: float | str
    taken: str | None


def conv_operands(
    im: Importer, x: str, kind: str, zx: FloatArray | str, offset: FloatArray, bias: str | None
) -> ConvOperands | None:
    """conv(x - zx, offset) + bias as an integer conv: zx a constant (taken off through the
    bias, which must then be a constant or None: else None) or a scalar walle value computed
    at run time (taken off the output); ``offset`` [Cout, C, KH, KW] weights less their zero
    point."""
    b = im.b
    channels = offset.shape[0]
    rowsum = offset.reshape(channels, -1).sum(axis=1, dtype=np.float64)
    base = np.zeros((), np.float32) if bias is None else b.constant_value(bias)
    if not isinstance(zx, str) and base is None:
        return None
    x, shift = _shifted(im, x, kind)
    weight = b.const(offset)
    if isinstance(zx, str):
        point = b.reshape(zx, ())
        point = b.binary("add", point, b.const(shift)) if shift else point
        per_channel = b.const(rowsum.reshape(-1, 1, 1).astype(np.float32))
        return ConvOperands(x, weight, bias, point, b.binary("mul", point, per_channel))
    assert base is not None
    fill = float(zx.reshape(())) + shift
    folded = np.broadcast_to(base.astype(np.float64) - fill * rowsum, (channels,))
    return ConvOperands(x, weight, b.const(folded.astype(np.float32)), fill, None)

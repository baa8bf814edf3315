"""Quantized ONNX ops: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear,
MatMulInteger, ConvInteger, QLinearMatMul, QLinearConv.

These are what onnxruntime's quantization tools write: ``quantize_dynamic`` (a
DynamicQuantizeLinear before each MatMulInteger or ConvInteger, its int32 sums cast to float
and scaled), ``quantize_static`` in the QDQ format (QuantizeLinear/DequantizeLinear pairs
around float ops, weights stored as int8 and dequantized) and in the operator format
(QLinearConv, QLinearMatMul).

walle computes in float32, which holds every 8- and 16-bit integer exactly, so the
quantized values flow as floats holding integers. A matmul or conv of an 8-bit quantized
value by constant weights is an integer product (:mod:`.integer`: its sums exact int32s,
which the cython backend's int8 kernels compute); the other integer ops are float ops on
whole numbers: MatMulInteger of two run-time values is (A - a_zero_point) @ (B -
b_zero_point), each product and partial sum an integer, exact while the sums stay below
2**24 in magnitude (every 8-bit product is below 2**16). The results equal onnxruntime's
integer kernels then: a conv whose weights are all whole numbers never runs as Winograd (the
cython backend's rule), whose transforms round, which would move a requantized output
(QLinearConv) a step where the exact sum times the scale sits near a half. Weights are
constants (the integers, less their zero points, for an integer product; dequantized to the
float32s they stand for otherwise).

The arithmetic is onnxruntime's, operation for operation, so that the values are its values:
QuantizeLinear is saturate(round_half_even(x / scale) + zero_point), where NaN gives the
type's lowest value and infinities saturate; DequantizeLinear is (x - zero_point) * scale;
the requantizing ops scale their sums by a_scale * b_scale / y_scale (computed in float32 in
that order) before rounding. Scales and zero points are one value or, along ``axis``, one
per channel (per row and per column for the integer matmul's zero points); blocked
quantization (``block_size``), 4-bit and 8-bit float types are refused by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from walle.errors import ModelError
from walle.ops.onnx_import import integer
from walle.ops.onnx_import.conv import HANDLERS as CONV
from walle.ops.onnx_import.conv import conv, integer_conv
from walle.ops.onnx_import.ids import type_name
from walle.ops.onnx_import.nn import matmul
from walle.ops.onnx_import.node import HandlerTable, OnnxNode

if TYPE_CHECKING:
    from walle.ops.onnx_import.core import Importer

# the integer types a quantized value may have: their saturation bounds
RANGES = {
    "UINT8": (0, 255),
    "INT8": (-128, 127),
    "UINT16": (0, 65535),
    "INT16": (-32768, 32767),
}
# what DequantizeLinear also reads (an int32 bias, zero point 0)
_DEQUANTIZED = (*RANGES, "INT32")


def _checked_type(node: OnnxNode, name: str, allowed: tuple[str, ...]) -> str:
    if name not in allowed:
        raise ModelError(
            f"{node.where}: quantized type {name} is not supported ({', '.join(allowed)})"
        )
    return name


def _zero_point_type(im: Importer, node: OnnxNode, index: int, default: str = "UINT8") -> str:
    """The integer type of the quantized value that zero point input ``index`` belongs to:
    the zero point's own type, else QuantizeLinear's ``output_dtype``, else ``default``."""
    name = node.input_name(index)
    if name:
        return _checked_type(node, im.element_type(name), _DEQUANTIZED)
    code = node.get("output_dtype", 0)
    if code:
        return _checked_type(node, type_name(int(code)), tuple(RANGES))
    return default


def _per_axis(im: Importer, node: OnnxNode, value: str, like: str, axis: int) -> str:
    """A scale or zero point shaped to broadcast over ``like``: one value as it is, one per
    channel of ``axis`` as [C, 1, ...] after that axis."""
    shape, rank = im.b.shape(value), len(im.b.shape(like))
    if int(np.prod(shape, dtype=np.int64)) == 1 and len(shape) <= 1:
        return value if not shape else im.b.reshape(value, ())
    if len(shape) != 1:
        raise ModelError(
            f"{node.where}: a scale or zero point of shape {shape} (blocked quantization) is "
            "not supported: one value, or one per channel of the axis"
        )
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank or im.b.shape(like)[axis] != shape[0]:
        raise ModelError(
            f"{node.where}: {shape[0]} scales or zero points do not fit axis {axis} of "
            f"{im.b.shape(like)}"
        )
    return im.b.reshape(value, (shape[0], *[1] * (rank - 1 - axis)))


def _quantized(im: Importer, scaled: str, zero_point: str | None, kind: str) -> str:
    """saturate(round_half_even(scaled) + zero_point) in ``kind``'s bounds; NaN gives the
    lowest value, as onnxruntime's clamp takes its bound where the value is NaN (``fmax``:
    C's, NaN on one side gives the other). One chain of element-wise ops: one pass."""
    b = im.b
    low, high = RANGES[kind]
    q = b.unary("round", scaled)
    if zero_point is not None:
        q = b.binary("add", q, zero_point)
    return b.binary("min", b.binary("fmax", q, b.const(float(low))), b.const(float(high)))


def _no_blocks(node: OnnxNode) -> None:
    if node.get("block_size", 0):
        raise ModelError(f"{node.where}: blocked quantization (block_size) is not supported")


def _quantize_linear(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    _no_blocks(node)
    node.require("saturate", 1, 1)
    kind = _checked_type(node, _zero_point_type(im, node, 2), tuple(RANGES))
    axis = int(node.get("axis", 1))
    scale = _per_axis(im, node, ins[1], ins[0], axis)
    zero_point = _per_axis(im, node, ins[2], ins[0], axis) if len(ins) > 2 and ins[2] else None
    result = _quantized(im, im.b.binary("div", ins[0], scale), zero_point, kind)
    im.integral.add(node.proto.output[0])
    im.quantized[node.proto.output[0]] = kind
    return result


def _dequantize_linear(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """(x - zero_point) * scale; for a constant x (a weight stored as int8) the float32
    weights, computed at import."""
    _no_blocks(node)
    source = node.proto.input[0]
    kind = _zero_point_type(im, node, 2, im.quantized.get(source) or im.element_type(source))
    integer.record(im, node, ins, kind)
    x, axis = ins[0], int(node.get("axis", 1))
    if len(ins) > 2 and ins[2]:
        x = im.b.binary("sub", x, _per_axis(im, node, ins[2], ins[0], axis))
    return im.b.binary("mul", x, _per_axis(im, node, ins[1], ins[0], axis))


def _dynamic_quantize_linear(im: Importer, node: OnnxNode, ins: list[str]) -> list[str]:
    """uint8 values, their scale and zero point from the range of x widened to hold 0:
    scale (max - min) / 255 (1 where the range is empty), zero point round(clamp(-min /
    scale)). NaN is left out of the range (onnxruntime's min and max skip it)."""
    b, x = im.b, ins[0]
    axes = tuple(range(len(b.shape(x))))
    # NaN out of the range (a range of NaN only: +inf and -inf, then 0 and 0 below)
    low = b.reduce("fmin", x, axes, keepdims=False)
    high = b.reduce("fmax", x, axes, keepdims=False)
    zero = b.const(0.0)
    low, high = b.binary("min", low, zero), b.binary("max", high, zero)  # hold 0
    span = b.binary("sub", high, low)
    # (max - min) / 255, or 1 where max == min (then both are 0)
    scale = b.binary("add", b.binary("div", span, b.const(255.0)), b.binary("eq", span, zero))
    start = b.binary("sub", zero, b.binary("div", low, scale))
    # clamped to [0, 255]; NaN (a -inf in x: -inf / inf) to 255, as onnxruntime's
    # min(255, start) gives
    clamped = b.binary("fmax", b.binary("fmin", start, b.const(255.0)), zero)
    zero_point = b.unary("round", clamped)
    y = _quantized(im, b.binary("div", x, scale), zero_point, "UINT8")
    im.integral.update(node.proto.output[0:3:2])
    im.quantized[node.proto.output[0]] = "UINT8"
    return [y, scale, zero_point]


def _offset(im: Importer, node: OnnxNode, x: str, zero_point: str, axis: int) -> str:
    """``x`` less its zero point (one value, or one per slice along ``axis`` of x)."""
    return im.b.binary("sub", x, _per_axis(im, node, zero_point, x, axis))


def _integer_operands(
    im: Importer, node: OnnxNode, ins: list[str], zero_points: tuple[int, int]
) -> tuple[str, str]:
    """The two integer operands less their zero points: A's one value or one per row
    (axis -2 of A), B's one value or one per output channel (the last axis of a matmul's B,
    the first of a conv's weights)."""
    a, b = ins[0], ins[1]
    za, zb = (ins[i] if len(ins) > i and ins[i] else None for i in zero_points)
    matmul_like = node.proto.op_type in ("MatMulInteger", "QLinearMatMul")
    if za is not None:
        a = _offset(im, node, a, za, -2 if matmul_like else 1)
    if zb is not None:
        b = _offset(im, node, b, zb, -1 if matmul_like else 0)
    return a, b


def _integer_product(im: Importer, node: OnnxNode, ins: list[str]) -> str | None:
    """(a - za) @ (b - zb) as an integer product (:func:`integer.matmul`) for an 8-bit
    quantized a (node input 0, whose walle value is ins[0]) and a 2-D constant b with a
    constant zb; None where it is not one. ins: a, b, za, zb."""
    kind = im.quantized.get(node.proto.input[0])
    weights = im.b.constant_value(ins[1])
    zb = im.b.constant_value(ins[3]) if len(ins) > 3 and ins[3] else np.zeros((), np.float32)
    if kind not in integer.BYTE_TYPES or weights is None or zb is None or weights.ndim != 2:
        return None
    if len(im.b.shape(ins[0])) < 2 or zb.size not in (1, weights.shape[1]):
        return None
    offset = (weights - zb.reshape(1, -1)).astype(np.float32)  # whole numbers in [-255, 255]
    za = _per_axis(im, node, ins[2], ins[0], -2) if len(ins) > 2 and ins[2] else None
    return integer.matmul(im, ins[0], kind, za, offset)


def _matmul_integer(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    im.integral.add(node.proto.output[0])
    product = _integer_product(im, node, ins)
    if product is not None:
        return product
    a, b = _integer_operands(im, node, ins, (2, 3))
    return matmul(im, node, a, b)


def _integer_conv(im: Importer, node: OnnxNode, ins: list[str], bias: str | None) -> str | None:
    """conv(x - zx, w - zw) + bias as an integer conv (:func:`conv.integer_conv`) for an
    8-bit quantized x and constant weights with a constant zw; None where it is not one.
    ins: x, w, zx, zw."""
    kind = im.quantized.get(node.proto.input[0])
    weights = im.b.constant_value(ins[1])
    zw = im.b.constant_value(ins[3]) if len(ins) > 3 and ins[3] else np.zeros((), np.float32)
    if kind not in integer.BYTE_TYPES or weights is None or zw is None or weights.ndim != 4:
        return None
    if zw.size not in (1, weights.shape[0]):
        return None
    zx: np.ndarray | str = np.zeros((), np.float32)
    if len(ins) > 2 and ins[2]:
        value = im.b.constant_value(ins[2])
        zx = ins[2] if value is None else value
    if not isinstance(zx, str) and zx.size != 1:
        return None
    offset = (weights - zw.reshape(-1, 1, 1, 1)).astype(np.float32)  # in [-255, 255]
    return integer_conv(im, node, ins[0], kind, zx, offset, bias)


def _conv_integer(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    im.integral.add(node.proto.output[0])
    sums = _integer_conv(im, node, ins, None)
    if sums is not None:
        return sums
    x, w = _integer_operands(im, node, ins, (2, 3))
    return conv(im, node, x, w, None, fold=False)


def _requantized(
    im: Importer,
    node: OnnxNode,
    sums: str,
    scales: tuple[str, str, str],
    zero_point: str,
    channel_axis: int,
) -> str:
    """The int32 ``sums`` requantized: times a_scale * b_scale / y_scale (per channel where
    b's scale is), rounded, plus y's zero point, saturated to y's type."""
    b = im.b
    a_scale, b_scale, y_scale = scales
    factor = b.binary(
        "div", b.binary("mul", a_scale, _per_axis(im, node, b_scale, sums, channel_axis)), y_scale
    )
    kind = _checked_type(
        node,
        im.element_type(node.proto.input[7]) if len(node.proto.input) > 7 else "UINT8",
        tuple(RANGES),
    )
    result = _quantized(im, b.binary("mul", sums, factor), zero_point or None, kind)
    im.integral.add(node.proto.output[0])
    im.quantized[node.proto.output[0]] = kind
    return result


def _qlinear_matmul(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    operands = [ins[0], ins[3], ins[2], ins[5]]
    sums = _integer_product(im, node, operands)
    if sums is None:
        a, b = _integer_operands(im, node, operands, (2, 3))
        sums = matmul(im, node, a, b)
    return _requantized(im, node, sums, (ins[1], ins[4], ins[6]), ins[7], -1)


def _qlinear_conv(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    operands = [ins[0], ins[3], ins[2], ins[5]]
    bias = ins[8] if len(ins) > 8 and ins[8] else None
    sums = _integer_conv(im, node, operands, bias)
    if sums is None:
        x, w = _integer_operands(im, node, operands, (2, 3))
        sums = conv(im, node, x, w, bias, fold=False)
    return _requantized(im, node, sums, (ins[1], ins[4], ins[6]), ins[7], 1)


_CONV_ATTRS = CONV["Conv"][0]
HANDLERS: HandlerTable = {
    "QuantizeLinear": ({"axis", "saturate", "block_size", "output_dtype"}, _quantize_linear),
    "DequantizeLinear": ({"axis", "block_size"}, _dequantize_linear),
    "DynamicQuantizeLinear": (set(), _dynamic_quantize_linear),
    "MatMulInteger": (set(), _matmul_integer),
    "ConvInteger": (_CONV_ATTRS, _conv_integer),
    "QLinearMatMul": (set(), _qlinear_matmul),
    "QLinearConv": (_CONV_ATTRS, _qlinear_conv),
}

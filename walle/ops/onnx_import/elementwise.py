"""Element-wise ONNX ops: arithmetic, activations (Relu ... HardSwish, Gelu, PRelu, Elu, Selu,
Celu, Softplus, Mish, Softsign, ThresholdedRelu, Shrink), Sign, Clip, Floor, Ceil, Round, Sin,
Cos, Softmax, LogSoftmax and Hardmax.

Activations that are not atomic compose from the atomic kernels (LeakyRelu as
relu(x) + alpha * min(x, 0), HardSwish as x * clip(x / 6 + 1/2, 0, 1), ...), so they run on
every backend, and NaN and inf go through them as through onnxruntime.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from walle.errors import ModelError
from walle.ops.onnx_import import legacy
from walle.ops.onnx_import.ids import type_name
from walle.ops.onnx_import.node import Handler, HandlerTable, OnnxNode

if TYPE_CHECKING:
    from walle.ops.onnx_import.core import Importer

_FLT_MAX = float(np.finfo(np.float32).max)
_LEGACY_BROADCAST = {"broadcast", "axis"}  # up to opset 6 (legacy.right_operand)


def _binary(kind: str) -> Handler:
    def lower(im: Importer, node: OnnxNode, ins: list[str]) -> str:
        return im.b.binary(kind, ins[0], legacy.right_operand(im, node, ins[0], ins[1]))

    return lower


def _unary(kind: str) -> Handler:
    def lower(im: Importer, node: OnnxNode, ins: list[str]) -> str:
        return im.b.unary(kind, ins[0])

    return lower


def _identity(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """The input's own value: no copy (a Paddle export names most values twice, 58 Identity
    nodes in PP-OCRv6's recogniser, each a pass over its tensor when copied)."""
    return ins[0]


def _variadic(kind: str) -> Handler:
    """Sum, Max, Min: a chain of broadcasting binaries (one input: a copy)."""

    def lower(im: Importer, node: OnnxNode, ins: list[str]) -> str:
        return _chain(im, kind, ins)

    return lower


def _chain(im: Importer, kind: str, ins: list[str]) -> str:
    if len(ins) == 1:
        return im.b.unary("identity", ins[0])
    y = ins[0]
    for x in ins[1:]:
        y = im.b.binary(kind, y, x)
    return y


def _pow(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    return im.b.pow(ins[0], ins[1])


def _hard_swish(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    return im.b.hard_swish(ins[0])


def _softmax(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    return _over_axis(im, node, ins, im.b.softmax)


def _log_softmax(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    return _over_axis(im, node, ins, im.b.log_softmax)


def _hardmax(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    return _over_axis(im, node, ins, im.b.hardmax)


def _thresholded_relu(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """x where x > alpha (default 1), else 0 (NaN gives 0, as onnxruntime)."""
    x = ins[0]
    above = im.b.binary("gt", x, im.b.const(float(node.get("alpha", 1.0))))
    return im.b.binary("mask", above, x)


def _shrink(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """x - bias above lambd, x + bias below -lambd, 0 between (NaN gives 0)."""
    x = ins[0]
    lambd, bias = float(node.get("lambd", 0.5)), float(node.get("bias", 0.0))
    high = im.b.binary(
        "mask", im.b.binary("gt", x, im.b.const(lambd)), im.b.binary("sub", x, im.b.const(bias))
    )
    low = im.b.binary(
        "mask", im.b.binary("lt", x, im.b.const(-lambd)), im.b.binary("add", x, im.b.const(bias))
    )
    return im.b.binary("add", high, low)


def _over_axis(
    im: Importer, node: OnnxNode, ins: list[str], along: Callable[[str, int], str]
) -> str:
    """Softmax and LogSoftmax: along ``axis`` (default -1) from opset 13; before, over the
    input flattened to 2-D at ``axis`` (default 1)."""
    rank = len(im.b.shape(ins[0]))
    axis = int(node.get("axis", -1 if im.opset >= 13 else 1))
    if not -rank <= axis < rank:
        raise ModelError(f"{node.where}: axis {axis} out of range for rank {rank}")
    if im.opset >= 13 or axis % rank == rank - 1:
        return along(ins[0], axis)
    shape = im.b.shape(ins[0])
    return im.b.reshape(along(im.b.flatten(ins[0], axis), -1), shape)


def _gelu(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    approximate = node.choice("approximate", "none", ("none", "tanh"))
    return im.b.gelu(ins[0], approximate=approximate)


def _clip(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """Opset < 11: ``min``/``max`` attributes; from 11: optional inputs (any value). A
    missing bound is the largest finite float32, as onnxruntime: Clip maps inf to it."""
    if im.opset < 11:
        low = im.b.const(float(node.get("min", -_FLT_MAX)))
        high = im.b.const(float(node.get("max", _FLT_MAX)))
    else:
        if node.attrs:
            raise ModelError(f"{node.where}: min/max are inputs from opset 11")
        low = ins[1] if len(ins) > 1 and ins[1] else im.b.const(-_FLT_MAX)
        high = ins[2] if len(ins) > 2 and ins[2] else im.b.const(_FLT_MAX)
        for bound in (low, high):
            if bound is not None and im.b.shape(bound) not in ((), (1,)):
                raise ModelError(
                    f"{node.where}: min/max must be scalars, got shape {im.b.shape(bound)}"
                )
    return im.b.clip(ins[0], low, high)


def _leaky_relu(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    return im.b.leaky_relu(ins[0], float(node.get("alpha", 0.01)))


def _prelu(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """From opset 7 the slope broadcasts to the input (numpy's rules, one way); before, a
    slope of C values is per channel (axis 1), and one of 1 value is shared.

    The slope must be a finite constant: the composite multiplies it by min(x, 0) = 0 where
    x > 0, which a NaN or infinite slope would turn into NaN where onnxruntime gives x."""
    if not np.isfinite(im.const(node.proto.input[1], node.where)).all():
        raise ModelError(f"{node.where}: the slope holds NaN or infinity")
    shape, slope = im.b.shape(ins[0]), ins[1]
    sshape = im.b.shape(slope)
    if im.opset < 7 and len(sshape) == 1 and len(shape) > 2 and sshape[0] == shape[1] > 1:
        slope = im.b.reshape(slope, (shape[1],) + (1,) * (len(shape) - 2))
        sshape = im.b.shape(slope)
    try:
        broadcast = np.broadcast_shapes(shape, sshape)
    except ValueError:
        broadcast = None
    if broadcast != shape:
        raise ModelError(f"{node.where}: slope of shape {sshape} does not broadcast to {shape}")
    return im.b.prelu(ins[0], slope)


def _elu(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    return im.b.elu(ins[0], float(node.get("alpha", 1.0)))


def _selu(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    alpha = float(node.get("alpha", 1.67326319217681884765625))
    gamma = float(node.get("gamma", 1.05070102214813232421875))
    return im.b.selu(ins[0], alpha, gamma)


def _mod(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """C's fmod (the result takes the dividend's sign): ``fmod`` 1, as ONNX requires for
    floats (onnxruntime refuses 0 there too); integer ids reach no Mod (see ids)."""
    if not node.get("fmod", 0):
        raise ModelError(f"{node.where}: fmod=0 (integer modulo) is not defined for floats")
    return im.b.binary("fmod", ins[0], ins[1])


def _celu(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    alpha = float(node.get("alpha", 1.0))
    if alpha == 0:
        raise ModelError(f"{node.where}: alpha must not be 0")
    return im.b.celu(ins[0], alpha)


def _mish(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    return im.b.mish(ins[0])


def _softplus(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    return im.b.softplus(ins[0])


def _softsign(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    return im.b.softsign(ins[0])


def _sign(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    return im.b.sign(ins[0])


def _hard_sigmoid(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    alpha, beta = float(node.get("alpha", 0.2)), float(node.get("beta", 0.5))
    return im.b.hard_sigmoid(ins[0], alpha, beta)


# Cast targets whose values walle's float32 holds unchanged (ids are exact below 2**24).
_CAST_TO = ("FLOAT", "INT32", "INT64")


def _cast(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """The values as they are, where float32 holds them unchanged: a float tensor cast to
    FLOAT, integer ids (:mod:`walle.ops.onnx_import.ids`) to INT32, INT64 or FLOAT. A constant is
    cast at import (to an integer type: truncated toward zero, as onnxruntime). Any other
    cast is refused, naming its target type."""
    to = node.get("to")
    if to is None:
        raise ModelError(f"{node.where}: Cast needs its 'to' attribute")
    return _cast_to(im, node, ins[0], type_name(int(to)))


def _cast_like(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """A Cast to the second input's type: the type the file gives it (an initializer's, a
    graph input's, a declared value's); a computed value undeclared is float32, as walle
    computes it, unless it holds ids. ONNX's function bodies (Gelu's, HardSwish's...) cast
    their constants like the data this way: to float, nothing to do."""
    return _cast_to(im, node, ins[0], im.element_type(node.proto.input[1]))


def _cast_to(im: Importer, node: OnnxNode, x: str, target: str) -> str:
    """``x`` cast to the element type ``target`` (see :func:`_cast`)."""
    ins = [x]
    if target not in _CAST_TO:
        raise ModelError(f"{node.where}: a cast to {target} is not supported (FLOAT, INT32, INT64)")
    constant = im.b.constant_value(ins[0])
    if constant is not None:
        return ins[0] if target == "FLOAT" else im.b.const(np.trunc(constant))
    source = node.proto.input[0]
    if source in im.integral and target in ("INT32", "INT64"):
        im.integral.add(node.proto.output[0])
        return ins[0]  # a quantized value or an integer matmul's sums: integers already
    if source not in im.ids and target != "FLOAT":
        raise ModelError(
            f"{node.where}: a cast of float values to {target} is not supported: walle.ops "
            "computes in float32, and takes integers only as ids into Gather's indices"
        )
    return ins[0]  # ids to ids or to float (exact: checked as the plan loads them), float to float


def _mean(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """Mean: the broadcast sum of the inputs over their count."""
    total = _chain(im, "add", ins)
    return total if len(ins) == 1 else im.b.binary("div", total, im.b.const(np.float32(len(ins))))


HANDLERS: HandlerTable = {
    "Cast": ({"to", "saturate", "round_mode"}, _cast),
    "CastLike": ({"saturate", "round_mode"}, _cast_like),
    "Mean": (set(), _mean),
    "Add": (_LEGACY_BROADCAST, _binary("add")),
    "Sub": (_LEGACY_BROADCAST, _binary("sub")),
    "Mul": (_LEGACY_BROADCAST, _binary("mul")),
    "Div": (_LEGACY_BROADCAST, _binary("div")),
    "Pow": (set(), _pow),
    "Mod": ({"fmod"}, _mod),
    "Sum": (set(), _variadic("add")),
    "Max": (set(), _variadic("max")),
    "Min": (set(), _variadic("min")),
    "Relu": (set(), _unary("relu")),
    "Sigmoid": (set(), _unary("sigmoid")),
    "Tanh": (set(), _unary("tanh")),
    "Sqrt": (set(), _unary("sqrt")),
    "Erf": (set(), _unary("erf")),
    "Neg": (set(), _unary("neg")),
    "Abs": (set(), _unary("abs")),
    "Exp": (set(), _unary("exp")),
    "Log": (set(), _unary("log")),
    "Reciprocal": (set(), _unary("reciprocal")),
    "Identity": (set(), _identity),
    "Gelu": ({"approximate"}, _gelu),
    "LeakyRelu": ({"alpha"}, _leaky_relu),
    "Clip": ({"min", "max"}, _clip),
    "HardSigmoid": ({"alpha", "beta"}, _hard_sigmoid),
    "HardSwish": (set(), _hard_swish),
    "PRelu": (set(), _prelu),
    "Elu": ({"alpha"}, _elu),
    "Selu": ({"alpha", "gamma"}, _selu),
    "Celu": ({"alpha"}, _celu),
    "Mish": (set(), _mish),
    "Softplus": (set(), _softplus),
    "Softsign": (set(), _softsign),
    "Sign": (set(), _sign),
    "Floor": (set(), _unary("floor")),
    "Ceil": (set(), _unary("ceil")),
    "Round": (set(), _unary("round")),
    "Sin": (set(), _unary("sin")),
    "Cos": (set(), _unary("cos")),
    "Tan": (set(), _unary("tan")),
    "Asin": (set(), _unary("asin")),
    "Acos": (set(), _unary("acos")),
    "Atan": (set(), _unary("atan")),
    "Sinh": (set(), _unary("sinh")),
    "Cosh": (set(), _unary("cosh")),
    "Asinh": (set(), _unary("asinh")),
    "Acosh": (set(), _unary("acosh")),
    "Atanh": (set(), _unary("atanh")),
    "ThresholdedRelu": ({"alpha"}, _thresholded_relu),
    "Shrink": ({"lambd", "bias"}, _shrink),
    "Hardmax": ({"axis"}, _hardmax),
    "Softmax": ({"axis"}, _softmax),
    "LogSoftmax": ({"axis"}, _log_softmax),
}

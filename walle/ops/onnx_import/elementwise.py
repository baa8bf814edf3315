"""Element-wise ONNX ops: arithmetic, activations (Relu ... HardSwish, Gelu), Clip, Softmax.

Activations that are not atomic compose from the atomic kernels (LeakyRelu as
relu(x) + alpha * min(x, 0), HardSwish as x * clip(x / 6 + 1/2, 0, 1), ...), so they run on
every backend, and NaN and inf go through them as through onnxruntime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from walle.errors import ModelError
from walle.ops.onnx_import.node import Handler, HandlerTable, OnnxNode

if TYPE_CHECKING:
    from walle.ops.onnx_import.core import Importer

_FLT_MAX = float(np.finfo(np.float32).max)


def _binary(kind: str) -> Handler:
    def lower(im: Importer, node: OnnxNode, ins: list[str]) -> str:
        return im.b.binary(kind, ins[0], ins[1])

    return lower


def _unary(kind: str) -> Handler:
    def lower(im: Importer, node: OnnxNode, ins: list[str]) -> str:
        return im.b.unary(kind, ins[0])

    return lower


def _variadic(kind: str) -> Handler:
    """Sum, Max, Min: a chain of broadcasting binaries (one input: a copy)."""

    def lower(im: Importer, node: OnnxNode, ins: list[str]) -> str:
        if len(ins) == 1:
            return im.b.unary("identity", ins[0])
        y = ins[0]
        for x in ins[1:]:
            y = im.b.binary(kind, y, x)
        return y

    return lower


def _pow(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    return im.b.pow(ins[0], ins[1])


def _hard_swish(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    return im.b.hard_swish(ins[0])


def _softmax(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    rank = len(im.b.shape(ins[0]))
    axis = int(node.get("axis", -1 if im.opset >= 13 else 1))
    if not -rank <= axis < rank:
        raise ModelError(f"{node.where}: axis {axis} out of range for rank {rank}")
    if im.opset >= 13 or axis % rank == rank - 1:
        return im.b.softmax(ins[0], axis)
    # Before opset 13, Softmax runs over the input flattened to 2-D at ``axis``.
    shape = im.b.shape(ins[0])
    y = im.b.softmax(im.b.flatten(ins[0], axis), -1)
    return im.b.reshape(y, shape)


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


def _hard_sigmoid(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    alpha, beta = float(node.get("alpha", 0.2)), float(node.get("beta", 0.5))
    return im.b.hard_sigmoid(ins[0], alpha, beta)


HANDLERS: HandlerTable = {
    "Add": (set(), _binary("add")),
    "Sub": (set(), _binary("sub")),
    "Mul": (set(), _binary("mul")),
    "Div": (set(), _binary("div")),
    "Pow": (set(), _pow),
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
    "Identity": (set(), _unary("identity")),
    "Gelu": ({"approximate"}, _gelu),
    "LeakyRelu": ({"alpha"}, _leaky_relu),
    "Clip": ({"min", "max"}, _clip),
    "HardSigmoid": ({"alpha", "beta"}, _hard_sigmoid),
    "HardSwish": (set(), _hard_swish),
    "Softmax": ({"axis"}, _softmax),
}

"""Neural-network ONNX ops other than convolution and pooling (:mod:`.conv`): Gemm, MatMul,
BatchNormalization, LRN, LayerNormalization, InstanceNormalization, Dropout.

A BatchNormalization right after a Conv with constant weights folds into the Conv's weights
(:func:`fold_affine`, which the Conv handler calls), as do per-channel Mul and Add by
constants after it; elsewhere a BatchNormalization is one multiply and add per channel, into
which such a Mul and Add after it fold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from walle.errors import ModelError
from walle.ops.ir import FloatArray
from walle.ops.onnx_import import integer, legacy
from walle.ops.onnx_import.node import HandlerTable, OnnxNode

if TYPE_CHECKING:
    from onnx import NodeProto

    from walle.ops.onnx_import.core import Importer

_BN_ATTRS = {"epsilon", "momentum", "spatial", "training_mode", "is_test"}


def _gemm(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    trans_a, trans_b = bool(node.get("transA", 0)), bool(node.get("transB", 0))
    sa, sb = im.b.shape(ins[0]), im.b.shape(ins[1])
    if len(sa) != 2 or len(sb) != 2:
        raise ModelError(f"{node.where}: A and B must be 2-D, got {sa} and {sb}")
    c = ins[2] if len(ins) > 2 and ins[2] else None
    if c is not None:
        legacy.gemm_bias(im, node, c, sa[0 if not trans_a else 1], sb[1 if not trans_b else 0])
    else:
        legacy.refuse_after(im, node, ("broadcast",))
    plain = not trans_a and float(node.get("alpha", 1.0)) == 1.0
    if plain and (c is None or float(node.get("beta", 1.0)) == 1.0):
        quantized = _qdq_matmul(im, node, trans_b)
        if quantized is not None:  # the QDQ format's dense layer (PyTorch's Linear)
            return quantized if c is None else im.b.binary("add", quantized, c)
    return im.b.gemm(
        ins[0],
        ins[1],
        c,
        alpha=float(node.get("alpha", 1.0)),
        beta=float(node.get("beta", 1.0)),
        trans_a=trans_a,
        trans_b=trans_b,
    )


def _matmul(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    quantized = _qdq_matmul(im, node, False)
    return quantized if quantized is not None else matmul(im, node, ins[0], ins[1])


def _qdq_matmul(im: Importer, node: OnnxNode, transposed: bool) -> str | None:
    """A MatMul (or a Gemm's product) of a dequantized quantizer output by dequantized 2-D
    constant weights (the QDQ format; ``transposed``: stored [N, K], a Gemm's transB) as its
    integer sums times a's scale times b's (one, or one per output column); None where it
    is not one (see :mod:`.integer`)."""
    a = im.dequantized.get(node.proto.input[0])
    w = im.dequantized.get(node.proto.input[1])
    weights = None if w is None else im.b.constant_value(w.values)
    if a is None or w is None or weights is None or weights.ndim != 2:
        return None
    if len(im.b.shape(a.values)) < 2:
        return None
    weights = weights.T if transposed else weights
    columns = weights.shape[1]
    column_axes = (0, -2) if transposed else (1, -1)
    if w.scale.size != 1 and not (w.axis in column_axes and w.scale.size == columns):
        return None
    if w.zero_point.size not in (1, columns):
        return None
    b = im.b
    offset = (weights - w.zero_point.reshape(1, -1)).astype(np.float32)
    sums = integer.matmul(im, a.values, a.kind, b.const(a.zero_point.reshape(())), offset)
    scale = (a.scale.reshape(()) * w.scale.reshape(-1)).astype(np.float32)
    return b.binary("mul", sums, b.const(scale if scale.size > 1 else scale.reshape(())))


def matmul(im: Importer, node: OnnxNode, a: str, b: str) -> str:
    """numpy ``matmul``. A 1-D operand (a row on the left, a column on the right, the dim
    dropped from the result) is a broadcast multiply and a sum over K: as cheap as the
    product, and a plain 2-D+ matmul otherwise."""
    sa, sb = im.b.shape(a), im.b.shape(b)
    if not sa or not sb:
        raise ModelError(f"{node.where}: MatMul operands must have at least one dim")
    if len(sa) > 1 and len(sb) > 1:
        return im.b.matmul(a, b)
    k_a, k_b = sa[-1], sb[0] if len(sb) == 1 else sb[-2]
    if k_a != k_b:
        raise ModelError(f"{node.where}: shapes {sa} and {sb} do not multiply")
    if len(sb) == 1:  # [..., M, K] @ [K] = sum over K of a * b
        return im.b.reduce("sum", im.b.binary("mul", a, b), (-1,), keepdims=False)
    column = im.b.reshape(a, (sa[0], 1))  # [K] @ [..., K, N] = sum over K of a[:, None] * b
    return im.b.reduce("sum", im.b.binary("mul", column, b), (-2,), keepdims=False)


def fold_affine(
    im: Importer, node: OnnxNode, weight: str, bias: str | None
) -> tuple[str, str] | None:
    """Fold what follows a conv with constant weights and is a per-channel affine map into
    its weights and bias: an inference BatchNormalization with constant parameters, and Mul
    and Add by a constant that broadcasts over the output channels only ([C, 1, 1], [1, C,
    1, 1], a scalar; Inception v2 scales and shifts after each BN this way), each the only
    reader of the value before it. The folded nodes then add nothing to the graph; None when
    nothing folds."""
    w = im.b.constant_value(weight)
    b = None if w is None else im.b.constant_value(bias) if bias else np.zeros(w.shape[0])
    if w is None or b is None:
        return None
    channels = w.shape[0]
    identity = np.ones(channels), np.zeros(channels)
    scale_all, shift_all = _fold_followers(im, node.proto.output[0], *identity)
    if scale_all is identity[0]:
        return None
    w_folded = (w.astype(np.float64) * scale_all.reshape(-1, 1, 1, 1)).astype(np.float32)
    b_folded = (b.astype(np.float64) * scale_all + shift_all).astype(np.float32)
    return im.b.const(w_folded), im.b.const(b_folded)


def _fold_followers(
    im: Importer,
    value: str,
    scale: npt.NDArray[np.float64],
    shift: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``x * scale + shift`` (per channel) composed with the per-channel affine nodes that
    follow ONNX value ``value``, each the only reader of the value before it and none a graph
    output; each folded node's output becomes the same walle value as ``value``. The arrays
    given come back (the same objects) when nothing follows."""
    channels = scale.shape[0]
    out = value
    while True:
        readers = im.readers.get(out, [])
        if len(readers) != 1 or out in im.graph_outputs:
            return scale, shift
        affine = _channel_affine(im, readers[0], out, channels)
        if affine is None:
            return scale, shift
        scale, shift = scale * affine[0], shift * affine[0] + affine[1]
        im.folded[readers[0].output[0]] = out
        out = readers[0].output[0]


def _channel_affine(
    im: Importer, reader: NodeProto, value: str, channels: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
    """``reader`` of the conv output ``value`` as x * scale + shift per channel (float64),
    or None when it is not such a node."""
    if reader.op_type == "BatchNormalization":
        if reader.input[0] != value or len(reader.input) != 5 or any(reader.output[1:]):
            return None
        attrs = OnnxNode(reader, _BN_ATTRS)
        if legacy.batchnorm_training(im, attrs) or not attrs.get("spatial", 1):
            return None
        params = [p for p in (im.constant(name) for name in reader.input[1:]) if p is not None]
        if len(params) != 4 or any(p.size != channels for p in params):
            return None
        return _bn_affine(params, float(attrs.get("epsilon", 1e-5)))
    if reader.op_type not in ("Mul", "Add") or reader.domain not in ("", "ai.onnx"):
        return None
    if len(reader.input) != 2 or list(reader.input).count(value) != 1:
        return None
    other = im.constant(reader.input[1] if reader.input[0] == value else reader.input[0])
    if other is None or other.ndim > 4:
        return None
    shape = (1,) * (4 - other.ndim) + other.shape
    if shape[0] != 1 or shape[2:] != (1, 1) or shape[1] not in (1, channels):
        return None
    vector = np.broadcast_to(other.astype(np.float64).reshape(-1), (channels,))
    if reader.op_type == "Mul":
        return vector.copy(), np.zeros(channels)
    return np.ones(channels), vector.copy()


def _bn_affine(
    params: list[FloatArray], epsilon: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """BatchNormalization as y = x * scale + shift, per channel (float64)."""
    gamma, beta, mean, var = (p.astype(np.float64).reshape(-1) for p in params)
    scale = gamma / np.sqrt(var + epsilon)
    return scale, beta - mean * scale


def _batchnorm(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    if legacy.batchnorm_training(im, node):
        mode = "is_test=0" if im.opset <= legacy.LAST_OPSET else "training_mode=1"
        raise ModelError(f"{node.where}: {mode} (training) is not supported (inference only)")
    node.require("spatial", 1, 1)
    if any(o for o in node.proto.output[1:]):
        raise ModelError(f"{node.where}: the running mean/var outputs are not supported")
    params = [im.const(name, node.where) for name in node.proto.input[1:5]]
    scale, shift = _bn_affine(params, float(node.get("epsilon", 1e-5)))
    # a scale and shift after it (a Caffe-style Scale layer: DenseNet's pre-activations) fold
    # into its one multiply and add: each op of an element-wise chain is a pass over its
    # block (DenseNet-121's BN, Mul, Add, ReLU chains took a sixth of the model)
    scale, shift = _fold_followers(im, node.proto.output[0], scale, shift)
    rank = len(im.b.shape(ins[0]))
    per_channel = (-1,) + (1,) * (rank - 2)
    y = im.b.binary("mul", ins[0], im.b.const(scale.astype(np.float32).reshape(per_channel)))
    return im.b.binary("add", y, im.b.const(shift.astype(np.float32).reshape(per_channel)))


def _layernorm(im: Importer, node: OnnxNode, ins: list[str]) -> str | list[str]:
    """LayerNormalization; its optional Mean and InvStdDev outputs (training's, which some
    exports keep) are the mean and 1 / sqrt(var + eps) over the normalised axes, kept as
    dims of 1."""
    axes = _norm_axes(im, node, ins[0])
    beta = ins[2] if len(ins) > 2 and ins[2] else None
    epsilon = float(node.get("epsilon", 1e-5))
    wanted = [bool(o) for o in node.proto.output[1:]]
    if not any(wanted):
        return im.b.layer_norm(ins[0], ins[1], beta, axis=axes[0], epsilon=epsilon)
    b = im.b
    mean = b.reduce("mean", ins[0], axes, keepdims=True)
    d = b.binary("sub", ins[0], mean)
    var = b.reduce("mean", b.binary("mul", d, d), axes, keepdims=True)
    inv = b.unary("reciprocal", b.unary("sqrt", b.binary("add", var, b.const(epsilon))))
    y = b.binary("mul", b.binary("mul", d, inv), ins[1])
    if beta is not None:
        y = b.binary("add", y, beta)
    return [y, mean, inv][: 1 + len(wanted)]


def _rms_norm(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """RMSNormalization: x / sqrt(mean(x^2) + eps) * scale over the axes from ``axis`` on."""
    axes = _norm_axes(im, node, ins[0])
    b = im.b
    mean_square = b.reduce("mean", b.binary("mul", ins[0], ins[0]), axes, keepdims=True)
    rms = b.unary("sqrt", b.binary("add", mean_square, b.const(float(node.get("epsilon", 1e-5)))))
    return b.binary("mul", b.binary("div", ins[0], rms), ins[1])


def _mean_variance_norm(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """(x - mean) / (std + 1e-9) over ``axes`` (default [0, 2, 3]), the variance as the mean
    of squared deviations (onnxruntime's mean of squares less the squared mean loses its
    digits to cancellation where the mean is large against the spread: 1000 + N(0, 0.01)
    came out 0.0085 off there)."""
    x = ins[0]
    rank = len(im.b.shape(x))
    axes = [int(a) for a in node.get("axes", [0, 2, 3])]
    if any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) != len(axes):
        raise ModelError(f"{node.where}: axes {axes} invalid for rank {rank}")
    centred = im.b.binary("sub", x, im.b.reduce("mean", x, axes, keepdims=True))
    variance = im.b.reduce("mean", im.b.binary("mul", centred, centred), axes, keepdims=True)
    std = im.b.binary("add", im.b.unary("sqrt", variance), im.b.const(1e-9))
    return im.b.binary("div", centred, std)


def _lp_norm(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """LpNormalization: x / ||x||_p along ``axis`` (p 1 or 2), as onnxruntime computes it:
    the norm in float32 (a p = 2 sum of squares may underflow to 0 or overflow to inf), and
    a row whose norm is 0 all zeros, not 0 / 0. walle has no comparison, so that rule is a
    factor min(norm * 2^126, 1): 0 there, exactly 1 at every norm of at least FLT_MIN (the
    only norms between are a p = 1 row of subnormal values); NaN and inf pass as in x / norm."""
    rank = len(im.b.shape(ins[0]))
    axis = int(node.get("axis", -1))
    if not -rank <= axis < rank:
        raise ModelError(f"{node.where}: axis {axis} out of range for rank {rank}")
    p = int(node.get("p", 2))
    if p not in (1, 2):
        raise ModelError(f"{node.where}: p {p} (the spec allows 1 or 2)")
    b = im.b
    x = ins[0]
    parts = b.unary("abs", x) if p == 1 else b.binary("mul", x, x)
    norm = b.reduce("sum", parts, [axis % rank], keepdims=True)
    if p == 2:
        norm = b.unary("sqrt", norm)
    tiny = float(np.finfo(np.float32).tiny)
    y = b.binary("div", x, b.binary("max", norm, b.const(tiny)))
    zero_rows = b.binary("min", b.binary("mul", norm, b.const(2.0**126)), b.const(1.0))
    return b.binary("mul", y, zero_rows)


def _group_norm(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """GroupNormalization: the channels in ``num_groups`` groups, each normalised over its
    channels and spatial dims, then the scale and bias per channel (opset 21) or per group
    (opset 18, where each group's applies to its channels)."""
    node.require("stash_type", 1, 1)
    shape = im.b.shape(ins[0])
    if len(shape) < 3 or len(ins) != 3 or not all(ins):
        raise ModelError(f"{node.where}: needs X [N, C, D1, ...], scale and bias")
    n, c = shape[0], shape[1]
    groups = int(node.get("num_groups", 0))
    if groups < 1 or c % groups:
        raise ModelError(f"{node.where}: num_groups {groups} does not divide the {c} channels")
    per = groups if im.opset < 21 else c
    for name, value in zip(("scale", "bias"), ins[1:], strict=True):
        if im.b.shape(value) != (per,):
            raise ModelError(f"{node.where}: {name} must be [{per}], got {im.b.shape(value)}")
    b = im.b
    grouped = b.reshape(ins[0], [n, groups, -1])
    y = b.reshape(
        b.layer_norm(grouped, axis=2, epsilon=float(node.get("epsilon", 1e-5))), list(shape)
    )
    tail = [1] * (len(shape) - 2)
    scale, bias = ins[1], ins[2]
    if per == groups and groups != c:  # opset 18: a group's value for each of its channels
        scale, bias = (
            b.reshape(b.take(v, [i // (c // groups) for i in range(c)], 0), [c])
            for v in (scale, bias)
        )
    y = b.binary("mul", y, b.reshape(scale, [c, *tail]))
    return b.binary("add", y, b.reshape(bias, [c, *tail]))


def _norm_axes(im: Importer, node: OnnxNode, x: str) -> tuple[int, ...]:
    """The axes from ``axis`` (default -1) to the last, for the normalisations computed in
    float32 (``stash_type`` 1, the default)."""
    node.require("stash_type", 1, 1)
    rank = len(im.b.shape(x))
    axis = int(node.get("axis", -1))
    if not -rank <= axis < rank:
        raise ModelError(f"{node.where}: axis {axis} out of range for rank {rank}")
    return tuple(range(axis + rank if axis < 0 else axis, rank))


def _instance_norm(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    shape = im.b.shape(ins[0])
    if len(shape) < 3:
        raise ModelError(f"{node.where}: input must be [N, C, D1, ...], got {shape}")
    if len(ins) != 3 or not all(ins):
        raise ModelError(f"{node.where}: needs the inputs input, scale and B")
    for name, value in zip(("scale", "B"), ins[1:], strict=True):
        if im.b.shape(value) != (shape[1],):
            raise ModelError(
                f"{node.where}: {name} must be [{shape[1]}] (one per channel), "
                f"got {im.b.shape(value)}"
            )
    return im.b.instance_norm(ins[0], ins[1], ins[2], float(node.get("epsilon", 1e-5)))


def _dropout(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """Inference: the identity (ratio and seed do not matter); no mask output."""
    if len(ins) > 2 and ins[2]:
        training = im.const(node.proto.input[2], node.where)
        if training.size and bool(training.reshape(-1)[0]):
            raise ModelError(f"{node.where}: training_mode=true is not supported")
    mask = node.proto.output[1] if len(node.proto.output) > 1 else ""
    if mask and (mask in im.readers or mask in im.graph_outputs):
        raise ModelError(f"{node.where}: the mask output is not supported")
    return ins[0]


def _lrn(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """x / (bias + alpha / size * sum of x^2 over ``size`` neighbouring channels) ** beta."""
    size = node.get("size")
    if size is None:
        raise ModelError(f"{node.where}: attribute 'size' is required")
    shape = im.b.shape(ins[0])
    if len(shape) < 3:
        raise ModelError(f"{node.where}: input must be [N, C, ...], got {shape}")
    return im.b.local_response_norm(
        ins[0],
        int(size),
        alpha=float(node.get("alpha", 1e-4)),
        beta=float(node.get("beta", 0.75)),
        bias=float(node.get("bias", 1.0)),
    )


HANDLERS: HandlerTable = {
    "Gemm": ({"alpha", "beta", "transA", "transB", "broadcast"}, _gemm),
    "MatMul": (set(), _matmul),
    "BatchNormalization": (_BN_ATTRS, _batchnorm),
    "LRN": ({"alpha", "beta", "bias", "size"}, _lrn),
    "LayerNormalization": ({"axis", "epsilon", "stash_type"}, _layernorm),
    "RMSNormalization": ({"axis", "epsilon", "stash_type"}, _rms_norm),
    "LpNormalization": ({"axis", "p"}, _lp_norm),
    "MeanVarianceNormalization": ({"axes"}, _mean_variance_norm),
    "GroupNormalization": ({"num_groups", "epsilon", "stash_type"}, _group_norm),
    "InstanceNormalization": ({"epsilon"}, _instance_norm),
    "Dropout": ({"ratio", "seed", "is_test"}, _dropout),
}

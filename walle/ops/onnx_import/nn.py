"""Neural-network ONNX ops: Gemm, MatMul, Conv, ConvTranspose, pooling, BatchNormalization, LRN,
LayerNormalization, InstanceNormalization, Dropout.

Conv and the pools take ``auto_pad`` (NOTSET, VALID, SAME_UPPER, SAME_LOWER), resolved here
to explicit pads; pools take ``ceil_mode`` and AveragePool ``count_include_pad``. A
BatchNormalization right after a Conv with constant weights folds into the Conv's weights,
as do per-channel Mul and Add by constants after it; elsewhere a BatchNormalization is one
multiply and add per channel, into which such a Mul and Add after it fold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypedDict

import numpy as np
import numpy.typing as npt

from walle.errors import ModelError
from walle.ops.ir import FloatArray
from walle.ops.onnx_import import legacy
from walle.ops.onnx_import.node import Handler, HandlerTable, OnnxNode

if TYPE_CHECKING:
    from onnx import NodeProto

    from walle.ops.onnx_import.core import Importer

_AUTO_PAD = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")
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
    """numpy ``matmul``. A 1-D operand (a row on the left, a column on the right, the dim
    dropped from the result) is a broadcast multiply and a sum over K: as cheap as the
    product, and a plain 2-D+ matmul otherwise."""
    a, b = ins
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


class _Spatial(TypedDict):
    """Keyword arguments of ``conv2d`` and the pools: ONNX pads (top, left, bottom, right)."""

    strides: list[int]
    dilations: list[int]
    pads: list[int]


class _PoolOptions(_Spatial):
    """Keyword arguments shared by ``max_pool`` and ``avg_pool``."""

    ceil_mode: bool


def _spatial(im: Importer, node: OnnxNode, x: str, kernel: list[int]) -> _Spatial:
    """strides, dilations and explicit pads of a 2-D Conv or pool, ``auto_pad`` resolved;
    a 1-D one's ([N, C, L], kernel [k]) as those of the 2-D one over [N, C, 1, L]."""
    shape = im.b.shape(x)
    one_d, two_d = len(shape) == 3 and len(kernel) == 1, len(shape) == 4 and len(kernel) == 2
    if not (one_d or two_d):
        raise ModelError(
            f"{node.where}: only 1-D (NCL) and 2-D (NCHW) inputs and kernels are supported, "
            f"got input {shape} and kernel {kernel}"
        )
    axes = len(kernel)
    strides = [int(s) for s in node.get("strides", [1] * axes)]  # ONNX default: 1
    dilations = [int(d) for d in node.get("dilations", [1] * axes)]
    mode = node.choice("auto_pad", "NOTSET", _AUTO_PAD)
    if mode != "NOTSET" and "pads" in node.attrs:
        raise ModelError(f"{node.where}: pads given with auto_pad={mode}")
    if mode == "NOTSET":
        pads = [int(p) for p in node.get("pads", [0] * 2 * axes)]
    elif mode == "VALID":
        pads = [0] * 2 * axes
    else:
        if dilations != [1] * axes:
            # onnxruntime refuses a dilated Conv with SAME pads and sizes a dilated pool's by
            # the undilated kernel (the spec by the dilated one): refused, not guessed.
            raise ModelError(f"{node.where}: auto_pad={mode} with dilations {dilations}")
        pads = _same_pads(shape[2:], kernel, strides, dilations, upper=mode == "SAME_UPPER")
    if len(pads) != 2 * axes or len(strides) != axes or len(dilations) != axes or min(pads) < 0:
        raise ModelError(
            f"{node.where}: expected {axes} strides, {axes} dilations and {2 * axes} "
            f"non-negative pads, got {strides}, {dilations}, {pads}"
        )
    if axes == 1:
        return {
            "strides": [1, *strides],
            "dilations": [1, *dilations],
            "pads": [0, pads[0], 0, pads[1]],
        }
    return {"strides": strides, "dilations": dilations, "pads": pads}


def _lift(im: Importer, x: str) -> str:
    """[A, B, L] as [A, B, 1, L]: a 1-D conv's or pool's input, or a conv's weight (kept a
    constant where it is one)."""
    a, b, length = im.b.shape(x)
    value = im.b.constant_value(x)
    if value is not None:
        return im.b.const(value.reshape(a, b, 1, length))
    return im.b.reshape(x, (a, b, 1, length))


def _lower(im: Importer, y: str) -> str:
    """[N, C, 1, L] back to [N, C, L]."""
    n, c, _, length = im.b.shape(y)
    return im.b.reshape(y, (n, c, length))


def _same_pads(
    sizes: Sequence[int],
    kernel: list[int],
    strides: list[int],
    dilations: list[int],
    *,
    upper: bool,
) -> list[int]:
    """SAME_UPPER / SAME_LOWER: output = ceil(input / stride), the odd pad at the end
    (upper) or at the beginning (lower)."""
    head, tail = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilations, strict=True):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        first = total // 2 if upper else total - total // 2
        head.append(first)
        tail.append(total - first)
    return [*head, *tail]


def _conv(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    weight, bias = ins[1], ins[2] if len(ins) > 2 and ins[2] else None
    wshape = im.b.shape(weight)
    kernel = [int(k) for k in node.get("kernel_shape", wshape[2:])]
    if list(wshape[2:]) != kernel:
        raise ModelError(f"{node.where}: kernel_shape {kernel} differs from weight {wshape}")
    args = _spatial(im, node, ins[0], kernel)
    group = int(node.get("group", 1))
    if len(kernel) == 1:  # the 2-D conv over [N, C, 1, L]; what follows is not folded
        y = im.b.conv2d(_lift(im, ins[0]), _lift(im, weight), bias, group=group, **args)
        return _lower(im, y)
    folded = _fold_affine(im, node, weight, bias)
    if folded is not None:
        weight, bias = folded
    return im.b.conv2d(ins[0], weight, bias, group=group, **args)


def _conv_transpose(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """The direct conv a ConvTranspose equals: its input spread ``strides`` apart with zeros
    between, padded by dilation * (kernel - 1) less ``pads`` at each end (plus
    ``output_padding`` after), convolved at stride 1 with the weights flipped in space and
    their input and output channels swapped per group. 1-D as 2-D over [N, C, 1, L]. The
    weights must be a constant (they are rearranged here); the zeros between cost the conv
    ``strides``' product times the work of a scatter-add, a price of running on every
    backend's conv."""
    x, bias = ins[0], ins[2] if len(ins) > 2 and ins[2] else None
    w = im.const(node.proto.input[1], node.where)
    shape = im.b.shape(x)
    if len(shape) not in (3, 4) or w.ndim != len(shape):
        raise ModelError(
            f"{node.where}: only 1-D (NCL) and 2-D (NCHW) inputs and kernels are supported, "
            f"got input {shape} and weight {w.shape}"
        )
    group = int(node.get("group", 1))
    if group < 1 or w.shape[0] != shape[1] or shape[1] % group:
        raise ModelError(
            f"{node.where}: input has {shape[1]} channels, weight {w.shape} with group {group}"
        )
    if [int(k) for k in node.get("kernel_shape", w.shape[2:])] != list(w.shape[2:]):
        raise ModelError(f"{node.where}: kernel_shape differs from weight {w.shape}")
    one_d = len(shape) == 3
    if one_d:
        x, w = _lift(im, x), w.reshape(w.shape[0], w.shape[1], 1, w.shape[2])
    strides, dilations, extra, begin, end = _transposed_sizes(node, im.b.shape(x), w, one_d)
    # the direct conv: spread input, pads of d * (k - 1) less the transposed conv's
    kernel = [d * (k - 1) for k, d in zip(w.shape[2:], dilations, strict=True)]
    before = [k - b for k, b in zip(kernel, begin, strict=True)]
    after = [k - e + o for k, e, o in zip(kernel, end, extra, strict=True)]
    spread = im.b.spread(x, strides, [max(b, 0) for b in before], [max(a, 0) for a in after])
    if min(before + after) < 0:  # pads wider than the kernel reach: crop instead
        _, _, hp, wp = im.b.shape(spread)
        stops = [hp + min(after[0], 0), wp + min(after[1], 0)]
        spread = im.b.slice(spread, [-min(b, 0) for b in before], stops, [2, 3])
    c_in, c_out, kh, kw = w.shape
    flipped = (
        w.reshape(group, c_in // group, c_out, kh, kw)
        .transpose(0, 2, 1, 3, 4)
        .reshape(group * c_out, c_in // group, kh, kw)[:, :, ::-1, ::-1]
    )
    y = im.b.conv2d(
        spread, im.b.const(np.ascontiguousarray(flipped)), bias, dilations=dilations, group=group
    )
    return _lower(im, y) if one_d else y


def _transposed_sizes(
    node: OnnxNode, shape: Sequence[int], w: FloatArray, one_d: bool
) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    """A 2-D ConvTranspose's strides, dilations, output_padding and the pads at the start
    and end of each spatial axis (auto_pad and output_shape resolved as the spec and
    onnxruntime do: pads from the output size asked for, the odd one at the start but for
    SAME_UPPER); a 1-D one's attributes as those over [N, C, 1, L]."""
    axes = 1 if one_d else 2
    lift = (lambda v, pad: [pad, *v]) if one_d else (lambda v, pad: list(v))
    strides = [int(s) for s in node.get("strides", [1] * axes)]
    dilations = [int(d) for d in node.get("dilations", [1] * axes)]
    extra = [int(p) for p in node.get("output_padding", [0] * axes)]
    if len(strides) != axes or len(dilations) != axes or len(extra) != axes:
        raise ModelError(
            f"{node.where}: expected {axes} strides, dilations and output_padding, got "
            f"{strides}, {dilations}, {extra}"
        )
    # output_padding below the stride: the spec allows up to the dilation too, but
    # onnxruntime refuses those outputs as inconsistent with the input's size
    if min(strides + dilations) < 1 or any(
        not 0 <= o < s for o, s in zip(extra, strides, strict=True)
    ):
        raise ModelError(
            f"{node.where}: strides {strides}, dilations {dilations} must be >= 1 and each "
            f"output_padding {extra} below its stride"
        )
    strides, dilations, extra = lift(strides, 1), lift(dilations, 1), lift(extra, 0)
    sizes = list(shape[2:])
    full = [
        s * (n - 1) + o + (k - 1) * d + 1
        for n, s, o, k, d in zip(sizes, strides, extra, w.shape[2:], dilations, strict=True)
    ]
    mode = node.choice("auto_pad", "NOTSET", _AUTO_PAD)
    if mode != "NOTSET" and "pads" in node.attrs:
        raise ModelError(f"{node.where}: pads given with auto_pad={mode}")
    asked = node.get("output_shape")
    if asked is not None or mode in ("SAME_UPPER", "SAME_LOWER"):
        if asked is not None:
            if len(asked) != axes:
                raise ModelError(f"{node.where}: output_shape {asked} is not {axes} spatial dims")
            target = lift([int(v) for v in asked], 1)
        else:
            target = [n * s for n, s in zip(sizes, strides, strict=True)]
        total = [f - t for f, t in zip(full, target, strict=True)]
        if min(total) < 0:
            raise ModelError(
                f"{node.where}: output_shape {asked} is not reachable (at most {full[-axes:]})"
            )
        begin = [t // 2 if mode == "SAME_UPPER" else t - t // 2 for t in total]
        return strides, dilations, extra, begin, [t - b for t, b in zip(total, begin, strict=True)]
    pads = [0] * 2 * axes if mode == "VALID" else [int(p) for p in node.get("pads", [0] * 2 * axes)]
    if len(pads) != 2 * axes or min(pads) < 0:
        raise ModelError(f"{node.where}: expected {2 * axes} non-negative pads, got {pads}")
    return strides, dilations, extra, lift(pads[:axes], 0), lift(pads[axes:], 0)


def _fold_affine(
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


def _pool_args(im: Importer, node: OnnxNode, x: str) -> tuple[list[int], _PoolOptions]:
    """The pool's kernel and its other keyword arguments (a 1-D pool's as a 2-D one's)."""
    kernel = [int(k) for k in node.get("kernel_shape", [])]
    spatial = _spatial(im, node, x, kernel)
    kernel = [1, *kernel] if len(kernel) == 1 else kernel
    return kernel, {**spatial, "ceil_mode": bool(node.get("ceil_mode", 0))}


def _maxpool(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    node.require("storage_order", 0, 0)
    if len(node.proto.output) > 1 and node.proto.output[1]:
        raise ModelError(f"{node.where}: the Indices output is not supported")
    kernel, args = _pool_args(im, node, ins[0])
    if len(im.b.shape(ins[0])) == 3:
        return _lower(im, im.b.max_pool(_lift(im, ins[0]), kernel, **args))
    return im.b.max_pool(ins[0], kernel, **args)


def _avgpool(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    kernel, args = _pool_args(im, node, ins[0])
    include = bool(node.get("count_include_pad", 0))
    if len(im.b.shape(ins[0])) == 3:
        pooled = im.b.avg_pool(_lift(im, ins[0]), kernel, count_include_pad=include, **args)
        return _lower(im, pooled)
    return im.b.avg_pool(ins[0], kernel, count_include_pad=include, **args)


def _global_pool(kind: str) -> Handler:
    def lower(im: Importer, node: OnnxNode, ins: list[str]) -> str:
        rank = len(im.b.shape(ins[0]))
        if rank < 3:
            raise ModelError(f"{node.where}: input must be [N, C, ...], got {im.b.shape(ins[0])}")
        return im.b.reduce(kind, ins[0], tuple(range(2, rank)), keepdims=True)

    return lower


def _layernorm(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    if len(node.proto.output) > 1 and any(node.proto.output[1:]):
        raise ModelError(f"{node.where}: the Mean/InvStdDev outputs are not supported")
    node.require("stash_type", 1, 1)
    rank = len(im.b.shape(ins[0]))
    axis = int(node.get("axis", -1))
    if not -rank <= axis < rank:
        raise ModelError(f"{node.where}: axis {axis} out of range for rank {rank}")
    beta = ins[2] if len(ins) > 2 and ins[2] else None
    return im.b.layer_norm(
        ins[0], ins[1], beta, axis=axis, epsilon=float(node.get("epsilon", 1e-5))
    )


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


_SPATIAL = {"auto_pad", "dilations", "kernel_shape", "pads", "strides"}
HANDLERS: HandlerTable = {
    "Gemm": ({"alpha", "beta", "transA", "transB", "broadcast"}, _gemm),
    "MatMul": (set(), _matmul),
    "Conv": (_SPATIAL | {"group"}, _conv),
    "ConvTranspose": (_SPATIAL | {"group", "output_padding", "output_shape"}, _conv_transpose),
    "MaxPool": (_SPATIAL | {"ceil_mode", "storage_order"}, _maxpool),
    "AveragePool": (_SPATIAL | {"ceil_mode", "count_include_pad"}, _avgpool),
    "GlobalAveragePool": (set(), _global_pool("mean")),
    "GlobalMaxPool": (set(), _global_pool("max")),
    "BatchNormalization": (_BN_ATTRS, _batchnorm),
    "LRN": ({"alpha", "beta", "bias", "size"}, _lrn),
    "LayerNormalization": ({"axis", "epsilon", "stash_type"}, _layernorm),
    "InstanceNormalization": ({"epsilon"}, _instance_norm),
    "Dropout": ({"ratio", "seed", "is_test"}, _dropout),
}

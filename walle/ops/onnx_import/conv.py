"""Convolution and pooling ONNX ops: Conv, ConvTranspose, MaxPool, AveragePool,
GlobalAveragePool, GlobalMaxPool.

Conv and the pools take ``auto_pad`` (NOTSET, VALID, SAME_UPPER, SAME_LOWER), resolved here
to explicit pads; pools take ``ceil_mode`` and AveragePool ``count_include_pad``. The
kernels are 2-D: a 1-D op runs as the 2-D one over [N, C, 1, L], a 3-D conv as one 2-D conv
over gathered depth planes and a 3-D pool as two 2-D pools.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, NamedTuple, TypedDict

import numpy as np

from walle.errors import ModelError
from walle.ops.ir import FloatArray, Region, contiguous_strides
from walle.ops.onnx_import import integer
from walle.ops.onnx_import.nn import fold_affine
from walle.ops.onnx_import.node import Handler, HandlerTable, OnnxNode

if TYPE_CHECKING:
    from walle.ops.onnx_import.core import Importer

_AUTO_PAD = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


class _Spatial(TypedDict):
    """Keyword arguments of ``conv2d`` and the pools: ONNX pads (top, left, bottom, right)."""

    strides: list[int]
    dilations: list[int]
    pads: list[int]


class _PoolOptions(_Spatial):
    """Keyword arguments shared by ``max_pool`` and ``avg_pool``."""

    ceil_mode: bool


def _check_rank(node: OnnxNode, shape: Sequence[int], kernel: Sequence[int]) -> None:
    if len(kernel) not in (1, 2, 3) or len(shape) != len(kernel) + 2:
        raise ModelError(
            f"{node.where}: only 1-D (NCL), 2-D (NCHW) and 3-D (NCDHW) inputs and kernels are "
            f"supported, got input {shape} and kernel {list(kernel)}"
        )


def _axes_attrs(
    im: Importer, node: OnnxNode, shape: Sequence[int], kernel: list[int]
) -> tuple[list[int], list[int], list[int]]:
    """strides, dilations and explicit pads (every start, then every end) of a Conv or pool
    over ``len(kernel)`` spatial axes, ``auto_pad`` resolved."""
    _check_rank(node, shape, kernel)
    axes = len(kernel)
    strides = [int(s) for s in node.get("strides", [1] * axes)]  # ONNX default: 1
    dilations = [int(d) for d in node.get("dilations", [1] * axes)]
    for label, values in (("kernel_shape", kernel), ("strides", strides), ("dilations", dilations)):
        if min(values, default=1) < 1:
            raise ModelError(f"{node.where}: {label} {values} must be >= 1")
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
    return strides, dilations, pads


def _spatial(im: Importer, node: OnnxNode, x: str, kernel: list[int]) -> _Spatial:
    """strides, dilations and explicit pads of a 1-D or 2-D Conv or pool, ``auto_pad``
    resolved; a 1-D one's ([N, C, L], kernel [k]) as those of the 2-D one over [N, C, 1, L]."""
    strides, dilations, pads = _axes_attrs(im, node, im.b.shape(x), kernel)
    if len(kernel) == 1:
        return {
            "strides": [1, *strides],
            "dilations": [1, *dilations],
            "pads": [0, pads[0], 0, pads[1]],
        }
    return {"strides": strides, "dilations": dilations, "pads": pads}


def _planes(strides: list[int], dilations: list[int], pads: list[int]) -> _Spatial:
    """The H and W part of a 3-D op's attributes, as a 2-D op's."""
    return {"strides": strides[1:], "dilations": dilations[1:], "pads": [*pads[1:3], *pads[4:]]}


def _view(im: Importer, x: str, shape: Sequence[int]) -> str:
    """``x`` reshaped, kept a constant where it is one (a conv's weights stay foldable)."""
    value = im.b.constant_value(x)
    if value is not None:
        return im.b.const(value.reshape(shape))
    return im.b.reshape(x, shape)


def _lift(im: Importer, x: str) -> str:
    """[A, B, L] as [A, B, 1, L]: a 1-D conv's or pool's input, or a conv's weight."""
    a, b, length = im.b.shape(x)
    return _view(im, x, (a, b, 1, length))


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
    bias = ins[2] if len(ins) > 2 and ins[2] else None
    quantized = _qdq_conv(im, node, bias)
    if quantized is not None:
        return quantized
    return conv(im, node, ins[0], ins[1], bias)


def integer_conv(
    im: Importer,
    node: OnnxNode,
    x: str,
    kind: str,
    zx: FloatArray | str,
    offset: FloatArray,
    bias: str | None,
) -> str | None:
    """conv(x - zx, offset) + bias as an integer conv (:func:`integer.conv_operands`): a
    2-D conv of one group; None where it is not one."""
    if offset.ndim != 4 or int(node.get("group", 1)) != 1:
        return None
    operands = integer.conv_operands(im, x, kind, zx, offset, bias)
    if operands is None:
        return None
    sums = conv(
        im,
        node,
        operands.x,
        operands.weight,
        operands.bias,
        fold=False,
        integer=True,
        fill=operands.fill,
    )
    return sums if operands.taken is None else im.b.binary("sub", sums, operands.taken)


def _qdq_conv(im: Importer, node: OnnxNode, bias: str | None) -> str | None:
    """A Conv of a dequantized quantizer output by dequantized constant weights (the QDQ
    format) as its integer sums times x's scale times w's (one, or one per output channel),
    plus the bias (see :mod:`.integer`); None where it is not one."""
    x = im.dequantized.get(node.proto.input[0])
    w = im.dequantized.get(node.proto.input[1])
    weights = None if w is None else im.b.constant_value(w.values)
    if x is None or w is None or weights is None or weights.ndim != 4:
        return None
    channels = weights.shape[0]
    if w.scale.size != 1 and not (w.axis in (0, -4) and w.scale.size == channels):
        return None
    if w.zero_point.size not in (1, channels):
        return None
    offset = (weights - w.zero_point.reshape(-1, 1, 1, 1)).astype(np.float32)
    sums = integer_conv(im, node, x.values, x.kind, x.zero_point, offset, None)
    if sums is None:
        return None
    b = im.b
    scale = (x.scale.reshape(()) * w.scale.reshape(-1)).astype(np.float32)
    y = b.binary("mul", sums, b.const(np.broadcast_to(scale, (channels,)).reshape(-1, 1, 1)))
    return y if bias is None else b.binary("add", y, b.reshape(bias, (channels, 1, 1)))


def conv(
    im: Importer,
    node: OnnxNode,
    x: str,
    weight: str,
    bias: str | None,
    fold: bool = True,
    integer: bool = False,
    fill: float | str = 0.0,
) -> str:
    """The convolution of ``x`` by ``weight`` (+ ``bias``) with ``node``'s Conv attributes;
    with ``fold``, the per-channel affine nodes after it folded in (see nn.fold_affine).
    ConvInteger and QLinearConv (:mod:`.quantize`) convolve without folding: what follows
    them reads their integer or requantized output, not the sums; a 2-D one of a quantized
    value is ``integer`` (composites.conv2d's), its pads filled with ``fill``: a number, or
    a scalar value computed at run time (x padded as pad(x - fill) + fill)."""
    wshape = im.b.shape(weight)
    kernel = [int(k) for k in node.get("kernel_shape", wshape[2:])]
    if list(wshape[2:]) != kernel:
        raise ModelError(f"{node.where}: kernel_shape {kernel} differs from weight {wshape}")
    group = int(node.get("group", 1))
    if len(kernel) == 3:
        return _conv3d(im, node, x, weight, bias, group, kernel)
    args = _spatial(im, node, x, kernel)
    if len(kernel) == 1:  # the 2-D conv over [N, C, 1, L]; what follows is not folded
        y = im.b.conv2d(_lift(im, x), _lift(im, weight), bias, group=group, **args)
        return _lower(im, y)
    folded = fold_affine(im, node, weight, bias) if fold else None
    if folded is not None:
        weight, bias = folded
    if isinstance(fill, str):
        top, left, bottom, right = args["pads"]
        if any(args["pads"]):
            b = im.b
            padded = b.pad(b.binary("sub", x, fill), [(0, 0), (0, 0), (top, bottom), (left, right)])
            x = b.binary("add", padded, fill)
        args["pads"], fill = [0, 0, 0, 0], 0.0
    return im.b.conv2d(x, weight, bias, group=group, integer=integer, fill=fill, **args)


def _conv3d(
    im: Importer,
    node: OnnxNode,
    x: str,
    weight: str,
    bias: str | None,
    group: int,
    kernel: list[int],
) -> str:
    """A 3-D conv as one 2-D conv: each output depth's KD input planes gathered into the
    channels of one image ([N * OD, C * KD, H, W], one raster) and convolved with the weights
    viewed as [Cout, C / group * KD, KH, KW] (each group's channels stay one block); the
    output depths then move from the batch back behind the channels. What follows it is not
    folded."""
    strides, dilations, pads = _axes_attrs(im, node, im.b.shape(x), kernel)
    n, c, depth, h, w = im.b.shape(x)
    if pads[0] or pads[3]:
        x = im.b.pad(x, [(0, 0), (0, 0), (pads[0], pads[3]), (0, 0), (0, 0)])
        depth += pads[0] + pads[3]
    kd, stride, dilation = kernel[0], strides[0], dilations[0]
    od = (depth - dilation * (kd - 1) - 1) // stride + 1
    if od < 1:
        raise ModelError(f"{node.where}: the kernel does not fit the input's depth {depth}")
    plane = h * w
    gathered = (n, od, c, kd, plane)
    region = Region(
        0,
        0,
        (c * depth * plane, stride * plane, depth * plane, dilation * plane, 1),
        0,
        contiguous_strides(gathered),
        gathered,
    )
    cols = im.b.raster([x], (n * od, c * kd, h, w), [region])
    cout, per_group = im.b.shape(weight)[:2]
    flat = _view(im, weight, (cout, per_group * kd, kernel[1], kernel[2]))
    y = im.b.conv2d(cols, flat, bias, group=group, **_planes(strides, dilations, pads))
    oh, ow = im.b.shape(y)[2:]
    return im.b.transpose(im.b.reshape(y, (n, od, cout, oh, ow)), (0, 2, 1, 3, 4))


def _conv_transpose(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """ConvTranspose from the atomic ops, so every backend runs it: the weights' input and
    output channels swapped per group (they must be a constant: rearranged here), then, at
    dilation 1, one small conv per stride phase (:func:`_by_phase`); dilated, the direct conv
    it equals over its input spread ``strides`` apart with zeros between (:func:`_spread`).
    1-D as 2-D over [N, C, 1, L]."""
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
    sizes = _transposed_sizes(node, im.b.shape(x), w, one_d)
    c_in, c_out, kh, kw = w.shape
    swapped = (
        w.reshape(group, c_in // group, c_out, kh, kw)
        .transpose(0, 2, 1, 3, 4)
        .reshape(group * c_out, c_in // group, kh, kw)
    )
    if sizes.dilations == [1, 1]:
        y = _by_phase(im, x, swapped, bias, group, sizes)
    else:
        y = _spread(im, x, swapped, bias, group, sizes)
    return _lower(im, y) if one_d else y


class _Transposed(NamedTuple):
    """A 2-D ConvTranspose's strides, dilations, output_padding and the pads at the start
    and end of each spatial axis (auto_pad and output_shape resolved)."""

    strides: list[int]
    dilations: list[int]
    extra: list[int]
    begin: list[int]
    end: list[int]


def _by_phase(
    im: Importer, x: str, swapped: FloatArray, bias: str | None, group: int, t: _Transposed
) -> str:
    """A ConvTranspose at dilation 1 as one stride-1 conv per stride phase: output position
    q (counted before the pads) = m * s + r takes the kernel taps r, r + s, ..., so phase r is
    the conv of the input, padded by its taps - 1 at each end, with those taps flipped; the
    phases' outputs interleave into the output through one raster that crops the pads on the
    way. Every multiply-add is one a scatter-add does: the spread input's zeros cost the
    strides' product in work (4x at stride 2). The bias rides the phase convs where they
    cover every output, else it is added after."""
    n, _, ih, iw = im.b.shape(x)
    cout, _, kh, kw = swapped.shape
    (sh, sw), (bh, bw) = t.strides, t.begin
    out = [
        s * (i - 1) + o + k - b - e
        for i, s, o, k, b, e in zip(
            (ih, iw), t.strides, t.extra, (kh, kw), t.begin, t.end, strict=True
        )
    ]
    covered = kh >= sh and kw >= sw and all(o <= e for o, e in zip(t.extra, t.end, strict=True))
    # phases with taps of one shape share their padded input: one conv for them all, their
    # weights stacked along the output channels (an ungrouped conv; a grouped one's
    # channels would interleave per group), so the product is one GEMM of more rows
    shapes: dict[tuple[int, ...], list[tuple[int, int, FloatArray]]] = {}
    for rh in range(sh):
        for rw in range(sw):
            taps = swapped[:, :, rh::sh, rw::sw]
            if taps.size:  # none where the kernel is narrower than the stride
                key = taps.shape[2:] if group == 1 else (rh, rw)
                shapes.setdefault(key, []).append((rh, rw, taps[:, :, ::-1, ::-1]))
    dst = contiguous_strides((n, cout, *out))
    phases: list[str] = []
    regions: list[Region] = []
    for members in shapes.values():
        th, tw = members[0][2].shape[2:]
        weights = im.b.const(np.ascontiguousarray(np.concatenate([m[2] for m in members])))
        stacked = None
        if bias is not None and covered:
            stacked = bias if len(members) == 1 else im.b.concat([bias] * len(members), 0)
        pads = [th - 1, tw - 1, th - 1, tw - 1]
        phases.append(im.b.conv2d(x, weights, stacked, pads=pads, group=group))
        lh, lw = ih + th - 1, iw + tw - 1
        for j, (rh, rw, _) in enumerate(members):
            rows = _phase_range(lh, rh, sh, bh, out[0])
            cols = _phase_range(lw, rw, sw, bw, out[1])
            if rows is None or cols is None:
                continue
            regions.append(
                Region(
                    len(phases) - 1,
                    j * cout * lh * lw + rows[0] * lw + cols[0],
                    (len(members) * cout * lh * lw, lh * lw, lw, 1),
                    (rows[0] * sh + rh - bh) * dst[2] + cols[0] * sw + rw - bw,
                    (dst[0], dst[1], sh * dst[2], sw),
                    (n, cout, rows[1], cols[1]),
                )
            )
    y = im.b.raster(phases, (n, cout, *out), regions, fill=0.0)
    if bias is not None and not covered:
        y = im.b.binary("add", y, im.b.reshape(bias, (cout, 1, 1)))
    return y


def _phase_range(length: int, r: int, s: int, begin: int, out: int) -> tuple[int, int] | None:
    """(first m, count) of a phase's ``length`` outputs m whose position m * s + r - begin
    falls in [0, out); None when none does."""
    first = max(0, -(-(begin - r) // s))
    last = min(length - 1, (begin + out - 1 - r) // s)
    return (first, last - first + 1) if last >= first else None


def _spread(
    im: Importer, x: str, swapped: FloatArray, bias: str | None, group: int, t: _Transposed
) -> str:
    """The direct conv a ConvTranspose equals: its input spread ``strides`` apart with zeros
    between, padded by dilation * (kernel - 1) less the pads at each end (plus
    ``output_padding`` after; cropped where the pads reach past the kernel), convolved at
    stride 1 with the weights flipped."""
    kernel = [d * (k - 1) for k, d in zip(swapped.shape[2:], t.dilations, strict=True)]
    before = [k - b for k, b in zip(kernel, t.begin, strict=True)]
    after = [k - e + o for k, e, o in zip(kernel, t.end, t.extra, strict=True)]
    spread = im.b.spread(x, t.strides, [max(b, 0) for b in before], [max(a, 0) for a in after])
    if min(before + after) < 0:
        _, _, hp, wp = im.b.shape(spread)
        stops = [hp + min(after[0], 0), wp + min(after[1], 0)]
        spread = im.b.slice(spread, [-min(b, 0) for b in before], stops, [2, 3])
    flipped = im.b.const(np.ascontiguousarray(swapped[:, :, ::-1, ::-1]))
    return im.b.conv2d(spread, flipped, bias, dilations=t.dilations, group=group)


def _transposed_sizes(
    node: OnnxNode, shape: Sequence[int], w: FloatArray, one_d: bool
) -> _Transposed:
    """A 2-D ConvTranspose's attributes, auto_pad and output_shape resolved as the spec and
    onnxruntime do (pads from the output size asked for, the odd one at the start but for
    SAME_UPPER); a 1-D one's as those over [N, C, 1, L]."""
    axes = 1 if one_d else 2

    def lift(values: list[int], pad: int) -> list[int]:
        return [pad, *values] if one_d else list(values)

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
        end = [t - b for t, b in zip(total, begin, strict=True)]
        return _Transposed(strides, dilations, extra, begin, end)
    pads = [0] * 2 * axes if mode == "VALID" else [int(p) for p in node.get("pads", [0] * 2 * axes)]
    if len(pads) != 2 * axes or min(pads) < 0:
        raise ModelError(f"{node.where}: expected {2 * axes} non-negative pads, got {pads}")
    return _Transposed(strides, dilations, extra, lift(pads[:axes], 0), lift(pads[axes:], 0))


def _pool_args(im: Importer, node: OnnxNode, x: str) -> tuple[list[int], _PoolOptions]:
    """The pool's kernel and its other keyword arguments (a 1-D pool's as a 2-D one's)."""
    kernel = [int(k) for k in node.get("kernel_shape", [])]
    spatial = _spatial(im, node, x, kernel)
    kernel = [1, *kernel] if len(kernel) == 1 else kernel
    return kernel, {**spatial, "ceil_mode": bool(node.get("ceil_mode", 0))}


def _pool3d(im: Importer, node: OnnxNode, x: str, pool: Callable[..., str]) -> str:
    """A 3-D pool as two 2-D ones (a box's max, or its mean over the elements it counts, is
    one over the planes of the maxima or means over each plane): over H and W with the depth
    planes as channels ([N, C * D, H, W]), then over the depth with each output plane as one
    row ([N, C, D, OH * OW], kernel [KD, 1])."""
    kernel = [int(k) for k in node.get("kernel_shape", [])]
    strides, dilations, pads = _axes_attrs(im, node, im.b.shape(x), kernel)
    ceil_mode = bool(node.get("ceil_mode", 0))
    n, c, depth, h, w = im.b.shape(x)
    planes = pool(
        im.b.reshape(x, (n, c * depth, h, w)),
        kernel[1:],
        ceil_mode=ceil_mode,
        **_planes(strides, dilations, pads),
    )
    oh, ow = im.b.shape(planes)[2:]
    deep = pool(
        im.b.reshape(planes, (n, c, depth, oh * ow)),
        [kernel[0], 1],
        strides=[strides[0], 1],
        dilations=[dilations[0], 1],
        pads=[pads[0], 0, pads[3], 0],
        ceil_mode=ceil_mode,
    )
    return im.b.reshape(deep, (n, c, im.b.shape(deep)[2], oh, ow))


def _maxpool(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    node.require("storage_order", 0, 0)
    if len(node.proto.output) > 1 and node.proto.output[1]:
        raise ModelError(f"{node.where}: the Indices output is not supported")
    if len(im.b.shape(ins[0])) == 5:
        return _pool3d(im, node, ins[0], im.b.max_pool)
    kernel, args = _pool_args(im, node, ins[0])
    if len(im.b.shape(ins[0])) == 3:
        return _lower(im, im.b.max_pool(_lift(im, ins[0]), kernel, **args))
    return im.b.max_pool(ins[0], kernel, **args)


def _avgpool(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    include = bool(node.get("count_include_pad", 0))
    if len(im.b.shape(ins[0])) == 5:
        pool = partial(im.b.avg_pool, count_include_pad=include)
        return _pool3d(im, node, ins[0], pool)
    kernel, args = _pool_args(im, node, ins[0])
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


_SPATIAL = {"auto_pad", "dilations", "kernel_shape", "pads", "strides"}
HANDLERS: HandlerTable = {
    "Conv": (_SPATIAL | {"group"}, _conv),
    "ConvTranspose": (_SPATIAL | {"group", "output_padding", "output_shape"}, _conv_transpose),
    "MaxPool": (_SPATIAL | {"ceil_mode", "storage_order"}, _maxpool),
    "AveragePool": (_SPATIAL | {"ceil_mode", "count_include_pad"}, _avgpool),
    "GlobalAveragePool": (set(), _global_pool("mean")),
    "GlobalMaxPool": (set(), _global_pool("max")),
}

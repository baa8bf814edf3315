"""ONNX Resize (opset 11 on): nearest, linear and cubic, axis by axis, from constant scales or
sizes.

walle plans static shapes, so every output position's source taps and their weights are known
at import: each resized axis becomes, per tap, a take of the input's slabs at the taps'
indices (a raster) times the taps' weights along that axis, summed over the taps. Nearest has
one tap and no weights: one take over every resized axis (``GraphBuilder.take_axes``), which
writes the output once. The taps follow the spec's coordinate transformation and, outside the
input, repeat its edge (or, for cubic with ``exclude_outside``, drop out and the rest are
renormalised). Refused, naming the attribute: antialias for linear and cubic, and the
transformations that read ``roi`` (tf_crop_and_resize) or predate opset 13. Upsample (opsets
7 to 9) and Resize at opset 10 run as the ``asymmetric`` transformation with onnxruntime's
rounding (:func:`_legacy`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from walle.errors import ModelError
from walle.ops.ir import MAX_ELEMENTS, MAX_TAKE
from walle.ops.onnx_import.node import HandlerTable, OnnxNode

if TYPE_CHECKING:
    from walle.ops.onnx_import.core import Importer

_MODES = ("nearest", "linear", "cubic")
_TRANSFORMS = (
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
)
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _resize(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    if im.opset < 11:
        return _legacy(im, node, ins)
    shape = im.b.shape(ins[0])
    rank = len(shape)
    mode = node.choice("mode", "nearest", _MODES)
    transform = node.choice("coordinate_transformation_mode", "half_pixel", _TRANSFORMS)
    nearest = node.choice("nearest_mode", "round_prefer_floor", _NEAREST)
    node.choice("keep_aspect_ratio_policy", "stretch", ("stretch",))
    if mode != "nearest" and int(node.get("antialias", 0)):
        raise ModelError(f"{node.where}: antialias=1 is not supported")
    axes = [a + rank if a < 0 else a for a in node.get("axes", range(rank))]
    if sorted(set(axes)) != sorted(axes) or any(not 0 <= a < rank for a in axes):
        raise ModelError(f"{node.where}: axes {axes} are not distinct axes of rank {rank}")
    scales_in = node.input_name(2)
    empty = im.constant(scales_in) if scales_in else None
    if empty is not None and empty.size == 0:
        scales_in = ""  # an empty scales tensor beside sizes: the spec's "not given"
    sizes = node.ints(im, 3)
    if (sizes is None) == (not scales_in):
        raise ModelError(f"{node.where}: exactly one of scales and sizes must be given")
    if sizes is not None:
        if len(sizes) != len(axes) or min(sizes, default=1) < 1:
            raise ModelError(f"{node.where}: sizes {sizes} must be {len(axes)} dims >= 1")
        outs = dict(zip(axes, sizes, strict=True))
        scales = {a: outs[a] / shape[a] for a in axes}
    else:
        given = [float(v) for v in im.const(scales_in, node.where).reshape(-1)]
        if len(given) != len(axes) or min(given, default=1.0) <= 0:
            raise ModelError(f"{node.where}: scales {given} must be {len(axes)} values > 0")
        scales = dict(zip(axes, given, strict=True))
        outs = {a: math.floor(shape[a] * scales[a]) for a in axes}
        if min(outs.values(), default=1) < 1:
            raise ModelError(f"{node.where}: scales {given} give an empty output")
        # a scale that is out / dim as float32 writes it (0.6 for 3 of 5: 5 * 0.6 is 3 + 1e-7)
        # gives a whole length, whatever its product's last bits
        fractional = [
            shape[a] * scales[a]
            for a in axes
            if np.float32(outs[a] / shape[a]) != np.float32(scales[a])
        ]
        if transform == "align_corners" and fractional:
            # the spec maps by the unfloored length (2.4 for 4 at 0.6), onnxruntime by the
            # output's (2): refused, not guessed
            raise ModelError(
                f"{node.where}: align_corners with scales {[f'{v:g}' for v in given]} that "
                "give a fractional "
                f"length ({fractional[0]:g}) is not supported: the spec and onnxruntime differ"
            )
    a = float(node.get("cubic_coeff_a", -0.75))
    exclude = bool(int(node.get("exclude_outside", 0)))
    rounding = dict.fromkeys(axes, nearest)
    return _resized(im, node, ins[0], outs, scales, transform, mode, rounding, a, exclude)


def _legacy(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    """Upsample (opsets 7 to 9; deprecated since 10, which keeps 9's form) and Resize at
    opset 10: nearest or linear by scales (an attribute before opset 9, else a constant
    input), output floor(dim * scale), coordinates ``asymmetric``. As onnxruntime reads
    them (checked against it): a nearest axis rounds down where it grows and up where it
    shrinks, and Upsample's scales are at least 1."""
    upsample = node.proto.op_type == "Upsample"
    if upsample and im.opset < 7:
        raise ModelError(f"{node.where}: Upsample before opset 7 (height_scale) is not supported")
    shape = im.b.shape(ins[0])
    mode = node.choice("mode", "nearest", ("nearest", "linear"))
    if upsample and im.opset < 9:
        given = [float(v) for v in node.get("scales", [])]
    elif not node.input_name(1):
        raise ModelError(f"{node.where}: the scales input is missing")
    else:
        given = [float(v) for v in im.const(node.input_name(1), node.where).reshape(-1)]
    least = 1.0 if upsample else 0.0
    if len(given) != len(shape) or any(not v >= least for v in given) or 0.0 in given:
        raise ModelError(
            f"{node.where}: scales {given} must be {len(shape)} values "
            f"{'>= 1' if upsample else '> 0'}"
        )
    axes = list(range(len(shape)))
    if mode == "linear" and _kernel_axes(given, mode) is None:
        raise ModelError(
            f"{node.where}: linear mode before opset 11 interpolates 2-D and 3-D inputs, 4-D "
            f"ones with scales [1, 1, h, w] or [1, h, w, 1] and 5-D ones with [1, 1, d, h, w], "
            f"not {given}"
        )
    scales = {i: given[i] for i in axes}
    outs = {i: math.floor(shape[i] * scales[i]) for i in axes}
    if min(outs.values(), default=1) < 1:
        raise ModelError(f"{node.where}: scales {given} give an empty output")
    rounding = {i: "ceil" if scales[i] < 1 else "floor" for i in axes}
    return _resized(im, node, ins[0], outs, scales, "asymmetric", mode, rounding, -0.75, False)


def _kernel_axes(scales: list[float], mode: str) -> list[int] | None:
    """The axes onnxruntime's fixed linear and cubic kernels interpolate, each even at scale
    1, by layout (None where it has none and interpolates only the scaled axes): linear
    every axis of a 2-D or 3-D input, the last two of a 4-D one whose first two scales are
    1 (the middle two where the first and last are: NHWC), the last three of a 5-D one
    whose first two are; cubic a 2-D input's axes and the last two of such a 4-D one."""
    rank = len(scales)
    if rank == 2 or (rank == 3 and mode == "linear"):
        return list(range(rank))
    if (rank == 4 or (rank == 5 and mode == "linear")) and scales[0] == scales[1] == 1.0:
        return list(range(2, rank))
    if rank == 4 and mode == "linear" and scales[0] == scales[3] == 1.0:
        return [1, 2]
    return None


def _resized(
    im: Importer,
    node: OnnxNode,
    y: str,
    outs: dict[int, int],
    scales: dict[int, float],
    transform: str,
    mode: str,
    rounding: dict[int, str],
    a: float,
    exclude: bool,
) -> str:
    """``y`` resized to ``outs`` along each of its axes (``rounding``: each axis's nearest
    mode). As in onnxruntime: an output of the input's shape is the input (whatever the
    scales); else an axis whose length stays is left as it is, but for linear and cubic
    where it is one of the axes onnxruntime's kernel interpolates (:func:`_kernel_axes`):
    there its taps weigh 1 and 0, and a NaN or inf beside a position reaches it (inf * 0)."""
    shape = im.b.shape(y)
    full = [scales.get(i, 1.0) for i in range(len(shape))]
    if all(outs[i] == shape[i] for i in outs):  # a copy there, whatever the scales
        return y
    kept = set(_kernel_axes(full, mode) or ()) if mode != "nearest" else set()
    outs = {i: n for i, n in outs.items() if n != shape[i] or full[i] != 1.0 or i in kept}
    resized = [outs.get(i, d) for i, d in enumerate(shape)]
    if math.prod(resized) > MAX_ELEMENTS or max(outs.values(), default=1) > MAX_TAKE:
        raise ModelError(
            f"{node.where}: output shape {resized} holds more than {MAX_ELEMENTS:,} elements "
            f"or more than {MAX_TAKE:,} along an axis"
        )
    # a pass along the innermost axis copies a float at a time (its slabs are single floats),
    # the others whole rows: so the axes that shrink go first, outermost first, and those
    # that grow last, innermost first, and the innermost pass runs where the tensor is
    # smallest (resize_bench.py: 2x upsamplings 0.67-0.94x the time of the axes in order)
    order = sorted(outs, key=lambda i: (outs[i] > shape[i], -i if outs[i] > shape[i] else i))
    taps = {
        i: _taps(shape[i], outs[i], scales[i], transform, mode, rounding[i], a, exclude)
        for i in order
    }
    if mode == "nearest":  # one take over every axis: the output written once
        moved = {i: t[0][0] for i, t in taps.items() if t[0][0] != list(range(shape[i]))}
        return im.b.take_axes(y, moved) if moved else y
    for axis in order:
        y = _resample(im, y, axis, taps[axis])
    return y


def _taps(
    size: int,
    out: int,
    scale: float,
    transform: str,
    mode: str,
    nearest: str,
    a: float,
    exclude: bool,
) -> list[tuple[list[int], np.ndarray]]:
    """Per tap, the input index and the weight of each output position along one axis.
    Taps of weight 0 stay (a NaN or inf there makes the output NaN, as in onnxruntime and
    ONNX's reference). Linear as onnxruntime sets it up: the coordinate clamped to [0, size
    - 1], taps floor and floor + 1 (at most size - 1), each weighing 1/2 where they are the
    same (at the last position: an inf there stays inf)."""
    x = _source(np.arange(out, dtype=np.float64), size, out, scale, transform)
    if mode == "nearest":
        index = _round(x, nearest)
        return [(np.clip(index, 0, size - 1).tolist(), np.ones(out))]
    if mode == "linear":
        x = np.clip(x, 0.0, size - 1.0)
    base = np.floor(x)
    r = x - base
    if mode == "linear":
        offsets, weights = [0, 1], [1.0 - r, r]
    else:
        offsets = [-1, 0, 1, 2]
        weights = [_cubic(1.0 + r, a), _cubic(r, a), _cubic(1.0 - r, a), _cubic(2.0 - r, a)]
    indices = [base.astype(np.int64) + o for o in offsets]
    if mode == "linear":
        same = np.minimum(indices[1], size - 1) == indices[0]
        weights = [np.where(same, 0.5, w) for w in weights]
    if exclude and mode == "cubic":
        inside = [(i >= 0) & (i < size) for i in indices]
        weights = [np.where(k, w, 0.0) for w, k in zip(weights, inside, strict=True)]
        total = np.sum(weights, axis=0)
        weights = [w / total for w in weights]
    return [(np.clip(i, 0, size - 1).tolist(), w) for i, w in zip(indices, weights, strict=True)]


def _source(x: np.ndarray, size: int, out: int, scale: float, transform: str) -> np.ndarray:
    """The input coordinate of each output position ``x`` (the spec's transformations),
    computed in float32 in onnxruntime's order of operations (``half_pixel_symmetric``
    partly in double, as there): a coordinate that lands on a nearest-rounding tie (x.5)
    lands on the same side of it as there."""
    f = np.float32
    x, s, length = x.astype(f), f(scale), f(size)
    half = f(0.5)
    source: np.ndarray
    if transform == "asymmetric":
        source = x / s
    elif transform == "align_corners":
        source = np.zeros_like(x) if out == 1 else x * (length - 1) / f(out - 1)
    elif transform == "pytorch_half_pixel" and out == 1:
        source = np.zeros_like(x)
    elif transform == "half_pixel_symmetric":  # its offset in float32, the rest in double
        offset = length / f(2) * (f(1) - f(out) / (s * length))
        source = (np.float64(offset) + (x.astype(np.float64) + 0.5) / np.float64(s) - 0.5).astype(f)
    else:
        source = (x + half) / s - half
    return source.astype(np.float64)


def _round(x: np.ndarray, nearest: str) -> np.ndarray:
    """Nearest input index by ``nearest_mode`` (ties: .5 exactly)."""
    rounded: np.ndarray
    if nearest == "floor":
        rounded = np.floor(x)
    elif nearest == "ceil":
        rounded = np.ceil(x)
    else:
        tie = (x - np.floor(x)) == 0.5
        rounded = np.floor(x + 0.5)
        if nearest == "round_prefer_floor":
            rounded = np.where(tie, np.floor(x), rounded)
    return rounded.astype(np.int64)


def _cubic(d: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution weight at distance ``d`` (0 <= d < 2) with coefficient ``a``."""
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    weight: np.ndarray = np.where(d <= 1, near, far)
    return weight


def _resample(im: Importer, x: str, axis: int, taps: list[tuple[list[int], np.ndarray]]) -> str:
    """The sum over ``taps`` of the input's slabs at each tap's indices times its weights,
    the weights varying along ``axis``. An axis whose one tap takes every slab in order with
    weight 1 is left as it is."""
    shape = im.b.shape(x)
    if len(taps) == 1 and taps[0][0] == list(range(shape[axis])) and np.all(taps[0][1] == 1):
        return x
    along = [1] * len(shape)
    along[axis] = -1
    total = None
    for indices, weights in taps:
        term = im.b.take(x, indices, axis)
        if np.any(weights != 1.0):
            scale = im.b.const(weights.astype(np.float32).reshape(along))
            term = im.b.binary("mul", term, scale)
        total = term if total is None else im.b.binary("add", total, term)
    assert total is not None  # a resize has at least one tap of non-zero weight
    return total


HANDLERS: HandlerTable = {
    "Upsample": ({"mode", "scales"}, _legacy),
    "Resize": (
        {
            "mode",
            "coordinate_transformation_mode",
            "nearest_mode",
            "cubic_coeff_a",
            "exclude_outside",
            "extrapolation_value",
            "antialias",
            "axes",
            "keep_aspect_ratio_policy",
        },
        _resize,
    ),
}

"""The living definition of each atomic op, in plain numpy (no buffers, no speed).

Used for constant folding at build time, as the oracle of the backend parity tests, and by
``run_reference`` to evaluate a whole graph.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from walle.errors import ModelError
from walle.ops.ir import (
    ARG_KINDS,
    FloatArray,
    Graph,
    Node,
    Region,
    check_index_input,
    check_indices,
)


def _erfc(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """erfc(a) for a >= 0 in float64 (Abramowitz-Stegun 7.1.26, |error| < 1.5e-7)."""
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    result: npt.NDArray[np.float64] = poly * np.exp(-a * a)
    return result


def _as_float32(y: npt.NDArray[np.float64], out: FloatArray | None) -> FloatArray:
    if out is None:
        return y.astype(np.float32)
    np.copyto(out, y, casting="same_kind")
    return out


def erf(x: FloatArray, out: FloatArray | None = None) -> FloatArray:
    """Error function in float32 (Abramowitz-Stegun 7.1.26, |error| < 1.5e-7).

    numpy has no erf ufunc; this is vectorised and exact enough for float32.
    """
    return _as_float32(np.copysign(1.0 - _erfc(np.abs(x, dtype=np.float64)), x), out)


def gelu(x: FloatArray, out: FloatArray | None = None) -> FloatArray:
    """GELU, x * 0.5 * (1 + erf(x / sqrt 2)), in float64 with :func:`erf`'s formula (its
    |error| < 1.5e-7 is < 7.5e-8 of |x| here); -inf gives NaN, as the formula does."""
    x64 = x.astype(np.float64)
    with np.errstate(invalid="ignore"):
        # 1 + erf(x / sqrt 2) as 2 - erfc for x >= 0 and erfc(|x| / sqrt 2) below
        erfc = _erfc(np.abs(x64) / np.sqrt(2.0))
        return _as_float32(x64 * 0.5 * np.where(x64 >= 0, 2.0 - erfc, erfc), out)


def _sigmoid(x: FloatArray) -> FloatArray:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


class Reduction(Protocol):
    """A numpy reduction called as ``fn(x, axis=axes, keepdims=...)`` (np.sum, np.max, ...)."""

    def __call__(
        self, a: FloatArray, /, *, axis: tuple[int, ...], keepdims: bool
    ) -> npt.ArrayLike: ...


UNARY: dict[str, Callable[[FloatArray], npt.ArrayLike]] = {
    "identity": lambda x: x.copy(),
    "neg": np.negative,
    "abs": np.abs,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "reciprocal": np.reciprocal,
    "relu": lambda x: np.maximum(x, np.float32(0)),
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "erf": erf,
    "gelu": gelu,
    "floor": np.floor,
    "ceil": np.ceil,
    "round": np.rint,  # halves to even, as ONNX's Round
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "asin": np.arcsin,
    "acos": np.arccos,
    "atan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "asinh": np.arcsinh,
    "acosh": np.arccosh,
    "atanh": np.arctanh,
}


class BinaryFn(Protocol):
    """A binary op called as ``fn(a, b)`` or ``fn(a, b, out=buf)`` (a ufunc or like one)."""

    def __call__(self, a: FloatArray, b: FloatArray, /, *, out: FloatArray = ...) -> Any: ...


def _compare(ufunc: np.ufunc) -> BinaryFn:
    """A comparison as float32 1.0 (true) and 0.0 (false)."""

    def compare(a: FloatArray, b: FloatArray, /, *, out: FloatArray | None = None) -> Any:
        hit = ufunc(a, b)
        if out is None:
            return np.asarray(hit, np.float32)
        np.copyto(out, hit)
        return out

    return compare


def _mask(a: FloatArray, b: FloatArray, /, *, out: FloatArray | None = None) -> Any:
    """b where a is nonzero, 0 elsewhere."""
    y = np.where(a != 0, b, np.float32(0)).astype(np.float32)
    if out is None:
        return y
    np.copyto(out, y)
    return out


BINARY: dict[str, BinaryFn] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "max": np.maximum,
    "min": np.minimum,
    "pow": np.power,
    "eq": _compare(np.equal),
    "gt": _compare(np.greater),
    "ge": _compare(np.greater_equal),
    "lt": _compare(np.less),
    "le": _compare(np.less_equal),
    "mask": _mask,
    "fmod": np.fmod,
    "fmax": np.fmax,
    "fmin": np.fmin,
}


def arg_reduce(
    x: FloatArray,
    /,
    *,
    axis: tuple[int, ...],
    keepdims: bool,
    kind: str,
    out: FloatArray | None = None,
) -> FloatArray:
    """The index of the largest ("argmax") or smallest ("argmin") value along the one axis
    in ``axis``, as float32; "_last" kinds take the last index of a tie. A value wins when
    it compares greater (less) than the best so far, which starts at the first: NaN never
    wins, and a NaN first keeps index 0 (onnxruntime's ArgMax/ArgMin; numpy's argmax
    picks the first NaN instead)."""
    (a,) = axis
    rows = np.moveaxis(x, a, -1)
    extreme = np.fmax if kind.startswith("argmax") else np.fmin  # NaN only where all are
    hits = rows == extreme.reduce(rows, axis=-1, keepdims=True)
    if kind.endswith("_last"):
        index = rows.shape[-1] - 1 - np.argmax(hits[..., ::-1], axis=-1)
    else:
        index = np.argmax(hits, axis=-1)
    index = np.where(np.isnan(rows[..., 0]), 0, index)
    y = (np.expand_dims(index, a) if keepdims else index).astype(np.float32)
    if out is None:
        return y
    np.copyto(out, y.reshape(out.shape))
    return out


REDUCE: dict[str, Reduction] = {
    "sum": np.sum,
    "mean": np.mean,
    "max": np.max,
    "min": np.min,
    **{kind: partial(arg_reduce, kind=kind) for kind in ARG_KINDS},
    "fmax": partial(np.fmax.reduce, initial=-np.inf),  # NaN left out; -inf if all NaN
    "fmin": partial(np.fmin.reduce, initial=np.inf),
}


def topk(x: FloatArray, axis: int, k: int, largest: bool) -> FloatArray:
    """The indices (as float32) of the ``k`` largest (or smallest) values of ``x`` along
    ``axis``, in order: NaN ranks above every number, ties go to the lower index."""
    rows = np.moveaxis(x, axis, -1)
    nan = np.isnan(rows)
    number = np.where(nan, np.float32(0), rows)
    index = np.broadcast_to(np.arange(rows.shape[-1]), rows.shape)
    if largest:  # NaN first, then the values downwards, then the index upwards
        order = np.lexsort((index, -number, ~nan), axis=-1)
    else:  # the values upwards, NaN last, then the index upwards
        order = np.lexsort((index, number, nan), axis=-1)
    return np.ascontiguousarray(np.moveaxis(order[..., :k], -1, axis), dtype=np.float32)


def cumsum(x: FloatArray, axis: int, exclusive: bool, reverse: bool) -> FloatArray:
    """Running float32 sums along ``axis`` (see :meth:`GraphBuilder.cumsum`)."""
    y = np.flip(x, axis) if reverse else x
    y = np.cumsum(y, axis=axis, dtype=np.float32)
    if exclusive:  # each sum of the ones before: shifted one on, 0 first
        y = np.roll(y, 1, axis)
        first = [slice(None)] * y.ndim
        first[axis] = slice(0, 1)
        y[tuple(first)] = 0
    return np.ascontiguousarray(np.flip(y, axis) if reverse else y, dtype=np.float32)


def gather_elements(data: FloatArray, indices: FloatArray, axis: int) -> FloatArray:
    """numpy's take_along_axis over data cut to the indices' dims off ``axis`` (ONNX's
    GatherElements); negative indices count from the end (checked by the caller)."""
    cut = tuple(slice(None) if d == axis else slice(0, n) for d, n in enumerate(indices.shape))
    part = data[cut]
    at = indices.astype(np.int64)
    at = np.where(at < 0, at + data.shape[axis], at)
    return np.take_along_axis(part, at, axis).astype(np.float32)


def raster(
    inputs: list[FloatArray],
    shape: tuple[int, ...],
    regions: tuple[Region, ...],
    fill: float | None,
) -> FloatArray:
    """Apply the region copies to a fresh output (``fill`` or zeros elsewhere)."""
    out = np.full(shape, np.float32(0.0 if fill is None else fill), np.float32)
    flat = out.reshape(-1)
    for r in regions:
        src = np.ascontiguousarray(inputs[r.input], dtype=np.float32).reshape(-1)
        np.copyto(
            region_view(flat, r.dst_offset, r.dst_strides, r.sizes),
            region_view(src, r.src_offset, r.src_strides, r.sizes),
        )
    return out


def region_view(
    flat: FloatArray, offset: int, strides: tuple[int, ...], sizes: tuple[int, ...]
) -> FloatArray:
    """A strided view of ``sizes`` elements of the flat float32 array ``flat``."""
    item = flat.itemsize
    return np.lib.stride_tricks.as_strided(
        flat[offset:], shape=sizes, strides=tuple(s * item for s in strides)
    )


def evaluate(node: Node, inputs: list[FloatArray], shape: tuple[int, ...]) -> FloatArray:
    """Compute one node's output from its input arrays."""
    with np.errstate(all="ignore"):
        if node.op == "unary":
            y = UNARY[node.attr("kind")](inputs[0])
        elif node.op == "binary":
            y = BINARY[node.attr("kind")](inputs[0], inputs[1])
        elif node.op == "reduce":
            y = REDUCE[node.attr("kind")](
                inputs[0], axis=node.attr("axes"), keepdims=node.attr("keepdims")
            )
        elif node.op == "matmul":
            y = np.matmul(inputs[0], inputs[1])
        elif node.op == "raster":
            y = raster(inputs, shape, node.attr("regions"), node.attr("fill"))
        elif node.op == "topk":
            y = topk(inputs[0], node.attr("axis"), node.attr("k"), node.attr("largest"))
        elif node.op == "cumsum":
            attrs = (node.attr(a) for a in ("axis", "exclusive", "reverse"))
            y = cumsum(inputs[0], *attrs)
        elif node.op == "gather_elements":
            axis = node.attr("axis")
            where = f"gather_elements {node.name!r}: its indices"
            check_indices(inputs[1], inputs[0].shape[axis], where)
            y = gather_elements(inputs[0], inputs[1], axis)
        elif node.op == "gather":
            axis = node.attr("axis")
            check_indices(inputs[1], inputs[0].shape[axis], f"gather {node.name!r}: its indices")
            y = np.take(inputs[0], inputs[1].astype(np.int64), axis=axis)
        else:
            raise ModelError(f"node {node.name!r}: op {node.op!r} is not atomic")
    return np.asarray(y, dtype=np.float32).reshape(shape)


def run_reference(graph: Graph, feeds: dict[str, FloatArray]) -> list[FloatArray]:
    """Evaluate ``graph`` node by node with :func:`evaluate` (slow; the oracle)."""
    env: dict[str, FloatArray] = dict(graph.constants)
    for name in graph.inputs:
        x = np.asarray(feeds[name])
        if name in graph.index_inputs:
            check_index_input(name, x)
        env[name] = x.astype(np.float32).reshape(graph.shape(name))
    for node in graph.nodes:
        env[node.output] = evaluate(node, [env[i] for i in node.inputs], graph.shape(node.output))
    return [env[name] for name in graph.outputs]

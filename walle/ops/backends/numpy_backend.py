"""The numpy backend: the reference, always available; ufuncs writing into plan buffers."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Protocol

import numpy as np

from walle.ops.backends.base import Backend, Buffers, Call, MatmulCall, gather_call
from walle.ops.ir import ARG_KINDS, FloatArray, Graph, Node, unfilled_runs
from walle.ops.reference import (
    BINARY,
    arg_reduce,
    cumsum,
    erf,
    gather_elements,
    gelu,
    region_view,
    topk,
)

_UFUNC_UNARY = {
    "neg": np.negative, "abs": np.abs, "exp": np.exp, "log": np.log, "sqrt": np.sqrt,
    "reciprocal": np.reciprocal, "tanh": np.tanh, "floor": np.floor, "ceil": np.ceil,
    "round": np.rint, "sin": np.sin, "cos": np.cos, "tan": np.tan, "asin": np.arcsin,
    "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh,
    "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh,
}  # fmt: skip


class _ReductionInto(Protocol):
    """A numpy reduction writing into a buffer: ``fn(x, axis=axes, keepdims=..., out=buf)``."""

    def __call__(
        self, a: FloatArray, /, *, axis: tuple[int, ...], keepdims: bool, out: FloatArray
    ) -> object: ...


_REDUCE: dict[str, _ReductionInto] = {
    "sum": np.sum,
    "mean": np.mean,
    "max": np.max,
    "min": np.min,
    **{kind: partial(arg_reduce, kind=kind) for kind in ARG_KINDS},
    "fmax": partial(np.fmax.reduce, initial=-np.inf),  # NaN left out; -inf if all NaN
    "fmin": partial(np.fmin.reduce, initial=np.inf),
}


class NumpyBackend(Backend):
    """Every atomic op as one or a few numpy calls with ``out=`` into pre-allocated buffers."""

    name = "numpy"
    # ufuncs: exp over 64k floats ~30 us; matmul is numpy's BLAS.
    call_overhead_s = 1.0e-6
    flops_per_s = 1.5e10
    bytes_per_s = 15.0e9

    def matmul_rate(self, algorithm: str) -> float:
        return 8.0e10

    def compile_atomic(
        self, node: Node, algorithm: str, graph: Graph, buffers: Buffers
    ) -> list[Call]:
        ins = [buffers[i] for i in node.inputs]
        out = buffers[node.output]
        if node.op == "unary":
            return _unary(node.attr("kind"), ins[0], out)
        if node.op == "binary":
            return [partial(BINARY[node.attr("kind")], ins[0], ins[1], out=out)]
        if node.op == "reduce":
            fn = _REDUCE[node.attr("kind")]
            return [
                partial(fn, ins[0], axis=node.attr("axes"), keepdims=node.attr("keepdims"), out=out)
            ]
        if node.op == "matmul":
            return [MatmulCall(ins[0], ins[1], out).run]
        if node.op == "topk":
            attrs = (node.attr(a) for a in ("axis", "k", "largest"))
            return [partial(_into, out, topk, ins[0], *attrs)]
        if node.op == "cumsum":
            attrs = (node.attr(a) for a in ("axis", "exclusive", "reverse"))
            return [partial(_into, out, cumsum, ins[0], *attrs)]
        if node.op == "gather_elements":
            axis = node.attr("axis")
            take = partial(_into, out, gather_elements, ins[0], ins[1], axis)
            return [gather_call(node, graph, ins[1], ins[0].shape[axis], take)]
        if node.op == "gather":
            axis = node.attr("axis")
            take = partial(_take, ins[0], ins[1], axis, out)
            return [gather_call(node, graph, ins[1], ins[0].shape[axis], take)]
        return raster_calls(node, ins, out)


def _into(out: FloatArray, fn: Callable[..., FloatArray], *args: object) -> None:
    np.copyto(out, fn(*args))


def raster_calls(node: Node, ins: list[FloatArray], out: FloatArray) -> list[Call]:
    """A fill (if any: of the elements no region writes, where they are few runs) and one
    ``copyto`` per region, views bound once."""
    calls: list[Call] = []
    fill = node.attr("fill")
    flat_out = out.reshape(-1)
    if fill is not None:
        gaps = unfilled_runs(node.attr("regions"), out.size)
        if gaps is None:
            calls.append(partial(out.fill, np.float32(fill)))
        else:
            index = np.concatenate([np.arange(a, b) for a, b in gaps] or [np.arange(0)])
            calls.append(partial(np.put, flat_out, index, np.float32(fill)))
    for r in node.attr("regions"):
        src = region_view(ins[r.input].reshape(-1), r.src_offset, r.src_strides, r.sizes)
        dst = region_view(flat_out, r.dst_offset, r.dst_strides, r.sizes)
        calls.append(partial(np.copyto, dst, src))
    return calls


def _take(data: FloatArray, indices: FloatArray, axis: int, out: FloatArray) -> None:
    """``np.take`` of checked indices (:func:`checked_gather`): "wrap" only counts the
    negative ones from the end."""
    np.take(data, indices.astype(np.intp), axis=axis, out=out, mode="wrap")


def _unary(kind: str, x: FloatArray, out: FloatArray) -> list[Call]:
    if kind in _UFUNC_UNARY:
        return [partial(_UFUNC_UNARY[kind], x, out=out)]
    if kind == "relu":
        return [partial(np.maximum, x, np.float32(0), out=out)]
    if kind == "identity":
        return [partial(np.copyto, out, x)]
    if kind == "erf":
        return [partial(erf, x, out=out)]
    if kind == "gelu":
        return [partial(gelu, x, out=out)]
    # sigmoid = 1 / (1 + exp(-x)), in place in the output buffer.
    return [
        partial(np.negative, x, out=out),
        partial(np.exp, out, out=out),
        partial(np.add, out, np.float32(1), out=out),
        partial(np.reciprocal, out, out=out),
    ]

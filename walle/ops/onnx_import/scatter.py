"""ONNX ScatterND with constant indices: slices of ``updates`` written over ``data``.

PyTorch exports an in-place slice assignment (YOLOv5's ``y[..., 0:2] = ...``, a cache
written at fixed positions) as a ScatterND whose indices are constants. walle writes the
updates into a tensor of data's shape with one raster (a block copy per index tuple, zeros
elsewhere) and keeps data where nothing is written: mask(keep, data) + placed, so that a NaN
in an overwritten slice of data does not reach the output (the one bit difference: a -0
kept from data comes out +0). ``reduction`` "add" adds the placed updates to data, a
repeated tuple's in order (one raster per repetition). Indices computed at run time,
repeated index tuples without a reduction (their order is unspecified) and the other
reductions are refused by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from walle.errors import ModelError
from walle.ops.ir import Region
from walle.ops.onnx_import.node import HandlerTable, OnnxNode

if TYPE_CHECKING:
    from walle.ops.onnx_import.core import Importer


def _scatter_nd(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    reduction = node.choice("reduction", "none", ("none", "add"))
    data, updates = ins[0], ins[2]
    name = node.input_name(1)
    constant = im.constant(name)
    if constant is None:
        raise ModelError(f"{node.where}: indices computed at run time are not supported")
    exact = im.integers.get(name)
    dims: tuple[int, ...] = tuple(np.shape(constant))
    indices = np.asarray(exact if exact is not None else constant, np.int64).reshape(dims)
    shape = im.b.shape(data)
    k = dims[-1] if dims else 0
    if not 1 <= k <= len(shape):
        raise ModelError(
            f"{node.where}: indices of shape {dims} do not index data of rank {len(shape)}"
        )
    want = (*dims[:-1], *shape[k:])
    if im.b.shape(updates) != want:
        raise ModelError(
            f"{node.where}: updates have shape {im.b.shape(updates)}, the indices and data "
            f"ask for {want}"
        )
    tuples = indices.reshape(-1, k)
    bounds = np.asarray(shape[:k], np.int64)
    if ((tuples < -bounds) | (tuples >= bounds)).any():
        raise ModelError(f"{node.where}: an index is outside data's dims {shape[:k]}")
    tuples = np.where(tuples < 0, tuples + bounds, tuples)
    block = int(np.prod(shape[k:], dtype=np.int64))
    flat = np.ravel_multi_index(tuple(tuples.T), shape[:k])
    starts = [int(s) * block for s in np.atleast_1d(flat)]
    if not starts:  # no index tuple: nothing written
        return data
    # each tuple's occurrence: the n-th of a repeated tuple goes into the n-th raster
    seen: dict[int, int] = {}
    rounds = []
    for start in starts:
        seen[start] = seen.get(start, -1) + 1
        rounds.append(seen[start])
    if max(rounds) and reduction == "none":
        raise ModelError(f"{node.where}: repeated indices (their order is unspecified)")
    placed = [
        im.b.raster(
            [updates],
            shape,
            [Region(0, i * block, (1,), s, (1,), (block,)) for i, s in enumerate(starts)
             if rounds[i] == n],
            fill=0.0,
        )
        for n in range(max(rounds) + 1)
    ]  # fmt: skip
    if reduction == "add":  # in order, as onnxruntime adds a repeated tuple's updates
        total = data
        for part in placed:
            total = im.b.binary("add", total, part)
        return total
    keep = np.ones(int(np.prod(shape, dtype=np.int64)), np.float32)
    for start in starts:
        keep[int(start) : int(start) + block] = 0.0
    kept = im.b.binary("mask", im.b.const(keep.reshape(shape)), data)
    return im.b.binary("add", kept, placed[0])


HANDLERS: HandlerTable = {"ScatterND": ({"reduction"}, _scatter_nd)}

"""ArgMax and ArgMin: onnxruntime's indices on every backend, and int64 out of a Model.

walle computes the indices as float32 (an axis of at most 2**24 values, checked when the
graph is built); a Model returns a graph output the file declares as int64 as int64, as
onnxruntime does. A value wins when it compares greater (less) than the best so far,
starting from the first: NaN never wins, a NaN first keeps index 0, ties go to the first
index (the last with ``select_last_index``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.unit.ops._onnx_cases import assert_parity, io, model, run_ort
from walle.errors import ModelError
from walle.ops import GraphBuilder, Model, available_backends

BACKENDS = [b.name for b in available_backends()]


def _arg_model(op: str, shape, axis: int, keepdims: int, last: int):
    node = helper.make_node(
        op, ["x"], ["y"], name="n", axis=axis, keepdims=keepdims, select_last_index=last
    )
    return model([node], [io("x", list(shape))], [io("y", None, TensorProto.INT64)], opset=13)


def _ties_and_specials(shape, seed: int) -> np.ndarray:
    """Small integers (ties everywhere), a tenth NaN, infinities, and NaN first in the
    first rows along every axis."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, shape).astype(np.float32)
    draw = rng.random(shape)
    x[draw < 0.1] = np.nan
    x[(draw >= 0.1) & (draw < 0.13)] = np.inf
    x[(draw >= 0.13) & (draw < 0.16)] = -np.inf
    x[(0,) * len(shape)] = np.nan
    return x


# (shape, axis): rows along a contiguous axis long enough for the vector pass (3000), across
# rows (inner 300: more than one block of the kernel's running bests), a middle axis
CASES = [((3, 3000), 1), ((40, 300), 0), ((2, 7, 3000), 1), ((5, 1000, 1), 1), ((4, 9, 6), -1)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("last", [0, 1])
def test_ops_arg_reduce_matches_onnxruntime_with_ties_nan_and_inf(backend, op, last) -> None:
    for i, (shape, axis) in enumerate(CASES):
        x = _ties_and_specials(shape, seed=i)
        assert_parity(_arg_model(op, shape, axis, i % 2, last), {"x": x}, backend)


def test_ops_model_returns_declared_int64_outputs_as_int64(tmp_path: Path) -> None:
    """ArgMax's indices come back int64 beside a float output that stays float32, for a
    batch, for the single-input call and for an empty batch (as onnxruntime)."""
    nodes = [
        helper.make_node("ArgMax", ["x"], ["idx"], name="arg", axis=1, keepdims=0),
        helper.make_node("ReduceMax", ["x"], ["top"], name="top", axes=[1], keepdims=0),
    ]
    outputs = [io("idx", None, TensorProto.INT64), io("top", None)]
    proto = model(nodes, [io("x", ["N", 8210])], outputs, opset=13)
    path = tmp_path / "m.onnx"
    onnx.save(proto, str(path))
    m = Model(path, use_cache=False, trials=False)
    x = np.random.default_rng(0).standard_normal((3, 8210)).astype(np.float32)
    want = run_ort(proto, {"x": x})
    got = m.run(x)
    assert [g.dtype for g in got] == [np.int64, np.float32]
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    for _ in range(2):  # the plan made, then the batch's own fast path
        first = m(x)
        assert first.dtype == np.int64
        np.testing.assert_array_equal(first, want[0])
    empty = m.run(np.zeros((0, 8210), np.float32))
    assert (empty[0].shape, empty[0].dtype) == ((0,), np.int64)


def test_ops_arg_reduce_takes_one_axis_of_at_most_2_pow_24_values() -> None:
    b = GraphBuilder()
    x = b.input("x", (2, 3, 4))
    with pytest.raises(ModelError, match=r"argmax: takes one axis, got \[0, 1\]"):
        b.reduce("argmax", x, [0, 1])
    long = b.input("long", (1, (1 << 24) + 1))
    with pytest.raises(ModelError, match=r"argmin: axis 1 has 16777217 values; indices are"):
        b.reduce("argmin", long, [1])


def test_ops_argmax_axis_out_of_range_is_refused_naming_the_node() -> None:
    from walle.ops.onnx_import import import_onnx

    with pytest.raises(ModelError, match=r"node 'n' \(ArgMax\): axis 2 invalid for rank 2"):
        import_onnx(_arg_model("ArgMax", (2, 3), 2, 1, 0))

"""Comparisons, boolean logic and Where: booleans as 1.0 and 0.0 inside walle, ONNX's
types at the Model's edges (boolean inputs load as numbers, declared boolean outputs come
back as booleans), and the side Where does not take never reaching its output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.unit.ops._onnx_cases import assert_parity, init, io, model, run_ort
from walle.errors import ModelError
from walle.ops import Model, available_backends

BACKENDS = [b.name for b in available_backends()]
_F = np.float32


def _specials(shape, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, shape).astype(_F)
    draw = rng.random(shape)
    x[draw < 0.1], x[(draw >= 0.1) & (draw < 0.2)] = np.nan, np.inf
    x[(draw >= 0.2) & (draw < 0.3)] = -np.inf
    return x


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ["Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual"])
def test_ops_comparisons_match_onnxruntime_with_nan_and_inf(backend: str, op: str) -> None:
    a, b = _specials((3, 4, 5), 0), _specials((4, 1), 1)
    node = helper.make_node(op, ["a", "b"], ["y"], name="n")
    proto = model(
        [node], [io("a", [3, 4, 5]), io("b", [4, 1])], [io("y", None, TensorProto.BOOL)], opset=16
    )
    assert_parity(proto, {"a": a, "b": b}, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ops_where_keeps_the_side_it_does_not_take_out(backend: str) -> None:
    """NaN and infinities on both sides; the condition from a comparison, broadcast over
    three shapes."""
    nodes = [
        helper.make_node("Greater", ["a", "b"], ["c"], name="gt"),
        helper.make_node("Where", ["c", "x", "y"], ["o"], name="where"),
    ]
    feeds = {
        "a": _specials((3, 4, 5), 0),
        "b": _specials((4, 1), 1),
        "x": _specials((5,), 2),
        "y": _specials((3, 1, 5), 3),
    }
    inputs = [io(k, list(v.shape)) for k, v in feeds.items()]
    proto = model(nodes, inputs, [io("o", None)], opset=16)
    assert_parity(proto, feeds, backend, nan=True)


def test_ops_model_takes_boolean_inputs_and_returns_boolean_outputs(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Not", ["keep"], ["drop"], name="not"),
        helper.make_node("Or", ["drop", "extra"], ["any"], name="or"),
        helper.make_node("Where", ["keep", "x", "fill"], ["y"], name="where"),
    ]
    inputs = [
        io("keep", ["N", 6], TensorProto.BOOL),
        io("extra", ["N", 6], TensorProto.BOOL),
        io("x", ["N", 6]),
    ]
    outputs = [io("any", None, TensorProto.BOOL), io("y", None)]
    proto = model(nodes, inputs, outputs, [init("fill", np.array(-np.inf, _F))], opset=16)
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    rng = np.random.default_rng(0)
    feeds = {
        "keep": rng.random((3, 6)) < 0.5,
        "extra": rng.random((3, 6)) < 0.3,
        "x": rng.standard_normal((3, 6)).astype(_F),
    }
    got = Model(path, use_cache=False, trials=False).run(*feeds.values())
    want = run_ort(proto, feeds)
    assert [g.dtype for g in got] == [np.bool_, np.float32]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def _masked_attention():
    """Scores masked where the int64 attention mask is 0 (Equal on ids, then Where with
    -inf), then a softmax: the padded positions get exactly 0."""
    nodes = [
        helper.make_node("Unsqueeze", ["mask", "axes"], ["m"], name="unsqueeze"),
        helper.make_node("Equal", ["m", "zero"], ["pad"], name="is_pad"),
        helper.make_node("Where", ["pad", "fill", "scores"], ["masked"], name="where"),
        helper.make_node("Softmax", ["masked"], ["y"], name="softmax", axis=-1),
    ]
    inits = [
        init("axes", np.array([1], np.int64)),
        init("zero", np.array(0, np.int64)),
        init("fill", np.array(-np.inf, _F)),
    ]
    inputs = [io("scores", ["N", 2, 5]), io("mask", ["N", 5], TensorProto.INT64)]
    return model(nodes, inputs, [io("y", None)], inits, opset=16)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ops_attention_mask_by_equal_and_where_matches_onnxruntime(backend, tmp_path) -> None:
    proto = _masked_attention()
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    scores = np.random.default_rng(1).standard_normal((2, 2, 5)).astype(_F)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int64)
    got = Model(path, backend=backend, use_cache=False, trials=False).run(scores, mask)[0]
    want = run_ort(proto, {"scores": scores, "mask": mask})[0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert np.all(got[0, :, 3:] == 0)


def test_ops_ids_into_arithmetic_after_a_comparison_are_still_refused() -> None:
    """A comparison ends ids; the same ids read by a Mul elsewhere stay refused by name."""
    from walle.ops.onnx_import import import_onnx

    nodes = [
        helper.make_node("Equal", ["ids", "zero"], ["pad"], name="is_pad"),
        helper.make_node("Mul", ["ids", "ids"], ["sq"], name="square"),
    ]
    proto = model(
        nodes,
        [io("ids", [2, 3], TensorProto.INT64)],
        [io("pad", None, TensorProto.BOOL), io("sq", None, TensorProto.INT64)],
        [init("zero", np.array(0, np.int64))],
        opset=16,
    )
    with pytest.raises(ModelError, match=r"input 'ids' \(integer ids\) reaches node 'square'"):
        import_onnx(proto)

"""Shape and Size, read at import (walle plans static shapes and imports a model anew for
each batch size), and empty values: a Slice that keeps nothing may feed a Concat, which
leaves it out (a rotary embedding that rotates every dim), or be an output; nothing else may
read one."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.unit.ops._onnx_cases import init, io, model, rand, run_ort
from walle.errors import ModelError
from walle.ops import Model, available_backends
from walle.ops.onnx_import import import_onnx

BACKENDS = [b.name for b in available_backends()]
_I = np.int64


def _flatten_by_shape() -> onnx.ModelProto:
    """``x.view(x.size(0), -1) @ w``, as PyTorch's exporter writes it with a dynamic batch."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "zero"], ["n"], name="rows", axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"], name="lift"),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], name="target", axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"], name="flatten"),
        helper.make_node("Size", ["x"], ["count"], name="size"),
        helper.make_node("Cast", ["count"], ["countf"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["flat", "w"], ["h"], name="proj"),
        helper.make_node("Div", ["h", "countf"], ["y"], name="scale"),
    ]
    inits = [
        init("zero", np.array(0, _I)),
        init("axes", np.array([0], _I)),
        init("minus1", np.array([-1], _I)),
        init("w", rand((24, 5), 3)),
    ]
    return model(nodes, [io("x", ["N", 2, 3, 4])], [io("y", ["N", 5])], inits, opset=18)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_flatten_computed_from_shape_and_size_follows_every_batch(tmp_path, backend) -> None:
    proto = _flatten_by_shape()
    path = tmp_path / "flat.onnx"
    onnx.save(proto, str(path))
    m = Model(path, backend=backend, use_cache=False, trials=False)
    for rows in (1, 3, 8):
        x = rand((rows, 2, 3, 4), rows)
        want = run_ort(proto, {"x": x})[0]
        np.testing.assert_allclose(m(x), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("start", "end"), [(None, None), (1, None), (-2, None), (0, -1), (-10, 10), (2, 3)]
)
def test_shape_takes_start_and_end_as_the_spec_clamps_them(start, end) -> None:
    attrs = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape", **attrs),
        helper.make_node("Cast", ["s"], ["sf"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x", "one"], ["x1"], name="keep"),
        helper.make_node("ReduceSum", ["x1"], ["total"], name="sum", keepdims=0),
        helper.make_node("Add", ["sf", "total"], ["y"], name="add"),
    ]
    proto = model(
        nodes, [io("x", [2, 3, 4, 5])], [io("y", None)], [init("one", np.ones(1, np.float32))]
    )
    x = rand((2, 3, 4, 5), 1)
    want = run_ort(proto, {"x": x})[0]
    graph = import_onnx(proto)
    from tests.unit.ops._onnx_cases import run_walle

    got = run_walle(proto, {"x": x}, "numpy")[0]
    assert graph.shape(graph.outputs[0]) == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5)


def _rotate_all(rot: int) -> onnx.ModelProto:
    """x[..., :rot] negated, then x[..., rot:] after it: with rot = the last dim, the second
    part is empty (a rotary embedding over every dim)."""
    nodes = [
        helper.make_node("Slice", ["x", "s0", "e0", "ax"], ["a"], name="head"),
        helper.make_node("Slice", ["x", "s1", "e1", "ax"], ["b"], name="tail"),
        helper.make_node("Neg", ["a"], ["na"], name="neg"),
        helper.make_node("Sigmoid", ["b"], ["sb"], name="gate"),
        helper.make_node("Concat", ["na", "sb"], ["y"], name="join", axis=-1),
    ]
    inits = [
        init("s0", np.array([0], _I)),
        init("e0", np.array([rot], _I)),
        init("s1", np.array([rot], _I)),
        init("e1", np.array([2**62], _I)),
        init("ax", np.array([-1], _I)),
    ]
    return model(nodes, [io("x", [2, 3, 8])], [io("y", [2, 3, 8])], inits)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rot", [8, 4])
def test_an_empty_slice_joined_by_a_concat_is_left_out(backend, rot) -> None:
    from tests.unit.ops._onnx_cases import run_walle

    proto = _rotate_all(rot)
    x = rand((2, 3, 8), 5)
    want = run_ort(proto, {"x": x})[0]
    np.testing.assert_allclose(run_walle(proto, {"x": x}, backend)[0], want, rtol=1e-6)


def test_an_empty_value_read_by_anything_but_a_concat_is_refused_at_import() -> None:
    nodes = [
        helper.make_node("Slice", ["x", "s", "e", "ax"], ["a"], name="none"),
        helper.make_node("ReduceSum", ["a", "ax"], ["y"], name="sum", keepdims=1),
    ]
    inits = [
        init("s", np.array([3], _I)),
        init("e", np.array([3], _I)),
        init("ax", np.array([1], _I)),
    ]
    proto = model(nodes, [io("x", [2, 3])], [io("y", None)], inits)
    with pytest.raises(ModelError, match=r"node 'sum' \(ReduceSum\): .*reads the empty value"):
        import_onnx(proto)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_empty_output_is_an_empty_array_as_onnxruntime_gives(backend) -> None:
    """An empty value read by element-wise steps only: nothing runs, the output is empty."""
    from tests.unit.ops._onnx_cases import run_walle

    nodes = [
        helper.make_node("Slice", ["x", "s", "e", "ax"], ["a"], name="none"),
        helper.make_node("Neg", ["a"], ["y"], name="neg"),
    ]
    inits = [init("s", np.array([2], _I)), init("e", np.array([1], _I)), init("ax", [0])]
    proto = model(nodes, [io("x", [4, 3])], [io("y", None)], inits)
    x = rand((4, 3), 2)
    want = run_ort(proto, {"x": x})[0]
    got = run_walle(proto, {"x": x}, backend)[0]
    assert got.shape == want.shape == (0, 3)


@pytest.mark.parametrize(("target", "runs"), [([3, 8], True), ([-1, 4], True), ([0, 24], False)])
def test_reshape_allowzero_matters_only_for_a_zero_in_the_shape(target, runs) -> None:
    from tests.unit.ops._onnx_cases import run_walle

    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="r", allowzero=1)
    proto = model([node], [io("x", [2, 3, 4])], [io("y", None)], [init("shape", _I(target))])
    x = rand((2, 3, 4), 4)
    if runs:
        np.testing.assert_array_equal(
            run_walle(proto, {"x": x}, "numpy")[0], run_ort(proto, {"x": x})[0]
        )
    else:
        with pytest.raises(ModelError, match=r"node 'r' \(Reshape\): attribute allowzero=1"):
            import_onnx(proto)

"""GELU as exporters spell it out, x * 0.5 * (1 + erf(x / sqrt 2)), becomes one ``gelu``
unary when the graph is built (builder._gelus): every spelling of the scale and of the
halving, operands on either side, matches onnxruntime on every backend, special values
included; a spelling whose intermediate values are read elsewhere, or with other
constants, is left as it is and still matches."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from tests._backends import backend_or_skip
from tests.unit.ops._onnx_oracle import assert_matches
from walle.ops import Model
from walle.ops.onnx_import import import_onnx

SCALES = ("div", "mul")  # x / sqrt 2, or x * (1 / sqrt 2)
TAILS = ("x_then_half", "half_first", "half_of_sum")  # where the 0.5 multiplies


def _gelu_nodes(scale: str, tail: str, flip: tuple[bool, ...], sqrt2: float = math.sqrt(2.0)):
    """The nodes of one spelling; ``flip[i]`` swaps the operands of the i-th commutative op."""

    def pair(i: int, a: str, b: str) -> list[str]:
        return [b, a] if flip[i] else [a, b]

    nodes = [
        helper.make_node("Div", ["x", "sqrt2"], ["s"])
        if scale == "div"
        else helper.make_node("Mul", pair(0, "x", "inv_sqrt2"), ["s"]),
        helper.make_node("Erf", ["s"], ["e"]),
        helper.make_node("Add", pair(1, "e", "one"), ["a"]),
    ]
    if tail == "x_then_half":  # (x * (1 + erf)) * 0.5
        nodes += [
            helper.make_node("Mul", pair(2, "x", "a"), ["m"]),
            helper.make_node("Mul", pair(3, "m", "half"), ["y"]),
        ]
    elif tail == "half_first":  # (x * 0.5) * (1 + erf)
        nodes += [
            helper.make_node("Mul", pair(2, "x", "half"), ["m"]),
            helper.make_node("Mul", pair(3, "m", "a"), ["y"]),
        ]
    else:  # ((1 + erf) * 0.5) * x
        nodes += [
            helper.make_node("Mul", pair(2, "a", "half"), ["m"]),
            helper.make_node("Mul", pair(3, "m", "x"), ["y"]),
        ]
    consts = {"sqrt2": sqrt2, "inv_sqrt2": 1.0 / sqrt2, "one": 1.0, "half": 0.5}
    inits = [numpy_helper.from_array(np.array([v], np.float32), k) for k, v in consts.items()]
    return nodes, inits


def _model(nodes, inits, shape, outputs=("y",)):
    graph = helper.make_graph(
        nodes,
        "gelu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, shape) for o in outputs],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _input(shape, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    flat = x.reshape(-1)
    specials = [np.nan, np.inf, -np.inf, -0.0, 0.0, -6.0, 6.0, -1e30]
    flat[: min(len(flat), len(specials))] = specials[: len(flat)]
    return x


def _check(model, x, backend: str | None) -> None:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = session.run(None, {"x": x})
    got = Model(lambda rows: import_onnx(model, batch=rows), backend=backend).run(x)
    for g, w, name in zip(got, want, [o.name for o in model.graph.output], strict=True):
        assert_matches(g, w, name)


def _ops(model) -> list[tuple[str, object]]:
    graph = import_onnx(model, batch=model.graph.input[0].type.tensor_type.shape.dim[0].dim_value)
    return [(n.op, n.attr("kind")) for n in graph.nodes]


@pytest.mark.parametrize("backend", ["numpy", "cython", "opencl"])
@settings(max_examples=12, deadline=None)
@given(
    scale=st.sampled_from(SCALES),
    tail=st.sampled_from(TAILS),
    flip=st.tuples(*[st.booleans()] * 4),
    shape=st.sampled_from([(1, 7), (2, 3, 5), (1, 24, 12, 20), (3, 100)]),
    seed=st.integers(0, 99),
)
def test_ops_every_spelling_of_gelu_is_one_unary_and_matches_onnxruntime(
    backend, scale, tail, flip, shape, seed
) -> None:
    backend_or_skip(backend)
    model = _model(*_gelu_nodes(scale, tail, flip), shape)
    assert _ops(model) == [("unary", "gelu")]
    _check(model, _input(shape, seed), backend)


def test_ops_onnx_gelu_op_is_the_same_unary() -> None:
    shape = (2, 50)
    graph = helper.make_graph(
        [helper.make_node("Gelu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=9)
    assert _ops(model) == [("unary", "gelu")]
    _check(model, _input(shape, 1), None)


@pytest.mark.parametrize("seen", ["s", "e", "a", "m"])
def test_ops_gelu_with_an_intermediate_read_elsewhere_is_left_as_written(seen) -> None:
    """An intermediate value that is also a graph output keeps every node (it must be
    computed); the result still matches."""
    shape = (2, 40)
    nodes, inits = _gelu_nodes("div", "x_then_half", (False,) * 4)
    model = _model(nodes, inits, shape, outputs=("y", seen))
    assert ("unary", "gelu") not in _ops(model)
    _check(model, _input(shape, 2), "cython")


@pytest.mark.parametrize("sqrt2", [1.5, 2.0, -math.sqrt(2.0)])
def test_ops_gelu_with_other_constants_is_left_as_written(sqrt2) -> None:
    shape = (2, 40)
    model = _model(*_gelu_nodes("div", "half_first", (False,) * 4, sqrt2=sqrt2), shape)
    assert ("unary", "gelu") not in _ops(model)
    _check(model, _input(shape, 3), "cython")


def test_ops_gelu_whose_constant_adds_a_dim_is_left_as_written() -> None:
    """A 1 of shape [1, 1, 1] makes the result [1, 1, 8] from x [1, 8]: no GELU of x."""
    nodes, inits = _gelu_nodes("div", "x_then_half", (False,) * 4)
    inits = [i for i in inits if i.name != "one"]
    inits.append(numpy_helper.from_array(np.ones((1, 1, 1), np.float32), "one"))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 8))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 1, 8))],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    assert ("unary", "gelu") not in _ops(model)
    _check(model, _input((1, 8), 4), "cython")


@pytest.mark.parametrize("tail", TAILS)
def test_ops_gelu_whose_last_op_adds_is_left_as_written(tail) -> None:
    """The same nodes with the last Mul an Add are no GELU."""
    shape = (2, 40)
    nodes, inits = _gelu_nodes("div", tail, (False,) * 4)
    last = nodes[-1]
    nodes[-1] = helper.make_node("Add", list(last.input), list(last.output))
    model = _model(nodes, inits, shape)
    assert ("unary", "gelu") not in _ops(model)
    _check(model, _input(shape, 5), "cython")

"""If with a condition known at import (a constant, or computed from shapes): the branch taken
is inlined, against onnxruntime on every backend; an If on run-time values is refused by
name; an outer value that a branch reads is not folded away."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import helper, numpy_helper

from tests.unit.ops._onnx_cases import assert_parity, io, model
from tests.unit.ops.test_ops_onnx_expand_tile import SETTINGS
from walle.errors import ModelError
from walle.ops import available_backends
from walle.ops.onnx_import import import_onnx

BACKENDS = [b.name for b in available_backends()]
_F = np.float32


def _branch(name: str, nodes, output: str, inits=()) -> object:
    return helper.make_graph(nodes, name, [], [io(output, None)], list(inits))


def _then_else():
    """then: relu(x) * 2.5 (an initializer of its own); else: x - 1."""
    then = _branch(
        "then",
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "w"], ["t"])],
        "t",
        [numpy_helper.from_array(_F(2.5), "w")],
    )
    other = _branch(
        "else",
        [helper.make_node("Sub", ["x", "one"], ["e"])],
        "e",
        [numpy_helper.from_array(_F(1), "one")],
    )
    return then, other


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("width", [5, 2])
def test_ops_if_on_a_shape_takes_its_branch(backend: str, width: int) -> None:
    """PyTorch's ``if x.size(1) > 3``: Shape, Gather, Greater, If; each width takes the
    other branch."""
    then, other = _then_else()
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i1"], ["d"], axis=0),
        helper.make_node("Greater", ["d", "three"], ["c"]),
        helper.make_node("If", ["c"], ["y"], name="if", then_branch=then, else_branch=other),
        helper.make_node("Add", ["y", "x"], ["z"]),
    ]
    inits = [
        numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("i1", 1), ("three", 3))
    ]
    proto = model(nodes, [io("x", [2, width])], [io("z", None)], inits, opset=13)
    x = np.random.default_rng(width).normal(size=(2, width)).astype(_F)
    assert_parity(proto, {"x": x}, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ops_if_branch_reading_a_conv_output_keeps_it_unfolded(backend: str) -> None:
    """A conv's output read by a BatchNormalization in the graph and by an If's branch: the
    BN must not fold into the conv (the branch reads the conv's own output)."""
    rng = np.random.default_rng(3)
    then = _branch("then", [helper.make_node("Neg", ["c"], ["t"])], "t")
    other = _branch("else", [helper.make_node("Abs", ["c"], ["e"])], "e")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"]),
        helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then, else_branch=other),
        helper.make_node("Add", ["bn", "y"], ["z"]),
    ]
    inits = [
        numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(_F), "w"),
        numpy_helper.from_array(np.array(True), "cond"),
        *(numpy_helper.from_array(rng.uniform(0.5, 2, 4).astype(_F), n) for n in "gbmv"),
    ]
    proto = model(nodes, [io("x", [1, 3, 6, 6])], [io("z", None)], inits, opset=13)
    assert_parity(proto, {"x": rng.normal(size=(1, 3, 6, 6)).astype(_F)}, backend)


def test_ops_nested_if_inlines_both_levels() -> None:
    inner_then, inner_else = _then_else()
    inner = helper.make_node(
        "If", ["c2"], ["inner"], name="inner", then_branch=inner_then, else_branch=inner_else
    )
    outer_then = helper.make_graph(
        [inner],
        "outer_then",
        [],
        [io("inner", None)],
        [numpy_helper.from_array(np.array(False), "c2")],
    )
    outer_else = _branch("outer_else", [helper.make_node("Exp", ["x"], ["o"])], "o")
    node = helper.make_node(
        "If", ["c1"], ["y"], name="if", then_branch=outer_then, else_branch=outer_else
    )
    inits = [numpy_helper.from_array(np.array([True]), "c1")]
    proto = model([node], [io("x", [3, 4])], [io("y", None)], inits, opset=13)
    assert_parity(proto, {"x": np.random.default_rng(0).normal(size=(3, 4)).astype(_F)})


def test_ops_if_on_run_time_values_is_refused_by_name() -> None:
    """silero-vad 5's If on its sample-rate input: a branch chosen at run time."""
    then, other = _then_else()
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
        helper.make_node("Greater", ["total", "zero"], ["c"]),
        helper.make_node("If", ["c"], ["y"], name="if", then_branch=then, else_branch=other),
    ]
    inits = [numpy_helper.from_array(_F(0), "zero")]
    proto = model(nodes, [io("x", [2, 3])], [io("y", None)], inits, opset=13)
    with pytest.raises(ModelError, match=r"node 'if' \(If\): the condition depends on values"):
        import_onnx(proto)


@st.composite
def if_models(draw):
    """A constant condition (rank 0 or one element, boolean or numeric), two branches of a
    unary op each over the outer input, a branch sometimes with an initializer of its own."""
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple))
    ops = ["Relu", "Neg", "Abs", "Exp", "Tanh", "Sigmoid"]
    branches = []
    for name in ("then", "else"):
        op = draw(st.sampled_from(ops))
        nodes, inits = [helper.make_node(op, ["x"], [f"{name}_u"])], []
        if draw(st.booleans()):
            nodes.append(helper.make_node("Mul", [f"{name}_u", f"{name}_k"], [f"{name}_o"]))
            inits.append(numpy_helper.from_array(_F(draw(st.floats(-2, 2, width=32))), f"{name}_k"))
        branches.append(_branch(name, nodes, nodes[-1].output[0], inits))
    value = draw(st.booleans())
    cond = np.array(value) if draw(st.booleans()) else np.array([value])
    node = helper.make_node(
        "If", ["c"], ["y"], name="n", then_branch=branches[0], else_branch=branches[1]
    )
    x = np.random.default_rng(draw(st.integers(0, 2**16))).normal(size=shape).astype(_F)
    proto = model(
        [node],
        [io("x", list(shape))],
        [io("y", None)],
        [numpy_helper.from_array(cond, "c")],
        opset=13,
    )

    class Case:
        def __init__(self) -> None:
            self.proto, self.feeds = proto, {"x": x}

        def __repr__(self) -> str:
            return f"If({value}) over {shape}: {[n.op_type for b in branches for n in b.node]}"

    return Case()


@SETTINGS
@given(case=if_models(), backend=st.sampled_from(BACKENDS))
def test_ops_if_with_a_constant_condition_matches_onnxruntime(case, backend: str) -> None:
    assert_parity(case.proto, case.feeds, backend)

"""Embedding lookups: a Gather whose indices are an integer graph input (ids given with each
call), against onnxruntime on every backend pinned, and the checks on the ids.

The ids arrive as integers (int64, int32; a float array of whole numbers is taken too) and
travel as float32, exact below 2**24: a gather's table has at most that many rows. Each id
must lie in [-rows, rows) of every gather that reads it, negative ones counting from the end;
one outside, or a float that is not a whole number, is refused when a plan loads it, naming
the input and the position. An integer input that anything but a Gather's indices reads is
refused when the Model is built, naming the input and the node.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from tests.unit.ops._onnx_cases import init, io, model, rand, run_ort, run_walle
from walle.errors import ModelError, ValidationError
from walle.ops import GraphBuilder, Model, available_backends, compile_graph
from walle.ops.onnx_import import import_onnx
from walle.ops.plan import SubBatchPlan
from walle.ops.reference import run_reference

BACKENDS = [b.name for b in available_backends()]
_I = np.int64


def _ids(name: str, shape, kind: int = TensorProto.INT64):
    return helper.make_tensor_value_info(name, kind, shape)


def embedding_model(rows: int = 50, dim: int = 8, seq: int = 5, batch: int = 4, seed: int = 0):
    """A small recommender: ids [batch, seq] -> embedding rows -> mean over the sequence,
    concatenated with dense features [batch, 3] -> Gemm -> Relu -> Gemm -> Sigmoid."""
    table = rand((rows, dim), seed)
    w1, b1 = rand((dim + 3, 16), seed + 1), rand((16,), seed + 2)
    w2, b2 = rand((16, 1), seed + 3), rand((1,), seed + 4)
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"], name="lookup"),
        helper.make_node("ReduceMean", ["emb"], ["pooled"], name="pool", axes=[1], keepdims=0),
        helper.make_node("Concat", ["pooled", "dense"], ["joined"], name="join", axis=1),
        helper.make_node("Gemm", ["joined", "w1", "b1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["hr"], name="act"),
        helper.make_node("Gemm", ["hr", "w2", "b2"], ["logit"], name="fc2"),
        helper.make_node("Sigmoid", ["logit"], ["score"], name="out"),
    ]
    inits = [init(n, a) for n, a in (("table", table), ("w1", w1), ("b1", b1), ("w2", w2),
                                     ("b2", b2))]  # fmt: skip
    return model(
        nodes,
        [_ids("ids", [batch, seq]), io("dense", [batch, 3])],
        [io("score", [batch, 1])],
        inits,
        opset=13,
    )


def _lookup(data_shape, ids_shape, axis: int = 0, kind: int = TensorProto.INT64):
    """One Gather of a constant table by an integer input."""
    node = helper.make_node("Gather", ["table", "ids"], ["y"], name="lookup", axis=axis)
    return model(
        [node],
        [_ids("ids", list(ids_shape), kind)],
        [io("y", None)],
        [init("table", rand(data_shape, 7))],
        opset=13,
    )


def _model(proto, tmp_path: Path) -> Model:
    """A Model of ``proto`` saved as a file (no trials: the plan's choice is not at stake)."""
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    return Model(path, trials=False)


def _assert_same(proto, feeds, backend: str) -> None:
    want = run_ort(proto, feeds)
    got = run_walle(proto, feeds, backend)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ops_embedding_model_matches_onnxruntime(backend: str) -> None:
    proto = embedding_model()
    rng = np.random.default_rng(1)
    feeds = {"ids": rng.integers(-50, 50, (4, 5)).astype(_I), "dense": rand((4, 3), 2)}
    _assert_same(proto, feeds, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("data_shape", "ids_shape", "axis"),
    [
        ((10, 4), (3,), 0),  # the default axis
        ((10, 4), (2, 3), 0),
        ((10,), (6,), 0),  # a table of scalars
        ((3, 10, 2), (4,), 1),  # rows inside the data
        ((3, 4, 10), (2, 2), -1),  # the last axis, counted from the end
        ((1, 10, 4), (1,), 1),
    ],
)
def test_ops_gather_by_input_matches_onnxruntime(data_shape, ids_shape, axis, backend) -> None:
    proto = _lookup(data_shape, ids_shape, axis)
    rows = data_shape[axis]
    ids = np.random.default_rng(3).integers(-rows, rows, ids_shape).astype(_I)
    _assert_same(proto, {"ids": ids}, backend)


@pytest.mark.parametrize("kind", [TensorProto.INT32, TensorProto.INT64])
def test_ops_gather_takes_both_index_types(kind: int, tmp_path) -> None:
    dtype = helper.tensor_dtype_to_np_dtype(kind)
    proto = _lookup((10, 3), (4,), kind=kind)
    ids = np.array([0, 9, 3, 3], dtype)
    got = _model(proto, tmp_path).run(ids)[0]
    np.testing.assert_array_equal(got, run_ort(proto, {"ids": ids})[0])


def test_ops_gather_first_and_last_rows_and_negative_ends(tmp_path) -> None:
    proto = _lookup((7, 2), (6,))
    table = import_onnx(proto).constants["table"]
    ids = np.array([0, 6, -1, -7, 3, -4], _I)
    got = _model(proto, tmp_path).run(ids)[0]
    np.testing.assert_array_equal(got, table[[0, 6, 6, 0, 3, 3]])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("bad", "where", "shown"),
    [(7, (1, 2), "7"), (-8, (0, 0), "-8"), (2**40, (1, 0), str(2**40))],
)
def test_ops_gather_refuses_ids_out_of_range(backend, bad, where, shown) -> None:
    proto = _lookup((7, 2), (2, 3))
    graph = import_onnx(proto)
    plan = compile_graph(graph, pin=backend, use_cache=False, trials=False)
    ids = np.zeros((2, 3), _I)
    ids[where] = bad
    with pytest.raises(ValidationError) as err:
        plan(ids)
    text = str(err.value)
    assert "'ids'" in text and f"position {where}" in text and shown in text
    assert "[-7, 6]" in text
    ids[where] = 6  # the same plan runs on good ids afterwards
    np.testing.assert_array_equal(plan(ids)[0], run_ort(proto, {"ids": ids})[0])


def test_ops_gather_refuses_floats_that_are_not_whole(tmp_path) -> None:
    proto = _lookup((7, 2), (3,))
    m = _model(proto, tmp_path)
    np.testing.assert_array_equal(
        m.run(np.array([1.0, 2.0, -1.0]))[0], m.run(np.array([1, 2, 6], _I))[0]
    )
    for bad, shown in ((2.5, "2.5"), (np.nan, "nan"), (np.inf, "inf")):
        with pytest.raises(ValidationError, match=rf"position \(1,\): {shown}"):
            m.run(np.array([1.0, bad, 0.0]))


def test_ops_gather_checks_ids_in_sub_batches_at_the_batch_position() -> None:
    """A batch run in sub-batches names the position in the caller's batch."""
    rows, batch = 30, 8
    proto = embedding_model(rows=rows, batch=batch)
    graph = import_onnx(proto, batch=batch)
    assert graph.index_bounds == {"ids": rows}
    plan = SubBatchPlan(graph, compile_graph(import_onnx(proto, batch=2), trials=False))
    ids = np.random.default_rng(0).integers(-rows, rows, (batch, 5)).astype(_I)
    dense = rand((batch, 3), 1)
    want = run_ort(proto, {"ids": ids, "dense": dense})[0]
    np.testing.assert_allclose(plan(ids, dense)[0], want, atol=1e-5)
    ids[6, 3] = rows
    with pytest.raises(ValidationError, match=r"position \(6, 3\)"):
        plan(ids, dense)


def test_ops_gather_bound_is_the_smallest_table(tmp_path) -> None:
    """Ids read by two tables must fit the smaller one."""
    nodes = [
        helper.make_node("Gather", ["big", "ids"], ["a"], name="g1"),
        helper.make_node("Gather", ["small", "ids"], ["b"], name="g2"),
    ]
    proto = model(
        nodes,
        [_ids("ids", [3])],
        [io("a", None), io("b", None)],
        [init("big", rand((9, 2))), init("small", rand((4, 2)))],
        opset=13,
    )
    m = _model(proto, tmp_path)
    ids = np.array([0, 3, -4], _I)
    for got, want in zip(m.run(ids), run_ort(proto, {"ids": ids}), strict=True):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValidationError, match=r"\[-4, 3\]"):
        m.run(np.array([0, 4, 0], _I))


@pytest.mark.parametrize(
    ("nodes", "match"),
    [
        ([helper.make_node("Cast", ["ids"], ["y"], name="c", to=1)], r"'c' \(Cast\)"),
        (
            [helper.make_node("Gather", ["ids", "table"], ["y"], name="g")],
            r"'g' \(Gather\): walle.ops takes integer inputs only as Gather's indices",
        ),
        ([helper.make_node("Identity", ["ids"], ["y"], name="i")], r"'i' \(Identity\)"),
    ],
)
def test_ops_integer_input_read_by_other_ops_is_refused(nodes, match, tmp_path) -> None:
    proto = model(nodes, [_ids("ids", [3])], [io("y", None)], [init("table", rand((4, 2)))])
    with pytest.raises(ModelError, match=match):
        _model(proto, tmp_path)


@pytest.mark.parametrize("kind", [TensorProto.DOUBLE, TensorProto.UINT8, TensorProto.INT16])
def test_ops_other_input_types_are_still_refused(kind: int, tmp_path) -> None:
    node = helper.make_node("Gather", ["table", "x"], ["y"], name="g")
    proto = model([node], [_ids("x", [3], kind)], [io("y", None)], [init("table", rand((4, 2)))])
    name = TensorProto.DataType.Name(kind)
    with pytest.raises(ModelError, match=rf"'x' \({name}\): walle.ops runs float32 inputs only"):
        _model(proto, tmp_path)


def test_ops_integer_graph_output_is_refused(tmp_path) -> None:
    node = helper.make_node("Gather", ["table", "ids"], ["y"], name="g")
    proto = model(
        [node], [_ids("ids", [3])], [io("y", None), _ids("ids", [3])], [init("table", rand((4, 2)))]
    )
    with pytest.raises(ModelError, match="is a graph output"):
        _model(proto, tmp_path)


def test_ops_builder_gather_needs_an_index_input() -> None:
    b = GraphBuilder()
    x = b.input("x", (3,))
    table = b.const(rand((5, 2)))
    with pytest.raises(ModelError, match="must be an index input"):
        b.gather(table, x)
    ids = b.index_input("ids", (3,))
    with pytest.raises(ModelError, match="axis 2 out of range"):
        b.gather(table, ids, axis=2)
    graph = b.build([b.gather(table, ids)])
    assert graph.index_bounds == {"ids": 5}
    ids_in = np.array([4, -5, 2])
    np.testing.assert_array_equal(
        run_reference(graph, {"x": rand((3,)), "ids": ids_in})[0],
        graph.constants[table][[4, 0, 2]],
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data_shape=st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple),
    ids_shape=st.lists(st.integers(1, 4), min_size=0, max_size=2).map(tuple),
    axis_pick=st.integers(0, 2),
    seed=st.integers(0, 2**16),
    backend=st.sampled_from(BACKENDS),
)
def test_ops_gather_by_input_property(data_shape, ids_shape, axis_pick, seed, backend) -> None:
    axis = axis_pick % len(data_shape)
    rows = data_shape[axis]
    ids = np.random.default_rng(seed).integers(-rows, rows, ids_shape).astype(_I)
    proto = _lookup(data_shape, ids_shape, axis)
    _assert_same(proto, {"ids": ids}, backend)

"""Embedding lookups: a Gather whose indices are integer ids given with each call (a graph
input, or ids moved or offset on the way: a multi-field model's columns into one table),
against onnxruntime on every backend pinned, and the checks on the ids.

The ids arrive as integers (int64, int32; a float array of whole numbers is taken too) and
travel as float32: a plan refuses, when it loads them, any that float32 does not carry
exactly (not whole, or 2**24 or more in magnitude), naming the input and the position. Each
gather's kernel checks its indices against its table's rows ([-rows, rows), negative ones
counting from the end) before it reads, naming the node and the position. Ids that reach
anything but a lookup are refused when the Model is built, naming the input and the node.
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
from walle.ops.sample_models import recommender_onnx

BACKENDS = [b.name for b in available_backends()]
_I = np.int64


def _ids(name: str, shape, kind: int = TensorProto.INT64):
    return helper.make_tensor_value_info(name, kind, shape)


def embedding_model(rows: int = 50, dim: int = 8, seq: int = 5, batch: int = 4, seed: int = 0):
    """walle.ops.sample_models.recommender_onnx (3 dense features, one hidden layer of 16) at
    a fixed batch."""
    proto = recommender_onnx(rows, dim, seq, dense=3, hidden=(16,), seed=seed)
    for value in proto.graph.input:
        value.type.tensor_type.shape.dim[0].dim_value = batch
    return proto


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
    ("bad", "where", "names"),
    [
        (7, (1, 2), ("gather 'lookup", ": 7 is", "[-7, 6]")),
        (-8, (0, 0), ("gather 'lookup", ": -8 is", "[-7, 6]")),
        # past what float32 carries exactly: refused as the input is loaded
        (2**40, (1, 0), ("index input 'ids'", f": {2**40} is", "[-16777216, 16777215]")),
    ],
)
def test_ops_gather_refuses_ids_out_of_range(backend, bad, where, names) -> None:
    proto = _lookup((7, 2), (2, 3))
    graph = import_onnx(proto)
    plan = compile_graph(graph, pin=backend, use_cache=False, trials=False)
    ids = np.zeros((2, 3), _I)
    ids[where] = bad
    with pytest.raises(ValidationError) as err:
        plan(ids)
    text = str(err.value)
    assert f"position {where}" in text
    for name in names:
        assert name in text, text
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


def test_ops_gather_errors_in_sub_batches_say_which_rows() -> None:
    """A batch run in sub-batches: a load error gives the caller's position, a gather's
    error its position in the run and the run's rows."""
    rows, batch = 30, 8
    proto = embedding_model(rows=rows, batch=batch)
    graph = import_onnx(proto, batch=batch)
    assert graph.index_inputs == ["ids"]
    plan = SubBatchPlan(graph, compile_graph(import_onnx(proto, batch=2), trials=False))
    ids = np.random.default_rng(0).integers(-rows, rows, (batch, 5)).astype(_I)
    dense = rand((batch, 3), 1)
    want = run_ort(proto, {"ids": ids, "dense": dense})[0]
    np.testing.assert_allclose(plan(ids, dense)[0], want, atol=1e-5)
    ids[6, 3] = rows
    with pytest.raises(ValidationError, match=r"position \(0, 3\): 30 .* rows 6 to 7 of the batch"):
        plan(ids, dense)
    ids[6, 3] = 2**24
    with pytest.raises(ValidationError, match=r"index input 'ids' at position \(6, 3\)"):
        plan(ids, dense)


def test_ops_gather_ids_read_by_two_tables_must_fit_each(tmp_path) -> None:
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
    with pytest.raises(ValidationError, match=r"gather 'g2.* \(1,\): 4 is .*\[-4, 3\]"):
        m.run(np.array([0, 4, 0], _I))


@pytest.mark.parametrize(
    ("nodes", "match"),
    [
        (
            [helper.make_node("Mul", ["ids", "j"], ["y"], name="m")],
            r"input 'ids' \(integer ids\) reaches node 'm' \(Mul\)",
        ),
        (
            [helper.make_node("Gather", ["ids", "j"], ["y"], name="g")],
            r"input 'ids' \(integer ids\) reaches node 'g' \(Gather\): walle.ops takes ids "
            "only into Gather's indices",
        ),
        (
            [
                helper.make_node(
                    "Unsqueeze",
                    ["ids", "axes"],
                    ["u"],
                    name="u",
                ),
                helper.make_node("MatMul", ["u", "j"], ["y"], name="mm"),
            ],
            r"input 'ids' \(integer ids\) reaches node 'mm' \(MatMul\)",
        ),
        (
            [helper.make_node("Identity", ["ids"], ["y"], name="i")],
            r"graph output 'y' holds the integer ids of input 'ids'",
        ),
    ],
)
def test_ops_ids_that_reach_other_ops_are_refused(nodes, match, tmp_path) -> None:
    proto = model(
        nodes,
        [_ids("ids", [3]), _ids("j", [3])],
        [io("y", None)],
        [init("axes", np.array([0], _I))],
    )
    with pytest.raises(ModelError, match=match):
        _model(proto, tmp_path)


@pytest.mark.parametrize("kind", [TensorProto.DOUBLE, TensorProto.UINT32, TensorProto.FLOAT16])
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
    with pytest.raises(ModelError, match="returns float32 outputs only"):
        _model(proto, tmp_path)


def test_ops_builder_gather_of_ids() -> None:
    b = GraphBuilder()
    table = b.const(rand((5, 2)))
    ids = b.index_input("ids", (3,))
    with pytest.raises(ModelError, match="axis 2 out of range"):
        b.gather(table, ids, axis=2)
    graph = b.build([b.gather(table, ids)])
    assert graph.index_inputs == ["ids"]
    np.testing.assert_array_equal(
        run_reference(graph, {"ids": np.array([4, -5, 2])})[0], graph.constants[table][[4, 0, 2]]
    )
    message = r"gather 'gather:\d+': its indices at position \(1,\): 5 is"
    with pytest.raises(ValidationError, match=message):
        run_reference(graph, {"ids": np.array([4, 5, 2])})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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


@pytest.mark.parametrize("backend", BACKENDS)
def test_ops_gathers_into_a_concat_and_from_computed_data(backend: str) -> None:
    """Two lookups written into one concat (in place where the plan can), and a gather of a
    value computed at run time rather than of a constant table."""
    nodes = [
        helper.make_node("Gather", ["items", "ids"], ["a"], name="g1"),
        helper.make_node("Mul", ["x", "x"], ["sq"], name="m"),
        helper.make_node("Gather", ["sq", "ids"], ["b"], name="g2"),
        helper.make_node("Concat", ["a", "b"], ["y"], name="c", axis=-1),
        helper.make_node("Relu", ["y"], ["z"], name="r"),
    ]
    proto = model(
        nodes,
        [_ids("ids", [2, 3]), io("x", [6, 4])],
        [io("z", None)],
        [init("items", rand((6, 5)))],
        opset=13,
    )
    ids = np.array([[0, 5, -1], [2, 2, -6]], _I)
    _assert_same(proto, {"ids": ids, "x": rand((6, 4), 3)}, backend)


def ctr_model(fields=(20, 7, 50), dim: int = 4, batch: int = 3):
    """A click-through-rate model's lookups, two ways: one shared table that each field's ids
    index after an offset (DeepFM), and a table per field picked by column (a Gather of a
    constant index and a Slice on the ids, then Unsqueeze/Concat/Reshape on the way)."""
    offsets = np.cumsum([0, *fields[:-1]]).astype(_I)
    shared = rand((sum(fields), dim), 11)
    nodes = [
        helper.make_node("Add", ["ids", "offsets"], ["shifted"], name="offset"),
        helper.make_node("Gather", ["shared", "shifted"], ["e"], name="shared_lookup"),
        helper.make_node("ReduceSum", ["e", "one"], ["fm"], name="fm", keepdims=0),
        # field 0 by a constant Gather on the columns, field 1 by a Slice, field 2 both ways
        helper.make_node("Gather", ["ids", "zero"], ["f0"], name="col0", axis=1),
        helper.make_node("Gather", ["t0", "f0"], ["e0"], name="lookup0"),
        helper.make_node("Slice", ["ids", "one", "two", "one"], ["f1"], name="col1"),
        helper.make_node("Reshape", ["f1", "flat"], ["f1r"], name="flat1"),
        helper.make_node("Gather", ["t1", "f1r"], ["e1"], name="lookup1"),
        helper.make_node("Gather", ["ids", "two_s"], ["f2"], name="col2", axis=1),
        helper.make_node("Unsqueeze", ["f2", "one"], ["f2u"], name="unsq2"),
        helper.make_node("Concat", ["f2u", "f2u"], ["f2c"], name="cat2", axis=1),
        helper.make_node("Gather", ["t2", "f2c"], ["e2"], name="lookup2"),
        helper.make_node("ReduceMean", ["e2"], ["e2m"], name="mean2", axes=[1], keepdims=0),
        helper.make_node("Concat", ["fm", "e0", "e1", "e2m"], ["y"], name="join", axis=1),
    ]
    inits = [
        init("offsets", offsets),
        init("shared", shared),
        init("zero", np.array(0, _I)),
        init("one", np.array([1], _I)),
        init("two", np.array([2], _I)),
        init("two_s", np.array(2, _I)),
        init("flat", np.array([-1], _I)),
        *(init(f"t{i}", rand((n, dim), 20 + i)) for i, n in enumerate(fields)),
    ]
    return model(nodes, [_ids("ids", [batch, len(fields)])], [io("y", None)], inits, opset=13)


def _field_ids(fields, batch: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, n, batch) for n in fields], axis=1).astype(_I)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ops_ctr_model_ids_offset_and_by_column(backend: str) -> None:
    fields = (20, 7, 50)
    proto = ctr_model(fields)
    ids = _field_ids(fields, 3)
    ids[0] = [19, 6, 49]  # each field's last row: valid for its own table only
    _assert_same(proto, {"ids": ids}, backend)


def test_ops_ctr_model_refuses_an_id_past_its_field(tmp_path) -> None:
    """Field 1 has 7 rows: an id of 7 there passes the shared table (77 rows, after an
    offset of 20) and is refused by field 1's own table, which the error names."""
    fields = (20, 7, 50)
    m = _model(ctr_model(fields), tmp_path)
    ids = _field_ids(fields, 3)
    ids[2, 1] = 7
    with pytest.raises(ValidationError, match=r"gather 'lookup1.* \(2,\): 7 is .*\[-7, 6\]"):
        m.run(ids)
    ids[2, 1] = 6
    ids[1, 2] = 57  # past the shared table's 77 rows once offset by 27
    with pytest.raises(ValidationError, match=r"gather 'shared_lookup.* \(1, 2\): 84 is"):
        m.run(ids)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ops_one_based_ids_through_sub(backend: str) -> None:
    nodes = [
        helper.make_node("Sub", ["ids", "one"], ["zero_based"], name="minus1"),
        helper.make_node("Gather", ["table", "zero_based"], ["y"], name="lookup"),
    ]
    proto = model(
        nodes,
        [_ids("ids", [2, 4])],
        [io("y", None)],
        [init("one", np.array(1, _I)), init("table", rand((9, 3)))],
        opset=13,
    )
    _assert_same(proto, {"ids": np.array([[1, 9, 5, 2], [9, 9, 1, 3]], _I)}, backend)


_CARRIERS = ("unsqueeze", "flatten", "transpose", "slice", "offset", "concat", "column")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
    chain=st.lists(st.sampled_from(_CARRIERS), max_size=4),
    rows=st.integers(1, 12),
    negative=st.booleans(),
    seed=st.integers(0, 2**16),
    backend=st.sampled_from(BACKENDS),
)
def test_ops_ids_carried_to_a_lookup_property(shape, chain, rows, negative, seed, backend):
    """Ids moved and offset by a random chain of the ops that carry them, then looked up:
    the same as onnxruntime. Offsets widen the table so that every id stays in range."""
    nodes, inits, x, dims, offset = [], [], "ids", list(shape), 0
    for k, op in enumerate(chain):
        y = f"c{k}"
        if op == "unsqueeze":
            inits.append(init(f"a{k}", np.array([0], _I)))
            nodes.append(helper.make_node("Unsqueeze", [x, f"a{k}"], [y]))
            dims = [1, *dims]
        elif op == "flatten":
            inits.append(init(f"a{k}", np.array([-1], _I)))
            nodes.append(helper.make_node("Reshape", [x, f"a{k}"], [y]))
            dims = [int(np.prod(dims))]
        elif op == "transpose":
            nodes.append(helper.make_node("Transpose", [x], [y]))
            dims = dims[::-1]
        elif op == "slice" and dims[0] > 1:
            inits += [init(f"s{k}", np.array([1], _I)), init(f"e{k}", np.array([dims[0]], _I))]
            nodes.append(helper.make_node("Slice", [x, f"s{k}", f"e{k}"], [y]))
            dims = [dims[0] - 1, *dims[1:]]
        elif op == "offset":
            inits.append(init(f"o{k}", np.array(3, _I)))
            nodes.append(helper.make_node("Add", [x, f"o{k}"], [y]))
            offset += 3
        elif op == "concat":
            nodes.append(helper.make_node("Concat", [x, x], [y], axis=0))
            dims = [2 * dims[0], *dims[1:]]
        elif op == "column" and len(dims) > 1:
            inits.append(init(f"i{k}", np.array(0, _I)))
            nodes.append(helper.make_node("Gather", [x, f"i{k}"], [y], axis=1))
            dims = [dims[0], *dims[2:]]
        else:
            continue
        x = y
    table_rows = rows + offset
    low = -table_rows if negative and offset == 0 else 0
    inits.append(init("table", rand((table_rows, 3), seed)))
    nodes.append(helper.make_node("Gather", ["table", x], ["y"], name="lookup"))
    proto = model(nodes, [_ids("ids", list(shape))], [io("y", None)], inits, opset=13)
    ids = np.random.default_rng(seed).integers(low, rows, shape).astype(_I)
    _assert_same(proto, {"ids": ids}, backend)


def test_ops_graph_refuses_index_inputs_it_does_not_have() -> None:
    b = GraphBuilder()
    graph = b.build([b.unary("relu", b.input("x", (2,)))])
    graph.index_inputs = ["ids"]
    with pytest.raises(ModelError, match="index input 'ids' is not a graph input"):
        graph.validate()


def test_ops_gather_of_too_many_rows_is_refused() -> None:
    b = GraphBuilder()
    ids = b.index_input("ids", (2,))
    with pytest.raises(ModelError, match=r"has 16777217 rows, 1 to 16777216 run"):
        b.gather(b.input("t", (2**24 + 1, 1)), ids)


def test_ops_graph_validate_refuses_a_gather_of_too_many_rows() -> None:
    from walle.ops.ir import Graph, Node, Value

    rows = 2**24 + 1
    graph = Graph(
        inputs=["t", "ids"],
        outputs=["y"],
        values={"t": Value("t", (rows, 1)), "ids": Value("ids", (2,)), "y": Value("y", (2, 1))},
        nodes=[Node("g", "gather", ("t", "ids"), "y", (("axis", 0),))],
        index_inputs=["ids"],
    )
    with pytest.raises(ModelError, match=r"node 'g' \(gather\): 16777217 rows to pick from"):
        graph.validate()


@pytest.mark.parametrize("backend", BACKENDS)
def test_ops_ids_cast_to_int64_on_their_way(backend: str) -> None:
    """PyTorch exports insert Casts on ids (int32 ids made int64): they leave ids as ids."""
    nodes = [
        helper.make_node("Cast", ["ids"], ["wide"], name="widen", to=TensorProto.INT64),
        helper.make_node("Gather", ["table", "wide"], ["y"], name="lookup"),
    ]
    proto = model(
        nodes,
        [_ids("ids", [2, 3], TensorProto.INT32)],
        [io("y", None)],
        [init("table", rand((6, 2)))],
        opset=13,
    )
    _assert_same(proto, {"ids": np.array([[0, 5, -1], [2, -6, 3]], np.int32)}, backend)


@pytest.mark.parametrize(
    ("source", "to", "match"),
    [
        ("x", TensorProto.INT64, r"'c' \(Cast\): a cast of float values to INT64"),
        ("x", TensorProto.DOUBLE, r"'c' \(Cast\): a cast to DOUBLE is not supported"),
        ("ids", TensorProto.DOUBLE, r"input 'ids' \(integer ids\) reaches node 'c' \(Cast\)"),
    ],
)
def test_ops_casts_that_would_change_values_are_refused(source, to, match, tmp_path) -> None:
    nodes = [
        helper.make_node("Cast", [source], ["c"], name="c", to=to),
        helper.make_node("Gather", ["table", "ids"], ["y"], name="g"),
    ]
    outputs = [io("y", None), helper.make_tensor_value_info("c", to, None)]
    proto = model(
        nodes, [_ids("ids", [3]), io("x", [3])], outputs, [init("table", rand((4, 2)))], opset=13
    )
    with pytest.raises(ModelError, match=match):
        _model(proto, tmp_path)


@pytest.mark.parametrize(
    "ids",
    [
        np.array([[1, 2, 3], [4, 5, 9]], np.uint32),
        np.array([[1, 2, 3], [4, 5, 9]], np.int16),
        np.array([[1, 2, 3], [4, 5, 9]], np.float64),
        np.asfortranarray(np.array([[1, 2, 3], [4, 5, 9]], np.int64)),
        [[1, 2, 3], [4, 5, 9]],
    ],
    ids=["uint32", "int16", "float64", "fortran", "list"],
)
def test_ops_ids_of_other_array_types_run_as_int64_ids(ids, tmp_path) -> None:
    """dtypes and layouts the compiled check does not take go through numpy's check."""
    m = _model(recommender_onnx(rows=10, seq=3), tmp_path)
    dense = rand((2, 8), 4)
    want = m.run(np.array([[1, 2, 3], [4, 5, 9]], np.int64), dense)[0]
    np.testing.assert_array_equal(m.run(ids, dense)[0], want)


def test_ops_ids_given_as_booleans_are_refused(tmp_path) -> None:
    m = _model(recommender_onnx(rows=10, seq=3), tmp_path)
    with pytest.raises(ValidationError, match="index input 'ids' must hold integers, got bool"):
        m.run(np.ones((2, 3), bool), rand((2, 8)))


def _attention_mask_model():
    """A BERT-style attention mask: int64 [N, L] of 1 (attend) and 0 (padding), unsqueezed,
    cast to float, (1 - mask) * -10000 added to the scores before a softmax; the token ids
    beside it are looked up in a table."""
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"], name="embed"),
        helper.make_node("MatMul", ["emb", "wq"], ["scores"], name="scores"),
        helper.make_node("Unsqueeze", ["mask", "axes"], ["m1"], name="unsqueeze"),
        helper.make_node("Cast", ["m1"], ["mf"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "mf"], ["inv"], name="invert"),
        helper.make_node("Mul", ["inv", "big"], ["bias"], name="scale"),
        helper.make_node("Transpose", ["scores"], ["st"], name="t", perm=[0, 2, 1]),
        helper.make_node("Add", ["st", "bias"], ["masked"], name="mask_add"),
        helper.make_node("Softmax", ["masked"], ["y"], name="softmax", axis=-1),
    ]
    inits = [
        init("table", rand((30, 4))),
        init("wq", rand((4, 3), seed=1)),
        init("axes", np.array([1], _I)),
        init("one", np.array(1.0, np.float32)),
        init("big", np.array(-10000.0, np.float32)),
    ]
    return model(
        nodes, [_ids("ids", ["N", 6]), _ids("mask", ["N", 6])], [io("y", None)], inits, opset=13
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_ops_integer_attention_mask_cast_to_float_matches_onnxruntime(backend, tmp_path) -> None:
    """Ids that end in a Cast to FLOAT are numbers from there on (onnxruntime's cast gives
    the same float32 values); the padded positions get no attention."""
    proto = _attention_mask_model()
    ids = np.array([[3, 7, 29, 0, 0, 0], [1, 2, 3, 4, 5, 6]], _I)
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], _I)
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    m = Model(path, backend=backend, use_cache=False, trials=False)
    (got,), (want,) = m.run(ids, mask), run_ort(proto, {"ids": ids, "mask": mask})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.all(got[0, :, 3:] < 1e-6)


def test_ops_a_mask_value_float32_cannot_hold_is_refused_by_position(tmp_path) -> None:
    proto = _attention_mask_model()
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    m = Model(path, use_cache=False, trials=False)
    mask = np.ones((2, 6), _I)
    mask[1, 4] = (1 << 24) + 1
    with pytest.raises(ValidationError, match=r"'mask' at position \(1, 4\): 16777217"):
        m.run(np.zeros((2, 6), _I), mask)

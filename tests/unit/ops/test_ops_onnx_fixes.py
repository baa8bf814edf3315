"""ONNX import: silent wrong results and errors in the wrong place (issue 11), and the ops the
nine CNNs of the onnx wheel need, each against onnxruntime with its default attributes.

Tolerance: |walle - onnxruntime| <= 1e-4 + 1e-4 * |onnxruntime| (float32).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from walle.errors import ModelError
from walle.ops import Model, available_backends, compile_graph
from walle.ops.onnx_import import import_onnx

BACKENDS = [b.name for b in available_backends()]
RTOL = ATOL = 1e-4


def _model(nodes, inputs, outputs, inits=(), opset: int = 17, value_info=()):
    graph = helper.make_graph(nodes, "t", inputs, outputs, list(inits), value_info=value_info)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _io(name: str, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _init(name: str, array: np.ndarray):
    return numpy_helper.from_array(array, name)


def _rand(shape, seed=0, low=-2.0, high=2.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def _ort(model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _walle(model, feeds: dict[str, np.ndarray], backend: str) -> list[np.ndarray]:
    graph = import_onnx(model)
    plan = compile_graph(graph, pin=backend, use_cache=False)
    return plan(*[feeds[n] for n in graph.inputs])


def _single(op: str, shapes, inits=(), opset: int = 17, **attrs):
    names = [f"x{i}" for i in range(len(shapes))]
    node = helper.make_node(op, [*names, *(i.name for i in inits)], ["y"], name="n", **attrs)
    ins = [_io(n, s) for n, s in zip(names, shapes, strict=True)]
    return _model([node], ins, [_io("y", None)], inits, opset)


def _assert_parity(model, feeds, backend: str) -> None:
    want = _ort(model, feeds)
    got = _walle(model, feeds, backend)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


# -- silent wrong results -------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_ops_pool_without_strides_uses_stride_one(backend: str, op: str) -> None:
    model = _single(op, [(1, 2, 7, 6)], kernel_shape=[3, 2])
    _assert_parity(model, {"x0": _rand((1, 2, 7, 6))}, backend)


def test_ops_declared_output_shape_is_checked() -> None:
    node = helper.make_node("Relu", ["x"], ["y"], name="act")
    model = _model([node], [_io("x", [2, 3])], [_io("y", [2, 4])])
    with pytest.raises(ModelError, match=r"node 'act' \(Relu\): output 'y' has shape \(2, 3\)"):
        import_onnx(model)


def test_ops_declared_intermediate_shape_is_checked() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["h"], name="first"),
        helper.make_node("Transpose", ["h"], ["y"], name="flip", perm=[1, 0]),
    ]
    model = _model(nodes, [_io("x", [2, 3])], [_io("y", [3, 2])], value_info=[_io("h", [3, 2])])
    with pytest.raises(ModelError, match=r"node 'first' \(Relu\): output 'h'.*\(3, 2\)"):
        import_onnx(model)


def test_ops_declared_shapes_with_symbolic_and_batch_dims_are_accepted() -> None:
    node = helper.make_node("Relu", ["x"], ["y"], name="act")
    model = _model([node], [_io("x", [1, 3])], [_io("y", [1, "M"])])
    for batch, rows in ((None, 1), (4, 4)):
        graph = import_onnx(model, batch=batch)
        assert graph.shape(graph.outputs[0]) == (rows, 3)


# Not MaxPool: onnxruntime skips NaN inside a window (its running max starts at the lowest
# float and only takes larger values), walle's max keeps it, as numpy and PyTorch do.
def _nan_inf(shape, seed=0) -> np.ndarray:
    x = _rand(shape, seed)
    flat = x.reshape(-1)
    flat[::5], flat[1::7], flat[2::11] = np.nan, np.inf, -np.inf
    return x


NAN_CASES = [
    ("Relu", [(4, 10)], {}),
    ("Sigmoid", [(4, 10)], {}),
    ("Tanh", [(4, 10)], {}),
    ("Add", [(4, 10), (10,)], {}),
    ("Mul", [(4, 10), (4, 10)], {}),
    ("Softmax", [(4, 10)], {"axis": -1}),
    ("ReduceMean", [(4, 10)], {"axes": [1]}),
    ("MatMul", [(4, 10), (10, 3)], {}),
    ("AveragePool", [(1, 2, 6, 5)], {"kernel_shape": [2, 2], "strides": [2, 1]}),
    ("Conv", [(1, 2, 6, 5), (3, 2, 3, 3)], {"pads": [1, 1, 1, 1]}),
    ("GlobalAveragePool", [(1, 2, 6, 5)], {}),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("op", "shapes", "attrs"), NAN_CASES, ids=[c[0] for c in NAN_CASES])
def test_ops_nan_and_inf_propagate_like_onnxruntime(backend, op, shapes, attrs) -> None:
    model = _single(op, shapes, **attrs)
    feeds = {f"x{i}": _nan_inf(s, seed=i) for i, s in enumerate(shapes)}
    with np.errstate(all="ignore"):
        want = _ort(model, feeds)[0]
        got = _walle(model, feeds, backend)[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


# -- errors in the right place --------------------------------------------------------------
def test_ops_unsupported_op_is_refused_when_the_model_is_built(tmp_path) -> None:
    path = tmp_path / "erf.onnx"
    onnx.save(_single("NonZero", [("N", 3)]), str(path))
    with pytest.raises(ModelError, match=r"node 'n' \(NonZero\): unsupported op 'NonZero'"):
        Model(path, use_cache=False, trials=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ops_empty_batch_returns_an_empty_result(tmp_path, backend: str) -> None:
    w = _rand((3, 4))
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    model = _model([node], [_io("x", ["N", 3])], [_io("y", ["N", 4])], [_init("w", w)])
    path = tmp_path / "mm.onnx"
    onnx.save(model, str(path))
    empty = np.zeros((0, 3), np.float32)
    want = _ort(model, {"x": empty})[0]
    m = Model(path, backend=backend, use_cache=False, trials=False)
    got = m(empty)
    assert got.shape == want.shape == (0, 4) and got.dtype == np.float32
    assert [a.shape for a in m.run(empty)] == [(0, 4)]


def test_ops_run_keeps_each_inputs_leading_dim(tmp_path) -> None:
    node = helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")
    model = _model([node], [_io("a", ["N", 3]), _io("b", [3, 4])], [_io("y", ["N", 4])])
    path = tmp_path / "two.onnx"
    onnx.save(model, str(path))
    a, b = _rand((2, 3), 1), _rand((3, 4), 2)
    got = Model(path, use_cache=False, trials=False).run(a, b)[0]
    np.testing.assert_allclose(got, _ort(model, {"a": a, "b": b})[0], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("declared", ["no shape", "no type"])
def test_ops_outputs_without_declared_shape_are_accepted(tmp_path, declared: str) -> None:
    out = (
        helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
        if declared == "no shape"
        else helper.make_empty_tensor_value_info("y")
    )
    node = helper.make_node("Relu", ["x"], ["y"], name="act")
    model = _model([node], [_io("x", ["N", 3])], [out])
    path = tmp_path / "open.onnx"
    onnx.save(model, str(path))
    x = _rand((2, 3))
    got = Model(path, use_cache=False, trials=False)(x)
    np.testing.assert_allclose(got, _ort(model, {"x": x})[0])


# -- the ops of the nine CNNs ---------------------------------------------------------------
_I64 = np.int64
_BN = [
    _init("s", _rand((3,), 3, 0.5, 1.5)),
    _init("bb", _rand((3,), 4)),
    _init("m", _rand((3,), 5)),
    _init("v", _rand((3,), 6, 0.5, 2.0)),
]
NEW_OPS = [
    ("BatchNormalization", [(2, 3, 4, 5)], _BN, 9, {}),
    ("BatchNormalization", [(2, 3, 4, 5)], _BN, 15, {"epsilon": 0.1}),
    ("BatchNormalization", [(2, 3)], _BN, 15, {}),
    ("Dropout", [(3, 4)], [], 9, {}),
    ("Dropout", [(3, 4)], [], 17, {}),
    ("LRN", [(2, 7, 3, 4)], [], 9, {"size": 5}),
    ("LRN", [(1, 6, 5, 2)], [], 17, {"size": 3, "alpha": 0.01, "beta": 0.5, "bias": 2.0}),
    ("LRN", [(1, 3, 2, 2)], [], 17, {"size": 7}),
    ("Sum", [(3, 4)], [], 9, {}),
    ("Sum", [(3, 4), (4,)], [], 9, {}),
    ("Sum", [(3, 4), (3, 1), (1, 4)], [], 17, {}),
    ("Unsqueeze", [(3, 4)], [], 9, {"axes": [0, 3]}),
    ("Unsqueeze", [(3, 4)], [_init("ax", np.array([-1, 1], _I64))], 17, {}),
    ("Conv", [(1, 4, 6, 6), (6, 2, 3, 3)], [], 17, {"group": 2}),
    ("Conv", [(2, 4, 6, 5), (4, 1, 3, 3), (4,)], [], 17, {"group": 4, "pads": [1, 1, 1, 1]}),
    ("Conv", [(1, 6, 7, 7), (3, 2, 2, 2)], [], 17, {"group": 3, "strides": [2, 2]}),
    ("Softmax", [(2, 3, 1, 2)], [], 9, {}),
    ("Softmax", [(2, 3, 4)], [], 11, {"axis": 1}),
    ("MaxPool", [(1, 2, 6, 6)], [], 9, {"kernel_shape": [2, 2], "pads": [0, 0, 1, 1]}),
    ("AveragePool", [(1, 2, 6, 6)], [], 9, {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("op", "shapes", "inits", "opset", "attrs"),
    NEW_OPS,
    ids=[f"{c[0]}{i}" for i, c in enumerate(NEW_OPS)],
)
def test_ops_cnn_op_matches_onnxruntime(backend, op, shapes, inits, opset, attrs) -> None:
    model = _single(op, shapes, inits, opset, **attrs)
    feeds = {f"x{i}": _rand(s, seed=i) for i, s in enumerate(shapes)}
    _assert_parity(model, feeds, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("value", [None, 0.5])
def test_ops_constant_of_shape_matches_onnxruntime(backend: str, value) -> None:
    attrs = {} if value is None else {"value": numpy_helper.from_array(np.array([value], "f"))}
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["c"], name="fill", **attrs),
        helper.make_node("Add", ["x", "c"], ["y"], name="add"),
    ]
    model = _model(
        nodes, [_io("x", [2, 3])], [_io("y", [2, 3])], [_init("shape", np.array([2, 3], _I64))]
    )
    _assert_parity(model, {"x": _rand((2, 3))}, backend)


def _conv_bn(bn_inits=_BN, consumers: int = 1):
    w = _init("w", _rand((3, 2, 3, 3), 7))
    b = _init("b", _rand((3,), 8))
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["y"], name="bn"),
    ]
    outputs = [_io("y", [1, 3, 5, 5])]
    if consumers > 1:
        nodes.append(helper.make_node("Relu", ["c"], ["r"], name="relu"))
        outputs.append(_io("r", [1, 3, 5, 5]))
    return _model(nodes, [_io("x", [1, 2, 5, 5])], outputs, [w, b, *bn_inits], opset=9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ops_batchnorm_folds_into_the_conv(backend: str) -> None:
    model = _conv_bn()
    plain = _model(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1])],
        [_io("x", [1, 2, 5, 5])],
        [_io("y", [1, 3, 5, 5])],
        [_init("w", _rand((3, 2, 3, 3), 7)), _init("b", _rand((3,), 8))],
    )
    assert [n.op for n in import_onnx(model).nodes] == [n.op for n in import_onnx(plain).nodes]
    _assert_parity(model, {"x": _rand((1, 2, 5, 5))}, backend)


def test_ops_batchnorm_after_a_shared_conv_is_not_folded() -> None:
    model = _conv_bn(consumers=2)
    ops = [n.attr("kind") for n in import_onnx(model).nodes if n.op == "binary"]
    assert ops[-2:] == ["mul", "add"]
    _assert_parity(model, {"x": _rand((1, 2, 5, 5))}, "numpy")


def _conv_scale_shift(scale_shape, shift_shape, const_first: bool, group: int = 1):
    """Conv -> BN -> Mul by an Unsqueezed constant -> Add of a constant -> Relu (Inception
    v2's layers), opset 11 (Unsqueeze's axes an attribute)."""
    scale = _rand(scale_shape, 9, 0.5, 1.5)
    shift = _rand(shift_shape, 10)
    mul_in = ["sc", "n"] if const_first else ["n", "sc"]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1], group=group),
        helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"], name="bn"),
        helper.make_node("Unsqueeze", ["scale"], ["sc"], name="unsq", axes=[0]),
        helper.make_node("Mul", mul_in, ["p"], name="mul"),
        helper.make_node("Add", ["p", "shift"], ["q"], name="add"),
        helper.make_node("Relu", ["q"], ["y"], name="relu"),
    ]
    inits = [_init("w", _rand((4, 4 // group, 3, 3), 7)), *_BN4]
    inits += [_init("scale", scale.reshape(scale_shape)), _init("shift", shift)]
    return _model(nodes, [_io("x", [2, 4, 5, 5])], [_io("y", [2, 4, 5, 5])], inits, opset=11)


_BN4 = [
    _init("s", _rand((4,), 1, 0.5, 1.5)),
    _init("bb", _rand((4,), 2)),
    _init("m", _rand((4,), 3)),
    _init("v", _rand((4,), 4, 0.5, 1.5)),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("scale_shape", "shift_shape", "const_first", "group"),
    [
        ((4, 1, 1), (4, 1, 1), False, 1),
        ((4, 1, 1), (1, 4, 1, 1), True, 1),
        ((1,), (), False, 2),
        ((4, 1, 1), (4, 1, 1), True, 4),
    ],
)
def test_ops_per_channel_mul_and_add_after_a_conv_fold_into_it(
    backend: str, scale_shape, shift_shape, const_first: bool, group: int
) -> None:
    """BN, then a per-channel scale and shift (constants shaped by Unsqueeze later in the
    graph than the conv), fold into the conv: what is left is the conv and its ReLU."""
    model = _conv_scale_shift(scale_shape, shift_shape, const_first, group)
    graph = import_onnx(model)
    assert not [n for n in graph.nodes if n.op == "binary" and n.attr("kind") == "mul"]
    assert len([n for n in graph.nodes if n.op == "binary"]) == 1  # the conv's bias add
    _assert_parity(model, {"x": _rand((2, 4, 5, 5), 11)}, backend)


def test_ops_a_spatial_mul_after_a_conv_is_not_folded() -> None:
    """A constant that varies over the plane ([1, 5, 5] after Unsqueeze: [1, 1, 5, 5]) is no
    per-channel scale: it stays a Mul."""
    model = _conv_scale_shift((1, 5, 5), (4, 1, 1), False)
    graph = import_onnx(model)
    assert [n.attr("kind") for n in graph.nodes if n.op == "binary"].count("mul") == 1
    _assert_parity(model, {"x": _rand((2, 4, 5, 5), 12)}, "numpy")


def _preact_scale_shift(shared: bool, made: bool = False):
    """BN -> Mul by a per-channel constant -> Add of one -> Relu on a graph input (DenseNet's
    pre-activations: no conv before them). ``shared``: the Mul's output is a second output.
    ``made``: the scale is made after the BN, Unsqueezed from a ConstantOfShape (the onnx
    wheel's light DenseNet-121)."""
    nodes = [
        helper.make_node("BatchNormalization", ["x", "s", "bb", "m", "v"], ["n"], name="bn"),
        helper.make_node("Mul", ["n", "scale"], ["p"], name="mul"),
        helper.make_node("Add", ["shift", "p"], ["q"], name="add"),
        helper.make_node("Relu", ["q"], ["y"], name="relu"),
    ]
    inits = [*_BN4, _init("shift", _rand((1, 4, 1, 1), 10))]
    if made:
        fill = numpy_helper.from_array(np.array([1.5], np.float32))
        nodes[1:1] = [
            helper.make_node("ConstantOfShape", ["dims"], ["flat"], name="fill", value=fill),
            helper.make_node("Unsqueeze", ["flat"], ["scale"], name="unsq", axes=[1, 2]),
        ]
        inits.append(_init("dims", np.array([4], _I64)))
    else:
        inits.append(_init("scale", _rand((4, 1, 1), 9)))
    outputs = [_io("y", [2, 4, 5, 5])] + ([_io("p", [2, 4, 5, 5])] if shared else [])
    return _model(nodes, [_io("x", [2, 4, 5, 5])], outputs, inits, opset=11)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("made", [False, True])
def test_ops_a_scale_and_shift_after_a_batchnorm_fold_into_its_multiply_and_add(
    backend: str, made: bool
) -> None:
    """With no conv before it, a BN is one multiply and add per channel, and the per-channel
    Mul and Add after it fold into them (composed in float64): a chain of two binary ops
    where the model has four."""
    model = _preact_scale_shift(shared=False, made=made)
    graph = import_onnx(model)
    assert [n.attr("kind") for n in graph.nodes if n.op == "binary"] == ["mul", "add"]
    x = _rand((2, 4, 5, 5), 11)
    x[0, 1, 2, 3], x[1, 2, 0, 0], x[1, 3, 4, 4] = np.nan, np.inf, -np.inf
    _assert_parity(model, {"x": x}, backend)


def test_ops_a_follower_of_a_batchnorm_read_twice_stops_the_folding() -> None:
    """The Mul's output is also a graph output: the Mul folds into the BN (its value is the
    BN's), the Add after it stays."""
    model = _preact_scale_shift(shared=True)
    graph = import_onnx(model)
    assert [n.attr("kind") for n in graph.nodes if n.op == "binary"] == ["mul", "add", "add"]
    _assert_parity(model, {"x": _rand((2, 4, 5, 5), 12)}, "numpy")


def test_ops_dropout_mask_output_is_refused() -> None:
    nodes = [
        helper.make_node("Dropout", ["x"], ["y", "mask"], name="drop"),
        helper.make_node("Cast", ["mask"], ["m"], name="cast", to=TensorProto.FLOAT),
    ]
    model = _model(nodes, [_io("x", [2, 3])], [_io("y", [2, 3]), _io("m", [2, 3])], opset=9)
    with pytest.raises(ModelError, match=r"node 'drop' \(Dropout\): the mask output"):
        import_onnx(model)


def _flatten_model(target: list[int], saved_batch: int) -> onnx.ModelProto:
    """conv-free head: x [saved, 4, 3] -> Relu -> Reshape(target) -> MatMul [12, 5]."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "shape"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "w"], ["y"], name="fc"),
    ]
    inits = [_init("shape", np.array(target, np.int64)), _init("w", _rand((12, 5), seed=2))]
    return _model(nodes, [_io("x", [saved_batch, 4, 3])], [_io("y", None)], inits)


@pytest.mark.parametrize("saved", [1, 8])
@pytest.mark.parametrize("target_tail", [[12], [-1]])
def test_onnx_reshape_hard_coding_the_saved_batch_follows_the_given_batch(saved, target_tail):
    """A flatten saved as Reshape to [saved batch, ...] (ResNet-50's [1, 2048]) imported at
    another batch keeps each row a row: every row equals onnxruntime's on that row alone at
    the saved batch (a sub-batch plan of ResNet-50 at batch 8 runs the graph of 1 row)."""
    model = _flatten_model([saved, *target_tail], saved)
    x = _rand((saved * 3, 4, 3), seed=4)
    for rows in (1, 3, saved * 3):
        graph = import_onnx(model, batch=rows)
        plan = compile_graph(graph, pin="numpy", use_cache=False)
        got = plan(x[:rows])[0]
        assert got.shape == (rows, 5)
        for start in range(0, rows - saved + 1, saved):
            want = _ort(model, {"x": x[start : start + saved]})[0]
            np.testing.assert_allclose(got[start : start + saved], want, rtol=RTOL, atol=ATOL)


def test_onnx_reshape_that_moves_the_batch_is_kept_as_saved() -> None:
    """A target whose leading dim is not the saved batch is the model's own: at another
    batch it is refused by its size (it would mix rows), naming the node."""
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="flat")
    shape = _init("shape", np.array([2, 18], np.int64))  # [3, 4, 3] -> [2, 18]: rows mixed
    model = _model([node], [_io("x", [3, 4, 3])], [_io("y", None)], [shape])
    x = _rand((3, 4, 3))
    np.testing.assert_array_equal(_walle(model, {"x": x}, "numpy")[0], x.reshape(2, 18))
    with pytest.raises(ModelError, match="flat"):
        import_onnx(model, batch=5)


def test_onnx_reshape_of_a_value_not_led_by_the_batch_is_kept_as_saved() -> None:
    """The saved batch in a target is only moved where the source leads with the batch:
    after a Transpose that moved it, [2, 12] stays [2, 12] (refused at batch 5 by its size,
    where [5, 12] would have mixed rows)."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], name="swap", perm=[1, 0, 2]),
        helper.make_node("Reshape", ["t", "shape"], ["y"], name="flat"),
    ]
    shape = _init("shape", np.array([2, 12], np.int64))
    model = _model(nodes, [_io("x", [2, 3, 4])], [_io("y", None)], [shape])
    x = _rand((2, 3, 4))
    want = x.transpose(1, 0, 2).reshape(2, 12)
    np.testing.assert_array_equal(_walle(model, {"x": x}, "numpy")[0], want)
    with pytest.raises(ModelError, match="flat"):
        import_onnx(model, batch=5)


def test_onnx_reshape_of_a_constant_is_kept_at_another_batch() -> None:
    """A constant [3, 4] reshaped to [1, 12] and added to every row: read at batch 3 (the
    constant's leading dim), the target stays [1, 12]."""
    nodes = [
        helper.make_node("Reshape", ["c", "shape"], ["r"], name="flat"),
        helper.make_node("Add", ["x", "r"], ["y"], name="add"),
    ]
    inits = [_init("c", _rand((3, 4), seed=1)), _init("shape", np.array([1, 12], np.int64))]
    model = _model(nodes, [_io("x", [1, 12])], [_io("y", None)], inits)
    x = _rand((3, 12), seed=2)
    plan = compile_graph(import_onnx(model, batch=3), pin="numpy", use_cache=False)
    got = plan(x)[0]
    for row in range(3):
        want = _ort(model, {"x": x[row : row + 1]})[0]
        np.testing.assert_allclose(got[row : row + 1], want, rtol=RTOL, atol=ATOL)


_INT64_MAX = 2**63 - 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("starts", "ends", "steps"),
    [
        ([1], [_INT64_MAX], [1]),  # PyTorch's x[:, 1:]
        ([-1], [-_INT64_MAX], [-1]),  # its reversed pad list (F.pad's export): x[:, ::-1]
        ([-2], [-(2**63)], [-2]),
        ([0], [2**31 - 1], [2]),  # older exporters' INT32_MAX
        ([-1], [_INT64_MAX], [-1]),  # onnxruntime: backwards to the start
        ([2], [2**31 - 1], [-1]),
    ],
)
def test_onnx_slice_to_the_int64_bound_keeps_the_rest_of_the_axis(
    backend: str, starts, ends, steps
) -> None:
    """Its ``ends`` as PyTorch exports them, from Constant nodes: float32 (walle's constants)
    rounds 2**63 - 1 to 2**63, which a cast to int64 wrapped to -2**63, so the Slice kept
    nothing (found on silero-vad's STFT). Integer constants are now read as the model gives
    them; with a negative step onnxruntime reads INT32_MAX and INT64_MAX as "to the start"."""
    nodes = [
        helper.make_node("Constant", [], [name], value=_init(name, np.array(v, np.int64)))
        for name, v in (("s", starts), ("e", ends), ("a", [1]), ("st", steps))
    ]
    nodes.append(helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"], name="cut"))
    model = _model(nodes, [_io("x", [2, 5])], [_io("y", None)])
    _assert_parity(model, {"x": _rand((2, 5))}, backend)


@pytest.mark.parametrize(("op", "value"), [("Reshape", np.nan), ("ConstantOfShape", np.inf)])
def test_onnx_a_shape_that_is_not_an_integer_is_refused_naming_its_input(op, value) -> None:
    """A Reshape's or ConstantOfShape's shape holding NaN or infinity (a float tensor cast to
    int64 upstream): a ModelError naming the node and the input, not Python's ValueError."""
    shape = _init("shape", np.array([2, value], np.float32))
    if op == "Reshape":
        nodes = [
            helper.make_node("Cast", ["shape"], ["ints"], to=TensorProto.INT64),
            helper.make_node("Reshape", ["x", "ints"], ["y"], name="flat"),
        ]
        model = _model(nodes, [_io("x", [2, 3])], [_io("y", None)], [shape])
    else:
        nodes = [
            helper.make_node("Cast", ["shape"], ["ints"], to=TensorProto.INT64),
            helper.make_node("ConstantOfShape", ["ints"], ["c"], name="flat"),
            helper.make_node("Add", ["x", "c"], ["y"]),
        ]
        model = _model(nodes, [_io("x", [2, 3])], [_io("y", None)], [shape])
    with pytest.raises(ModelError, match=r"flat.*'ints'.*not an integer"):
        import_onnx(model)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["linear", "nearest", "cubic"])
def test_onnx_align_corners_takes_a_scale_that_float32_rounds_off_a_whole_length(
    backend: str, mode: str
) -> None:
    """Scale 0.6 on a width of 5: float32's 0.6 is 0.6000000238, so 5 x 0.6 is 3 + 1.2e-7,
    which align_corners refused as a fractional length (where the spec and onnxruntime map
    differently). The scale is 3 / 5 as float32 writes it: a whole length, mapped as
    onnxruntime does. Found by the Resize property test on a random seed."""
    inits = [
        _init("roi", np.zeros(0, np.float32)),
        _init("scales", np.array([1, 1, 1, 0.6], np.float32)),
    ]
    node = helper.make_node(
        "Resize", ["x", "roi", "scales"], ["y"], name="n", mode=mode,
        coordinate_transformation_mode="align_corners",
    )  # fmt: skip
    model = _model([node], [_io("x", [1, 1, 2, 5])], [_io("y", None)], inits, opset=19)
    _assert_parity(model, {"x": _rand((1, 1, 2, 5))}, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_identity_names_its_input_and_outputs_stay_apart(backend) -> None:
    """Identity adds no step (its output is its input's value); Identity of a graph input as
    a graph output, and two outputs that are one value, still come back as arrays of their
    own, apart from the caller's input and from each other."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Identity", ["r"], ["y1"]),
        helper.make_node("Identity", ["y1"], ["y2"]),
        helper.make_node("Identity", ["x"], ["x2"]),
        helper.make_node("Identity", ["x2"], ["x3"]),
        helper.make_node("Sigmoid", ["x3"], ["z"]),
    ]
    model = _model(nodes, [_io("x", [2, 3])], [_io(o, [2, 3]) for o in ("y1", "y2", "x2", "z")])
    graph = import_onnx(model, batch=2)
    assert [n.attr("kind") for n in graph.nodes] == ["relu", "sigmoid"]
    x = _rand((2, 3), 5)
    got = Model(lambda rows: import_onnx(model, batch=rows), backend=backend).run(x)
    for g, w in zip(got, _ort(model, {"x": x}), strict=True):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
    assert not np.shares_memory(got[0], got[1]) and not np.shares_memory(got[2], x)


@pytest.mark.parametrize("how", ["initializer", "constant_node"])
def test_resize_with_empty_scales_beside_sizes_uses_the_sizes(how) -> None:
    """The spec passes sizes with an empty scales tensor in scales' place (Paddle's exports
    do, SLANet's table recogniser among them, its scales a Constant node); that empty tensor
    is "not given", as onnxruntime reads it."""
    nodes = [
        helper.make_node(
            "Resize",
            ["x", "roi", "scales", "sizes"],
            ["y"],
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        )
    ]
    empty = np.zeros((0,), np.float32)
    inits = [_init("roi", empty), _init("sizes", np.array([1, 3, 10, 14], np.int64))]
    if how == "initializer":
        inits.append(_init("scales", empty))
    else:
        nodes.insert(0, helper.make_node("Constant", [], ["scales"], value=_init("s", empty)))
    model = _model(nodes, [_io("x", [1, 3, 5, 7])], [_io("y", [1, 3, 10, 14])], inits, opset=13)
    x = _rand((1, 3, 5, 7), 6)
    got = Model(lambda rows: import_onnx(model, batch=rows)).run(x)[0]
    np.testing.assert_array_equal(got, _ort(model, {"x": x})[0])


def test_declared_shape_with_negative_dims_is_unknown_there() -> None:
    """Older paddle2onnx declares dynamic dims as dim_value -1 (PP-OCRv3's detector: its
    output [-1, 1, -1, -1]); onnxruntime reads them as unknown, and so does walle (such a
    declaration that does not fit is logged, as a symbolic one is). A fully static
    declaration that differs is still refused."""
    nodes = [helper.make_node("Sigmoid", ["x"], ["y"])]
    model = _model(nodes, [_io("x", [1, 2, 4, 5])], [_io("y", [-1, 2, -1, -1])])
    assert model.graph.output[0].type.tensor_type.shape.dim[0].dim_value == -1
    x = _rand((1, 2, 4, 5), 7)
    got = Model(lambda rows: import_onnx(model, batch=rows)).run(x)[0]
    np.testing.assert_allclose(got, _ort(model, {"x": x})[0], rtol=RTOL, atol=ATOL)
    wrong = _model(nodes, [_io("x", [1, 2, 4, 5])], [_io("y", [1, 3, 4, 5])])
    with pytest.raises(ModelError, match="declares"):
        import_onnx(wrong, batch=1)


def test_input_declared_with_a_negative_leading_dim_takes_the_given_batch() -> None:
    """An input [-1, 2, 4, 5] (older paddle2onnx) is batch-sized: its -1 is no saved batch
    of the model, so a Reshape to [-1, 20] keeps its -1 (rows of 20, two a sample)."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 20])
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"])]
    model = _model(nodes, [_io("x", [-1, 2, 4, 5])], [_io("y", [-1, 20])], [shape])
    x = _rand((3, 2, 4, 5), 8)
    got = Model(lambda rows: import_onnx(model, batch=rows)).run(x)[0]
    np.testing.assert_array_equal(got, _ort(model, {"x": x})[0])

"""Attributes ops lost at opset 7 (``broadcast``/``axis`` on Add/Sub/Mul/Div, ``broadcast``
on Gemm, ``is_test`` on BatchNormalization), read as opset 6 meant them.

onnxruntime has no kernels for these ops before opset 7, so each opset-6 model is checked
against onnxruntime running the opset-7 model that means the same: the right operand passed
already reshaped to where opset 6 aligned it (written out by hand per case), C as given,
BatchNormalization without ``is_test``. Refusals name the node and op (or the input).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from tests.unit.ops._onnx_cases import (
    assert_parity,
    init,
    io,
    model,
    nan_inf,
    rand,
    run_ort,
    run_walle,
    single,
)
from walle.errors import ModelError
from walle.ops import Model, available_backends
from walle.ops.onnx_import import import_onnx

BACKENDS = [b.name for b in available_backends()]
ATOL = RTOL = 1e-4

# (A's shape, B's shape, attributes at opset 6, B's shape as opset 7 broadcasts the same)
BROADCASTS = {
    "scalar": ((2, 3, 4, 5), (), {"broadcast": 1}, ()),
    "one_element": ((2, 3, 4, 5), (1, 1), {"broadcast": 1}, (1, 1)),
    "suffix": ((2, 3, 4, 5), (5,), {"broadcast": 1}, (5,)),
    "suffix_2d": ((2, 3, 4, 5), (4, 5), {"broadcast": 1}, (4, 5)),
    "axis_1": ((2, 3, 4, 5), (3, 4), {"broadcast": 1, "axis": 1}, (3, 4, 1)),
    "axis_0": ((2, 3, 4, 5), (2,), {"broadcast": 1, "axis": 0}, (2, 1, 1, 1)),
    "axis_negative": ((2, 3, 4, 5), (3,), {"broadcast": 1, "axis": -3}, (3, 1, 1)),
    "size1_inside": ((2, 3, 4), (3, 1), {"broadcast": 1, "axis": 1}, (3, 1)),
    "size1_first": ((2, 3, 4), (1, 3), {"broadcast": 1, "axis": 0}, (1, 3, 1)),
    "same_shape": ((2, 3), (2, 3), {}, (2, 3)),
    "same_shape_broadcast": ((2, 3), (2, 3), {"broadcast": 1}, (2, 3)),
}
OPS = ("Add", "Sub", "Mul", "Div")


def _as_opset7(op: str, sa, sb7):
    return single(op, [sa, sb7], opset=7)


def _assert_same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


def _check_broadcast(op: str, sa, sb, attrs, sb7, backend: str, nan: bool = False) -> None:
    legacy = single(op, [sa, sb], opset=6, **attrs)
    make = nan_inf if nan else rand
    a, b = make(sa, 0), make(sb, 1)
    if op == "Div" and not nan:
        b = np.where(np.abs(b) < 0.25, np.float32(0.5), b)
    want = run_ort(_as_opset7(op, sa, sb7), {"x0": a, "x1": b.reshape(sb7)})
    with np.errstate(all="ignore"):
        got = run_walle(legacy, {"x0": a, "x1": b}, backend)
    _assert_same(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("case", sorted(BROADCASTS))
def test_opset6_binary_broadcast_matches_its_opset7_form(backend: str, op: str, case: str):
    sa, sb, attrs, sb7 = BROADCASTS[case]
    _check_broadcast(op, sa, sb, attrs, sb7, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["axis_1", "suffix", "size1_inside"])
def test_opset6_binary_broadcast_keeps_nan_and_inf(backend: str, case: str):
    sa, sb, attrs, sb7 = BROADCASTS[case]
    _check_broadcast("Add", sa, sb, attrs, sb7, backend, nan=True)


@st.composite
def _legacy_broadcasts(draw):
    """A's shape, B's shape (a run of A's dims, some of them 1), and the axis it starts at
    (None: by suffix), with the B shape opset 7 broadcasts the same way."""
    sa = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    rank_b = draw(st.integers(1, len(sa)))
    axis = draw(st.integers(0, len(sa) - rank_b))
    sb = tuple(d if draw(st.booleans()) else 1 for d in sa[axis : axis + rank_b])
    by_suffix = axis == len(sa) - rank_b and draw(st.booleans())
    sb7 = sb + (1,) * (len(sa) - axis - rank_b)
    return sa, sb, None if by_suffix else axis, sb7


@settings(max_examples=30, deadline=None)
@given(case=_legacy_broadcasts(), op=st.sampled_from(OPS), backend=st.sampled_from(BACKENDS))
def test_opset6_binary_broadcast_property(case, op: str, backend: str):
    sa, sb, axis, sb7 = case
    attrs = {"broadcast": 1} if axis is None else {"broadcast": 1, "axis": axis}
    _check_broadcast(op, sa, sb, attrs, sb7, backend)


# (A, B, C shapes, attributes at opset 6)
GEMMS = {
    "c_row": ((3, 4), (4, 5), (5,), {"broadcast": 1}),
    "c_scalar": ((3, 4), (4, 5), (1,), {"broadcast": 1}),
    "c_column": ((3, 4), (4, 5), (3, 1), {"broadcast": 1}),
    "c_full": ((3, 4), (4, 5), (3, 5), {}),
    "c_full_trans_b": ((3, 4), (5, 4), (3, 5), {"transB": 1, "alpha": 0.5, "beta": 2.0}),
    "c_row_trans_a": ((4, 3), (4, 5), (1, 5), {"broadcast": 1, "transA": 1}),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(GEMMS))
def test_opset6_gemm_broadcast_matches_opset7(backend: str, case: str):
    sa, sb, sc, attrs = GEMMS[case]
    feeds = {"x0": rand(sa, 0), "x1": rand(sb, 1), "x2": rand(sc, 2)}
    seven = {k: v for k, v in attrs.items() if k != "broadcast"}
    want = run_ort(single("Gemm", [sa, sb, sc], opset=7, **seven), feeds)
    got = run_walle(single("Gemm", [sa, sb, sc], opset=6, **attrs), feeds, backend)
    _assert_same(got, want)


def _batchnorm(opset: int, shape, conv: bool, **attrs):
    """BatchNormalization over x0 (after a 3x3 Conv with constant weights when ``conv``)."""
    channels = shape[1]
    rng = np.random.default_rng(3)
    params = [
        init("scale", rng.uniform(0.5, 1.5, channels).astype(np.float32)),
        init("bias", rng.uniform(-1, 1, channels).astype(np.float32)),
        init("mean", rng.uniform(-1, 1, channels).astype(np.float32)),
        init("var", rng.uniform(0.5, 2.0, channels).astype(np.float32)),
    ]
    nodes, inits, source = [], params, "x0"
    if conv:
        weight = init("w", rng.uniform(-1, 1, (channels, channels, 3, 3)).astype(np.float32))
        nodes.append(helper.make_node("Conv", ["x0", "w"], ["c"], name="conv", pads=[1] * 4))
        inits, source = [*params, weight], "c"
    inputs = [source, "scale", "bias", "mean", "var"]
    nodes.append(helper.make_node("BatchNormalization", inputs, ["y0"], name="n", **attrs))
    return model(nodes, [io("x0", list(shape))], [io("y0", None)], inits, opset)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("shape", "conv"),
    [((2, 3, 5), False), ((2, 3, 4, 5), False), ((1, 3, 2, 3, 4), False), ((2, 3, 4, 5), True)],
    ids=["1d", "2d", "3d", "2d_after_conv"],
)
def test_opset6_batchnorm_is_test_matches_opset7(backend: str, shape, conv: bool):
    feeds = {"x0": rand(shape, 0)}
    want = run_ort(_batchnorm(7, shape, conv, epsilon=1e-3, momentum=0.8), feeds)
    legacy = _batchnorm(6, shape, conv, epsilon=1e-3, momentum=0.8, is_test=1)
    _assert_same(run_walle(legacy, feeds, backend), want)


REFUSED = {
    "binary_shapes_differ": (
        single("Add", [(2, 3), (3,)], opset=6),
        r"node 'n' \(Add\): shapes \(2, 3\) and \(3,\) differ and broadcast is not set",
    ),
    "binary_not_a_run_of_dims": (
        single("Mul", [(2, 3, 4, 5), (4,)], opset=6, broadcast=1, axis=1),
        r"node 'n' \(Mul\): shape \(4,\) does not broadcast to \(2, 3, 4, 5\) from axis 1",
    ),
    "binary_suffix_mismatch": (
        single("Sub", [(2, 3), (2,)], opset=6, broadcast=1),
        r"node 'n' \(Sub\): shape \(2,\) does not broadcast to \(2, 3\) from axis by suffix",
    ),
    "binary_b_longer": (
        single("Div", [(3,), (2, 3)], opset=6, broadcast=1),
        r"node 'n' \(Div\): shape \(2, 3\) does not broadcast",
    ),
    "binary_axis_without_broadcast": (
        single("Add", [(2, 3), (2, 3)], opset=6, axis=0),
        r"node 'n' \(Add\): attribute 'axis' needs broadcast=1",
    ),
    "binary_broadcast_at_opset7": (
        single("Add", [(2, 3), (3,)], opset=7, broadcast=1),
        r"node 'n' \(Add\): attribute\(s\) \['broadcast'\] exist only up to opset 6 "
        r"\(this model is opset 7\)",
    ),
    "gemm_c_not_full": (
        single("Gemm", [(3, 4), (4, 5), (5,)], opset=6),
        r"node 'n' \(Gemm\): C of shape \(5,\) is not \[3, 5\] and broadcast is not set",
    ),
    "gemm_c_too_big": (
        single("Gemm", [(3, 4), (4, 5), (4, 5)], opset=13),
        r"node 'n' \(Gemm\): C of shape \(4, 5\) does not broadcast to \[3, 5\]",
    ),
    "gemm_broadcast_at_opset9": (
        single("Gemm", [(3, 4), (4, 5), (5,)], opset=9, broadcast=1),
        r"node 'n' \(Gemm\): attribute\(s\) \['broadcast'\] exist only up to opset 6",
    ),
    "batchnorm_is_test_unset": (
        _batchnorm(6, (2, 3, 4, 5), False),
        r"node 'n' \(BatchNormalization\): is_test=0 \(training\) is not supported",
    ),
    "batchnorm_is_test_0_after_conv": (
        _batchnorm(6, (2, 3, 4, 5), True, is_test=0),
        r"node 'n' \(BatchNormalization\): is_test=0 \(training\) is not supported",
    ),
    "batchnorm_is_test_at_opset9": (
        _batchnorm(9, (2, 3, 4, 5), False, is_test=1),
        r"node 'n' \(BatchNormalization\): attribute\(s\) \['is_test'\] exist only up to",
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_legacy_attribute_refusals_name_node_and_op(tmp_path, name: str):
    """From a file; a legacy attribute at opset 7 or later the file checker refuses first,
    so those reach the importer as a ModelProto built in memory."""
    proto, message = REFUSED[name]
    with pytest.raises(ModelError, match=message):
        if "_at_opset" in name:
            import_onnx(proto)
        else:
            path = tmp_path / "m.onnx"
            onnx.save(proto, str(path))
            Model(path, use_cache=False, trials=False)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (onnx.TensorProto.DOUBLE, "walle.ops runs float32"),
        (onnx.TensorProto.FLOAT16, "walle.ops runs float32"),
        # integer ids are taken as a Gather's indices only (test_ops_gather_indices)
        (onnx.TensorProto.INT64, r"reaches node 'n' \(Relu\)"),
    ],
)
def test_inputs_that_are_not_float32_are_refused_by_name(kind: int, message: str):
    """A double model run in float32 would lose its range (1e200 -> inf) without a word."""
    node = helper.make_node("Relu", ["x"], ["y"], name="n")
    x = helper.make_tensor_value_info("x", kind, [2, 3])
    proto = model([node], [x], [io("y", [2, 3])], [], 13)
    name = onnx.TensorProto.DataType.Name(kind)
    with pytest.raises(ModelError, match=rf"input 'x' \({name}|integer ids\).*{message}"):
        import_onnx(proto)


def test_float_inputs_with_undeclared_type_still_import():
    node = helper.make_node("Relu", ["x"], ["y"], name="n")
    x = helper.make_tensor_value_info("x", onnx.TensorProto.UNDEFINED, [2, 3])
    graph = import_onnx(model([node], [x], [io("y", [2, 3])], [], 13))
    assert graph.inputs


def test_opset7_plain_binary_still_broadcasts_both_ways():
    """The legacy reading applies only up to opset 6: numpy's rules from 7 on."""
    proto = single("Add", [(3, 1), (1, 4)], opset=7)
    assert_parity(proto, {"x0": rand((3, 1), 0), "x1": rand((1, 4), 1)})

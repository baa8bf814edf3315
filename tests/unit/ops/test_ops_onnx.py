"""ONNX import: parity with onnxruntime on the MLP, the CNN and single-op graphs; clear errors.

Tolerance: |walle - onnxruntime| <= 1e-4 + 1e-4 * |onnxruntime| (float32 throughout; the
cython backend's exp is a polynomial with ~2e-7 relative error).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from walle.errors import ModelError, ValidationError
from walle.ops import Model, available_backends, compile_graph
from walle.ops.onnx_import import import_onnx, load_onnx
from walle.ops.sample_models import (
    cnn_onnx,
    encoder_onnx,
    layernorm_composite_onnx,
    mlp_onnx,
    mobilenet_v2_onnx,
    single_op_onnx,
)

BACKENDS = [b.name for b in available_backends()]
RTOL = ATOL = 1e-4


def _ort(model, feeds: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def _walle(model, feeds: dict[str, np.ndarray], backend: str) -> np.ndarray:
    graph = import_onnx(model, batch=next(iter(feeds.values())).shape[0])
    plan = compile_graph(graph, pin=backend, use_cache=False)
    return plan(*[feeds[n] for n in graph.inputs])[0]


def _rand(shape, seed=0, low=-2.0, high=2.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch", [1, 5])
def test_ops_mlp_matches_onnxruntime(backend: str, batch: int) -> None:
    model, x = mlp_onnx(), _rand((batch, 64))
    np.testing.assert_allclose(
        _walle(model, {"x": x}, backend), _ort(model, {"x": x}), rtol=RTOL, atol=ATOL
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch", [1, 2])
def test_ops_cnn_matches_onnxruntime(backend: str, batch: int) -> None:
    model, x = cnn_onnx(), _rand((batch, 3, 64, 64), seed=batch)
    np.testing.assert_allclose(
        _walle(model, {"x": x}, backend), _ort(model, {"x": x}), rtol=RTOL, atol=ATOL
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("batch", "tokens"), [(1, 16), (2, 13)])
def test_ops_transformer_encoder_layer_matches_onnxruntime(backend: str, batch, tokens) -> None:
    """A pre-norm encoder layer as PyTorch exports it (MatMul + bias Add on [batch, tokens,
    dim], heads split by Reshape + Transpose, Softmax, erf-GELU): 13 tokens leave 5 rows
    past the last block of 8 in the products."""
    model = encoder_onnx(batch=batch, tokens=tokens, dim=32, heads=4, ffn=96)
    x = _rand((batch, tokens, 32), seed=tokens)
    want = _ort(model, {"x": x})
    got = _walle(model, {"x": x}, backend)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("batch", "side", "stages"), [(1, 32, 4), (2, 27, 3)])
def test_ops_mobilenet_v2_stages_match_onnxruntime(backend: str, batch, side, stages) -> None:
    """MobileNetV2's first stages (depthwise 3x3 convs at stride 1 and 2, ReLU6 as Clip with
    its bounds as inputs, inverted residual Adds); 27x27 leaves odd planes at each stride 2."""
    model = mobilenet_v2_onnx(side=side, stages=stages, seed=side)
    x = _rand((batch, 3, side, side), seed=side)
    want = _ort(model, {"x": x})
    got = _walle(model, {"x": x}, backend)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("backend", BACKENDS)
def test_ops_composite_layernorm_matches_onnxruntime(backend: str) -> None:
    model, x = layernorm_composite_onnx((4, 96)), _rand((4, 96))
    np.testing.assert_allclose(
        _walle(model, {"x": x}, backend), _ort(model, {"x": x}), rtol=RTOL, atol=ATOL
    )


_I64 = np.int64
SINGLE_OPS = [
    ("Add", [(3, 4), (4,)], {}, {}),
    ("Sub", [(2, 3, 4), (3, 1)], {}, {}),
    ("Mul", [(2, 1, 4), (1, 3, 1)], {}, {}),
    ("Div", [(3, 4), (3, 4)], {}, {}),
    ("Relu", [(5, 7)], {}, {}),
    ("Sigmoid", [(5, 7)], {}, {}),
    ("Tanh", [(5, 7)], {}, {}),
    ("Sqrt", [(5, 7)], {}, {}),
    ("Softmax", [(4, 10)], {}, {"axis": -1}),
    ("Softmax", [(2, 3, 5)], {}, {"axis": 1}),
    ("Transpose", [(2, 3, 4)], {}, {"perm": [2, 0, 1]}),
    ("Concat", [(2, 3), (2, 5)], {}, {"axis": 1}),
    (
        "Slice",
        [(6, 8)],
        {
            "s": np.array([1, -6], _I64),
            "e": np.array([5, 100], _I64),
            "a": np.array([0, 1], _I64),
            "st": np.array([2, 1], _I64),
        },
        {},
    ),
    ("ReduceMean", [(3, 4, 5)], {}, {"axes": [1, 2], "keepdims": 0}),
    ("Pow", [(3, 4), (3, 4)], {}, {}),
    ("MatMul", [(2, 3, 4), (4, 5)], {}, {}),
    ("Gemm", [(3, 4), (5, 4), (5,)], {}, {"transB": 1, "alpha": 0.5, "beta": 2.0}),
    ("Reshape", [(2, 6)], {"shape": np.array([3, -1], _I64)}, {}),
    ("Flatten", [(2, 3, 4)], {}, {"axis": 2}),
    ("GlobalAveragePool", [(1, 3, 5, 6)], {}, {}),
    (
        "MaxPool",
        [(1, 2, 7, 7)],
        {},
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
    ),
    (
        "AveragePool",
        [(1, 2, 7, 7)],
        {},
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
    ),
    (
        "Conv",
        [(1, 3, 9, 9), (4, 3, 3, 3)],
        {},
        {"strides": [2, 2], "pads": [0, 1, 1, 0], "dilations": [1, 2]},
    ),
    ("LayerNormalization", [(3, 16), (16,), (16,)], {}, {"epsilon": 1e-5}),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("op", "shapes", "consts", "attrs"),
    SINGLE_OPS,
    ids=[f"{o[0]}{i}" for i, o in enumerate(SINGLE_OPS)],
)
def test_ops_single_op_matches_onnxruntime(backend, op, shapes, consts, attrs) -> None:
    model = single_op_onnx(op, shapes, consts, **attrs)
    low = 0.5 if op in ("Sqrt", "Pow") else -2.0
    feeds = {f"x{i}": _rand(s, seed=i, low=low) for i, s in enumerate(shapes)}
    graph = import_onnx(model)
    plan = compile_graph(graph, pin=backend, use_cache=False)
    got = plan(*[feeds[n] for n in graph.inputs])[0]
    np.testing.assert_allclose(got, _ort(model, feeds), rtol=RTOL, atol=ATOL)


def test_ops_unsupported_op_names_node_and_op() -> None:
    model = single_op_onnx("NonZero", [(2, 2)])
    with pytest.raises(ModelError, match=r"node 'the_nonzero' \(NonZero\): unsupported op"):
        import_onnx(model)


def test_ops_unsupported_attribute_names_node() -> None:
    model = single_op_onnx("Conv", [(1, 4, 5, 5), (2, 4, 3, 3)], auto_pad="SAME_MIDDLE")
    with pytest.raises(ModelError, match=r"the_conv.*\(Conv\).*auto_pad='SAME_MIDDLE'"):
        import_onnx(model)


def test_ops_malformed_file_is_a_model_error(tmp_path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07this is not protobuf\xff\xff")
    with pytest.raises(ModelError, match="bad.onnx: not a valid ONNX model"):
        load_onnx(bad)
    with pytest.raises(ModelError, match="no such ONNX file"):
        load_onnx(tmp_path / "missing.onnx")


def test_ops_shape_mismatch_is_a_validation_error(tmp_path) -> None:
    path = tmp_path / "mlp.onnx"
    path.write_bytes(mlp_onnx().SerializeToString())
    model = Model(path, use_cache=False, trials=False)
    with pytest.raises(ValidationError, match=r"input 'x' must have shape \(N, 64\), got \(2,"):
        model(np.zeros((2, 63), np.float32))
    assert model(np.zeros((2, 64), np.float32)).shape == (2, 1)

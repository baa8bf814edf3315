"""The nine CNN architectures shipped in the onnx wheel (``onnx/backend/test/data/light``).

Each model is run twice, at batch 1 (the models declare it):

- as shipped (every weight 0.02, made by ConstantOfShape), on the input the onnx backend
  test feeds (``arange(n) / n``), against the reference output stored beside it;
- with the ConstantOfShape weights replaced by random ones (0.02 * U(0.5, 1.5), seeded), so
  that channels differ (except the few over 5 M elements, kept constant to keep the test
  fast: the first two FC layers of VGG-19, AlexNet and ZFNet), against onnxruntime, on
  every output and on the logits (the input of the final Softmax, added as an output
  without a declared shape).

VGG-19 is the slowest (~11 s on the 2-core test machine, at its declared batch of 1).

Tolerance: max |walle - expected| <= 1e-4 * max |expected| (float32 throughout).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from walle.ops import Model

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
MODELS = [
    "bvlc_alexnet",
    "densenet121",
    "inception_v1",
    "inception_v2",
    "resnet50",
    "shufflenet",
    "squeezenet",
    "vgg19",
    "zfnet512",
]


def _input(proto) -> np.ndarray:
    """The onnx backend test's input for a light model: arange(n) / n in the input's shape."""
    inits = {i.name for i in proto.graph.initializer}
    value = next(v for v in proto.graph.input if v.name not in inits)
    shape = tuple(d.dim_value for d in value.type.tensor_type.shape.dim)
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


def _assert_close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    scale = float(np.abs(want).max())
    diff = float(np.abs(got - want).max())
    assert diff <= 1e-4 * scale, f"max abs diff {diff:.3g} > 1e-4 * {scale:.3g}"


_RANDOM_MAX = 5_000_000  # larger weights (the first FC layers of VGG, AlexNet, ZFNet) stay


def _randomised(proto, seed: int = 0):
    """The model with each ConstantOfShape weight of up to ``_RANDOM_MAX`` elements replaced
    by a random initializer, and the input of its last Softmax added as an output."""
    rng = np.random.default_rng(seed)
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    model.ir_version = max(model.ir_version, 4)  # initializers that are not graph inputs
    shapes = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    kept = []
    for node in model.graph.node:
        big = node.input[0] in shapes and np.prod(shapes[node.input[0]]) > _RANDOM_MAX
        if node.op_type == "ConstantOfShape" and node.input[0] in shapes and not big:
            value = helper.get_attribute_value(node.attribute[0])
            fill = float(numpy_helper.to_array(value).reshape(-1)[0])
            shape = tuple(int(d) for d in shapes[node.input[0]])
            array = rng.random(shape, np.float32) * np.float32(fill) + np.float32(fill / 2)
            model.graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
        else:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    softmax = [n for n in kept if n.op_type == "Softmax"]
    if softmax:
        model.graph.output.append(
            helper.make_tensor_value_info(softmax[-1].input[0], TensorProto.FLOAT, None)
        )
    return model


@pytest.mark.parametrize("name", MODELS)
def test_ops_light_model_matches_reference_and_onnxruntime(name: str, tmp_path) -> None:
    path = LIGHT / f"light_{name}.onnx"
    proto = onnx.load(str(path))
    x = _input(proto)
    want = numpy_helper.to_array(onnx.load_tensor(str(LIGHT / f"light_{name}_output_0.pb")))
    _assert_close(Model(path, use_cache=False, trials=False)(x), want)

    randomised = _randomised(proto)
    random_path = tmp_path / f"{name}_random.onnx"
    onnx.save(randomised, str(random_path))
    sess = ort.InferenceSession(str(random_path), providers=["CPUExecutionProvider"])
    wants = sess.run(None, {sess.get_inputs()[0].name: x})
    gots = Model(random_path, use_cache=False, trials=False).run(x)
    assert len(gots) == len(wants)
    for got, expected in zip(gots, wants, strict=True):
        _assert_close(got, expected)

"""The nine CNNs of the onnx wheel (``onnx/backend/test/data/light``), as the tests feed
them: the onnx backend test's input, and a copy with random weights (see
test_ops_onnx_models)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

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


def light_input(proto) -> np.ndarray:
    """The onnx backend test's input for a light model: arange(n) / n in the input's shape."""
    inits = {i.name for i in proto.graph.initializer}
    value = next(v for v in proto.graph.input if v.name not in inits)
    shape = tuple(d.dim_value for d in value.type.tensor_type.shape.dim)
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


_RANDOM_MAX = 5_000_000  # larger weights (the first FC layers of VGG, AlexNet, ZFNet) stay


def randomised(proto, seed: int = 0):
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

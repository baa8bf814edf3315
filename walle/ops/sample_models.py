"""Small ONNX models built with onnx.helper: the test, benchmark and CLI examples.

``mlp_onnx``: Gemm 64-256-256-1 with ReLU; ``cnn_onnx``: two conv/relu/maxpool blocks on
1x3x64x64, global average pool, flatten, Gemm to 10 classes; ``single_op_onnx``: one node.
The leading input dim is the symbolic batch ``N``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from onnx import ModelProto, NodeProto, TensorProto, ValueInfoProto

# The Python values onnx.helper.make_node takes as attributes (a TensorProto is not used here).
OnnxAttr = int | float | str | Sequence[int] | Sequence[float]


def _model(
    nodes: list[NodeProto],
    inputs: list[ValueInfoProto],
    outputs: list[ValueInfoProto],
    inits: list[TensorProto],
    opset: int = 17,
) -> ModelProto:
    from onnx import helper

    graph = helper.make_graph(nodes, "walle_sample", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _node(
    op: str, inputs: list[str], outputs: list[str], name: str, attrs: Mapping[str, OnnxAttr]
) -> NodeProto:
    """``helper.make_node`` with the attributes given as a mapping: an attribute named like
    one of make_node's own keywords (``domain``, ``doc_string``) stays an attribute."""
    from onnx import helper

    node = helper.make_node(op, inputs, outputs, name=name)
    node.attribute.extend(helper.make_attribute(k, v) for k, v in sorted(attrs.items()))
    return node


def _init(name: str, array: npt.ArrayLike) -> TensorProto:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(array, np.float32), name)


def _io(name: str, shape: Sequence[int | str]) -> ValueInfoProto:
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def mlp_onnx(sizes: Sequence[int] = (64, 256, 256, 1), seed: int = 0) -> ModelProto:
    """An MLP of Gemm + Relu layers (no Relu after the last)."""
    from onnx import helper

    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        inits += [
            _init(f"w{i}", rng.normal(0, 1 / np.sqrt(a), (a, b))),
            _init(f"b{i}", rng.normal(0, 0.1, b)),
        ]
        y = f"h{i}" if i < len(sizes) - 2 else "y"
        nodes.append(
            helper.make_node(
                "Gemm", [x, f"w{i}", f"b{i}"], [y + "_lin" if y != "y" else "y"], name=f"fc{i}"
            )
        )
        if y != "y":
            nodes.append(helper.make_node("Relu", [y + "_lin"], [y], name=f"relu{i}"))
        x = y
    return _model(nodes, [_io("x", ["N", sizes[0]])], [_io("y", ["N", sizes[-1]])], inits)


def cnn_onnx(seed: int = 0) -> ModelProto:
    """conv3x3(3->8)/relu/maxpool2, conv3x3(8->16)/relu/maxpool2, GAP, flatten, Gemm(16->10)."""
    from onnx import helper

    rng = np.random.default_rng(seed)
    inits = [
        _init("c1w", rng.normal(0, 0.3, (8, 3, 3, 3))),
        _init("c1b", rng.normal(0, 0.1, 8)),
        _init("c2w", rng.normal(0, 0.2, (16, 8, 3, 3))),
        _init("c2b", rng.normal(0, 0.1, 16)),
        _init("fw", rng.normal(0, 0.3, (16, 10))),
        _init("fb", rng.normal(0, 0.1, 10)),
    ]
    conv: dict[str, OnnxAttr] = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    pool: dict[str, OnnxAttr] = {"kernel_shape": [2, 2], "strides": [2, 2]}
    nodes = [
        _node("Conv", ["x", "c1w", "c1b"], ["c1"], "conv1", conv),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        _node("MaxPool", ["r1"], ["p1"], "pool1", pool),
        _node("Conv", ["p1", "c2w", "c2b"], ["c2"], "conv2", conv),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        _node("MaxPool", ["r2"], ["p2"], "pool2", pool),
        helper.make_node("GlobalAveragePool", ["p2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc"),
    ]
    return _model(nodes, [_io("x", ["N", 3, 64, 64])], [_io("y", ["N", 10])], inits)


def single_op_onnx(
    op: str,
    input_shapes: Sequence[Sequence[int]],
    constants: dict[str, npt.NDArray[np.generic]] | None = None,
    opset: int = 17,
    **attrs: OnnxAttr,
) -> ModelProto:
    """One ``op`` node over inputs ``x0, x1, ...`` (fixed shapes) and constant inputs."""
    from onnx import helper

    names = [f"x{i}" for i in range(len(input_shapes))]
    inits = [
        _init(k, v) if v.dtype.kind == "f" else _int_init(k, v)
        for k, v in (constants or {}).items()
    ]
    node = _node(op, [*names, *(constants or {})], ["y"], f"the_{op.lower()}", attrs)
    from onnx import TensorProto

    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    return _model(
        [node], [_io(n, s) for n, s in zip(names, input_shapes, strict=True)], [out], inits, opset
    )


def _int_init(name: str, array: npt.ArrayLike) -> TensorProto:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(array, np.int64), name)


def layernorm_composite_onnx(shape: Sequence[int] = (64, 1024), seed: int = 0) -> ModelProto:
    """Layer norm spelled as ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add."""
    from onnx import helper

    rng = np.random.default_rng(seed)
    c = shape[-1]
    inits = [
        _init("two", np.array(2.0)),
        _init("eps", np.array(1e-5)),
        _init("gamma", rng.normal(1, 0.1, c)),
        _init("beta", rng.normal(0, 0.1, c)),
    ]
    mk = helper.make_node
    nodes = [
        mk("ReduceMean", ["x"], ["m"], axes=[-1], name="mean"),
        mk("Sub", ["x", "m"], ["d"], name="center"),
        mk("Pow", ["d", "two"], ["sq"], name="square"),
        mk("ReduceMean", ["sq"], ["v"], axes=[-1], name="var"),
        mk("Add", ["v", "eps"], ["ve"], name="add_eps"),
        mk("Sqrt", ["ve"], ["sd"], name="std"),
        mk("Div", ["d", "sd"], ["n"], name="normalise"),
        mk("Mul", ["n", "gamma"], ["s"], name="scale"),
        mk("Add", ["s", "beta"], ["y"], name="shift"),
    ]
    return _model(nodes, [_io("x", ["N", c])], [_io("y", ["N", c])], inits, opset=17)

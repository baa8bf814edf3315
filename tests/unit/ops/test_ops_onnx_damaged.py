"""Damaged or mistaken models and inputs (found by mutating the onnx wheel's node cases: a
zero stride, an unknown element type, a dim of 10**12, an input of another rank) are refused
with an error that names what was wrong, never a raw ZeroDivisionError, ValueError or
MemoryError, and never after gigabytes of buffers were planned."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from walle.errors import ModelError, ValidationError
from walle.ops import Model
from walle.ops.onnx_import import import_onnx


def _pool(op: str, **attrs) -> onnx.ModelProto:
    node = helper.make_node(op, ["x"], ["y"], name="p", **attrs)
    graph = helper.make_graph(
        [node],
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize(
    ("attrs", "named"),
    [
        ({"kernel_shape": [2, 2], "strides": [0, 1]}, r"strides \[0, 1\]"),
        ({"kernel_shape": [2, 2], "strides": [2, -1]}, r"strides \[2, -1\]"),
        ({"kernel_shape": [0, 2]}, r"kernel_shape \[0, 2\]"),
        ({"kernel_shape": [-3, 2]}, r"kernel_shape \[-3, 2\]"),
        ({"kernel_shape": [2, 2], "dilations": [1, 0]}, r"dilations \[1, 0\]"),
        ({"kernel_shape": [2, 2], "strides": [0, 0], "auto_pad": "SAME_UPPER"}, r"strides"),
    ],
)
def test_a_pool_with_a_non_positive_window_attribute_is_refused_naming_it(
    op: str, attrs: dict, named: str
) -> None:
    with pytest.raises(ModelError, match=rf"node 'p' \({op}\): {named}.* must be >= 1"):
        import_onnx(_pool(op, **attrs))


def test_a_conv_with_a_zero_stride_is_refused_naming_it() -> None:
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", strides=[1, 0])
    graph = helper.make_graph(
        [node],
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(np.ones((3, 2, 3, 3), np.float32), "w")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(ModelError, match=r"node 'c' \(Conv\): strides \[1, 0\] must be >= 1"):
        import_onnx(proto)


def test_an_input_of_an_element_type_onnx_does_not_name_is_refused_naming_it() -> None:
    proto = _pool("MaxPool", kernel_shape=[2, 2])
    proto.graph.input[0].type.tensor_type.elem_type = 125
    with pytest.raises(ModelError, match=r"input 'x' \(element type 125\)"):
        import_onnx(proto)


def test_a_cast_to_an_element_type_onnx_does_not_name_is_refused_naming_it() -> None:
    node = helper.make_node("Cast", ["x"], ["y"], name="to", to=125)
    graph = helper.make_graph(
        [node],
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(ModelError, match=r"node 'to' \(Cast\): a cast to element type 125"):
        import_onnx(proto)


@pytest.mark.parametrize("dim", [10**12, 2**31, 70_000])
def test_an_input_past_the_element_bound_is_refused_naming_it(dim: int) -> None:
    proto = _pool("MaxPool", kernel_shape=[2, 2])
    proto.graph.input[0].type.tensor_type.shape.dim[2].dim_value = dim
    proto.graph.input[0].type.tensor_type.shape.dim[3].dim_value = 70_000
    with pytest.raises(ModelError, match=r"input 'x' has shape .* at most 2,147,483,647"):
        import_onnx(proto)


def test_a_node_output_past_the_element_bound_is_refused_naming_the_node() -> None:
    proto = _pool("MaxPool", kernel_shape=[2, 2], pads=[0, 0, 40_000, 40_000])
    with pytest.raises(ModelError, match=r"node 'p' \(MaxPool\): .* at most 2,147,483,647"):
        import_onnx(proto)


def test_an_input_of_another_rank_is_refused_before_a_plan_is_made(tmp_path) -> None:
    """A flat [32768] where [N, 1, 32, 32, 32] is declared: refused from the declared shape,
    not after planning 32768 rows (4 GiB of pool buffers) and checking the plan's."""
    node = helper.make_node(
        "AveragePool", ["x"], ["y"], name="p", kernel_shape=[2, 2, 2], strides=[2, 2, 2]
    )
    graph = helper.make_graph(
        [node],
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 32, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path / "pool3d.onnx"
    onnx.save(proto, str(path))
    model = Model(path, backend="numpy", use_cache=False, trials=False)
    flat = np.zeros(32 * 32 * 32, np.float32)
    with pytest.raises(ValidationError, match=r"input 'x' must have shape \(N, 1, 32, 32, 32\)"):
        model(flat)
    with pytest.raises(ValidationError, match=r"input 'x' must have shape \(N, 1, 32, 32, 32\)"):
        model(flat.reshape(1, 32, 32, 32, 1))
    with pytest.raises(ValidationError, match=r"model takes 1 inputs \['x'\], got 2"):
        model.run(flat, flat)
    assert model.graph(1) is not None and len(model._graphs) == 1  # no plan for 32768 rows
    x = np.random.default_rng(0).uniform(-1, 1, (2, 1, 32, 32, 32)).astype(np.float32)
    want = x.reshape(2, 1, 16, 2, 16, 2, 16, 2).mean(axis=(3, 5, 7))
    np.testing.assert_allclose(model(x), want, rtol=1e-5, atol=1e-6)


def test_an_initializer_whose_data_does_not_fill_its_dims_is_refused_naming_it() -> None:
    proto = _pool("MaxPool", kernel_shape=[2, 2])
    bad = onnx.numpy_helper.from_array(np.ones(4, np.float32), "junk")
    del bad.dims[:]  # four floats of data for a scalar
    proto.graph.initializer.append(bad)
    with pytest.raises(ModelError, match=r"initializer 'junk': unreadable"):
        import_onnx(proto)


def test_a_string_attribute_that_is_not_utf8_is_refused_naming_it() -> None:
    proto = _pool("MaxPool", kernel_shape=[2, 2])
    proto.graph.node[0].attribute.append(helper.make_attribute("auto_pad", b"\x8cVALID"))
    with pytest.raises(
        ModelError, match=r"node 'p' \(MaxPool\): attribute 'auto_pad' is not UTF-8"
    ):
        import_onnx(proto)


@pytest.mark.parametrize("sizes", [[1, 2, 8, 2_000_000], [1, 2, 60_000, 60_000], [1, 2, 8, 10**15]])
def test_a_resize_past_the_bounds_is_refused_before_its_taps_are_made(sizes) -> None:
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="up")
    graph = helper.make_graph(
        [node],
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(np.array(sizes, np.int64), "sizes")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=8)
    with pytest.raises(ModelError, match=r"node 'up' \(Resize\): output shape .* more than"):
        import_onnx(proto)

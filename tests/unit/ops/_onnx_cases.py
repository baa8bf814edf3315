"""Helpers of the ONNX op tests: one-node models built with onnx.helper, onnxruntime as the
oracle, walle with a backend pinned."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from walle.ops import compile_graph
from walle.ops.onnx_import import import_onnx

RTOL = ATOL = 1e-4


def model(nodes, inputs, outputs, inits=(), opset: int = 18, value_info=()):
    """A ModelProto of ``nodes`` at ``opset``."""
    graph = helper.make_graph(nodes, "t", inputs, outputs, list(inits), value_info=value_info)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def io(name: str, shape, elem_type: int = TensorProto.FLOAT):
    """A tensor value_info, float unless ``elem_type`` says (``shape`` None: undeclared)."""
    return helper.make_tensor_value_info(name, elem_type, shape)


# ops whose outputs are not floats (onnxruntime refuses them declared as floats)
_BOOLEAN_OUTPUTS = (
    "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Not", "And", "Or", "Xor",
    "IsNaN", "IsInf",
)  # fmt: skip
OUTPUT_TYPES = {
    "ArgMax": (TensorProto.INT64,),
    "ArgMin": (TensorProto.INT64,),
    "TopK": (TensorProto.FLOAT, TensorProto.INT64),
    **dict.fromkeys(_BOOLEAN_OUTPUTS, (TensorProto.BOOL,)),
}


def output_io(op: str, name: str, shape=None, position: int = 0):
    """The value_info of output ``position`` of ``op``: int64 indices, booleans, else
    float."""
    kinds = OUTPUT_TYPES.get(op, ())
    return io(name, shape, kinds[position] if position < len(kinds) else TensorProto.FLOAT)


def input_io(name: str, array: np.ndarray):
    """The value_info of an input fed ``array``: a boolean tensor for a bool array, int64
    (ids) for an int64 one, else float."""
    kinds = {np.dtype(np.bool_): TensorProto.BOOL, np.dtype(np.int64): TensorProto.INT64}
    return io(name, list(array.shape), kinds.get(array.dtype, TensorProto.FLOAT))


def init(name: str, array) -> object:
    """An initializer from a numpy array (its dtype kept: int64 for indices and axes)."""
    return numpy_helper.from_array(np.asarray(array), name)


def rand(shape, seed=0, low=-2.0, high=2.0) -> np.ndarray:
    """Uniform float32 in [low, high)."""
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def nan_inf(shape, seed=0) -> np.ndarray:
    """Random values with NaN, +inf and -inf sprinkled in."""
    x = rand(shape, seed)
    flat = x.reshape(-1)
    flat[::5], flat[1::7], flat[2::11] = np.nan, np.inf, -np.inf
    return x


def single(op: str, shapes, inits=(), opset: int = 18, outputs: int = 1, **attrs):
    """One ``op`` node named "n" over float inputs x0, x1, ... then ``inits`` (None in
    ``inits``: an optional input left out, passed as ""); outputs y0, y1, ... undeclared."""
    names = [f"x{i}" for i in range(len(shapes))]
    extra = ["" if i is None else i.name for i in inits]
    outs = [f"y{i}" for i in range(outputs)]
    node = helper.make_node(op, [*names, *extra], outs, name="n", **attrs)
    ins = [io(n, s) for n, s in zip(names, shapes, strict=True)]
    outputs = [output_io(op, o, None, i) for i, o in enumerate(outs)]
    return model([node], ins, outputs, [i for i in inits if i is not None], opset)


def run_ort(proto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """onnxruntime's outputs (CPU provider)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: old opsets make its optimiser warn
    sess = ort.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return sess.run(None, feeds)


def run_walle(proto, feeds: dict[str, np.ndarray], backend: str) -> list[np.ndarray]:
    """walle's outputs with ``backend`` pinned (steps it lacks run on numpy)."""
    graph = import_onnx(proto)
    plan = compile_graph(graph, pin=backend, use_cache=False, trials=False)
    return plan(*[feeds[n] for n in graph.inputs])


def assert_parity(proto, feeds, backend: str = "numpy", nan: bool = False) -> None:
    """Same outputs (count, shapes, values; NaN where onnxruntime has NaN) as onnxruntime."""
    with np.errstate(all="ignore"):
        want = run_ort(proto, feeds)
        got = run_walle(proto, feeds, backend)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        if nan:
            np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)

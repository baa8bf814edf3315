"""Import small ONNX models into walle graphs (float32, static shapes per batch size).

Each supported ONNX op lowers through :class:`~walle.ops.builder.GraphBuilder` into atomic
ops. An unsupported op, attribute or attribute value raises :class:`ModelError` naming the
node and op; a file that is not a valid ONNX model raises ModelError naming the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from walle.errors import ModelError
from walle.ops.builder import GraphBuilder
from walle.ops.ir import Graph

SUPPORTED_OPS = (
    "Gemm", "MatMul", "Add", "Mul", "Sub", "Div", "Relu", "Sigmoid", "Tanh", "Softmax", "Conv",
    "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten", "Reshape", "Transpose", "Concat",
    "Slice", "ReduceMean", "Pow", "Sqrt", "LayerNormalization", "Identity", "Constant",
)  # fmt: skip


def load_onnx(path: str | Path):
    """Read and check an ONNX file; ModelError naming the file when it is not valid."""
    import onnx

    path = Path(path)
    try:
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
    except FileNotFoundError as exc:
        raise ModelError(f"{path}: no such ONNX file") from exc
    except Exception as exc:  # onnx raises DecodeError, ValidationError, ValueError...
        raise ModelError(f"{path}: not a valid ONNX model ({type(exc).__name__}: {exc})") from exc
    return proto


class _Node:
    """One ONNX node with checked attribute access."""

    def __init__(self, proto, allowed: set[str]) -> None:
        from onnx import helper

        self.proto = proto
        self.where = f"node {proto.name or proto.output[0]!r} ({proto.op_type})"
        self.attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}
        extra = set(self.attrs) - allowed
        if extra:
            raise ModelError(f"{self.where}: unsupported attribute(s) {sorted(extra)}")

    def get(self, key: str, default: object = None) -> object:
        value = self.attrs.get(key, default)
        return value.decode() if isinstance(value, bytes) else value

    def require(self, key: str, expected: object, default: object) -> None:
        value = self.get(key, default)
        if value != expected:
            raise ModelError(
                f"{self.where}: attribute {key}={value!r} is not supported (only {expected!r})"
            )


class _Importer:
    def __init__(self, proto, batch: int | None) -> None:
        from onnx import numpy_helper

        self.b = GraphBuilder()
        self.names: dict[str, str] = {}
        self.opset = next(
            (o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 13
        )
        graph = proto.graph
        for init in graph.initializer:
            self.names[init.name] = self.b.const(numpy_helper.to_array(init), name=init.name)
        for value in graph.input:
            if value.name not in self.names:
                self.names[value.name] = self.b.input(value.name, _shape(value, batch))
        self.graph = graph

    def value(self, name: str, where: str) -> str:
        if name not in self.names:
            raise ModelError(f"{where}: input {name!r} is not defined before use")
        return self.names[name]

    def const(self, name: str, where: str) -> np.ndarray:
        array = self.b.constant_value(self.value(name, where))
        if array is None:
            raise ModelError(f"{where}: input {name!r} must be a constant (initializer)")
        return array

    def run(self) -> Graph:
        for proto in self.graph.node:
            handler = _HANDLERS.get(proto.op_type)
            where = f"node {proto.name or proto.output[0]!r} ({proto.op_type})"
            if proto.domain not in ("", "ai.onnx") or handler is None:
                raise ModelError(
                    f"{where}: unsupported op {proto.op_type!r} "
                    f"(supported: {', '.join(SUPPORTED_OPS)})"
                )
            allowed, fn = handler
            node = _Node(proto, allowed)
            self.b.scope = proto.name or proto.op_type
            try:
                out = fn(self, node, [self.value(i, where) if i else "" for i in proto.input])
            except ModelError as exc:
                if str(exc).startswith("node "):
                    raise
                raise ModelError(f"{where}: {exc}") from exc
            self.names[proto.output[0]] = out
        outputs = [self.value(o.name, "graph output") for o in self.graph.output]
        return self.b.build(outputs)


def _shape(value, batch: int | None) -> tuple[int, ...]:
    dims = []
    for i, d in enumerate(value.type.tensor_type.shape.dim):
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(d.dim_value if not (i == 0 and batch is not None) else batch)
        elif i == 0 and batch is not None:
            dims.append(batch)
        else:
            raise ModelError(
                f"input {value.name!r}: dim {i} is symbolic; only the leading "
                "(batch) dim may be, and a batch size must be given"
            )
    return tuple(dims)


def import_onnx(model, *, batch: int | None = None) -> Graph:
    """A walle graph from an ONNX ModelProto or path; ``batch`` fixes the leading input dim."""
    if isinstance(model, str | Path):
        model = load_onnx(model)
    return _Importer(model, batch).run()


# -- handlers -------------------------------------------------------------------------------
Handler = Callable[[_Importer, _Node, list[str]], str]


def _binary(kind: str) -> Handler:
    return lambda im, node, ins: im.b.binary(kind, ins[0], ins[1])


def _unary(kind: str) -> Handler:
    return lambda im, node, ins: im.b.unary(kind, ins[0])


def _gemm(im: _Importer, node: _Node, ins: list[str]) -> str:
    return im.b.gemm(
        ins[0],
        ins[1],
        ins[2] if len(ins) > 2 and ins[2] else None,
        alpha=float(node.get("alpha", 1.0)),
        beta=float(node.get("beta", 1.0)),
        trans_a=bool(node.get("transA", 0)),
        trans_b=bool(node.get("transB", 0)),
    )


def _matmul(im: _Importer, node: _Node, ins: list[str]) -> str:
    a, b = ins
    if len(im.b.shape(a)) == 1 or len(im.b.shape(b)) == 1:
        raise ModelError(f"{node.where}: 1-D MatMul operands are not supported")
    return im.b.matmul(a, b)


def _softmax(im: _Importer, node: _Node, ins: list[str]) -> str:
    rank = len(im.b.shape(ins[0]))
    axis = int(node.get("axis", -1 if im.opset >= 13 else 1))
    if im.opset < 13 and axis % rank != rank - 1:
        raise ModelError(f"{node.where}: opset {im.opset} Softmax needs axis = last")
    return im.b.softmax(ins[0], axis)


def _pool_args(node: _Node, rank: int = 2) -> dict[str, object]:
    node.require("auto_pad", "NOTSET", "NOTSET")
    node.require("ceil_mode", 0, 0)
    kernel = [int(k) for k in node.get("kernel_shape", [])]
    if len(kernel) != rank:
        raise ModelError(f"{node.where}: only 2-D kernels are supported, got {kernel}")
    return {
        "kernel": kernel,
        "strides": [int(s) for s in node.get("strides", kernel)],
        "pads": [int(p) for p in node.get("pads", [0] * 4)],
    }


def _conv(im: _Importer, node: _Node, ins: list[str]) -> str:
    node.require("auto_pad", "NOTSET", "NOTSET")
    node.require("group", 1, 1)
    if len(im.b.shape(ins[0])) != 4:
        raise ModelError(f"{node.where}: only 2-D (NCHW) convolution is supported")
    strides = [int(s) for s in node.get("strides", [1, 1])]
    pads = [int(p) for p in node.get("pads", [0, 0, 0, 0])]
    dilations = [int(d) for d in node.get("dilations", [1, 1])]
    bias = ins[2] if len(ins) > 2 and ins[2] else None
    return im.b.conv2d(ins[0], ins[1], bias, strides=strides, pads=pads, dilations=dilations)


def _maxpool(im: _Importer, node: _Node, ins: list[str]) -> str:
    node.require("storage_order", 0, 0)
    if len(node.proto.output) > 1:
        raise ModelError(f"{node.where}: the Indices output is not supported")
    args = _pool_args(node)
    return im.b.max_pool(
        ins[0],
        args["kernel"],
        strides=args["strides"],
        pads=args["pads"],
        dilations=[int(d) for d in node.get("dilations", [1, 1])],
    )


def _avgpool(im: _Importer, node: _Node, ins: list[str]) -> str:
    args = _pool_args(node)
    return im.b.avg_pool(
        ins[0],
        args["kernel"],
        strides=args["strides"],
        pads=args["pads"],
        count_include_pad=bool(node.get("count_include_pad", 0)),
    )


def _reshape(im: _Importer, node: _Node, ins: list[str]) -> str:
    node.require("allowzero", 0, 0)
    shape = [int(d) for d in im.const(node.proto.input[1], node.where)]
    return im.b.reshape(ins[0], shape)


def _transpose(im: _Importer, node: _Node, ins: list[str]) -> str:
    rank = len(im.b.shape(ins[0]))
    perm = node.get("perm", list(range(rank))[::-1])
    return im.b.transpose(ins[0], [int(p) for p in perm])


def _slice(im: _Importer, node: _Node, ins: list[str]) -> str:
    rank = len(im.b.shape(ins[0]))
    if im.opset < 10:
        starts, ends = node.get("starts"), node.get("ends")
        axes, steps = node.get("axes", list(range(len(starts)))), None
    else:
        names = list(node.proto.input) + [""] * (5 - len(node.proto.input))
        starts = im.const(names[1], node.where).astype(np.int64)
        ends = im.const(names[2], node.where).astype(np.int64)
        axes = im.const(names[3], node.where).astype(np.int64) if names[3] else range(rank)
        steps = im.const(names[4], node.where).astype(np.int64) if names[4] else None
    return im.b.slice(
        ins[0],
        [int(s) for s in starts],
        [int(e) for e in ends],
        [int(a) for a in axes],
        None if steps is None else [int(s) for s in steps],
    )


def _reduce_mean(im: _Importer, node: _Node, ins: list[str]) -> str:
    rank = len(im.b.shape(ins[0]))
    if im.opset >= 18 and len(node.proto.input) > 1 and node.proto.input[1]:
        axes = [int(a) for a in im.const(node.proto.input[1], node.where)]
    else:
        axes = [int(a) for a in node.get("axes", [])]
    if not axes:
        if node.get("noop_with_empty_axes", 0):
            return im.b.unary("identity", ins[0])
        axes = list(range(rank))
    return im.b.reduce("mean", ins[0], axes, keepdims=bool(node.get("keepdims", 1)))


def _layernorm(im: _Importer, node: _Node, ins: list[str]) -> str:
    if len(node.proto.output) > 1 and any(node.proto.output[1:]):
        raise ModelError(f"{node.where}: the Mean/InvStdDev outputs are not supported")
    beta = ins[2] if len(ins) > 2 and ins[2] else None
    return im.b.layer_norm(
        ins[0],
        ins[1],
        beta,
        axis=int(node.get("axis", -1)),
        epsilon=float(node.get("epsilon", 1e-5)),
    )


def _constant(im: _Importer, node: _Node, ins: list[str]) -> str:
    from onnx import numpy_helper

    if "value" not in node.attrs:
        raise ModelError(f"{node.where}: only the 'value' form of Constant is supported")
    return im.b.const(numpy_helper.to_array(node.attrs["value"]))


_HANDLERS: dict[str, tuple[set[str], Handler]] = {
    "Gemm": ({"alpha", "beta", "transA", "transB"}, _gemm),
    "MatMul": (set(), _matmul),
    "Add": (set(), _binary("add")),
    "Sub": (set(), _binary("sub")),
    "Mul": (set(), _binary("mul")),
    "Div": (set(), _binary("div")),
    "Pow": (set(), lambda im, node, ins: im.b.pow(ins[0], ins[1])),
    "Relu": (set(), _unary("relu")),
    "Sigmoid": (set(), _unary("sigmoid")),
    "Tanh": (set(), _unary("tanh")),
    "Sqrt": (set(), _unary("sqrt")),
    "Identity": (set(), _unary("identity")),
    "Softmax": ({"axis"}, _softmax),
    "Conv": ({"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"}, _conv),
    "MaxPool": (
        {"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"},
        _maxpool,
    ),
    "AveragePool": (
        {"auto_pad", "ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides"},
        _avgpool,
    ),
    "GlobalAveragePool": (set(), lambda im, node, ins: im.b.global_avg_pool(ins[0])),
    "Flatten": ({"axis"}, lambda im, node, ins: im.b.flatten(ins[0], int(node.get("axis", 1)))),
    "Reshape": ({"allowzero"}, _reshape),
    "Transpose": ({"perm"}, _transpose),
    "Concat": ({"axis"}, lambda im, node, ins: im.b.concat(ins, int(node.get("axis")))),
    "Slice": ({"starts", "ends", "axes"}, _slice),
    "ReduceMean": ({"axes", "keepdims", "noop_with_empty_axes"}, _reduce_mean),
    "LayerNormalization": ({"axis", "epsilon", "stash_type"}, _layernorm),
    "Constant": ({"value"}, _constant),
}

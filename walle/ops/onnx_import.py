"""Import small ONNX models into walle graphs (float32, static shapes per batch size).

Each supported ONNX op lowers through :class:`~walle.ops.builder.GraphBuilder` into atomic
ops. An unsupported op, attribute or attribute value raises :class:`ModelError` naming the
node and op; a file that is not a valid ONNX model raises ModelError naming the file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from walle.errors import ModelError
from walle.ops.builder import GraphBuilder
from walle.ops.ir import Graph

SUPPORTED_OPS = (
    "Gemm", "MatMul", "Add", "Mul", "Sub", "Div", "Relu", "Sigmoid", "Tanh", "Softmax", "Conv",
    "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten", "Reshape", "Transpose", "Concat",
    "Slice", "ReduceMean", "Pow", "Sqrt", "LayerNormalization", "Identity", "Constant",
    "ConstantOfShape", "BatchNormalization", "Dropout", "LRN", "Sum", "Unsqueeze",
)  # fmt: skip


def load_onnx(path: str | Path):
    """Read and check an ONNX file; ModelError naming the file when it is not valid.

    A graph output without a declared type or shape is taken as a float tensor of any shape
    (as onnxruntime does), since walle computes every shape itself: the checker, which wants
    a shape, sees a placeholder that is removed again.
    """
    import onnx

    path = Path(path)
    try:
        proto = onnx.load(str(path))
        open_outputs = [o for o in proto.graph.output if not o.type.tensor_type.HasField("shape")]
        for output in open_outputs:
            if not output.type.tensor_type.elem_type:
                output.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
            output.type.tensor_type.shape.SetInParent()
        onnx.checker.check_model(proto)
        for output in open_outputs:
            output.type.tensor_type.ClearField("shape")
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
    def __init__(self, proto, batch: int | Sequence[int] | None) -> None:
        from onnx import numpy_helper

        self.b = GraphBuilder()
        self.names: dict[str, str] = {}
        self.opset = next(
            (o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 13
        )
        graph = proto.graph
        for init in graph.initializer:
            self.names[init.name] = self.b.const(numpy_helper.to_array(init), name=init.name)
        inputs = [v for v in graph.input if v.name not in self.names]
        if batch is None or isinstance(batch, int):
            batches: list[int | None] = [
                batch if _is_batch_dim(v, inputs[0]) else None for v in inputs
            ]
        else:
            batches = [int(b) for b in batch]
            if len(batches) != len(inputs):
                raise ModelError(f"{len(batches)} batch sizes given for {len(inputs)} inputs")
        for value, rows in zip(inputs, batches, strict=True):
            self.names[value.name] = self.b.input(value.name, _shape(value, rows))
        self.graph = graph
        self.batch_overridden = any(rows is not None for rows in batches)
        self.declared = {v.name: v for v in (*graph.value_info, *graph.output)}
        self.readers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self.readers.setdefault(name, []).append(node)
        self.graph_outputs = {o.name for o in graph.output}
        self.folded: set[str] = set()

    def value(self, name: str, where: str) -> str:
        if name not in self.names:
            raise ModelError(f"{where}: input {name!r} is not defined before use")
        return self.names[name]

    def const(self, name: str, where: str) -> np.ndarray:
        array = self.b.constant_value(self.value(name, where))
        if array is None:
            raise ModelError(f"{where}: input {name!r} must be a constant (initializer)")
        return array

    def constant(self, name: str) -> np.ndarray | None:
        """The array of ONNX value ``name`` when it is a constant, else None."""
        return self.b.constant_value(self.names[name]) if name in self.names else None

    def run(self) -> Graph:
        for proto in self.graph.node:
            where = f"node {proto.name or proto.output[0]!r} ({proto.op_type})"
            if proto.output[0] in self.folded:  # a BatchNormalization folded into its conv
                self.names[proto.output[0]] = self.names[proto.input[0]]
            else:
                self.names[proto.output[0]] = self._lower(proto, where)
            self._check_declared(proto.output[0], where)
        outputs = [self.value(o.name, "graph output") for o in self.graph.output]
        return self.b.build(outputs)

    def _lower(self, proto, where: str) -> str:
        handler = _HANDLERS.get(proto.op_type)
        if proto.domain not in ("", "ai.onnx") or handler is None:
            raise ModelError(
                f"{where}: unsupported op {proto.op_type!r} (supported: {', '.join(SUPPORTED_OPS)})"
            )
        allowed, fn = handler
        node = _Node(proto, allowed)
        self.b.scope = proto.name or proto.op_type
        try:
            return fn(self, node, [self.value(i, where) if i else "" for i in proto.input])
        except ModelError as exc:
            if str(exc).startswith("node "):
                raise
            raise ModelError(f"{where}: {exc}") from exc

    def _check_declared(self, name: str, where: str) -> None:
        """The shape the model declares for ``name``, where it declares one, must be the one
        computed (the leading dim is skipped when a batch size replaced the inputs' own)."""
        value = self.declared.get(name)
        if value is None or not value.type.tensor_type.HasField("shape"):
            return
        actual = self.b.shape(self.names[name])
        dims = value.type.tensor_type.shape.dim
        declared = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        fits = len(declared) == len(actual) and all(
            d is None or d == a or (i == 0 and self.batch_overridden)
            for i, (d, a) in enumerate(zip(declared, actual, strict=True))
        )
        if not fits:
            shown = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims)
            raise ModelError(
                f"{where}: output {name!r} has shape {actual}, but the model declares {shown}"
            )


def _leading(value) -> int | None:
    dims = value.type.tensor_type.shape.dim
    return dims[0].dim_value if dims and dims[0].HasField("dim_value") else None


def _is_batch_dim(value, first) -> bool:
    """Whether one batch size given for every input applies to ``value``'s leading dim: when
    that dim is symbolic, or static and equal to the first input's (a model saved at batch
    1). A static weight-like input, as [3, 4] beside [N, 3], keeps its shape."""
    lead = _leading(value)
    return lead is None or lead == 0 or value is first or lead == _leading(first)


def _shape(value, batch: int | None) -> tuple[int, ...]:
    if not value.type.tensor_type.HasField("shape"):
        raise ModelError(f"input {value.name!r}: no declared shape")
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


def import_onnx(model, *, batch: int | Sequence[int] | None = None) -> Graph:
    """A walle graph from an ONNX ModelProto or path.

    ``batch`` fixes the leading dim of the inputs: one int for every input, or one per input
    (in the order of the graph's inputs that are not initializers).
    """
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
    if im.opset >= 13 or axis % rank == rank - 1:
        return im.b.softmax(ins[0], axis)
    # Before opset 13, Softmax runs over the input flattened to 2-D at ``axis``.
    shape = im.b.shape(ins[0])
    y = im.b.softmax(im.b.flatten(ins[0], axis), -1)
    return im.b.reshape(y, shape)


def _pool_args(node: _Node, rank: int = 2) -> dict[str, object]:
    node.require("auto_pad", "NOTSET", "NOTSET")
    node.require("ceil_mode", 0, 0)
    kernel = [int(k) for k in node.get("kernel_shape", [])]
    if len(kernel) != rank:
        raise ModelError(f"{node.where}: only 2-D kernels are supported, got {kernel}")
    return {
        "kernel": kernel,
        "strides": [int(s) for s in node.get("strides", [1] * rank)],  # ONNX default: 1
        "pads": [int(p) for p in node.get("pads", [0] * 4)],
    }


def _conv(im: _Importer, node: _Node, ins: list[str]) -> str:
    node.require("auto_pad", "NOTSET", "NOTSET")
    if len(im.b.shape(ins[0])) != 4:
        raise ModelError(f"{node.where}: only 2-D (NCHW) convolution is supported")
    strides = [int(s) for s in node.get("strides", [1, 1])]
    pads = [int(p) for p in node.get("pads", [0, 0, 0, 0])]
    dilations = [int(d) for d in node.get("dilations", [1, 1])]
    weight, bias = ins[1], ins[2] if len(ins) > 2 and ins[2] else None
    folded = _fold_batchnorm(im, node, weight, bias)
    if folded is not None:
        weight, bias = folded
    return im.b.conv2d(
        ins[0],
        weight,
        bias,
        strides=strides,
        pads=pads,
        dilations=dilations,
        group=int(node.get("group", 1)),
    )


def _fold_batchnorm(
    im: _Importer, node: _Node, weight: str, bias: str | None
) -> tuple[str, str] | None:
    """When the conv's only reader is an inference BatchNormalization with constant
    parameters (and the conv's weights are constant), fold the BN into the conv's weights
    and bias: the BN node then adds nothing to the graph."""
    out = node.proto.output[0]
    readers = im.readers.get(out, [])
    if len(readers) != 1 or out in im.graph_outputs or readers[0].op_type != "BatchNormalization":
        return None
    bn = readers[0]
    if bn.input[0] != out or len(bn.input) != 5 or any(o for o in bn.output[1:]):
        return None
    attrs = _Node(bn, _BN_ATTRS)
    if attrs.get("training_mode", 0) or not attrs.get("spatial", 1):
        return None
    w = im.b.constant_value(weight)
    params = [im.constant(name) for name in bn.input[1:]]
    b = None if w is None else im.b.constant_value(bias) if bias else np.zeros(w.shape[0])
    if w is None or b is None or any(p is None for p in params):
        return None
    scale, shift = _bn_affine(params, float(attrs.get("epsilon", 1e-5)))
    im.folded.add(bn.output[0])
    w_folded = (w.astype(np.float64) * scale.reshape(-1, 1, 1, 1)).astype(np.float32)
    b_folded = (b.astype(np.float64) * scale + shift).astype(np.float32)
    return im.b.const(w_folded), im.b.const(b_folded)


def _bn_affine(params: list[np.ndarray], epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """BatchNormalization as y = x * scale + shift, per channel (float64)."""
    gamma, beta, mean, var = (p.astype(np.float64).reshape(-1) for p in params)
    scale = gamma / np.sqrt(var + epsilon)
    return scale, beta - mean * scale


def _batchnorm(im: _Importer, node: _Node, ins: list[str]) -> str:
    if node.get("training_mode", 0):
        raise ModelError(f"{node.where}: training_mode=1 is not supported (inference only)")
    node.require("spatial", 1, 1)
    if any(o for o in node.proto.output[1:]):
        raise ModelError(f"{node.where}: the running mean/var outputs are not supported")
    params = [im.const(name, node.where) for name in node.proto.input[1:5]]
    scale, shift = _bn_affine(params, float(node.get("epsilon", 1e-5)))
    rank = len(im.b.shape(ins[0]))
    per_channel = (-1,) + (1,) * (rank - 2)
    y = im.b.binary("mul", ins[0], im.b.const(scale.astype(np.float32).reshape(per_channel)))
    return im.b.binary("add", y, im.b.const(shift.astype(np.float32).reshape(per_channel)))


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


def _constant_of_shape(im: _Importer, node: _Node, ins: list[str]) -> str:
    from onnx import numpy_helper

    shape = [int(d) for d in im.const(node.proto.input[0], node.where).reshape(-1)]
    value = node.attrs.get("value")
    fill = 0.0 if value is None else float(numpy_helper.to_array(value).reshape(-1)[0])
    return im.b.const(np.full(shape, fill, np.float32))


def _dropout(im: _Importer, node: _Node, ins: list[str]) -> str:
    """Inference: the identity (ratio and seed do not matter); no mask output."""
    if len(ins) > 2 and ins[2]:
        training = im.const(node.proto.input[2], node.where)
        if training.size and bool(training.reshape(-1)[0]):
            raise ModelError(f"{node.where}: training_mode=true is not supported")
    mask = node.proto.output[1] if len(node.proto.output) > 1 else ""
    if mask and (mask in im.readers or mask in im.graph_outputs):
        raise ModelError(f"{node.where}: the mask output is not supported")
    return ins[0]


def _lrn(im: _Importer, node: _Node, ins: list[str]) -> str:
    """x / (bias + alpha / size * sum of x^2 over ``size`` neighbouring channels) ** beta."""
    size = node.get("size")
    if size is None:
        raise ModelError(f"{node.where}: attribute 'size' is required")
    shape = im.b.shape(ins[0])
    if len(shape) < 3:
        raise ModelError(f"{node.where}: input must be [N, C, ...], got {shape}")
    return im.b.local_response_norm(
        ins[0],
        int(size),
        alpha=float(node.get("alpha", 1e-4)),
        beta=float(node.get("beta", 0.75)),
        bias=float(node.get("bias", 1.0)),
    )


def _sum(im: _Importer, node: _Node, ins: list[str]) -> str:
    if len(ins) == 1:
        return im.b.unary("identity", ins[0])
    y = ins[0]
    for x in ins[1:]:
        y = im.b.binary("add", y, x)
    return y


def _unsqueeze(im: _Importer, node: _Node, ins: list[str]) -> str:
    if im.opset >= 13:
        if len(node.proto.input) < 2 or not node.proto.input[1]:
            raise ModelError(f"{node.where}: the axes input is required")
        axes = [int(a) for a in im.const(node.proto.input[1], node.where).reshape(-1)]
    else:
        axes = [int(a) for a in node.get("axes", [])]
    shape = list(im.b.shape(ins[0]))
    rank = len(shape) + len(axes)
    norm = sorted(a + rank if a < 0 else a for a in axes)
    if len(set(norm)) != len(norm) or any(not 0 <= a < rank for a in norm):
        raise ModelError(f"{node.where}: axes {axes} invalid for output rank {rank}")
    for a in norm:
        shape.insert(a, 1)
    return im.b.reshape(ins[0], shape)


_BN_ATTRS = {"epsilon", "momentum", "spatial", "training_mode"}
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
    "ConstantOfShape": ({"value"}, _constant_of_shape),
    "BatchNormalization": (_BN_ATTRS, _batchnorm),
    "Dropout": ({"ratio", "seed", "is_test"}, _dropout),
    "LRN": ({"alpha", "beta", "bias", "size"}, _lrn),
    "Sum": (set(), _sum),
    "Unsqueeze": ({"axes"}, _unsqueeze),
}

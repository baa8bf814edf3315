"""The importer: reads an ONNX ModelProto, declares inputs and weights, lowers node by node.

Each node is lowered by its op family's handler (see :data:`HANDLERS`) through
:class:`~walle.ops.builder.GraphBuilder` into atomic ops, so that everything it imports runs on
every backend. Errors are raised while the graph is built (that is, when a ``Model`` is
created), each naming the node and its op; every output whose shape the model declares is
checked against the shape walle computes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from walle.errors import ModelError
from walle.logging import get_logger
from walle.ops.builder import GraphBuilder
from walle.ops.ir import FloatArray, Graph
from walle.ops.onnx_import.control import HANDLERS as CONTROL
from walle.ops.onnx_import.conv import HANDLERS as CONV
from walle.ops.onnx_import.einsum import HANDLERS as EINSUM
from walle.ops.onnx_import.elementwise import HANDLERS as ELEMENTWISE
from walle.ops.onnx_import.ids import id_values, type_name
from walle.ops.onnx_import.layout import HANDLERS as LAYOUT
from walle.ops.onnx_import.logic import HANDLERS as LOGIC
from walle.ops.onnx_import.nn import HANDLERS as NN
from walle.ops.onnx_import.node import HandlerTable, OnnxNode
from walle.ops.onnx_import.quantize import HANDLERS as QUANTIZE
from walle.ops.onnx_import.recurrent import HANDLERS as RECURRENT
from walle.ops.onnx_import.reduce import HANDLERS as REDUCE
from walle.ops.onnx_import.resize import HANDLERS as RESIZE
from walle.ops.onnx_import.scatter import HANDLERS as SCATTER

if TYPE_CHECKING:
    from onnx import ModelProto, NodeProto, TensorProto, ValueInfoProto

    from walle.ops.onnx_import.integer import Dequantized

_log = get_logger("walle.ops.onnx_import")

HANDLERS: HandlerTable = {
    **ELEMENTWISE,
    **LOGIC,
    **NN,
    **CONV,
    **LAYOUT,
    **REDUCE,
    **RESIZE,
    **RECURRENT,
    **QUANTIZE,
    **EINSUM,
    **CONTROL,
    **SCATTER,
}
SUPPORTED_OPS = tuple(sorted(HANDLERS))


def load_onnx(path: str | Path) -> ModelProto:
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


class Importer:
    """State of one import: the builder, ONNX name -> walle value name, who reads what."""

    def __init__(self, proto: ModelProto, batch: int | Sequence[int] | None) -> None:
        self.b = GraphBuilder()
        self.names: dict[str, str] = {}
        # ONNX name -> the integers of an integer initializer or Constant, exactly as given
        # (walle's constants are float32, exact only below 2**24: see OnnxNode.ints)
        self.integers: dict[str, npt.NDArray[np.int64]] = {}
        self.opset = next(
            (o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 13
        )
        graph = proto.graph
        self.declare_constants(graph.initializer)
        inputs = [v for v in graph.input if v.name not in self.names]
        # ONNX values that hold integer ids -> the input they come from
        self.ids = id_values(graph)
        if batch is None or isinstance(batch, int):
            batches: list[int | None] = [
                batch if _is_batch_dim(v, inputs[0]) else None for v in inputs
            ]
        else:
            batches = [int(b) for b in batch]
            if len(batches) != len(inputs):
                raise ModelError(f"{len(batches)} batch sizes given for {len(inputs)} inputs")
        for value, rows in zip(inputs, batches, strict=True):
            declare = self.b.index_input if value.name in self.ids else self.b.input
            self.names[value.name] = declare(value.name, _shape(value, rows))
        self.graph = graph
        self.batch_overridden = any(rows is not None for rows in batches)
        # the model's own static batch and the one given for its first input, where they
        # differ (a Reshape that hard-codes the former is moved to the latter, see batch_dim)
        saved, given = _leading(inputs[0]) if inputs else None, batches[0] if inputs else None
        self.rebatch = (saved, given) if saved and given is not None and saved != given else None
        self.declared = {v.name: v for v in (*graph.value_info, *graph.output)}
        self.readers: dict[str, list[NodeProto]] = {}
        for node in graph.node:
            for name in (*node.input, *_subgraph_inputs(node)):
                self.readers.setdefault(name, []).append(node)
        self.graph_outputs = {o.name for o in graph.output}
        self.graph_inputs = {v.name for v in inputs}
        # ONNX values folded into a conv (BatchNormalization, per-channel Mul and Add after
        # it): each is the same walle value as the ONNX value mapped to
        self.folded: dict[str, str] = {}
        # computed ONNX values that hold integers (quantized values, integer matmul sums):
        # a Cast of one to a wider integer type keeps its values
        self.integral: set[str] = set()
        # computed ONNX values a quantizer saturated to an 8- or 16-bit type (QuantizeLinear,
        # DynamicQuantizeLinear, the QLinear ops): their type's name (quantize.RANGES)
        self.quantized: dict[str, str] = {}
        # DequantizeLinear outputs as their integers, zero points and scales (the QDQ
        # format's operands: see integer.py)
        self.dequantized: dict[str, Dequantized] = {}

    def value(self, name: str, where: str) -> str:
        """The walle value of ONNX value ``name`` (ModelError when not yet defined)."""
        if name not in self.names:
            raise ModelError(f"{where}: input {name!r} is not defined before use")
        return self.names[name]

    def remember_integers(self, name: str, array: npt.NDArray[Any]) -> None:
        """Keep ``array`` exactly if it holds integers (an initializer or a Constant's value)."""
        if array.dtype.kind in "iub":
            self.integers[name] = array.astype(np.int64)

    def element_type(self, name: str) -> str:
        """ONNX's name of the element type of value ``name`` as the file gives it (an
        initializer's, a graph input's, a declared value's); a computed value undeclared is
        FLOAT, as walle computes it, unless it holds ids (INT64)."""
        for init in self.graph.initializer:
            if init.name == name:
                return type_name(init.data_type)
        for value in (*self.graph.input, *self.declared.values()):
            if value.name == name and value.type.tensor_type.elem_type:
                return type_name(value.type.tensor_type.elem_type)
        return "INT64" if name in self.ids else "FLOAT"

    def const(self, name: str, where: str) -> FloatArray:
        """The array of ONNX value ``name``, which must be a constant."""
        array = self.b.constant_value(self.value(name, where))
        if array is None:
            raise ModelError(f"{where}: input {name!r} must be a constant (initializer)")
        return array

    def constant(self, name: str) -> FloatArray | None:
        """The array of ONNX value ``name`` when it is a constant, else None."""
        return self.b.constant_value(self.names[name]) if name in self.names else None

    def run(self) -> Graph:
        """Lower every node and build the graph. Constants shaped from initializers
        (Unsqueeze, Reshape... of weights) are lowered first, so that a conv can fold the
        per-channel scale and shift that follow it (see nn.fold_affine) when it is lowered."""
        early = self._lower_constants()
        self.lower_nodes([p for p in self.graph.node if id(p) not in early])
        outputs = [self.value(o.name, "graph output") for o in self.graph.output]
        return self.b.build(outputs)

    def lower_nodes(self, nodes: Sequence[NodeProto]) -> None:
        """Lower ``nodes`` in order, naming their outputs (the graph's, or a subgraph's
        inlined: the branch an If takes)."""
        for proto in nodes:
            where = f"node {proto.name or proto.output[0]!r} ({proto.op_type})"
            if proto.output[0] in self.folded:  # folded into its conv: the conv's value
                self.names[proto.output[0]] = self.names[self.folded[proto.output[0]]]
                self._check_declared(proto.output[0], where)
                continue
            produced = self._lower(proto, where)
            results = [produced] if isinstance(produced, str) else produced
            for name, value in zip(proto.output, results, strict=False):
                if name:
                    self.names[name] = value
                    self._check_declared(name, where)

    def declare_constants(self, initializers: Sequence[TensorProto]) -> None:
        """Each initializer as a walle constant under its ONNX name (the graph's, or an
        inlined subgraph's)."""
        from onnx import numpy_helper

        for init in initializers:
            try:
                array = numpy_helper.to_array(init)
            except (ValueError, TypeError) as exc:  # data that does not fill its dims
                raise ModelError(f"initializer {init.name!r}: unreadable ({exc})") from exc
            if array.dtype.kind not in "biuf":
                raise ModelError(
                    f"initializer {init.name!r} ({type_name(init.data_type)}): walle.ops holds "
                    "numeric constants only"
                )
            self.names[init.name] = self.b.const(array, name=init.name)
            self.remember_integers(init.name, array)

    def _lower_constants(self) -> set[int]:
        """Lower, in graph order, the nodes of _LOWERED_FIRST (layout nodes and constant
        makers) whose inputs are all constants (the builder folds them into constants); the
        ids of the nodes lowered. A node that fails here is left to the main pass, which
        reports it in graph order."""
        early: set[int] = set()
        for proto in self.graph.node:
            if proto.op_type not in _LOWERED_FIRST or proto.domain not in ("", "ai.onnx"):
                continue
            names = [i for i in proto.input if i]
            if not all(n in self.names and self.constant(n) is not None for n in names):
                continue
            where = f"node {proto.name or proto.output[0]!r} ({proto.op_type})"
            try:
                produced = self._lower(proto, where)
            except ModelError:
                continue
            results = [produced] if isinstance(produced, str) else produced
            if not all(self.b.constant_value(r) is not None for r in results):
                continue  # (the builder folds every node of constant inputs)
            for name, value in zip(proto.output, results, strict=False):
                if name:
                    self.names[name] = value
                    self._check_declared(name, where)
            early.add(id(proto))
        return early

    def _lower(self, proto: NodeProto, where: str) -> str | list[str]:
        handler = HANDLERS.get(proto.op_type)
        if proto.domain not in ("", "ai.onnx") or handler is None:
            raise ModelError(
                f"{where}: unsupported op {proto.op_type!r} (supported: {', '.join(SUPPORTED_OPS)})"
            )
        allowed, fn = handler
        node = OnnxNode(proto, allowed)
        self.b.scope = proto.name or proto.op_type
        try:
            return fn(self, node, [self.value(i, where) if i else "" for i in proto.input])
        except ModelError as exc:
            if str(exc).startswith("node "):
                raise
            raise ModelError(f"{where}: {exc}") from exc

    def batch_dim(self, target: list[int], source: str) -> list[int]:
        """A Reshape ``target`` for the value ``source`` read at another batch than the
        model's own: a leading dim equal to the model's static batch becomes the given batch
        where ``source`` (not a constant) leads with the given batch (a flatten to [1, 2048]
        saved at batch 1, read at batch 8). Both then lead with the same dim, so each row
        stays a row; any other target is left as the model has it. (A value that leads
        with another axis of the batch's size, after a Transpose, would be taken for rows.)"""
        shape = self.b.shape(source)
        if self.rebatch is None or not target or not shape:
            return target
        saved, given = self.rebatch
        if target[0] == saved and shape[0] == given and self.b.constant_value(source) is None:
            return [given, *target[1:]]
        return target

    def _check_declared(self, name: str, where: str) -> None:
        """The shape the model declares for ``name``, where it declares one, must be the one
        computed (the leading dim is skipped when a batch size replaced the inputs' own); a
        declaration with symbolic or negative (unknown) dims that does not fit is logged, not
        refused."""
        value = self.declared.get(name)
        if value is None or not value.type.tensor_type.HasField("shape"):
            return
        actual = self.b.shape(self.names[name])
        dims = value.type.tensor_type.shape.dim
        # a negative dim_value is unknown: older paddle2onnx writes -1 for a dynamic dim
        declared = [
            d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None for d in dims
        ]
        fits = len(declared) == len(actual) and all(
            d is None or d == a or (i == 0 and self.batch_overridden)
            for i, (d, a) in enumerate(zip(declared, actual, strict=True))
        )
        if fits:
            return
        shown = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims)
        if any(d is None for d in declared):
            # a declaration with symbolic dims is the exporter's guess (ddddocr's CRNN
            # declares its [25, 1, 8210] logits as [1, "seqlen"]): onnxruntime warns and runs
            _log.warning(
                "declared_shape_differs", node=where, output=name, shape=actual, declared=shown
            )
            return
        raise ModelError(
            f"{where}: output {name!r} has shape {actual}, but the model declares {shown}"
        )


# Nodes that only reshape or name their input, or make a constant of a given shape: lowered
# first where their inputs are constants, so that a conv or a BatchNormalization knows the
# per-channel scale it may fold (the onnx wheel's light models make every weight with
# ConstantOfShape, and Unsqueeze a Mul's scale from one after the BN it follows).
_LOWERED_FIRST = frozenset(
    {"Constant", "ConstantOfShape", "Identity", "Reshape", "Squeeze", "Unsqueeze"}
)


def _subgraph_inputs(node: NodeProto) -> set[str]:
    """The outer values that ``node``'s subgraphs (an If's branches) read: the node reads
    them too, so that nothing folds them away (nn.fold_affine wants a value's only reader)."""
    names: set[str] = set()
    for attribute in node.attribute:
        for graph in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
            made = {i.name for i in graph.initializer} | {o for n in graph.node for o in n.output}
            for inner in graph.node:
                names |= {
                    i for i in (*inner.input, *_subgraph_inputs(inner)) if i and i not in made
                }
            names |= {o.name for o in graph.output if o.name not in made}
    return names


def _leading(value: ValueInfoProto) -> int | None:
    dims = value.type.tensor_type.shape.dim
    # 0 or a negative dim_value (older paddle2onnx's -1) is no static size either
    return dims[0].dim_value if dims and dims[0].dim_value > 0 else None


def _is_batch_dim(value: ValueInfoProto, first: ValueInfoProto) -> bool:
    """Whether one batch size given for every input applies to ``value``'s leading dim: when
    that dim is symbolic, or static and equal to the first input's (a model saved at batch
    1). A static weight-like input, as [3, 4] beside [N, 3], keeps its shape."""
    lead = _leading(value)
    return lead is None or lead == 0 or value is first or lead == _leading(first)


def _shape(value: ValueInfoProto, batch: int | None) -> tuple[int, ...]:
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


def import_onnx(
    model: ModelProto | str | Path, *, batch: int | Sequence[int] | None = None
) -> Graph:
    """A walle graph from an ONNX ModelProto or path.

    ``batch`` fixes the leading dim of the inputs: one int for every input, or one per input
    (in the order of the graph's inputs that are not initializers).
    """
    if isinstance(model, str | Path):
        model = load_onnx(model)
    return Importer(model, batch).run()

"""Integer ids in an ONNX graph: which inputs hold them, and that they only reach lookups.

walle.ops computes in float32. Integer graph inputs (INT32, INT64) are taken as ids: item
ids, a behaviour sequence, the fields of a click-through-rate model. Their values travel as
float32, exact below 2**24 (checked when a plan loads them), and may pass through ops that
move them or offset them (a reshape, a column picked by a constant Gather or a Slice, a
Concat, an Add or Sub of offsets: a multi-field model's ids into one shared table) before
they end as a Gather's (or GatherElements') indices, where the kernel checks each against its
table's rows (a Cast to INT32 or INT64 on the way leaves them as they are), or in a Cast to
FLOAT, a DequantizeLinear, a comparison (Equal, Less...) or a OneHot: a transformer's
attention mask, from where the model computes in float32 as walle does (the values are those
onnxruntime's cast gives: whole numbers below 2**24).
Ids that reach any other op (a MatMul, a Mul, Gather's data of a runtime lookup) or a graph
output would mean integer arithmetic that float32 does not keep, so such a model is refused
when it is imported, naming the input and the node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from walle.errors import ModelError

if TYPE_CHECKING:
    from onnx import GraphProto, NodeProto

# The element types of a Gather's indices (the spec's).
INDEX_TYPES = frozenset({"INT32", "INT64"})
# Ops that carry ids on, and the input positions that may hold them (None: every input).
_CARRIERS: dict[str, tuple[int, ...] | None] = {
    "Reshape": (0,),
    "Flatten": (0,),
    "Squeeze": (0,),
    "Unsqueeze": (0,),
    "Identity": (0,),
    "Transpose": (0,),
    "Slice": (0,),
    "Concat": None,
    "Add": None,
    "Sub": None,
}
# Ops after which ids are booleans: a comparison of ids (Equal(mask, 0)) is exact.
_COMPARISONS = frozenset({"Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual"})
_CARRIED = (
    "Reshape, Flatten, Squeeze, Unsqueeze, Identity, Transpose, Slice, Concat, Add, Sub, "
    "Cast to INT32 or INT64 (or they end in a Cast to FLOAT or a comparison)"
)


def type_name(code: int) -> str:
    """ONNX's name of an element type code (FLOAT, INT64...); a code it has no name for (a
    damaged or newer file) is named by its number, so that the refusal can say so."""
    from onnx import TensorProto

    try:
        return str(TensorProto.DataType.Name(code))
    except ValueError:
        return f"element type {code}"


def _cast_to(node: NodeProto) -> str:
    to = next((a.i for a in node.attribute if a.name == "to"), 0)
    return type_name(to)


def id_values(graph: GraphProto) -> dict[str, str]:
    """Each value that holds integer ids (graph inputs among them) -> the input its ids come
    from. ModelError for an input of another type than float32 or ids, and for ids that
    reach anything but a lookup."""
    from onnx import TensorProto

    constant = {i.name for i in graph.initializer}
    constant |= {o for node in graph.node if node.op_type == "Constant" for o in node.output}
    found: set[str] = set()
    # taken as float32 values: FLOAT (or no type given), BOOL (1.0 and 0.0, as walle's
    # comparisons give them), 8- and 16-bit integers (every one exact: quantized values, a
    # uint8 image cast to float)
    numbers = (
        TensorProto.UNDEFINED, TensorProto.FLOAT, TensorProto.BOOL, TensorProto.UINT8,
        TensorProto.INT8, TensorProto.UINT16, TensorProto.INT16,
    )  # fmt: skip
    for value in graph.input:
        kind = value.type.tensor_type.elem_type
        if value.name in constant or kind in numbers:
            continue
        kind_name = type_name(kind)
        if kind_name not in INDEX_TYPES:
            raise ModelError(
                f"input {value.name!r} ({kind_name}): walle.ops runs float32 inputs only "
                "(booleans as 1.0 and 0.0, 8- and 16-bit integers as their values, INT32 and "
                "INT64 as ids)"
            )
        found.add(value.name)
    source = {name: name for name in found}  # a value holding ids -> the input they come from
    for node in graph.node:
        held = [i for i, name in enumerate(node.input) if name in source]
        if not held:
            continue
        origin = source[node.input[held[0]]]
        if node.op_type in ("Gather", "GatherElements") and held == [1]:
            continue  # a lookup: where ids end
        if node.op_type == "OneHot" and held == [0]:
            continue  # positions compared: booleans from here on
        if node.op_type == "Cast" and _cast_to(node) == "FLOAT":
            continue  # numbers from here on (an attention mask), as float32 holds them
        if node.op_type == "DequantizeLinear" and held == [0]:
            continue  # int32 values dequantized: numbers from here on, as a Cast to FLOAT
        if node.op_type in _COMPARISONS:
            continue  # booleans from here on (1.0 and 0.0): exact for ids float32 holds
        positions = _CARRIERS.get(node.op_type, ())
        column = node.op_type == "Gather" and held == [0] and node.input[1] in constant
        if node.op_type == "Cast" and _cast_to(node) in INDEX_TYPES:
            positions = (0,)  # ids as ids: their values unchanged
        if not column and (positions == () or (positions and set(held) - set(positions))):
            raise ModelError(
                f"input {origin!r} (integer ids) reaches node {node.name!r} ({node.op_type}): "
                f"walle.ops takes ids only into Gather's indices, through {_CARRIED} or a "
                "Gather of constant indices"
            )
        for out in node.output:
            source[out] = origin
    for out in graph.output:
        if out.name in source:
            raise ModelError(
                f"graph output {out.name!r} holds the integer ids of input "
                f"{source[out.name]!r}: walle.ops returns float32 outputs only"
            )
    return source

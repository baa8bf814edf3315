"""ONNX If whose condition is known when the model is imported: the branch it takes, inlined.

Exporters write an If for a check on shapes (PyTorch's ``if x.size(1) > n``: a comparison of a
Shape's dims), and walle imports a model at fixed shapes, where such a condition is a
constant: the branch taken is lowered in the If's place (its initializers as constants, its
nodes in order, reading the outer graph's values by name), and the other branch is never
read. An If whose condition depends on an input's values needs a branch chosen at run time,
which walle's static plans do not have: refused by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from walle.errors import ModelError
from walle.ops.onnx_import.node import HandlerTable, OnnxNode

if TYPE_CHECKING:
    from walle.ops.onnx_import.core import Importer


def _if(im: Importer, node: OnnxNode, ins: list[str]) -> list[str]:
    condition = im.b.constant_value(ins[0])
    if condition is None:
        raise ModelError(
            f"{node.where}: the condition depends on values computed at run time; walle.ops "
            "takes an If whose condition is known at import (a constant, or computed from "
            "shapes)"
        )
    if condition.size != 1:
        raise ModelError(f"{node.where}: the condition has {condition.size} values, not one")
    taken = "then_branch" if bool(condition.reshape(-1)[0]) else "else_branch"
    branch = node.get(taken)
    if branch is None:
        raise ModelError(f"{node.where}: no {taken} attribute")
    if len(branch.output) != len(node.proto.output):
        raise ModelError(
            f"{node.where}: the {taken} has {len(branch.output)} outputs, the node "
            f"{len(node.proto.output)}"
        )
    im.declare_constants(branch.initializer)
    im.lower_nodes(branch.node)
    return [im.value(o.name, f"{node.where}, {taken}") for o in branch.output]


HANDLERS: HandlerTable = {"If": ({"then_branch", "else_branch"}, _if)}

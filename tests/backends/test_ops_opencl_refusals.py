"""Nodes the OpenCL backend refuses: supports() says no, and compiling one anyway names why.

The search never sends such a node to OpenCL; a caller that pins it there by hand gets a
BackendError naming the node and its shapes instead of a TypeError from an unpacked None.
"""

from __future__ import annotations

import pytest

from tests._backends import backend_or_skip
from walle.errors import BackendError
from walle.ops import GraphBuilder
from walle.ops.ir import Graph, Node


def _only_node(graph: Graph, op: str) -> Node:
    (node,) = [n for n in graph.nodes if n.op == op]
    return node


def test_ops_opencl_reduce_over_split_axes_is_refused_by_name() -> None:
    backend = backend_or_skip("opencl")
    b = GraphBuilder()
    y = b.reduce("sum", b.input("x", (2, 3, 4)), axes=(0, 2))
    graph = b.build([y])
    node = _only_node(graph, "reduce")
    assert not backend.supports(node, graph)
    with pytest.raises(BackendError, match=r"cannot reduce .* over axes \(0, 2\)"):
        backend.compile_atomic(node, "default", graph, {})


def test_ops_opencl_matmul_with_mixed_batch_dims_is_refused_by_name() -> None:
    backend = backend_or_skip("opencl")
    b = GraphBuilder()
    y = b.matmul(b.input("a", (2, 1, 3, 4)), b.input("b", (1, 5, 4, 6)))
    graph = b.build([y])
    node = _only_node(graph, "matmul")
    assert not backend.supports(node, graph)
    with pytest.raises(BackendError, match=r"cannot run matmul .*\(2, 1, 3, 4\)"):
        backend.compile_atomic(node, "rows4", graph, {})

"""Nodes the cython backend refuses: supports() says no, and compiling one anyway names why.

The search never sends such a node to the cython kernels; a caller that pins it there by
hand gets a BackendError naming the node instead of a TypeError from an unpacked None.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests._backends import backend_or_skip
from walle.errors import BackendError
from walle.ops import GraphBuilder
from walle.ops.backends.base import Buffers
from walle.ops.ir import Graph, Node


def _only_node(graph: Graph, op: str) -> Node:
    (node,) = [n for n in graph.nodes if n.op == op]
    return node


def _buffers(graph: Graph, node: Node) -> Buffers:
    """Zeroed float32 buffers for the node's inputs and output (the kernels bind them)."""
    names = (*node.inputs, node.output)
    return {n: np.zeros(graph.shape(n), np.float32) for n in names}


def test_ops_cython_reduce_over_split_axes_is_refused_by_name() -> None:
    backend = backend_or_skip("cython")
    b = GraphBuilder()
    x = b.input("x", (2, 3, 4))
    graph = b.build([b.reduce("sum", x, axes=(0, 2))])
    node = _only_node(graph, "reduce")
    assert not backend.supports(node, graph)
    with pytest.raises(BackendError, match="reduces non-adjacent axes"):
        backend.compile_atomic(node, "default", graph, _buffers(graph, node))


def test_ops_cython_binary_broadcast_over_five_dims_is_refused_by_name() -> None:
    backend = backend_or_skip("cython")
    b = GraphBuilder()
    y = b.binary("add", b.input("a", (2, 1, 2, 1, 2)), b.input("b", (1, 2, 1, 2, 1)))
    graph = b.build([y])
    node = _only_node(graph, "binary")
    assert not backend.supports(node, graph)
    with pytest.raises(BackendError, match="broadcasts beyond 4 merged dims"):
        backend.compile_atomic(node, "default", graph, _buffers(graph, node))

"""walle.ops: an atomic-op graph IR, decomposed composites, backends, search, ONNX import."""

from walle.ops.backends.registry import available_backends, backend_names, get_backend
from walle.ops.builder import GraphBuilder
from walle.ops.fusion import FusedStep, find_steps
from walle.ops.ir import ATOMIC_OPS, Graph, Node, Region, Value
from walle.ops.model import Model
from walle.ops.plan import Choice, CompiledPlan, SubBatchPlan
from walle.ops.reference import run_reference
from walle.ops.search import Search, compile_graph, explain

__all__ = [
    "ATOMIC_OPS",
    "Choice",
    "CompiledPlan",
    "FusedStep",
    "Graph",
    "GraphBuilder",
    "Model",
    "Node",
    "Region",
    "Search",
    "SubBatchPlan",
    "Value",
    "available_backends",
    "backend_names",
    "compile_graph",
    "explain",
    "find_steps",
    "get_backend",
    "run_reference",
]

"""One way for a test to get a compiled or OpenCL backend: skip where it is not built here,
fail where ``make test`` requires it (``WALLE_REQUIRE_BACKENDS``), never skip silently there."""

from __future__ import annotations

import numpy as np
import pytest

from walle.errors import BackendError
from walle.ops import get_backend
from walle.ops.backends.base import Backend
from walle.ops.backends.registry import required_backends
from walle.ops.fusion import FusedStep, find_steps
from walle.ops.ir import Graph
from walle.ops.plan import allocate, is_alias


def backend_or_skip(name: str) -> Backend:
    """The backend ``name``; a skip naming why when it is missing and not required."""
    try:
        return get_backend(name)
    except BackendError as exc:
        if name in required_backends():  # make test requires it: fail, never skip
            raise
        pytest.skip(f"{name} backend not available here: {exc}")


def run_with_algorithm(
    backend: Backend,
    graph: Graph,
    feeds: dict[str, np.ndarray],
    step: FusedStep,
    algorithm: str,
) -> np.ndarray:
    """The graph's first output with ``step`` compiled with ``algorithm`` and every other step
    with the backend's first algorithm, on buffers filled with stale values (never zeros):
    one algorithm checked directly, where the search would only ever run the fastest."""
    steps = find_steps(graph)
    buffers = allocate(graph, steps, fill=100.0)
    for name, value in feeds.items():
        buffers[name][...] = value
    for s in steps:
        if not is_alias(s, graph):
            algo = algorithm if s.name == step.name else backend.algorithms(s, graph)[0]
            for call in backend.finish(backend.compile(s, algo, graph, buffers)):
                call()
    return buffers[graph.outputs[0]]

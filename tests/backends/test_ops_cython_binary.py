"""The cython backend's broadcast binary ops over outputs with size-1 dims.

A size-1 dim of the output is dropped before adjacent dims merge, whatever the operands'
strides there: left in at the end, it made the kernel's inner run one element long (a global
pool's [1, 2048, 1, 1] * 1/49 ran 2048 one-element calls). Oracle: numpy's broadcasting.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import backend_or_skip
from walle.ops import GraphBuilder, compile_graph
from walle.ops.backends.cython_backend import _collapse


def _graph(a: tuple[int, ...], b: tuple[int, ...], kind: str = "mul"):
    g = GraphBuilder()
    return g.build([g.binary(kind, g.input("a", a), g.input("b", b))])


def test_size_one_dims_leave_one_inner_run() -> None:
    cases = {
        ((1, 2048, 1, 1), ()): ([2048], [1], [0]),
        ((1, 2048, 1, 1), (1, 2048, 1, 1)): ([2048], [1], [1]),
        ((3, 1, 4), (1, 1, 4)): ([3, 4], [4, 1], [0, 1]),
        ((2, 1, 5, 1), (2, 1, 1, 1)): ([2, 5], [5, 1], [1, 0]),
        ((1, 1, 1), (1,)): ([1], [1], [1]),
    }
    for (a, b), want in cases.items():
        graph = _graph(a, b)
        [node] = [n for n in graph.nodes if n.op == "binary"]
        assert _collapse(graph, node) == want, (a, b)


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.sampled_from([1, 1, 2, 3, 7, 17]), min_size=1, max_size=5),
    data=st.data(),
    kind=st.sampled_from(["add", "sub", "mul", "div", "max"]),
)
def test_binary_with_size_one_dims_matches_numpy(shape, data, kind) -> None:
    backend_or_skip("cython")
    other = [data.draw(st.sampled_from([d, 1])) for d in shape]
    other = other[data.draw(st.integers(0, len(other))) :]
    rng = np.random.default_rng(len(shape))
    a = rng.uniform(0.5, 2.0, shape).astype(np.float32)
    b = rng.uniform(0.5, 2.0, other).astype(np.float32)
    if data.draw(st.booleans()):
        a, b = b, a
    graph = _graph(a.shape, b.shape, kind)
    [node] = [n for n in graph.nodes if n.op == "binary"]
    if _collapse(graph, node) is None:  # over 4 merged dims: left to another backend
        return
    plan = compile_graph(graph, pin="cython", trials=False, use_cache=False)
    assert {c.backend for c in plan.choices.values()} == {"cython"}
    want = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}.get(
        kind, np.maximum
    )(a, b)
    np.testing.assert_allclose(plan(a, b)[0], want, rtol=1e-6)

"""walle's own arrays (weights, a plan's buffers, a one-kernel plan's results) start on a
64-byte cache line, whatever numpy's allocator gives: a kernel's speed then does not depend
on where the allocator put its arrays in this process."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from walle.ops import aligned, compile_graph
from walle.ops.builder import GraphBuilder
from walle.ops.fusion import find_steps
from walle.ops.plan import allocate


def _on_line(array: np.ndarray) -> bool:
    return array.ctypes.data % aligned.LINE_BYTES == 0


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(0, 40), min_size=0, max_size=3))
def test_empty_is_a_contiguous_float32_array_on_a_line(shape) -> None:
    array = aligned.empty(tuple(shape))
    assert array.shape == tuple(shape) and array.dtype == np.float32
    assert array.flags.c_contiguous and array.flags.writeable
    assert _on_line(array) or array.size == 0


def _mlp():
    rng = np.random.default_rng(0)
    b = GraphBuilder()
    x = b.input("x", (5, 12))
    # weights from arrays 4 bytes past a line: stored on one all the same
    w1 = np.empty(12 * 20 + 1, np.float32)[1:].reshape(12, 20)
    w1[...] = rng.uniform(-1, 1, (12, 20))
    h = b.unary("relu", b.binary("add", b.matmul(x, b.const(w1)), b.const(rng.uniform(-1, 1, 20))))
    return b.build([b.matmul(h, b.const(rng.uniform(-1, 1, (20, 3))))])


def test_weights_buffers_and_results_start_a_line() -> None:
    graph = _mlp()
    assert all(_on_line(c) for c in graph.constants.values())
    steps = find_steps(graph)
    for fill in (None, 0.5):
        buffers = allocate(graph, steps, fill=fill)
        assert all(_on_line(b) for n, b in buffers.items() if n not in graph.constants)
    shared = allocate(graph, steps, shared={s.name for s in steps})
    assert all(_on_line(b) for n, b in shared.items() if n not in graph.constants)


def test_a_one_kernel_plan_writes_its_results_on_a_line() -> None:
    b = GraphBuilder()
    x = b.input("x", (33, 40))
    y = b.matmul(x, b.const(np.random.default_rng(1).uniform(-1, 1, (40, 7))))
    plan = compile_graph(b.build([y]), pin="numpy", trials=False, use_cache=False)
    x_value = np.random.default_rng(2).uniform(-1, 1, (33, 40)).astype(np.float32)
    results = [plan.run1(x_value) for _ in range(3)]  # all held: three arrays
    assert all(_on_line(r) for r in results)
    assert len({r.ctypes.data for r in results}) == 3


def test_a_searchs_inputs_lie_where_callers_arrays_do() -> None:
    """The trials read the graph's inputs 16 bytes past a line (numpy's large arrays), as the
    plan reads its callers' arrays in place; everything else a search times stays on a line."""
    b = GraphBuilder()
    x = b.input("x", (6, 12))
    flat = b.reshape(x, (72,))
    w = np.random.default_rng(3).uniform(-1, 1, (12, 5))
    graph = b.build([b.matmul(x, b.const(w)), b.unary("relu", flat)])
    steps = find_steps(graph)
    buffers = allocate(graph, steps, fill=0.5, callers_inputs=True)
    offset = buffers["x"].ctypes.data % aligned.LINE_BYTES
    assert offset == aligned.CALLERS_OFFSET
    assert buffers["x"].flags.c_contiguous and buffers["x"].shape == (6, 12)
    assert ((buffers["x"] >= 0.5) & (buffers["x"] < 1.5)).all()
    assert np.shares_memory(buffers[flat], buffers["x"])  # the input's reshape: a view of it
    assert all(
        _on_line(v) for n, v in buffers.items() if n not in graph.constants and n not in ("x", flat)
    )

"""A slice that copies one contiguous block of its input is a view of it; results never change.

A compiled plan makes such a slice (a Split of channels at batch 1, a row range, a recurrent
op's gates at batch 1) a slot of its input's buffer, and the slice step runs nothing, where
the slice, its input's producer and every reader of the slice run on host memory and
neither the input nor the slice is a graph input, output or constant. These tests pin where
it must happen and where it must not, each against the numpy oracle over repeated calls with
fresh inputs (stale data cannot hide), and random graphs of slices, concats and element-wise
ops placed on two backends.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._backends import backend_or_skip, compile_placed
from tests.unit.ops.test_ops_concat_in_place import (
    _check,
    _conv,
    _in_block,
    build_outputs,
    check_split_between_numpy_and_cython,
)
from walle.ops import GraphBuilder
from walle.ops.ir import Graph
from walle.ops.search import explain


def _channel_split(batch: int = 1) -> tuple[Graph, list[str], str]:
    b = GraphBuilder()
    x = b.input("x", (batch, 3, 5, 5))
    y = _conv(b, x, 6, 3, 1)
    parts = [b.slice(y, [c], [c + 2], [1]) for c in (0, 2, 4)]
    outs = [b.unary("exp", b.binary("min", p, b.const(np.float32(2.0)))) for p in parts]
    return b.build([b.binary("add", b.binary("add", outs[0], outs[1]), outs[2])]), parts, y


def test_ops_channel_split_at_batch_1_reads_the_conv_output_in_place() -> None:
    graph, parts, host = _channel_split()
    plan = compile_placed(graph, lambda s: "cython")
    assert {v: plan.in_place.slots[v].host for v in parts} == dict.fromkeys(parts, host)
    assert [plan.in_place.slots[v].offset for v in parts] == [0, 50, 100]
    assert all(_in_block(plan, v, host) for v in parts)
    rows = {r["step"]: r for r in explain(plan)}
    sliced = [s for s in plan.steps if s.output in parts]
    assert [rows[s.name]["backend"] for s in sliced] == ["in place"] * 3
    _check(graph, plan)


def test_ops_channel_split_at_batch_2_keeps_its_copies() -> None:
    graph, parts, _ = _channel_split(batch=2)  # each part is two blocks apart: no view
    plan = compile_placed(graph, lambda s: "cython")
    assert not set(parts) & set(plan.in_place.slots)
    _check(graph, plan)


def test_ops_slices_of_inputs_outputs_and_constants_keep_their_copies() -> None:
    b = GraphBuilder()
    x = b.input("x", (4, 6))
    k = b.const(np.arange(24, dtype=np.float32).reshape(4, 6))
    y = b.unary("neg", x)
    of_input = b.slice(x, [1], [3], [0])
    of_constant = b.slice(b.binary("add", k, k), [0], [2], [0])  # folded at build: a constant
    as_output = b.slice(y, [2], [4], [0])
    graph = b.build([b.unary("exp", of_input), of_constant, as_output, b.unary("abs", y)])
    plan = compile_placed(graph, lambda s: "cython")
    assert not {of_input, as_output} & set(plan.in_place.slots)
    _check(graph, plan)


def test_ops_slices_beside_an_opencl_step_keep_their_copies() -> None:
    backend_or_skip("opencl")
    b = GraphBuilder()
    x = b.input("x", (4, 6))
    host = b.unary("neg", x)
    read_on_device = b.slice(host, [0], [2], [0])
    device = b.unary("exp", b.binary("min", x, b.const(np.float32(2.0))))
    of_device = b.slice(device, [1], [3], [0])
    graph = b.build(
        [b.unary("abs", read_on_device), b.unary("neg", of_device), b.unary("abs", host)]
    )
    readers = {n.output for n in graph.nodes if read_on_device in n.inputs}
    on_device = {device, *readers}
    plan = compile_placed(graph, lambda s: "opencl" if s.output in on_device else "cython")
    assert not {read_on_device, of_device} & set(plan.in_place.slots)
    _check(graph, plan)


def test_ops_a_view_read_after_its_host_dies_stays_valid() -> None:
    """The host's block lives while the view is read: the slice is read last, after many
    values that could have taken the block."""
    b = GraphBuilder()
    x = b.input("x", (1, 64))
    host = b.unary("exp", b.binary("min", x, b.const(np.float32(3.0))))
    view = b.slice(host, [0, 16], [1, 48], [0, 1])
    y = b.unary("neg", x)
    for _ in range(6):  # values of the host's size, each dead after the next
        y = b.unary("abs", b.binary("add", y, b.const(np.float32(0.5))))
    graph = b.build([b.binary("add", b.slice(y, [0, 0], [1, 32], [0, 1]), view)])
    plan = compile_placed(graph, lambda s: "cython")
    assert plan.in_place.slots[view].host == host
    _check(graph, plan, calls=4)


@st.composite
def _slice_graphs(draw: st.DrawFn) -> Graph:
    """Small graphs of slices (contiguous blocks or not), concats, reshapes and element-wise
    ops over [batch, 4, 3] values."""
    batch = draw(st.sampled_from([1, 1, 2]))
    b = GraphBuilder()
    values = [b.input("x", (batch, 4, 3))]
    for _ in range(draw(st.integers(2, 10))):
        kind = draw(st.sampled_from(["slice", "slice", "concat", "neg", "exp", "add", "flat"]))
        x = draw(st.sampled_from([values[-1], *values]))
        shape = b.shape(x)
        if kind == "slice":
            axis = draw(st.integers(0, len(shape) - 1))
            start = draw(st.integers(0, shape[axis] - 1))
            stop = draw(st.integers(start + 1, shape[axis]))
            sliced = b.slice(x, [start], [stop], [axis])
            values.append(b.concat([sliced, sliced], axis) if draw(st.booleans()) else sliced)
        elif kind == "concat":
            same = [v for v in values if b.shape(v) == shape]
            values.append(b.concat([x, draw(st.sampled_from(same))], len(shape) - 1))
        elif kind == "flat":
            values.append(b.reshape(x, (int(np.prod(shape)),)))
        elif kind == "add":
            same = [v for v in values if b.shape(v) == shape]
            values.append(b.binary("add", x, draw(st.sampled_from(same))))
        else:
            values.append(b.unary(kind, b.binary("min", x, b.const(np.float32(3.0)))))
    return build_outputs(draw, b, values[1:], most=2)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=_slice_graphs(), seed=st.integers(0, 3))
def test_ops_random_slice_graphs_match_the_oracle(graph: Graph, seed: int) -> None:
    check_split_between_numpy_and_cython(graph, seed)

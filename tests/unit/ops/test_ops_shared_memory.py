"""Values whose lives do not overlap share memory blocks; results never change.

A compiled plan gives a value the block of a value no later step touches (walle.ops.reuse),
so a step writes memory that is likely still in the caches. These tests pin the planner
against an independent liveness oracle (which step touches which value, recomputed from the
steps' parts): no two values that some step holds at once share memory, a block is never
smaller than a value in it, the graph's inputs and outputs and every value a device step
touches keep memory of their own, and memory is in fact shared. Results are compared bit
for bit with the plan that gives every value its own buffer, call after call with fresh
inputs, on a residual CNN, a chain with a concat and a model from the onnx wheel.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import backend_or_skip, compile_placed
from walle.ops import CompiledPlan, GraphBuilder
from walle.ops.aliasing import reshape_aliases
from walle.ops.fusion import FusedStep, find_steps
from walle.ops.ir import Graph
from walle.ops.plan import is_alias
from walle.ops.reuse import share_blocks


@settings(max_examples=200, deadline=None)
@given(
    touched=st.lists(st.lists(st.integers(0, 11), max_size=5, unique=True), max_size=14),
    sizes=st.lists(st.integers(1, 50), min_size=12, max_size=12),
    pinned=st.sets(st.integers(0, 11), max_size=3),
)
def test_ops_share_blocks_never_gives_one_block_to_two_live_values(
    touched: list[list[int]], sizes: list[int], pinned: set[int]
) -> None:
    names = [[f"v{i}" for i in step] for step in touched]
    plan = share_blocks(names, {f"v{i}": s for i, s in enumerate(sizes)}, {f"v{i}" for i in pinned})
    span: dict[str, tuple[int, int]] = {}
    for i, step in enumerate(names):
        for name in step:
            first = span.get(name, (i, i))[0]
            span[name] = (first, i)
    want = {name for name in span if int(name[1:]) not in pinned}
    assert set(plan.block) == want
    for name, block in plan.block.items():
        assert plan.sizes[block] >= sizes[int(name[1:])]
    for a, b in itertools.combinations(plan.block, 2):
        if plan.block[a] == plan.block[b]:
            (a0, a1), (b0, b1) = span[a], span[b]
            assert a1 < b0 or b1 < a0, (a, span[a], b, span[b])


def test_ops_share_blocks_reuses_the_block_freed_last() -> None:
    chain = [["x1", "x0"], ["x2", "x1"], ["x3", "x2"], ["x4", "x3"]]
    plan = share_blocks(chain, {f"x{i}": 8 for i in range(5)}, set())
    assert len(plan.sizes) == 2  # a chain needs two blocks, whatever its length
    # b dies at step 0 and c takes its block; a, then c, die at step 1: d takes c's block
    plan = share_blocks([["a", "b"], ["c", "a"], ["d"]], dict.fromkeys("abcd", 8), set())
    assert plan.block["c"] == plan.block["b"] != plan.block["a"]
    assert plan.block["d"] == plan.block["c"]
    # too large for every free block: the largest free one grows
    plan = share_blocks([["a", "b"], ["a"], ["c"]], {"a": 8, "b": 4, "c": 20}, set())
    assert plan.block["c"] == plan.block["a"] and plan.sizes[plan.block["c"]] == 20


def _residual_cnn() -> Graph:
    b = GraphBuilder()
    rng = np.random.default_rng(0)
    x = b.input("x", (2, 4, 12, 12))

    def conv(v: str, cout: int, k: int) -> str:
        w = b.const(rng.uniform(-0.3, 0.3, (cout, b.shape(v)[1], k, k)))
        return b.conv2d(v, w, b.const(rng.uniform(-0.1, 0.1, cout)), pads=(k // 2,) * 4)

    y = b.relu(conv(x, 8, 3))
    for _ in range(3):  # residual blocks: a shortcut that lives across two convs
        z = b.relu(conv(y, 8, 3))
        y = b.relu(b.binary("add", conv(z, 8, 1), y))
    y = b.max_pool(y, (2, 2), strides=(2, 2))
    y = b.concat([b.relu(conv(y, 6, 3)), b.sigmoid(conv(y, 5, 1))], axis=1)
    return b.build([b.flatten(y), y])


def _memory(plan: CompiledPlan) -> dict[str, tuple[int, int]]:
    """Each non-constant value's [start, end) bytes."""
    out = {}
    for name, buf in plan.buffers.items():
        if name not in plan.graph.constants:
            start = buf.__array_interface__["data"][0]
            out[name] = (start, start + buf.nbytes)
    return out


def _owner(plan: CompiledPlan) -> dict[str, str]:
    """Each value's owner of memory by design: the value a reshape views, the host of a
    concat slot (the same memory on purpose), else itself."""
    up = dict(reshape_aliases(plan.graph, plan.steps))
    up.update({v: s.host for v, s in plan.in_place.slots.items()})
    up.update({v: c.host for v, c in plan.in_place.channels.items()})

    def owner(v: str) -> str:
        while v in up:
            v = up[v]
        return v

    return {v: owner(v) for v in _memory(plan)}


def _lives(plan: CompiledPlan) -> dict[str, tuple[int, int]]:
    """The oracle: each owner's first and last step, over every value it holds, from the
    steps' parts."""
    owner = _owner(plan)
    span: dict[str, tuple[int, int]] = {}
    for i, step in enumerate(plan.steps):
        names = {step.output, *step.inputs}
        for part in step.parts:
            names.update((part.output, *part.inputs))
        for name in names - set(plan.graph.constants):
            o = owner[name]
            span[o] = (span.get(o, (i, i))[0], i)
    return span


def _overlap(x: tuple[int, int], y: tuple[int, int]) -> bool:
    return x[0] < y[1] and y[0] < x[1]


def _sharing(plan: CompiledPlan, value: str) -> list[str]:
    """The values of other owners whose memory overlaps ``value``'s."""
    memory, owner = _memory(plan), _owner(plan)
    return [v for v, m in memory.items() if owner[v] != owner[value] and _overlap(m, memory[value])]


def _check_no_live_overlap(plan: CompiledPlan) -> int:
    """No two owners that some step holds at once share memory; returns how many pairs of
    owners do share memory."""
    memory, owner, span = _memory(plan), _owner(plan), _lives(plan)
    pairs = set()
    for a, b in itertools.combinations(sorted(memory), 2):
        oa, ob = owner[a], owner[b]
        if oa == ob or not _overlap(memory[a], memory[b]):
            continue
        pairs.add((oa, ob))
        (a0, a1), (b0, b1) = span[oa], span[ob]
        assert a1 < b0 or b1 < a0, f"{oa} {span[oa]} and {ob} {span[ob]} share memory"
    return len(pairs)


def _check_same_bits(graph: Graph, shared: CompiledPlan, own: CompiledPlan) -> None:
    rng = np.random.default_rng(5)
    for _ in range(3):
        feeds = [rng.uniform(-2, 2, graph.shape(n)).astype(np.float32) for n in graph.inputs]
        for got, want in zip(shared(*feeds), own(*feeds), strict=True):
            assert np.array_equal(got, want, equal_nan=True)


@pytest.mark.parametrize("backend", ["numpy", "cython"])
def test_ops_plan_shares_memory_between_values_that_never_live_together(backend: str) -> None:
    graph = _residual_cnn()
    plan = compile_placed(graph, lambda s: backend)
    assert _check_no_live_overlap(plan) > 0  # memory is in fact shared
    for name in (*graph.inputs, *graph.outputs):  # the caller's side keeps its own
        assert _sharing(plan, name) == [], name
    _check_same_bits(graph, plan, compile_placed(graph, lambda s: backend, share=False))


def test_ops_values_of_device_steps_keep_their_own_memory() -> None:
    backend_or_skip("opencl")
    graph = _residual_cnn()

    convs = [s.name for s in find_steps(graph) if s.op == "fused.conv2d"]

    def place(step: FusedStep) -> str:  # the first conv of two residual blocks on the device
        return "opencl" if step.name in (convs[1], convs[3]) else "cython"

    plan = compile_placed(graph, place)
    _check_no_live_overlap(plan)
    device = {
        v
        for s in plan.steps
        if not is_alias(s, graph) and plan.choices[s.name].backend == "opencl"
        for v in (s.output, *s.inputs)
        if v not in graph.constants
    }
    assert device
    for v in device:
        assert _sharing(plan, v) == [], v
    _check_same_bits(graph, plan, compile_placed(graph, place, share=False))


def test_ops_shared_memory_keeps_a_real_models_bits() -> None:
    backend_or_skip("cython")
    onnx = pytest.importorskip("onnx")
    from pathlib import Path

    from walle.ops.onnx_import import import_onnx

    path = Path(onnx.__file__).parent / "backend/test/data/light/light_squeezenet.onnx"
    graph = import_onnx(onnx.load(str(path)))
    plan = compile_placed(graph, lambda s: "cython")
    assert _check_no_live_overlap(plan) > 0
    _check_same_bits(graph, plan, compile_placed(graph, lambda s: "cython", share=False))


def _inner(plan: CompiledPlan) -> list[set[str]]:
    """Per step, the owners of the values inside it (its parts' outputs but its own)."""
    owner = _owner(plan)
    outer = {owner[v] for s in plan.steps for v in (s.output, *s.inputs) if v in owner}
    return [{owner[p.output] for p in s.parts if p.output != s.output} - outer for s in plan.steps]


def _conv_chain(convs: int) -> Graph:
    b = GraphBuilder()
    rng = np.random.default_rng(1)
    y = b.input("x", (1, 6, 10, 10))
    for _ in range(convs):
        w = b.const(rng.uniform(-0.3, 0.3, (6, 6, 3, 3)))
        y = b.relu(b.conv2d(y, w, b.const(rng.uniform(-0.1, 0.1, 6)), pads=(1,) * 4))
    return b.build([y])


@pytest.mark.parametrize("algorithm", ["direct", "parts"])
def test_ops_values_inside_steps_share_a_few_blocks(algorithm: str) -> None:
    """A fused conv's im2col matrix (written only by a run of its parts) lives within its
    step: six convs hold theirs in one conv's memory, not six (with memory of their own a
    plan took ~25x a model's weights: PP-LCNet 122 MB for 6.8 MB). Run as parts, which write
    them, the bits equal those of the plan that gives every value its own buffer."""
    backend_or_skip("cython")
    graph = _conv_chain(6)
    convs = {s.output: algorithm for s in find_steps(graph) if s.op == "fused.conv2d"}
    plan = compile_placed(graph, lambda s: "cython", algorithms=convs)
    assert {plan.choices[s.name].algorithm for s in plan.steps if s.output in convs} == {algorithm}
    inner = _inner(plan)
    per_step = [sum(plan.buffers[v].nbytes for v in values) for values in inner]
    assert sum(1 for n in per_step if n) == 6 and len(set(per_step) - {0}) == 1
    memory = _memory(plan)
    used = {memory[v] for values in inner for v in values}
    assert sum(end - start for start, end in used) == max(per_step)
    _check_no_live_overlap(plan)
    own = compile_placed(graph, lambda s: "cython", share=False, algorithms=convs)
    _check_same_bits(graph, plan, own)


def test_ops_search_buffers_share_only_the_values_inside_steps() -> None:
    """A search's buffers (each step's candidates timed alone, every value filled): the
    values inside steps share blocks (the im2col matrices of six convs in one conv's
    memory: PP-OCRv4's text detector peaked at 1.6 GB in its search, 0.6 GB after), every
    other value keeps memory of its own."""
    from walle.ops.plan import allocate

    graph = _conv_chain(6)
    steps = find_steps(graph)
    buffers = allocate(graph, steps, fill=0.5)
    inside = [
        [p.output for p in s.parts if p.output != s.output and p.output not in graph.constants]
        for s in steps
    ]
    convs = [values for s, values in zip(steps, inside, strict=True) if s.op == "fused.conv2d"]
    assert len(convs) == 6 and all(convs)
    firsts = [buffers[values[0]] for values in convs]
    assert all(np.shares_memory(firsts[0], b) for b in firsts[1:])
    outer = {v for s in steps for v in (s.output, *s.inputs) if v not in graph.constants}
    for v in outer:
        assert not any(np.shares_memory(buffers[v], buffers[w]) for w in outer - {v}), v
        assert not any(np.shares_memory(buffers[v], b) for b in firsts), v
        assert np.all((buffers[v] >= 0.5) & (buffers[v] < 1.5)), v  # filled: [fill, fill + 1)

"""Concat inputs write straight into their concat's buffer; results never change.

A compiled plan places a concat input in its block of the concat's buffer when its producer
runs on host memory and the concat copies it whole into one contiguous block (batch 1 on
the channel axis, or axis 0); the concat step then copies only what is left, or nothing.
At batch > 1 a channel concat's input is written into its channels of the concat's buffer
when its producer's kernel writes channel ranges (the cython conv's packed GEMM and
Winograd) and nothing else reads it. These tests pin both sides: where in-place placement
must happen (convs, DenseNet's nested chain, axis 0 at batch > 1, channel ranges) and where
it must not (graph inputs, outputs, constants, a value two concats read, a channel concat at
batch > 1 on a kernel that writes whole outputs, device steps), each time against the numpy
oracle over repeated calls with fresh inputs, so that stale data cannot hide.
Tolerance: 1e-4 relative and absolute (float32 kernels, sums of a few dozen products).
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._backends import backend_or_skip, compile_placed
from walle.ops import CompiledPlan, GraphBuilder, compile_graph, run_reference
from walle.ops.fusion import FusedStep, find_steps
from walle.ops.ir import Graph
from walle.ops.plan import allocate
from walle.ops.search import explain


def _check(graph: Graph, plan: CompiledPlan, calls: int = 3) -> None:
    """Every output equals the oracle's, call after call with fresh inputs."""
    rng = np.random.default_rng(7)
    for _ in range(calls):
        feeds = {n: rng.uniform(-2, 2, graph.shape(n)).astype(np.float32) for n in graph.inputs}
        got = plan(*(feeds[n] for n in graph.inputs))
        for g, w in zip(got, run_reference(graph, feeds), strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def _concat_steps(plan: CompiledPlan) -> list[FusedStep]:
    return [s for s in plan.steps if s.op == "raster" and len(s.inputs) > 1]


def _in_block(plan: CompiledPlan, value: str, host: str) -> bool:
    """``value``'s buffer lies inside ``host``'s buffer."""
    a, b = plan.buffers[value], plan.buffers[host]
    start = a.__array_interface__["data"][0] - b.__array_interface__["data"][0]
    return start >= 0 and start + a.nbytes <= b.nbytes


def _conv(b: GraphBuilder, x: str, cout: int, k: int, seed: int, relu: bool = True) -> str:
    cin = b.shape(x)[1]
    rng = np.random.default_rng(seed)
    w = b.const(rng.uniform(-0.3, 0.3, (cout, cin, k, k)))
    y = b.conv2d(x, w, b.const(rng.uniform(-0.1, 0.1, cout)), pads=(k // 2,) * 4)
    return b.relu(y) if relu else y


def _inception(batch: int) -> tuple[Graph, list[str]]:
    b = GraphBuilder()
    x = b.input("x", (batch, 3, 6, 5))
    branches = [_conv(b, x, 4, 1, 1), _conv(b, x, 5, 3, 2, relu=False), _conv(b, x, 3, 1, 3)]
    cat = b.concat(branches, axis=1)
    return b.build([_reader(b, cat)]), branches


def _reader(b: GraphBuilder, cat: str) -> str:
    """A step that reads the concat (not a unary: one alone would move before the concat,
    see the last test)."""
    return b.binary("mul", cat, b.const(np.float32(2.0)))


def _between_neighbours(kind: str) -> tuple[Graph, str]:
    """A concat [left, y, right] whose outer blocks are written before ``y``'s producer, so
    that a kernel writing past either end of its block would spoil them."""
    b = GraphBuilder()
    rng = np.random.default_rng(5)
    if kind == "linear":
        x = b.input("x", (1, 10))
        w, bias = b.const(rng.uniform(-1, 1, (10, 7))), b.const(rng.uniform(-1, 1, 7))
        left, right = b.relu(x), b.unary("neg", x)
        y = b.relu(b.linear(x, w, bias))
    else:
        x = b.input("x", (1, 8, 7, 9))
        group = {"conv": 1, "conv1x1": 1, "group_conv": 2, "depthwise": 8}[kind]
        k = 1 if kind == "conv1x1" else 3
        w = b.const(rng.uniform(-0.3, 0.3, (8, 8 // group, k, k)))
        left, right = b.relu(x), b.unary("neg", x)
        bias = b.const(rng.uniform(-1, 1, 8))
        y = b.relu(b.conv2d(x, w, bias, pads=(k // 2,) * 4, group=group))
    cat = b.concat([left, y, right], axis=1)
    return b.build([b.unary("exp", b.binary("min", cat, b.const(np.float32(2.0))))]), y


@pytest.mark.parametrize("backend", ["numpy", "cython"])
@pytest.mark.parametrize("kind", ["conv", "conv1x1", "group_conv", "depthwise", "linear"])
def test_ops_every_algorithm_writes_only_its_block(backend: str, kind: str) -> None:
    graph, y = _between_neighbours(kind)
    be = backend_or_skip(backend)
    (step,) = (s for s in find_steps(graph) if s.output == y)
    for algorithm in be.algorithms(step, graph):
        plan = compile_placed(graph, lambda s: backend, algorithms={y: algorithm})
        assert plan.in_place.step(_concat_steps(plan)[0]) is None
        _check(graph, plan, calls=2)


@pytest.mark.parametrize("backend", ["numpy", "cython"])
def test_ops_concat_of_convs_writes_in_place(backend: str) -> None:
    graph, branches = _inception(1)
    plan = compile_placed(graph, lambda s: backend)
    (cat,) = _concat_steps(plan)
    assert plan.in_place.step(cat) is None, "every branch should write its block in place"
    for value in branches:
        assert _in_block(plan, value, cat.output)
    _check(graph, plan)
    # explain() says the concat runs nothing (it once listed it with its copy's estimate)
    (row,) = [r for r in explain(plan) if r["step"] == cat.name]
    assert (row["backend"], row["algorithm"], row["estimate_us"]) == ("in place", "skipped", 0.0)
    copying = compile_placed(graph, lambda s: backend, in_place=False)
    (row,) = [r for r in explain(copying) if r["step"] == cat.name]
    assert row["backend"] == backend and row["algorithm"] != "skipped"


def test_ops_channel_concat_at_batch_2_copies_and_axis_0_writes_in_place() -> None:
    graph, _ = _inception(2)
    plan = compile_placed(graph, lambda s: "numpy")
    (cat,) = _concat_steps(plan)
    assert plan.in_place.step(cat) is cat, "a channel slice at batch 2 is two blocks: copy"
    _check(graph, plan)
    b = GraphBuilder()
    x = b.input("x", (2, 3, 4, 4))
    parts = [_conv(b, x, 3, 1, 4), _conv(b, x, 3, 3, 5)]
    graph = b.build([_reader(b, b.concat(parts, axis=0))])
    plan = compile_placed(graph, lambda s: "numpy")
    assert plan.in_place.step(_concat_steps(plan)[0]) is None
    _check(graph, plan)


@pytest.mark.parametrize(
    "algorithms",
    [("gemm", "winograd", "gemm"), ("gemm", "winograd_f2", "direct"), ("gemm", "gemm", "gemm")],
)
def test_ops_channel_concat_at_batch_3_convs_write_their_channels(algorithms) -> None:
    """SqueezeNet's fire module at batch 3: each branch whose kernel writes a channel range
    (packed GEMM, Winograd) writes its channels of the concat's buffer (a strided view);
    a branch on another kernel keeps its copy."""
    b = GraphBuilder()
    x = b.input("x", (3, 3, 6, 5))
    branches = [_conv(b, x, 4, 1, 1), _conv(b, x, 5, 3, 2), _conv(b, x, 3, 1, 3)]
    graph = b.build([_reader(b, b.concat(branches, axis=1))])
    chosen = dict(zip(branches, algorithms, strict=True))
    plan = compile_placed(graph, lambda s: "cython", algorithms=chosen)
    (cat,) = _concat_steps(plan)
    slotted = [v for v, a in chosen.items() if a != "direct"]
    assert sorted(plan.in_place.channels) == sorted(slotted)
    left = plan.in_place.step(cat)
    assert (left is None) == (len(slotted) == len(branches))
    if left is not None:
        assert len(left.parts[0].attr("regions")) == len(branches) - len(slotted)
    for value in slotted:
        assert _in_block(plan, value, cat.output)
        assert not plan.buffers[value].flags.c_contiguous
    _check(graph, plan)


@pytest.mark.parametrize("kind", ["conv", "conv1x1"])
def test_ops_channel_ranges_leave_the_neighbours_channels_alone(kind: str) -> None:
    """A conv writing channels between two others' at batch 2, on every algorithm that may:
    a kernel writing past its range would spoil its neighbours."""
    b = GraphBuilder()
    rng = np.random.default_rng(6)
    x = b.input("x", (2, 8, 7, 9))
    k = 1 if kind == "conv1x1" else 3
    w = b.const(rng.uniform(-0.3, 0.3, (5, 8, k, k)))
    y = b.relu(b.conv2d(x, w, b.const(rng.uniform(-1, 1, 5)), pads=(k // 2,) * 4))
    cat = b.concat([b.relu(x), y, b.unary("neg", x)], axis=1)
    graph = b.build([b.unary("exp", b.binary("min", cat, b.const(np.float32(2.0))))])
    be = backend_or_skip("cython")
    (step,) = (s for s in find_steps(graph) if s.output == y)
    writers = [a for a in be.algorithms(step, graph) if be.writes_channel_slice(step, a, graph)]
    assert "gemm" in writers and (kind == "conv1x1" or "winograd" in writers)
    for algorithm in writers:
        plan = compile_placed(graph, lambda s: "cython", algorithms={y: algorithm})
        assert y in plan.in_place.channels
        _check(graph, plan, calls=2)


def test_ops_channel_concat_of_a_conv_without_activation_keeps_its_copy() -> None:
    """A conv without activation ends in a reshape alias: the concat reads the alias, so
    its output keeps its own buffer at batch 2 (the other branches still write in place)."""
    graph, branches = _inception(2)
    plan = compile_placed(graph, lambda s: "cython", algorithms={v: "gemm" for v in branches})
    (cat,) = _concat_steps(plan)
    assert sorted(plan.in_place.channels) == sorted([branches[0], branches[2]])
    left = plan.in_place.step(cat)
    assert left is not None and len(left.parts[0].attr("regions")) == 1
    _check(graph, plan)


def test_ops_channel_concat_input_read_elsewhere_keeps_its_copy() -> None:
    """A branch that another step reads too keeps a buffer of its own at batch 2."""
    b = GraphBuilder()
    x = b.input("x", (2, 3, 6, 5))
    first, second = _conv(b, x, 4, 1, 1), _conv(b, x, 5, 3, 2)
    cat = b.concat([first, second], axis=1)
    graph = b.build([_reader(b, cat), b.unary("neg", first)])
    plan = compile_placed(graph, lambda s: "cython", algorithms={first: "gemm", second: "gemm"})
    assert list(plan.in_place.channels) == [second]
    assert plan.buffers[first].flags.c_contiguous
    _check(graph, plan)


def _dense_block(layers: int) -> tuple[Graph, list[str]]:
    """DenseNet's chain: each layer concatenates the previous concat with its new features."""
    b = GraphBuilder()
    x = b.input("x", (1, 4, 5, 5))
    cat = _conv(b, x, 6, 3, 0)
    chain = [cat]
    for i in range(layers):
        new = _conv(b, b.relu(b.binary("mul", cat, b.const(np.float32(0.9)))), 3, 3, 10 + i)
        cat = b.concat([cat, new], axis=1)
        chain.append(cat)
    return b.build([_reader(b, cat)]), chain


@pytest.mark.parametrize("backend", ["numpy", "cython"])
def test_ops_nested_concats_share_the_outer_buffer(backend: str) -> None:
    graph, chain = _dense_block(4)
    plan = compile_placed(graph, lambda s: backend)
    assert all(plan.in_place.step(s) is None for s in _concat_steps(plan))
    for value in chain[:-1]:  # every inner concat (and the first conv) inside the last one
        assert _in_block(plan, value, chain[-1])
    for buf in plan.buffers.values():
        assert buf.dtype == np.float32 and buf.flags.c_contiguous
    _check(graph, plan)


def test_ops_concat_in_place_matches_the_copying_plan() -> None:
    graph, _ = _dense_block(3)
    x = np.random.default_rng(3).uniform(-1, 1, graph.shape("x")).astype(np.float32)
    copying = compile_placed(graph, lambda s: "numpy", in_place=False)
    assert copying.in_place.slots == {}
    want = copying(x)[0]
    np.testing.assert_allclose(compile_placed(graph, lambda s: "numpy")(x)[0], want, rtol=1e-6)


def test_ops_concat_keeps_copies_of_inputs_outputs_constants_and_shared_values() -> None:
    b = GraphBuilder()
    x = b.input("x", (1, 2, 3, 3))
    a = _conv(b, x, 3, 1, 1)  # a graph output: keeps its own array
    c = _conv(b, x, 2, 3, 2)  # read by two concats: in place in the first only
    k = b.const(np.random.default_rng(0).uniform(size=(1, 1, 3, 3)))
    first = b.concat([x, a, c, k], axis=1)
    neg = b.unary("neg", c)
    second = b.concat([c, neg], axis=1)
    r = b.relu(x)
    twice = b.concat([r, r], axis=1)  # one value in two regions: copied
    graph = b.build([a, b.relu(first), _reader(b, second), twice])
    plan = compile_placed(graph, lambda s: "cython")
    assert {v: s.host for v, s in plan.in_place.slots.items()} == {c: first, neg: second}
    kept = [plan.in_place.step(s) for s in _concat_steps(plan)]
    assert [len(s.parts[0].attr("regions")) if s else 0 for s in kept] == [3, 1, 2]
    rows = {r["step"]: r["algorithm"] for r in explain(plan)}
    assert [rows[s.name].endswith("(partly in place)") for s in _concat_steps(plan)] == [
        True,
        True,
        False,  # the twice-read value: every copy kept
    ]
    _check(graph, plan)


def test_ops_concat_input_read_by_another_step_stays_valid() -> None:
    b = GraphBuilder()
    x = b.input("x", (1, 3, 4, 4))
    a, c = _conv(b, x, 4, 3, 1), _conv(b, x, 2, 1, 2)
    cat = b.concat([a, c], axis=1)
    later = b.binary("add", b.unary("neg", a), b.reduce("sum", cat, (1,), keepdims=True))
    graph = b.build([later, _reader(b, cat)])
    plan = compile_placed(graph, lambda s: "cython")
    assert plan.in_place.step(_concat_steps(plan)[0]) is None
    _check(graph, plan)


def test_ops_concat_beside_an_opencl_step_keeps_device_results_copied() -> None:
    backend_or_skip("opencl")
    graph, chain = _dense_block(3)
    # The second layer's conv and the last concat run on OpenCL: the conv's output is
    # copied down, and a concat run on the device writes device memory, so both keep copies.
    new = next(n.inputs[1] for n in graph.nodes if n.output == chain[2])
    device = {new, chain[-1]}
    plan = compile_placed(graph, lambda s: "opencl" if s.output in device else "cython")
    assert new not in plan.in_place.slots
    assert not any(s.host == chain[-1] for s in plan.in_place.slots.values())
    (step,) = (s for s in _concat_steps(plan) if s.output == chain[2])
    kept = plan.in_place.step(step)
    assert kept is not None and len(kept.parts[0].attr("regions")) == 1  # the device's
    assert _in_block(plan, chain[0], chain[2])
    _check(graph, plan)


def test_ops_search_trials_keep_their_own_buffers() -> None:
    graph, chain = _dense_block(2)
    buffers = allocate(graph, find_steps(graph), fill=0.5)
    assert not any(np.shares_memory(buffers[v], buffers[chain[-1]]) for v in chain[:-1])


@st.composite
def _concat_graphs(draw: st.DrawFn) -> Graph:
    """Small graphs of element-wise ops and concats (nested, repeated, on any axis)."""
    batch = draw(st.sampled_from([1, 1, 2]))
    b = GraphBuilder()
    values = [b.input("x", (batch, 2, 3)), b.input("y", (batch, 1, 3))]
    values.append(b.const(np.linspace(-1, 1, batch * 3, dtype=np.float32).reshape(batch, 1, 3)))
    for _ in range(draw(st.integers(2, 9))):
        kind = draw(st.sampled_from(["concat", "relu", "concat", "add", "neg", "reshape", "exp"]))
        x = draw(st.sampled_from([values[-1], *values]))
        if kind == "concat":
            axis = draw(st.sampled_from([0, 1, 2]))
            fits = [v for v in values if _off(b.shape(v), axis) == _off(b.shape(x), axis)]
            made = [v for v in fits if v in values[3:]] or fits  # mostly computed values
            pool = draw(st.sampled_from([fits, made, made]))
            unique = draw(st.sampled_from([True, True, False])) and len(pool) > 1
            parts = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=unique))
            chain = draw(st.booleans()) and x == values[-1]  # a concat of the last concat
            parts = [x, *parts] if chain else [*parts, draw(st.sampled_from(pool))]
            values.append(b.concat(parts, axis=axis))
        elif kind == "reshape":
            flat = b.reshape(x, (int(np.prod(b.shape(x))),))
            values.append(b.relu(b.reshape(b.relu(flat), b.shape(x))))
        elif kind == "add":
            same = [v for v in values if b.shape(v) == b.shape(x)]
            values.append(b.binary("add", x, draw(st.sampled_from(same))))
        else:
            values.append(b.unary(kind, b.binary("min", x, b.const(np.float32(3.0)))))
    return build_outputs(draw, b, values[3:], most=1)


def build_outputs(draw: st.DrawFn, b: GraphBuilder, computed: list[str], most: int) -> Graph:
    """The graph whose outputs are the last computed value and up to ``most`` drawn others."""
    also = draw(st.lists(st.sampled_from(computed), max_size=most))
    return b.build(list(dict.fromkeys([computed[-1], *also])))


def _off(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return tuple(d for i, d in enumerate(shape) if i != axis)


def check_split_between_numpy_and_cython(graph: Graph, seed: int) -> None:
    """``graph`` with each step on numpy or cython (by its name and ``seed``) gives the
    oracle's outputs, call after call."""
    backend_or_skip("cython")
    names = ["numpy", "cython"]
    plan = compile_placed(graph, lambda s: names[(zlib.crc32(s.name.encode()) + seed) % 2])
    _check(graph, plan, calls=2)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=_concat_graphs(), seed=st.integers(0, 3))
def test_ops_random_concat_graphs_match_the_oracle(graph: Graph, seed: int) -> None:
    check_split_between_numpy_and_cython(graph, seed)


@pytest.mark.parametrize("readers", ["unary", "two", "output"])
def test_a_unary_that_alone_reads_a_concat_moves_before_it(readers) -> None:
    """relu(concat(a, b)) is built as concat(relu(a), relu(b)) where the ReLU is the concat's
    only reader (ShuffleNet's downsampling units: the conv's ReLU then fuses into it, and
    no step passes over the concat); a concat read twice, or a graph output, stays. Oracle:
    numpy on the same weights."""
    rng = np.random.default_rng(3)
    weight = rng.uniform(-1, 1, (4, 3)).astype(np.float32)
    b = GraphBuilder()
    x = b.input("x", (2, 3, 6, 5))
    conv = b.conv2d(x, b.const(weight.reshape(4, 3, 1, 1)), b.const(np.ones(4)))
    cat = b.concat([b.max_pool(x, (1, 1)), conv], axis=1)
    y = b.relu(cat)
    if readers == "unary":
        graph = b.build([y])
    else:
        graph = b.build([y, b.unary("exp", cat) if readers == "two" else cat])
    over_cat = [n for n in graph.nodes if n.op == "unary" and n.inputs[0] == cat]
    assert bool(over_cat) == (readers != "unary")
    if readers == "unary":  # the ReLU is the conv's activation now
        (conv_step,) = [s for s in find_steps(graph) if s.op == "fused.conv2d"]
        assert conv_step.attr("act") == "relu"
    xs = rng.uniform(-2, 2, (2, 3, 6, 5)).astype(np.float32)
    xs[0, 1, 2, 3] = np.nan
    joined = np.concatenate([xs, np.einsum("oc,nchw->nohw", weight, xs) + 1], axis=1)
    want = np.where(joined < 0, 0, joined)  # keeps NaN
    np.testing.assert_allclose(run_reference(graph, {"x": xs})[0], want, rtol=1e-5, atol=1e-6)
    plan = compile_graph(graph, trials=False, use_cache=False)
    np.testing.assert_allclose(plan(xs)[0], want, rtol=1e-5, atol=1e-6)

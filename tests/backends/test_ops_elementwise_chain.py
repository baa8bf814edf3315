"""Chains of element-wise ops fused into one ``fused.elementwise`` step, run in one pass.

The fusion must take the longest chain of unary/binary nodes whose intermediates have one
reader and the chain's shape, and leave the conv and matmul patterns their bias and
activation tails. The cython backend runs the chain as one ``ops_math.ChainKernel``; at
every instruction-set level the CPU runs it must match the numpy reference over random
chains, shapes, broadcasts and operand sides, and propagate NaN and inf exactly. The other
backends run the step as its parts.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import at_every_cython_level, backend_or_skip
from walle.ops import GraphBuilder, compile_graph, run_reference
from walle.ops.fusion import FusedStep, find_steps
from walle.ops.ir import Graph
from walle.ops.plan import allocate

# Ops whose float32 results numpy and the kernel round identically (the kernel's exp,
# sigmoid and tanh are polynomials: test_transcendental_tails checks them apart).
_BINARY = ("add", "sub", "mul", "div", "max", "min")
_UNARY = ("relu", "neg", "abs", "identity")


def _levels() -> list[int]:
    backend_or_skip("cython")
    from walle._kernels import ops_math

    return [v for v in ops_math.LEVELS.values() if v <= ops_math.best_level()]


@pytest.fixture
def ops_math():
    """ops_math, with the process's level restored after the test."""
    backend_or_skip("cython")
    from walle._kernels import ops_math as module

    before = module.level()
    yield module
    module.set_level(before)


def _only_chain(graph: Graph) -> FusedStep:
    (step,) = find_steps(graph)
    assert step.op == "fused.elementwise"
    return step


def _run_fused(graph: Graph, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """The graph's single chain step through the cython ChainKernel (never its parts)."""
    from walle.ops import get_backend

    backend = get_backend("cython")
    step = _only_chain(graph)
    assert backend.algorithms(step, graph) == ["fused", "parts"]
    buffers = allocate(graph, [step])
    for name, value in feeds.items():
        buffers[name][...] = value
    for call in backend.compile(step, "fused", graph, buffers):
        call()
    return buffers[step.output].copy()


@st.composite
def _chains(draw: st.DrawFn) -> tuple[Graph, dict[str, np.ndarray]]:
    """A random chain over an output of rank 1-4 with operands broadcast to it (inputs or
    constants, on either side), or the chain value on both sides."""
    rank = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank)))
    if draw(st.booleans()):  # a row long enough to cross the kernel's 512-float blocks
        shape = (*shape[:-1], draw(st.sampled_from([513, 700, 1030])))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    b = GraphBuilder()
    feeds: dict[str, np.ndarray] = {}

    def operand() -> str:
        keep = draw(st.lists(st.booleans(), min_size=rank, max_size=rank))
        sub = tuple(d if k else 1 for d, k in zip(shape, keep, strict=True))
        sub = sub[draw(st.integers(0, rank)) :] if not all(keep) else sub  # lower rank too
        value = rng.uniform(-2, 2, sub).astype(np.float32)
        if draw(st.booleans()):
            return b.const(value)
        name = b.input(f"in{len(feeds)}", sub)
        feeds[name] = value
        return name

    x = b.input("x", shape)
    feeds[x] = rng.uniform(-2, 2, shape).astype(np.float32)
    y = b.binary(draw(st.sampled_from(_BINARY)), operand(), x) if draw(st.booleans()) else x
    for _ in range(draw(st.integers(2, 6))):
        if draw(st.booleans()):
            y = b.unary(draw(st.sampled_from(_UNARY)), y)
            continue
        kind = draw(st.sampled_from(_BINARY))
        side = draw(st.sampled_from(["left", "right", "both"]))
        if side == "both":
            y = b.binary(kind, y, y)
        else:
            other = operand()
            y = b.binary(kind, y, other) if side == "left" else b.binary(kind, other, y)
    return b.build([y]), feeds


@settings(max_examples=60, deadline=None)
@given(_chains())
def test_random_chains_match_the_reference_at_every_level(case) -> None:
    graph, feeds = case
    from walle._kernels import ops_math

    if find_steps(graph)[-1].op != "fused.elementwise":
        return  # a chain of one node (the start was x itself and one op drawn as unary)
    if len(find_steps(graph)) != 1:
        return
    (want,) = run_reference(graph, feeds)
    before = ops_math.level()
    try:
        for level in _levels():
            ops_math.set_level(level)
            got = _run_fused(graph, feeds)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=str(level))
    finally:
        ops_math.set_level(before)


def _batchnorm_relu(shape: tuple[int, ...], scale_shape: tuple[int, ...]) -> Graph:
    rng = np.random.default_rng(1)
    b = GraphBuilder()
    x = b.input("x", shape)
    scale = b.const(rng.uniform(-2, 2, scale_shape).astype(np.float32))
    shift = b.const(rng.uniform(-2, 2, scale_shape).astype(np.float32))
    return b.build([b.relu(b.binary("add", b.binary("mul", x, scale), shift))])


@pytest.mark.parametrize(
    ("shape", "scale_shape"),
    [((1, 64, 7, 7), (64, 1, 1)), ((2, 24, 30, 30), (1, 24, 1, 1)), ((3, 1000), (1000,))],
)
def test_batchnorm_relu_is_one_step_matching_the_reference(ops_math, shape, scale_shape):
    graph = _batchnorm_relu(shape, scale_shape)
    step = _only_chain(graph)
    assert [p.attr("kind") for p in step.parts] == ["mul", "add", "relu"]
    x = np.random.default_rng(2).normal(0, 2, shape).astype(np.float32)
    (want,) = run_reference(graph, {"x": x})
    for level in _levels():
        ops_math.set_level(level)
        np.testing.assert_array_equal(_run_fused(graph, {"x": x}), want)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("sides", [(0, 0), (1, 1)])
def test_a_per_row_scale_and_shift_run_in_one_pass_with_the_chains_bits(ops_math, relu, sides):
    """x * a + b with a and b one value a row (an inference BatchNormalization), then ReLU or
    not, runs as one pass (``affine``) whose bits are the chain's at every level: the product
    rounded before the sum, NaN, inf and -0.0 as in numpy; rows that cross 512-float blocks."""
    rng = np.random.default_rng(3)
    rows, n = 37, 1030
    x = (rng.standard_normal((rows, n)) * 1e3).astype(np.float32)
    x[3, 5], x[4, 600], x[5, 1029], x[6, 1] = np.nan, np.inf, -np.inf, -0.0
    a = rng.standard_normal(rows).astype(np.float32)
    b = rng.standard_normal(rows).astype(np.float32)
    a[7], b[8] = 0.0, np.inf
    ops = [("binary", "mul", 1, sides[0]), ("binary", "add", 2, sides[1])]
    ops += [("unary", "relu", 0, 0)] if relu else []
    s = (x * a[:, None]) + b[:, None]  # float32 throughout: numpy rounds each op
    want = np.where(s <= 0, np.float32(0), s) if relu else s
    strides = [[n, 1], [1, 0], [1, 0]]
    for level in _levels():
        ops_math.set_level(level)
        y = np.full_like(x, 7.0)
        kernel = ops_math.ChainKernel(ops, [x, a, b], y, [rows, n], strides)
        assert kernel.affine
        kernel.run()
        np.testing.assert_array_equal(y.view(np.int32), want.view(np.int32), err_msg=str(level))


def test_other_chains_of_a_scale_and_shift_take_the_general_pass(ops_math) -> None:
    """Not one value a row, another op between, or add before mul: the general chain."""
    x, v, y = (np.ones((4, 8), np.float32) for _ in range(3))
    row, full = [1, 0], [8, 1]
    mul, add = ("binary", "mul", 1, 0), ("binary", "add", 2, 0)
    for ops, strides in [
        ([mul, add], [full, full, row]),  # a scale per element
        ([add, mul], [full, row, row]),
        ([mul, add, ("unary", "abs", 0, 0)], [full, row, row]),
        ([mul, ("binary", "add", 0, 2)], [full, row, row]),
    ]:
        assert not ops_math.ChainKernel(ops, [x, v, v], y, [4, 8], strides).affine


@pytest.mark.parametrize("swish", [False, True])
@pytest.mark.parametrize("last_side", [0, 1])
def test_hard_sigmoid_and_hard_swish_run_in_one_pass_with_the_chains_bits(
    ops_math, swish, last_side
) -> None:
    """clip(x * a + b, lo, hi), times x or not (HardSigmoid and HardSwish as the builder
    composes them, a to hi one value a row), runs as one pass (``hard``) whose bits are the
    general chain's (the same ops with an identity after them) at every level: each op
    rounded, NaN kept by max and min, -inf * 0 a NaN; values on the clip's edges; rows that
    cross 512-float blocks."""
    rng = np.random.default_rng(4)
    rows, n = 19, 1030
    x = (rng.standard_normal((rows, n)) * 4).astype(np.float32)
    x[3, 5], x[4, 600], x[5, 1029], x[6, 1], x[7, 2] = np.nan, np.inf, -np.inf, -0.0, -3.0
    x[7, 3], x[7, 4] = 3.0, np.float32(3.0000002)
    a = np.full(rows, 1 / 6, np.float32)
    a[1] = 0.2
    b = np.full(rows, 0.5, np.float32)
    lo, hi = np.zeros(rows, np.float32), np.ones(rows, np.float32)
    lo[2], hi[2] = -1.0, 0.25
    operands = [x, a, b, lo, hi]
    ops = [("binary", k, i, 0) for i, k in enumerate(("mul", "add", "max", "min"), start=1)]
    ops += [("binary", "mul", 0, last_side)] if swish else []
    strides = [[n, 1]] + [[1, 0]] * 4
    for level in _levels():
        ops_math.set_level(level)
        general = np.full_like(x, 7.0)
        with np.errstate(all="ignore"):
            chain = [*ops, ("unary", "identity", 0, 0)]
            kernel = ops_math.ChainKernel(chain, operands, general, [rows, n], strides)
            assert not kernel.hard
            kernel.run()
            y = np.full_like(x, 7.0)
            kernel = ops_math.ChainKernel(ops, operands, y, [rows, n], strides)
            assert kernel.hard == len(ops)
            kernel.run()
        assert np.isnan(general).any()
        np.testing.assert_array_equal(y.view(np.int32), general.view(np.int32), str(level))


@pytest.mark.parametrize("side", [0, 1])
def test_silu_runs_in_one_pass_with_the_chains_bits(ops_math, side) -> None:
    """x * sigmoid(x) (SiLU as the importer writes it: Sigmoid, then Mul by its input, on
    either side) runs as one pass (``silu``) whose bits are the general chain's (the same
    ops with an identity after them) at every level, and its NaNs where it has them (a
    NaN's sign bit is the compiler's: it may swap a product's operands): NaN, +-inf
    (-inf * 0 a NaN), values past the sigmoid's clamp, -0; rows that cross 512-float
    blocks and end mid-vector.
    Another operand in the product, a broadcast input or a third op: the general chain."""
    rng = np.random.default_rng(5)
    rows, n = 13, 1031
    x = (rng.standard_normal((rows, n)) * 6).astype(np.float32)
    x[3, 5], x[4, 600], x[5, 1030], x[6, 1], x[7, 2], x[7, 3] = (
        np.nan,
        np.inf,
        -np.inf,
        -0.0,
        -90.0,
        89.0,
    )
    ops = [("unary", "sigmoid", 0, 0), ("binary", "mul", 0, side)]
    for level in _levels():
        ops_math.set_level(level)
        general = np.full_like(x, 7.0)
        with np.errstate(all="ignore"):
            kernel = ops_math.ChainKernel(
                [*ops, ("unary", "identity", 0, 0)], [x], general, [rows, n], [[n, 1]]
            )
            assert not kernel.silu
            kernel.run()
            y = np.full_like(x, 7.0)
            kernel = ops_math.ChainKernel(ops, [x], y, [rows, n], [[n, 1]])
            assert kernel.silu
            kernel.run()
        nan = np.isnan(general)
        assert nan.sum() == 2 and (np.isnan(y) == nan).all()  # x's NaN, -inf * 0
        y[nan] = general[nan] = 0.0
        np.testing.assert_array_equal(y.view(np.int32), general.view(np.int32), str(level))
    v = np.ones((4, 8), np.float32)
    for other, strides in [
        ([ops[0], ("binary", "mul", 1, side)], [[8, 1], [8, 1]]),
        (ops, [[1, 0], [8, 1]]),
        ([ops[0], ("binary", "mul", 0, 2)], [[8, 1], [8, 1]]),
    ]:
        assert not ops_math.ChainKernel(other, [v, v], v.copy(), [4, 8], strides).silu


def test_other_clip_chains_take_the_general_pass(ops_math) -> None:
    """A bound per element, the last product by another operand, or the clip's ops in
    another order: the general chain."""
    x, v, y = (np.ones((4, 8), np.float32) for _ in range(3))
    row, full = [1, 0], [8, 1]
    clip = [("binary", k, 1, 0) for k in ("mul", "add", "max", "min")]
    for ops, strides in [
        (clip, [full, full, row]),
        ([*clip, ("binary", "mul", 1, 0)], [full, row, row]),
        ([*clip[:2], clip[3], clip[2]], [full, row, row]),
        ([*clip, ("binary", "add", 0, 1)], [full, row, row]),
    ]:
        assert not ops_math.ChainKernel(ops, [x, v, v], y, [4, 8], strides).hard


@pytest.mark.parametrize("kind", ["sigmoid", "tanh", "exp", "sqrt", "reciprocal"])
def test_transcendental_tails_match_the_reference_at_every_level(ops_math, kind) -> None:
    rng = np.random.default_rng(6)
    b = GraphBuilder()
    x = b.input("x", (2, 40, 33))
    scale = b.const(rng.uniform(0.1, 1, (40, 1)).astype(np.float32))
    y = b.unary(kind, b.binary("mul", b.binary("max", x, b.const(np.float32(0.05))), scale))
    graph = b.build([b.binary("sub", y, b.const(np.float32(0.5)))])
    feeds = {"x": rng.uniform(-3, 3, (2, 40, 33)).astype(np.float32)}
    (want,) = run_reference(graph, feeds)
    for level in _levels():
        ops_math.set_level(level)
        got = _run_fused(graph, feeds)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=str(level))


def test_nan_and_inf_propagate_as_numpy_at_every_level(ops_math) -> None:
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 3e38], np.float32)
    x = np.resize(special, (2, 8, 37)).astype(np.float32)
    c = np.resize(special[::-1], (8, 1)).astype(np.float32)
    b = GraphBuilder()
    xi, ci = b.input("x", x.shape), b.input("c", c.shape)
    y = b.binary("mul", xi, ci)
    y = b.relu(b.binary("add", y, ci))
    y = b.binary("max", ci, b.binary("min", y, xi))
    y = b.binary("sub", b.binary("div", ci, y), xi)
    graph = b.build([b.relu(y)])
    feeds = {"x": x, "c": c}
    with np.errstate(all="ignore"):
        (want,) = run_reference(graph, feeds)
    assert np.isnan(want).any() and np.isinf(want).any()
    for level in _levels():
        ops_math.set_level(level)
        with np.errstate(all="ignore"):
            got = _run_fused(graph, feeds)
        np.testing.assert_array_equal(got, want, err_msg=str(level))


def test_relu_keeps_nan() -> None:
    backend_or_skip("cython")
    from walle._kernels import ops_math

    x = np.array([np.nan, -1.0, 2.0, -np.inf], np.float32)
    y = np.empty_like(x)
    ops_math.ChainKernel(
        [("binary", "add", 1, 0), ("unary", "relu", 0, 0)],
        [x, np.zeros(1, np.float32)],
        y,
        [4],
        [[1], [0]],
    ).run()
    np.testing.assert_array_equal(y, [np.nan, 0.0, 2.0, 0.0])


def test_conv_bias_relu_stays_one_conv_and_residual_add_relu_joins_a_1x1_conv() -> None:
    rng = np.random.default_rng(3)
    b = GraphBuilder()
    x = b.input("x", (1, 8, 6, 6))
    w = b.const(rng.normal(0, 1, (8, 8, 3, 3)).astype(np.float32))
    w1 = b.const(rng.normal(0, 1, (8, 8, 1, 1)).astype(np.float32))
    bias = b.const(rng.normal(0, 1, 8).astype(np.float32))
    y = b.relu(b.conv2d(x, w, bias, pads=(1, 1, 1, 1)))
    z = b.relu(b.binary("add", b.conv2d(y, w1, bias), x))
    graph = b.build([b.relu(b.binary("add", b.conv2d(z, w, bias, pads=(1, 1, 1, 1)), z))])
    steps = [s for s in find_steps(graph) if s.fused]
    assert [s.op for s in steps] == ["fused.conv2d"] * 3 + ["fused.elementwise"]
    assert steps[0].attr("act") == "relu" and steps[0].attr("has_bias")
    assert not steps[0].attr("residual")
    # the 1x1 conv takes the shortcut add and the ReLU
    assert steps[1].attr("act") == "relu" and steps[1].attr("has_bias")
    assert steps[1].attr("residual") and steps[1].inputs[-1] == graph.inputs[0]
    assert [p.attr("kind") for p in steps[1].parts[-2:]] == ["add", "relu"]
    # a 3x3 conv keeps its Winograd kernels: its add and ReLU stay a chain
    assert steps[2].attr("act") == "none" and not steps[2].attr("residual")
    assert [p.attr("kind") for p in steps[3].parts] == ["add", "relu"]
    # an add after an activation is not a conv's shortcut: it stays a chain of its own
    b = GraphBuilder()
    x = b.input("x", (1, 8, 6, 6))
    w1, bias = b.const(np.ones((8, 8, 1, 1), np.float32)), b.const(np.ones(8, np.float32))
    graph = b.build([b.relu(b.binary("add", b.relu(b.conv2d(x, w1, bias)), x))])
    assert [s.op for s in find_steps(graph) if s.fused] == ["fused.conv2d", "fused.elementwise"]


def test_chain_stops_at_shared_values_outputs_and_shape_changes() -> None:
    b = GraphBuilder()
    x = b.input("x", (4, 5))
    row = b.input("r", (5,))
    shared = b.binary("mul", x, x)
    left = b.relu(b.binary("add", shared, row))  # shared has two readers: not in a chain
    right = b.unary("neg", b.unary("abs", shared))
    small = b.unary("exp", b.unary("neg", row))  # [5] then broadcast: a new chain
    out = b.binary("add", b.binary("sub", left, right), small)
    graph = b.build([left, out])
    chains = [[p.attr("kind") for p in s.parts] for s in find_steps(graph) if s.fused]
    # abs, neg run on into sub and add: their other operands are simply inputs of the chain
    assert chains == [["add", "relu"], ["neg", "exp"], ["abs", "neg", "sub", "add"]]


@pytest.mark.parametrize("name", ["numpy", "opencl"])
def test_other_backends_run_the_chain_as_parts(name) -> None:
    backend = backend_or_skip(name)
    graph = _batchnorm_relu((2, 16, 5, 5), (16, 1, 1))
    step = _only_chain(graph)
    assert "parts" in backend.algorithms(step, graph)
    x = np.random.default_rng(4).normal(0, 2, (2, 16, 5, 5)).astype(np.float32)
    (want,) = run_reference(graph, {"x": x})
    (got,) = compile_graph(graph, pin=name, use_cache=False)(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_cython_search_runs_the_chain_fused() -> None:
    backend_or_skip("cython")
    graph = _batchnorm_relu((1, 256, 14, 14), (256, 1, 1))
    x = np.random.default_rng(5).normal(0, 2, (1, 256, 14, 14)).astype(np.float32)
    (want,) = run_reference(graph, {"x": x})
    (got,) = compile_graph(graph, pin="cython", use_cache=False)(x)
    np.testing.assert_array_equal(got, want)


def test_chain_kernel_runs_32_ops_over_16_operands() -> None:
    """Its limits (a quantized model's QuantizeLinear/DequantizeLinear pairs around a
    BatchNormalization and a residual Add make chains of 25 ops): the longest chain against
    the same ops in numpy."""
    backend_or_skip("cython")
    from walle._kernels import ops_math

    rng = np.random.default_rng(12)
    x = rng.normal(size=(3, 40)).astype(np.float32)
    operands = [x] + [rng.uniform(0.5, 1.5, 40).astype(np.float32) for _ in range(15)]
    kinds = ["add", "mul", "sub", "fmax"]
    ops = [("binary", kinds[i % 4], 1 + i % 15, 0) for i in range(31)] + [("unary", "tanh", 0, 0)]
    want = x
    for _, kind, k, _ in ops[:-1]:
        want = {"add": np.add, "mul": np.multiply, "sub": np.subtract, "fmax": np.fmax}[kind](
            want, operands[k]
        )
    want = np.tanh(want)
    y = np.empty_like(x)
    strides = [[40, 1]] + [[0, 1]] * 15
    ops_math.ChainKernel(ops, operands, y, [3, 40], strides).run()
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)


def test_equal_one_element_constants_are_one_operand_of_the_chain() -> None:
    """Six quantizer-like clamps, each with its own 0 and 255 constants and a scale of its
    own: 19 operands with x, past the kernel's 16, but only 8 distinct values. The chain
    still runs as one pass, with the reference's bits."""
    backend = backend_or_skip("cython")
    from walle.ops.backends import cython_backend

    b = GraphBuilder()
    y = b.input("x", (2, 8, 5))
    for i in range(6):
        y = b.binary("div", y, b.const(np.float32(0.5 + 0.25 * i)))
        y = b.binary("fmax", b.unary("round", y), b.const(np.float32(0.0)))
        y = b.binary("min", y, b.const(np.float32(255.0)))
    graph = b.build([y])
    (step,) = [s for s in find_steps(graph) if s.op == "fused.elementwise"]
    assert len({i for p in step.parts for i in p.inputs if i in graph.constants}) == 18
    assert "fused" in backend.algorithms(step, graph)
    names = cython_backend._chain_program(step, graph)[0]
    assert len(names) == 1 + 6 + 2
    x = np.random.default_rng(3).uniform(-10, 400, (2, 8, 5)).astype(np.float32)
    (want,) = run_reference(graph, {"x": x})
    (got,) = compile_graph(graph, pin="cython", use_cache=False)(x)
    np.testing.assert_array_equal(got, want)


def test_chain_kernel_refuses_what_it_cannot_run() -> None:
    backend_or_skip("cython")
    from walle._kernels import ops_math

    x, y = np.ones(6, np.float32), np.empty(6, np.float32)
    relu = [("unary", "relu", 0, 0)]
    with pytest.raises(ValueError):
        ops_math.ChainKernel(relu * 33, [x], y, [6], [[1]])
    with pytest.raises(ValueError):
        ops_math.ChainKernel(relu, [x] * 17, y, [6], [[1]] * 17)
    with pytest.raises(ValueError):
        ops_math.ChainKernel(relu, [x], y, [6], [[2]])
    with pytest.raises(ValueError):
        ops_math.ChainKernel(relu, [x[:3].copy()], y, [6], [[1]])
    with pytest.raises(ValueError):
        ops_math.ChainKernel([("binary", "add", 1, 0)], [x], y, [6], [[1]])
    with pytest.raises(KeyError):
        ops_math.ChainKernel([("unary", "erfc", 0, 0)], [x], y, [6], [[1]])


def test_a_shortcut_add_of_two_convs_joins_one_and_both_stay_convs() -> None:
    """ResNet's downsampling block adds two conv outputs: one conv takes the add (and the
    ReLU), the other stays a fused conv of its own (not an im2col raster + matmul)."""
    rng = np.random.default_rng(5)
    b = GraphBuilder()
    x = b.input("x", (1, 8, 6, 6))
    main = b.conv2d(x, b.const(rng.normal(0, 1, (16, 8, 1, 1)).astype(np.float32)))
    short = b.conv2d(x, b.const(rng.normal(0, 1, (16, 8, 1, 1)).astype(np.float32)))
    graph = b.build([b.relu(b.binary("add", main, short))])
    steps = [s for s in find_steps(graph) if s.fused]
    assert [s.op for s in steps] == ["fused.conv2d", "fused.conv2d"]
    assert [bool(s.attr("residual")) for s in steps].count(True) == 1
    xv = rng.normal(0, 1, (1, 8, 6, 6)).astype(np.float32)
    want = run_reference(graph, {"x": xv})[0]
    for name in ("numpy", "cython"):
        backend_or_skip(name)
        got = compile_graph(graph, pin=name, use_cache=False, trials=False)(xv)[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=name)


def _quantizer_chain(rows: int, zero: bool, dequantize: bool, tail: bool) -> Graph:
    """x [rows, 37] through QuantizeLinear's ops (per-row scales and zero points, as a
    per-channel quantizer's, or one value), DequantizeLinear's, then more ops."""
    rng = np.random.default_rng(rows)
    b = GraphBuilder()
    x = b.input("x", (rows, 37))
    scales = rng.uniform(0.01, 0.2, (rows, 1)).astype(np.float32)
    scales[1] = 0.125  # row 1: x / scale exact, so that halves stay halves
    scale = b.const(scales)
    point = b.const(rng.integers(0, 256, (rows, 1)).astype(np.float32))
    y = b.unary("round", b.binary("div", x, scale))
    if zero:
        y = b.binary("add", y, point)
    y = b.binary("min", b.binary("fmax", y, b.const(np.float32(0.0))), b.const(np.float32(255)))
    if dequantize:
        y = b.binary("mul", b.binary("sub", y, point) if zero else y, scale)
    if tail:
        y = b.unary("relu", b.binary("add", y, b.const(np.float32(0.5))))
        y = b.unary("round", b.binary("div", y, b.const(np.float32(0.25))))
        y = b.binary("min", b.binary("fmax", y, b.const(np.float32(-8))), b.const(np.float32(7)))
    return b.build([y])


@pytest.mark.parametrize("zero", [False, True])
@pytest.mark.parametrize("dequantize", [False, True])
@pytest.mark.parametrize("tail", [False, True])
def test_quantizers_runs_are_one_op_with_the_chains_bits(zero, dequantize, tail) -> None:
    """A quantizer's ops (then a dequantizer's) run as one op of the chain (ChainKernel's
    quant_runs): the reference's bits, -0 and NaN included, at every level; halves, values
    past the range, infinities and NaN in x."""
    backend_or_skip("cython")
    from walle._kernels import ops_math
    from walle.ops.backends import cython_backend

    graph = _quantizer_chain(6, zero, dequantize, tail)
    (step,) = [s for s in find_steps(graph) if s.op == "fused.elementwise"]
    names, ops, sizes, strides = cython_backend._chain_program(step, graph)
    x = np.random.default_rng(2).normal(0, 20, (6, 37)).astype(np.float32)
    x[0, :5] = [np.nan, np.inf, -np.inf, -0.0, 1e30]
    x[1] = (np.arange(37, dtype=np.float32) - 18.5) * 0.125  # halves (to even), -0.5 to -0
    operands = [x if n == "x" else graph.constants[n] for n in names]
    probe = ops_math.ChainKernel(ops, operands, np.empty_like(x), sizes, strides)
    assert probe.quant_runs == 1 + tail
    (want,) = run_reference(graph, {"x": x})

    def check(level: str) -> None:
        (got,) = compile_graph(graph, pin="cython", use_cache=False, trials=False)(x)
        np.testing.assert_array_equal(got, want, err_msg=level)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want), err_msg=level)

    at_every_cython_level(check)

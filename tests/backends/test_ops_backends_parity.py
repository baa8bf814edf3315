"""Every ops backend against the numpy reference, on random shapes (hypothesis).

Tolerance: |backend - reference| <= 1e-4 + 1e-4 * |reference| (float32).
``WALLE_REQUIRE_BACKENDS=cython,opencl`` makes a missing backend fail here instead of
being skipped.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from walle.errors import BackendError
from walle.ops import GraphBuilder, backend_names, compile_graph, get_backend, run_reference

RTOL = ATOL = 1e-4
SETTINGS = settings(max_examples=12, deadline=None)


def _usable(name: str) -> bool:
    try:
        get_backend(name)
    except BackendError:
        required = os.environ.get("WALLE_REQUIRE_BACKENDS", "")
        if name in [n.strip() for n in required.split(",")]:
            raise
        return False
    return True


BACKENDS = [
    pytest.param(n, marks=pytest.mark.skipif(not _usable(n), reason=f"{n} missing"))
    for n in backend_names()
]


def _check(build, feeds: dict[str, np.ndarray], backend: str) -> None:
    b = GraphBuilder()
    names = {k: b.input(k, v.shape) for k, v in feeds.items()}
    graph = b.build([build(b, names)])
    got = compile_graph(graph, pin=backend, use_cache=False)(*feeds.values())[0]
    want = run_reference(graph, feeds)[0]
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def _arr(shape, seed, low=-2.0, high=2.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


dims = st.lists(st.integers(1, 7), min_size=1, max_size=4)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(
    shape=dims,
    kind=st.sampled_from(
        [
            "neg",
            "abs",
            "exp",
            "relu",
            "sigmoid",
            "tanh",
            "sqrt",
            "erf",
            "gelu",
            "identity",
            "log",
            "reciprocal",
        ]
    ),
    seed=st.integers(0, 99),
)
def test_ops_unary(backend, shape, kind, seed) -> None:
    low = 0.1 if kind in ("sqrt", "log", "reciprocal") else -3.0
    _check(lambda b, n: b.unary(kind, n["x"]), {"x": _arr(shape, seed, low, 3.0)}, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(
    shape=dims,
    data=st.data(),
    kind=st.sampled_from(["add", "sub", "mul", "div", "max", "min", "pow"]),
)
def test_ops_binary_broadcast(backend, shape, data, kind) -> None:
    other = [data.draw(st.sampled_from([d, 1])) for d in shape]
    other = other[data.draw(st.integers(0, len(other) - 1)) :]
    low = 0.5 if kind in ("div", "pow") else -2.0
    feeds = {"a": _arr(shape, 1, low), "b": _arr(other, 2, low)}
    if data.draw(st.booleans()):
        feeds = {"a": feeds["b"], "b": feeds["a"]}
    _check(lambda b, n: b.binary(kind, n["a"], n["b"]), feeds, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(shape=dims, data=st.data(), kind=st.sampled_from(["sum", "mean", "max", "min"]))
def test_ops_reduce(backend, shape, data, kind) -> None:
    start = data.draw(st.integers(0, len(shape) - 1))
    stop = data.draw(st.integers(start, len(shape) - 1))
    keep = data.draw(st.booleans())
    axes = list(range(start, stop + 1))
    _check(lambda b, n: b.reduce(kind, n["x"], axes, keep), {"x": _arr(shape, 3)}, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(
    m=st.integers(1, 9),
    k=st.integers(1, 40),
    n=st.integers(1, 70),
    batch=st.integers(0, 3),
    act=st.sampled_from(["none", "relu", "sigmoid", "tanh"]),
)
def test_ops_matmul_and_fused_linear(backend, m, k, n, batch, act) -> None:
    w = _arr((k, n), 5)
    bias = _arr((n,), 6)
    shape = (m, k) if batch == 0 else (batch, m, k)

    def build(b, names):
        y = b.matmul(names["x"], b.const(w) if batch == 0 else names["w"])
        y = b.binary("add", y, b.const(bias))
        return y if act == "none" else b.unary(act, y)

    feeds = {"x": _arr(shape, 4)}
    if batch:
        feeds["w"] = w
    _check(build, feeds, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(shape=st.lists(st.integers(1, 6), min_size=2, max_size=4), data=st.data())
def test_ops_raster_layouts(backend, shape, data) -> None:
    perm = data.draw(st.permutations(range(len(shape))))
    axis = data.draw(st.integers(0, len(shape) - 1))
    pads = [(data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))) for _ in shape]
    start = data.draw(st.integers(0, shape[axis] - 1))

    def build(b, names):
        x = names["x"]
        t = b.transpose(x, perm)
        p = b.pad(x, pads, value=-1.5)
        s = b.slice(x, [start], [shape[axis]], [axis], [data.draw(st.integers(1, 2))])
        c = b.concat([x, x], axis)
        parts = [b.reshape(v, (-1,)) for v in (t, p, s, c)]
        return b.concat(parts, 0)

    _check(build, {"x": _arr(shape, 7)}, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(rows=st.integers(1, 8), cols=st.integers(1, 300), seed=st.integers(0, 50))
def test_ops_fused_softmax_and_layernorm(backend, rows, cols, seed) -> None:
    g, beta = _arr((cols,), seed + 1), _arr((cols,), seed + 2)

    def build(b, names):
        s = b.softmax(names["x"])
        n = b.layer_norm(names["x"], b.const(g), b.const(beta), epsilon=1e-5)
        return b.concat([s, n], 0)

    _check(build, {"x": _arr((rows, cols), seed, -20, 20)}, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=6, deadline=None)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 3),
    hw=st.integers(4, 9),
    k=st.integers(1, 3),
    s=st.integers(1, 2),
    p=st.integers(0, 1),
)
def test_ops_conv_and_pooling(backend, n, c, hw, k, s, p) -> None:
    w, bias = _arr((3, c, k, k), 8), _arr((3,), 9)

    def build(b, names):
        y = b.conv2d(names["x"], b.const(w), b.const(bias), strides=(s, s), pads=(p,) * 4)
        y = b.relu(y)
        m = b.max_pool(y, (2, 2), strides=(1, 1)) if min(b.shape(y)[2:]) >= 2 else y
        a = (
            b.avg_pool(y, (k, k), strides=(s, s), pads=(0, 0, p, p))
            if (p < k and min(b.shape(y)[2:]) + p >= k)
            else y
        )
        return b.concat([b.flatten(b.global_avg_pool(v)) for v in (y, m, a)], 1)

    _check(build, {"x": _arr((n, c, hw, hw), 10)}, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=8, deadline=None)
@given(
    c=st.integers(1, 9),
    cout=st.integers(1, 19),
    h=st.integers(3, 12),
    w=st.integers(3, 75),
    k=st.sampled_from([(1, 1), (3, 3), (2, 3)]),
    s=st.integers(1, 2),
    d=st.integers(1, 2),
    act=st.sampled_from(["none", "relu", "sigmoid"]),
    bias=st.booleans(),
    seed=st.integers(0, 50),
)
def test_ops_conv_wide_rows_and_channel_blocks(
    backend, c, cout, h, w, k, s, d, act, bias, seed
) -> None:
    """conv2d + bias + act beyond the direct kernel's 8-channel x 16/32-column register tiles
    (ragged channel blocks and column edges, strides, dilations): the ``fused.conv2d`` step."""
    weight = _arr((cout, c, *k), seed + 1)

    def build(b, names):
        y = b.conv2d(
            names["x"],
            b.const(weight),
            b.const(_arr((cout,), seed + 2)) if bias else None,
            strides=(s, s),
            pads=(1, 0, 1, 2),
            dilations=(d, d),
        )
        return y if act == "none" else b.unary(act, y)

    _check_each_algorithm(build, {"x": _arr((2, c, h + 2 * d, w + 2 * d), seed)}, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ops_conv_large_enough_for_threads(backend) -> None:
    """A CNN-sized conv + relu (work split over threads where the backend does that)."""
    weight, bias = _arr((16, 8, 3, 3), 20), _arr((16,), 21)

    def build(b, names):
        return b.relu(b.conv2d(names["x"], b.const(weight), b.const(bias), pads=(1, 1, 1, 1)))

    _check_each_algorithm(build, {"x": _arr((2, 8, 32, 32), 22)}, backend)


def _check_each_algorithm(build, feeds: dict[str, np.ndarray], backend: str) -> None:
    """Like _check, once per algorithm the backend offers for the graph's fused steps."""
    from walle.ops.fusion import find_steps
    from walle.ops.plan import Choice, CompiledPlan, is_alias

    b = GraphBuilder()
    names = {k: b.input(k, v.shape) for k, v in feeds.items()}
    graph = b.build([build(b, names)])
    want = run_reference(graph, feeds)[0]
    be, ref = get_backend(backend), get_backend("numpy")
    steps = [s for s in find_steps(graph) if not is_alias(s, graph)]
    offered = {s.name: be.algorithms(s, graph) for s in steps}
    for round_ in range(max(len(a) for a in offered.values())):
        choices = {
            s.name: Choice(backend, a[round_ % len(a)], 0.0)
            if (a := offered[s.name])
            else Choice("numpy", "default", 0.0)
            for s in steps
        }
        plan = CompiledPlan(graph, find_steps(graph), choices, {backend: be, "numpy": ref})
        got = plan(*feeds.values())[0]
        # relative to the output's scale, as kernels are held (Winograd F(6x6) rounds to a
        # few 1e-6 of it: 1e-4 of a value near 0 among values near 30)
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL * scale, err_msg=str(choices))


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=8, deadline=None)
@given(shape=st.lists(st.integers(1, 70), min_size=2, max_size=4), data=st.data())
def test_ops_transpose_beyond_one_tile(backend, shape, data) -> None:
    """Transposes larger than the 32x32 tiles and the 4x4 register blocks, ragged edges."""
    perm = data.draw(st.permutations(range(len(shape))))
    if np.prod(shape) > 200_000:
        shape = [min(d, 20) for d in shape]
    _check(lambda b, n: b.transpose(n["x"], perm), {"x": _arr(shape, 11)}, backend)


def _every_algorithm_graph():
    rng = np.random.default_rng(3)
    b = GraphBuilder()
    x = b.input("x", (2, 3, 9, 9))
    y = b.relu(
        b.conv2d(
            x,
            b.const(rng.normal(size=(4, 3, 3, 3))),
            b.const(rng.normal(size=4)),
            pads=(1, 1, 1, 1),
        )
    )
    m = b.max_pool(y, (2, 2), strides=(2, 2))
    a = b.avg_pool(y, (3, 3), strides=(2, 2))
    g = b.global_avg_pool(y)
    h = b.concat([b.flatten(v) for v in (m, a, g)], 1)
    h = b.layer_norm(h, b.const(rng.normal(size=b.shape(h)[1])), None)
    out = b.linear(h, b.const(rng.normal(size=(b.shape(h)[1], 7))), b.const(rng.normal(size=7)))
    return b.build([b.softmax(b.sigmoid(out))])


@pytest.mark.parametrize("backend", BACKENDS)
def test_ops_every_algorithm_of_a_backend_matches_reference(backend) -> None:
    """Force each algorithm (fused kernels, 'parts', matmul variants), not only the fastest."""
    from walle.ops import get_backend
    from walle.ops.fusion import find_steps
    from walle.ops.plan import Choice, CompiledPlan, is_alias

    graph = _every_algorithm_graph()
    steps = [s for s in find_steps(graph) if not is_alias(s, graph)]
    x = _arr((2, 3, 9, 9), 12)
    want = run_reference(graph, {"x": x})[0]
    be = get_backend(backend)
    offered = {s.name: be.algorithms(s, graph) for s in steps}
    assert any(s.fused for s in steps)
    for round_ in range(max(len(a) for a in offered.values())):
        choices = {}
        for s in steps:
            algos = offered[s.name]
            name = backend if algos else "numpy"
            algo = algos[round_ % len(algos)] if algos else "default"
            choices[s.name] = Choice(name, algo, 0.0)
        backends = {backend: be, "numpy": get_backend("numpy")}
        got = CompiledPlan(graph, find_steps(graph), choices, backends)(x)[0]
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)

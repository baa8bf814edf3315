"""The GPU-shaped OpenCL kernels (opencl_gemm.py, opencl_pool.py) against the reference.

``blocked`` / ``blocked8`` (register-blocked tiled GEMM, 4x4 / 8x8 outputs per work-item),
``implicit`` (convolution as implicit GEMM) and the one-launch pooling kernel
(``fused.window_reduce``) are forced step by step, whatever the search would pick, on random
shapes with ragged edges (M, N, K not multiples of the tile, K not a multiple of the 4-wide
vector loads). Sizes stay small: PoCL runs them on a shared CPU core.

Tolerance: |got - reference| <= 1e-4 + 1e-4 * |reference| (float32 sums in another order).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import backend_or_skip
from walle.ops import FusedStep, GraphBuilder, explain, find_steps, run_reference
from walle.ops.backends.opencl_gemm import CONFIGS, WIDE, GemmConfig, choose_config, fits
from walle.ops.fusion import atomic_step
from walle.ops.ir import Graph
from walle.ops.plan import Choice, CompiledPlan, is_alias

RTOL = ATOL = 1e-4
SETTINGS = settings(max_examples=15, deadline=None)
ACTS = ("none", "relu", "sigmoid", "tanh")


def _forced(graph: Graph, algorithm: str, backend=None, steps: list[FusedStep] | None = None):
    """Every step on OpenCL, with ``algorithm`` wherever it is offered (else the first)."""
    be = backend or backend_or_skip("opencl")
    steps = steps if steps is not None else find_steps(graph)
    choices = {}
    for step in steps:
        if is_alias(step, graph):
            continue
        offered = be.algorithms(step, graph)
        choices[step.name] = Choice("opencl", algorithm if algorithm in offered else offered[0], 0)
    return CompiledPlan(graph, steps, choices, {"opencl": be})


def _check(plan: CompiledPlan, graph: Graph, feeds: dict[str, np.ndarray]) -> None:
    got = plan(*feeds.values())
    for g, w in zip(got, run_reference(graph, feeds), strict=True):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


def _act(b: GraphBuilder, y: str, act: str) -> str:
    return y if act == "none" else getattr(b, act)(y)


def _rand(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.normal(size=shape).astype(np.float32)


def _linear(m: int, k: int, n: int, bias: bool, act: str, seed: int) -> tuple[Graph, dict]:
    rng = np.random.default_rng(seed)
    b = GraphBuilder()
    x = b.input("x", (m, k))
    y = b.linear(x, b.const(_rand(rng, (k, n))), b.const(_rand(rng, (n,))) if bias else None)
    return b.build([_act(b, y, act)]), {"x": _rand(rng, (m, k))}


def _conv(
    shape: tuple[int, int, int, int],
    cout: int,
    kernel: tuple[int, int],
    *,
    stride: int = 1,
    pad: int = 0,
    dilation: int = 1,
    group: int = 1,
    bias: bool = True,
    act: str = "relu",
    seed: int = 0,
) -> tuple[Graph, dict]:
    rng = np.random.default_rng(seed)
    b = GraphBuilder()
    x = b.input("x", shape)
    w = b.const(_rand(rng, (cout, shape[1] // group, *kernel)))
    y = b.conv2d(
        x,
        w,
        b.const(_rand(rng, (cout,))) if bias else None,
        strides=(stride, stride),
        pads=(pad, pad, pad, pad),
        dilations=(dilation, dilation),
        group=group,
    )
    return b.build([_act(b, y, act)]), {"x": _rand(rng, shape)}


# -- register-blocked GEMM ------------------------------------------------------------------
BLOCKED = ("blocked", "blocked8")


@pytest.mark.parametrize("algorithm", BLOCKED)
@pytest.mark.parametrize(
    ("m", "k", "n"),
    [(1, 1, 1), (63, 64, 65), (64, 64, 64), (65, 3, 129), (2, 130, 5), (130, 17, 3)],
)
def test_ops_blocked_gemm_tile_edges(algorithm: str, m: int, k: int, n: int) -> None:
    graph, feeds = _linear(m, k, n, bias=True, act="relu", seed=m + k + n)
    _check(_forced(graph, algorithm), graph, feeds)


@SETTINGS
@given(
    m=st.integers(1, 80),
    k=st.integers(1, 70),
    n=st.integers(1, 80),
    bias=st.booleans(),
    act=st.sampled_from(ACTS),
    algorithm=st.sampled_from(BLOCKED),
    seed=st.integers(0, 2**16),
)
def test_ops_blocked_gemm_random_shapes(
    m: int, k: int, n: int, bias: bool, act: str, algorithm: str, seed: int
) -> None:
    graph, feeds = _linear(m, k, n, bias, act, seed)
    _check(_forced(graph, algorithm), graph, feeds)


@SETTINGS
@given(
    batch=st.integers(1, 3),
    m=st.integers(1, 40),
    k=st.integers(1, 40),
    n=st.integers(1, 40),
    shared=st.sampled_from(["none", "a", "b"]),
    algorithm=st.sampled_from(BLOCKED),
    seed=st.integers(0, 2**16),
)
def test_ops_blocked_gemm_batched(
    batch: int, m: int, k: int, n: int, shared: str, algorithm: str, seed: int
) -> None:
    """Batched products, with one operand shared by every batch (a_step or b_step 0)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder()
    x = b.input("x", (m, k) if shared == "a" else (batch, m, k))
    y = b.input("y", (k, n) if shared == "b" else (batch, k, n))
    graph = b.build([b.matmul(x, y)])
    feeds = {"x": _rand(rng, graph.shape("x")), "y": _rand(rng, graph.shape("y"))}
    _check(_forced(graph, algorithm), graph, feeds)


# -- implicit-GEMM convolution --------------------------------------------------------------
CONVS = {
    "1x1": dict(shape=(1, 8, 7, 6), cout=16, kernel=(1, 1)),
    "3x3 pad": dict(shape=(2, 3, 9, 9), cout=5, kernel=(3, 3), pad=1),
    "3x3 stride 2": dict(shape=(2, 4, 11, 10), cout=6, kernel=(3, 3), stride=2, act="none"),
    "dilation 2": dict(shape=(1, 3, 12, 11), cout=7, kernel=(3, 3), dilation=2, pad=2),
    "5x3 no bias": dict(shape=(1, 2, 9, 8), cout=3, kernel=(5, 3), bias=False, act="sigmoid"),
    "wide": dict(shape=(1, 17, 5, 70), cout=70, kernel=(3, 3), pad=1, act="tanh"),
}


@pytest.mark.parametrize("case", list(CONVS))
def test_ops_implicit_conv_cases(case: str) -> None:
    graph, feeds = _conv(**CONVS[case])
    plan = _forced(graph, "implicit")
    assert "implicit" in {row["algorithm"] for row in explain(plan)}
    _check(plan, graph, feeds)


@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 6),
    hw=st.tuples(st.integers(3, 12), st.integers(3, 12)),
    cout=st.integers(1, 9),
    k=st.sampled_from([1, 2, 3]),
    stride=st.integers(1, 2),
    pad=st.integers(0, 1),
    dilation=st.integers(1, 2),
    act=st.sampled_from(ACTS),
    seed=st.integers(0, 2**16),
)
def test_ops_implicit_conv_random_shapes(
    n: int, c: int, hw: tuple[int, int], cout: int, k: int, stride: int, pad: int,
    dilation: int, act: str, seed: int,
) -> None:  # fmt: skip
    if (k - 1) * dilation + 1 > min(hw) + 2 * pad:
        return
    graph, feeds = _conv(
        (n, c, *hw), cout, (k, k), stride=stride, pad=pad, dilation=dilation, act=act, seed=seed
    )
    _check(_forced(graph, "implicit"), graph, feeds)


def _fuse_grouped_conv(graph: Graph) -> list[FusedStep]:
    """The steps of a one-conv graph with its grouped chain (im2col ... activation) as one
    ``fused.conv2d`` step, as the OpenCL implicit kernel takes it: fusion groups it as a
    ``fused.group_conv2d`` (the cython backend's), whose prologue rasters (a depthwise
    conv's pad) stay steps of their own here."""
    steps = find_steps(graph)
    grouped = next(s for s in steps if s.op == "fused.group_conv2d")
    at = steps.index(grouped)
    prologue = grouped.parts[: grouped.attr("prologue", 0)]
    parts = grouped.parts[len(prologue) :]
    im2col, mm = parts[0], next(p for p in parts if p.op == "matmul")
    add = next(p for p in parts if p.op == "binary")
    bias = next(i for i in add.inputs if i in graph.constants)
    act = parts[-1].attr("kind") if parts[-1].op == "unary" else "none"
    fused = FusedStep(
        "fused.conv2d",
        im2col.name,
        (im2col.inputs[0], mm.inputs[0], bias),
        parts[-1].output,
        (("act", act), ("has_bias", True)),
        parts,
    )
    return [*steps[:at], *(atomic_step(p) for p in prologue), fused, *steps[at + 1 :]]


@pytest.mark.parametrize(
    ("shape", "cout", "group"),
    [((1, 4, 8, 8), 8, 2), ((2, 4, 8, 7), 4, 4), ((2, 6, 9, 9), 12, 3), ((2, 5, 6, 6), 5, 5)],
    ids=["group 2", "depthwise", "group 3 x2", "depthwise 5"],
)
def test_ops_implicit_conv_groups_and_depthwise(
    shape: tuple[int, int, int, int], cout: int, group: int
) -> None:
    graph, feeds = _conv(shape, cout, (3, 3), pad=1, group=group, seed=group)
    steps = _fuse_grouped_conv(graph)
    plan = _forced(graph, "implicit", steps=steps)
    assert plan.choices[steps[-1].name].algorithm == "implicit"
    _check(plan, graph, feeds)


def test_ops_implicit_conv_is_one_launch_with_its_bias_and_activation() -> None:
    """conv + bias + relu: one launch instead of four (im2col, matmul, add, relu)."""
    graph, feeds = _conv((1, 3, 8, 8), 4, (3, 3))
    launches = {}
    for algorithm in ("implicit", "parts"):
        plan = _forced(graph, algorithm)
        _check(plan, graph, feeds)
        (sequence,) = plan._calls
        launches[algorithm] = len(sequence._steps)
    assert launches == {"implicit": 1, "parts": 4}


# -- reachable by pinning, and offered to the search ----------------------------------------
@pytest.mark.parametrize("algorithm", ["tiled", "rows4", *BLOCKED])
def test_ops_each_matmul_algorithm_can_be_forced_and_is_explained(algorithm: str) -> None:
    be = backend_or_skip("opencl")
    graph, feeds = _linear(9, 10, 11, bias=True, act="relu", seed=3)
    (step,) = find_steps(graph)
    assert algorithm in be.algorithms(step, graph)
    plan = _forced(graph, algorithm)
    assert [row["algorithm"] for row in explain(plan)] == [algorithm]
    _check(plan, graph, feeds)


def test_ops_conv_algorithms_offered_to_the_search() -> None:
    be = backend_or_skip("opencl")
    graph, _ = _conv((1, 3, 8, 8), 4, (3, 3))
    conv = next(s for s in find_steps(graph) if s.op == "fused.conv2d")
    assert be.algorithms(conv, graph) == ["implicit", "parts"]


# -- tile sizes from the device's limits ----------------------------------------------------
def test_ops_gemm_config_fits_the_device_limits() -> None:
    assert choose_config(1024, 48 * 1024, (1024, 1024, 64)) == CONFIGS[0]
    assert choose_config(128, 48 * 1024, (1024, 1024, 64)) == GemmConfig(32, 32, 16, 4, 4)
    assert choose_config(1024, 4096, (1024, 1024, 64)) == GemmConfig(32, 32, 16, 4, 4)
    assert choose_config(1024, 1024, (1024, 1024, 64)) == GemmConfig(16, 16, 8, 2, 2)
    assert choose_config(16, 1024, (4, 4, 1)) == GemmConfig(8, 8, 4, 2, 2)
    assert fits(WIDE, 256, 8192, (256, 256, 64))
    assert not fits(WIDE, 128, 48 * 1024, (1024, 1024, 64))
    assert not fits(WIDE, 1024, 4096, (1024, 1024, 64))
    for config in CONFIGS:
        assert config.bm % config.tm == 0 and config.bn % config.tn == 0
        assert config.bk % 4 == 0 and config.bn % 4 == 0  # the 4-wide tile loads


@pytest.mark.parametrize("config", CONFIGS[1:], ids=lambda c: f"{c.bm}x{c.bn}x{c.bk}")
def test_ops_smaller_tilings_build_and_match(config: GemmConfig) -> None:
    """The tilings a device with less local memory or smaller work-groups gets."""
    backend_or_skip("opencl")
    from walle.ops.backends.opencl_backend import OpenCLBackend

    be = OpenCLBackend(gemm=(config, None))  # a device too small for the 8x8 tiling
    graph, feeds = _linear(37, 21, 45, bias=True, act="tanh", seed=5)
    (step,) = find_steps(graph)
    assert "blocked8" not in be.algorithms(step, graph)
    _check(_forced(graph, "blocked", backend=be), graph, feeds)
    graph, feeds = _conv((2, 3, 9, 7), 11, (3, 3), stride=2, pad=1)
    _check(_forced(graph, "implicit", backend=be), graph, feeds)


# -- pooling in one launch ------------------------------------------------------------------
@settings(max_examples=15, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 5), st.integers(2, 11), st.integers(2, 11)),
    k=st.integers(1, 3),
    stride=st.integers(1, 3),
    pad=st.integers(0, 1),
    dilation=st.integers(1, 2),
    kind=st.sampled_from(["max", "avg"]),
    ceil=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_ops_pooling_is_one_launch_and_matches(
    shape: tuple[int, int, int, int], k: int, stride: int, pad: int, dilation: int, kind: str,
    ceil: bool, seed: int,
) -> None:  # fmt: skip
    if (k - 1) * dilation + 1 > min(shape[2:]) + 2 * pad or pad * 2 > k:
        return
    rng = np.random.default_rng(seed)
    b = GraphBuilder()
    x = b.input("x", shape)
    pool = b.max_pool if kind == "max" else b.avg_pool
    y = pool(x, (k, k), strides=(stride, stride), pads=(pad,) * 4, ceil_mode=ceil,
             dilations=(dilation, dilation))  # fmt: skip
    graph = b.build([y])
    feeds = {"x": _rand(rng, shape)}
    feeds["x"].flat[rng.integers(0, feeds["x"].size)] = np.nan  # max keeps NaN, as numpy
    plan = _forced(graph, "fused")
    window = next(s for s in plan.steps if s.op == "fused.window_reduce")
    assert plan.choices[window.name].algorithm == "fused"
    got = plan(feeds["x"])[0]
    want = run_reference(graph, feeds)[0]
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    (sequence,) = plan._calls
    (parts,) = _forced(graph, "parts")._calls
    assert len(sequence._steps) <= len(parts._steps)


def test_ops_pooling_window_is_not_built() -> None:
    """3x3/2 max pool: one launch reading the input in place, not a window raster + reduce."""
    b = GraphBuilder()
    y = b.max_pool(b.input("x", (2, 3, 9, 8)), (3, 3), strides=(2, 2))
    graph = b.build([y])
    feeds = {"x": _rand(np.random.default_rng(0), (2, 3, 9, 8))}
    launches = {}
    for algorithm in ("fused", "parts"):
        plan = _forced(graph, algorithm)
        _check(plan, graph, feeds)
        (sequence,) = plan._calls
        launches[algorithm] = len(sequence._steps)
    assert launches == {"fused": 1, "parts": 2}

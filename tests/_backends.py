"""One way for a test to get a compiled or OpenCL backend: skip where it is not built here,
fail where ``make test`` requires it (``WALLE_REQUIRE_BACKENDS``), never skip silently there;
one way to compile a plan whose steps a test places itself, and one way to run a graph on
the cython backend at every instruction-set level the CPU has."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from walle.errors import BackendError, ValidationError
from walle.ops import GraphBuilder, compile_graph, get_backend, run_reference
from walle.ops.backends.base import Backend
from walle.ops.backends.registry import required_backends
from walle.ops.fusion import FusedStep, find_steps
from walle.ops.ir import Graph, Node, Region
from walle.ops.plan import Choice, CompiledPlan, allocate, is_alias

# Which backend a step runs on, by step.
Placement = Callable[[FusedStep], str]


def backend_or_skip(name: str) -> Backend:
    """The backend ``name``; a skip naming why when it is missing and not required."""
    try:
        return get_backend(name)
    except BackendError as exc:
        if name in required_backends():  # make test requires it: fail, never skip
            raise
        pytest.skip(f"{name} backend not available here: {exc}")


def compile_placed(
    graph: Graph,
    place: Placement,
    *,
    in_place: bool = True,
    share: bool = True,
    algorithms: dict[str, str] | None = None,
) -> CompiledPlan:
    """A plan running each step on ``place(step)`` with its first algorithm (or the one
    ``algorithms`` names for its output), no search; ``in_place`` and ``share`` as
    CompiledPlan's ``concat_in_place`` and ``share_memory``."""
    steps = find_steps(graph)
    backends: dict[str, Backend] = {}
    choices = {}
    for step in steps:
        if is_alias(step, graph):
            continue
        name = place(step)
        backend = backends.setdefault(name, backend_or_skip(name))
        algorithm = (algorithms or {}).get(step.output, backend.algorithms(step, graph)[0])
        choices[step.name] = Choice(name, algorithm, 0.0)
    return CompiledPlan(
        graph, steps, choices, backends, concat_in_place=in_place, share_memory=share
    )


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


def at_every_cython_level(check: Callable[[str], None]) -> None:
    """``check(level)`` with the cython kernels set to each instruction-set level the CPU
    runs, widest first; the best level restored after (also when a check fails)."""
    from walle.ops.backends import cython_isa

    best = cython_isa.kernel_level()
    try:
        for level in ("avx512", "avx2", "sse"):
            try:
                cython_isa.set_level(level)
            except ValidationError:  # this CPU lacks the level
                continue
            check(level)
    finally:
        cython_isa.set_level(best)


def raster_kernel_at_every_level(
    kernel: object, y: np.ndarray, want: np.ndarray, stale: float = np.nan
) -> None:
    """An ops_raster kernel writes ``want`` into ``y`` (filled with ``stale`` first) at each
    raster level the CPU runs; the level it found restored after (a run under
    ``WALLE_OPS_ISA`` keeps its forced level for the tests after it)."""
    from walle._kernels import ops_raster

    before = ops_raster.level()
    try:
        for level in range(ops_raster.best_level() + 1):
            ops_raster.set_level(level)
            y[...] = stale
            kernel.run()  # type: ignore[attr-defined]
            np.testing.assert_array_equal(y, want, err_msg=f"level {level}")
    finally:
        ops_raster.set_level(before)


def cython_matches_reference_at_every_level(
    graph: Graph, x: np.ndarray, *, kernel_ran: bool, atol: float
) -> None:
    """The cython plan of ``graph`` at each level the CPU runs gives the reference's result
    on ``x`` (NaN where it has NaN), with a fused kernel chosen where ``kernel_ran``."""
    want = run_reference(graph, {"x": x})[0]

    def check(level: str) -> None:
        plan = compile_graph(graph, pin="cython", trials=False, use_cache=False)
        if kernel_ran:
            assert "fused" in {c.algorithm for c in plan.choices.values()}
        got = plan(x)[0]
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=level)
        finite = ~np.isnan(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5, atol=atol, err_msg=level)

    at_every_cython_level(check)


def im2col_node(graph: Graph) -> Node:
    """The graph's one im2col raster: the 6-D region [N, C, KH, KW, OH, OW] through which its
    conv reads its (padded) input, as the conv kernels take it."""
    (node,) = [n for n in graph.nodes if n.op == "raster" and len(n.attr("regions")[0].sizes) == 6]
    return node


def run1_matches_reference(plan: CompiledPlan, graph: Graph, shape: tuple[int, ...]) -> None:
    """``plan.run1`` on two fresh images gives the reference's output for each (so it reads
    the array it is given, not the previous one) and leaves the caller's array unchanged."""
    rng = np.random.default_rng(9)
    for _ in range(2):
        xv = rng.uniform(-2, 2, shape).astype(np.float32)
        keep = xv.copy()
        got = plan.run1(xv)
        np.testing.assert_array_equal(xv, keep)
        want = run_reference(graph, {graph.inputs[0]: keep})[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def with_act(b: GraphBuilder, y: str, act: str) -> str:
    """``y`` followed by one of the activations the conv kernels apply as they store ("none",
    "relu", "relu6" as ONNX's Clip(0, 6), "hard_swish"), as a model's graph writes it."""
    if act == "relu":
        return b.relu(y)
    if act == "relu6":
        return b.clip(y, b.const(np.float32(0.0)), b.const(np.float32(6.0)))
    if act == "hard_swish":
        return b.hard_swish(y)
    assert act == "none", act
    return y


def conv_kernel_case(
    c: int, cout: int, side: int, kernel: int, stride: int, group: int = 1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Region, tuple[int, ...]]:
    """x [2, c, side, side] (values in [-3, 3], a NaN and both infinities), weight, bias, the
    im2col region and the output shape of an unpadded conv: one case for a conv kernel's
    activation tests."""
    rng = np.random.default_rng(c * 100 + side + group + seed)
    x = rng.uniform(-3, 3, (2, c, side, side)).astype(np.float32)
    x[0, 0, 1, 2], x[1, c - 1, side - 2, 3], x[1, 0, 0, 0] = np.nan, np.inf, -np.inf
    weight = rng.uniform(-1, 1, (cout, c // group, kernel, kernel)).astype(np.float32)
    bias = rng.uniform(-2, 2, cout).astype(np.float32)
    b = GraphBuilder()
    y = b.conv2d(
        b.input("x", x.shape), b.const(weight), b.const(bias), strides=(stride,) * 2, group=group
    )
    graph = b.build([y])
    region: Region = im2col_node(graph).attr("regions")[0]
    return x, weight, bias, region, graph.shape(y)


def conv_kernel_runs(kernel: int, stride: int, level: str) -> list[Callable[[str], np.ndarray]]:
    """Runs (act -> output) of the direct, packed-GEMM and, for a 3x3 stride-1 conv, the
    Winograd F(2), F(4) and F(6) conv kernels at ``level`` on conv_kernel_case(8, 13, 11,
    kernel, stride), each into an output of stale values: one list for the activation tests."""
    from walle._kernels import ops_conv

    x, weight, bias, region, shape = conv_kernel_case(8, 13, 11, kernel, stride)
    w2 = weight.reshape(13, -1)

    def direct(act: str) -> np.ndarray:
        out = np.full(shape, -1.0, np.float32)
        ops_conv.ConvKernel(x, w2, bias, out, region, act, level).run()
        return out

    def gemm(act: str) -> np.ndarray:
        out = np.full(shape, -1.0, np.float32)
        ops_conv.GemmConvKernel(x, w2, bias, out.reshape(2, 13, -1), region, act, level).run()
        return out

    def winograd(tile: int) -> Callable[[str], np.ndarray]:
        def run(act: str) -> np.ndarray:
            out = np.full(shape, -1.0, np.float32)
            ops_conv.WinogradKernel(x, w2, bias, out, region, act, level, tile).run()
            return out

        return run

    tiles = (2, 4, 6) if kernel == 3 and stride == 1 else ()
    return [direct, gemm, *(winograd(tile) for tile in tiles)]


def matmul_kernel_runs(level: str) -> list[Callable[[str], np.ndarray]]:
    """Runs (act -> output) of the packed-GEMM matmul (a bias per column) and, where the CPU
    has ``level``, GemmKernel and its C epilogue after numpy's BLAS (epilogue_only) at it,
    on a [37, 45] @ [45, 29] product whose a holds a NaN and an inf: one list for the
    activation tests."""
    from walle._kernels import ops_conv, ops_math
    from walle.ops.backends import cython_isa

    rng = np.random.default_rng(3)
    a = rng.uniform(-2, 2, (37, 45)).astype(np.float32)
    a[3, 4], a[20, 0] = np.nan, np.inf
    b = rng.uniform(-1, 1, (45, 29)).astype(np.float32)
    bias = rng.uniform(-3, 3, 29).astype(np.float32)

    def packed(act: str) -> np.ndarray:
        out = np.full((37, 29), -1.0, np.float32)
        ops_conv.MatmulPackedKernel(a, b, out, bias, 1, act, True, level=level).run()
        return out

    def gemm(epilogue_only: bool) -> Callable[[str], np.ndarray]:
        def run(act: str) -> np.ndarray:
            before = cython_isa.kernel_level()
            cython_isa.set_level(level)
            try:
                with np.errstate(invalid="ignore"):  # a's NaN and inf
                    out = a @ b if epilogue_only else np.full((37, 29), -1.0, np.float32)
                ops_math.GemmKernel(a, b, out, bias, 1, act, epilogue_only).run()
                return out
            finally:
                cython_isa.set_level(before)

        return run

    if cython_isa.LEVELS[level] > cython_isa.LEVELS[cython_isa.best_level()]:
        return [packed]  # (which refuses the level)
    return [packed, gemm(False), gemm(True)]

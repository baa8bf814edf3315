"""NaN and inf go through every backend as they do through the numpy reference and onnxruntime.

ReLU keeps NaN (``max(NaN, 0)`` is NaN in numpy and onnxruntime): the compiled kernels must
not turn it into 0, whether ReLU runs alone, fused after a matmul or inside a convolution.
And a conv puts NaN and inf only in the outputs whose windows hold them, whichever of the
cython backend's algorithms runs it.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import at_every_cython_level, backend_or_skip, run_with_algorithm, with_act
from walle.ops import GraphBuilder, compile_graph, run_reference
from walle.ops.backends.registry import available_backends
from walle.ops.fusion import find_steps

BACKENDS = [b.name for b in available_backends()]


def _special(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).uniform(-2.0, 2.0, shape).astype(np.float32)
    flat = x.reshape(-1)
    flat[::5] = np.nan
    flat[1::7] = np.inf
    flat[2::11] = -np.inf
    return x


def _graphs():
    rng = np.random.default_rng(1)

    def relu(b, x):
        return b.relu(x)

    def linear_relu(b, x):
        w = b.const(rng.uniform(-1, 1, (b.shape(x)[-1], 9)).astype(np.float32))
        return b.relu(b.linear(x, w, b.const(np.zeros(9, np.float32))))

    def conv_relu(b, x):
        x4 = b.reshape(x, (1, 2, 6, 20))
        w = b.const(rng.uniform(0.1, 1, (8, 2, 3, 3)).astype(np.float32))
        return b.relu(b.conv2d(x4, w, b.const(np.zeros(8, np.float32)), pads=(1, 1, 1, 1)))

    return {"relu": relu, "linear_relu": linear_relu, "conv_relu": conv_relu}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(_graphs()))
def test_ops_relu_keeps_nan(backend: str, case: str) -> None:
    x = _special((12, 20))
    x[0, :] = np.nan  # a whole row: conv and matmul outputs that are NaN for sure
    b = GraphBuilder()
    graph = b.build([_graphs()[case](b, b.input("x", x.shape))])
    got = compile_graph(graph, pin=backend, use_cache=False)(x)[0]
    want = run_reference(graph, {"x": x})[0]
    assert np.isnan(want).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel", [1, 3, 7])
def test_strided_conv_keeps_nan_and_inf_out_of_windows_that_miss_them(kernel: int) -> None:
    """A stride-2 conv (ResNet's 7x7 stem, 3x3/2 downsampling, 1x1/2 shortcuts): a NaN or an
    infinity in a column that only some windows cover reaches only their outputs, in every
    algorithm of the cython backend at every level (the direct kernel's even/odd column split
    gives odd-width filters a zero tap past the window: NaN * 0 had reached the output
    beside; a test that failed before the fix)."""
    backend = backend_or_skip("cython")

    rng = np.random.default_rng(kernel)
    x = rng.uniform(-2, 2, (1, 3, 19, 19)).astype(np.float32)
    pad = kernel // 2
    # padded column 2j + kernel: just past window j (inside window j + 1 only where kernel > 1)
    x[0, 0, 6, 2 * 2 + kernel - pad] = np.nan
    x[0, 2, 9, 2 * 5 + kernel - pad] = np.inf
    b = GraphBuilder()
    weight = rng.uniform(-1, 1, (5, 3, kernel, kernel)).astype(np.float32)
    y = b.conv2d(
        b.input("x", x.shape),
        b.const(weight),
        b.const(np.zeros(5, np.float32)),
        strides=(2, 2),
        pads=(pad,) * 4,
    )
    graph = b.build([y])
    with np.errstate(invalid="ignore"):
        want = run_reference(graph, {"x": x})[0]
    (step,) = [s for s in find_steps(graph) if s.op == "fused.conv2d"]

    def check(level: str) -> None:
        for algorithm in backend.algorithms(step, graph):
            with np.errstate(invalid="ignore"):
                got = run_with_algorithm(backend, graph, {"x": x}, step, algorithm)
            where = f"{algorithm} at {level}"
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=where)
            np.testing.assert_array_equal(np.isinf(got), np.isinf(want), err_msg=where)
            finite = np.isfinite(want)
            np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4, atol=1e-4)

    at_every_cython_level(check)


@settings(max_examples=25, deadline=None)
@given(
    c=st.integers(1, 16),
    cout=st.integers(1, 16),
    side=st.integers(3, 18),
    kernel=st.sampled_from([1, 2, 3, 5, 7]),
    stride=st.integers(1, 2),
    pad=st.integers(0, 2),
    grouping=st.sampled_from(["dense", "depthwise", "grouped"]),
    act=st.sampled_from(["none", "relu", "relu6", "hard_swish"]),
    specials=st.lists(
        st.tuples(st.integers(0, 99), st.sampled_from([np.nan, np.inf, -np.inf])),
        min_size=1,
        max_size=3,
    ),
    seed=st.integers(0, 50),
)
def test_every_conv_algorithm_puts_nan_and_inf_where_the_reference_does(
    c, cout, side, kernel, stride, pad, grouping, act, specials, seed
) -> None:
    """Every algorithm the cython backend offers for a conv step (direct, packed GEMM,
    Winograd, lanes, channel lanes, BLAS...) at every level, on random convs whose input holds
    NaN and infinities at random places: NaN and inf exactly where the reference has them,
    the rest within 1e-4 of it relative to the output's scale."""
    backend = backend_or_skip("cython")
    if side + 2 * pad < kernel:
        return

    group = {"dense": 1, "depthwise": c, "grouped": 2 if c % 2 == 0 and cout % 2 == 0 else 1}
    group = group[grouping]
    cout = c if grouping == "depthwise" else cout
    rng = np.random.default_rng(seed)
    x = rng.uniform(-4, 4, (1, c, side, side)).astype(np.float32)
    for where, value in specials:
        x.reshape(-1)[where * x.size // 100] = value
    b = GraphBuilder()
    y = b.conv2d(
        b.input("x", x.shape),
        b.const(rng.uniform(-2, 2, (cout, c // group, kernel, kernel)).astype(np.float32)),
        b.const(rng.uniform(-3, 3, cout).astype(np.float32)),
        strides=(stride, stride),
        pads=(pad,) * 4,
        group=group,
    )
    graph = b.build([with_act(b, y, act)])
    (step,) = [s for s in find_steps(graph) if s.op in ("fused.conv2d", "fused.group_conv2d")]
    with np.errstate(invalid="ignore", over="ignore"):
        want = run_reference(graph, {"x": x})[0]
    finite = np.isfinite(want)
    scale = float(np.abs(want[finite]).max(initial=1.0))

    def check(level: str) -> None:
        for algorithm in backend.algorithms(step, graph):
            with np.errstate(invalid="ignore", over="ignore"):
                got = run_with_algorithm(backend, graph, {"x": x}, step, algorithm)
            where = f"{algorithm} at {level}"
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=where)
            np.testing.assert_array_equal(got[np.isinf(want)], want[np.isinf(want)], err_msg=where)
            np.testing.assert_allclose(
                got[finite], want[finite], rtol=1e-4, atol=2e-5 * scale, err_msg=where
            )

    at_every_cython_level(check)

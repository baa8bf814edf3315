"""NaN and inf through the atomic kernels that the new ONNX ops compose from, on every backend,
against the numpy reference (which matches onnxruntime for these).

- max/min (binary and reduce) keep NaN from either operand, as np.maximum / np.max: Clip,
  HardSigmoid, LeakyRelu, Max, Min and ReduceMax/Min are built on them (before: the cython
  ternary ``p > q ? p : q`` dropped a NaN ``p``, OpenCL's fmax/fmin dropped any NaN);
- exp overflows to inf and underflows to 0 (before: the cython exp clamped its argument,
  exp(inf) was 2.2e38);
- tanh saturates to exactly +-1 (before: PoCL gave +-0.99999994, so Gelu's tanh form gave
  -3e22 for -1e30 instead of -0, and a finite value for -inf instead of NaN).
"""

from __future__ import annotations

import numpy as np
import pytest

from walle.ops import GraphBuilder, compile_graph, run_reference
from walle.ops.backends.registry import available_backends

BACKENDS = [b.name for b in available_backends()]


def _special(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).uniform(-3.0, 3.0, shape).astype(np.float32)
    flat = x.reshape(-1)
    flat[::5], flat[1::7], flat[2::11] = np.nan, np.inf, -np.inf
    flat[3::13], flat[4::17] = 1e30, -1e30
    return x


def _graphs():
    def minmax(b, x):
        c = b.const(np.full(b.shape(x)[-1:], 0.5, np.float32))
        return [b.binary(k, *pair) for k in ("max", "min") for pair in ((x, c), (c, x))]

    def both_nan(b, x):
        y = b.binary("mul", x, b.const(-1.0))
        return [b.binary("max", x, y), b.binary("min", y, x)]

    def reduce(b, x):
        return [b.reduce(k, x, axes) for k in ("max", "min") for axes in ((0,), (1,), (0, 1))]

    def exp_tanh(b, x):
        return [b.unary("exp", x), b.unary("tanh", x), b.gelu(x, "tanh")]

    return {"minmax": minmax, "both_nan": both_nan, "reduce": reduce, "exp_tanh": exp_tanh}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(_graphs()))
def test_ops_special_values_like_numpy(backend: str, case: str) -> None:
    x = _special((6, 40))
    b = GraphBuilder()
    graph = b.build(_graphs()[case](b, b.input("x", x.shape)))
    with np.errstate(all="ignore"):
        got = compile_graph(graph, pin=backend, use_cache=False, trials=False)(x)
        want = run_reference(graph, {"x": x})
    for g, w in zip(got, want, strict=True):
        assert np.isnan(w).any() or np.isinf(w).any()
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        np.testing.assert_array_equal(np.isinf(g), np.isinf(w))
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_relu_of_negative_zero_is_positive_zero(backend: str) -> None:
    """ReLU maps -0.0 to +0.0, as np.maximum(x, 0) and onnxruntime do (a kernel that only
    zeroed x < 0 kept -0.0, and a later division turned +inf into -inf), and keeps NaN; both
    alone and inside an elementwise chain (ReLU then a division)."""
    x = np.array([[-0.0, -1.0, 0.0, 2.0, np.nan, -0.0, -np.inf, 3.0]], np.float32)
    b = GraphBuilder()
    xin = b.input("x", x.shape)
    relu = b.relu(xin)
    chain = b.binary("div", b.const(np.ones(8, np.float32)), b.relu(b.binary("mul", xin, xin)))
    graph = b.build([relu, b.binary("div", b.const(np.ones(8, np.float32)), relu), chain])
    with np.errstate(all="ignore"):
        got = compile_graph(graph, pin=backend, use_cache=False, trials=False)(x)
        want = run_reference(graph, {"x": x})
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)  # NaN where NaN, inf of the same sign
        np.testing.assert_array_equal(np.signbit(g), np.signbit(w))
    assert not np.signbit(got[0][0, 0]) and got[1][0, 0] == np.inf

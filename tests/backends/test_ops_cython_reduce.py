"""The cython backend's ReduceSum/ReduceMean of a whole run (``ops_math.ReduceKernel``, inner
size 1) against the exactly rounded sum (``math.fsum``).

The sum runs in vector lanes, so a float32 accumulator's error grew with the level's width
and with cancellation: 2583 values in [-2, 2] summed to 1.6e-5 (relative) off at AVX2, within
1e-6 at SSE, and a plan test failed on an AVX2-only CPU only. Summed in double and rounded
once, the result is within one float32 step of the exact one at every level.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import backend_or_skip


def _reduce(kind: str, x: np.ndarray) -> float:
    backend_or_skip("cython")
    from walle._kernels import ops_math

    y = np.empty(1, np.float32)
    ops_math.ReduceKernel(kind, x, y, 1, x.size, 1).run()
    return float(y[0])


def _within_one_step(got: float, exact: float) -> bool:
    want = np.float32(exact)
    return abs(got - float(want)) <= float(np.spacing(np.abs(want))) + 1e-30


def test_a_sum_with_cancellation_is_rounded_once() -> None:
    x = np.random.default_rng(9).uniform(-2, 2, 3 * 21 * 41).astype(np.float32)
    exact = math.fsum(x.astype(np.float64))
    assert _within_one_step(_reduce("sum", x), exact), (_reduce("sum", x), exact)
    assert _within_one_step(_reduce("mean", x), exact / x.size)


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 6000),
    scale=st.sampled_from([1e-3, 1.0, 1e4]),
    seed=st.integers(0, 2**16),
)
def test_sum_and_mean_match_the_exact_sum(size: int, scale: float, seed: int) -> None:
    x = (np.random.default_rng(seed).uniform(-1, 1, size) * scale).astype(np.float32)
    exact = math.fsum(x.astype(np.float64))
    assert _within_one_step(_reduce("sum", x), exact)
    assert _within_one_step(_reduce("mean", x), exact / size)

"""The cython backend's power (binary ``pow``): exp(b ln a) in vectors where a is a positive
normal float and |b ln a| < 16, glibc's powf for every other lane and a row's last few.

Oracle: numpy's float32 power (relative 4e-6; the vectors are within 1.5e-6). Inputs cover
both paths in one array and each broadcast side: zeros, negative bases (integer and
fractional exponents), NaN, inf, subnormals, results that overflow or underflow, exponent 0
and NaN; and LRN's chain (x * alpha + 1) ** beta then a divide, where pow runs in place on
the chain's block. Every level the CPU runs.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import backend_or_skip
from walle.ops import GraphBuilder, compile_graph

SPECIAL = [0.0, -0.0, -2.0, -0.5, np.nan, np.inf, -np.inf, 1e-40, 1e30, 1.0, 3.0e-39]


def _at_every_level(graph, feeds, want) -> None:
    from walle._kernels import ops_math

    best = ops_math.level()
    try:
        for name, level in (("avx512", 2), ("avx2", 1), ("sse", 0)):
            if level > ops_math.best_level():
                continue
            ops_math.set_level(level)
            plan = compile_graph(graph, pin="cython", trials=False, use_cache=False)
            assert {c.backend for c in plan.choices.values()} == {"cython"}
            got = plan(*feeds)[0]
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
            np.testing.assert_array_equal(np.isinf(got), np.isinf(want), err_msg=name)
            ok = np.isfinite(want)
            np.testing.assert_allclose(got[ok], want[ok], rtol=4e-6, atol=0, err_msg=name)
            np.testing.assert_array_equal(got[~ok], want[~ok], err_msg=name)
    finally:
        ops_math.set_level(best)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 300),
    side=st.sampled_from(["both", "base", "exponent"]),
    specials=st.integers(0, 6),
    seed=st.integers(0, 100),
)
def test_pow_matches_numpy_on_both_paths(n, side, specials, seed) -> None:
    backend_or_skip("cython")
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.01, 40.0, n).astype(np.float32)
    b = rng.uniform(-4.0, 4.0, n).astype(np.float32)
    for _ in range(specials):
        a[rng.integers(0, n)] = SPECIAL[rng.integers(0, len(SPECIAL))]
        b[rng.integers(0, n)] = [0.0, 2.0, 3.0, np.nan, 40.0, -40.0][rng.integers(0, 6)]
    if side == "base":  # a runs, b is one exponent
        b = b[:1]
    elif side == "exponent":  # one base, b runs
        a = a[:1]
    g = GraphBuilder()
    graph = g.build([g.binary("pow", g.input("a", a.shape), g.input("b", b.shape))])
    with np.errstate(all="ignore"):
        want = np.power(a, b)
    _at_every_level(graph, [a, b], want)


@pytest.mark.parametrize("shape", [(1, 96, 54, 54), (2, 5, 7, 3)])
def test_lrn_chain_runs_pow_in_vectors_in_place(shape) -> None:
    """AlexNet's LRN tail: x / (sum * alpha + 1) ** 0.75 as one chain kernel."""
    backend_or_skip("cython")
    rng = np.random.default_rng(len(shape))
    x = rng.uniform(-3, 3, shape).astype(np.float32)
    s = rng.uniform(0, 50, shape).astype(np.float32)
    s.reshape(-1)[:3] = [np.nan, np.inf, 0.0]
    g = GraphBuilder()
    xv, sv = g.input("x", shape), g.input("s", shape)
    scaled = g.binary("add", g.binary("mul", sv, g.const(np.float32(2e-5))), g.const(np.float32(1)))
    y = g.binary("div", xv, g.binary("pow", scaled, g.const(np.float32(0.75))))
    graph = g.build([y])
    with np.errstate(all="ignore"):
        want = x / np.power(s * np.float32(2e-5) + np.float32(1), np.float32(0.75))
    _at_every_level(graph, [x, s], want)

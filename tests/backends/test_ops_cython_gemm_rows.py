"""GemmKernel's rows form (a 1x1 conv, y = W x + bias + residual, then the activation) at
every instruction-set level, against float64 numpy.

At AVX2 the matmul panels add the per-row bias, the residual and the activation as they
store their tiles (products of at least 4 rows and 16 columns; the columns after the last
whole panel get them in a pass after), elsewhere the pass after the product adds them all:
each level, each tail of rows (m % 6) and columns (n % 16), with and without a residual,
must give the same sums, NaN and infinities where numpy has them.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import at_every_cython_level, backend_or_skip

_ACTS = ("none", "relu", "relu6", "hard_swish", "hard_swish6")


def _act(y: np.ndarray, act: str) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        if act == "relu":
            return np.where(y <= 0, 0.0, y)
        if act == "relu6":
            return np.where(y <= 0, 0.0, np.where(y > 6, 6.0, y))
        if act in ("hard_swish", "hard_swish6"):
            return y * np.where(y + 3 <= 0, 0.0, np.where(y + 3 >= 6, 6.0, y + 3)) / 6
    return y


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 2),
    m=st.integers(1, 20),
    n=st.integers(1, 70),
    k=st.integers(1, 40),
    residual=st.booleans(),
    act=st.sampled_from(_ACTS),
    specials=st.booleans(),
    seed=st.integers(0, 99),
)
def test_ops_gemm_kernel_rows_form_matches_numpy_at_every_level(
    batch, m, n, k, residual, act, specials, seed
) -> None:
    backend_or_skip("cython")
    from walle._kernels import ops_math

    rng = np.random.default_rng(seed)
    w = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    x = rng.uniform(-2, 2, (batch, k, n)).astype(np.float32)
    bias = rng.uniform(-1, 1, m).astype(np.float32)
    res = rng.uniform(-2, 2, (batch, m, n)).astype(np.float32) if residual else None
    if specials:  # a NaN and an infinity in the input, and in the residual where there is one
        x[0, 0, 0], x[-1, -1, -1] = np.nan, np.inf
        if res is not None:
            res[-1, -1, 0], res[0, 0, -1] = -np.inf, np.nan
    with np.errstate(invalid="ignore"):
        want = np.einsum("mk,bkn->bmn", w.astype(np.float64), x.astype(np.float64))
        want += bias[None, :, None]
        if res is not None:
            want += res
    want = _act(want, act)

    def check(level: str) -> None:
        out = np.full((batch, m, n), -7.0, np.float32)
        ops_math.GemmKernel(w, x, out, bias, 2, act, res=res).run()
        np.testing.assert_array_equal(np.isnan(out), np.isnan(want), err_msg=level)
        finite = np.isfinite(want)
        np.testing.assert_array_equal(
            out[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)]
        )
        np.testing.assert_allclose(out[finite], want[finite], rtol=1e-4, atol=1e-4, err_msg=level)

    at_every_cython_level(check)


def test_ops_gemm_kernel_refuses_a_residual_of_another_size() -> None:
    backend_or_skip("cython")
    from walle._kernels import ops_math

    w, x = np.ones((4, 3), np.float32), np.ones((3, 16), np.float32)
    out, bias = np.zeros((4, 16), np.float32), np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="a residual of 60 floats for an output of 64"):
        ops_math.GemmKernel(w, x, out, bias, 2, "relu", res=np.ones((4, 15), np.float32))

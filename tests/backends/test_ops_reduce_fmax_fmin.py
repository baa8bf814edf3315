"""The NaN-skipping reductions ``fmax`` and ``fmin`` (a quantizer's range: onnxruntime's
DynamicQuantizeLinear takes its min and max over the numbers) on every backend, against
numpy's ``fmax.reduce``/``fmin.reduce`` from the identity: NaN is left out wherever it falls
(first, last, in a vector lane's tail), a slice of NaN only gives -inf or +inf, and
infinities stay. The cython kernel at every instruction-set level this CPU runs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import at_every_cython_level, backend_or_skip
from walle.ops import GraphBuilder, available_backends, compile_graph

BACKENDS = [b.name for b in available_backends()]
_ORACLE = {"fmax": (np.fmax, -np.inf), "fmin": (np.fmin, np.inf)}


def _case(seed: int, shape: tuple[int, ...], nan: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 3, shape).astype(np.float32)
    x[rng.random(shape) < nan] = np.nan
    x[rng.random(shape) < 0.05] = np.inf
    x[rng.random(shape) < 0.05] = -np.inf
    return x


def _run(backend: str, kind: str, x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    b = GraphBuilder()
    y = b.reduce(kind, b.input("x", x.shape), axes, keepdims=False)
    return compile_graph(b.build([y]), pin=backend, use_cache=False, trials=False)(x)[0]


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 40), min_size=1, max_size=3).map(tuple),
    nan=st.sampled_from([0.0, 0.3, 1.0]),
    kind=st.sampled_from(list(_ORACLE)),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_fmax_and_fmin_reductions_leave_nan_out(backend, shape, nan, kind, seed, data) -> None:
    x = _case(seed, shape, nan)
    start = data.draw(st.integers(0, len(shape) - 1))
    stop = data.draw(st.integers(start + 1, len(shape)))
    axes = tuple(range(start, stop))  # one run of axes (what every backend reduces)
    fn, identity = _ORACLE[kind]
    want = fn.reduce(x, axis=axes, initial=identity)
    np.testing.assert_array_equal(_run(backend, kind, x, axes), want)


@pytest.mark.parametrize("kind", list(_ORACLE))
def test_cython_fmax_and_fmin_at_every_level(kind) -> None:
    """Rows long enough for whole vectors and a tail, NaN in each position class."""
    backend_or_skip("cython")
    fn, identity = _ORACLE[kind]
    x = _case(4, (3, 1037), 0.2)
    x[0, :] = np.nan
    x[1, ::2] = np.nan
    cases = [(x, (1,)), (x, (0,)), (x, (0, 1))]

    def check(level: str) -> None:
        for value, axes in cases:
            want = fn.reduce(value, axis=axes, initial=identity)
            np.testing.assert_array_equal(_run("cython", kind, value, axes), want, err_msg=level)

    at_every_cython_level(check)

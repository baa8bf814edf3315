"""The cython backend at every instruction-set level: the WALLE_OPS_ISA switch and what it forces.

Every kernel family (``ops_conv``, ``ops_math``: GEMM, softmax, layer norm, exp and the
other element-wise ops, reductions; ``ops_raster``: pooling) is compiled once per level and
dispatches at run time. Under each level this machine runs (AVX-512, AVX2, SSE), the kernels
must report that level and a graph using all of them must match the numpy reference
(tolerance 1e-4 absolute and relative, as the backend parity test). The vectorised exp is
checked over the whole float range against numpy's float32 exp: relative error <= 3e-7
(1.2e-7 with FMA, 2.5e-7 at SSE without it) where numpy's result is a normal float, inf
where numpy overflows, at most FLT_MIN where numpy's result is denormal or zero, NaN for NaN.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import backend_or_skip, im2col_node
from walle.errors import ValidationError
from walle.ops import GraphBuilder, compile_graph, get_backend, run_reference

TINY = float(np.finfo(np.float32).tiny)


def _isa():
    backend_or_skip("cython")
    from walle.ops.backends import cython_isa

    return cython_isa


def _runnable(isa) -> list[str]:
    best = isa.LEVELS[isa.best_level()]
    return [name for name, value in isa.LEVELS.items() if value <= best]


@pytest.fixture
def isa():
    """cython_isa, with the process's level restored after the test."""
    module = _isa()
    before = module.kernel_level()
    yield module
    module.set_level(before)


def _graph_of_every_family():
    rng = np.random.default_rng(7)
    b = GraphBuilder()
    x = b.input("x", (2, 3, 13, 21))
    w = b.const(rng.uniform(-0.5, 0.5, (10, 3, 3, 3)).astype(np.float32))
    bias = b.const(rng.uniform(-0.5, 0.5, 10).astype(np.float32))
    y = b.relu(b.conv2d(x, w, bias, pads=(1, 1, 1, 1)))  # direct conv tiles
    y = b.max_pool(y, (2, 2), strides=(2, 2))  # window reduce
    y = b.avg_pool(y, (3, 3), strides=(1, 1))
    y = b.flatten(y)
    dense = b.const(rng.uniform(-0.3, 0.3, (b.shape(y)[1], 37)).astype(np.float32))
    h = b.linear(y, dense)  # GEMM
    h = b.binary("mul", b.sigmoid(h), b.unary("exp", b.tanh(h)))
    h = b.layer_norm(h)
    logits = b.softmax(b.binary("mul", h, b.const(np.float32(3.0))))
    total = b.reduce("max", b.reduce("sum", logits, (1,), keepdims=False), (0,), keepdims=True)
    feeds = {"x": rng.uniform(-2, 2, (2, 3, 13, 21)).astype(np.float32)}
    return b.build([logits, total]), feeds


def test_every_family_reports_and_matches_reference_at_every_level(isa) -> None:
    graph, feeds = _graph_of_every_family()
    want = run_reference(graph, feeds)
    from walle._kernels import ops_conv

    for level in _runnable(isa):
        isa.set_level(level)
        assert isa.kernel_levels() == {"conv": level, "math": level, "raster": level}
        assert get_backend("cython").isa == level
        got = compile_graph(graph, pin="cython", use_cache=False)(*feeds.values())
        for g, r in zip(got, want, strict=True):
            np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4, err_msg=level)
        x = np.zeros((1, 1, 3, 3), np.float32)
        im2col = im2col_node(_conv_graph())
        kernel = ops_conv.ConvKernel(
            x, np.ones((2, 1), np.float32), None, np.zeros((1, 2, 9), np.float32),
            im2col.attr("regions")[0], "none",
        )  # fmt: skip
        assert kernel.level == isa.LEVELS[level]


def _conv_graph():
    b = GraphBuilder()
    y = b.conv2d(b.input("x", (1, 1, 3, 3)), b.const(np.ones((2, 1, 1, 1), np.float32)))
    return b.build([y])


def _special_floats() -> np.ndarray:
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2**32, 300_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    near = [
        np.linspace(a - 0.02, a + 0.02, 4001, dtype=np.float32)
        for a in (88.72283, -87.33654, -103.97, 0.0)
    ]
    ends = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e-30], np.float32)
    return np.concatenate([bits, *near, np.linspace(-110, 95, 100_001, dtype=np.float32), ends])


@pytest.mark.parametrize("kind", ["exp", "sigmoid"])
def test_vector_exp_matches_numpy_over_the_float_range_at_every_level(isa, kind) -> None:
    from walle._kernels import ops_math

    x = _special_floats()
    with np.errstate(over="ignore", invalid="ignore"):
        if kind == "exp":
            want = np.exp(x)  # float32: inf above ln(FLT_MAX), as the kernel
        else:
            want = (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)
    normal = np.isfinite(want) & (np.abs(want) >= TINY)
    small = np.isfinite(want) & (np.abs(want) < TINY)
    for level in _runnable(isa):
        isa.set_level(level)
        y = np.empty_like(x)
        ops_math.UnaryKernel(kind, x, y).run()
        rel = np.abs(y[normal] - want[normal]) / np.abs(want[normal])
        assert rel.max() <= 3e-7, (level, float(x[normal][rel.argmax()]), float(rel.max()))
        assert np.abs(y[small]).max(initial=0.0) <= TINY, level
        np.testing.assert_array_equal(np.isnan(y), np.isnan(want), err_msg=level)
        inf = np.isinf(want)
        np.testing.assert_array_equal(y[inf], want[inf], err_msg=level)


def test_vector_erf_matches_double_precision_erf_at_every_level(isa) -> None:
    """erf in vectors (a polynomial in x^2 up to |x| = 0.921875, 1 - exp of a polynomial
    above): against math.erf in float64, absolute error <= 1.5e-7 everywhere and relative
    error <= 3e-7 below the split (down to the smallest normal floats, where erf(x) ~
    1.128 x; a denormal result has fewer bits than that); odd
    (erf(-x) = -erf(x) exactly, -0 kept), +-1 at +-inf, NaN for NaN; the whole array runs
    whole vectors and a padded last one (its length is odd)."""
    import math

    from walle._kernels import ops_math

    x = _special_floats()
    x = x[np.abs(x) < 8][::3].copy()  # erf is +-1.0f beyond 3.93; every third: a fast test
    half = len(x)
    x = np.concatenate([x, -x, [np.nan, np.inf, -np.inf, 0.0, -0.0, 0.921875, 3.925]])
    x = x.astype(np.float32)
    want = np.array([math.erf(v) if np.isfinite(v) else np.nan for v in x.astype(np.float64)])
    want[np.isposinf(x)], want[np.isneginf(x)] = 1.0, -1.0
    finite = np.isfinite(x)
    small = finite & (np.abs(x) <= 0.921875) & (np.abs(want) >= TINY)
    for level in _runnable(isa):
        isa.set_level(level)
        y = np.empty_like(x)
        ops_math.UnaryKernel("erf", x, y).run()
        err = np.abs(y[finite].astype(np.float64) - want[finite])
        assert err.max() <= 1.5e-7, (level, float(x[finite][err.argmax()]), float(err.max()))
        rel = np.abs(y[small] - want[small]) / np.abs(want[small])
        assert rel.max() <= 3e-7, (level, float(x[small][rel.argmax()]), float(rel.max()))
        np.testing.assert_array_equal(np.isnan(y), np.isnan(x), err_msg=level)
        np.testing.assert_array_equal(y[~finite & ~np.isnan(x)], want[~finite & ~np.isnan(x)])
        # x then -x: erf is odd, bit for bit, and keeps the sign of zero
        np.testing.assert_array_equal(y[:half], -y[half : 2 * half], err_msg=level)
        np.testing.assert_array_equal(np.signbit(y[x == 0]), np.signbit(x[x == 0]))


def test_vector_gelu_matches_double_precision_at_every_level(isa) -> None:
    """GELU in vectors (a table of polynomials for Phi(-|x|) at AVX-512 and AVX2, the erf
    form below): against x * Phi(x) in float64, error <= 1.5e-7 of |x| over the float
    range and, where the table runs, relative error <= 3e-5 on the negative side down to
    x = -5 (where the erf form, 0.5 x (1 + erf), cancels as onnxruntime's does); every
    table entry's interval is crossed (a fine grid to 6.5); +inf gives +inf, -inf and NaN
    give NaN, -0 stays -0, and the whole array runs whole vectors and a padded last one
    (its length is odd)."""
    import math

    from walle._kernels import ops_math

    x = _special_floats()
    x = x[np.abs(x) < 1e6][::3]
    grid = np.linspace(-6.5, 6.5, 130_001, dtype=np.float32)
    x = np.concatenate([x, grid, [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30]])
    x = np.append(x, [0.5] * (1 - len(x) % 2)).astype(np.float32)  # an odd length
    x64 = x.astype(np.float64)
    finite = np.isfinite(x)
    want = np.full(len(x), np.nan)
    want[finite] = [v * 0.5 * math.erfc(-v / math.sqrt(2)) for v in x64[finite]]
    want[np.isposinf(x)] = np.inf
    negative = finite & (x > -5) & (x < -1e-30)
    for level in _runnable(isa):
        isa.set_level(level)
        y = np.empty_like(x)
        ops_math.UnaryKernel("gelu", x, y).run()
        err = np.abs(y[finite] - want[finite]) / np.maximum(np.abs(x64[finite]), TINY)
        assert err.max() <= 1.5e-7, (level, float(x[finite][err.argmax()]), float(err.max()))
        if level != "sse":
            rel = np.abs(y[negative] - want[negative]) / np.abs(want[negative])
            assert rel.max() <= 3e-5, (level, float(x[negative][rel.argmax()]), float(rel.max()))
        np.testing.assert_array_equal(np.isnan(y), np.isnan(want), err_msg=level)
        assert y[np.isposinf(x)].tolist() == [np.inf]
        np.testing.assert_array_equal(np.signbit(y[x == 0]), np.signbit(x[x == 0]))


def test_softmax_at_every_level_matches_numpy_with_special_values(isa) -> None:
    from walle._kernels import ops_math

    rng = np.random.default_rng(5)
    rows = [rng.normal(0, 30, n).astype(np.float32) for n in (1, 3, 8, 17, 1000, 30001)]
    rows[2][3] = -np.inf  # a masked logit: exp gives 0
    rows[3][:5] = 1e30  # large but equal maxima
    for level in _runnable(isa):
        isa.set_level(level)
        for row in rows:
            x = row.reshape(1, -1)
            y = np.empty_like(x)
            ops_math.RowKernel("softmax", x, y).run()
            e = np.exp(x.astype(np.float64) - x.max())
            np.testing.assert_allclose(y, e / e.sum(), rtol=1e-5, atol=1e-7, err_msg=level)
        x = np.array([[1.0, np.nan, 2.0]], np.float32)
        y = np.empty_like(x)
        ops_math.RowKernel("softmax", x, y).run()
        assert np.isnan(y).all(), level  # NaN poisons its row, as onnxruntime and numpy


def _softmax_rows_oracle(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (NaN anywhere in a row makes the row NaN)."""
    x64 = x.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(x64 - x64.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 7),
    cols=st.integers(1, 70),
    scale=st.sampled_from([0.1, 3.0, 40.0]),
    special=st.lists(
        st.tuples(
            st.integers(0, 6), st.integers(0, 69), st.sampled_from([np.nan, -np.inf, 1e30, -1e30])
        ),
        max_size=3,
    ),
    seed=st.integers(0, 2**16),
)
def test_softmax_rows_at_every_level_match_a_row_by_row_oracle(
    rows, cols, scale, special, seed
) -> None:
    """The softmax kernel works on a block of rows (row r's exp loop takes row r+1's max and
    scales row r-1): every row must come out as if alone, a NaN poisoning only its own row;
    at every level, and capped at each lower one (``most``: the search's ``fused_avx2``)."""
    module = _isa()
    from walle._kernels import ops_math

    x = np.random.default_rng(seed).normal(0, scale, (rows, cols)).astype(np.float32)
    for r, c, value in special:
        x[r % rows, c % cols] = value
    want = _softmax_rows_oracle(x)
    before = module.kernel_level()
    try:
        for level in _runnable(module):
            module.set_level(level)
            for most in (2, 1, 0):
                y = np.full_like(x, 7.0)
                ops_math.RowKernel("softmax", x, y, most=most).run()
                np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-7, err_msg=f"{level} {most}")
    finally:
        module.set_level(before)


def test_softmax_offers_its_avx2_loop_at_avx512_only(isa) -> None:
    """On an AVX-512 CPU a softmax step offers ``fused_avx2`` beside ``fused`` (the search
    times both); at a lower level only ``fused``. A plan on it matches the reference, and
    the kernel refuses a level that does not exist."""
    from walle._kernels import ops_math
    from walle.ops import GraphBuilder, compile_graph, run_reference
    from walle.ops.backends.registry import get_backend
    from walle.ops.fusion import find_steps

    b = GraphBuilder()
    graph = b.build([b.softmax(b.input("x", (8, 3000)), axis=-1)])
    [step] = [s for s in find_steps(graph) if s.op == "fused.softmax"]
    backend = get_backend("cython")
    x = np.random.default_rng(1).normal(0, 5, (8, 3000)).astype(np.float32)
    for level in _runnable(isa):
        isa.set_level(level)
        offered = backend.algorithms(step, graph)
        assert "fused" in offered and ("fused_avx2" in offered) == (level == "avx512"), level
    isa.set_level(isa.best_level())
    if isa.best_level() == "avx512":
        plan = compile_graph(graph, pin="cython", trials=False, use_cache=False)
        plan.choices[step.name] = type(plan.choices[step.name])("cython", "fused_avx2", 0.0)
        from walle.ops.plan import CompiledPlan

        narrow = CompiledPlan(plan.graph, plan.steps, plan.choices, plan.backends)
        np.testing.assert_allclose(
            narrow(x)[0], run_reference(graph, {"x": x})[0], rtol=1e-5, atol=1e-7
        )
        # the cap runs the AVX2 loop itself: its bits, not the AVX-512 loop's
        capped, wide, avx2 = (np.empty_like(x) for _ in range(3))
        ops_math.RowKernel("softmax", x, capped, most=1).run()
        ops_math.RowKernel("softmax", x, wide).run()
        isa.set_level("avx2")
        ops_math.RowKernel("softmax", x, avx2).run()
        assert capped.tobytes() == avx2.tobytes() and capped.tobytes() != wide.tobytes()
    with pytest.raises(ValueError, match="level 3"):
        ops_math.RowKernel("softmax", x, np.empty_like(x), most=3)


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 60),
    k=st.integers(1, 40),
    n=st.integers(1, 56),
    batch=st.integers(1, 3),
    offset=st.sampled_from([0, 1, 4, 8]),
    seed=st.integers(0, 2**16),
)
def test_gemm_panels_and_tiles_at_every_level_match_float64(m, k, n, batch, offset, seed) -> None:
    """GemmKernel's panel kernels (AVX-512's 8/4 x 16 tiles and 1 x 64/16 rows, AVX2's
    6/4/2/1 x 16 with the last n % 16 columns on the scalar tiles, shifted back over columns
    the panels wrote with their bias and ReLU where k is small, b's panels read in place
    or copied aligned by its offset and a's rows: 16, 24 and 48 rows the thresholds), and
    the scalar tiles alone
    (wide=False), at every level, on every row and column remainder, b at 0, 4, 16 or 32
    bytes past a 64-byte boundary, with bias and ReLU, batched."""
    module = _isa()
    from walle._kernels import ops_math

    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, (batch, m, k)).astype(np.float32)
    memory = np.empty(k * n + 32, np.float32)
    start = (-memory.ctypes.data % 64) // 4 + offset
    w = memory[start : start + k * n].reshape(k, n)
    w[...] = rng.uniform(-1, 1, (k, n))
    bias = rng.uniform(-1, 1, n).astype(np.float32)
    want = np.maximum(a.astype(np.float64) @ w + bias, 0)
    before = module.kernel_level()
    try:
        for level in _runnable(module):
            module.set_level(level)
            for wide in (True, False):
                out = np.full((batch, m, n), np.nan, np.float32)
                ops_math.GemmKernel(a, w, out, bias, 1, "relu", False, wide).run()
                np.testing.assert_allclose(
                    out, want, rtol=1e-5, atol=1e-5, err_msg=f"{level} wide={wide}"
                )
    finally:
        module.set_level(before)


@pytest.mark.parametrize("m", [6, 16, 23, 24, 47, 48, 64])
def test_gemm_panel_bits_do_not_depend_on_where_b_lies(m) -> None:
    """Whether the AVX2 panel kernel reads b's panels in place or copies them (by b's offset
    within a cache line and a's rows), each output is the same sums in the same order: the
    same bits at any offset, at every level."""
    module = _isa()
    from walle._kernels import ops_math

    k, n = 256, 64  # a power-of-two row stride: the case the copy is for
    rng = np.random.default_rng(m)
    a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    values = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    memory = np.empty(k * n + 32, np.float32)
    before = module.kernel_level()
    try:
        for level in _runnable(module):
            module.set_level(level)
            outs = []
            for offset in (0, 4, 8, 1):  # 0, 16, 32 and 4 bytes past a 64-byte boundary
                start = (-memory.ctypes.data % 64) // 4 + offset
                w = memory[start : start + k * n].reshape(k, n)
                w[...] = values
                out = np.empty((m, n), np.float32)
                ops_math.GemmKernel(a, w, out, None, 0, "none").run()
                outs.append(out.tobytes())
            assert len(set(outs)) == 1, level
            np.testing.assert_allclose(
                np.frombuffer(outs[0], np.float32).reshape(m, n),
                a.astype(np.float64) @ values,
                rtol=1e-4,
                atol=1e-4,
            )
    finally:
        module.set_level(before)


@pytest.mark.parametrize("k", [3, 255, 256, 257, 600])
@pytest.mark.parametrize("n", [1, 5, 15, 17, 31, 40, 512, 530])
def test_gemm_tail_columns_match_float64_and_a_rows_bits_do_not_depend_on_its_batch(k, n):
    """The last n % 16 columns (dot products along k in blocks of 256, 4 rows at a time; an
    MLP's [m, 256] @ [256, 1] last layer; or, where k is small against them, the 16-column
    tiles shifted back to end at n, 8-column ones under 16: k = 3 here) at every level:
    within float32 of the float64
    product, NaN and inf where the product has them, and each row's outputs the same bits
    whichever rows share its batch (in a block of 4 or alone, at any place in it). n = 17
    and 31 hold 16 columns of panels too: a GCC 13 build on a Xeon fused the AVX-512 8-row
    tile's multiply-adds and not the single rows', and failed here at that level. From 512
    columns AVX-512's rows past the blocks of 4 read b row by row (walle_gemv_rows_v16)."""
    module = _isa()
    from walle._kernels import ops_math

    rng = np.random.default_rng(k * 100 + n)
    rows = rng.uniform(-1, 1, (11, k)).astype(np.float32)
    rows[9, k // 2] = np.inf
    rows[10, 0] = np.nan
    w = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    want = rows.astype(np.float64) @ w
    before = module.kernel_level()
    try:
        for level in _runnable(module):
            module.set_level(level)
            alone = {}
            for m, start in [(11, 0), (1, 9), (1, 10), (3, 1), (5, 6), (6, 2), (4, 0)]:
                out = np.full((m, n), 7.0, np.float32)
                ops_math.GemmKernel(rows[start : start + m].copy(), w, out, None, 0, "none").run()
                np.testing.assert_allclose(
                    out, want[start : start + m], rtol=1e-4, atol=1e-4, err_msg=level
                )
                for r in range(m):
                    first = alone.setdefault(start + r, out[r].copy())
                    assert first.tobytes() == out[r].tobytes(), (level, m, start, r)
    finally:
        module.set_level(before)


def _run_with_env(value: str, code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WALLE_OPS_ISA": value}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


_REPORT = (
    "from walle.ops import get_backend\n"
    "from walle.ops.backends import cython_isa\n"
    "b = get_backend('cython')\n"
    "print(b.isa, sorted(set(cython_isa.kernel_levels().values())), b.identity()['isa'])\n"
)


def test_env_switch_forces_every_family_and_is_read_once(isa) -> None:
    for level in _runnable(isa):
        done = _run_with_env(level, _REPORT)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [level, f"['{level}']", level]
    done = _run_with_env("native", _REPORT)
    assert done.stdout.split()[0] == isa.best_level(), done.stderr
    code = _REPORT + (
        "import os\nos.environ['WALLE_OPS_ISA'] = 'bogus'\n"
        "from walle.ops.backends.cython_backend import CythonBackend\n"
        "print(CythonBackend().isa)\n"
    )
    done = _run_with_env("sse", code)  # a later change of the variable changes nothing
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "sse"


def test_env_switch_refuses_unknown_values_naming_the_allowed_ones(isa) -> None:
    done = _run_with_env("avx3", _REPORT)
    assert done.returncode != 0
    assert "WALLE_OPS_ISA='avx3'" in done.stderr
    assert "native, avx512, avx2, sse" in done.stderr
    with pytest.raises(ValidationError, match="allowed: native, avx512, avx2, sse"):
        isa.parse("AVX-2")
    assert isa.parse(" AVX2 ") == "avx2"
    assert isa.parse("native") is None


def test_levels_the_cpu_lacks_are_refused(isa, monkeypatch) -> None:
    from walle._kernels import ops_conv, ops_math, ops_raster

    for module in (ops_conv, ops_math, ops_raster):
        with pytest.raises(ValueError, match="not run by this CPU"):
            module.set_level(module.best_level() + 1)
    monkeypatch.setattr(isa, "best_level", lambda: "avx2")  # as on an AVX2-only CPU
    with pytest.raises(ValidationError, match="runs at most avx2; allowed here: native, avx2, sse"):
        isa.set_level("avx512")


@pytest.mark.parametrize("cout", [11, 13])
@pytest.mark.parametrize("width", [1, 2, 3, 5, 7, 13, 14, 16, 19, 27, 28, 31, 40, 47, 56, 64])
def test_direct_conv_row_tails_at_every_level(isa, width, cout) -> None:
    """Rows of every width class: full tiles (AVX2 and SSE: 3 and 2 vectors, two passes of 4
    channels each: a last block of 3 channels takes one, of 5 both), the half- and
    quarter-width tail tiles, and the scalar remainder (ResNet's 7/14/28/56, SqueezeNet's
    13/27)."""
    from walle._kernels import ops_conv

    rng = np.random.default_rng(width)
    x = rng.uniform(-2, 2, (2, 5, 5, width + 2)).astype(np.float32)
    weight = rng.uniform(-1, 1, (cout, 5, 3, 3)).astype(np.float32)
    bias = rng.uniform(-1, 1, cout).astype(np.float32)
    b = GraphBuilder()
    graph = b.build([b.relu(b.conv2d(b.input("x", x.shape), b.const(weight), b.const(bias)))])
    want = run_reference(graph, {"x": x})[0]
    im2col = im2col_node(graph)
    for level in _runnable(isa):
        out = np.full(want.shape, np.nan, np.float32)
        region = im2col.attr("regions")[0]
        ops_conv.ConvKernel(x, weight.reshape(cout, -1), bias, out, region, "relu", level).run()
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4, err_msg=level)


_WIDER = (
    "import json\n"
    "from walle.ops.backends import cython_isa, numpy_isa\n"
    "print(json.dumps(numpy_isa.wider_than({level!r})), flush=True)\n"
    "cython_isa.configure()\n"
)


def _numpy_child(level: str, lowered: bool) -> tuple[list[str], str]:
    """(what numpy runs wider than ``level``, the log) in a process with WALLE_OPS_ISA=level,
    started with numpy_isa's variables or without any."""
    import json

    from walle.ops.backends import numpy_isa

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES")
    }
    env["WALLE_OPS_ISA"] = level
    if lowered:
        env.update(numpy_isa.environ(level))
    done = subprocess.run(
        [sys.executable, "-c", _WIDER.format(level=level)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[0]), done.stdout + done.stderr


def test_numpy_is_lowered_with_the_kernels_only_from_the_start(isa) -> None:
    """numpy's BLAS and SIMD loops (which the im2col/blas convs call) are chosen when numpy is
    imported: at each level below the CPU's best, a process started with numpy_isa.environ
    runs none of them wider, and WALLE_OPS_ISA warns of nothing; one started without it has
    whatever runs wider named in a warning that says what to start with."""
    from walle.ops.backends import numpy_isa

    assert numpy_isa.environ("avx512") == numpy_isa.environ("native") == {}
    assert numpy_isa.environ("avx2")["OPENBLAS_CORETYPE"] == "Haswell"
    assert "X86_V3" not in numpy_isa.environ("avx2").get("NPY_DISABLE_CPU_FEATURES", "")
    best = isa.LEVELS[isa.best_level()]
    below = [name for name in _runnable(isa) if isa.LEVELS[name] < best]
    if not below:
        pytest.skip("this CPU runs no level below its best but the baseline")
    for level in below:
        wider, log = _numpy_child(level, lowered=True)
        assert wider == [], level
        assert "numpy runs wider" not in log
        wider, log = _numpy_child(level, lowered=False)
        assert ("numpy runs wider" in log) == bool(wider), log
        if wider:
            assert "OPENBLAS_CORETYPE" in log and wider[0] in log


@pytest.mark.parametrize("kind", ["argmax", "argmin", "argmax_last", "argmin_last"])
def test_arg_reduce_matches_the_reference_at_every_level(isa, kind) -> None:
    """The index kernels (a vector pass for the extreme then a search along a contiguous
    axis; running bests in blocks of 256 across one) at every level: ties, NaN (first in
    some rows), infinities, rows of every length up to a few vectors and past a block."""
    from walle._kernels import ops_math
    from walle.ops.reference import arg_reduce

    rng = np.random.default_rng(3)
    shapes = [(o, r, i) for o in (1, 3) for r in (1, 2, 15, 16, 17, 33, 700) for i in (1, 5, 300)]
    for level in _runnable(isa):
        isa.set_level(level)
        for shape in shapes:
            x = rng.integers(-2, 3, shape).astype(np.float32)
            draw = rng.random(shape)
            x[draw < 0.1], x[draw > 0.95] = np.nan, np.inf
            x[:, 0, ::2] = np.where(rng.random((shape[0], (shape[2] + 1) // 2)) < 0.3, np.nan, 1)
            y = np.empty((shape[0], shape[2]), np.float32)
            ops_math.ReduceKernel(kind, x, y, *shape).run()
            want = arg_reduce(x, axis=(1,), keepdims=False, kind=kind)
            np.testing.assert_array_equal(y, want, err_msg=f"{level} {shape}")


_LIBM = {
    "tan": np.tan, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh,
    "cosh": np.cosh, "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh,
}  # fmt: skip


@pytest.mark.parametrize("kind", ["floor", "ceil", "round", "sin", "cos", *_LIBM])
def test_rounding_and_trigonometry_match_numpy_at_every_level(isa, kind) -> None:
    """floor, ceil and round (halves to even) bit for bit with numpy's, -0 and the sign of a
    zero result kept; sin and cos within 2e-7 absolute (libm against numpy's loops), tan,
    the inverse and the hyperbolic functions within 2e-6 relative; NaN (outside a domain
    too) and infinities as numpy."""
    from walle._kernels import ops_math

    want_fn = {"floor": np.floor, "ceil": np.ceil, "round": np.rint, "sin": np.sin, "cos": np.cos}
    want_fn |= _LIBM
    x = np.concatenate(
        [
            np.arange(-8, 8.25, 0.25, dtype=np.float32),
            _special_floats()[::7],
            np.float32([np.nan, np.inf, -np.inf, 0.0, -0.0, -0.5, 0.5, 2.5, -2.5, 8388607.5]),
        ]
    ).astype(np.float32)
    if kind in ("sin", "cos", "tan"):
        x = x[~np.isfinite(x) | (np.abs(x) < 1e4)]
    with np.errstate(invalid="ignore"):  # (the random bits hold signalling NaNs)
        want = want_fn[kind](x)
    for level in _runnable(isa):
        isa.set_level(level)
        y = np.empty_like(x)
        ops_math.UnaryKernel(kind, x, y).run()
        if kind in ("sin", "cos"):
            np.testing.assert_allclose(y, want, rtol=0, atol=2e-7, err_msg=level)
        elif kind in _LIBM:
            np.testing.assert_allclose(y, want, rtol=2e-6, atol=1e-30, err_msg=level)
        else:
            np.testing.assert_array_equal(y, want, err_msg=level)
            np.testing.assert_array_equal(np.signbit(y), np.signbit(want), err_msg=level)


@pytest.mark.parametrize("largest", [True, False])
def test_topk_kernel_matches_the_reference_at_every_level(isa, largest) -> None:
    """The k first's indices (a sorted buffer up to k 16, a heap above; 16 values at a time
    turned away along a contiguous row) against the reference's lexsort: ties everywhere,
    NaN (ranked above every number), infinities, -0 beside 0, rows along a contiguous and a
    strided axis, k from 1 to the whole row (k 0 is an empty value, no kernel)."""
    from walle._kernels import ops_math
    from walle.ops.reference import topk

    rng = np.random.default_rng(5)
    for level in _runnable(isa):
        isa.set_level(level)
        for outer, r, inner in [(3, 700, 1), (2, 40, 3), (1, 17, 1), (4, 1, 2)]:
            x = rng.integers(-20, 20, (outer, r, inner)).astype(np.float32)
            draw = rng.random(x.shape)
            x[draw < 0.05], x[draw > 0.97] = np.nan, np.inf
            x[(draw > 0.5) & (draw < 0.53)] = -np.inf
            x[(draw > 0.6) & (draw < 0.65)] = -0.0
            for k in sorted({1, min(5, r), min(16, r), min(17, r), min(100, r), r}):
                y = np.empty((outer, k, inner), np.float32)
                ops_math.TopKKernel(x, y, outer, r, inner, k, largest).run()
                want = topk(x, 1, k, largest)
                np.testing.assert_array_equal(y, want, err_msg=f"{level} {x.shape} k {k}")


def test_cumsum_kernel_matches_the_reference_at_every_level(isa) -> None:
    """Running sums one element after the other (the bits of numpy's float32 cumsum), NaN
    and inf reaching only the sums after them, along a contiguous and a strided axis, each
    of exclusive and reverse."""
    from walle._kernels import ops_math
    from walle.ops.reference import cumsum

    rng = np.random.default_rng(6)
    for level in _runnable(isa):
        isa.set_level(level)
        for outer, r, inner in [(2, 300, 1), (3, 17, 5), (1, 1, 40)]:
            x = rng.standard_normal((outer, r, inner)).astype(np.float32)
            draw = rng.random(x.shape)
            x[draw < 0.02], x[draw > 0.99] = np.nan, np.inf
            for exclusive in (False, True):
                for reverse in (False, True):
                    y = np.empty_like(x)
                    ops_math.CumSumKernel(x, y, outer, r, inner, exclusive, reverse).run()
                    want = cumsum(x, 1, exclusive, reverse)
                    np.testing.assert_array_equal(y, want, err_msg=f"{level} {x.shape}")


@pytest.mark.parametrize("kind", ["fmax", "fmin"])
def test_nan_dropping_max_and_min_match_numpy_at_every_level(isa, kind) -> None:
    """fmax and fmin (a NaN on one side gives the other; NaN on both, NaN) as numpy's, each
    side contiguous or broadcast, alone and inside a fused chain (quantization's clamp)."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(5, 37)).astype(np.float32)
    w = rng.normal(size=(37,)).astype(np.float32)
    x[:, ::3], w[::4] = np.nan, np.nan
    x[1, 1:4], w[5] = np.inf, -np.inf
    fn = {"fmax": np.fmax, "fmin": np.fmin}[kind]
    b = GraphBuilder()
    xs, ws = b.input("x", x.shape), b.input("w", w.shape)
    plain = b.binary(kind, xs, ws)
    flipped = b.binary(kind, b.const(np.float32(0.25)), xs)
    chain = b.binary(
        "mul",
        b.binary(kind, b.unary("round", b.binary("div", xs, b.const(0.5))), b.const(-1.0)),
        b.const(2.0),
    )
    graph = b.build([plain, flipped, chain])
    with np.errstate(invalid="ignore"):
        want = [fn(x, w), fn(np.float32(0.25), x), fn(np.rint(x / 0.5), -1.0) * 2]
    for level in _runnable(isa):
        isa.set_level(level)
        got = compile_graph(graph, pin="cython", use_cache=False, trials=False)(x, w)
        for g, e in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, e, err_msg=level)

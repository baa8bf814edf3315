"""The packed-GEMM matmul kernel (``ops_conv.MatmulPackedKernel``) against numpy in float64.

c = act(a @ b + bias) runs gemm_conv.h's kernel with a's rows as its output channels (read
in place 8 at a time, a last block of fewer rows packed with zero rows after it; all packed
per call where some columns run by the tail tiles) and b's columns as its strips: packed
once at build time when b is a constant (``b_constant``), else per call.
Bias per column (mode 1, the kernel's residual) or per row (mode 2, its channel bias);
ReLU keeps NaN. Small ``kc``/``nc`` force several reduction blocks and column chunks, so
that the prepacked layout's offsets (chunk, block) are crossed as well as the strips, the
narrow strip and the leftover columns, at every level this CPU runs. Tolerance 1e-4
relative to the output's scale.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import at_every_cython_level, backend_or_skip, run_with_algorithm

LEVELS = ("avx512", "avx2", "sse")


def _ops_conv():
    backend_or_skip("cython")
    from walle._kernels import ops_conv

    return ops_conv


def _oracle(a, b, bias, mode, relu):
    with np.errstate(all="ignore"):
        y = a.astype(np.float64) @ b.astype(np.float64)
        if mode == 1:
            y = y + bias[None, :]
        elif mode == 2:
            y = y + bias[:, None]
        return np.where(y < 0, 0.0, y) if relu else y  # keeps NaN


def _kernel(ops_conv, a, b, c, bias, mode, relu, b_constant, level, **kw):
    """The kernel, or None where this CPU lacks the level (the refusal checked)."""
    act = "relu" if relu else "none"
    try:
        return ops_conv.MatmulPackedKernel(a, b, c, bias, mode, act, b_constant, level, **kw)
    except ValueError as exc:
        assert "does not run" in str(exc)
        return None


def _at_offset(x: np.ndarray, floats: int) -> np.ndarray:
    """A copy of x whose first element lies ``floats`` floats past a 64-byte line."""
    buf = np.empty(x.size + 32, np.float32)
    start = (-(buf.ctypes.data // 4)) % 16 + floats
    y = buf[start : start + x.size].reshape(x.shape)
    y[...] = x
    return y


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 70),
    k=st.integers(1, 90),
    n=st.integers(1, 110),
    mode=st.sampled_from([0, 1, 2]),
    relu=st.booleans(),
    b_constant=st.booleans(),
    kc=st.sampled_from([None, 1, 7, 32]),
    nc=st.sampled_from([None, 1, 24, 40]),
    seed=st.integers(0, 50),
    b_in_place=st.booleans(),
    wide=st.booleans(),
)
def test_packed_matmul_matches_numpy_at_every_level(
    m, k, n, mode, relu, b_constant, kc, nc, seed, b_in_place, wide
):
    """b packed per call, packed at build time or (not constant) read in place (b on a
    64-byte line, as the plan's buffers are: elsewhere the kernel packs it); with ``wide``,
    AVX-512's 8 x 3 tile over strips of 48 (the other levels ignore it)."""
    b_in_place = b_in_place and not b_constant
    ops_conv = _ops_conv()
    rng = np.random.default_rng(seed)
    a = rng.uniform(-2, 2, (m, k)).astype(np.float32)
    b = _at_offset(rng.uniform(-1, 1, (k, n)).astype(np.float32), 0)
    bias = rng.uniform(-1, 1, {0: 0, 1: n, 2: m}[mode]).astype(np.float32) if mode else None
    want = _oracle(a, b, bias, mode, relu)
    scale = max(1.0, float(np.abs(want).max()))
    for level in LEVELS:
        c = np.full((m, n), np.nan, np.float32)  # every output written
        kernel = _kernel(
            ops_conv,
            a,
            b,
            c,
            bias,
            mode,
            relu,
            b_constant,
            level,
            kc=kc,
            nc=nc,
            b_in_place=b_in_place,
            wide=wide,
        )
        if kernel is None:
            continue
        assert kernel.wide == (wide and level == "avx512")
        kernel.run()
        assert kernel.b_read_in_place == b_in_place
        np.testing.assert_allclose(c, want, rtol=0, atol=1e-4 * scale, err_msg=level)
        a2 = rng.uniform(-2, 2, (m, k)).astype(np.float32)  # a new a each call: read again
        b2 = b if b_constant else _at_offset(rng.uniform(-1, 1, (k, n)).astype(np.float32), 0)
        c2 = np.empty_like(c)
        kernel.run_io(a2, b2, c2)
        want2 = _oracle(a2, b2, bias, mode, relu)
        scale2 = max(1.0, float(np.abs(want2).max()))
        np.testing.assert_allclose(c2, want2, rtol=0, atol=1e-4 * scale2, err_msg=level)


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("b_constant", [False, True])
@pytest.mark.parametrize(
    ("m", "k", "n"),
    [(100, 300, 77), (40, 517, 301), (9, 1000, 10), (20, 256, 256), (20, 264, 256)],
)
def test_packed_matmul_default_blocks_match_numpy(m, k, n, b_constant, wide) -> None:
    """The default blocking of each level on shapes whose reduction and columns split into
    several blocks and chunks unevenly (the weights' layout packed once must match the one
    a call would pack). 256 x 256 is the largest b whose strips are packed as block 0 first
    reads them (gemm_conv.h's ``lazy``); 264 x 256 packs them all first."""
    ops_conv = _ops_conv()
    rng = np.random.default_rng(m + k + n)
    a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    bias = rng.uniform(-1, 1, n).astype(np.float32)
    want = _oracle(a, b, bias, 1, True)
    for level in LEVELS:
        c = np.full((m, n), np.nan, np.float32)
        kernel = _kernel(ops_conv, a, b, c, bias, 1, True, b_constant, level, wide=wide)
        if kernel is not None:
            kernel.run()
            np.testing.assert_allclose(c, want, rtol=0, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("level", LEVELS)
def test_packed_matmul_reads_a_in_place_unless_columns_run_by_the_tail(level) -> None:
    """Whole strips (n = 256 at every level) read a's rows in place; 33 columns leave one to
    the tail tiles, which read 4 packed blocks at once, so a is packed whole. Both match
    numpy, with a new a (19 rows: a last block of 3 packed per call) on the second call."""
    ops_conv = _ops_conv()
    rng = np.random.default_rng(5)
    m, k = 19, 70
    for n, in_place in ((256, True), (33, False)):
        b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
        c = np.full((m, n), np.nan, np.float32)
        kernel = _kernel(ops_conv, np.zeros((m, k), np.float32), b, c, None, 0, False, False, level)
        if kernel is None:
            return
        assert kernel.a_in_place is in_place, n
        for _ in range(2):
            a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
            kernel.run_io(a, b, c)
            want = _oracle(a, b, None, 0, False)
            np.testing.assert_allclose(c, want, rtol=0, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("n", [256, 263, 290])
def test_packed_matmul_folds_the_last_rows_into_the_block_before(level, n) -> None:
    """At AVX-512 a matmul over a constant b of 256 or more columns whose a has 1 to 4 rows
    past a multiple of 8 (9-12, 17-20, 25-28) runs them in its last whole block's tile (8 + r
    rows), a read in place even where leftover columns (263 = 8 strips + 7, 290 = 9 strips
    + 2) would have gone to the tail tiles: those run as a padded strip. Every row count
    from 8 to 29 at every level, with both biases and ReLU, small blocks (kc 40, nc 64) so
    that the fold crosses reduction blocks and column chunks; NaN in a folded row stays in
    that row's outputs; a second call on a new a."""
    ops_conv = _ops_conv()
    rng = np.random.default_rng(n)
    k = 100
    b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    for m in range(8, 30):
        folds = m > 8 and 1 <= m % 8 <= 4
        for mode in (1, 2):
            a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
            if folds:
                a[m - 1, 3] = np.nan
            bias = rng.uniform(-1, 1, n if mode == 1 else m).astype(np.float32)
            c = np.full((m, n), np.inf, np.float32)
            kernel = _kernel(ops_conv, a, b, c, bias, mode, True, True, level, kc=40, nc=64)
            if kernel is None:
                return
            if level == "avx512" and folds:
                assert kernel.a_in_place, m
            if n == 290:  # 2 columns left: the tail tiles and a packed, unless the rows fold
                assert kernel.a_in_place is (folds and level == "avx512"), m
            kernel.run()
            want = _oracle(a, b, bias, mode, True)
            np.testing.assert_allclose(c, want, rtol=0, atol=1e-4 * np.nanmax(np.abs(want)))
            assert np.isnan(c[m - 1]).all() == folds and not np.isnan(c[: m - 1]).any()
            a2 = rng.uniform(-1, 1, (m, k)).astype(np.float32)
            kernel.run_io(a2, b, c)
            want = _oracle(a2, b, bias, mode, True)
            np.testing.assert_allclose(c, want, rtol=0, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("n", [1024, 1001])
def test_packed_matmul_over_a_big_constant_b_matches_numpy(level, n) -> None:
    """A constant b of more than 2^18 floats (300 x 1001: 1.2 MB) makes the AVX-512 and AVX2
    tiles ask for the next reduction block's packed b (or the next chunk's) while they run
    (gemm_conv.h's walle_gemm_streams), spread over the blocks of rows; 1001 columns leave 9
    to the last chunk, a padded strip there so that a stays in place. Row counts of one
    block and less (the share each tile asks for doubles), of folds and of neither; small
    blocks (kc 40: 8 reduction blocks; nc 64: 16 chunks) so that every tile's share and the
    last one past b's end are crossed; a second call on a new a."""
    ops_conv = _ops_conv()
    rng = np.random.default_rng(n)
    k = 300
    b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    bias = rng.uniform(-1, 1, n).astype(np.float32)
    for m in (1, 5, 8, 12, 13, 16, 21, 25, 40):
        a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
        c = np.full((m, n), np.nan, np.float32)
        kernel = _kernel(ops_conv, a, b, c, bias, 1, True, True, level, kc=40, nc=64)
        if kernel is None:
            return
        if level != "sse":
            assert kernel.a_in_place, m
        for x in (a, rng.uniform(-1, 1, (m, k)).astype(np.float32)):
            kernel.run_io(x, b, c)
            want = _oracle(x, b, bias, 1, True)
            np.testing.assert_allclose(c, want, rtol=0, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("level", LEVELS)
def test_packed_matmul_keeps_nan_and_inf_where_numpy_puts_them(level) -> None:
    """A NaN in a row of a reaches exactly that output row, an inf in a column of b that
    column (whole strips, the narrow strip and the leftover columns); ReLU keeps NaN."""
    ops_conv = _ops_conv()
    rng = np.random.default_rng(3)
    m, k, n = 21, 40, 61
    a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    a[5, 7] = np.nan
    b[3, [0, 33, 50, 60]] = np.inf
    want = _oracle(a, b, None, 0, True)
    c = np.zeros((m, n), np.float32)
    kernel = _kernel(ops_conv, a, b, c, None, 0, True, True, level)
    if kernel is None:
        return
    kernel.run()
    np.testing.assert_array_equal(np.isnan(c), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(c), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(c[finite], want[finite], rtol=0, atol=1e-4 * 40)


def test_packed_matmul_refuses_bad_buffers_and_other_weights() -> None:
    ops_conv = _ops_conv()
    a, b = np.ones((8, 4), np.float32), np.ones((4, 5), np.float32)
    c = np.zeros((8, 5), np.float32)
    for args, match in (
        ((a, b.T.copy(), c, None, 0, "none"), "shapes"),
        ((a, b, c, None, 0, "sigmoid"), "activation"),
        ((a, b, c, np.ones(5, np.float32), 0, "none"), "bias mode"),
        ((a, b, c, None, 1, "none"), "bias mode"),
        ((a.astype(np.float64), b, c, None, 0, "none"), "float32"),
        ((np.ones((4, 8), np.float32).T, b, c, None, 0, "none"), "C-contiguous"),
        ((a, b, c, None, 0, "none", True, None, None, None, True), "exclude each other"),
    ):
        with pytest.raises(ValueError, match=match):
            ops_conv.MatmulPackedKernel(*args)
    kernel = ops_conv.MatmulPackedKernel(a, b, c, None, 0, "none", True)
    with pytest.raises(ValueError, match="packed at build time"):
        kernel.run_io(a, b.copy(), c)
    with pytest.raises(ValueError, match="run_io"):
        kernel.run_io(a, b, np.zeros((8, 6), np.float32))


def _gemm_graph(kind: str, rng):
    """A [48, 40] input times weights: x @ W, x @ W + b (per column) then ReLU, x as
    [2, 24, 40] @ W (a's leading dims are its rows), W2 @ x + b
    (the weights on the left: x's columns are the strips, packed per call; the per-row
    bias is an add step of its own), or x @ x2 (two inputs: b packed per call)."""
    from walle.ops import GraphBuilder

    b = GraphBuilder()
    x = b.input("x", (48, 40))
    if kind == "plain":
        y = b.matmul(x, b.const(rng.uniform(-1, 1, (40, 70)).astype(np.float32)))
    elif kind == "column_bias_relu":
        w = b.const(rng.uniform(-1, 1, (40, 70)).astype(np.float32))
        y = b.relu(
            b.binary("add", b.matmul(x, w), b.const(rng.uniform(-1, 1, 70).astype(np.float32)))
        )
    elif kind == "rows_of_a_batch":  # [2, 24, 40] @ W: a transformer's dense layer
        x3 = b.reshape(x, (2, 24, 40))
        y = b.matmul(x3, b.const(rng.uniform(-1, 1, (40, 70)).astype(np.float32)))
    elif kind == "weights_left":
        w = b.const(rng.uniform(-1, 1, (20, 48)).astype(np.float32))
        y = b.binary("add", b.matmul(w, x), b.const(rng.uniform(-1, 1, (20, 1)).astype(np.float32)))
    else:
        y = b.matmul(x, b.input("x2", (40, 80)))
    return b.build([y])


@pytest.mark.parametrize(
    "kind", ["plain", "column_bias_relu", "rows_of_a_batch", "weights_left", "two_inputs"]
)
def test_cython_backend_offers_and_runs_the_packed_matmul(kind) -> None:
    """The search may pick ``packed`` for a 2-D product of 8 or more rows (fused bias and
    ReLU included), where b is not a constant ``packed_direct``, and at AVX-512 (the
    kernels' level, here at every level the CPU runs) both in the 8 x 3 tile
    (``packed_wide``, ``packed_direct_wide``); forced here, the plan's step matches the
    reference."""
    backend = backend_or_skip("cython")
    from walle.ops import run_reference
    from walle.ops.fusion import find_steps

    rng = np.random.default_rng(5)
    graph = _gemm_graph(kind, rng)
    (product,) = [s for s in find_steps(graph) if s.parts[0].op == "matmul"]
    b_constant = product.parts[0].inputs[1] in graph.constants
    feeds = {n: rng.uniform(-1, 1, graph.shape(n)).astype(np.float32) for n in graph.inputs}
    want = run_reference(graph, feeds)[0]

    def check(level: str) -> None:
        offered = backend.algorithms(product, graph)
        assert "packed" in offered
        assert ("packed_direct" in offered) == (not b_constant), offered
        assert ("packed_wide" in offered) == (level == "avx512"), (level, offered)
        direct_wide = level == "avx512" and not b_constant
        assert ("packed_direct_wide" in offered) == direct_wide, (level, offered)
        for algorithm in offered:
            if algorithm.startswith("packed"):
                got = run_with_algorithm(backend, graph, feeds, product, algorithm)
                np.testing.assert_allclose(
                    got, want, rtol=1e-4, atol=1e-4, err_msg=f"{level} {algorithm}"
                )

    at_every_cython_level(check)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("b_layout", ["per call", "constant", "in place"])
def test_packed_matmul_every_column_count_up_to_three_strips(level, b_layout) -> None:
    """Every n from 1 to 100: whole strips, the 16- and 8-wide narrow strips of AVX-512 and
    the leftover columns in every combination (with the channels in the lanes, or as one
    zero-padded strip whose padding is neither read nor written), at each level; a last
    block of 3 rows (AVX-512's 4-channel tile) and of 5; two reduction blocks (the partial
    sums read back) and a per-column bias with ReLU (the residual read). The output is a
    view with guard values after it: nothing past the last column is written. b packed per
    call, once at build time, or read in place (only its leftover columns packed); 13 rows
    also with ``wide`` (AVX-512's strips of 48, one of 32 for 32-47 left, 22-31 padded)."""
    ops_conv = _ops_conv()
    b_constant, b_in_place = b_layout == "constant", b_layout == "in place"
    rng = np.random.default_rng(4)
    for m, wide in ((11, False), (13, False), (13, True)):
        a = rng.uniform(-1, 1, (m, 6)).astype(np.float32)
        for n in range(1, 101):
            b = _at_offset(rng.uniform(-1, 1, (6, n)).astype(np.float32), 0)
            bias = rng.uniform(-1, 1, n).astype(np.float32)
            guarded = np.full(m * n + 64, 7.0, np.float32)
            c = guarded[: m * n].reshape(m, n)
            c[...] = np.nan
            kernel = _kernel(
                ops_conv, a, b, c, bias, 1, True, b_constant, level, kc=4,
                b_in_place=b_in_place, wide=wide,
            )  # fmt: skip
            if kernel is None:
                return
            kernel.run()
            assert kernel.b_read_in_place == b_in_place
            want = _oracle(a, b, bias, 1, True)
            np.testing.assert_allclose(c, want, rtol=0, atol=1e-5, err_msg=f"{m}x{n}")
            assert (guarded[m * n :] == 7.0).all(), f"{m}x{n}: written past the output"


@pytest.mark.parametrize("level", LEVELS)
def test_packed_matmul_reads_b_in_place_only_where_it_starts_on_a_line(level) -> None:
    """``b_in_place`` reads b's strips where they lie only when b starts on a 64-byte line
    (the plan's own buffers); a caller's b at any other offset (numpy aligns to 16 bytes) is
    packed for that call, as if ``b_in_place`` were off: a 64-byte vector of it would
    straddle two lines. The same bits either way, call by call, against the aligned run."""
    ops_conv = _ops_conv()
    rng = np.random.default_rng(9)
    m, k, n = 40, 70, 96
    a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    b = _at_offset(rng.uniform(-1, 1, (k, n)).astype(np.float32), 0)
    c = np.empty((m, n), np.float32)
    for wide in (False, True):  # 96 columns: 3 strips of 32, or 2 of 48 (AVX-512's wide)
        kernel = _kernel(
            ops_conv, a, b, c, None, 0, False, False, level, b_in_place=True, wide=wide
        )
        if kernel is None:
            return
        kernel.run()
        assert kernel.b_read_in_place
        want = c.copy()
        np.testing.assert_allclose(want, _oracle(a, b, None, 0, False), rtol=0, atol=1e-4)
        for floats in (4, 8, 12, 0, 1):
            c[...] = np.nan
            kernel.run_io(a, _at_offset(b, floats), c)
            assert kernel.b_read_in_place == (floats == 0), floats
            np.testing.assert_array_equal(c, want, err_msg=f"b {floats} floats past a line")


@pytest.mark.parametrize(
    ("sa", "sb", "const_b"),
    [
        ((1, 4, 16, 8), (1, 4, 8, 16), False),  # attention's scores: heads as the batch
        ((2, 3, 5, 7), (2, 3, 7, 4), False),
        ((4, 10, 6), (1, 4, 6, 9), False),  # leading 1s broadcast
        ((1, 1, 40, 36), (36, 50), True),  # all-1 batch dims: a 2-D product (packed offered)
        ((3, 2, 7, 36), (36, 50), True),  # a's 42 rows flattened for the packed GEMM
    ],
)
def test_cython_backend_runs_batched_products_of_any_rank(sa, sb, const_b) -> None:
    """A [..., m, k] @ b [..., k, n] runs as a 2-D or 3-D product (batch dims merged) with
    every algorithm the backend offers, matching the reference."""
    backend = backend_or_skip("cython")
    from walle.ops import GraphBuilder, run_reference
    from walle.ops.fusion import find_steps

    rng = np.random.default_rng(len(sa) + sum(sa))
    b = GraphBuilder()
    x = b.input("x", sa)
    w = b.const(rng.uniform(-1, 1, sb).astype(np.float32)) if const_b else b.input("w", sb)
    graph = b.build([b.matmul(x, w)])
    (product,) = [s for s in find_steps(graph) if s.parts[0].op == "matmul"]
    assert backend.supports(product.parts[0], graph)
    offered = backend.algorithms(product, graph)
    assert ("packed" in offered) == (len(sb) == 2)  # b 2-D, a's rows >= 8, not too small
    feeds = {n: rng.uniform(-1, 1, graph.shape(n)).astype(np.float32) for n in graph.inputs}
    want = run_reference(graph, feeds)[0]
    for algorithm in offered:
        got = run_with_algorithm(backend, graph, feeds, product, algorithm)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=algorithm)


def test_cython_backend_leaves_broadcast_batch_dims_to_another_backend() -> None:
    """[2, 1, m, k] @ [3, k, n] broadcasts a's batch dim against b's: not a 3-D product."""
    backend = backend_or_skip("cython")
    from walle.ops import GraphBuilder

    b = GraphBuilder()
    y = b.matmul(b.input("x", (2, 1, 8, 6)), b.input("w", (3, 6, 8)))
    graph = b.build([y])
    assert not backend.supports(graph.nodes[0], graph)


_ONE_CHUNK = """
import sys
import numpy as np
from walle._kernels import ops_conv
level = sys.argv[1]
rng = np.random.default_rng(3)
for m, k, n in ((20, 256, 256), (20, 264, 256), (37, 100, 655)):
    a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    want = a.astype(np.float64) @ b
    for b_in_place in (False, True):
        c = np.full((m, n), np.nan, np.float32)
        kernel = ops_conv.MatmulPackedKernel(
            a, b, c, None, 0, "none", False, level, b_in_place=b_in_place
        )
        kernel.run()
        err = float(np.abs(c - want).max() / np.abs(want).max())
        print(m, k, n, b_in_place, kernel.units, err < 1e-5)
"""


def test_packed_matmul_takes_a_small_b_in_one_chunk_on_one_thread() -> None:
    """At AVX-512 on one OpenMP thread, a b packed or read per call of at most 64K floats runs
    as one chunk of all its columns (a read once per reduction block); a larger one, or the
    same on several threads (which split the chunks), keeps the 128 KiB chunks. Each matches
    numpy. At the other levels the rule does not apply (one chunk was 4-7% slower at AVX2 on
    Zen 3): the same b keeps several chunks. Every level this CPU runs; in child processes:
    the thread count is the process's."""
    import os
    import subprocess
    import sys

    ops_conv = _ops_conv()
    levels = [name for name, value in ops_conv.LEVELS.items() if value <= ops_conv.best_level()]

    def chunks(level: str, threads: int) -> dict[tuple[int, int, int, str], int]:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        done = subprocess.run(
            [sys.executable, "-c", _ONE_CHUNK, level],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        rows = [line.split() for line in done.stdout.splitlines()]
        assert all(row[-1] == "True" for row in rows), (level, rows)
        return {(int(r[0]), int(r[1]), int(r[2]), r[3]): int(r[4]) for r in rows}

    for level in levels:
        units = chunks(level, 1)
        for b_in_place in ("False", "True"):
            assert units[(20, 264, 256, b_in_place)] > 1  # 264 x 256 > 64K floats
            if level == "avx512":
                assert units[(20, 256, 256, b_in_place)] == 1
                assert units[(37, 100, 655, b_in_place)] == 1  # 65,500 floats, 21 strips
            else:
                assert units[(20, 256, 256, b_in_place)] > 1, level
    if "avx512" in levels:
        units = chunks("avx512", 2)
        assert units[(20, 256, 256, "False")] == units[(20, 256, 256, "True")] == 2

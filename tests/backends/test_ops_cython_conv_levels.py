"""The direct conv kernel's tiles at every instruction-set level, against the numpy reference.

``ops_conv.ConvKernel`` picks the widest tiles the CPU runs (AVX-512, AVX2, baseline SSE:
"avx512", "avx2", "sse");
the search only ever meets that one, so this test builds the kernel at each level the test
machine supports and compares it with :func:`walle.ops.run_reference` on random shapes,
strides and dilations. Tolerance: 1e-4 absolute and relative (float32).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import backend_or_skip, im2col_node
from walle.ops import GraphBuilder, run_reference


def _ops_conv():
    backend_or_skip("cython")
    from walle._kernels import ops_conv

    return ops_conv


@settings(max_examples=10, deadline=None)
@given(
    c=st.integers(1, 6),
    cout=st.integers(1, 17),
    h=st.integers(3, 9),
    w=st.integers(3, 70),
    k=st.sampled_from([(1, 1), (3, 3), (3, 2)]),
    s=st.integers(1, 2),
    d=st.integers(1, 2),
    relu=st.booleans(),
    seed=st.integers(0, 30),
)
def test_ops_conv_kernel_every_level_matches_reference(c, cout, h, w, k, s, d, relu, seed):
    ops_conv = _ops_conv()
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (2, c, h + 2 * d, w + 2 * d)).astype(np.float32)
    weight = rng.uniform(-1, 1, (cout, c, *k)).astype(np.float32)
    bias = rng.uniform(-1, 1, cout).astype(np.float32)
    b = GraphBuilder()
    y = b.conv2d(
        b.input("x", x.shape), b.const(weight), b.const(bias), strides=(s, s), dilations=(d, d)
    )
    graph = b.build([b.relu(y) if relu else y])
    want = run_reference(graph, {"x": x})[0]
    im2col = im2col_node(graph)
    for level in ("avx512", "avx2", "sse"):
        out = np.full(want.shape, np.nan, np.float32)
        try:
            kernel = ops_conv.ConvKernel(
                x,
                weight.reshape(cout, -1),
                bias,
                out,
                im2col.attr("regions")[0],
                "relu" if relu else "none",
                level,
            )
        except ValueError as exc:
            assert "does not run" in str(exc)
            continue
        kernel.run()
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4, err_msg=level)


def test_ops_conv_kernel_refuses_what_it_cannot_run() -> None:
    ops_conv = _ops_conv()
    from walle.ops.ir import Region

    x, out = np.zeros((1, 1, 4, 4), np.float32), np.zeros((1, 2, 4), np.float32)
    region = Region(0, 0, (16, 16, 4, 1, 4, 1), 0, (16, 16, 4, 4, 2, 1), (1, 1, 1, 1, 2, 2))
    weight = np.zeros((2, 1), np.float32)
    with pytest.raises(ValueError, match="activation"):
        ops_conv.ConvKernel(x, weight, None, out, region, "sigmoid")
    with pytest.raises(ValueError, match="does not match"):
        ops_conv.ConvKernel(x, np.zeros((3, 1), np.float32), None, out, region, "relu")
    with pytest.raises(ValueError, match="C-contiguous float32"):
        ops_conv.ConvKernel(x.astype(np.float64), weight, None, out, region, "relu")


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 5),
    cout=st.integers(1, 17),
    h=st.integers(1, 9),
    w=st.integers(1, 75),
    k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    pads=st.tuples(*[st.integers(0, 3)] * 4),
    s=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    d=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    act=st.sampled_from(["none", "relu", "hard_swish"]),
    special=st.booleans(),
    band_bytes=st.sampled_from([1, 4096, 1 << 20]),
    seed=st.integers(0, 30),
)
def test_ops_conv_kernel_reads_the_unpadded_source_as_the_padded_copy(
    n, c, cout, h, w, k, pads, s, d, act, special, band_bytes, seed
):
    """The direct kernel over a zero-bordered source that is never written (``pad``: a
    band of output rows at a time, their window rows copied with the border into a scratch)
    gives the same bits as over the pad raster's copy, at every level: any pads, strides
    and dilations, bands of one row to the whole plane (``band_bytes``), rows narrower and
    wider than the tiles, NaN and infinities in the source (a border zero must not meet
    one)."""
    ops_conv = _ops_conv()
    top, left, bottom, right = pads
    if (k[0] - 1) * d[0] + 1 > h + top + bottom or (k[1] - 1) * d[1] + 1 > w + left + right:
        return
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (n, c, h, w)).astype(np.float32)
    if special:
        x.reshape(-1)[rng.integers(0, x.size, 3)] = [np.nan, np.inf, -np.inf]
    weight = rng.uniform(-1, 1, (cout, c, *k)).astype(np.float32)
    bias = rng.uniform(-1, 1, cout).astype(np.float32)
    b = GraphBuilder()
    y = b.conv2d(
        b.input("x", x.shape), b.const(weight), b.const(bias), strides=s, dilations=d,
        pads=pads,
    )  # fmt: skip
    graph = b.build([y])
    region = im2col_node(graph).attr("regions")[0]
    padded = np.pad(x, [(0, 0), (0, 0), (top, bottom), (left, right)])
    hp, wp = padded.shape[2:]
    assert ops_conv.pad_fits(region, x.shape, (top, left, hp, wp))
    for level in ("avx512", "avx2", "sse"):
        want = np.full(graph.shape(graph.outputs[0]), 7.0, np.float32)
        got = want.copy()
        flat = weight.reshape(cout, -1)
        try:
            ops_conv.ConvKernel(padded, flat, bias, want, region, act, level).run()
        except ValueError as exc:
            assert "does not run" in str(exc)
            continue
        border = (top, left, hp, wp)
        ops_conv.ConvKernel(
            x, flat, bias, got, region, act, level, pad=border, band_bytes=band_bytes
        ).run()
        np.testing.assert_array_equal(got, want, err_msg=level)


def test_ops_conv_kernel_refuses_a_pad_that_does_not_fit_the_region() -> None:
    ops_conv = _ops_conv()
    b = GraphBuilder()
    y = b.conv2d(b.input("x", (1, 2, 5, 6)), b.const(np.ones((3, 2, 2, 2), np.float32)), None,
                 pads=(0, 0, 1, 1))  # fmt: skip
    graph = b.build([y])
    region = im2col_node(graph).attr("regions")[0]
    x = np.zeros((1, 2, 5, 6), np.float32)
    out = np.zeros(graph.shape(graph.outputs[0]), np.float32)
    assert ops_conv.pad_fits(region, x.shape, (0, 0, 6, 7))
    assert not ops_conv.pad_fits(region, x.shape, (0, 0, 6, 8))  # not the region's planes
    assert not ops_conv.pad_fits(region, x.shape, (2, 0, 6, 7))  # the source past the border
    assert not ops_conv.pad_fits(region, (1, 3, 5, 6), (0, 0, 6, 7))  # another source
    with pytest.raises(ValueError, match=r"pad \(2, 0, 6, 7\).*does not fit"):
        ops_conv.ConvKernel(x, np.ones((3, 8), np.float32), None, out, region, "none",
                            pad=(2, 0, 6, 7))  # fmt: skip

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

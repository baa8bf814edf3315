"""A stem conv and the pooling that alone reads its output, run a band of rows at a time
(``ops_conv.LanesPoolKernel``, conv_pool.h), and the plan pass that puts them together.

The joint kernel must give the same bits as the lanes conv and the window reduce run apart,
for any band size (one pooled row a band, a few, all of them), window and stride (rows shared
by two bands' windows are moved, not recomputed; windows that do not overlap; rows past the
last window never computed), batch, sum / mean / max with NaN and inf in the input, every
conv tile level and every pool level. A plan puts them together only where the pool is the
conv's one reader.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import backend_or_skip, compile_placed, im2col_node, run1_matches_reference
from walle.ops import GraphBuilder
from walle.ops.ir import Region

_LEVELS = ("avx512", "avx2", "sse")


def _kernels():
    backend_or_skip("cython")
    from walle._kernels import ops_conv, ops_raster

    return ops_conv, ops_raster


def _stem(rng, n, c, cout, oh, ow, k, s, special):
    """A conv's input, weights, bias and im2col region giving an oh x ow output."""
    x = rng.uniform(-2, 2, (n, c, (oh - 1) * s + k, (ow - 1) * s + k)).astype(np.float32)
    if special:
        flat = x.reshape(-1)
        flat[::29] = np.nan
        flat[3::31] = np.inf
        flat[5::37] = -np.inf
    weight = rng.uniform(-1, 1, (cout, c, k, k)).astype(np.float32)
    bias = rng.uniform(-1, 1, cout).astype(np.float32)
    b = GraphBuilder()
    conv = b.conv2d(b.input("x", x.shape), b.const(weight), b.const(bias), strides=(s, s))
    graph = b.build([conv])
    return x, weight.reshape(cout, -1), bias, im2col_node(graph).attr("regions")[0]


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 3),
    cout=st.integers(1, 40),
    oh=st.integers(2, 30),
    ow=st.integers(16, 60),
    k=st.sampled_from([1, 3, 7]),
    s=st.integers(1, 4),
    pk=st.integers(2, 4),
    ps=st.integers(1, 3),
    kind=st.sampled_from([0, 1, 2]),
    pads=st.one_of(st.none(), st.tuples(*[st.integers(0, 2)] * 4)),
    band_bytes=st.sampled_from([1, 3000, 40000, 1 << 30]),
    special=st.booleans(),
    deep=st.booleans(),
    seed=st.integers(0, 50),
)
def test_ops_lanes_pool_kernel_is_the_two_kernels_apart_bit_for_bit(
    n, c, cout, oh, ow, k, s, pk, ps, kind, pads, band_bytes, special, deep, seed
) -> None:
    """Against the lanes conv (its first-layer tiles or its deep ones, which write the band
    buffer's rows a position at a time), a pad of its output (the border ``fill``: -inf for
    a max, 0 for a sum or mean) and the window reduce, run apart."""
    ops_conv, ops_raster = _kernels()
    rng = np.random.default_rng(seed)
    x, weight, bias, region = _stem(rng, n, c, cout, oh, ow, k, s, special)
    top, bottom, left, right = pads or (0, 0, 0, 0)
    hp, wp = oh + top + bottom, ow + left + right
    pk, sw = min(pk, hp), min(ps, 2)
    ph, pw = (hp - pk) // ps + 1, (wp - pk) // sw + 1
    sizes = (pk, pk, n, cout, ph, pw)
    strides = (wp, 1, cout * hp * wp, hp * wp, ps * wp, sw)
    pool_region = Region(0, 0, strides, 0, (0,) * 6, sizes)
    fill = -np.inf if kind == 2 else 0.0
    pad = None if pads is None else (top, left, hp, wp)
    saved = ops_raster.level()
    try:
        for level in _LEVELS:
            mid = np.full((n, cout, oh, ow), -7.0, np.float32)
            try:
                conv = ops_conv.LanesConvKernel(
                    x, weight, bias, mid, region, "relu", level, deep=deep
                )
            except ValueError as exc:
                assert "does not run" in str(exc)
                continue
            conv.run()
            bordered = np.pad(mid, ((0, 0), (0, 0), (top, bottom), (left, right)),
                              constant_values=fill)  # fmt: skip
            for pool_level in range(ops_raster.best_level() + 1):
                ops_raster.set_level(pool_level)
                want = np.full((n, cout, ph, pw), -7.0, np.float32)
                ops_raster.WindowReduceKernel(bordered, want, pool_region, kind).run()
                got = np.full(want.shape, 5.0, np.float32)
                joint = ops_conv.LanesPoolKernel(
                    conv, got, sizes, strides, kind, pool_level, band_bytes, pad, fill
                )
                assert 1 <= joint.band <= ph
                for _ in range(2):  # the band buffer's border survives a run
                    joint.run()
                    np.testing.assert_array_equal(got, want, err_msg=f"{level} {pool_level}")
                again = np.full(want.shape, 5.0, np.float32)
                caller = x.copy()
                joint.run_io(caller, again)  # the caller's input, read where it lies
                np.testing.assert_array_equal(again, want, err_msg=f"run_io {level}")
                np.testing.assert_array_equal(caller, x)
    finally:
        ops_raster.set_level(saved)


@pytest.mark.parametrize("pads", [None, (1, 1, 1, 1)])
def test_ops_lanes_pool_kernel_splits_its_bands_over_the_convs_threads(pads) -> None:
    """A conv big enough for several threads, in bands of a few rows: each thread's share
    starts at any band of any image and computes that band's rows itself; the same bits as
    apart. (On a one-thread build the same check runs on one thread.)"""
    ops_conv, ops_raster = _kernels()
    rng = np.random.default_rng(7)
    n, cout, oh, ow = 3, 40, 29, 37
    x, weight, bias, region = _stem(rng, n, 3, cout, oh, ow, 7, 2, False)
    mid = np.empty((n, cout, oh, ow), np.float32)
    conv = ops_conv.LanesConvKernel(x, weight, bias, mid, region, "relu")
    conv.run()
    assert np.isfinite(mid).all() and mid.any()
    top, bottom, left, right = pads or (0, 0, 0, 0)
    hp, wp = oh + top + bottom, ow + left + right
    ph, pw = (hp - 3) // 2 + 1, (wp - 3) // 2 + 1
    sizes, strides = (3, 3, n, cout, ph, pw), (wp, 1, cout * hp * wp, hp * wp, 2 * wp, 2)
    bordered = np.pad(mid, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=-np.inf)
    want = np.empty((n, cout, ph, pw), np.float32)
    region6 = Region(0, 0, strides, 0, (0,) * 6, sizes)
    ops_raster.WindowReduceKernel(bordered, want, region6, 2).run()
    pad = None if pads is None else (top, left, hp, wp)
    for band_bytes in (1, 4 * cout * wp * 7, 1 << 30):
        got = np.full(want.shape, 5.0, np.float32)
        joint = ops_conv.LanesPoolKernel(
            conv, got, sizes, strides, 2, ops_raster.level(), band_bytes, pad, -np.inf
        )
        joint.run()
        np.testing.assert_array_equal(got, want, err_msg=f"band {joint.band}, {conv.threads}")


@pytest.mark.parametrize(("deep", "pads"), [(False, (1, 1, 1, 1)), (True, (3, 0, 2, 1))])
def test_ops_lanes_pool_kernel_takes_a_conv_that_reads_an_unpadded_source(deep, pads) -> None:
    """A lanes conv given the unpadded source (``pad``): the joint kernel pads it into a
    buffer of its own first (its bands read whole padded rows), the same bits as the conv
    on the padded tensor, run apart, and the pool; run_io pads the caller's array."""
    ops_conv, ops_raster = _kernels()
    rng = np.random.default_rng(11)
    n, c, cout, oh, ow = 2, 3, 20, 17, 23
    x, weight, bias, region = _stem(rng, n, c, cout, oh, ow, 7, 2, False)
    top, bottom, left, right = pads
    x[:, :, :top], x[:, :, x.shape[2] - bottom :] = 0.0, 0.0
    x[:, :, :, :left], x[:, :, :, x.shape[3] - right :] = 0.0, 0.0
    source = np.ascontiguousarray(x[:, :, top : x.shape[2] - bottom, left : x.shape[3] - right])
    hp, wp = x.shape[2:]
    mid = np.empty((n, cout, oh, ow), np.float32)
    ops_conv.LanesConvKernel(x, weight, bias, mid, region, "relu", deep=deep).run()
    ph, pw = (oh - 3) // 2 + 1, (ow - 3) // 2 + 1
    sizes, strides = (3, 3, n, cout, ph, pw), (ow, 1, cout * oh * ow, oh * ow, 2 * ow, 2)
    want = np.empty((n, cout, ph, pw), np.float32)
    ops_raster.WindowReduceKernel(mid, want, Region(0, 0, strides, 0, (0,) * 6, sizes), 2).run()
    conv = ops_conv.LanesConvKernel(
        source, weight, bias, np.empty_like(mid), region, "relu", deep=deep,
        pad=(top, left, hp, wp),
    )  # fmt: skip
    got = np.full(want.shape, 5.0, np.float32)
    joint = ops_conv.LanesPoolKernel(conv, got, sizes, strides, 2, ops_raster.level(), 4096)
    for _ in range(2):
        joint.run()
        np.testing.assert_array_equal(got, want)
    again = np.full(want.shape, 5.0, np.float32)
    joint.run_io(source.copy(), again)
    np.testing.assert_array_equal(again, want)


def test_ops_lanes_pool_kernel_refuses_what_is_not_a_row_pooling_of_the_whole_output() -> None:
    ops_conv, _ = _kernels()
    rng = np.random.default_rng(0)
    x, weight, bias, region = _stem(rng, 1, 3, 8, 9, 20, 3, 2, False)
    mid = np.zeros((1, 8, 9, 20), np.float32)
    conv = ops_conv.LanesConvKernel(x, weight, bias, mid, region, "relu")
    good = ((3, 3, 1, 8, 4, 9), (20, 1, 8 * 180, 180, 40, 2))
    y = np.zeros((1, 8, 4, 9), np.float32)
    ops_conv.LanesPoolKernel(conv, y, *good, 2, 0, 4096)
    bad = [
        ((3, 3, 1, 8, 5, 9), good[1]),  # a fifth row of windows reads past the output
        ((3, 3, 1, 8, 4, 10), good[1]),  # so does a tenth column
        ((3, 3, 1, 7, 4, 9), good[1]),  # not every channel
        (good[0], (20, 1, 8 * 180, 180, 40, 3)),  # column stride 3: not the row kernels'
        (good[0], (21, 1, 8 * 180, 180, 40, 2)),  # rows not the output's
        ((3, 1, 1, 8, 4, 9), good[1]),  # one column a window: not separable rows
    ]
    for sizes, strides in bad:
        out = np.zeros(int(np.prod(sizes[2:])), np.float32)
        with pytest.raises(ValueError, match="lanes pool kernel"):
            ops_conv.LanesPoolKernel(conv, out, sizes, strides, 2, 0, 4096)
    bordered = ((3, 3, 1, 8, 5, 10), (22, 1, 8 * 242, 242, 44, 2))  # 11 x 22 planes
    ops_conv.LanesPoolKernel(conv, np.zeros(400, np.float32), *bordered, 2, 0, 4096,
                             (1, 1, 11, 22), -np.inf)  # fmt: skip
    for pad in ((3, 1, 11, 22), (1, 3, 11, 22), (-1, 1, 11, 22)):  # the output outside
        with pytest.raises(ValueError, match="lanes pool kernel"):
            ops_conv.LanesPoolKernel(conv, np.zeros(400, np.float32), *bordered, 2, 0, 4096,
                                     pad, -np.inf)  # fmt: skip
    with pytest.raises(ValueError, match="lanes pool kernel: the output"):
        ops_conv.LanesPoolKernel(conv, np.zeros(5, np.float32), *good, 2, 0, 4096)


def _stem_graph(second_reader: bool, pool: str):
    """An RGB stem (3x3/2, or ResNet's 7x7/2 pad 3 where the pool is padded) and its pool."""
    rng = np.random.default_rng(3)
    padded = pool in ("max_pad", "avg_pad", "max_ceil")
    k, cout, pad = (7, 24, 3) if padded else (3, 8, 1) if pool == "small" else (3, 24, 0)
    weight = rng.uniform(-1, 1, (cout, 3, k, k)).astype(np.float32)
    b = GraphBuilder()
    x = b.input("x", (1, 3, 67, 71))
    bias = b.const(np.linspace(-1, 1, cout, dtype=np.float32))
    conv = b.conv2d(x, b.const(weight), bias, strides=(2, 2), pads=(pad,) * 4)
    y = b.relu(conv)
    pooled = {
        "max": lambda: b.max_pool(y, (3, 3), strides=(2, 2)),
        "avg": lambda: b.avg_pool(y, (2, 2), strides=(2, 2)),
        "max_pad": lambda: b.max_pool(y, (3, 3), strides=(2, 2), pads=(1, 1, 1, 1)),
        "avg_pad": lambda: b.avg_pool(y, (3, 3), strides=(2, 2), pads=(1, 1, 1, 1)),
        "max_ceil": lambda: b.max_pool(y, (3, 3), strides=(2, 2), ceil_mode=True),
        "small": lambda: b.max_pool(y, (3, 3), strides=(2, 2), pads=(1, 1, 1, 1)),
    }[pool]()
    out = b.softmax(b.reshape(pooled, (1, -1)))
    if second_reader:
        out = b.binary("add", out, b.reduce("sum", y, (1, 2, 3), keepdims=False))
    return b.build([out]), y


@pytest.mark.parametrize(
    ("second_reader", "pool"),
    [
        (False, "max"),
        (False, "avg"),
        (True, "max"),
        (False, "max_pad"),
        (False, "avg_pad"),
        (False, "max_ceil"),
        (True, "max_pad"),
        (False, "small"),
    ],
)
def test_ops_plan_runs_a_stem_and_its_pooling_as_one_call_where_the_pool_alone_reads_it(
    second_reader, pool, monkeypatch
) -> None:
    """The lanes stem conv and its max (or average) pool, padded or not (ResNet-50's 3x3/2
    pad 1; a ceil-mode tail), become one call of the plan; with a second reader of the
    conv's output they stay two calls. The first call reads the caller's image in place
    either way. The output is the reference's. ``small``: ShuffleNet's shape of stem, whose
    pooled output would fit in the block of the padded image, which the joint call still
    reads while it writes (the plan keeps that image's block apart: written there, the
    output was wrong by 0.29 of its scale)."""
    ops_conv, _ = _kernels()
    from walle.ops.backends import cython_backend

    # an L2 of 16 KiB: bands of a few rows, so that early bands' outputs are written while
    # later bands still read the image
    monkeypatch.setattr(cython_backend, "_l2_bytes", lambda: 16 << 10)
    graph, conv_out = _stem_graph(second_reader, pool)
    plan = compile_placed(graph, lambda step: "cython", algorithms={conv_out: "lanes"})
    kernels = [type(getattr(call, "__self__", None)).__name__ for _, call in plan.step_calls]
    joint = kernels.count(ops_conv.LanesPoolKernel.__name__)
    assert joint == (0 if second_reader else 1), kernels
    assert ("LanesConvKernel" in kernels) == second_reader
    assert plan._reader is not None
    run1_matches_reference(plan, graph, (1, 3, 67, 71))


@pytest.mark.parametrize("name", ["shufflenet", "squeezenet"])
def test_ops_light_models_with_a_joint_stem_match_onnxruntime(name, monkeypatch, tmp_path) -> None:
    """The onnx wheel's ShuffleNet and SqueezeNet 1.1 (random weights, so that the output
    depends on the input) with their stem on the lanes kernel, so that it and its pool run as
    one call (in bands of a 64 KiB L2's half, several per image), every value sharing memory
    as the benchmark's plans do: onnxruntime's output. (A benchmark run caught ShuffleNet
    0.29 off while the plan let the pool's output take the padded image's block.)"""
    backend_or_skip("cython")
    import onnx
    import onnxruntime as ort

    from tests.unit.ops._light_models import LIGHT, light_input, randomised
    from walle.ops.backends import cython_backend
    from walle.ops.fusion import find_steps
    from walle.ops.onnx_import import import_onnx

    monkeypatch.setattr(cython_backend, "_l2_bytes", lambda: 64 << 10)
    proto = onnx.load(str(LIGHT / f"light_{name}.onnx"))
    model = randomised(proto)
    graph = import_onnx(model, batch=1)
    stem = next(s for s in find_steps(graph) if s.op == "fused.conv2d")
    plan = compile_placed(graph, lambda step: "cython", algorithms={stem.output: "lanes"})
    kernels = [type(getattr(call, "__self__", None)).__name__ for _, call in plan.step_calls]
    assert "LanesPoolKernel" in kernels, kernels
    x = light_input(proto)
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    got = plan.run1(x)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()

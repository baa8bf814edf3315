"""walle.ops conv kernels alone, per layer shape, against im2col + numpy's BLAS in the same run.

Run: ``taskset -c 1 .venv/bin/python benchmarks/conv_bench.py`` (one thread; ``--isa`` picks
the instruction-set levels, default every level this CPU runs). For each shape of the real
CNNs' 3x3 and 5x5 stride-1 layers (ResNet-50, VGG-19, DenseNet-121, SqueezeNet, AlexNet) it
times the cython backend's kernels built directly: ``direct`` (register tiles),
``winograd`` F(4x4, 3x3) and ``winograd_f2`` F(2x2, r x r), and the baseline: the im2col copy
plus numpy's matmul (OpenBLAS), the path every conv took before the Winograd kernel. Medians
of interleaved calls; ratios are baseline / kernel (above 1: the kernel is faster), and each
kernel's output is checked against the baseline's (max abs diff relative to its scale).

A second table times the packed-GEMM kernel (``gemm``: 1x1 and strided convs, bias and ReLU
fused) on those layers of the same CNNs against the path they took before: the im2col copy
(none for a 1x1 stride-1 conv, whose input is its column matrix), numpy's matmul and the C
bias/ReLU epilogue, and, where it splits the reduction into fewer blocks, ``gemm_long`` (the
same kernel, blocks of up to 512 rows) against ``gemm``; a third the pooling kernel (3x3
windows) against onnxruntime's MaxPool / AveragePool (one thread) on the same input, at
every level (a padded pool as a model runs it: over its unpadded source in place). A
fourth times the ``lanes`` kernel (first layers: the output channels in the vector lanes)
on the real CNNs' stems against the same baseline and the packed GEMM, a fifth its deep
tiles (``lanes_deep``: convs of many taps, strided ones above all) against the same baseline
and the packed GEMM at its faster blocking.
"""

from __future__ import annotations

import _one_thread  # noqa: F401  (first: one BLAS/OpenMP thread, set before numpy loads)

# isort: split

import argparse
import random
import statistics
import time
from collections.abc import Callable

import numpy as np

from walle.ops import GraphBuilder
from walle.ops.ir import Region

# (label, C, H=W, Cout, filter side) of real layers, batch 1, pad (side - 1) / 2
SHAPES = [
    ("ResNet-50 stage 1", 64, 56, 64, 3),
    ("ResNet-50 stage 2", 128, 28, 128, 3),
    ("ResNet-50 stage 3", 256, 14, 256, 3),
    ("ResNet-50 stage 4", 512, 7, 512, 3),
    ("VGG-19 conv1_2", 64, 224, 64, 3),
    ("DenseNet-121 block 3", 128, 14, 32, 3),
    ("SqueezeNet fire2 expand", 16, 55, 64, 3),
    ("AlexNet conv2 (a group)", 48, 27, 128, 5),
]


# (label, C, H=W, Cout, filter side, stride, pad) of the layers the packed GEMM takes
GEMM_SHAPES = [
    ("ResNet-50 stage 1 expand", 64, 56, 256, 1, 1, 0),
    ("ResNet-50 stage 1 reduce", 256, 56, 64, 1, 1, 0),
    ("ResNet-50 stage 2 downsample", 256, 56, 512, 1, 2, 0),
    ("ResNet-50 stage 3 expand", 256, 14, 1024, 1, 1, 0),
    ("ResNet-50 stage 4 expand", 512, 7, 2048, 1, 1, 0),
    ("ResNet-50 stage 4 reduce", 2048, 7, 512, 1, 1, 0),
    ("ResNet-50 stage 3 3x3 stride 2", 256, 28, 256, 3, 2, 1),
    ("ResNet-50 stage 4 3x3 stride 2", 512, 14, 512, 3, 2, 1),
    ("ResNet-50 stem 7x7 stride 2", 3, 224, 64, 7, 2, 3),
    ("SqueezeNet stem 3x3 stride 2", 3, 224, 64, 3, 2, 0),
    ("SqueezeNet conv10", 512, 13, 1000, 1, 1, 0),
]

# (label, C, H=W, Cout, filter side, stride, pad) of first layers (the lanes kernel's)
LANES_SHAPES = [
    ("ResNet-50 stem", 3, 224, 64, 7, 2, 3),
    ("SqueezeNet stem", 3, 224, 64, 3, 2, 0),
    ("AlexNet stem", 3, 224, 64, 11, 4, 2),
    ("ZFNet stem", 3, 224, 96, 7, 2, 1),
    ("VGG-19 conv1_1", 3, 224, 64, 3, 1, 1),
]

# (label, C, H=W, Cout, filter side, stride, pad) of convs of many taps (``lanes_deep``)
DEEP_SHAPES = [
    ("ResNet-50 v1.5 stage 2 3x3/2", 128, 56, 128, 3, 2, 1),
    ("ResNet-50 v1.5 stage 3 3x3/2", 256, 28, 256, 3, 2, 1),
    ("ResNet-50 v1.5 stage 4 3x3/2", 512, 14, 512, 3, 2, 1),
    ("YOLO downsample 3x3/2", 64, 80, 128, 3, 2, 1),
    ("ResNet-50 downsample 1x1/2", 512, 28, 1024, 1, 2, 0),
    ("VGG-19 conv5 3x3 (Winograd's)", 512, 14, 512, 3, 1, 1),
]

TABLES = ("conv", "gemm", "lanes", "deep", "pool")

# (label, C, H=W, stride, pad, kind) of 3x3 pooling layers; a padded one reads its unpadded
# source in place, as in a model (the pad raster is the pooling step's prologue)
POOL_SHAPES = [
    ("SqueezeNet pool1", 64, 111, 2, 0, "max"),
    ("SqueezeNet pool3", 128, 55, 2, 0, "max"),
    ("SqueezeNet pool5", 256, 27, 2, 0, "max"),
    ("ResNet-50 stem pool", 64, 112, 2, 1, "max"),
    ("Inception v2 pool (3a)", 192, 56, 2, 1, "max"),
    ("Inception v2 pool (4a)", 320, 28, 2, 1, "max"),
    ("Inception v2 pool (5a)", 576, 14, 2, 1, "max"),
    ("Inception v2 avg pool (4e)", 576, 14, 1, 1, "avg"),
    ("Inception v2 max pool (5b)", 1024, 7, 1, 1, "max"),
    ("GoogLeNet pool (4a)", 480, 28, 1, 1, "max"),
]


def _median_ms(fns: dict[str, Callable[[], object]], rounds: int = 15) -> dict[str, float]:
    """Median ms per call of each function, the functions interleaved round by round in an
    order shuffled each round (seeded): in a fixed order each always runs after the same
    other one, whose data has evicted its own."""
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    order, rng = list(fns.items()), random.Random(0)
    for _ in range(rounds):
        rng.shuffle(order)
        for name, fn in order:
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) * 1e3 for name, s in samples.items()}


def _region(c: int, size: int, side: int) -> Region:
    """The im2col region of a padded conv over [1, c, size, size] (as GraphBuilder makes it)."""
    b = GraphBuilder()
    pad = (side - 1) // 2
    w = b.const(np.zeros((1, c, side, side), np.float32))
    graph = b.build([b.conv2d(b.input("x", (1, c, size, size)), w, pads=(pad,) * 4)])
    (node,) = [n for n in graph.nodes if n.op == "raster" and len(n.attr("regions")[0].sizes) == 6]
    region: Region = node.attr("regions")[0]
    return region


def _row(ops_conv, level: str, label: str, c: int, size: int, cout: int, side: int) -> str:
    rng = np.random.default_rng(0)
    pad = (side - 1) // 2
    xp = np.zeros((1, c, size + 2 * pad, size + 2 * pad), np.float32)
    xp[:, :, pad : pad + size, pad : pad + size] = rng.uniform(-1, 1, (1, c, size, size))
    weight = rng.uniform(-0.1, 0.1, (cout, c * side * side)).astype(np.float32)
    region = _region(c, size, side)
    view = np.lib.stride_tricks.as_strided(
        xp.reshape(-1)[region.src_offset :],
        region.sizes,
        tuple(4 * s for s in region.src_strides),
    )
    cols = np.empty((c * side * side, size * size), np.float32)
    base_out = np.empty((cout, size * size), np.float32)

    def baseline() -> None:
        np.copyto(cols.reshape(view.shape[1:]), view[0])
        np.matmul(weight, cols, out=base_out)

    outs = {"direct": np.empty((1, cout, size * size), np.float32)}
    fns: dict[str, Callable[[], object]] = {"im2col+BLAS": baseline}
    fns["direct"] = ops_conv.ConvKernel(xp, weight, None, outs["direct"], region, "none", level).run
    tiles = [("winograd", 4)] if side == 3 else []
    for name, tile in [*tiles, ("winograd_f2", 2)]:
        outs[name] = np.empty((1, cout, size * size), np.float32)
        kernel = ops_conv.WinogradKernel(xp, weight, None, outs[name], region, "none", level, tile)
        fns[name] = kernel.run
    times = _median_ms(fns)
    base = times["im2col+BLAS"]
    cells = []
    for name in ("direct", "winograd", "winograd_f2"):
        if name not in times:
            cells.append("-")
            continue
        diff = float(np.abs(outs[name][0] - base_out).max() / np.abs(base_out).max())
        cells.append(f"{times[name]:.3f} ({base / times[name]:.2f}x, {diff:.0e})")
    return f"| {label} | {c}x{size}x{size} -> {cout}, {side}x{side} | {level} | {base:.3f} | " + (
        " | ".join(cells) + " |"
    )


def _conv_region(
    c: int, size: int, side: int, stride: int, pad: int
) -> tuple[Region, tuple[int, ...]]:
    """The im2col region of a conv over the zero-padded [1, c, size, size], and that shape."""
    hp = size + 2 * pad
    out = (hp - side) // stride + 1
    strides = (c * hp * hp, hp * hp, hp, 1, stride * hp, stride)
    return Region(0, 0, strides, 0, (0,), (1, c, side, side, out, out)), (1, c, hp, hp)


def _baseline(ops_math, shape: tuple):
    """(padded input, weight, bias, region, output, baseline) for a conv ``shape`` of
    GEMM_SHAPES or LANES_SHAPES: the baseline is the path those convs took before walle's
    own kernels, the im2col copy (none for a 1x1 stride-1 conv, whose input is its column
    matrix), numpy's matmul and the C bias/ReLU epilogue, writing ``output``."""
    _, c, size, cout, side, stride, pad = shape
    rng = np.random.default_rng(1)
    region, padded = _conv_region(c, size, side, stride, pad)
    xp = np.zeros(padded, np.float32)
    xp[:, :, pad : pad + size, pad : pad + size] = rng.uniform(-1, 1, (1, c, size, size))
    weight = rng.uniform(-0.1, 0.1, (cout, c * side * side)).astype(np.float32)
    bias = rng.uniform(-0.1, 0.1, cout).astype(np.float32)
    _, _, _, _, oh, ow = region.sizes
    view = np.lib.stride_tricks.as_strided(
        xp.reshape(-1), region.sizes, tuple(4 * s for s in region.src_strides)
    )[0].reshape(c * side * side, oh * ow)
    plain = side == 1 and stride == 1 and pad == 0
    cols = xp.reshape(c, oh * ow) if plain else np.empty((c * side * side, oh * ow), np.float32)
    base_out = np.empty((cout, oh * ow), np.float32)
    epilogue = ops_math.GemmKernel(weight, cols, base_out, bias, 2, "relu", True)

    def baseline() -> None:
        if not plain:
            np.copyto(cols, view)
        np.matmul(weight, cols, out=base_out)
        epilogue.run()

    return xp, weight, bias, region, base_out, baseline


def _diff(out: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(out[0] - want).max() / max(np.abs(want).max(), 1e-30))


def _gemm_row(ops_conv, ops_math, level: str, shape: tuple) -> str:
    label, c, size, cout, side, stride, _ = shape
    xp, weight, bias, region, base_out, baseline = _baseline(ops_math, shape)
    out = np.empty((1, *base_out.shape), np.float32)
    kernel = ops_conv.GemmConvKernel(xp, weight, bias, out, region, "relu", level)
    fns = {"base": baseline, "gemm": kernel.run}
    long_out = np.empty_like(out)
    if ops_conv.gemm_long_fits(region, level):  # the reduction in fewer blocks
        fns["long"] = ops_conv.GemmConvKernel(
            xp, weight, bias, long_out, region, "relu", level, long_k=True
        ).run
    times = _median_ms(fns)
    gmac = base_out.size * c * side * side / (times["gemm"] * 1e6)
    long = "-"
    if "long" in times:
        same = "same bits" if np.array_equal(long_out, out) else "DIFFERENT bits"
        long = f"{times['long']:.3f} ({times['gemm'] / times['long']:.2f}x, {same})"
    return (
        f"| {label} | {c}x{size}x{size} -> {cout}, {side}x{side} /{stride} | {level} | "
        f"{times['base']:.3f} | {times['gemm']:.3f} ({times['base'] / times['gemm']:.2f}x, "
        f"{gmac:.0f} GMAC/s, {_diff(out, base_out):.0e}) | {long} |"
    )


def _lanes_row(ops_conv, ops_math, level: str, shape: tuple) -> str:
    """The lanes kernel (first layers) against the baseline and the packed GEMM."""
    label, c, size, cout, side, stride, _ = shape
    xp, weight, bias, region, base_out, baseline = _baseline(ops_math, shape)
    outs = {name: np.empty((1, *base_out.shape), np.float32) for name in ("gemm", "lanes")}
    gemm = ops_conv.GemmConvKernel(xp, weight, bias, outs["gemm"], region, "relu", level)
    lanes = ops_conv.LanesConvKernel(xp, weight, bias, outs["lanes"], region, "relu", level)
    times = _median_ms({"base": baseline, "gemm": gemm.run, "lanes": lanes.run})
    gmac = base_out.size * c * side * side / (times["lanes"] * 1e6)
    return (
        f"| {label} | {c}x{size}x{size} -> {cout}, {side}x{side} /{stride} | {level} | "
        f"{times['base']:.3f} | {times['gemm']:.3f} | {times['lanes']:.3f} "
        f"({times['base'] / times['lanes']:.2f}x, {times['gemm'] / times['lanes']:.2f}x, "
        f"{gmac:.0f} GMAC/s, {_diff(outs['lanes'], base_out):.0e}) |"
    )


def _deep_row(ops_conv, ops_math, level: str, shape: tuple) -> str:
    """The lanes kernel's deep tiles against the baseline and the packed GEMM (either
    blocking, the faster)."""
    label, c, size, cout, side, stride, _ = shape
    xp, weight, bias, region, base_out, baseline = _baseline(ops_math, shape)
    outs = {name: np.empty((1, *base_out.shape), np.float32) for name in ("gemm", "deep")}
    fns = {
        "base": baseline,
        "gemm": ops_conv.GemmConvKernel(xp, weight, bias, outs["gemm"], region, "relu", level).run,
        "deep": ops_conv.LanesConvKernel(
            xp, weight, bias, outs["deep"], region, "relu", level, deep=True
        ).run,
    }
    if ops_conv.gemm_long_fits(region, level):
        long_out = np.empty_like(outs["gemm"])
        fns["long"] = ops_conv.GemmConvKernel(
            xp, weight, bias, long_out, region, "relu", level, long_k=True
        ).run
    times = _median_ms(fns)
    gemm = min(times["gemm"], times.get("long", times["gemm"]))
    gflops = 2 * base_out.size * c * side * side / (times["deep"] * 1e6)
    return (
        f"| {label} | {c}x{size}x{size} -> {cout}, {side}x{side} /{stride} | {level} | "
        f"{times['base']:.3f} | {gemm:.3f} | {times['deep']:.3f} "
        f"({times['base'] / times['deep']:.2f}x, {gemm / times['deep']:.2f}x, "
        f"{gflops:.0f} GFLOP/s, {_diff(outs['deep'], base_out):.0e}) |"
    )


def _pool_row(ops_raster, level: str, shape: tuple) -> str:
    """The pooling kernel at ``level`` (set by the caller) against onnxruntime."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    label, c, size, stride, pad, kind = shape
    x = np.random.default_rng(2).uniform(-1, 1, (1, c, size, size)).astype(np.float32)
    op = "MaxPool" if kind == "max" else "AveragePool"
    extra = {"count_include_pad": 1} if kind == "avg" else {}  # walle's mean divides by 9
    node = helper.make_node(
        op, ["x"], ["y"], kernel_shape=[3, 3], strides=[stride] * 2, pads=[pad] * 4, **extra
    )
    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        [node],
        "pool",
        [value("x", TensorProto.FLOAT, x.shape)],
        [value("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    b = GraphBuilder()
    pool = b.max_pool if kind == "max" else b.avg_pool
    built = b.build([pool(b.input("x", x.shape), (3, 3), strides=(stride,) * 2, pads=(pad,) * 4)])
    region = [n for n in built.nodes if n.op == "raster"][-1].attr("regions")[0]
    want = session.run(None, {"x": x})[0]
    y = np.empty(want.shape, np.float32)
    code = 2 if kind == "max" else 1
    if pad:  # over the bordered [1, c, size + 2 pad, ...] that is never written
        side = size + 2 * pad
        planes = (np.arange(c, dtype=np.int64) * size * size, size, size, size, pad, pad)
        fill = -np.inf if kind == "max" else 0.0
        kernel = ops_raster.PaddedWindowReduceKernel(
            x, y, region, code, (*planes, side, side), fill
        )
    else:
        kernel = ops_raster.WindowReduceKernel(x, y, region, code)
    times = _median_ms({"ort": lambda: session.run(None, {"x": x}), "walle": kernel.run})
    kernel.run()
    diff = float(np.abs(y - want).max())
    return (
        f"| {label} | {c}x{size}x{size} {kind} /{stride} pad {pad} | {level} | "
        f"{times['ort']:.3f} | {times['walle']:.3f} ({times['ort'] / times['walle']:.2f}x, "
        f"{diff:.0e}) |"
    )


def _table(header: str, levels: list[str], shapes: list, row: Callable[[str, tuple], str]) -> None:
    """A markdown table: ``header``, then ``row(level, shape)`` for every level and shape."""
    print(header)
    print("|---" * header.count(" | ") + "|---|")
    for level in levels:
        for shape in shapes:
            print(row(level, shape), flush=True)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--isa", nargs="*", help="levels to run (avx512, avx2, sse)")
    parser.add_argument(
        "--tables",
        nargs="*",
        choices=TABLES,
        help=f"tables to print (default all: {', '.join(TABLES)})",
    )
    args = parser.parse_args()
    from walle._kernels import ops_conv, ops_math, ops_raster

    best = ops_conv.best_level()
    levels = args.isa or [name for name, v in ops_conv.LEVELS.items() if v <= best]
    tables = args.tables or TABLES
    if "conv" in tables:
        _table(
            "| layer | shape | level | im2col+BLAS ms | direct ms (ratio, diff) | winograd ms "
            "(ratio, diff) | winograd_f2 ms (ratio, diff) |",
            levels,
            SHAPES,
            lambda level, shape: _row(ops_conv, level, *shape),
        )
    if "gemm" in tables:
        _table(
            "| layer | shape | level | im2col+BLAS+epilogue ms | gemm ms (ratio, rate, diff) | "
            "gemm_long ms (ratio to gemm) |",
            levels,
            GEMM_SHAPES,
            lambda level, shape: _gemm_row(ops_conv, ops_math, level, shape),
        )
    if "lanes" in tables:
        _table(
            "| layer | shape | level | im2col+BLAS+epilogue ms | gemm ms | lanes ms (ratio to "
            "the baseline, to gemm, rate, diff) |",
            levels,
            LANES_SHAPES,
            lambda level, shape: _lanes_row(ops_conv, ops_math, level, shape),
        )
    if "deep" in tables:
        _table(
            "| layer | shape | level | im2col+BLAS+epilogue ms | gemm ms (the faster blocking) "
            "| lanes_deep ms (ratio to the baseline, to gemm, rate, diff) |",
            levels,
            DEEP_SHAPES,
            lambda level, shape: _deep_row(ops_conv, ops_math, level, shape),
        )
    if "pool" in tables:
        print("| layer | shape | level | onnxruntime ms | walle ms (ratio, max abs diff) |")
        print("|---|---|---|---|---|")
        try:
            for level in levels:
                ops_raster.set_level(ops_raster.LEVELS[level])
                for shape in POOL_SHAPES:
                    print(_pool_row(ops_raster, level, shape), flush=True)
        finally:
            ops_raster.set_level(ops_raster.best_level())


if __name__ == "__main__":
    main()

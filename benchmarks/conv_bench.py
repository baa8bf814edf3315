"""walle.ops conv kernels alone, per layer shape, against im2col + numpy's BLAS in the same run.

Run: ``taskset -c 1 .venv/bin/python benchmarks/conv_bench.py`` (one thread; ``--isa`` picks
the instruction-set levels, default every level this CPU runs). For each shape of the real
CNNs' 3x3 and 5x5 stride-1 layers (ResNet-50, VGG-19, DenseNet-121, SqueezeNet, AlexNet) it
times the cython backend's kernels built directly: ``direct`` (register tiles),
``winograd`` F(4x4, 3x3) and ``winograd_f2`` F(2x2, r x r), and the baseline: the im2col copy
plus numpy's matmul (OpenBLAS), the path every conv took before the Winograd kernel. Medians
of interleaved calls; ratios are baseline / kernel (above 1: the kernel is faster), and each
kernel's output is checked against the baseline's (max abs diff relative to its scale).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from walle.ops import GraphBuilder  # noqa: E402
from walle.ops.ir import Region  # noqa: E402

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


def _median_ms(fns: dict[str, Callable[[], object]], rounds: int = 15) -> dict[str, float]:
    """Median ms per call of each function, the functions interleaved round by round."""
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--isa", nargs="*", help="levels to run (avx512, avx2, sse)")
    args = parser.parse_args()
    from walle._kernels import ops_conv

    best = ops_conv.best_level()
    levels = args.isa or [name for name, v in ops_conv.LEVELS.items() if v <= best]
    print(
        "| layer | shape | level | im2col+BLAS ms | direct ms (ratio, diff) | winograd ms "
        "(ratio, diff) | winograd_f2 ms (ratio, diff) |"
    )
    print("|---|---|---|---|---|---|---|")
    for level in levels:
        for label, c, size, cout, side in SHAPES:
            print(_row(ops_conv, level, label, c, size, cout, side), flush=True)


if __name__ == "__main__":
    main()

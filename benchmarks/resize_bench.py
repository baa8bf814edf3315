"""walle.ops Resize against onnxruntime and the per-index lowering it replaced, one run.

Run: ``taskset -c 1 .venv/bin/python benchmarks/resize_bench.py`` (one thread).

Rows are the resizes of real networks: YOLO's and FPN's nearest 2x upsampling, a
segmentation head's bilinear upsampling (half_pixel, align_corners 4x, DeepLab's logits 8x
to 520 x 520), a bilinear 0.5x downsampling, a super-resolution input's bicubic 2x.
Three peers run each ONNX Resize with numpy in and out, timed in interleaved slices:

- walle: the model as imported (nearest: one take over every resized axis,
  ``GraphBuilder.take_axes``, a 2x upsampling's one region that the cython raster's repeat
  mode copies, each input row read once for its output rows; linear and cubic: axis by
  axis, each axis's takes times weights, summed, one ``fused.resample`` step that reads
  each output's taps where they lie, the axis passes ordered so that the innermost one
  runs on the smallest tensor);
- per-index: one raster region per output index, the axes in order and each take, product
  and sum a step of its own (the naive baseline: Resize as it first ran);
- onnxruntime (1 thread).

Ratios are peer / walle (above 1: walle is faster); outputs are checked against
onnxruntime.
"""

from __future__ import annotations

import _one_thread  # noqa: F401  (first: one BLAS/OpenMP thread, set before numpy loads)

# isort: split

import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from ops_bench import _interleaved_median_us, _ort

import walle.ops.builder
import walle.ops.fusion
import walle.ops.onnx_import.resize
from walle.ops import Model
from walle.ops.onnx_import import import_onnx
from walle.ops.sample_models import resize_onnx

# (label, input shape, scales, mode, coordinate_transformation_mode, nearest_mode)
_HALF = ("half_pixel", "round_prefer_floor")
ROWS = [
    ("YOLOv3 upsample", (1, 256, 13, 13), (1, 1, 2, 2), "nearest", "asymmetric", "floor"),
    ("YOLOv3 upsample", (1, 128, 26, 26), (1, 1, 2, 2), "nearest", "asymmetric", "floor"),
    ("FPN top-down", (1, 256, 52, 52), (1, 1, 2, 2), "nearest", *_HALF),
    ("bilinear 2x", (1, 64, 56, 56), (1, 1, 2, 2), "linear", *_HALF),
    ("seg. head 4x", (1, 21, 64, 64), (1, 1, 4, 4), "linear", "align_corners", "floor"),
    ("bilinear 0.5x", (1, 64, 112, 112), (1, 1, 0.5, 0.5), "linear", *_HALF),
    ("DeepLab logits 8x", (1, 21, 65, 65), (1, 1, 8, 8), "linear", "align_corners", "floor"),
    ("bicubic 2x", (1, 3, 128, 128), (1, 1, 2, 2), "cubic", *_HALF),
]


@contextmanager
def _per_index():
    """The lowering before runs of slabs: a region per index, the axes in order, each tap's
    take, product and sum a step of its own."""
    builder, resize, fusion = walle.ops.builder, walle.ops.onnx_import.resize, walle.ops.fusion
    axis_runs, resample = builder._axis_runs, fusion._match_resample
    # a run of one slab per index (position t reads index i), never a gather
    builder._axis_runs = lambda idx, most=None: [
        (t, int(i), [(1, 0, 1)]) for t, i in enumerate(idx)
    ]
    resize.sorted = lambda axes, key=None: list(axes)  # type: ignore[attr-defined]
    fusion._match_resample = lambda m, node: None
    try:
        yield
    finally:
        builder._axis_runs, fusion._match_resample = axis_runs, resample
        del resize.sorted  # type: ignore[attr-defined]


def _walle(model, x: np.ndarray) -> Callable[[], object]:
    plan = Model(lambda rows: import_onnx(model, batch=rows)).plan(x.shape[0])
    return lambda: plan.run1(x)


def main() -> None:
    print(
        "| row | input | scales | mode | walle us | per-index us | onnxruntime us "
        "| per-index/walle | ort/walle | max abs diff vs ort |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, shape, scales, mode, transform, nearest in ROWS:
        model = resize_onnx(shape, scales, mode, transform, nearest)
        x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
        fns = {"walle": _walle(model, x)}
        with _per_index():
            fns["per_index"] = _walle(model, x)
        fns["ort"] = _ort(model, {"x": x})
        want = np.asarray(fns["ort"]())
        diff = max(float(np.abs(np.asarray(f()) - want).max()) for f in fns.values())
        t = _interleaved_median_us(fns, budget_s=2.0)
        print(
            f"| {label} | {'x'.join(map(str, shape))} | {'x'.join(f'{s:g}' for s in scales[2:])} "
            f"| {mode} ({transform}) | {t['walle']:,.1f} | {t['per_index']:,.1f} "
            f"| {t['ort']:,.1f} | {t['per_index'] / t['walle']:.2f} | {t['ort'] / t['walle']:.2f} "
            f"| {diff:.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

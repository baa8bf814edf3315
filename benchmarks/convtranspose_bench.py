"""walle.ops ConvTranspose against onnxruntime and the spread conv it replaced, one run.

Run: ``taskset -c 1 .venv/bin/python benchmarks/convtranspose_bench.py`` (one thread).

Rows are the transposed convs of decoders: U-Net's 2x2/2 up-convs, DCGAN's 4x4/2 generator
layers, an FCN-style 3x3/2 with output_padding, a 1-D 4/2 upsampler. Three peers run each
ONNX ConvTranspose with numpy in and out, timed in interleaved slices:

- walle: the model as imported (one stride-1 conv per stride phase, interleaved by a raster);
- spread: walle's own conv over the input spread ``strides`` apart with zeros between and
  padded, the weights flipped (the direct conv a ConvTranspose equals, built with
  ``GraphBuilder.spread`` and ``conv2d``): how walle ran it before, the naive baseline;
- onnxruntime (1 thread).

Ratios are peer / walle (above 1: walle is faster); outputs are checked against
onnxruntime.
"""

from __future__ import annotations

import _one_thread  # noqa: F401  (first: one BLAS/OpenMP thread, set before numpy loads)

# isort: split

import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))
from ops_bench import _interleaved_median_us, _ort

from walle.ops import GraphBuilder, Model
from walle.ops.search import compile_graph

# (label, C in, C out, input spatial size, kernel, stride, pad, output_padding)
ROWS = [
    ("U-Net up-conv 2x2/2, 256 -> 128, 28x28", 256, 128, (28, 28), 2, 2, 0, 0),
    ("U-Net up-conv 2x2/2, 128 -> 64, 56x56", 128, 64, (56, 56), 2, 2, 0, 0),
    ("DCGAN 4x4/2 pad 1, 256 -> 128, 8x8", 256, 128, (8, 8), 4, 2, 1, 0),
    ("DCGAN 4x4/2 pad 1, 128 -> 64, 16x16", 128, 64, (16, 16), 4, 2, 1, 0),
    ("FCN 3x3/2 pad 1 out_pad 1, 64 -> 32, 28x28", 64, 32, (28, 28), 3, 2, 1, 1),
    ("1-D 4/2 pad 1, 64 -> 32, L=2000", 64, 32, (2000,), 4, 2, 1, 0),
]


def _model(c_in: int, c_out: int, size: tuple[int, ...], k: int, s: int, p: int, o: int):
    axes = len(size)
    rng = np.random.default_rng(0)
    w = rng.uniform(-0.1, 0.1, (c_in, c_out, *([k] * axes))).astype(np.float32)
    b = rng.uniform(-0.1, 0.1, c_out).astype(np.float32)
    node = helper.make_node(
        "ConvTranspose",
        ["x", "w", "b"],
        ["y"],
        strides=[s] * axes,
        pads=[p] * 2 * axes,
        output_padding=[o] * axes,
    )
    graph = helper.make_graph(
        [node],
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c_in, *size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return proto, w, b


def _spread_plan(x: np.ndarray, w: np.ndarray, b: np.ndarray, s: int, p: int, o: int):
    """The direct conv over the spread input, 2-D (a 1-D row as [N, C, 1, L])."""
    lifted = x.ndim == 3
    x4 = x[:, :, None, :] if lifted else x
    w4 = w[:, :, None, :] if lifted else w
    k = w4.shape[2:]
    strides = (1, s) if lifted else (s, s)
    before = [0 if lifted else k[0] - 1 - p, k[1] - 1 - p]
    after = [0 if lifted else k[0] - 1 - p + o, k[1] - 1 - p + o]
    flipped = np.ascontiguousarray(w4.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
    g = GraphBuilder()
    xin = g.input("x", x4.shape)
    spread = g.spread(xin, strides, before, after)
    y = g.conv2d(spread, g.const(flipped), g.const(b))
    plan = compile_graph(g.build([y]))
    return lambda: plan(x4)[0]


def main() -> None:
    print(f"{'row':46s} {'walle us':>9s} {'spread us':>10s} {'ort us':>9s} "
          f"{'spread/walle':>12s} {'ort/walle':>9s} {'max abs diff':>12s}")  # fmt: skip
    for label, c_in, c_out, size, k, s, p, o in ROWS:
        proto, w, b = _model(c_in, c_out, size, k, s, p, o)
        x = np.random.default_rng(1).uniform(-1, 1, (1, c_in, *size)).astype(np.float32)
        path = Path(tempfile.mkdtemp()) / "convtranspose.onnx"
        onnx.save(proto, str(path))
        model = Model(path)
        ort = _ort(proto, {"x": x})
        spread = _spread_plan(x, w, b, s, p, o)
        want = ort()
        got = model(x)
        diff = float(np.abs(got - want).max())
        assert np.allclose(spread().reshape(want.shape), want, atol=1e-4), label
        t = _interleaved_median_us({"walle": partial(model, x), "spread": spread, "ort": ort})
        print(f"{label:46s} {t['walle']:9.0f} {t['spread']:10.0f} {t['ort']:9.0f} "
              f"{t['spread'] / t['walle']:12.2f} {t['ort'] / t['walle']:9.2f} {diff:12.1e}",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

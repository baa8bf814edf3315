"""TopK and ArgMax against onnxruntime's, one thread, same run: walle's plan of one ONNX node
(TopK: its ``topk`` indices kernel and the ``gather_elements`` of the values; ArgMax: an
``argmax`` reduce) and onnxruntime's session of the same model, timed in interleaved slices
(``ops_bench``'s), outputs checked equal. Ratios are onnxruntime / walle: above 1, walle is
faster.

Run: ``taskset -c 1 .venv/bin/python benchmarks/ops_topk_bench.py``. TopK rows: a
classifier's best few of 8,210 classes at batch 1 (an OCR head), a ranking's top 10 of
10,000 items for 64 users, a larger k (100 of 1,000: the heap path, a tenth of each row
kept), and the top 50 of 50,000. ArgMax rows: a CRNN's 25 steps of 8,210 classes, rows of
1,000 along and across, a segmentation map's channels. Values standard normal.
"""

from __future__ import annotations

import _one_thread  # noqa: F401  (first: one BLAS/OpenMP thread, set before numpy loads)

# isort: split
import sys
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))
import ops_bench

from walle.ops import compile_graph
from walle.ops.onnx_import import import_onnx

TOPK_ROWS = [((1, 8210), 5), ((64, 10_000), 10), ((64, 1000), 100), ((16, 50_000), 50)]
ARGMAX_ROWS = [((25, 1, 8210), 2), ((64, 1000), 1), ((64, 1000), 0), ((8, 256, 56, 56), 1)]


def _model(op: str, shape: tuple[int, ...], arg: int):
    """One TopK (k ``arg``, last axis) or ArgMax (axis ``arg``) node over ``shape``."""
    x = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))]
    if op == "TopK":
        node = helper.make_node("TopK", ["x", "k"], ["v", "i"], name="top")
        outputs = [
            helper.make_tensor_value_info("v", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("i", TensorProto.INT64, None),
        ]
        inits = [numpy_helper.from_array(np.array([arg], np.int64), "k")]
    else:
        node = helper.make_node("ArgMax", ["x"], ["i"], name="top", axis=arg, keepdims=0)
        outputs, inits = [helper.make_tensor_value_info("i", TensorProto.INT64, None)], []
    graph = helper.make_graph([node], op, x, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _row(op: str, shape: tuple[int, ...], arg: int) -> str:
    proto = _model(op, shape, arg)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(proto.SerializeToString(), options)
    plan = compile_graph(import_onnx(proto), use_cache=False)
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    feeds = {"x": x}
    for got, want in zip(plan(x), session.run(None, feeds), strict=True):
        np.testing.assert_array_equal(got, want)
    us = ops_bench._interleaved_median_us(
        {"ort": partial(session.run, None, feeds), "walle": partial(plan, x)}
    )
    what = f"k {arg}" if op == "TopK" else f"axis {arg}"
    cells = f"{us['ort']:.1f} | {us['walle']:.1f} | {us['ort'] / us['walle']:.2f}x"
    return f"| {op} {'x'.join(map(str, shape))}, {what} | {cells} |"


def main() -> None:
    cpu, level = ops_bench._cpu()
    print(f"CPU: {cpu}; walle's kernels at {level}\n")
    print("| row | onnxruntime us | walle us | ratio |")
    print("|---|---|---|---|")
    for shape, k in TOPK_ROWS:
        print(_row("TopK", shape, k), flush=True)
    for shape, axis in ARGMAX_ROWS:
        print(_row("ArgMax", shape, axis), flush=True)


if __name__ == "__main__":
    main()

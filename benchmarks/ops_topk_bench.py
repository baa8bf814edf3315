"""TopK against onnxruntime's, one thread, same run: walle's plan of one ONNX TopK node (its
``topk`` indices kernel and the ``gather_elements`` of the values) and onnxruntime's
session of the same model, timed in interleaved slices (``ops_bench``'s), outputs checked
equal. Ratios are onnxruntime / walle: above 1, walle is faster.

Run: ``taskset -c 1 .venv/bin/python benchmarks/ops_topk_bench.py``. Rows: a classifier's
best few of 8,210 classes at batch 1 (an OCR head), a ranking's top 10 of 10,000 items for 64
users, a larger k (100 of 1,000: the heap path, a tenth of each row kept), and the top 50 of
50,000; scores standard normal.
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

ROWS = [(1, 8210, 5), (64, 10_000, 10), (64, 1000, 100), (16, 50_000, 50)]


def _model(rows: int, n: int, k: int):
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], name="top")
    graph = helper.make_graph(
        [node],
        "topk",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, n])],
        [
            helper.make_tensor_value_info("v", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("i", TensorProto.INT64, None),
        ],
        [numpy_helper.from_array(np.array([k], np.int64), "k")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])


def main() -> None:
    cpu, level = ops_bench._cpu()
    print(f"CPU: {cpu}; walle's kernels at {level}\n")
    print("| rows x n, k | onnxruntime us | walle us | ratio |")
    print("|---|---|---|---|")
    for rows, n, k in ROWS:
        proto = _model(rows, n, k)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(proto.SerializeToString(), options)
        plan = compile_graph(import_onnx(proto), use_cache=False)
        x = np.random.default_rng(n).standard_normal((rows, n)).astype(np.float32)
        (want_v, want_i), (got_v, got_i) = session.run(None, {"x": x}), plan(x)
        np.testing.assert_array_equal(got_v, want_v)
        np.testing.assert_array_equal(got_i, want_i)
        feeds = {"x": x}
        us = ops_bench._interleaved_median_us(
            {"ort": partial(session.run, None, feeds), "walle": partial(plan, x)}
        )
        ratio = us["ort"] / us["walle"]
        print(f"| {rows} x {n}, {k} | {us['ort']:.1f} | {us['walle']:.1f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()

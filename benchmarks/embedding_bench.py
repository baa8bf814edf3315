"""walle.ops embedding lookups (Gather by integer ids) against onnxruntime and numpy, one run.

Run: ``taskset -c 1 .venv/bin/python benchmarks/embedding_bench.py`` (one thread).

Rows are the shapes of on-device recommenders: a lookup alone (the gather of 50 ids' rows from
a 100k-row table), and a model that looks up a behaviour sequence's item ids, averages them,
joins dense features and scores with a 2-layer MLP (batch 1: one request; batch 64: a page of
candidates). Three peers run each ONNX model with numpy in and out, timed in interleaved
slices:

- walle: the model as imported (its ids checked when the plan loads them);
- numpy: the same model written by hand (``np.take``, mean, matmuls): the naive baseline;
- onnxruntime (1 thread).

Ratios are peer / walle (above 1: walle is faster); outputs are checked against
onnxruntime.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import itertools  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from ops_bench import _interleaved_median_us, _ort  # noqa: E402

from walle.ops import Model  # noqa: E402

# (label, table rows, embedding dim, ids per row, batch, MLP hidden sizes; none: lookup only)
ROWS = [
    ("lookup, 100k x 64 table, 50 ids", 100_000, 64, 50, 1, ()),
    ("recommender b1, 100k x 32, 50 ids, MLP 256-128", 100_000, 32, 50, 1, (256, 128)),
    ("recommender b64, 100k x 32, 50 ids, MLP 256-128", 100_000, 32, 50, 64, (256, 128)),
]
DENSE = 16


def _model(rows: int, dim: int, seq: int, batch: int, hidden: tuple[int, ...]):
    """The ONNX model and the same computation in numpy."""
    rng = np.random.default_rng(0)
    table = rng.uniform(-0.1, 0.1, (rows, dim)).astype(np.float32)
    inits = [numpy_helper.from_array(table, "table")]
    nodes = [helper.make_node("Gather", ["table", "ids"], ["emb"])]
    inputs = [helper.make_tensor_value_info("ids", TensorProto.INT64, [batch, seq])]
    layers: list[tuple[np.ndarray, np.ndarray]] = []
    if hidden:
        inputs.append(helper.make_tensor_value_info("dense", TensorProto.FLOAT, [batch, DENSE]))
        nodes += [
            helper.make_node("ReduceMean", ["emb"], ["pooled"], axes=[1], keepdims=0),
            helper.make_node("Concat", ["pooled", "dense"], ["h0"], axis=1),
        ]
        sizes = [dim + DENSE, *hidden, 1]
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            w = rng.uniform(-0.2, 0.2, (a, b)).astype(np.float32)
            bias = rng.uniform(-0.1, 0.1, b).astype(np.float32)
            layers.append((w, bias))
            inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(bias, f"b{i}")]
            act = "Relu" if i < len(hidden) else "Sigmoid"
            nodes += [
                helper.make_node("Gemm", [f"h{i}", f"w{i}", f"b{i}"], [f"z{i}"]),
                helper.make_node(act, [f"z{i}"], [f"h{i + 1}"]),
            ]
        out = f"h{len(sizes) - 1}"
    else:
        out = "emb"
    graph = helper.make_graph(
        nodes, "t", inputs, [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])

    def by_hand(ids: np.ndarray, dense: np.ndarray | None = None) -> np.ndarray:
        emb = np.take(table, ids, axis=0)
        if not layers:
            return emb
        h = np.concatenate([emb.mean(axis=1), dense], axis=1)
        for i, (w, b) in enumerate(layers):
            z = h @ w + b
            h = np.maximum(z, 0) if i < len(layers) - 1 else 1 / (1 + np.exp(-z))
        return h

    return proto, by_hand


def main() -> None:
    print(f"{'row':50s} {'walle us':>9s} {'numpy us':>9s} {'ort us':>9s} "
          f"{'numpy/walle':>11s} {'ort/walle':>9s} {'max abs diff':>12s}")  # fmt: skip
    for label, rows, dim, seq, batch, hidden in ROWS:
        proto, by_hand = _model(rows, dim, seq, batch, hidden)
        rng = np.random.default_rng(1)
        feeds = {"ids": rng.integers(0, rows, (batch, seq)).astype(np.int64)}
        if hidden:
            feeds["dense"] = rng.uniform(-1, 1, (batch, DENSE)).astype(np.float32)
        path = Path(tempfile.mkdtemp()) / "embedding.onnx"
        onnx.save(proto, str(path))
        model = Model(path)
        args = list(feeds.values())
        walle: Callable[[], object] = partial(model.run, *args)
        ort = _ort(proto, feeds)
        want = ort()
        diff = float(np.abs(model.run(*args)[0] - want).max())
        assert np.allclose(by_hand(*args), want, atol=1e-5), label
        t = _interleaved_median_us({"walle": walle, "numpy": partial(by_hand, *args), "ort": ort})
        print(f"{label:50s} {t['walle']:9.1f} {t['numpy']:9.1f} {t['ort']:9.1f} "
              f"{t['numpy'] / t['walle']:11.2f} {t['ort'] / t['walle']:9.2f} {diff:12.1e}",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

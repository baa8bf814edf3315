"""walle.ops embedding lookups (Gather by integer ids) against onnxruntime and numpy, one run.

Run: ``taskset -c 1 .venv/bin/python benchmarks/embedding_bench.py`` (one thread).

Rows are the shapes of on-device recommenders: a lookup alone (the gather of 50 ids' rows from
a 100k-row table), and a model that looks up a behaviour sequence's item ids, averages them,
joins dense features and scores with a 2-layer MLP (batch 1: one request; batch 64: a page of
candidates). Three peers run each ONNX model with numpy in and out, timed in interleaved
slices:

- walle: the model as imported (its ids checked on load and by the gather);
- numpy: the same model written by hand (``np.take``, mean, matmuls): the naive baseline;
- onnxruntime (1 thread).

Ratios are peer / walle (above 1: walle is faster); outputs are checked against
onnxruntime.
"""

from __future__ import annotations

import _one_thread  # noqa: F401  (first: one BLAS/OpenMP thread, set before numpy loads)

# isort: split

import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))
from ops_bench import _interleaved_median_us, _ort

from walle.ops import Model
from walle.ops.sample_models import recommender_onnx

# (label, table rows, embedding dim, ids per row, batch, MLP hidden sizes; none: lookup only)
ROWS = [
    ("lookup, 100k x 64 table, 50 ids", 100_000, 64, 50, 1, ()),
    ("recommender b1, 100k x 32, 50 ids, MLP 256-128", 100_000, 32, 50, 1, (256, 128)),
    ("recommender b64, 100k x 32, 50 ids, MLP 256-128", 100_000, 32, 50, 64, (256, 128)),
]
DENSE = 16


def _model(rows: int, dim: int, seq: int, batch: int, hidden: tuple[int, ...]):
    """The ONNX model (walle.ops.sample_models.recommender_onnx at a fixed batch; the lookup
    alone where ``hidden`` is empty) and the same computation in numpy."""
    proto = recommender_onnx(rows, dim, seq, DENSE, hidden)
    for value in proto.graph.input:
        value.type.tensor_type.shape.dim[0].dim_value = batch
    weights = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    table = weights["table"]
    if not hidden:  # the lookup alone: its output is the embedded sequence
        del proto.graph.node[1:]
        del proto.graph.input[1:]
        kept = [i for i in proto.graph.initializer if i.name == "table"]
        del proto.graph.initializer[:]
        proto.graph.initializer.extend(kept)
        proto.graph.output[0].CopyFrom(
            helper.make_tensor_value_info("emb", TensorProto.FLOAT, None)
        )
        return proto, lambda ids: np.take(table, ids, axis=0)
    layers = [(weights[f"w{i}"], weights[f"b{i}"]) for i in range(len(hidden) + 1)]

    def by_hand(ids: np.ndarray, dense: np.ndarray) -> np.ndarray:
        h = np.concatenate([np.take(table, ids, axis=0).mean(axis=1), dense], axis=1)
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

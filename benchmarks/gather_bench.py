"""A Gather of constant ids: the first call (import, plan, search) and a call, walle's gather of
a constant against the raster of one region per run it replaced (the baseline), same run.

Run: ``taskset -c 1 .venv/bin/python benchmarks/gather_bench.py``. Each row is a Model of one
Gather of ``n`` random ids over a [4096, 8] table (axis 0), loaded from disk with a fresh
search cache; "first call" is ``Model(path)`` through its first ``run``, "call" the median of
20 calls after. The baseline (``builder._TAKE_GATHER_FROM`` raised past ``n``) runs up to 2^14
ids: it grows about linearly past that (2^16: 34 s, 2^20: nine minutes on the Zen 3).
"""

from __future__ import annotations

import _one_thread  # noqa: F401  (first: one BLAS/OpenMP thread, set before numpy loads)

# isort: split
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import walle.ops.builder
from walle.ops import Model
from walle.ops.sample_models import single_op_onnx


def _row(n: int, folder: Path) -> tuple[float, float]:
    """(first call s, call ms) of a Gather of n random constant ids."""
    ids = np.random.default_rng(n).integers(0, 4096, n)
    path = folder / f"gather{n}.onnx"
    path.write_bytes(
        single_op_onnx("Gather", [(4096, 8)], {"ids": ids}, axis=0).SerializeToString()
    )
    x = np.random.default_rng(0).standard_normal((4096, 8)).astype(np.float32)
    os.environ["WALLE_CACHE_DIR"] = tempfile.mkdtemp(prefix="walle-gather-bench-")
    start = time.perf_counter()
    model = Model(path)
    (y,) = model.run(x)
    first = time.perf_counter() - start
    np.testing.assert_array_equal(y, x[ids])
    calls = []
    for _ in range(20):
        start = time.perf_counter()
        model.run(x)
        calls.append(time.perf_counter() - start)
    return first, statistics.median(calls) * 1e3


def main() -> None:
    print("| ids | first call s (raster) | first call s | ratio | call ms (raster) | call ms |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        _row(16, Path(tmp))  # the backends' one-time start (OpenCL's context), timed by none
        for n in (1 << 10, 1 << 12, 1 << 14, 1 << 16, 1 << 20):
            first, call = _row(n, Path(tmp))
            if n <= 1 << 14:
                bound = walle.ops.builder._TAKE_GATHER_FROM
                walle.ops.builder._TAKE_GATHER_FROM = n + 1  # every take a raster
                try:
                    base_first, base_call = _row(n, Path(tmp))
                finally:
                    walle.ops.builder._TAKE_GATHER_FROM = bound
                cells = f"{base_first:.2f} | {first:.2f} | {base_first / first:.1f}x | "
                cells += f"{base_call:.3f} | {call:.3f}"
            else:
                cells = f"- | {first:.2f} | - | - | {call:.3f}"
            print(f"| 2^{n.bit_length() - 1} | {cells} |", flush=True)


if __name__ == "__main__":
    main()

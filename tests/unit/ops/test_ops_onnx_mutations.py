"""Damaged models as an attack set: 600 seeded mutations of the onnx wheel's node cases that
run (truncated files, dims of -1, 0, 2**31 and 10**12, attributes of -5, 0, 10**10 and NaN,
dangling inputs, grown initializers, unknown attributes, renamed outputs) each fail with a
WalleError naming what was wrong, or run; never with another exception. The mutations run in
a child process whose address space is capped at 4 GiB, so that one that slips past the size
bounds fails there (a MemoryError, reported) instead of taking the machine's memory."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[3]
RUNS = (Path(__file__).parent / "onnx_node_cases_that_run.txt").read_text().split()


def _cap_memory() -> None:
    limit = 4 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.parametrize("seed", [1, 2])
def test_mutated_models_fail_only_with_walle_errors(seed: int) -> None:
    child = subprocess.run(
        [sys.executable, "-m", "tests.unit.ops._mutation_fuzz", "300", str(seed), *RUNS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_cap_memory,
        env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    )
    assert child.returncode == 0, child.stdout[-4000:] + child.stderr[-4000:]

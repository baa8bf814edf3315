"""The onnx wheel's node test cases (``onnx.backend.test.case.node``: ~1,900 one-op models,
each with inputs and the outputs of ONNX's reference implementation, default attributes and
edge cases among them) as an oracle walle did not write.

On every backend each case is either refused when the Model is built, by a ModelError that
names the node and its op or the input, or it runs every data set to its outputs (the match
of :func:`assert_matches`). None may run to a wrong result or fail only when it runs. The
cases that run today (``onnx_node_cases_that_run.txt``) must keep running; a refused one may
start to run, but only if it then matches. The cases are generated once per worker (~10 s);
a test per backend walks them all and reports every case that fails.
"""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests._backends import backend_or_skip
from tests.unit.ops._onnx_oracle import assert_matches, names_what_it_refuses
from walle.errors import ModelError
from walle.ops import Model

RUNS = frozenset((Path(__file__).parent / "onnx_node_cases_that_run.txt").read_text().split())
BACKENDS = (None, "numpy", "cython", "opencl")


@cache
def _cases() -> tuple[object, ...]:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # the generators divide by zero on purpose
        return tuple(collect_testcases(None))


def _failure(case, path: Path, backend: str | None) -> str | None:
    """Why ``case`` fails the rule on ``backend``, or None."""
    onnx.save(case.model, str(path))
    try:
        model = Model(path, backend=backend, use_cache=False, trials=False)
    except ModelError as exc:
        if case.name in RUNS:
            return f"refused now: {exc}"
        if not names_what_it_refuses(str(exc), case.model):
            return f"refusal names no node, op or input: {exc}"
        return None
    for i, (inputs, outputs) in enumerate(case.data_sets):
        try:
            with np.errstate(all="ignore"):
                got = model.run(*inputs)
        except Exception as exc:  # any failure at run time breaks the rule
            return f"data set {i} fails when it runs: {type(exc).__name__}: {exc}"
        if len(got) != len(outputs):
            return f"data set {i}: {len(got)} outputs, expected {len(outputs)}"
        for j, (g, want) in enumerate(zip(got, outputs, strict=True)):
            try:
                assert_matches(g, np.asarray(want), f"data set {i} output {j}")
            except AssertionError as exc:
                return str(exc)
    return None


def test_the_generated_cases_hold_the_ones_that_run() -> None:
    names = {case.name for case in _cases()}
    assert len(names) >= 1500
    assert len(RUNS & names) >= 200  # a newer onnx may rename a few, not most


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b or "placed")
def test_every_node_case_matches_onnx_reference_or_is_refused_by_name(
    backend: str | None, tmp_path: Path
) -> None:
    if backend is not None:
        backend_or_skip(backend)
    failures = []
    for case in _cases():
        why = _failure(case, tmp_path / f"{case.name}.onnx", backend)
        if why is not None:
            failures.append(f"{case.name}: {why}")
    assert not failures, f"{len(failures)} cases:\n" + "\n".join(failures[:40])

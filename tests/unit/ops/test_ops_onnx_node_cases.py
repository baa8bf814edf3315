"""The onnx wheel's node test cases (``onnx.backend.test.case.node``: ~1,900 one-op models,
each with inputs and the outputs of ONNX's reference implementation, default attributes and
edge cases among them) as an oracle walle did not write.

On every backend each case is either refused when the Model is built, by a ModelError that
names the node and its op or the input, or it runs every data set to its outputs (the match
of :func:`assert_matches`). None may run to a wrong result or fail only when it runs. The
cases that run today (``onnx_node_cases_that_run.txt``) must keep running; a refused one may
start to run, but only if it then matches. The cases are generated once per worker (~10 s);
a test per backend walks them all and reports every case that fails.

Many cases feed shape-like operands (Resize's scales, Slice's starts, Pad's pads, a Clip's
bounds) as graph inputs, which walle needs as constants: a case refused as it is, with one
data set, is retried with every input but the first made an initializer, under the same rule
(``onnx_node_cases_that_run_with_constants.txt``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests._backends import backend_or_skip
from tests.unit.ops._onnx_oracle import assert_matches, names_what_it_refuses, node_cases
from walle.errors import ModelError
from walle.ops import Model

RUNS = frozenset((Path(__file__).parent / "onnx_node_cases_that_run.txt").read_text().split())
RUNS_WITH_CONSTANTS = frozenset(
    (Path(__file__).parent / "onnx_node_cases_that_run_with_constants.txt").read_text().split()
)
BACKENDS = (None, "numpy", "cython", "opencl")


def _with_constants(case) -> tuple[onnx.ModelProto, list] | None:
    """The case's model with every input but the first an initializer (its one data set's
    value), and its data sets; None where it has one input, several data sets, or inputs
    that are not tensors."""
    if len(case.model.graph.input) < 2 or len(case.data_sets) != 1:
        return None
    inputs, outputs = case.data_sets[0]
    proto = onnx.ModelProto()
    proto.CopyFrom(case.model)
    try:
        inits = [
            numpy_helper.from_array(np.asarray(value), spec.name)
            for spec, value in zip(proto.graph.input[1:], inputs[1:], strict=True)
        ]
    except (NotImplementedError, TypeError, ValueError):
        return None  # a sequence or an optional
    proto.graph.initializer.extend(inits)
    if proto.ir_version >= 4:  # before IR 4 an initializer must also be listed as an input
        del proto.graph.input[1:]
    return proto, [([inputs[0]], outputs)]


def _failure(case, path: Path, backend: str | None) -> str | None:
    """Why ``case`` fails the rule on ``backend``, or None."""
    why = _judge(case.name, case.model, case.data_sets, path, backend, RUNS)
    if why is not None or case.name in RUNS:
        return why
    variant = _with_constants(case)
    if variant is None:
        return None
    why = _judge(case.name, variant[0], variant[1], path, backend, RUNS_WITH_CONSTANTS)
    return None if why is None else f"(inputs but the first made initializers) {why}"


def _judge(name, proto, data_sets, path: Path, backend: str | None, runs) -> str | None:
    onnx.save(proto, str(path))
    try:
        model = Model(path, backend=backend, use_cache=False, trials=False)
    except ModelError as exc:
        if name in runs:
            return f"refused now: {exc}"
        if not names_what_it_refuses(str(exc), proto):
            return f"refusal names no node, op or input: {exc}"
        return None
    for i, (inputs, outputs) in enumerate(data_sets):
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
    names = {case.name for case in node_cases()}
    assert len(names) >= 1500
    assert len(RUNS & names) >= 300  # a newer onnx may rename a few, not most
    assert len(RUNS_WITH_CONSTANTS & names) >= 120
    assert not RUNS & RUNS_WITH_CONSTANTS


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b or "placed")
def test_every_node_case_matches_onnx_reference_or_is_refused_by_name(
    backend: str | None, tmp_path: Path
) -> None:
    if backend is not None:
        backend_or_skip(backend)
    failures = []
    for case in node_cases():
        why = _failure(case, tmp_path / f"{case.name}.onnx", backend)
        if why is not None:
            failures.append(f"{case.name}: {why}")
    assert not failures, f"{len(failures)} cases:\n" + "\n".join(failures[:40])

"""Sub-batches (walle.ops.subbatch): a batch run as runs of fewer rows through every step.

The choice is timed, so these tests fix the timing (a stand-in for ``time_candidates`` that
ranks the candidates as told) and check what the timing cannot decide: a graph that mixes
rows (batch statistics, rows reordered, a reduce over the batch) always runs whole, a split
plan gives the whole plan's outputs (hypothesis, over batches, sub-batch sizes and graphs),
the sizes tried, the cache, and the errors of a split plan's inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._backends import backend_or_skip
from walle.errors import ValidationError
from walle.ops import (
    CompiledPlan,
    GraphBuilder,
    Model,
    SubBatchPlan,
    explain,
    run_reference,
    subbatch,
)
from walle.ops.fusion import find_steps
from walle.ops.onnx_import import import_onnx
from walle.ops.sample_models import cnn_onnx
from walle.ops.search import Search

PLANE = (8, 64, 64)  # 128 KiB a row: 32 rows are 4 MiB, over SPLIT_FROM_BYTES


def _graph_for(mix: str | None, plane: tuple[int, ...] = PLANE):
    """A per-row graph of ``rows`` rows (relu, a scale, a 2x2 max pool), or one that mixes
    rows as ``mix`` says."""

    def graph_for(rows: int):
        b = GraphBuilder()
        x = b.input("x", (rows, *plane))
        y = b.binary("mul", b.relu(x), b.const(np.float32(0.5)))
        if mix == "batch-mean":  # batch statistics: every row minus the mean over rows
            y = b.binary("sub", y, b.reduce("mean", y, [0]))
        elif mix == "swap-halves":  # the second half of the batch first
            half = rows // 2
            first = b.slice(y, [0], [half], [0])
            second = b.slice(y, [half], [rows], [0])
            y = b.concat([second, first], axis=0)
        elif mix == "reversed":  # rows in reverse order
            y = b.slice(y, [rows - 1], [-rows - 1], [0], [-1])
        y = b.max_pool(y, (2, 2), strides=(2, 2))
        return b.build([y])

    return graph_for


def _ranked(monkeypatch, fastest: str) -> list[int]:
    """Make the timing rank the split plans (``fastest="split"``) or the whole one first;
    returns the list that records how many candidates each timing had."""
    seen: list[int] = []

    def timing(candidates, **_kwargs):
        seen.append(len(candidates))
        # the whole plan is the first candidate (subbatch._choose times it first)
        if fastest == "split":
            return [1.0] + [0.5 - 0.01 * i for i in range(len(candidates) - 1)]
        return [0.5] + [1.0] * (len(candidates) - 1)

    monkeypatch.setattr(subbatch, "time_candidates", timing)
    return seen


@pytest.fixture(autouse=True)
def _cache(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("WALLE_CACHE_DIR", str(tmp_path))


def test_a_faster_split_runs_in_sub_batches_with_the_whole_plans_outputs(monkeypatch) -> None:
    seen = _ranked(monkeypatch, "split")
    model = Model(_graph_for(None), backend="numpy")
    plan = model.plan(32)
    assert isinstance(plan, SubBatchPlan)
    assert seen == [3]  # whole, runs of 16 (2 MiB), runs of 2 (256 KiB)
    assert (plan.rows, plan.rows_per_run, plan.runs) == (32, 2, 16)
    x = np.random.default_rng(0).standard_normal((32, *PLANE)).astype(np.float32)
    want = run_reference(_graph_for(None)(32), {"x": x})[0]
    np.testing.assert_array_equal(model(x), want)
    rows = explain(plan)
    assert rows and all(r["runs"] == 16 for r in rows)
    assert rows[0]["shape"][0] == 2


def test_a_slower_split_runs_whole(monkeypatch) -> None:
    _ranked(monkeypatch, "whole")
    assert isinstance(Model(_graph_for(None), backend="numpy").plan(32), CompiledPlan)


@pytest.mark.parametrize("mix", ["batch-mean", "swap-halves", "reversed"])
def test_a_graph_that_mixes_rows_runs_whole_however_fast_a_split_would_be(monkeypatch, mix) -> None:
    seen = _ranked(monkeypatch, "split")
    model = Model(_graph_for(mix), backend="numpy")
    plan = model.plan(32)
    assert isinstance(plan, CompiledPlan)
    assert seen == []  # refused before any timing
    x = np.random.default_rng(1).standard_normal((32, *PLANE)).astype(np.float32)
    np.testing.assert_allclose(
        model(x), run_reference(_graph_for(mix)(32), {"x": x})[0], rtol=1e-6, atol=1e-6
    )


def test_a_graph_function_that_ignores_the_batch_runs_whole(monkeypatch) -> None:
    _ranked(monkeypatch, "split")
    whole = _graph_for(None)(32)
    model = Model(lambda _rows: whole, backend="numpy")
    assert isinstance(model.plan(32), CompiledPlan)


def test_small_batches_and_plans_without_trials_run_whole(monkeypatch) -> None:
    seen = _ranked(monkeypatch, "split")
    small = _graph_for(None, (8, 16, 16))  # 8 KiB a row: 32 rows stay in cache
    assert isinstance(Model(small, backend="numpy").plan(32), CompiledPlan)
    assert isinstance(Model(_graph_for(None), backend="numpy", trials=False).plan(32), CompiledPlan)
    assert isinstance(Model(_graph_for(None), backend="numpy").plan(1), CompiledPlan)
    assert seen == []


@pytest.mark.parametrize(
    "rows,row_bytes,want",
    [
        (64, 128 << 10, [16, 2]),  # ops_bench's CNN: 8 x 64 x 64 floats a row
        (32, 1 << 10, []),  # 32 KiB in all: stays whole
        (8, 3 << 20, [1]),  # a row alone is over both budgets (ResNet-50): runs of one row
        (12, 200 << 10, [6, 1]),  # divisors of 12 only (8 rows would fit 2 MiB)
        (7, 512 << 10, [1]),  # a prime batch: runs of 1 row; a row is over 256 KiB
    ],
)
def test_sizes_tried_are_the_largest_divisors_under_each_budget(rows, row_bytes, want) -> None:
    b = GraphBuilder()
    x = b.input("x", (rows, row_bytes // 4))
    graph = b.build([b.relu(x)])
    assert subbatch.candidate_rows(graph, find_steps(graph), rows) == want


def test_the_choice_is_cached_and_a_bad_entry_is_timed_again(monkeypatch, tmp_path) -> None:
    seen = _ranked(monkeypatch, "split")
    assert isinstance(Model(_graph_for(None), backend="numpy").plan(32), SubBatchPlan)
    assert seen == [3]
    assert isinstance(Model(_graph_for(None), backend="numpy").plan(32), SubBatchPlan)
    assert seen == [3]  # read from the cache: no timing
    (entry,) = (tmp_path / "ops-subbatch").glob("*.json")
    for bad in ['{"rows_per_run": 5}', '{"rows_per_run": "2"}', "{not json"]:
        entry.write_text(bad)  # 5 does not divide 32
        assert isinstance(Model(_graph_for(None), backend="numpy").plan(32), SubBatchPlan)
    assert seen == [3, 3, 3, 3]


def test_a_split_plan_checks_its_inputs(monkeypatch) -> None:
    _ranked(monkeypatch, "split")
    plan = Model(_graph_for(None), backend="numpy").plan(32)
    assert isinstance(plan, SubBatchPlan)
    with pytest.raises(ValidationError, match=r"input 'x' must have shape \(32, 8, 64, 64\)"):
        plan(np.zeros((16, *PLANE), np.float32))
    with pytest.raises(ValidationError, match="takes 1 inputs"):
        plan(np.zeros((32, *PLANE), np.float32), np.zeros(3, np.float32))
    with pytest.raises(ValidationError, match="does not divide"):
        SubBatchPlan(_graph_for(None)(32), CompiledPlan(*_parts(_graph_for(None)(3))))


def _parts(graph):
    search = Search(pin="numpy", trials=False, use_cache=False)
    steps, choices, _ = search.choose(graph)
    return graph, steps, choices, search.by_name


@settings(max_examples=15, deadline=None)
@given(
    runs=st.integers(1, 4),
    rows_per_run=st.integers(1, 3),
    seed=st.integers(0, 100),
)
def test_split_cnn_plans_give_the_whole_plans_outputs(runs, rows_per_run, seed) -> None:
    """Any sub-batch of a per-row CNN (conv, relu, pools, a dense layer): the same rows as
    the whole plan of the batch (the two plans may pick other kernels: a few ulps)."""
    backend_or_skip("cython")
    rows = runs * rows_per_run
    search = Search(pin="cython", trials=False, use_cache=False)
    model = cnn_onnx(seed)
    whole = subbatch._compile(import_onnx(model, batch=rows), search)
    part = subbatch._compile(import_onnx(model, batch=rows_per_run), search)
    split = SubBatchPlan(whole.graph, part)
    x = np.random.default_rng(seed).uniform(-2, 2, (rows, 3, 64, 64)).astype(np.float32)
    np.testing.assert_allclose(split(x)[0], whole(x)[0], rtol=1e-5, atol=1e-5)

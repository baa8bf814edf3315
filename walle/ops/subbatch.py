"""Sub-batches: whether a batch runs whole or as runs of fewer rows through every step.

A plan holds each value of the whole batch: at batch 64, a small CNN's first layer writes
8 MB, which has left the caches by the time the next layer reads it, so every layer waits on
memory. Run a few rows at a time through all the steps (depth first), each run's values stay
in cache: ops_bench's CNN at batch 64 ran 25% faster in runs of 16 rows than whole (Zen 3),
where onnxruntime had been 1.25x ahead.

That is only right where no step mixes rows: each output row must depend on the same input
row alone (a reduce, softmax or concat along the batch axis, or a transpose that moves it,
would break it). It is checked, not assumed. The graph of ``b`` rows must have the batch's
input and output shapes with the leading dim divided, and the sub-batch plan must give the
whole plan's outputs on random inputs; a step that mixes rows gives other values there.

Which sizes are tried: only batches whose largest value (a step's output or an input) is
over :data:`SPLIT_FROM_BYTES`, in runs whose largest value is near :data:`RUN_BYTES`
(the largest divisor of the batch under each), or one row at a time where a row's largest
value is over both (ResNet-50 at batch 8, 3 MB a row: 7% faster in runs of one row on the
Zen 3, its values then staying in L3 from one step to the next). Those runs are timed
against the whole plan in interleaved rounds; a sub-batch is kept only if it is faster by
more than :data:`SPLIT_MARGIN`. The choice is cached beside the search's decisions, keyed
by the same key as the whole graph's. Without trials the batch runs whole (cache effects
are measured, not modelled).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from walle.errors import ModelError, ValidationError
from walle.logging import get_logger
from walle.ops.diskcache import cache_dir, key_lock, publish
from walle.ops.fusion import FusedStep
from walle.ops.ir import FloatArray, Graph, sample_inputs
from walle.ops.plan import CompiledPlan, SubBatchPlan
from walle.ops.search import Search, time_candidates

_log = get_logger("walle.ops.subbatch")

# A batch whose largest value is at most this runs whole: its values stay in the caches.
SPLIT_FROM_BYTES = 2 << 20
# The largest value of a run that each tried sub-batch size aims under: about a core's L3
# share and about its L2 (a run's values then stay there from one step to the next).
RUN_BYTES = (2 << 20, 256 << 10)
# A sub-batch replaces the whole batch only if it timed faster by more than this.
SPLIT_MARGIN = 0.03
# Sub-batch outputs within this of the whole plan's (relative to the largest output value)
# agree: the two plans may pick other kernels (a few ulps apart), a step that mixes rows
# differs by the values' own scale.
AGREE = 1e-3

Plan = CompiledPlan | SubBatchPlan
GraphFor = Callable[[int], Graph]


def compile_batch(graph_for: GraphFor, rows: int, search: Search) -> Plan:
    """The plan for a batch of ``rows`` rows: whole, or runs of a sub-batch that timed
    faster (``graph_for(b)`` is the graph of ``b`` rows)."""
    graph = graph_for(rows)
    if not search.trials or not _batch_of(graph, rows) or rows < 2:
        return _compile(graph, search)
    if not search.use_cache:
        return _choose(graph, graph_for, rows, search)[1]
    path = cache_dir() / "ops-subbatch" / f"{search.key(graph)}.json"
    with key_lock(path):
        b = _load(path, rows)
        if b is None:
            b, plan = _choose(graph, graph_for, rows, search)
            text = json.dumps({"signature": graph.signature(), "rows_per_run": b})
            theirs = publish(path, text, lambda: _load(path, rows), "sub-batch cache")
            if theirs is None or theirs == b:
                return plan
            b = theirs
    if b == rows:
        return _compile(graph, search)
    return SubBatchPlan(graph, _compile(graph_for(b), search))


def candidate_rows(graph: Graph, steps: list[FusedStep], rows: int) -> list[int]:
    """Sub-batch sizes worth timing for ``graph`` (``rows`` rows), largest first: none when
    its largest value is small enough to stay in cache whole, one row when no run of rows
    is small enough."""
    sizes = [graph.shape(n) for n in graph.inputs] + [graph.shape(s.output) for s in steps]
    largest = 4 * max(math.prod(shape) for shape in sizes)
    if largest <= SPLIT_FROM_BYTES:
        return []
    per_row = largest / rows
    found = []
    for budget in RUN_BYTES:
        fits = [d for d in range(1, rows) if rows % d == 0 and d * per_row <= budget]
        if fits and max(fits) not in found:
            found.append(max(fits))
    return found or [1]


def _choose(graph: Graph, graph_for: GraphFor, rows: int, search: Search) -> tuple[int, Plan]:
    """Time the whole plan against each candidate sub-batch that agrees with it."""
    whole = _compile(graph, search)
    sizes = candidate_rows(graph, whole.steps, rows)
    if not sizes:
        return rows, whole
    inputs = sample_inputs(graph)
    want = whole(*inputs)
    if not all(np.isfinite(w).all() for w in want):
        return rows, whole  # nothing to compare against
    plans: dict[int, Plan] = {rows: whole}
    for b in sizes:
        split = _split_plan(graph, graph_for, b, search)
        if split is None or not _agree(want, split(*inputs)):
            _log.info("rows are not independent: the batch runs whole", rows=rows, tried=b)
            return rows, whole
        plans[b] = split
    with np.errstate(all="ignore"):
        medians = time_candidates(
            [[partial(p, *inputs)] for p in plans.values()],
            budget_s=0.05,
            min_rounds=5,
            max_rounds=25,
        )
    timed = dict(zip(plans, medians, strict=True))
    best = min(timed, key=lambda b: timed[b])
    if timed[best] * (1.0 + SPLIT_MARGIN) >= timed[rows]:
        best = rows
    _log.info("sub-batch chosen", rows=rows, rows_per_run=best, seconds=timed)
    return best, plans[best]


def _split_plan(graph: Graph, graph_for: GraphFor, b: int, search: Search) -> Plan | None:
    """Runs of ``b`` rows, or None when the graph of ``b`` rows is not the batch's with its
    leading dim divided (or cannot be made)."""
    try:
        small = graph_for(b)
    except (ModelError, ValidationError):
        return None
    k = graph.shape(graph.inputs[0])[0] // b
    for names, small_names in ((graph.inputs, small.inputs), (graph.outputs, small.outputs)):
        if names != small_names:
            return None
        for name in names:
            shape, part = graph.shape(name), small.shape(name)
            if not part or shape != (part[0] * k, *part[1:]):
                return None
    return SubBatchPlan(graph, _compile(small, search))


def _agree(want: list[FloatArray], got: list[FloatArray]) -> bool:
    scale = max(1.0, *(float(np.abs(w).max(initial=0.0)) for w in want))
    return all(
        w.shape == g.shape and bool(np.all(np.abs(w - g) <= AGREE * scale))
        for w, g in zip(want, got, strict=True)
    )


def _batch_of(graph: Graph, rows: int) -> bool:
    """Whether every input and output of ``graph`` leads with ``rows`` rows."""
    names = [*graph.inputs, *graph.outputs]
    return all(graph.shape(n) and graph.shape(n)[0] == rows for n in names)


def _compile(graph: Graph, search: Search) -> CompiledPlan:
    steps, choices, _ = search.choose(graph)
    return CompiledPlan(graph, steps, choices, search.by_name)


def _load(path: Path, rows: int) -> int | None:
    """The cached rows per run, or None (absent, unreadable, or not a divisor of ``rows``)."""
    try:
        b = json.loads(path.read_text())["rows_per_run"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        _log.warning("sub-batch cache unreadable, timing again", path=str(path), reason=str(exc))
        return None
    if not isinstance(b, int) or isinstance(b, bool) or b < 1 or rows % b:
        return None
    return b

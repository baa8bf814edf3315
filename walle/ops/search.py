"""Semi-automatic backend search: a cost model ranks, short timed trials settle close calls.

For each step of a graph every usable backend offers its algorithms; each (backend,
algorithm) gets a cost-model estimate (:meth:`Backend.estimate`). Candidates whose estimate
is within ``close_factor`` of the best one are timed on the real buffers, in interleaved
rounds (:func:`time_candidates`: at least 5 samples each, the median wins). Decisions are
cached as JSON under ``$WALLE_CACHE_DIR`` (default ``~/.cache/walle``) keyed by the graph
signature (structure + shapes), the backend set and their device strings, so a second load
skips the trials.

The cache is safe under threads and processes. Within a process one thread searches a graph
while the others that want the same cache entry wait on its lock and then read its decision,
so all threads of a process run the same plan and the trials are not timed against each
other. A decision is written to a temp file of its own (``tempfile.mkstemp`` in the cache
directory) and published atomically: hard-linked into place when no entry exists yet, so
that of several processes searching the same cold entry the first to finish wins and the
others adopt its decision; replaced (``os.replace``) when the entry there is unreadable or
stale, or where the file system has no hard links. A reader sees a whole entry or none.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import statistics
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from walle.errors import BackendError, StorageError
from walle.logging import get_logger
from walle.ops.backends.base import Backend
from walle.ops.backends.registry import available_backends, get_backend
from walle.ops.fusion import Step, find_steps
from walle.ops.ir import Graph
from walle.ops.plan import Choice, CompiledPlan, allocate, is_alias

_log = get_logger("walle.ops.search")
CLOSE_FACTOR = 8.0


_KEY_LOCKS: dict[str, threading.Lock] = {}
_KEY_LOCKS_GUARD = threading.Lock()


def _key_lock(path: Path) -> threading.Lock:
    """The lock of one cache entry in this process (one search per entry at a time)."""
    with _KEY_LOCKS_GUARD:
        return _KEY_LOCKS.setdefault(str(path), threading.Lock())


def _reset_locks_after_fork() -> None:
    # A forked child has only the forking thread: locks other threads held stay held there.
    global _KEY_LOCKS_GUARD
    _KEY_LOCKS.clear()
    _KEY_LOCKS_GUARD = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_locks_after_fork)


def cache_dir() -> Path:
    """Where search decisions are kept (``WALLE_CACHE_DIR`` or ``~/.cache/walle``)."""
    return Path(os.environ.get("WALLE_CACHE_DIR") or Path.home() / ".cache" / "walle")


def time_calls(calls: list, budget_s: float = 0.004, max_runs: int = 25) -> float:
    """Median seconds of one pass over ``calls`` (2 warm-up passes, then up to ``max_runs``)."""
    for _ in range(2):
        for call in calls:
            call()
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(samples) < max_runs and (len(samples) < 3 or time.perf_counter() < deadline):
        start = time.perf_counter()
        for call in calls:
            call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def time_candidates(
    candidates: list[list], budget_s: float = 0.006, min_rounds: int = 5, max_rounds: int = 40
) -> list[float]:
    """Median seconds of one pass over each candidate's calls, timed in interleaved rounds.

    Each round times every remaining candidate once (A, B, C, A, B, C, ...), so a burst of
    load on a shared machine lands on all of them instead of on whichever ran during it.
    After ``min_rounds``, a candidate whose median is over twice the best is dropped (its
    median so far stands), and rounds go on while ``budget_s`` lasts, up to ``max_rounds``.
    """
    for calls in candidates:
        for _ in range(2):
            for call in calls:
                call()
    samples: list[list[float]] = [[] for _ in candidates]
    live = list(range(len(candidates)))
    deadline = time.perf_counter() + budget_s
    for round_ in range(max_rounds):
        if round_ >= min_rounds and time.perf_counter() >= deadline:
            break
        for i in live:
            start = time.perf_counter()
            for call in candidates[i]:
                call()
            samples[i].append(time.perf_counter() - start)
        if round_ + 1 == min_rounds and len(live) > 1:
            best = min(statistics.median(samples[i]) for i in live)
            live = [i for i in live if statistics.median(samples[i]) <= 2.0 * best]
    return [statistics.median(s) for s in samples]


class Search:
    """Chooses a (backend, algorithm) per step of a graph, with an on-disk decision cache."""

    def __init__(
        self,
        backends: list[str] | None = None,
        *,
        pin: str | None = None,
        trials: bool = True,
        use_cache: bool = True,
        close_factor: float = CLOSE_FACTOR,
    ) -> None:
        if pin is not None:
            self.backends = [get_backend(pin)]
            if pin != "numpy":
                # A pinned backend still needs the reference for steps it does not support.
                self.backends.append(get_backend("numpy"))
        else:
            self.backends = available_backends(backends)
        self.by_name = {b.name: b for b in self.backends}
        self.pin = pin
        self.trials = trials
        self.use_cache = use_cache
        self.close_factor = close_factor

    def key(self, graph: Graph) -> str:
        """Cache key: graph signature + backend names and devices + pin."""
        parts = [graph.signature(), str(self.pin)] + [f"{b.name}@{b.device}" for b in self.backends]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]

    def choose(self, graph: Graph) -> tuple[list[Step], dict[str, Choice], bool]:
        """Steps, their choices, and whether the choices came from the cache.

        With the cache, the threads of a process that ask for the same entry at once wait
        for the first one's search and read its decision (see the module's docstring).
        """
        steps = find_steps(graph)
        if not self.use_cache:
            return steps, self._search(graph, steps), False
        path = self._path(graph)
        with _key_lock(path):
            cached = self._load(path, graph, steps)
            if cached is not None:
                return steps, cached, True
            choices = self._search(graph, steps)
            return steps, self._save(path, graph, steps, choices), False

    def _search(self, graph: Graph, steps: list[Step]) -> dict[str, Choice]:
        """A choice per step that is not an alias (trials on scratch buffers if enabled)."""
        buffers = allocate(graph, steps, fill=0.5) if self.trials else {}
        choices: dict[str, Choice] = {}
        for step in steps:
            if not is_alias(step, graph):
                choices[step.name] = self._choose_step(step, graph, buffers)
        return choices

    def candidates(self, step: Step, graph: Graph) -> list[tuple[Backend, str, float]]:
        """Every (backend, algorithm, estimate) for ``step``, cheapest estimate first."""
        found = [
            (b, algo, b.estimate(step, algo, graph))
            for b in self.backends
            for algo in b.algorithms(step, graph)
        ]
        if self.pin is not None:
            pinned = [c for c in found if c[0].name == self.pin]
            found = pinned or found
        if not found:
            raise BackendError(f"step {step.name!r} ({step.op}): no backend can run it")
        return sorted(found, key=lambda c: c[2])

    def _choose_step(self, step: Step, graph: Graph, buffers: dict) -> Choice:
        ranked = self.candidates(step, graph)
        best = ranked[0][2]
        close = [c for c in ranked if c[2] <= best * self.close_factor]
        if len(close) == 1 or not self.trials:
            b, algo, est = ranked[0]
            return Choice(b.name, algo, est)
        compiled = [b.finish(b.compile(step, algo, graph, buffers)) for b, algo, _ in close]
        seconds = [0.0] * len(close)
        for group in sorted({b.trial_group for b, _, _ in close}):
            members = [i for i, (b, _, _) in enumerate(close) if b.trial_group == group]
            with np.errstate(all="ignore"):
                timed = time_candidates([compiled[i] for i in members])
            for i, t in zip(members, timed, strict=True):
                seconds[i] = t
        measured = [
            (t, b.name, algo, est) for t, (b, algo, est) in zip(seconds, close, strict=True)
        ]
        seconds_best, name, algo, est = min(measured)
        return Choice(name, algo, est, seconds_best)

    # -- cache ----------------------------------------------------------------------------
    def _path(self, graph: Graph) -> Path:
        return cache_dir() / "ops-search" / f"{self.key(graph)}.json"

    def _load(self, path: Path, graph: Graph, steps: list[Step]) -> dict[str, Choice] | None:
        try:
            raw = json.loads(path.read_text())
            choices = {k: Choice(**v) for k, v in raw["choices"].items()}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            _log.warning(
                "search cache unreadable, searching again", path=str(path), reason=str(exc)
            )
            return None
        wanted = {s.name for s in steps if not is_alias(s, graph)}
        if set(choices) != wanted or any(c.backend not in self.by_name for c in choices.values()):
            return None
        return choices

    def _save(
        self, path: Path, graph: Graph, steps: list[Step], choices: dict[str, Choice]
    ) -> dict[str, Choice]:
        """Publish ``choices`` atomically; returns the decision the entry holds afterwards
        (another process's, when it published a valid one first)."""
        text = json.dumps(
            {"signature": graph.signature(), "choices": {k: asdict(v) for k, v in choices.items()}},
            indent=1,
        )
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.stem}.", suffix=".tmp")
            with os.fdopen(fd, "w") as file:
                file.write(text)
            try:
                os.link(tmp, path)  # only if no entry exists: the first process wins
            except FileExistsError:
                theirs = self._load(path, graph, steps)
                if theirs is not None:
                    return theirs
                os.replace(tmp, path)  # the entry there is unreadable or stale
            except OSError:  # a file system without hard links
                os.replace(tmp, path)
        except OSError as exc:
            raise StorageError(f"cannot write search cache {path}: {exc}") from exc
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        return choices


def compile_graph(
    graph: Graph,
    *,
    backends: list[str] | None = None,
    pin: str | None = None,
    trials: bool = True,
    use_cache: bool = True,
) -> CompiledPlan:
    """Search (or read cached decisions) and build the plan for ``graph``."""
    search = Search(backends, pin=pin, trials=trials, use_cache=use_cache)
    steps, choices, _ = search.choose(graph)
    return CompiledPlan(graph, steps, choices, search.by_name)


def explain(plan: CompiledPlan) -> list[dict[str, object]]:
    """Per step: op, output shape, chosen backend and algorithm, estimate and measured us."""
    rows = []
    for step in plan.steps:
        choice = plan.choices.get(step.name)
        rows.append(
            {
                "step": step.name,
                "op": step.op if not step.parts or step.fused else _atomic_label(step),
                "shape": plan.graph.shape(step.output),
                "backend": choice.backend if choice else "alias",
                "algorithm": choice.algorithm if choice else "view",
                "estimate_us": round(choice.estimate_s * 1e6, 2) if choice else 0.0,
                "measured_us": (
                    round(choice.measured_s * 1e6, 2)
                    if choice and choice.measured_s is not None
                    else None
                ),
            }
        )
    return rows


def _atomic_label(step: Step) -> str:
    kind = step.attr("kind")
    return f"{step.op}.{kind}" if kind else step.op

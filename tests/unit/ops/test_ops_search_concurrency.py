"""The search cache under threads and processes (issue 11).

Before: every thread of a process wrote the same ``<key>.<pid>.tmp``, so a cold cache written
from several threads at once failed some first calls (StorageError: one thread's rename took
the file another thread was about to rename), and each thread searched on its own, so threads
could run different plans for the same graph.
"""

from __future__ import annotations

import json
import multiprocessing
import runpy
import threading
from pathlib import Path

import numpy as np
import pytest

import walle.ops.search as search_module
from walle.errors import StorageError
from walle.ops import GraphBuilder, Model, Search
from walle.ops.sample_models import cnn_onnx, mlp_onnx


def _plan_of(model: Model, batch: int) -> list[tuple[str, str, str]]:
    plan = model.plan(batch)
    return sorted((name, c.backend, c.algorithm) for name, c in plan.choices.items())


def _run_threads(n: int, work) -> tuple[dict[int, object], dict[int, BaseException]]:
    results: dict[int, object] = {}
    errors: dict[int, BaseException] = {}
    start = threading.Barrier(n)

    def target(i: int) -> None:
        start.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:
            errors[i] = exc

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results, errors


def test_ops_search_cache_eight_threads_first_calls_share_one_search(tmp_path, monkeypatch) -> None:
    """8 threads' first calls of the same model on a cold cache: all succeed, the graph is
    searched once in the process, and every thread runs the same plan."""
    monkeypatch.setenv("WALLE_CACHE_DIR", str(tmp_path / "cache"))
    searches: list[str] = []
    real = Search._search

    def counting(self, graph, steps):
        searches.append(graph.signature())
        return real(self, graph, steps)

    monkeypatch.setattr(Search, "_search", counting)
    for name, proto, batch in (("mlp", mlp_onnx(), 16), ("cnn", cnn_onnx(), 2)):
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(proto.SerializeToString())
        model = Model(path)
        shape = model.graph(batch).shape(model.graph(batch).inputs[0])
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        searches.clear()

        def work(_i: int, model=model, x=x, batch=batch):
            return model(x), _plan_of(model, batch)

        results, errors = _run_threads(8, work)
        assert not errors, errors
        assert len(results) == 8
        assert len(searches) == 1, f"{name}: {len(searches)} searches of one graph"
        outputs = [r[0] for r in results.values()]
        plans = [r[1] for r in results.values()]
        assert all(p == plans[0] for p in plans), plans
        for out in outputs[1:]:
            np.testing.assert_array_equal(out, outputs[0])
    entries = sorted((tmp_path / "cache" / "ops-search").iterdir())
    assert [p.suffix for p in entries] == [".json", ".json"]  # no temp file left behind


def test_ops_search_cache_concurrent_saves_of_one_entry_all_succeed(tmp_path, monkeypatch) -> None:
    """Direct check of the temp files: 8 threads publishing the same entry at once, 20 times
    each, over a missing or unreadable entry (the old shared ``<key>.<pid>.tmp`` failed here):
    every save succeeds and one whole, readable entry is left."""
    monkeypatch.setenv("WALLE_CACHE_DIR", str(tmp_path))
    b = GraphBuilder()
    x = b.input("x", (4, 8))
    graph = b.build([b.softmax(b.relu(x))])
    search = Search(backends=["numpy"], trials=False)
    steps = search_module.find_steps(graph)
    choices = search._search(graph, steps)
    path = search._path(graph)
    path.parent.mkdir(parents=True)

    def work(_i: int):
        for round_ in range(20):
            if round_ % 2:  # cold again for some, unreadable for others
                path.unlink(missing_ok=True)
            else:
                path.write_text("{torn")
            assert search._save(path, graph, steps, choices) == choices
        return True

    results, errors = _run_threads(8, work)
    assert not errors, errors
    assert len(results) == 8
    assert search._load(path, graph, steps) == choices
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_ops_search_cache_adopts_entry_another_process_published_first(
    tmp_path, monkeypatch
) -> None:
    """Two processes searched the same cold entry: the second to publish adopts the first's
    decision (hard link, first wins); an unreadable entry is replaced, not adopted."""
    monkeypatch.setenv("WALLE_CACHE_DIR", str(tmp_path))
    b = GraphBuilder()
    x = b.input("x", (4, 8))
    graph = b.build([b.relu(x)])
    search = Search(backends=["numpy"], trials=False)
    steps = search_module.find_steps(graph)
    mine = search._search(graph, steps)
    theirs = {k: type(v)(v.backend, "theirs", v.estimate_s) for k, v in mine.items()}
    path = search._path(graph)
    search._save(path, graph, steps, theirs)  # the other process, first
    assert search._save(path, graph, steps, mine) == theirs
    assert search._load(path, graph, steps) == theirs
    path.write_text("{not json")
    assert search._save(path, graph, steps, mine) == mine
    assert search._load(path, graph, steps) == mine


_CHILD = """
import json, os
import numpy as np
import pytest
from walle.ops import Model
model = Model(model_path)
x = np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)
barrier.wait(timeout=120)
y = model(x)
plan = sorted((n, c.backend, c.algorithm) for n, c in model.plan(16).choices.items())
with open(out_path, "w") as f:
    json.dump({"plan": plan, "y": y.tolist()}, f)
"""


def test_ops_search_cache_two_processes_write_same_cold_entry(tmp_path, monkeypatch) -> None:
    """Two processes (multiprocessing, spawn) make their first call of the same model on one
    cold cache at the same moment: both succeed and end with the same plan."""
    cache = tmp_path / "cache"
    model_path = tmp_path / "mlp.onnx"
    model_path.write_bytes(mlp_onnx().SerializeToString())
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    outs = [tmp_path / f"out{i}.json" for i in range(2)]
    monkeypatch.setenv("WALLE_CACHE_DIR", str(cache))  # inherited by the spawned children
    procs = [
        ctx.Process(
            target=runpy.run_path,
            args=(str(script),),
            kwargs={
                "init_globals": {
                    "barrier": barrier,
                    "model_path": str(model_path),
                    "out_path": str(out),
                }
            },
        )
        for out in outs
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    assert [p.exitcode for p in procs] == [0, 0]
    results = [json.loads(out.read_text()) for out in outs]
    assert results[0]["plan"] == results[1]["plan"]
    np.testing.assert_array_equal(np.array(results[0]["y"]), np.array(results[1]["y"]))
    entries = list((cache / "ops-search").iterdir())
    assert len(entries) == 1 and entries[0].suffix == ".json"
    saved = json.loads(entries[0].read_text())
    assert sorted((n, c["backend"], c["algorithm"]) for n, c in saved["choices"].items()) == [
        tuple(row) for row in results[0]["plan"]
    ]


def test_ops_search_cache_write_failure_is_a_storage_error(tmp_path, monkeypatch) -> None:
    """A cache directory that cannot be written is a StorageError naming the entry."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("WALLE_CACHE_DIR", str(blocker))
    b = GraphBuilder()
    x = b.input("x", (2, 3))
    with pytest.raises(StorageError, match="cannot write search cache"):
        Search(backends=["numpy"], trials=False).choose(b.build([b.relu(x)]))
    assert Path(blocker).read_text() == "not a directory"

"""Measured device costs (issue 12, item 3): measured once per device, reused, invalidated by
a changed device.

Before: the OpenCL cost model used constants (launch 4 us, sync 30 us on a GPU) that were
20x off on an H200. Now :mod:`walle.ops.calibration` measures them the first time a device
is used and keeps them per device identity, in this process and beside the search cache.
These tests run the real calibration on the OpenCL device at hand (PoCL on a CPU machine)
and count how often it measures.
"""

from __future__ import annotations

import json
import math
import threading

import pytest

from tests._backends import backend_or_skip
from walle.errors import BackendError
from walle.ops import GraphBuilder, Search, get_backend
from walle.ops import calibration as cal


@pytest.fixture
def opencl(tmp_path, monkeypatch):
    """The OpenCL backend with a fresh cache and memo; its costs are restored afterwards."""
    backend = backend_or_skip("opencl")
    for name in ("calibrated", "call_overhead_s", "sync_s", "transfer_bytes_per_s"):
        monkeypatch.setattr(backend, name, getattr(backend, name))
    for name in ("flops_per_s", "bytes_per_s"):
        monkeypatch.setattr(backend, name, getattr(backend, name))
    monkeypatch.setenv("WALLE_CACHE_DIR", str(tmp_path))
    cal.forget()
    yield backend
    cal.forget()


@pytest.fixture
def measured(monkeypatch) -> list[str]:
    """The devices :func:`calibration.measure` ran on, in order (the real measurement)."""
    calls: list[str] = []
    real = cal.measure

    def counting(backend):
        calls.append(backend.identity()["driver"])
        return real(backend)

    monkeypatch.setattr(cal, "measure", counting)
    return calls


def test_calibration_measures_once_per_device_and_reuses_it(opencl, measured, tmp_path) -> None:
    costs = cal.device_costs(opencl)
    assert len(measured) == 1
    assert costs is opencl.device_costs() and opencl.calibrated is costs
    assert all(math.isfinite(v) and v >= 0 for v in (costs.launch_s, costs.sync_s, costs.copy_s))
    assert costs.upload_bytes_per_s > 0 and costs.download_bytes_per_s > 0
    rates = dict(costs.rates)
    assert {"bytes", "elementwise", "matmul"} <= set(rates)
    assert {f"matmul.{a}" for a in ("tiled", "rows4")} <= set(rates)
    assert opencl.call_overhead_s == costs.launch_s
    assert cal.device_costs(opencl) is costs  # the memo of this process
    assert len(measured) == 1
    cal.forget()  # as a new process: read from the cache file, not measured again
    assert cal.device_costs(opencl) == costs
    assert len(measured) == 1
    [entry] = (tmp_path / "ops-devices").iterdir()
    assert json.loads(entry.read_text())["identity"] == opencl.identity()


def test_calibration_of_a_changed_device_measures_again(opencl, measured, monkeypatch) -> None:
    """A new driver (or another device) has another identity: its costs are measured anew,
    and the search's cache key changes with it, so its decisions are searched again."""
    b = GraphBuilder()
    graph = b.build([b.relu(b.input("x", (4, 4)))])
    key = Search(["numpy", "opencl"]).key(graph)
    cal.device_costs(opencl)
    real = opencl.identity()
    monkeypatch.setattr(opencl, "identity", lambda: {**real, "driver": "next-driver"})
    cal.device_costs(opencl)
    assert measured == [real["driver"], "next-driver"]
    assert Search(["numpy", "opencl"]).key(graph) != key
    monkeypatch.setattr(opencl, "identity", lambda: real)
    cal.forget()
    cal.device_costs(opencl)  # the first device again: its file is still valid
    assert measured == [real["driver"], "next-driver"]


def test_calibration_file_of_another_identity_or_unreadable_is_not_used(
    opencl, measured, tmp_path
) -> None:
    cal.device_costs(opencl)
    [entry] = (tmp_path / "ops-devices").iterdir()
    raw = json.loads(entry.read_text())
    raw["identity"]["driver"] = "someone else's"
    entry.write_text(json.dumps(raw))
    cal.forget()
    cal.device_costs(opencl)
    assert len(measured) == 2
    entry.write_text("{torn")
    cal.forget()
    cal.device_costs(opencl)
    assert len(measured) == 3
    assert json.loads(entry.read_text())["identity"] == opencl.identity()


def test_calibration_under_eight_threads_measures_once(opencl, measured) -> None:
    """8 threads using a new device at once: one calibration, all get the same costs."""
    start = threading.Barrier(8)
    results: dict[int, object] = {}

    def work(i: int) -> None:
        start.wait()
        results[i] = cal.device_costs(opencl)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 8 and len(measured) == 1
    assert len({id(r) for r in results.values()}) == 1


def test_calibration_leaves_host_backends_alone(measured) -> None:
    assert cal.device_costs(get_backend("numpy")) is None
    assert measured == []


def test_search_calibrates_device_on_first_search_only(opencl, measured) -> None:
    b = GraphBuilder()
    x = b.input("x", (8, 8))
    Search(["numpy", "opencl"], trials=False).choose(b.build([b.relu(x)]))
    Search(["numpy", "opencl"], trials=False).choose(b.build([b.binary("add", x, x)]))
    assert len(measured) == 1


@pytest.fixture
def failing(opencl, measured, monkeypatch):
    """The OpenCL device failing at its first probe, as a device that builds walle's program
    but runs out of resources would (the real calibration, its copy probe raising)."""

    def out_of_resources(nbytes):
        raise RuntimeError("clEnqueueWriteBuffer failed: OUT_OF_RESOURCES")

    monkeypatch.setattr(opencl, "copy_probe", out_of_resources)
    monkeypatch.setenv("WALLE_REQUIRE_BACKENDS", "")
    return opencl


def test_search_leaves_out_a_backend_whose_calibration_fails(failing, measured) -> None:
    """The search goes on without the failing device (a warning, no step placed on it), and
    the next search in the process does not probe it again."""
    b = GraphBuilder()
    x = b.input("x", (8, 8))
    graph = b.build([b.relu(x)])
    search = Search(["numpy", "opencl"], trials=False)
    _, choices, _ = search.choose(graph)
    assert {c.backend for c in choices.values()} == {"numpy"}
    assert [backend.name for backend in search.backends] == ["numpy"]
    assert len(measured) == 1
    _, choices, _ = Search(["numpy", "opencl"], trials=False).choose(b.build([b.unary("exp", x)]))
    assert {c.backend for c in choices.values()} == {"numpy"}
    assert len(measured) == 1  # the failure is remembered


@pytest.mark.parametrize("how", ["pinned", "required"])
def test_search_fails_on_a_pinned_or_required_backend_whose_calibration_fails(
    failing, monkeypatch, how
) -> None:
    b = GraphBuilder()
    graph = b.build([b.relu(b.input("x", (8, 8)))])
    if how == "required":
        monkeypatch.setenv("WALLE_REQUIRE_BACKENDS", "opencl")
        search = Search(["numpy", "opencl"], trials=False)
    else:
        search = Search(pin="opencl", trials=False)
    with pytest.raises(BackendError, match=r"calibrating .* failed: .*OUT_OF_RESOURCES"):
        search.choose(graph)


_CHILD = """
import json
from walle.ops import calibration, get_backend
backend = get_backend("opencl")
barrier.wait(timeout=120)
costs = calibration.device_costs(backend)
with open(out_path, "w") as f:
    json.dump([costs.launch_s, costs.sync_s, costs.copy_s, costs.upload_bytes_per_s], f)
"""


def test_calibration_two_processes_on_one_cold_cache_end_with_the_same_costs(
    opencl, tmp_path
) -> None:
    """Two processes (spawn) calibrate the same new device at once: both succeed, one cache
    file is left, and the second to publish adopts the first's costs."""
    import multiprocessing
    import runpy

    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    outs = [tmp_path / f"out{i}.json" for i in range(2)]
    procs = [
        ctx.Process(
            target=runpy.run_path,
            args=(str(script),),
            kwargs={"init_globals": {"barrier": barrier, "out_path": str(out)}},
        )
        for out in outs
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    assert [p.exitcode for p in procs] == [0, 0]
    results = [json.loads(out.read_text()) for out in outs]
    assert results[0] == results[1]
    [entry] = (tmp_path / "ops-devices").iterdir()
    assert entry.suffix == ".json"
    saved = json.loads(entry.read_text())["costs"]
    assert [saved[k] for k in ("launch_s", "sync_s", "copy_s", "upload_bytes_per_s")] == results[0]

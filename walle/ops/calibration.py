"""Measured device costs: a short calibration the first time a device is used, then cached.

The placement (:mod:`walle.ops.placement`) prices each copy between host memory and a
device, each launch and each sync. Constants for these are wrong by 20x from one device to
the next (an OpenCL launch costs ~4 us queued on PoCL and ~96 us on an H200 through NVIDIA's
OpenCL), so they are measured, through the backend's own compile path:

- launch, copy and sync: chains of 1 and of 65 ReLUs over 16 floats run as one sequence
  (64 launches apart) and a sum of 16 inputs (15 more uploads, 14 more launches); the rest of
  the short run is the sync;
- copy bandwidth each way: 4 KB and 4 MB blocking copies;
- a throughput probe per kernel family: element-wise (a chain of ReLUs for bytes per second,
  of Exps for flops per second) and each matrix product algorithm the backend offers (a
  chain of square products); sizes double until the kernels outweigh their launches.

Costs are kept per device identity (:meth:`~walle.ops.backends.base.Backend.identity`:
platform, device, driver...) in this process and on disk beside the search cache
(``$WALLE_CACHE_DIR/ops-devices/<identity digest>.json``), published as search decisions are
(:mod:`walle.ops.diskcache`); a changed device or driver has another digest and is measured
again. On PoCL the whole calibration takes well under a second.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np

from walle.errors import BackendError
from walle.logging import get_logger
from walle.ops.backends.base import Backend, Call, DeviceCosts
from walle.ops.builder import GraphBuilder
from walle.ops.diskcache import cache_dir, key_lock, publish
from walle.ops.fusion import find_steps
from walle.ops.ir import Graph
from walle.ops.plan import allocate, is_alias

_log = get_logger("walle.ops.calibration")
VERSION = 1
_MEMO: dict[str, DeviceCosts] = {}
# Devices whose calibration failed in this process, with the error: asked again, they fail
# at once instead of repeating every probe up to the one that failed.
_FAILED: dict[str, BackendError] = {}
_MEMO_GUARD = threading.Lock()


def identity_key(backend: Backend) -> str:
    """A digest of the backend's device identity (and of this calibration's version)."""
    text = json.dumps({"v": VERSION, **backend.identity()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def device_costs(backend: Backend) -> DeviceCosts | None:
    """The device's measured costs, applied to ``backend`` (None for host memory).

    Measured once per device identity: later calls in this process read the memo, other
    processes read the cache file; threads asking at once wait for one calibration.
    BackendError where a probe fails on the device (the same error again, at once, for the
    rest of the process).
    """
    if backend.memory == "host":
        return None
    key = identity_key(backend)
    with _MEMO_GUARD:
        known, failed = _MEMO.get(key), _FAILED.get(key)
    if failed is not None:
        raise failed
    if known is None:
        path = cache_dir() / "ops-devices" / f"{key}.json"
        with key_lock(path):
            with _MEMO_GUARD:
                known, failed = _MEMO.get(key), _FAILED.get(key)
            if failed is not None:
                raise failed
            if known is None:
                try:
                    known = _load(path, backend) or _measure_and_save(path, backend)
                except BackendError as exc:
                    with _MEMO_GUARD:
                        _FAILED[key] = exc
                    raise
                with _MEMO_GUARD:
                    _MEMO[key] = known
    if backend.calibrated is not known:
        backend.use_costs(known)
    return known


def forget() -> None:
    """Drop this process's memo (the cache files stay): as a fresh process would start."""
    with _MEMO_GUARD:
        _MEMO.clear()
        _FAILED.clear()


def _load(path: Path, backend: Backend) -> DeviceCosts | None:
    try:
        raw = json.loads(path.read_text())
        if raw["identity"] != backend.identity():
            return None
        fields = raw["costs"]
        return DeviceCosts(**{**fields, "rates": tuple(tuple(r) for r in fields["rates"])})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        _log.warning("device costs unreadable, measuring again", path=str(path), reason=str(exc))
        return None


def _measure_and_save(path: Path, backend: Backend) -> DeviceCosts:
    started = time.perf_counter()
    try:
        costs = measure(backend)
    except Exception as exc:  # a device error (cl.Error...) during a probe
        raise BackendError(f"calibrating {backend.device} failed: {exc}") from exc
    _log.info(
        "device calibrated",
        device=backend.device,
        seconds=round(time.perf_counter() - started, 3),
        launch_us=round(costs.launch_s * 1e6, 1),
        sync_us=round(costs.sync_s * 1e6, 1),
    )
    text = json.dumps({"identity": backend.identity(), "costs": asdict(costs)}, indent=1)
    theirs = publish(path, text, lambda: _load(path, backend), "device costs")
    return theirs or costs


def measure(backend: Backend) -> DeviceCosts:
    """Time launches, syncs, copies and one probe per kernel family on ``backend``."""
    small, big = 4096, 4 << 20
    up_small, down_small = (_median(c) for c in backend.copy_probe(small))
    up_big, down_big = (_median(c, runs=5) for c in backend.copy_probe(big))
    upload = (big - small) / max(up_big - up_small, 1e-9)
    download = (big - small) / max(down_big - down_small, 1e-9)
    # Short runs, fastest of 15 (fixed costs; load only adds): 1 and 65 ReLUs over 16 floats
    # (64 launches apart), and a sum of 16 inputs (15 more uploads, 14 more launches).
    one, many = (_fastest(_chain(backend, "relu", (1, 16), k)) for k in (1, 65))
    launch_s = max((many - one) / 64, 1e-7)
    sixteen = _fastest(_sum_of(backend, 16))
    copy_s = max((sixteen - one - 14 * launch_s) / 15, 0.0)
    sync_s = max(one - launch_s - 2 * copy_s, 0.0)
    costs = DeviceCosts(launch_s, sync_s, copy_s, upload, download)
    rates = dict(_elementwise_rates(backend, launch_s))
    for algorithm in _matmul_algorithms(backend):
        rates[f"matmul.{algorithm}"] = _matmul_rate(backend, algorithm, launch_s)
    matmul = [v for k, v in rates.items() if k.startswith("matmul.")]
    if matmul:
        rates["matmul"] = max(matmul)
    return DeviceCosts(**{**asdict(costs), "rates": tuple(sorted(rates.items()))})


def _median(call: Call | list[Call], runs: int = 9, warmup: int = 2) -> float:
    calls = call if isinstance(call, list) else [call]
    for _ in range(warmup):
        for c in calls:
            c()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        for c in calls:
            c()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _fastest(calls: list[Call], runs: int = 15) -> float:
    return min(_median(calls, runs=1, warmup=0 if i else 2) for i in range(runs))


def _sum_of(backend: Backend, inputs: int) -> list[Call]:
    b = GraphBuilder()
    xs = [b.input(f"x{i}", (1, 16)) for i in range(inputs)]
    total = xs[0]
    for x in xs[1:]:
        total = b.binary("add", total, x)
    return _bound(backend, b.build([total]), lambda algos: algos[0])


def _first(algorithms: list[str]) -> str:
    return algorithms[0]


def _bound(backend: Backend, graph: Graph, pick: Callable[[list[str]], str]) -> list[Call]:
    """The graph's steps compiled on ``backend`` as one run (``pick`` chooses algorithms)."""
    steps = find_steps(graph)
    buffers = allocate(graph, steps, fill=0.5)
    calls: list[Call] = []
    for step in steps:
        if not is_alias(step, graph):
            algorithm = pick(backend.algorithms(step, graph))
            calls += backend.compile(step, algorithm, graph, buffers)
    return backend.finish(calls)


def _chain(backend: Backend, kind: str, shape: tuple[int, ...], length: int) -> list[Call]:
    b = GraphBuilder()
    x = b.input("x", shape)
    for _ in range(length):
        x = b.unary(kind, x)
    return _bound(backend, b.build([x]), _first)


def _per_launch(backend: Backend, make: Callable[[int], list[Call]], runs: int = 7) -> float:
    """Seconds one more link of a chain adds (1 link vs 4, same run; fastest of ``runs``)."""
    return max((_fastest(make(4), runs=runs) - _fastest(make(1), runs=runs)) / 3, 0.0)


def _elementwise_rates(backend: Backend, launch_s: float) -> list[tuple[str, float]]:
    """Bytes per second (ReLU: 8 bytes per element) and flops per second (Exp: 8 per element,
    as :func:`walle.ops.backends.base.node_work` counts them), sizes grown until each link
    costs three launches."""
    n = 1 << 14
    while True:
        relu = _per_launch(backend, partial(_chain, backend, "relu", (n,))) - launch_s
        if relu >= 3 * launch_s or n >= 1 << 24:
            break
        n <<= 2
    bytes_per_s = 8.0 * n / max(relu, 1e-9)
    exp = _per_launch(backend, partial(_chain, backend, "exp", (n,))) - launch_s
    compute = max(exp - 8.0 * n / bytes_per_s, 0.1 * exp, 1e-9)
    return [("bytes", bytes_per_s), ("elementwise", 8.0 * n / compute)]


def _matmul_algorithms(backend: Backend) -> list[str]:
    b = GraphBuilder()
    x = b.input("x", (8, 8))
    graph = b.build([b.matmul(x, x)])
    return backend.atomic_algorithms(graph.nodes[0], graph)


def _matmul_rate(backend: Backend, algorithm: str, launch_s: float) -> float:
    """Flops per second of a chain of square products x @ w (w constant), n grown from 64
    until one product costs three launches (at most 1024)."""
    n = 64
    while True:
        link = _per_launch(backend, partial(_matmul_chain, backend, algorithm, n)) - launch_s
        if link >= 3 * launch_s or n >= 1024:
            return 2.0 * n**3 / max(link, 1e-9)
        n *= 2


def _matmul_chain(backend: Backend, algorithm: str, n: int, length: int) -> list[Call]:
    rng = np.random.default_rng(0)
    b = GraphBuilder()
    x = b.input("x", (n, n))
    w = b.const((rng.standard_normal((n, n)) / math.sqrt(n)).astype(np.float32))
    for _ in range(length):
        x = b.matmul(x, w)
    return _bound(
        backend, b.build([x]), lambda algos: algorithm if algorithm in algos else algos[0]
    )

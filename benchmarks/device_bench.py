"""Device runtime benchmarks: full replay events/s against the decode-only limit, and live
append latency at the default durability policy.

``python benchmarks/device_bench.py`` prints both; ``benchmarks/streams_bench.py`` calls
``bench_device_replay``, ``bench_decode_only`` and ``bench_append_latency``.
``python benchmarks/device_bench.py checkpoints`` prints the cost of one live commit (WAL bytes,
the WAL pages of the engine state, and time) at 200 and 2,000 devices with 1% of them, drawn
at random, active since the last one: for the whole-engine snapshot (``runtime.py`` of commit
``BEFORE_COMMIT``, loaded from git), for per-device records updated in place
(``IN_PLACE_COMMIT``) and for per-device records appended to a delta table (now); then the
cost of the commit that compacts the deltas.

Full replay = read the SQLite log + build events + the engine (match, windows, aggregates)
+ checkpoints (snapshot, feature-store upserts, offset) in one transaction each, at the
default RuntimeSettings. The decode-only limit is JSONL decoding and validation of the same
events with ``walle.streams.events.decode_event``, measured in the same run.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_APP = ROOT / "examples" / "item_page_view.py"
BEFORE_COMMIT = "71c275f"  # the last runtime.py that wrote the whole engine at each checkpoint
IN_PLACE_COMMIT = "5784607"  # per-device records upserted in place (one B-tree page each)
STATE_TABLES = (
    "runtime_checkpoints",
    "runtime_device_state",
    "sqlite_autoindex_runtime_device_state_1",
    "runtime_device_delta",
    None,  # a free page: the deltas a compaction deleted
)


def _best(seconds: list[float]) -> float:
    return min(seconds)


def bench_decode_only(log_path: str | Path, repeats: int = 3) -> float:
    """Events/s of decoding and validating every line of a JSONL log (best of ``repeats``)."""
    from walle.streams.events import decode_event

    lines = [line for line in Path(log_path).read_bytes().splitlines() if line.strip()]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for line in lines:
            decode_event(line)
        times.append(time.perf_counter() - start)
    return len(lines) / _best(times)


def bench_device_replay(
    log_path: str | Path, app_path: str | Path = DEFAULT_APP, repeats: int = 3
) -> float:
    """Events/s of a full device replay of a JSONL log (best of ``repeats``, fresh state each).

    The log is ingested once (not timed); each repeat replays a copy of that database from
    offset 0 to the end, closing all windows, with the default checkpoint settings.
    """
    from walle.logging import configure_logging
    from walle.streams.app import load_app
    from walle.streams.device import DeviceRuntime, EventLog

    configure_logging("ERROR")
    app = load_app(app_path)
    with tempfile.TemporaryDirectory(prefix="walle-bench-") as folder:
        ingested = Path(folder) / "ingested.db"
        with EventLog(ingested) as log:
            log.ingest_jsonl(log_path)
        rates = []
        for repeat in range(repeats):
            db = Path(folder) / f"replay-{repeat}.db"
            shutil.copy(ingested, db)
            with DeviceRuntime(app, db) as runtime:
                rates.append(runtime.run(finish=True).events_per_s)
    return max(rates)


def bench_append_latency(count: int = 20_000) -> tuple[float, float]:
    """p50 and p99 microseconds of ``EventLog.append`` at the default durability policy.

    Includes validation, buffering and, every N events, the commit (SQLite WAL,
    synchronous=NORMAL); the p99 is dominated by those commits.
    """
    from walle.logging import configure_logging
    from walle.streams.device import EventLog
    from walle.streams.generator import generate_events

    configure_logging("ERROR")
    events = generate_events(20, count // 700 + 1, seed=11)[:count]
    latencies = []
    with (
        tempfile.TemporaryDirectory(prefix="walle-bench-") as folder,
        EventLog(Path(folder) / "live.db") as log,
    ):
        for event in events:
            start = time.perf_counter_ns()
            log.append(event)
            latencies.append(time.perf_counter_ns() - start)
    quantiles = statistics.quantiles(latencies, n=100)
    return quantiles[49] / 1000, quantiles[98] / 1000


def _runtime_class(commit: str | None) -> type:
    """DeviceRuntime now, or as of ``commit``, loaded from git."""
    import subprocess
    import types

    from walle.streams.device import DeviceRuntime

    if commit is None:
        return DeviceRuntime
    source = subprocess.run(
        ["git", "show", f"{commit}:walle/streams/device/runtime.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType(f"walle_runtime_{commit}")
    sys.modules[module.__name__] = module
    exec(compile(source, f"{commit}:runtime.py", "exec"), module.__dict__)
    return module.DeviceRuntime


def _wal_pages(wal: Path) -> list[int]:
    """The page number of every frame in a WAL file."""
    data = wal.read_bytes()
    page_size = int.from_bytes(data[8:12], "big")
    return [
        int.from_bytes(data[at : at + 4], "big")
        for at in range(32, len(data) - 24 - page_size + 1, 24 + page_size)
    ]


def _state_pages(db: Path, pages: list[int]) -> int:
    """How many of ``pages`` are the engine state tables' or free (SQLite's dbstat)."""
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        owner = dict(conn.execute("SELECT pageno, name FROM dbstat").fetchall())
    finally:
        conn.close()
    return sum(owner.get(page) in STATE_TABLES for page in pages)


def bench_checkpoint(
    devices: int, *, commit: str | None = None, rounds: int = 5, compaction: bool = False
) -> tuple[int, int, int, float]:
    """State bytes, WAL bytes, state WAL pages and ms of one live commit, 1% of devices active.

    Every device first gets a visit with its window still open (state held); then, per round,
    1% of the devices (drawn at random, seeded) append 3 events and ``flush()`` commits them
    with the checkpoint. Returns the median over ``rounds`` of the engine state bytes
    serialised (the whole snapshot for BEFORE_COMMIT, the active devices' records since), the
    WAL bytes written (truncated before each commit; SQLite writes whole 4 KiB pages of
    events, indexes, features and state), how many of those pages are the state tables', and
    the ms. ``compaction``: instead, rounds run until one compacts the deltas, and that one
    commit is measured.
    """
    from walle.logging import configure_logging
    from walle.streams.app import load_app
    from walle.streams.events import Event

    configure_logging("ERROR")
    import random

    runtime_class = _runtime_class(commit)
    before = commit == BEFORE_COMMIT
    app = load_app(DEFAULT_APP)
    names = [f"dev-{number:05d}" for number in range(devices)]
    seqs = dict.fromkeys(names, 0)

    def visit(runtime: Any, device: str, at: int) -> None:
        for offset, kind in ((0, "page_exit"), (1, "page_enter"), (2, "click")):
            seqs[device] += 1
            args = {"item_id": f"i{seqs[device]}", "price": 1.0} if kind == "page_enter" else {}
            runtime.append(Event(device, seqs[device], at + offset, kind, "item", args))

    states, sizes, pages, times = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="walle-bench-") as folder:
        db = Path(folder) / "live.db"
        runtime = runtime_class(app, db)
        try:
            runtime.start_live(autoflush=False)
            for device in names:
                visit(runtime, device, 1_000)
            runtime.flush()
            active = max(1, devices // 100)
            for round_ in range(10**6 if compaction else rounds):
                moved = random.Random(round_).sample(names, active)
                for device in moved:
                    visit(runtime, device, 10_000 * (round_ + 2))
                engine = runtime.engine
                state = [engine.snapshot()] if before else map(engine.snapshot_device, moved)
                states.append(sum(len(blob) for blob in state))
                runtime.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                start = time.perf_counter()
                runtime.flush()
                elapsed = (time.perf_counter() - start) * 1000
                if compaction and runtime._delta_rows:
                    continue
                times.append(elapsed)
                sizes.append(Path(f"{db}-wal").stat().st_size)
                pages.append(_state_pages(db, _wal_pages(Path(f"{db}-wal"))))
                if compaction:
                    break
        finally:
            runtime.close()
    median = statistics.median
    return int(median(states)), int(median(sizes)), int(median(pages)), median(times)


def checkpoints_main() -> None:
    """Print the checkpoint cost rows, before and after, at 200 and 2,000 devices."""
    print(f"one live commit, 1% of devices active since the last one ({DEFAULT_APP.name})")
    print(
        f"{'devices':>8} {'checkpoint':>12} {'state bytes':>12} {'WAL bytes':>10}"
        f" {'state pages':>12} {'ms':>7}"
    )
    variants = (
        ("whole", BEFORE_COMMIT, False),
        ("in place", IN_PLACE_COMMIT, False),
        ("delta", None, False),
        ("compaction", None, True),
    )
    for devices in (200, 2_000):
        for label, commit, compaction in variants:
            state, wal, pages, ms = bench_checkpoint(devices, commit=commit, compaction=compaction)
            print(f"{devices:>8} {label:>12} {state:>12,} {wal:>10,} {pages:>12} {ms:>7.2f}")


def make_bench_log(path: str | Path, devices: int = 200, events_per_device: int = 250) -> Path:
    """A synthetic JSONL log (~50k events) shaped like the item page-view example's input."""
    from walle.streams.events import write_jsonl
    from walle.streams.generator import generate_events

    write_jsonl(path, generate_events(devices, max(1, events_per_device // 36), seed=5))
    return Path(path)


def main() -> None:
    """Print (c) replay events/s as a fraction of decode-only, and (d) append latency."""
    with tempfile.TemporaryDirectory(prefix="walle-bench-") as folder:
        log = make_bench_log(Path(folder) / "bench.jsonl")
        events = sum(1 for _ in log.open("rb"))
        decode = bench_decode_only(log)
        replay = bench_device_replay(log)
    p50, p99 = bench_append_latency()
    app = DEFAULT_APP.relative_to(ROOT)
    print(f"log: {events} events, app {app}, python {sys.version.split()[0]}")
    print(f"decode-only limit      {decode:>12,.0f} events/s   1.00")
    print(
        f"(c) full device replay {replay:>12,.0f} events/s   {replay / decode:.2f} of decode-only"
    )
    print(
        f"(d) live append        p50 {p50:,.1f} us   p99 {p99:,.1f} us (default durability policy)"
    )


if __name__ == "__main__":
    checkpoints_main() if sys.argv[1:] == ["checkpoints"] else main()

"""Device runtime benchmarks: full replay events/s against the decode-only limit, and live
append latency at the default durability policy.

``python benchmarks/device_bench.py`` prints both; ``benchmarks/streams_bench.py`` calls
``bench_device_replay``, ``bench_decode_only`` and ``bench_append_latency``.
``python benchmarks/device_bench.py checkpoints`` prints the cost of one checkpoint at 200 and
2,000 devices with 1% of them, drawn at random, active since the last one: the WAL bytes of a
live commit (events and checkpoint), the pages the checkpoint's own transaction writes, of
them the engine state's and the feature store's, and the time; for the whole-engine snapshot
(``runtime.py`` of commit ``BEFORE_COMMIT``, loaded from git), per-device records updated in
place (``IN_PLACE_COMMIT``), one row per device record appended (``DELTA_ROWS_COMMIT``) and
one row per checkpoint (now); for the two that compact, the compacting checkpoint too, and
the state pages per checkpoint with it amortised.

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
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_APP = ROOT / "examples" / "item_page_view.py"
BEFORE_COMMIT = "71c275f"  # the last runtime.py that wrote the whole engine at each checkpoint
IN_PLACE_COMMIT = "5784607"  # per-device records upserted in place (one B-tree page each)
DELTA_ROWS_COMMIT = "67ba669"  # per-device records appended as one row each, compacted
PAGE_KINDS = {
    "runtime_checkpoints": "state",
    "runtime_state": "state",
    "runtime_device_state": "state",
    "sqlite_autoindex_runtime_device_state_1": "state",
    "runtime_device_delta": "state",
    "features": "features",
    "sqlite_autoindex_features_1": "features",
    "events": "log",
    "sqlite_autoindex_events_1": "log",
    "sqlite_sequence": "log",
}
"""What each table's pages count as; page 1, ptrmap and free pages are "other", so is the
consumer offset. The free pages written are those a compaction freed (nothing else deletes
here), counted apart as "free"."""


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
    """DeviceRuntime now, or as of ``commit``, loaded from git.

    Those runtimes call the event log's ``_last_offset`` (private then): their EventLog is a
    subclass that keeps it, so that only this benchmark knows of it.
    """
    import subprocess
    import types

    from walle.streams.device import DeviceRuntime, EventLog
    from walle.streams.device.log import last_offset_in

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

    class _EarlierEventLog(EventLog):
        @staticmethod
        def _last_offset(conn: Any) -> int:
            return last_offset_in(conn)

    module.EventLog = _EarlierEventLog  # type: ignore[attr-defined]
    return module.DeviceRuntime


def _wal_pages(wal: Path) -> list[int]:
    """The page number of every frame in a WAL file."""
    data = wal.read_bytes()
    page_size = int.from_bytes(data[8:12], "big")
    return [
        int.from_bytes(data[at : at + 4], "big")
        for at in range(32, len(data) - 24 - page_size + 1, 24 + page_size)
    ]


def _page_kinds(db: Path, pages: list[int]) -> dict[str, int]:
    """How many of ``pages`` are state, features, log, free or other pages (SQLite's dbstat;
    a page it does not list is free, or a ptrmap page of incremental auto-vacuum)."""
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        owner = dict(conn.execute("SELECT pageno, name FROM dbstat").fetchall())
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    per_ptrmap = page_size // 5  # ptrmap pages: 2, then one every per_ptrmap + 1 pages
    kinds = dict.fromkeys(("state", "features", "log", "free", "other"), 0)
    for page in pages:
        name = owner.get(page)
        if name is None and page > 1 and (page - 2) % (per_ptrmap + 1) != 0:
            kinds["free"] += 1
        else:
            kinds[PAGE_KINDS.get(name or "", "other")] += 1
    return kinds


class CheckpointCost(NamedTuple):
    """One checkpoint's cost (medians over the rounds measured)."""

    state_bytes: int  # engine state serialised: the whole snapshot, or the active devices'
    wal_bytes: int  # a live commit: the events, their index and the checkpoint, one transaction
    pages: int  # what the checkpoint's own transaction wrote, in 4 KiB pages (WAL frames)
    state_pages: int  # of those, the state tables' pages and the free pages a compaction wrote
    feature_pages: int  # of those, the feature store's (table and key index)
    ms: float  # the checkpoint's transaction
    every: int  # compaction only: checkpoints per compaction (1 otherwise)


def bench_checkpoint(
    devices: int, *, commit: str | None = None, rounds: int = 5, compaction: bool = False
) -> CheckpointCost:
    """The cost of one checkpoint with 1% of the devices, drawn at random, active since the last.

    Every device first gets a visit with its window still open (state held), checkpointed;
    one more round lets the first compaction of the designs that compact pass. Then, per
    round, 1% of
    the devices append 3 events each. Measured twice: as a live commit (events and
    checkpoint in ONE transaction: ``wal_bytes``), and with the events committed first, so
    that the WAL holds only what the checkpoint's transaction wrote (``pages``, whole 4 KiB
    pages of state, features, the consumer offset, page 1, ptrmap and freelist pages).
    ``compaction``: rounds run until a checkpoint compacts for the second time, and that one
    is measured; ``every`` is then the number of checkpoints from one compaction to the next.
    """
    live = _checkpoint_rounds(devices, commit, rounds, compaction, live=True)
    alone = _checkpoint_rounds(devices, commit, rounds, compaction, live=False)
    median = statistics.median
    return CheckpointCost(
        int(median(row[0] for row in alone)),
        int(median(row[1] for row in live)),
        int(median(row[2] for row in alone)),
        int(median(row[3] for row in alone)),
        int(median(row[6] for row in alone)),
        median(row[4] for row in alone),
        alone[-1][5],
    )


def _compacted(runtime: Any) -> bool:
    """Whether the last checkpoint compacted (this design's or 67ba669's)."""
    states = getattr(runtime, "_states", None)
    return states.since_base == 0 if states is not None else runtime._delta_rows == 0


def _checkpoint_rounds(
    devices: int, commit: str | None, rounds: int, compaction: bool, *, live: bool
) -> list[tuple[int, int, int, int, float, int, int]]:
    """Per measured round: state bytes, WAL bytes, frames, state frames, ms, rounds waited,
    feature store frames."""
    import random

    from walle.logging import configure_logging
    from walle.streams.app import load_app
    from walle.streams.events import Event

    configure_logging("ERROR")
    runtime_class = _runtime_class(commit)
    before = commit == BEFORE_COMMIT
    app = load_app(DEFAULT_APP)
    names = [f"dev-{number:05d}" for number in range(devices)]
    seqs = dict.fromkeys(names, 0)

    def visit(runtime: Any, device: str, at: int) -> None:
        for offset, kind in ((0, "page_exit"), (1, "page_enter"), (2, "click")):
            seqs[device] += 1
            args = {"item_id": f"i{seqs[device]}", "price": 1.0} if kind == "page_enter" else {}
            event = Event(device, seqs[device], at + offset, kind, "item", args)
            (runtime.append if live else runtime.store.append)(event)

    def commit_round(runtime: Any, wal: Path) -> float:
        if not live:
            runtime.store.flush()  # the events alone, before the WAL is emptied
        runtime.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        start = time.perf_counter()
        runtime.flush() if live else runtime.run()
        return (time.perf_counter() - start) * 1000

    measured: list[tuple[int, int, int, int, float, int, int]] = []
    with tempfile.TemporaryDirectory(prefix="walle-bench-") as folder:
        db = Path(folder) / "bench.db"
        wal = Path(f"{db}-wal")
        runtime = runtime_class(app, db)
        try:
            if live:
                runtime.start_live(autoflush=False)
            for device in names:
                visit(runtime, device, 1_000)
            commit_round(runtime, wal)
            active, waited, compacted = max(1, devices // 100), 0, False
            for round_ in range(10**6 if compaction else rounds + 1):
                moved = random.Random(round_).sample(names, active)
                for device in moved:
                    visit(runtime, device, 10_000 * (round_ + 2))
                engine = runtime.engine
                state = [engine.snapshot()] if before else map(engine.snapshot_device, moved)
                ms = commit_round(runtime, wal)
                waited += 1
                if compaction and not (compacted and _compacted(runtime)):
                    if _compacted(runtime):  # the first: measure the next, a whole cycle on
                        compacted, waited = True, 0
                    continue
                if round_ == 0:
                    continue
                pages = _wal_pages(wal)
                row = (sum(len(b) for b in state), wal.stat().st_size, len(pages))
                kinds = _page_kinds(db, pages)
                state_pages = kinds["state"] + kinds["free"]
                measured.append((*row, state_pages, ms, waited, kinds["features"]))
                if compaction:
                    break
        finally:
            runtime.close()
    return measured


def checkpoints_main() -> None:
    """Print the checkpoint cost rows, before and after, at 200 and 2,000 devices.

    After each compaction row: the state pages per checkpoint with that compaction spread
    over the checkpoints from one to the next.
    """
    print(f"one checkpoint, 1% of devices active since the last one ({DEFAULT_APP.name})")
    print(
        f"{'devices':>8} {'checkpoint':>22} {'state bytes':>12} {'live WAL':>10}"
        f" {'ckpt pages':>10} {'state':>6} {'features':>8} {'ms':>7}"
    )
    variants = (
        ("whole engine", BEFORE_COMMIT, False),
        ("per device, in place", IN_PLACE_COMMIT, False),
        ("per device, delta rows", DELTA_ROWS_COMMIT, False),
        ("its compaction", DELTA_ROWS_COMMIT, True),
        ("one row (now)", None, False),
        ("its compaction", None, True),
    )
    for devices in (200, 2_000):
        last: CheckpointCost | None = None
        for label, commit, compaction in variants:
            cost = bench_checkpoint(devices, commit=commit, compaction=compaction)
            print(
                f"{devices:>8} {label:>22} {cost.state_bytes:>12,} {cost.wal_bytes:>10,}"
                f" {cost.pages:>10} {cost.state_pages:>6} {cost.feature_pages:>8}"
                f" {cost.ms:>7.2f}" + (f"  1 in {cost.every}" if compaction else "")
            )
            if compaction and last is not None:
                spread = ((cost.every - 1) * last.state_pages + cost.state_pages) / cost.every
                print(f"{devices:>8} {'amortised':>22} {'':>12} {'':>10} {'':>10} {spread:>6.2f}")
            last = cost


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

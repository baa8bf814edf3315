"""Device runtime benchmarks: full replay events/s against the decode-only limit, and live
append latency at the default durability policy.

``python benchmarks/device_bench.py`` prints both; ``benchmarks/streams_bench.py`` calls
``bench_device_replay``, ``bench_decode_only`` and ``bench_append_latency``.

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

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_APP = ROOT / "examples" / "item_page_view.py"


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
    main()

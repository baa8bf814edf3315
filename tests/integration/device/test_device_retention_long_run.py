"""A long run with retention: the database stays bounded and no event a task needs is lost.

Events arrive in chunks; after each chunk the runtime runs and retention deletes what the
app consumed. Windows stay open across chunks (their events live in the engine state, not
in the log), so the final feature store must equal the pure engine over every event.
"""

from __future__ import annotations

from pathlib import Path

from walle.streams.app import load_app
from walle.streams.device import DeviceRuntime, RetentionPolicy, RuntimeSettings
from walle.streams.engine import Engine
from walle.streams.generator import generate_events

APP = Path(__file__).parent / "device_crash_app.py"
CHUNK = 2_000


def test_long_run_with_retention_stays_bounded_and_loses_nothing(tmp_path: Path) -> None:
    app = load_app(APP)
    events = generate_events(20, 33, seed=3)
    db = tmp_path / "d.db"
    settings = RuntimeSettings(checkpoint_every_events=1_000, retention=RetentionPolicy())
    log_sizes, log_counts = [], []
    with DeviceRuntime(app, db, settings=settings) as runtime:
        for start in range(0, len(events), CHUNK):
            for event in events[start : start + CHUNK]:
                runtime.store.append(event)
            runtime.store.flush()
            log_sizes.append(runtime.store.log_bytes())
            runtime.run()
            log_counts.append(runtime.store.count())
        stored = sorted(text for _, text in runtime.features())
        assert runtime.store.last_offset() == len(events)
        wal = db.with_name(db.name + "-wal")
        assert not wal.exists() or wal.stat().st_size < 4 * 1024 * 1024
    engine = Engine(app)
    expected = sorted({o.key: o.to_json() for o in engine.process_many(events).outputs}.values())
    assert stored == expected  # nothing a task needed was lost
    assert max(log_counts) == 0  # every consumed event went
    assert max(log_sizes) <= 2 * log_sizes[0]  # the log holds about one chunk, never more
    with DeviceRuntime(app, tmp_path / "kept.db") as kept:
        for event in events:
            kept.store.append(event)
        kept.store.flush()
        assert kept.store.log_bytes() > 5 * max(log_sizes)


def test_size_bound_keeps_recent_consumed_events(tmp_path: Path) -> None:
    app = load_app(APP)
    events = generate_events(10, 17, seed=4)
    policy = RetentionPolicy(max_bytes=200_000)
    settings = RuntimeSettings(retention=policy)
    with DeviceRuntime(app, tmp_path / "d.db", settings=settings) as runtime:
        for event in events:
            runtime.store.append(event)
        runtime.store.flush()
        runtime.run()
        assert 0 < runtime.store.count() < len(events)
        assert runtime.store.log_bytes() <= 200_000
        offsets = [offset for offset, _ in runtime.store.read()]
        assert offsets == list(range(len(events) - len(offsets) + 1, len(events) + 1))

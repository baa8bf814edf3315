"""DeviceRuntime: checkpoints are all-or-nothing, state is refused across plans, live mode."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from walle.errors import StateError, StorageError
from walle.streams import App, PageWindow, count
from walle.streams.device import (
    DeviceRuntime,
    DurabilityPolicy,
    EventLog,
    LogSettings,
    RuntimeSettings,
)
from walle.streams.device.state import decode_records, encode_records
from walle.streams.engine import Engine, Output
from walle.streams.events import Event
from walle.testing import literal_events

END = 2**62


def _app(name: str = "visits") -> App:
    app = App(name)
    app.stream("item_visits").window(PageWindow("item")).aggregate(events=count())
    return app


def _visits(device: str, count_: int) -> list[Event]:
    rows = []
    for visit in range(count_):
        base = visit * 10_000
        rows += [
            (base, "page_enter", "item"),
            (base + 5, "click", "item"),
            (base + 9, "page_exit", "item"),
        ]
    return literal_events(*rows, device_id=device, first_seq=1)


def _expected(app: App, events: list[Event]) -> list[str]:
    engine = Engine(app)
    outputs = engine.process_many(events).outputs
    return sorted(output.to_json() for output in outputs)


def _fill(path: Path, events: list[Event], settings: LogSettings | None = None) -> None:
    with EventLog(path, settings) as log:
        for event in events:
            log.append(event)


def _stored(runtime: DeviceRuntime) -> list[str]:
    return sorted(text for _, text in runtime.features())


def test_run_writes_features_and_offset_in_one_checkpoint(tmp_path: Path) -> None:
    events = _visits("d1", 5) + _visits("d2", 3)
    _fill(tmp_path / "d.db", events)
    with DeviceRuntime(_app(), tmp_path / "d.db") as runtime:
        report = runtime.run()
        assert (report.events, report.outputs, report.to_offset) == (24, 8, 24)
        assert _stored(runtime) == _expected(_app(), events)
        assert runtime.store.consumer_offsets() == {"app:visits": 24}


def test_restart_resumes_after_the_checkpoint(tmp_path: Path) -> None:
    first, second = _visits("d1", 4), _visits("d1", 8)[12:]
    _fill(tmp_path / "d.db", first)
    with DeviceRuntime(_app(), tmp_path / "d.db") as runtime:
        runtime.run()
    _fill(tmp_path / "d.db", second)
    with DeviceRuntime(_app(), tmp_path / "d.db") as runtime:
        assert runtime.committed_offset == 12
        report = runtime.run()
        assert (report.from_offset, report.events) == (12, 12)
        assert _stored(runtime) == _expected(_app(), first + second)


def test_state_of_another_plan_is_refused(tmp_path: Path) -> None:
    _fill(tmp_path / "d.db", _visits("d1", 2))
    with DeviceRuntime(_app(), tmp_path / "d.db") as runtime:
        runtime.run()
    changed = _app()
    changed.stream("more").window(PageWindow("cart")).aggregate(events=count())
    with pytest.raises(StateError, match="fingerprint"):
        DeviceRuntime(changed, tmp_path / "d.db")


def test_disk_full_at_checkpoint_writes_nothing_and_can_retry(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    events = [event._replace(args={"pad": "z" * 400}) for event in _visits("d1", 60)]
    _fill(path, events)
    with DeviceRuntime(_app(), path) as runtime:
        pages = runtime.store.conn.execute("PRAGMA page_count").fetchone()[0]
        runtime.store.conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StorageError, match="full"):
            runtime.run()
        assert runtime.committed_offset == 0
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT COUNT(*) FROM features").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM runtime_checkpoints").fetchone()[0] == 0
        conn.close()
        runtime.store.conn.execute("PRAGMA max_page_count = 1000000")
        runtime.checkpoint()  # continue in the same process: nothing was lost
        assert _stored(runtime) == _expected(_app(), events)
    with DeviceRuntime(_app(), path) as runtime:  # or resume later
        assert runtime.committed_offset == len(events)


def test_disk_full_then_resume_from_last_good_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    events = [event._replace(args={"pad": "z" * 400}) for event in _visits("d1", 60)]
    _fill(path, events[:30])
    with DeviceRuntime(_app(), path) as runtime:
        runtime.run()
    _fill(path, events[30:])
    tight = LogSettings(max_pages=sqlite3.connect(path).execute("PRAGMA page_count").fetchone()[0])
    runtime = DeviceRuntime(_app(), path, settings=RuntimeSettings(log=tight))
    with pytest.raises(StorageError, match="full"):
        runtime.run()
    runtime.close()
    with DeviceRuntime(_app(), path) as runtime:
        assert runtime.committed_offset == 30
        runtime.run()
        assert _stored(runtime) == _expected(_app(), events)


def test_locked_database_at_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    _fill(path, _visits("d1", 3))
    settings = RuntimeSettings(log=LogSettings(busy_timeout_ms=50))
    with DeviceRuntime(_app(), path, settings=settings) as runtime:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageError, match=f"{path}: write a checkpoint: database is locked"):
            runtime.run()
        holder.execute("ROLLBACK")
        holder.close()
        runtime.checkpoint()
        assert runtime.committed_offset == 9


def test_not_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    path.write_text("not a database at all\n" * 100)
    with pytest.raises(StorageError, match="not an SQLite database"):
        DeviceRuntime(_app(), path)


def test_participants_run_inside_the_checkpoint_transaction(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    _fill(path, _visits("d1", 3))
    seen: list[tuple[bool, int]] = []

    def outbox(conn: sqlite3.Connection, outputs: list[Output]) -> None:
        seen.append((conn.in_transaction, len(outputs)))
        conn.execute("CREATE TABLE IF NOT EXISTS outbox (key TEXT)")
        conn.executemany("INSERT INTO outbox VALUES (?)", [(o.key,) for o in outputs])
        raise RuntimeError("participant failed")

    with DeviceRuntime(_app(), path, participants=[outbox]) as runtime:
        with pytest.raises(RuntimeError):
            runtime.run()
        assert seen == [(True, 3)]
        tables = runtime.store.conn.execute("SELECT name FROM sqlite_master").fetchall()
        assert ("outbox",) not in tables and runtime.features() == []


def test_live_appends_fire_tasks_and_survive_restart(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    policy = LogSettings(durability=DurabilityPolicy(commit_every_events=4, commit_every_ms=10**6))
    events = _visits("d1", 5)
    fired: list[Output] = []
    with DeviceRuntime(
        _app(), path, settings=RuntimeSettings(log=policy), on_output=fired.append
    ) as runtime:
        runtime.start_live(autoflush=False)
        outputs = [runtime.append(event) for event in events[:3]]
        assert [len(batch) for batch in outputs] == [0, 0, 1]  # fired at the page exit
        for event in events[3:]:
            runtime.append(event)
        assert runtime.store.pending == 15 % 4
    assert len(fired) == 5
    with DeviceRuntime(_app(), path) as runtime:
        assert runtime.committed_offset == 15
        assert _stored(runtime) == _expected(_app(), events)
        assert runtime.engine.last_seq("d1") == 15


def test_quiet_device_windows_close_on_the_idle_timeout(tmp_path: Path) -> None:
    from walle.streams import Tumbling
    from walle.streams.device import RuntimeSettings
    from walle.testing import ManualClock

    app = App("idle")
    app.stream("n").window(Tumbling(10_000)).aggregate(n=count())
    clock = ManualClock(0)
    settings = RuntimeSettings(idle_timeout_ms=60_000)
    with DeviceRuntime(app, tmp_path / "d.db", settings=settings, clock=clock) as runtime:
        runtime.start_live(autoflush=False)
        for event in literal_events((1_000, "click", "a"), (2_000, "click", "a")):
            assert runtime.append(event) == []
        clock.advance(30_000)
        assert runtime.close_idle() == []  # not idle long enough yet
        clock.advance(30_000)
        closed = runtime.close_idle()
        assert [(o.window, o.value) for o in closed] == [("tumbling:0-10000", {"n": 2})]
        runtime.flush()
        assert [key for key, _ in runtime.features()] == ["n|d1|tumbling:0-10000"]


def _state_rows(path: Path) -> list[tuple[str, int, list[str]]]:
    """``(app, base, devices)`` of each runtime_state row, in id order."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT app, base, blob FROM runtime_state ORDER BY id").fetchall()
    finally:
        conn.close()
    return [(app, base, [d for d, _ in decode_records(blob, "test")]) for app, base, blob in rows]


def _device_states(path: Path, app: str = "visits") -> dict[str, bytes]:
    """The newest record of each device of ``app``: the rows in id order."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT blob FROM runtime_state WHERE app = ? ORDER BY id", (app,)
        ).fetchall()
    finally:
        conn.close()
    return dict(record for (blob,) in rows for record in decode_records(blob, "test"))


def test_a_checkpoint_writes_only_the_devices_touched_since_the_last(tmp_path: Path) -> None:
    db, app = tmp_path / "d.db", _app()
    devices = [f"dev-{number}" for number in range(5)]
    _fill(db, [event for device in devices for event in _visits(device, 2)])
    with DeviceRuntime(app, db) as runtime:
        runtime.run()
    before = _device_states(db)
    assert sorted(before) == devices

    more = _visits("dev-3", 4)[6:]  # dev-3's third and fourth visits
    _fill(db, more)
    with DeviceRuntime(app, db) as runtime:
        changes = runtime.store.conn.total_changes
        runtime.run()
        # consumer offset, one state row (dev-3's record, the offset) and 2 new features
        assert runtime.store.conn.total_changes - changes == 4
        in_memory = runtime.engine.snapshot()
    after = _device_states(db)
    assert {device for device in devices if after[device] != before[device]} == {"dev-3"}
    with DeviceRuntime(app, db) as restored:
        assert restored.engine.snapshot() == in_memory
        assert restored.committed_offset == 36  # carried by the state row
    # one row appended per checkpoint (the table's last page), nothing rewritten in place
    assert _state_rows(db) == [("visits", 0, devices), ("visits", 0, ["dev-3"])]


def test_a_checkpoint_with_no_device_touched_writes_no_state_row(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    _fill(db, _visits("dev-1", 1))
    with DeviceRuntime(_app(), db) as runtime:
        runtime.run()
        runtime.checkpoint()
    assert _state_rows(db) == [("visits", 0, ["dev-1"])]


def test_the_state_is_compacted_into_a_base(tmp_path: Path) -> None:
    db, app = tmp_path / "d.db", _app()
    devices = [f"dev-{number}" for number in range(5)]
    settings = RuntimeSettings(compact_after_records=6)
    _fill(db, [event for device in devices for event in _visits(device, 2)])
    with DeviceRuntime(app, db, settings=settings) as runtime:
        runtime.run()  # 5 records since the base (none yet) <= max(6, 5 devices held)
    assert _state_rows(db) == [("visits", 0, devices)]
    conn = sqlite3.connect(db)
    with conn:  # another app's row in the same database
        conn.execute(
            "INSERT INTO runtime_state (app, base, log_offset, records, blob)"
            " VALUES ('o', 0, 0, 1, ?)",
            (encode_records([("x", b"")]),),
        )
    conn.close()
    _fill(db, _visits("dev-3", 4)[6:])
    with DeviceRuntime(app, db, settings=settings) as runtime:
        runtime.run()  # 6 records: still a delta
    _fill(db, _visits("dev-1", 3)[6:])
    with DeviceRuntime(app, db, settings=settings) as runtime:
        secure = runtime.store.conn.execute("PRAGMA secure_delete").fetchone()
        runtime.run()  # 7 > 6: a base of every device held replaces the app's rows
        in_memory = runtime.engine.snapshot()
        assert runtime.store.conn.execute("PRAGMA secure_delete").fetchone() == secure
    assert _state_rows(db) == [("o", 0, ["x"]), ("visits", 1, devices)]
    with DeviceRuntime(app, db, settings=settings) as restored:
        assert restored.engine.snapshot() == in_memory
        newest = {d: restored.engine.snapshot_device(d) for d in devices}
        assert _device_states(db) == newest
    _fill(db, _visits("dev-2", 3)[6:])
    with DeviceRuntime(app, db, settings=settings) as runtime:
        runtime.run()  # counted from the base: 1 record since it, a delta again
    assert _state_rows(db)[-1] == ("visits", 0, ["dev-2"])


def test_a_base_is_chunked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from walle.streams.device import state

    monkeypatch.setattr(state, "CHUNK_RECORDS", 2)
    db, app = tmp_path / "d.db", _app()
    devices = [f"dev-{number}" for number in range(5)]
    _fill(db, [event for device in devices for event in _visits(device, 1)])
    settings = RuntimeSettings(compact_after_records=1)
    with DeviceRuntime(app, db, settings=settings) as runtime:
        runtime.run()  # 5 records <= max(1, 5 devices held): a delta row
    _fill(db, _visits("dev-0", 2)[3:])
    with DeviceRuntime(app, db, settings=settings) as runtime:
        runtime.run()  # 6 > 5: a base, 2 records a row
        in_memory = runtime.engine.snapshot()
    assert [(base, ds) for _, base, ds in _state_rows(db)] == [
        (1, devices[:2]),
        (1, devices[2:4]),
        (1, devices[4:]),
    ]
    with DeviceRuntime(app, db) as restored:
        assert restored.engine.snapshot() == in_memory


def test_unreadable_state_rows_are_a_state_error_naming_the_row(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    _fill(db, _visits("dev-1", 1))
    with DeviceRuntime(_app(), db) as runtime:
        runtime.run()
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE runtime_state SET blob = x'00ff'")
    conn.close()
    with pytest.raises(StateError, match=r"runtime_state id 1: unreadable device state"):
        DeviceRuntime(_app(), db)


def test_a_whole_engine_checkpoint_is_restored_and_split(tmp_path: Path) -> None:
    """A database checkpointed by an earlier walle (one snapshot of the whole engine)."""
    db, app = tmp_path / "d.db", _app()
    _fill(db, _visits("dev-1", 2) + _visits("dev-2", 1))
    with DeviceRuntime(app, db) as runtime:
        runtime.run()
        whole = runtime.engine.snapshot()
    conn = sqlite3.connect(db)
    with conn:  # as 71c275f left it: schema 1, no runtime_state table
        conn.execute("UPDATE runtime_checkpoints SET snapshot = ?", (whole,))
        conn.execute("DROP TABLE runtime_state")
        conn.execute("UPDATE walle_meta SET value = '1' WHERE key = 'schema_version'")
    conn.close()
    with DeviceRuntime(app, db) as runtime:
        assert runtime.engine.snapshot() == whole
        runtime.run()
    assert sorted(_device_states(db)) == ["dev-1", "dev-2"]
    with DeviceRuntime(app, db) as runtime:
        assert runtime.engine.snapshot() == whole


_LEGACY = (
    """CREATE TABLE runtime_device_state (
        app TEXT NOT NULL, device_id TEXT NOT NULL, snapshot BLOB NOT NULL,
        PRIMARY KEY (app, device_id))""",
    """CREATE TABLE runtime_device_delta (
        id INTEGER PRIMARY KEY, app TEXT NOT NULL, device_id TEXT NOT NULL,
        snapshot BLOB NOT NULL)""",
)


def test_per_device_rows_of_an_older_walle_are_restored(tmp_path: Path) -> None:
    """A database of the per-device layout (5784607 in place, 67ba669 with delta rows): its
    records become a base (the newest record of each device), the old tables go."""
    db, app = tmp_path / "d.db", _app()
    _fill(db, _visits("dev-1", 2) + _visits("dev-2", 1))
    with DeviceRuntime(app, db) as runtime:
        runtime.run()
        old = {d: runtime.engine.snapshot_device(d) for d in ("dev-1", "dev-2")}
    _fill(db, _visits("dev-2", 2)[3:])
    with DeviceRuntime(app, db) as runtime:
        runtime.run()
        whole = runtime.engine.snapshot()
        new = runtime.engine.snapshot_device("dev-2")
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("DELETE FROM runtime_state")
        conn.execute("UPDATE walle_meta SET value = '1' WHERE key = 'schema_version'")
        for statement in _LEGACY:
            conn.execute(statement)
        conn.executemany(
            "INSERT INTO runtime_device_state VALUES (?, ?, ?)",
            [("visits", d, blob) for d, blob in old.items()] + [("other", "x", b"1")],
        )
        conn.executemany(  # dev-2 twice: the newer (higher id) wins
            "INSERT INTO runtime_device_delta (app, device_id, snapshot) VALUES (?, ?, ?)",
            [("visits", "dev-2", old["dev-2"]), ("visits", "dev-2", new)],
        )
    conn.close()
    with DeviceRuntime(app, db) as runtime:
        assert runtime.engine.snapshot() == whole
    assert _state_rows(db) == [("other", 1, ["x"]), ("visits", 1, ["dev-1", "dev-2"])]
    conn = sqlite3.connect(db)
    try:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()
    assert not tables & {"runtime_device_state", "runtime_device_delta"}
    assert _schema_version(db) == "2"


def _schema_version(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT value FROM walle_meta WHERE key = 'schema_version'").fetchone()
    finally:
        conn.close()
    return str(row[0])

"""Issue 18 item 3: live appends on a full disk get a bounded buffer, then StorageError.

The database is held to a size with SQLite's ``max_page_count`` (``LogSettings.max_pages``);
raising the limit stands for space coming back.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests._visits import padded_visits, visits_app
from walle.errors import StorageError
from walle.streams.device import (
    DeviceRuntime,
    DurabilityPolicy,
    EventLog,
    LogSettings,
    RuntimeSettings,
)
from walle.streams.engine import Engine
from walle.streams.events import Event

BOUND = 48


def _events(count_: int, start: int = 1) -> list[Event]:
    pad = {"pad": "x" * 300}
    return [Event("d1", seq, seq, "click", "item", pad) for seq in range(start, start + count_)]


def _tight(path: Path, *, spare_pages: int = 12, retry_after_ms: int = 10) -> LogSettings:
    """Settings for a log at ``path`` that fills after ``spare_pages`` more pages."""
    EventLog(path).close()
    pages = sqlite3.connect(path).execute("PRAGMA page_count").fetchone()[0]
    policy = DurabilityPolicy(
        commit_every_events=8,
        commit_every_ms=10**6,
        max_buffered_events=BOUND,
        retry_after_ms=retry_after_ms,
        max_retry_after_ms=retry_after_ms * 4,
    )
    return LogSettings(max_pages=pages + spare_pages, durability=policy)


def _count_commits(conn: sqlite3.Connection) -> list[str]:
    """Record every write transaction started on ``conn``."""
    begun: list[str] = []
    conn.set_trace_callback(lambda sql: begun.append(sql) if sql == "BEGIN IMMEDIATE" else None)
    return begun


def _append_until_refused(log: EventLog, events: list[Event]) -> tuple[list[Event], list[Event]]:
    accepted: list[Event] = []
    refused: list[Event] = []
    for event in events:
        try:
            log.append(event)
        except StorageError:
            refused.append(event)
        else:
            accepted.append(event)
        assert log.pending <= BOUND
    return accepted, refused


def _space_returns(log: EventLog) -> None:
    log.conn.execute("PRAGMA max_page_count = 1000000")


def _append_when_retry_is_due(
    log: EventLog | DeviceRuntime, event: Event, deadline_s: float = 5.0
) -> None:
    """Append ``event`` once the retry pause after the last failed commit has passed."""
    until = time.monotonic() + deadline_s
    while True:
        try:
            log.append(event)
            return
        except StorageError:
            if time.monotonic() > until:
                raise
            time.sleep(0.005)


def test_full_log_buffers_up_to_the_bound_then_refuses_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with EventLog(path, _tight(path)) as log:
        accepted, refused = _append_until_refused(log, _events(400))
        assert refused, "the size limit was never reached"
        assert log.pending == BOUND and log.commit_error is not None
        assert log.count() + log.pending == len(accepted)
        assert refused == _events(400)[len(accepted) :]  # refused from the first on, in order
        with pytest.raises(StorageError) as caught:
            log.append(_events(1, start=401)[0])
        message = str(caught.value)
        assert message.startswith(f"{path}: event not logged: {BOUND} appended events")
        assert "database is full" in message and "append this event again" in message
        _space_returns(log)
        log.flush()
        assert [event for _, event in log.read()] == accepted


def test_refused_appends_do_not_retry_the_commit_each_time(tmp_path: Path) -> None:
    """The issue: every append past the buffer retried a commit of the whole buffer."""
    path = tmp_path / "log.db"
    with EventLog(path, _tight(path, retry_after_ms=60_000)) as log:
        _append_until_refused(log, _events(400))
        begun = _count_commits(log.conn)
        started = time.perf_counter()
        _, refused = _append_until_refused(log, _events(500, start=401))
        elapsed = time.perf_counter() - started
        assert len(refused) == 500 and begun == []  # no database work during the pause
        assert elapsed < 0.5, f"500 refusals took {elapsed:.3f} s"
        _space_returns(log)
        log.flush()  # an explicit flush always tries
        assert begun == ["BEGIN IMMEDIATE"] and log.pending == 0


def test_retry_pause_grows_and_is_capped(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    settings = _tight(path, retry_after_ms=40)
    with EventLog(path, settings) as log:
        _append_until_refused(log, _events(400))
        pauses = [log.appends.retry_after_ms]
        for _ in range(4):
            with pytest.raises(StorageError):
                log.flush()
            pauses.append(log.appends.retry_after_ms)
        assert pauses == [40, 80, 160, 160, 160]
        _space_returns(log)
        log.flush()
        assert log.commit_error is None and log.appends.retry_after_ms == 0


def test_a_failed_due_commit_keeps_the_event_without_failing_the_append(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with EventLog(path, _tight(path, spare_pages=1)) as log:
        big = [event._replace(args={"pad": "x" * 2000}) for event in _events(8)]
        for event in big:  # the 8th makes the commit due; it fails
            assert log.append(event) == event
        assert log.pending == 8 and log.count() == 0
        assert "database is full" in str(log.commit_error)
        _space_returns(log)
        assert log.flush() == 8


def test_wal_is_truncated_by_the_first_commit_after_space_returns(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    wal = Path(f"{path}-wal")
    with EventLog(path, _tight(path, spare_pages=40, retry_after_ms=10)) as log:
        _, refused = _append_until_refused(log, _events(600))
        assert refused and log.commit_error is not None
        failed_size = wal.stat().st_size
        assert failed_size > 64 * 1024  # the failed transactions' frames
        _space_returns(log)
        _append_when_retry_is_due(log, refused[0])
        assert log.commit_error is None and log.pending == 1
        assert wal.stat().st_size == 0
        for event in refused[1:]:
            log.append(event)
    with EventLog(path) as log:
        assert [event for _, event in log.read()] == _events(600)


def test_live_runtime_refuses_before_the_engine_sees_the_event(tmp_path: Path) -> None:
    """A refused append leaves the engine as it was, so appending it again later counts it
    once: after recovery the store equals a run over every event, nothing lost."""
    path = tmp_path / "d.db"
    settings = RuntimeSettings(log=_tight(path, spare_pages=16))
    events = padded_visits(150)
    with DeviceRuntime(visits_app(), path, settings=settings) as runtime:
        runtime.start_live(autoflush=False)
        refused: list[Event] = []
        for event in events:
            try:
                runtime.append(event)
            except StorageError:
                refused.append(event)
        assert refused and refused == events[len(events) - len(refused) :]
        last_accepted = events[-len(refused) - 1].seq
        assert runtime.engine.last_seq("d1") == last_accepted
        runtime.store.conn.execute("PRAGMA max_page_count = 1000000")
        _append_when_retry_is_due(runtime, refused[0])  # once the retry pause has passed
        for event in refused[1:]:
            runtime.append(event)
    with DeviceRuntime(visits_app(), path) as runtime:
        assert [event for _, event in runtime.store.read()] == events
        expected = sorted(o.to_json() for o in Engine(visits_app()).process_many(events).outputs)
        assert sorted(text for _, text in runtime.features()) == expected


def test_wal_truncation_does_not_wait_for_a_reader(tmp_path: Path) -> None:
    """A reader holding a snapshot makes the truncation wait for a later commit, not block."""
    path = tmp_path / "log.db"
    settings = _tight(path, spare_pages=40, retry_after_ms=10)
    with EventLog(path, settings.model_copy(update={"busy_timeout_ms": 5000})) as log:
        _, refused = _append_until_refused(log, _events(600))
        _space_returns(log)
        reader = sqlite3.connect(path)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM events").fetchone()
        started = time.monotonic()
        _append_when_retry_is_due(log, refused[0])
        assert time.monotonic() - started < 2.0  # not the 5 s busy timeout
        assert log.commit_error is None and Path(f"{path}-wal").stat().st_size > 0
        reader.execute("COMMIT")
        reader.close()
        log.flush()
        assert Path(f"{path}-wal").stat().st_size == 0
        assert log.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        for event in refused[1:]:
            log.append(event)

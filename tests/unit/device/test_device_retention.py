"""EventLog retention: only consumed events go, bounded by age and size; offsets survive."""

from __future__ import annotations

from pathlib import Path

from walle.streams.device import EventLog, RetentionPolicy
from walle.streams.device.log import write_consumer_offset
from walle.streams.events import Event


def _fill(log: EventLog, count: int, start: int = 1) -> None:
    for seq in range(start, start + count):
        log.append(Event("d1", seq, seq, "click", "item", {"pad": "y" * 200}))
    log.flush()


def _consume(log: EventLog, name: str, offset: int) -> None:
    with log.transaction("test consume") as conn:
        write_consumer_offset(conn, name, offset)


def test_without_consumers_nothing_is_deleted(tmp_path: Path) -> None:
    with EventLog(tmp_path / "log.db") as log:
        _fill(log, 50)
        assert log.retain(RetentionPolicy()).deleted == 0
        assert log.count() == 50


def test_deletes_only_what_every_consumer_consumed(tmp_path: Path) -> None:
    with EventLog(tmp_path / "log.db") as log:
        _fill(log, 50)
        _consume(log, "fast", 40)
        _consume(log, "slow", 10)
        assert log.retain(RetentionPolicy()).deleted == 10
        assert log.first_offset() == 11
        _consume(log, "slow", 45)
        assert log.retain(RetentionPolicy()).deleted == 30
        assert [offset for offset, _ in log.read()] == list(range(41, 51))
        _fill(log, 1, start=51)
        assert log.last_offset() == 51


def test_age_bound_keeps_recent_consumed_events(tmp_path: Path) -> None:
    with EventLog(tmp_path / "log.db") as log:
        _fill(log, 20)
        _consume(log, "app", 20)
        stamp = log.conn.execute("SELECT MAX(logged_ms) FROM events").fetchone()[0]
        policy = RetentionPolicy(max_age_ms=60_000)
        assert log.retain(policy, at_ms=stamp + 1_000).deleted == 0
        assert log.retain(policy, at_ms=stamp + 61_000).deleted == 20


def test_size_bound_deletes_oldest_consumed_until_small(tmp_path: Path) -> None:
    with EventLog(tmp_path / "log.db") as log:
        _fill(log, 3000)
        _consume(log, "app", 2500)
        before = log.used_bytes()
        report = log.retain(RetentionPolicy(max_bytes=before // 3))
        assert report.deleted > 0
        assert report.bytes_after < before
        assert log.first_offset() == report.deleted + 1
        assert log.count() >= 500  # the 500 unconsumed events are kept whatever the size
        assert [offset for offset, _ in log.read(2501)] == list(range(2501, 3001))

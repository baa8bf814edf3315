"""Retention of the event log: delete what every registered consumer has consumed.

Events after the lowest committed consumer offset are never deleted; with no consumer
registered nothing is. Within that, a policy bounds the log by age and by bytes (the events
table and its unique index); the freed pages are given back to the file system.
"""

from __future__ import annotations

import sqlite3
from typing import NamedTuple

import pydantic

from walle.logging import get_logger
from walle.streams.device.database import DeviceDatabase, used_bytes
from walle.streams.device.records import now_ms

_log = get_logger("device.log")


class RetentionPolicy(pydantic.BaseModel):
    """Which consumed events to delete. Events some consumer has not consumed are always kept.

    With neither bound every consumed event goes; ``max_age_ms`` deletes consumed events logged
    longer ago than that; ``max_bytes`` deletes consumed events, oldest first, while the
    events (table and index) use more than that many bytes.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    max_bytes: int | None = pydantic.Field(default=None, ge=0)
    max_age_ms: int | None = pydantic.Field(default=None, ge=0)


class RetentionReport(NamedTuple):
    """What a retention pass deleted and the database's used bytes before and after."""

    deleted: int
    bytes_before: int
    bytes_after: int


def retain(
    db: DeviceDatabase, policy: RetentionPolicy, at_ms: int | None = None
) -> RetentionReport:
    """Delete consumed events as ``policy`` says, then give the freed pages back."""
    clock = now_ms() if at_ms is None else at_ms
    before = db.used_bytes()
    with db.transaction("apply retention") as conn:
        floor = conn.execute("SELECT MIN(log_offset) FROM consumers").fetchone()[0]
        deleted = 0 if floor is None else _delete_consumed(conn, floor, policy, clock)
    with db.reading("compact after retention") as conn:
        conn.execute("PRAGMA incremental_vacuum").fetchall()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    report = RetentionReport(deleted, before, db.used_bytes())
    _log.info("retention", deleted=deleted, bytes_before=before, bytes_after=report.bytes_after)
    return report


def _delete_consumed(
    conn: sqlite3.Connection, floor: int, policy: RetentionPolicy, clock_ms: int
) -> int:
    if policy.max_bytes is None and policy.max_age_ms is None:
        return conn.execute("DELETE FROM events WHERE log_offset <= ?", (floor,)).rowcount
    deleted = 0
    if policy.max_age_ms is not None:
        deleted += conn.execute(
            "DELETE FROM events WHERE log_offset <= ? AND logged_ms < ?",
            (floor, clock_ms - policy.max_age_ms),
        ).rowcount
    if policy.max_bytes is not None:
        deleted += _delete_until_small(conn, floor, policy.max_bytes)
    return deleted


def _delete_until_small(conn: sqlite3.Connection, floor: int, max_bytes: int) -> int:
    deleted = 0
    while log_bytes(conn) > max_bytes:
        oldest = conn.execute(
            "SELECT log_offset FROM events WHERE log_offset <= ?"
            " ORDER BY log_offset LIMIT 1 OFFSET 511",
            (floor,),
        ).fetchone()
        upto = oldest[0] if oldest else floor
        removed = conn.execute(
            "DELETE FROM events WHERE log_offset <= ? AND log_offset <= ?", (upto, floor)
        ).rowcount
        if removed == 0:
            break
        deleted += removed
    return deleted


def log_bytes(conn: sqlite3.Connection) -> int:
    """Pages of the events table and its unique index, via SQLite's dbstat table."""
    try:
        row = conn.execute(
            "SELECT SUM(pgsize) FROM dbstat WHERE name IN ('events', 'sqlite_autoindex_events_1')"
        ).fetchone()
    except sqlite3.OperationalError:  # SQLite built without dbstat: bound the whole file
        return used_bytes(conn)
    return int(row[0] or 0)

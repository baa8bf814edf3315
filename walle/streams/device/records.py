"""Rows of the event log's tables: events in (with the log's dedup rule), dead letters, offsets.

Every function takes the caller's connection and writes inside the caller's transaction, so
the append buffer, bulk ingest, the runtime's checkpoint and the uplink all write these rows
the same way. The log's rule: a device's events come in seq order; an event at or below its
device's highest logged seq is refused (a duplicate when that ``(device_id, seq)`` is logged,
out of order when it never was) and becomes a dead-letter row with the reason.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

from walle.errors import ValidationError
from walle.logging import get_logger
from walle.streams.events import Event

MAX_INTEGER = 2**63 - 1  # the largest integer an SQLite INTEGER column holds
SELECT_EVENTS = "SELECT log_offset, device_id, seq, ts, event, page, args FROM events"
_INSERT_EVENT = (
    "INSERT OR IGNORE INTO events (device_id, seq, ts, event, page, args, logged_ms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_DEAD = (
    "INSERT INTO dead_letters (source, location, task, reason, raw, logged_ms)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)

DeadRow = tuple[str, str, str | None, str, str]
"""A dead letter to write: ``(source, location, task, reason, raw)``."""

_log = get_logger("device.log")


class DeadLetterRecord(NamedTuple):
    """One dead-lettered record: where it came from, why, and its raw text."""

    id: int
    source: str
    location: str
    task: str | None
    reason: str
    raw: str
    logged_ms: int


def now_ms() -> int:
    """Wall-clock time in milliseconds (what ``logged_ms`` columns hold)."""
    return time.time_ns() // 1_000_000


def encode_args(args: dict[str, Any]) -> str:
    """Canonical JSON of an event's args (sorted keys) as stored in the log."""
    return json.dumps(args, sort_keys=True, separators=(",", ":")) if args else "{}"


def row_to_event(row: tuple[Any, ...]) -> Event:
    """An Event from a ``SELECT_EVENTS`` row (offset first)."""
    args = row[6]
    return Event(row[1], row[2], row[3], row[4], row[5], json.loads(args) if args != "{}" else {})


def last_offset_in(conn: sqlite3.Connection) -> int:
    """The highest offset ever committed, read in the caller's transaction (0 when empty)."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return int(row[0]) if row else 0


def write_dead_letters(conn: sqlite3.Connection, records: Iterable[DeadRow]) -> int:
    """Insert ``(source, location, task, reason, raw)`` rows in the caller's transaction."""
    stamp = now_ms()
    rows = [(*record, stamp) for record in records]
    conn.executemany(_INSERT_DEAD, rows)
    return len(rows)


def write_consumer_offset(conn: sqlite3.Connection, name: str, offset: int) -> None:
    """Record that consumer ``name`` has consumed everything up to ``offset`` (caller's txn)."""
    conn.execute(
        "INSERT INTO consumers (name, log_offset) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET log_offset = excluded.log_offset",
        (name, offset),
    )


def insert_events(
    conn: sqlite3.Connection,
    events: list[Event],
    source: str,
    locations: list[str] | None,
    raws: list[bytes] | None = None,
    *,
    where: str,
) -> tuple[int, list[DeadRow]]:
    """Insert events in order; the refused ones come back as dead-letter rows (not written).

    ``locations`` (``file:line``) and ``raws`` name and quote each event in its dead letter;
    without them the location is ``where`` and the raw text the event's JSON.
    """
    stamp = now_ms()
    stored = 0
    highest: dict[str, int | None] = {}
    refused: list[DeadRow] = []
    for index, event in enumerate(events):
        device = event.device_id
        if device not in highest:
            highest[device] = _highest_seq(conn, device)
        top = highest[device]
        if top is None or event.seq > top:
            row = (device, event.seq, event.ts, event.event, event.page)
            conn.execute(_INSERT_EVENT, (*row, encode_args(event.args), stamp))
            highest[device] = event.seq
            stored += 1
            continue
        location = locations[index] if locations else where
        raw = raws[index].decode("utf-8", "replace") if raws else event.to_json()
        refused.append((source, location, None, _refusal_reason(conn, event, top), raw))
    return stored, refused


def _highest_seq(conn: sqlite3.Connection, device_id: str) -> int | None:
    row = conn.execute("SELECT MAX(seq) FROM events WHERE device_id = ?", (device_id,))
    highest = row.fetchone()[0]
    return None if highest is None else int(highest)


def _refusal_reason(conn: sqlite3.Connection, event: Event, highest: int) -> str:
    """Why an event at or below its device's highest seq is refused."""
    pair = f"(device_id, seq) = ({event.device_id!r}, {event.seq})"
    row = conn.execute(
        SELECT_EVENTS + " WHERE device_id = ? AND seq = ?", (event.device_id, event.seq)
    ).fetchone()
    if row is None:
        return (
            f"out of order: {pair} was never logged but is below the device's highest seq"
            f" {highest}; a device's events must come in increasing seq order"
        )
    differs = "" if row_to_event(row) == event else " with other content (that one is kept)"
    return f"duplicate {pair}: already in the log at offset {row[0]}{differs}"


def log_refused(source: str, records: list[DeadRow]) -> None:
    """One warning, once committed, counting the refused events of an append or ingest by
    kind: duplicates of logged events, and events out of their device's seq order."""
    if not records:
        return
    duplicates = sum(record[3].startswith("duplicate ") for record in records)
    _log.warning(
        "events dead-lettered",
        source=source,
        duplicates=duplicates,
        out_of_order=len(records) - duplicates,
    )


def check_storable(event: Event, where: str | None) -> Event:
    """``event`` if SQLite can store its integers, else ValidationError naming the field (a
    seq or ts past 2**63 - 1 would otherwise fail the whole commit it is in)."""
    for field, value in (("seq", event.seq), ("ts", event.ts)):
        if value > MAX_INTEGER:
            raise ValidationError(
                f"field '{field}': {value} is above {MAX_INTEGER}, the largest integer the"
                " device log stores",
                where=where,
                field=field,
            )
    return event

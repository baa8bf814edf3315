"""``EventLog``: the device's durable event log, an SQLite database in WAL mode.

Offsets are SQLite rowids of an AUTOINCREMENT table, so they only ever grow, even after
retention deletes old rows. ``EventLog`` is the facade over the parts that each do one job:
the database itself (``database``: connection, schema and migrations, transactions), live
appends (``appends``: buffered, committed by the durability policy, with backpressure and a
flush thread), bulk JSONL ingest (``ingest``), the rows and the log's dedup rule
(``records``), and retention (``retention``). Reads by offset, consumer offsets and dead
letters are here.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from walle.errors import StorageError
from walle.streams.device import retention
from walle.streams.device.appends import AppendBuffer
from walle.streams.device.database import DeviceDatabase, FlushParticipant
from walle.streams.device.ingest import IngestReport, ingest_jsonl
from walle.streams.device.records import (
    SELECT_EVENTS,
    DeadLetterRecord,
    encode_args,
    last_offset_in,
    now_ms,
    row_to_event,
    write_consumer_offset,
    write_dead_letters,
)
from walle.streams.device.retention import RetentionPolicy, RetentionReport
from walle.streams.device.schema import SCHEMA_VERSION
from walle.streams.device.settings import DurabilityPolicy, LogSettings
from walle.streams.events import Event

__all__ = [
    "SCHEMA_VERSION",
    "DeadLetterRecord",
    "DurabilityPolicy",
    "EventLog",
    "FlushParticipant",
    "IngestReport",
    "LogSettings",
    "RetentionPolicy",
    "RetentionReport",
    "encode_args",
    "last_offset_in",
    "now_ms",
    "row_to_event",
    "write_consumer_offset",
    "write_dead_letters",
]


class EventLog:
    """A durable, append-only, offset-addressed event log in one SQLite file (WAL mode).

    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with EventLog(folder / "d.db") as log:
    ...     _ = log.append(Event("dev-1", 1, 1000, "page_enter", "item"))
    ...     _ = log.flush()
    ...     [(offset, event.seq) for offset, event in log.read()]
    [(1, 1)]
    """

    def __init__(self, path: str | Path, settings: LogSettings | None = None) -> None:
        self.database = DeviceDatabase(path, settings)
        self.path = self.database.path
        self.settings = self.database.settings
        self.conn = self.database.conn
        self.appends = AppendBuffer(self.database)

    # -- the database ----------------------------------------------------------------------

    @property
    def lock(self) -> threading.RLock:
        """The lock that serialises appends, flushes and participants (for the live runtime)."""
        return self.database.lock

    def transaction(self, action: str) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction on the database (see ``DeviceDatabase.transaction``)."""
        return self.database.transaction(action)

    def add_flush_participant(self, participant: FlushParticipant) -> None:
        """Call ``participant(conn)`` inside every flush transaction, after the new events.

        A participant may return a callable, which is called once the transaction committed.
        """
        self.appends.participants.append(participant)

    # -- live appends ----------------------------------------------------------------------

    def append(self, event: Event | dict[str, Any]) -> Event:
        """Validate and buffer one event; commits when the durability policy says so.

        Returns the validated Event: it is in the log (committed, or buffered until a commit
        works). Raises ValidationError for a malformed event and StorageError when the buffer
        is full and cannot be committed (backpressure); in both cases nothing is logged and
        the caller keeps the event. A due commit that fails keeps the events buffered and is
        retried later, without an error to this append.
        """
        checked = self.validate(event)
        self.append_valid(checked)
        return checked

    def validate(self, event: Event | dict[str, Any]) -> Event:
        """The validated Event for ``event``, if the log can take it now.

        ValidationError names the malformed field; StorageError says the log is full (see
        :meth:`check_capacity`), so a caller that validates before acting on an event (the
        live runtime) does not act on one the log will refuse.
        """
        return self.appends.validate(event)

    def append_valid(self, event: Event) -> None:
        """Buffer an already validated event; commits when the durability policy says so.

        Raises StorageError, buffering nothing, when the buffer is full (:meth:`check_capacity`).
        """
        self.appends.append_valid(event)

    def check_capacity(self) -> None:
        """Raise StorageError if the append buffer is full and a commit cannot empty it now."""
        self.appends.check_capacity()

    @property
    def commit_error(self) -> StorageError | None:
        """Why the last commit failed, while no later one has worked (None when healthy)."""
        return self.appends.commit_error

    @property
    def pending(self) -> int:
        """How many appended events are not yet durable."""
        return len(self.appends.events)

    def flush_if_due(self) -> int:
        """Flush if N events are buffered or the oldest has waited T ms; returns events stored."""
        return self.appends.flush_if_due()

    def flush(self) -> int:
        """Commit buffered appends (and run flush participants) in one transaction.

        Returns how many events were stored (duplicates and events out of their device's seq
        order go to the dead-letter table instead). On failure everything stays buffered, a
        StorageError says why, and automatic retries pause (see DurabilityPolicy).
        """
        return self.appends.flush()

    def start_autoflush(self) -> None:
        """Start a daemon thread that flushes buffered appends once they are T ms old."""
        self.appends.start_autoflush()

    # -- bulk ingest -----------------------------------------------------------------------

    def ingest_jsonl(self, path: str | Path, *, strict: bool = False) -> IngestReport:
        """Store the events of a JSONL file in one transaction, in file order.

        Bad lines (and a truncated last line) go to the dead-letter table with ``file:line``,
        the reason and the raw text; so do ``(device_id, seq)`` pairs already in the log and
        events whose seq is below their device's highest (a UTF-8 BOM on line 1 is skipped).
        With ``strict`` the first bad line raises ValidationError and nothing is stored.
        A file whose exact content was ingested before is skipped (re-running is harmless).
        Buffered appends are committed first.
        """
        self.flush()
        return ingest_jsonl(self.database, path, strict=strict)

    # -- reading ---------------------------------------------------------------------------

    def read_batch(
        self, after_offset: int, limit: int, until_offset: int | None = None
    ) -> list[tuple[int, Event]]:
        """Up to ``limit`` events with ``after_offset < offset <= until_offset``, in order."""
        query = SELECT_EVENTS + " WHERE log_offset > ?"
        params: tuple[int, ...] = (after_offset,)
        if until_offset is not None:
            query += " AND log_offset <= ?"
            params = (after_offset, until_offset)
        with self.database.reading(f"read events after offset {after_offset}") as conn:
            rows = conn.execute(query + " ORDER BY log_offset LIMIT ?", (*params, limit))
            return [(row[0], row_to_event(row)) for row in rows.fetchall()]

    def read(
        self, from_offset: int = 0, until_offset: int | None = None, *, batch: int = 1024
    ) -> Iterator[tuple[int, Event]]:
        """Yield ``(offset, event)`` for ``from_offset <= offset <= until_offset`` in order."""
        after = from_offset - 1
        while True:
            rows = self.read_batch(after, batch, until_offset)
            if not rows:
                return
            yield from rows
            after = rows[-1][0]

    @property
    def log_id(self) -> str:
        """A random id made when the log was created: checkpoints name the log they read."""
        return self.database.log_id

    def last_offset(self) -> int:
        """The highest offset ever committed (0 for an empty log); survives retention."""
        with self.database.reading("read the last offset") as conn:
            return last_offset_in(conn)

    def first_offset(self) -> int | None:
        """The lowest offset still in the log (None when empty)."""
        with self.database.reading("read the first offset") as conn:
            first = conn.execute("SELECT MIN(log_offset) FROM events").fetchone()[0]
        return None if first is None else int(first)

    def count(self) -> int:
        """How many events the log holds now."""
        with self.database.reading("count events") as conn:
            return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def dead_letters(self, limit: int | None = None) -> list[DeadLetterRecord]:
        """Dead-lettered records, oldest first."""
        query = "SELECT id, source, location, task, reason, raw, logged_ms FROM dead_letters"
        query += " ORDER BY id" + (f" LIMIT {int(limit)}" if limit is not None else "")
        with self.database.reading("read dead letters") as conn:
            return [DeadLetterRecord(*row) for row in conn.execute(query).fetchall()]

    # -- consumers and retention -----------------------------------------------------------

    def consumer_offsets(self) -> dict[str, int]:
        """Each registered consumer's committed offset."""
        with self.database.reading("read consumer offsets") as conn:
            rows = conn.execute("SELECT name, log_offset FROM consumers").fetchall()
        return {name: offset for name, offset in rows}

    def register_consumer(self, name: str, offset: int = 0) -> None:
        """Make retention keep events for ``name`` (no-op if already registered)."""
        with self.transaction(f"register consumer {name!r}") as conn:
            register_consumer(conn, name, offset)

    def used_bytes(self) -> int:
        """Bytes of the database in use (pages minus free pages, times the page size)."""
        return self.database.used_bytes()

    def log_bytes(self) -> int:
        """Bytes the events table and its index occupy (what retention bounds)."""
        with self.database.reading("measure the event log") as conn:
            return retention.log_bytes(conn)

    def retain(self, policy: RetentionPolicy, *, at_ms: int | None = None) -> RetentionReport:
        """Delete consumed events as ``policy`` says, then give the freed pages back.

        Events after the lowest committed consumer offset are never deleted; with no consumer
        registered nothing is.
        """
        return retention.retain(self.database, policy, at_ms)

    # -- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Flush buffered appends and close the database (raises if the flush fails)."""
        self.appends.stop_autoflush()
        try:
            if self.appends.events:
                self.flush()
        finally:
            self.database.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def register_consumer(conn: sqlite3.Connection, name: str, offset: int = 0) -> None:
    """Register consumer ``name`` at ``offset`` unless it is registered (caller's txn)."""
    conn.execute("INSERT OR IGNORE INTO consumers (name, log_offset) VALUES (?, ?)", (name, offset))

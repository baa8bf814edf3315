"""``EventLog``: the device's durable event log, an SQLite database in WAL mode.

Offsets are SQLite rowids of an AUTOINCREMENT table, so they only ever grow, even after
retention deletes old rows. Live appends are buffered in memory and committed by the
durability policy (every N events or T ms); a failed commit keeps them buffered and is retried
after a growing pause (not on every append), the buffer is bounded (a full one refuses appends
with StorageError: backpressure), and the first commit that works again truncates the WAL the
failed ones left behind. "Flush participants" (the live runtime's checkpoint) run inside the same
transaction as the events they follow. Bulk JSONL ingest keeps the good lines and sends bad
lines, duplicate ``(device_id, seq)`` pairs and events out of their device's seq order to the
dead-letter table with file:line, reason and the raw text. Retention deletes only what every
registered consumer has consumed.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

import pydantic

from walle.errors import StorageError, ValidationError
from walle.logging import get_logger
from walle.streams.device._sqlite import connect, rollback_quietly, storage_errors
from walle.streams.events import Event, decode_event, validate_event

SCHEMA_VERSION = "1"
_MAX_INTEGER = 2**63 - 1  # the largest integer an SQLite INTEGER column holds

_SCHEMA = """
CREATE TABLE IF NOT EXISTS walle_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    log_offset INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL,
    event TEXT NOT NULL, page TEXT NOT NULL, args TEXT NOT NULL, logged_ms INTEGER NOT NULL,
    UNIQUE (device_id, seq)
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL, location TEXT NOT NULL, task TEXT,
    reason TEXT NOT NULL, raw TEXT NOT NULL, logged_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS consumers (name TEXT PRIMARY KEY, log_offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ingested_files (
    sha256 TEXT PRIMARY KEY, path TEXT NOT NULL, events INTEGER NOT NULL,
    dead INTEGER NOT NULL, logged_ms INTEGER NOT NULL
);
"""

_INSERT_EVENT = (
    "INSERT OR IGNORE INTO events (device_id, seq, ts, event, page, args, logged_ms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_DEAD = (
    "INSERT INTO dead_letters (source, location, task, reason, raw, logged_ms)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_SELECT_EVENTS = "SELECT log_offset, device_id, seq, ts, event, page, args FROM events"

_log = get_logger("device.log")


class DurabilityPolicy(pydantic.BaseModel):
    """When buffered live appends become durable: every N events or after T ms, whichever first.

    ``synchronous`` is SQLite's fsync level in WAL mode: NORMAL survives a process crash
    (the crash tests kill with SIGKILL), FULL also survives a power cut.

    Backpressure: at most ``max_buffered_events`` appended events wait in memory. A full
    buffer commits at once; if that commit fails (disk full, locked), appends are refused with
    StorageError until one works. A failed commit is retried after ``retry_after_ms``,
    doubling after each further failure up to ``max_retry_after_ms``; appends in between only
    buffer (they do not retry the commit).
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    commit_every_events: int = pydantic.Field(default=64, ge=1)
    commit_every_ms: int = pydantic.Field(default=100, ge=0)
    synchronous: Literal["OFF", "NORMAL", "FULL"] = "NORMAL"
    max_buffered_events: int = pydantic.Field(default=4096, ge=1)
    retry_after_ms: int = pydantic.Field(default=50, ge=0)
    max_retry_after_ms: int = pydantic.Field(default=2000, ge=0)


class LogSettings(pydantic.BaseModel):
    """How an EventLog opens its database: durability, lock wait, and an optional size limit.

    ``max_pages`` caps the database (SQLite ``max_page_count``): small devices use it to keep
    the log inside a quota, and tests use it to simulate a full disk.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    durability: DurabilityPolicy = DurabilityPolicy()
    busy_timeout_ms: int = pydantic.Field(default=5000, ge=0)
    max_pages: int | None = pydantic.Field(default=None, ge=1)
    read_only: bool = False


class RetentionPolicy(pydantic.BaseModel):
    """Which consumed events to delete. Events some consumer has not consumed are always kept.

    With neither bound every consumed event goes; ``max_age_ms`` deletes consumed events logged
    longer ago than that; ``max_bytes`` deletes consumed events, oldest first, while the
    events (table and index) use more than that many bytes.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    max_bytes: int | None = pydantic.Field(default=None, ge=0)
    max_age_ms: int | None = pydantic.Field(default=None, ge=0)


class IngestReport(NamedTuple):
    """What a bulk ingest did: events stored, records dead-lettered, file already ingested."""

    path: str
    events: int
    dead_letters: int
    already_ingested: bool
    first_offset: int | None
    last_offset: int | None


class RetentionReport(NamedTuple):
    """What a retention pass deleted and the database's used bytes before and after."""

    deleted: int
    bytes_before: int
    bytes_after: int


class DeadLetterRecord(NamedTuple):
    """One dead-lettered record: where it came from, why, and its raw text."""

    id: int
    source: str
    location: str
    task: str | None
    reason: str
    raw: str
    logged_ms: int


FlushParticipant = Callable[[sqlite3.Connection], Callable[[], None] | None]


def now_ms() -> int:
    """Wall-clock time in milliseconds (what ``logged_ms`` columns hold)."""
    return time.time_ns() // 1_000_000


def encode_args(args: dict[str, Any]) -> str:
    """Canonical JSON of an event's args (sorted keys) as stored in the log."""
    return json.dumps(args, sort_keys=True, separators=(",", ":")) if args else "{}"


def row_to_event(row: tuple[Any, ...]) -> Event:
    """An Event from a ``_SELECT_EVENTS`` row (offset first)."""
    args = row[6]
    return Event(row[1], row[2], row[3], row[4], row[5], json.loads(args) if args != "{}" else {})


def write_dead_letters(
    conn: sqlite3.Connection,
    records: Iterable[tuple[str, str, str | None, str, str]],
) -> int:
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
        self.path = Path(path)
        self.settings = settings or LogSettings()
        self._lock = threading.RLock()
        self._pending: list[Event] = []
        self._pending_since = 0.0
        self._participants: list[FlushParticipant] = []
        self._commit_error: StorageError | None = None  # the last failed commit, until one works
        self._retry_after_ms = 0
        self._retry_at = 0.0  # time.monotonic() before which no commit is retried
        self._wal_dirty = False  # a transaction failed: truncate the WAL after the next commit
        self._stop_autoflush: threading.Event | None = None
        self._autoflush: threading.Thread | None = None
        self.conn = connect(
            self.path,
            busy_timeout_ms=self.settings.busy_timeout_ms,
            read_only=self.settings.read_only,
        )
        try:
            self._prepare()
        except BaseException:
            self.conn.close()
            raise

    # -- opening ---------------------------------------------------------------------------

    def _prepare(self) -> None:
        with storage_errors(self.path, "open the event log"):
            if self.settings.read_only:
                self._check_schema()
                return
            if self.conn.execute("PRAGMA page_count").fetchone()[0] == 0:
                self.conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StorageError(f"{self.path}: cannot switch to WAL mode (got {mode!r})")
            self.conn.execute(f"PRAGMA synchronous = {self.settings.durability.synchronous}")
            if self.settings.max_pages is not None:
                self.conn.execute(f"PRAGMA max_page_count = {int(self.settings.max_pages)}")
            with self.transaction("create the event log schema") as conn:
                self._create_schema(conn)
            self._check_schema()

    @staticmethod
    def _create_schema(conn: sqlite3.Connection) -> None:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.executemany(
            "INSERT OR IGNORE INTO walle_meta (key, value) VALUES (?, ?)",
            [("schema_version", SCHEMA_VERSION), ("log_id", uuid.uuid4().hex)],
        )

    def _check_schema(self) -> None:
        try:
            row = self.conn.execute(
                "SELECT value FROM walle_meta WHERE key = 'schema_version'"
            ).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):  # unreadable, locked, ...: say that instead
                with storage_errors(self.path, "read the event log"):
                    raise
            row = None
        if row is None:
            raise StorageError(f"{self.path}: not a walle event log (no walle_meta table)")
        if row[0] != SCHEMA_VERSION:
            raise StorageError(
                f"{self.path}: event log schema version {row[0]}, this walle reads "
                f"{SCHEMA_VERSION}; replay the original JSONL into a new log"
            )

    # -- transactions ----------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE .. COMMIT); on any error nothing is kept.

        sqlite3 errors become StorageError naming the file and ``action``.
        A failed transaction may leave the WAL file at its full size; the next one that
        commits truncates it (``wal_checkpoint(TRUNCATE)``), giving the space back.
        """
        with self._lock:
            try:
                with storage_errors(self.path, action):
                    self.conn.execute("BEGIN IMMEDIATE")
                    yield self.conn
                    self.conn.execute("COMMIT")
            except BaseException:
                rollback_quietly(self.conn)
                self._wal_dirty = True
                raise
            if self._wal_dirty:
                self._truncate_wal()

    def _truncate_wal(self) -> None:
        """Checkpoint the whole WAL into the database and truncate it to 0 bytes (best effort,
        without waiting: while another connection reads, the next commit tries again)."""
        try:
            self.conn.execute("PRAGMA busy_timeout = 0")
            busy = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error as exc:
            _log.warning("WAL not truncated yet", file=str(self.path), error=str(exc))
            return
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {int(self.settings.busy_timeout_ms)}")
        self._wal_dirty = bool(busy)

    def add_flush_participant(self, participant: FlushParticipant) -> None:
        """Call ``participant(conn)`` inside every flush transaction, after the new events.

        A participant may return a callable, which is called once the transaction committed.
        """
        self._participants.append(participant)

    # -- live appends ----------------------------------------------------------------------

    @property
    def lock(self) -> threading.RLock:
        """The lock that serialises appends, flushes and participants (for the live runtime)."""
        return self._lock

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
        record = event._asdict() if isinstance(event, Event) else event
        where = f"{self.path}: append"
        checked = _check_storable(validate_event(record, where=where), where)
        self.check_capacity()
        return checked

    def append_valid(self, event: Event) -> None:
        """Buffer an already validated event; commits when the durability policy says so.

        Raises StorageError, buffering nothing, when the buffer is full (:meth:`check_capacity`).
        """
        with self._lock:
            self.check_capacity()
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.append(event)
            with contextlib.suppress(StorageError):  # recorded; retried after the pause
                self.flush_if_due()

    def check_capacity(self) -> None:
        """Raise StorageError if the append buffer is full and a commit cannot empty it now.

        A full buffer is committed at once, unless a commit failed less than the retry pause
        ago: then the refusal costs no database work.
        """
        limit = self.settings.durability.max_buffered_events
        with self._lock:
            if len(self._pending) < limit:
                return
            if self._retry_due():
                with contextlib.suppress(StorageError):
                    self.flush()
                if len(self._pending) < limit:
                    return
            raise StorageError(
                f"{self.path}: event not logged: {len(self._pending)} appended events"
                f" (max_buffered_events) wait in memory for a commit that failed:"
                f" {self._commit_error}. Nothing buffered is lost; free space or fix the cause,"
                f" then append this event again (next commit try in {self._retry_in_ms()} ms)"
            )

    def _retry_due(self) -> bool:
        return self._commit_error is None or time.monotonic() >= self._retry_at

    def _retry_in_ms(self) -> int:
        return max(0, round((self._retry_at - time.monotonic()) * 1000))

    def _commit_failed(self, exc: StorageError) -> None:
        policy = self.settings.durability
        first = self._commit_error is None
        pause = policy.retry_after_ms if first else self._retry_after_ms * 2
        self._retry_after_ms = min(pause, policy.max_retry_after_ms)
        self._retry_at = time.monotonic() + self._retry_after_ms / 1000
        self._commit_error = exc
        _log.error(
            "commit failed; events stay buffered",
            pending=len(self._pending),
            retry_in_ms=self._retry_after_ms,
            error=str(exc),
        )

    def _commit_worked(self) -> None:
        if self._commit_error is not None:
            _log.info("commits work again", file=str(self.path))
        self._commit_error = None
        self._retry_after_ms = 0

    @property
    def commit_error(self) -> StorageError | None:
        """Why the last commit failed, while no later one has worked (None when healthy)."""
        return self._commit_error

    @property
    def pending(self) -> int:
        """How many appended events are not yet durable."""
        return len(self._pending)

    def flush_if_due(self) -> int:
        """Flush if N events are buffered or the oldest has waited T ms; returns events stored.

        After a failed commit nothing is tried until the retry pause has passed.
        """
        policy = self.settings.durability
        with self._lock:
            if not self._pending or not self._retry_due():
                return 0
            waited_ms = (time.monotonic() - self._pending_since) * 1000
            if (
                len(self._pending) >= policy.commit_every_events
                or waited_ms >= policy.commit_every_ms
            ):
                return self.flush()
        return 0

    def flush(self) -> int:
        """Commit buffered appends (and run flush participants) in one transaction.

        Returns how many events were stored (duplicates and events out of their device's seq
        order go to the dead-letter table instead). On failure everything stays buffered, a
        StorageError says why, and automatic retries pause (see DurabilityPolicy).
        """
        with self._lock:
            if not self._pending and not self._participants:
                return 0
            try:
                with self.transaction("commit appended events") as conn:
                    stored, refused = self._insert(conn, self._pending, "append", None)
                    write_dead_letters(conn, refused)
                    committed = [participant(conn) for participant in self._participants]
            except StorageError as exc:
                self._commit_failed(exc)
                raise
            self._pending.clear()
            self._commit_worked()
            _log_refused("append", refused)
            for on_commit in committed:
                if on_commit is not None:
                    on_commit()
            return stored

    def start_autoflush(self) -> None:
        """Start a daemon thread that flushes buffered appends once they are T ms old."""
        if self._autoflush is not None:
            return
        self._stop_autoflush = threading.Event()
        period = max(self.settings.durability.commit_every_ms, 1) / 1000
        self._autoflush = threading.Thread(
            target=self._autoflush_loop, args=(self._stop_autoflush, period), daemon=True
        )
        self._autoflush.start()

    def _autoflush_loop(self, stop: threading.Event, period: float) -> None:
        while not stop.wait(period):
            try:
                self.flush_if_due()
            except StorageError as exc:
                _log.error("autoflush failed; events stay buffered", error=str(exc))

    def _stop_autoflush_thread(self) -> None:
        if self._autoflush is not None and self._stop_autoflush is not None:
            self._stop_autoflush.set()
            self._autoflush.join(timeout=5)
            self._autoflush = None

    # -- bulk ingest -----------------------------------------------------------------------

    def ingest_jsonl(self, path: str | Path, *, strict: bool = False) -> IngestReport:
        """Store the events of a JSONL file in one transaction, in file order.

        Bad lines (and a truncated last line) go to the dead-letter table with ``file:line``,
        the reason and the raw text; so do ``(device_id, seq)`` pairs already in the log and
        events whose seq is below their device's highest (a UTF-8 BOM on line 1 is skipped).
        With ``strict`` the first bad line raises ValidationError and nothing is stored.
        A file whose exact content was ingested before is skipped (re-running is harmless).
        """
        source = Path(path)
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise StorageError(f"{source}: cannot read the event file ({exc})") from exc
        digest = hashlib.sha256(data).hexdigest()
        events, locations, raws, bad = _decode_lines(source, data, strict=strict)
        self.flush()
        with self.transaction(f"ingest {source}") as conn:
            if conn.execute("SELECT 1 FROM ingested_files WHERE sha256 = ?", (digest,)).fetchone():
                return IngestReport(str(source), 0, 0, True, None, None)
            before = self._last_offset(conn)
            stored, refused = self._insert(conn, events, "ingest", locations, raws)
            dead = refused + [("ingest", *record) for record in bad]
            write_dead_letters(conn, sorted(dead, key=_line_number))
            conn.execute(
                "INSERT INTO ingested_files (sha256, path, events, dead, logged_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                (digest, str(source), stored, len(events) - stored + len(bad), now_ms()),
            )
            after = self._last_offset(conn)
        first = before + 1 if stored else None
        report = IngestReport(
            str(source), stored, len(events) - stored + len(bad), False, first, after or None
        )
        _log_refused("ingest", refused)
        _log.info("ingested", file=str(source), events=stored, dead_letters=report.dead_letters)
        return report

    def _insert(
        self,
        conn: sqlite3.Connection,
        events: list[Event],
        source: str,
        locations: list[str] | None,
        raws: list[bytes] | None = None,
    ) -> tuple[int, list[tuple[str, str, str | None, str, str]]]:
        """Insert events in order; the refused ones come back as dead-letter rows (not written).

        A device's events must come in seq order: an event whose seq is at or below the
        highest seq of its device in the log is refused, as a duplicate when that
        ``(device_id, seq)`` is in the log, as out of order when it never was (the engine
        would otherwise drop it as a re-delivery).
        """
        stamp = now_ms()
        stored = 0
        highest: dict[str, int | None] = {}
        refused: list[tuple[str, str, str | None, str, str]] = []
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
            where = locations[index] if locations else f"{self.path}: append"
            raw = raws[index].decode("utf-8", "replace") if raws else event.to_json()
            refused.append((source, where, None, _refusal_reason(conn, event, top), raw))
        return stored, refused

    # -- reading ---------------------------------------------------------------------------

    def read_batch(
        self, after_offset: int, limit: int, until_offset: int | None = None
    ) -> list[tuple[int, Event]]:
        """Up to ``limit`` events with ``after_offset < offset <= until_offset``, in order."""
        query = _SELECT_EVENTS + " WHERE log_offset > ?"
        params: tuple[int, ...] = (after_offset,)
        if until_offset is not None:
            query += " AND log_offset <= ?"
            params = (after_offset, until_offset)
        with self._lock, storage_errors(self.path, f"read events after offset {after_offset}"):
            rows = self.conn.execute(query + " ORDER BY log_offset LIMIT ?", (*params, limit))
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
        with self._lock, storage_errors(self.path, "read the log id"):
            row = self.conn.execute("SELECT value FROM walle_meta WHERE key = 'log_id'").fetchone()
        return row[0] if row else str(self.path.resolve())

    def last_offset(self) -> int:
        """The highest offset ever committed (0 for an empty log); survives retention."""
        with self._lock, storage_errors(self.path, "read the last offset"):
            return self._last_offset(self.conn)

    @staticmethod
    def _last_offset(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return int(row[0]) if row else 0

    def first_offset(self) -> int | None:
        """The lowest offset still in the log (None when empty)."""
        with self._lock, storage_errors(self.path, "read the first offset"):
            return self.conn.execute("SELECT MIN(log_offset) FROM events").fetchone()[0]

    def count(self) -> int:
        """How many events the log holds now."""
        with self._lock, storage_errors(self.path, "count events"):
            return int(self.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def dead_letters(self, limit: int | None = None) -> list[DeadLetterRecord]:
        """Dead-lettered records, oldest first."""
        query = "SELECT id, source, location, task, reason, raw, logged_ms FROM dead_letters"
        query += " ORDER BY id" + (f" LIMIT {int(limit)}" if limit is not None else "")
        with self._lock, storage_errors(self.path, "read dead letters"):
            return [DeadLetterRecord(*row) for row in self.conn.execute(query).fetchall()]

    # -- consumers and retention -----------------------------------------------------------

    def consumer_offsets(self) -> dict[str, int]:
        """Each registered consumer's committed offset."""
        with self._lock, storage_errors(self.path, "read consumer offsets"):
            rows = self.conn.execute("SELECT name, log_offset FROM consumers").fetchall()
        return {name: offset for name, offset in rows}

    def register_consumer(self, name: str, offset: int = 0) -> None:
        """Make retention keep events for ``name`` (no-op if already registered)."""
        with self.transaction(f"register consumer {name!r}") as conn:
            conn.execute(
                "INSERT OR IGNORE INTO consumers (name, log_offset) VALUES (?, ?)", (name, offset)
            )

    def used_bytes(self) -> int:
        """Bytes of the database in use (pages minus free pages, times the page size)."""
        with self._lock, storage_errors(self.path, "measure the database"):
            return self._used_bytes(self.conn)

    def log_bytes(self) -> int:
        """Bytes the events table and its index occupy (what retention bounds)."""
        with self._lock, storage_errors(self.path, "measure the event log"):
            return _log_bytes(self.conn)

    @staticmethod
    def _used_bytes(conn: sqlite3.Connection) -> int:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * conn.execute("PRAGMA page_size").fetchone()[0])

    def retain(self, policy: RetentionPolicy, *, at_ms: int | None = None) -> RetentionReport:
        """Delete consumed events as ``policy`` says, then give the freed pages back.

        Events after the lowest committed consumer offset are never deleted; with no consumer
        registered nothing is.
        """
        clock = now_ms() if at_ms is None else at_ms
        before = self.used_bytes()
        with self.transaction("apply retention") as conn:
            floor = conn.execute("SELECT MIN(log_offset) FROM consumers").fetchone()[0]
            deleted = 0 if floor is None else _delete_consumed(conn, floor, policy, clock)
        with self._lock, storage_errors(self.path, "compact after retention"):
            self.conn.execute("PRAGMA incremental_vacuum").fetchall()
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        report = RetentionReport(deleted, before, self.used_bytes())
        _log.info("retention", deleted=deleted, bytes_before=before, bytes_after=report.bytes_after)
        return report

    # -- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Flush buffered appends and close the database (raises if the flush fails)."""
        self._stop_autoflush_thread()
        try:
            if self._pending:
                self.flush()
        finally:
            with self._lock:
                self.conn.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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
    while _log_bytes(conn) > max_bytes:
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


def _log_bytes(conn: sqlite3.Connection) -> int:
    """Pages of the events table and its unique index, via SQLite's dbstat table."""
    try:
        row = conn.execute(
            "SELECT SUM(pgsize) FROM dbstat WHERE name IN ('events', 'sqlite_autoindex_events_1')"
        ).fetchone()
    except sqlite3.OperationalError:  # SQLite built without dbstat: bound the whole file
        return EventLog._used_bytes(conn)
    return int(row[0] or 0)


def _highest_seq(conn: sqlite3.Connection, device_id: str) -> int | None:
    row = conn.execute("SELECT MAX(seq) FROM events WHERE device_id = ?", (device_id,))
    return row.fetchone()[0]


def _refusal_reason(conn: sqlite3.Connection, event: Event, highest: int) -> str:
    """Why an event at or below its device's highest seq is refused."""
    pair = f"(device_id, seq) = ({event.device_id!r}, {event.seq})"
    row = conn.execute(
        _SELECT_EVENTS + " WHERE device_id = ? AND seq = ?", (event.device_id, event.seq)
    ).fetchone()
    if row is None:
        return (
            f"out of order: {pair} was never logged but is below the device's highest seq"
            f" {highest}; a device's events must come in increasing seq order"
        )
    differs = "" if row_to_event(row) == event else " with other content (that one is kept)"
    return f"duplicate {pair}: already in the log at offset {row[0]}{differs}"


def _log_refused(source: str, records: list[tuple[str, str, str | None, str, str]]) -> None:
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


def _check_storable(event: Event, where: str | None) -> Event:
    """``event`` if SQLite can store its integers, else ValidationError naming the field (a
    seq or ts past 2**63 - 1 would otherwise fail the whole commit it is in)."""
    for field, value in (("seq", event.seq), ("ts", event.ts)):
        if value > _MAX_INTEGER:
            raise ValidationError(
                f"field '{field}': {value} is above {_MAX_INTEGER}, the largest integer the"
                " device log stores",
                where=where,
                field=field,
            )
    return event


def _line_number(record: tuple[str, str, str | None, str, str]) -> int:
    return int(record[1].rsplit(":", 1)[1])


def _decode_lines(
    source: Path, data: bytes, *, strict: bool
) -> tuple[list[Event], list[str], list[bytes], list[tuple[str, str | None, str, str]]]:
    """Decode JSONL bytes: good events with their ``file:line`` and raw line, and dead-letter
    rows. A UTF-8 byte order mark at the start of the file is skipped."""
    events: list[Event] = []
    locations: list[str] = []
    raws: list[bytes] = []
    bad: list[tuple[str, str | None, str, str]] = []
    lines = data.removeprefix(codecs.BOM_UTF8).split(b"\n")
    truncated = bool(lines[-1].strip())
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            events.append(_check_storable(decode_event(line), None))
            locations.append(where)
            raws.append(line)
        except ValidationError as exc:
            reason = str(exc)
            if truncated and number == len(lines):
                reason = f"truncated last line (no newline at end of file): {reason}"
            if strict:
                raise ValidationError(reason, where=where, field=exc.field) from None
            bad.append((where, None, reason, line.decode("utf-8", "replace")))
    return events, locations, raws, bad

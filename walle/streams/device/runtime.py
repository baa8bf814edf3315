"""``DeviceRuntime``: drives the streams engine over the device's event log, crash-safely.

At every checkpoint ONE SQLite transaction writes the state of the devices touched since the
last checkpoint (one msgpack record per device, appended to a delta table so that they fill
one or two pages at its end, wherever the devices sort; a compaction folds the deltas into
the per-device table once they outnumber the devices), the app's fingerprint, the outputs
(upserted into the feature store by ``Output.key``), late events, dead letters, the input
offset, and whatever the checkpoint participants add (the uplink outbox). A crash anywhere
leaves either the previous checkpoint or the new one, and a restart resumes from it (the
engine built from the device records, the newest of each device); since the engine is
deterministic, re-processing the events after that offset reproduces exactly what was lost,
so nothing is lost or duplicated.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import pydantic

from walle.errors import StateError
from walle.logging import get_logger
from walle.streams.device._sqlite import storage_errors
from walle.streams.device.log import (
    EventLog,
    LogSettings,
    RetentionPolicy,
    write_consumer_offset,
    write_dead_letters,
)
from walle.streams.engine import END_OF_LOG_MS
from walle.streams.events import Event

if TYPE_CHECKING:
    from walle.streams.app import App
    from walle.streams.engine import Engine, Output

CheckpointParticipant = Callable[[sqlite3.Connection, Sequence["Output"]], None]
OutputCallback = Callable[["Output"], None]


class Clock(Protocol):
    """Milliseconds of processing time (``walle.testing.ManualClock`` in tests)."""

    def now_ms(self) -> float: ...


class _MonotonicClock:
    def now_ms(self) -> float:
        return time.monotonic() * 1000


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS runtime_checkpoints (
        app TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, log_id TEXT NOT NULL,
        log_offset INTEGER NOT NULL, snapshot BLOB NOT NULL, updated_ms INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS features (
        app TEXT NOT NULL, key TEXT NOT NULL, task TEXT NOT NULL, device_id TEXT NOT NULL,
        window TEXT NOT NULL, ts INTEGER NOT NULL, output TEXT NOT NULL,
        value TEXT GENERATED ALWAYS AS (json_extract(output, '$.value')) VIRTUAL,
        PRIMARY KEY (app, key))""",
    """CREATE TABLE IF NOT EXISTS runtime_device_state (
        app TEXT NOT NULL, device_id TEXT NOT NULL, snapshot BLOB NOT NULL,
        PRIMARY KEY (app, device_id))""",
    # appended records, newest = highest id; no index beyond the rowid, so a checkpoint's
    # records land on the last page or two whichever devices they are
    """CREATE TABLE IF NOT EXISTS runtime_device_delta (
        id INTEGER PRIMARY KEY, app TEXT NOT NULL, device_id TEXT NOT NULL,
        snapshot BLOB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS late_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, task TEXT NOT NULL,
        device_id TEXT NOT NULL, seq INTEGER NOT NULL, reason TEXT NOT NULL, raw TEXT NOT NULL)""",
)
_UPSERT_FEATURE = (
    "INSERT INTO features (app, key, task, device_id, window, ts, output)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (app, key) DO UPDATE SET"
    " task = excluded.task, device_id = excluded.device_id, window = excluded.window,"
    " ts = excluded.ts, output = excluded.output"
)
_UPSERT_DEVICE = (
    "INSERT INTO runtime_device_state (app, device_id, snapshot) VALUES (?, ?, ?)"
    " ON CONFLICT (app, device_id) DO UPDATE SET snapshot = excluded.snapshot"
)
_APPEND_DELTA = "INSERT INTO runtime_device_delta (app, device_id, snapshot) VALUES (?, ?, ?)"
_PER_DEVICE = b""  # runtime_checkpoints.snapshot when the state is in runtime_device_state
_UPSERT_CHECKPOINT = (
    "INSERT INTO runtime_checkpoints (app, fingerprint, log_id, log_offset, snapshot, updated_ms)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (app) DO UPDATE SET"
    " fingerprint = excluded.fingerprint, log_id = excluded.log_id,"
    " log_offset = excluded.log_offset, snapshot = excluded.snapshot,"
    " updated_ms = excluded.updated_ms"
)

_log = get_logger("device.runtime")


class RuntimeSettings(pydantic.BaseModel):
    """How the runtime batches and checkpoints, and how it opens its database.

    A checkpoint happens after ``checkpoint_every_events`` events or ``checkpoint_every_ms``,
    whichever first, and always at the end of a run. Smaller means less re-processing after
    a crash and more write cost. In live mode, a device quiet for ``idle_timeout_ms`` of
    wall-clock time has its watermark moved on with the clock, so its windows still close.
    With ``retention``, every run ends with a retention pass over the runtime's own log
    (consumed events only). Device records are appended to a delta table; the checkpoint
    that would take it past ``max(compact_delta_rows, devices held)`` rows folds it into the
    per-device table instead (so the deltas never outgrow the state).
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    batch_events: int = pydantic.Field(default=1024, ge=1)
    checkpoint_every_events: int = pydantic.Field(default=16384, ge=1)
    checkpoint_every_ms: int = pydantic.Field(default=2000, ge=0)
    idle_timeout_ms: int = pydantic.Field(default=60_000, ge=1)
    log: LogSettings = LogSettings()
    retention: RetentionPolicy | None = None
    compact_delta_rows: int = pydantic.Field(default=1024, ge=1)


class RunReport(NamedTuple):
    """What one run did: offsets covered, counts, and the rate."""

    from_offset: int
    to_offset: int
    events: int
    outputs: int
    late: int
    dead_letters: int
    duplicates: int
    checkpoints: int
    seconds: float

    @property
    def events_per_s(self) -> float:
        """Events processed per second of wall-clock time."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


class _Pending:
    """Emissions produced since the last checkpoint (cleared only once it committed)."""

    def __init__(self) -> None:
        self.outputs: list[Output] = []
        self.late: list[Any] = []
        self.dead: list[Any] = []
        self.duplicates = 0
        self.events = 0

    def add(self, emissions: Any, events: int) -> None:
        self.outputs.extend(emissions.outputs)
        self.late.extend(emissions.late)
        self.dead.extend(emissions.dead)
        self.duplicates += len(emissions.duplicates)
        self.events += events


class DeviceRuntime:
    """Runs ``app`` over the event log in ``db_path``, keeping state and features beside it.

    ``source`` reads events from another EventLog instead (e.g. a shipped SQLite log opened
    read-only); its offsets are then recorded here and, best effort after each commit, as
    this app's consumer offset there. ``participants`` are called inside every checkpoint
    transaction with the open connection and the new outputs (e.g. the uplink outbox's
    ``enqueue``). ``on_output`` sees each output once its checkpoint committed (or at once in
    live mode, where outputs fire as events are appended).
    """

    def __init__(
        self,
        app: App,
        db_path: str | Path,
        *,
        settings: RuntimeSettings | None = None,
        source: EventLog | None = None,
        participants: Iterable[CheckpointParticipant] = (),
        on_output: OutputCallback | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.app = app
        self._clock = clock or _MonotonicClock()
        self._arrivals: dict[str, float] = {}
        self._idle_checked = self._clock.now_ms()
        self.settings = settings or RuntimeSettings()
        self.store = EventLog(db_path, self.settings.log)
        self.source = source or self.store
        self.participants: list[CheckpointParticipant] = list(participants)
        self.on_output = on_output
        self._consumer = f"app:{app.name}"
        self._log = _log.bind(app=app.name, db=str(self.store.path))
        self._pending = _Pending()
        self._touched: set[str] = set()  # devices whose state changed since the last checkpoint
        self._delta_rows = 0  # committed rows of this app in runtime_device_delta
        self._live = False
        try:
            self._create_schema()
            self.engine, self.committed_offset = self._restore()
        except BaseException:
            self.store.close()
            raise
        self.processed_offset = self.committed_offset
        self._last_checkpoint = time.monotonic()

    # -- state -----------------------------------------------------------------------------

    def _create_schema(self) -> None:
        with self.store.transaction("create the runtime tables") as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            if self.source is self.store:
                conn.execute(
                    "INSERT OR IGNORE INTO consumers (name, log_offset) VALUES (?, 0)",
                    (self._consumer,),
                )

    def _restore(self) -> tuple[Engine, int]:
        from walle.streams.engine import Engine

        with storage_errors(self.store.path, "read the checkpoint"):
            row = self.store.conn.execute(
                "SELECT fingerprint, log_id, log_offset, snapshot FROM runtime_checkpoints"
                " WHERE app = ?",
                (self.app.name,),
            ).fetchone()
        if row is None:
            return Engine(self.app), 0
        fingerprint, log_id, offset, snapshot = row
        if fingerprint != self.app.fingerprint:
            raise StateError(
                f"{self.store.path}: the checkpoint of app {self.app.name!r} was written by plan"
                f" fingerprint {fingerprint}, this app's is {self.app.fingerprint}; its state"
                " cannot be restored: use a new database (--db) for the changed app"
            )
        if log_id != self.source.log_id:
            raise StateError(
                f"{self.store.path}: the checkpoint of app {self.app.name!r} read another event"
                f" log ({log_id}), not {self.source.path} ({self.source.log_id})"
            )
        self._log.info("restored", offset=offset)
        if snapshot != _PER_DEVICE:  # a whole-engine snapshot: the next checkpoint splits it
            engine = Engine.restore(self.app, snapshot)
            self._touched.update(engine.devices())
            return engine, int(offset)
        return self._restore_devices(Engine(self.app)), int(offset)

    def _restore_devices(self, engine: Engine) -> Engine:
        with storage_errors(self.store.path, "read the device states"):
            rows = self.store.conn.execute(
                "SELECT device_id, snapshot FROM runtime_device_state WHERE app = ?",
                (self.app.name,),
            ).fetchall()
            deltas = self._read_deltas(self.store.conn)
        self._delta_rows = len(deltas)
        latest = dict(rows)
        latest.update(deltas)  # in id order: the newest record of a device wins
        for device_id, blob in latest.items():
            engine.restore_device(device_id, blob, where=str(self.store.path))
        return engine

    def _read_deltas(self, conn: sqlite3.Connection) -> list[tuple[str, bytes]]:
        return conn.execute(
            "SELECT device_id, snapshot FROM runtime_device_delta WHERE app = ? ORDER BY id",
            (self.app.name,),
        ).fetchall()

    # -- replay ----------------------------------------------------------------------------

    def run(
        self,
        *,
        from_offset: int | None = None,
        until_offset: int | None = None,
        until_ts: int | None = None,
        finish: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> RunReport:
        """Process the log from the last checkpoint (or ``from_offset`` if later) to its end.

        ``until_offset`` / ``until_ts`` stop after that offset / before the first event later
        than that event time. ``finish`` closes every open window at the end (the log is
        complete: no later event will come). ``progress(events, offset)`` is called per batch.
        """
        start = time.perf_counter()
        begin = self.processed_offset
        if from_offset is not None and from_offset - 1 > self.processed_offset:
            self.processed_offset = from_offset - 1
        totals = _Pending()
        checkpoints = 0
        while True:
            rows = self.source.read_batch(
                self.processed_offset, self.settings.batch_events, until_offset
            )
            if until_ts is not None:
                rows = _before(rows, until_ts)
            if not rows:
                break
            self._process([event for _, event in rows], rows[-1][0], totals)
            if progress is not None:
                progress(len(rows), self.processed_offset)
            if self._checkpoint_due():
                self.checkpoint()
                checkpoints += 1
            if until_ts is not None and len(rows) < self.settings.batch_events:
                break
        if finish:
            self._touched.update(self.engine.devices())
            self._absorb(self.engine.advance_to(END_OF_LOG_MS), 0, totals)
        if self._pending.events or self._pending.outputs or finish or checkpoints == 0:
            self.checkpoint()
            checkpoints += 1
        if self.settings.retention is not None and self.source is self.store:
            self.store.retain(self.settings.retention)
        return RunReport(
            begin,
            self.processed_offset,
            totals.events,
            len(totals.outputs),
            len(totals.late),
            len(totals.dead),
            totals.duplicates,
            checkpoints,
            time.perf_counter() - start,
        )

    def _process(self, events: list[Event], last_offset: int, totals: _Pending) -> None:
        emissions = self.engine.process_many(events)
        self._touched.update(event.device_id for event in events)
        self.processed_offset = last_offset
        self._absorb(emissions, len(events), totals)

    def _absorb(self, emissions: Any, events: int, totals: _Pending | None) -> None:
        self._pending.add(emissions, events)
        if totals is not None:
            totals.add(emissions, events)

    def _checkpoint_due(self) -> bool:
        waited_ms = (time.monotonic() - self._last_checkpoint) * 1000
        return (
            self._pending.events >= self.settings.checkpoint_every_events
            or waited_ms >= self.settings.checkpoint_every_ms
        )

    # -- checkpoints -----------------------------------------------------------------------

    def checkpoint(self) -> None:
        """Commit snapshot, outputs, late events, dead letters and offset in one transaction.

        On failure (StorageError) nothing of it is written and everything stays pending, so
        calling it again later, or restarting from the previous checkpoint, loses nothing.
        """
        with self.store.transaction("write a checkpoint") as conn:
            on_commit = self._write_checkpoint(conn, self.processed_offset)
        on_commit()

    def _write_checkpoint(self, conn: sqlite3.Connection, offset: int) -> Callable[[], None]:
        pending, touched = self._pending, self._touched  # both cleared once committed
        conn.execute(
            _UPSERT_CHECKPOINT,
            (
                self.app.name,
                self.app.fingerprint,
                self.source.log_id,
                offset,
                _PER_DEVICE,
                int(time.time() * 1000),
            ),
        )
        delta_rows = self._write_devices(conn, touched)
        conn.executemany(_UPSERT_FEATURE, [self._feature_row(out) for out in pending.outputs])
        conn.executemany(
            "INSERT INTO late_events (app, task, device_id, seq, reason, raw)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [self._late_row(late) for late in pending.late],
        )
        write_dead_letters(conn, [self._dead_row(dead) for dead in pending.dead])
        if self.source is self.store:
            write_consumer_offset(conn, self._consumer, offset)
        for participant in self.participants:
            participant(conn, pending.outputs)
        return lambda: self._committed(offset, pending, delta_rows)

    def _write_devices(self, conn: sqlite3.Connection, touched: set[str]) -> int:
        """Append the touched devices' records to the delta table, or compact; returns the
        delta table's row count (of this app) after it."""
        held = self.engine.devices()
        dirty = [
            (self.app.name, device, self.engine.snapshot_device(device))
            for device in sorted(touched.intersection(held))
        ]
        if self._delta_rows + len(dirty) <= max(self.settings.compact_delta_rows, len(held)):
            conn.executemany(_APPEND_DELTA, dirty)
            return self._delta_rows + len(dirty)
        # compaction: the newest record of every device in the deltas or dirty, into the
        # per-device table (sorted, so each of its pages is written once), deltas dropped
        latest = dict(self._read_deltas(conn))
        latest.update((device, blob) for _, device, blob in dirty)
        conn.executemany(
            _UPSERT_DEVICE, [(self.app.name, device, latest[device]) for device in sorted(latest)]
        )
        self._drop_deltas(conn)
        return 0

    def _drop_deltas(self, conn: sqlite3.Connection) -> None:
        """Delete this app's deltas, freeing their pages without writing them again.

        Their content is in the device table now: no need for ``secure_delete`` (on in many
        SQLite builds) to zero each freed page in the WAL, and a DELETE without WHERE (when no
        other app has deltas) frees whole pages instead of deleting row by row.
        """
        others = conn.execute(
            "SELECT 1 FROM runtime_device_delta WHERE app != ? LIMIT 1", (self.app.name,)
        ).fetchone()
        secure = int(conn.execute("PRAGMA secure_delete").fetchone()[0])
        conn.execute("PRAGMA secure_delete = FAST")
        try:
            if others is None:
                conn.execute("DELETE FROM runtime_device_delta")
            else:
                conn.execute("DELETE FROM runtime_device_delta WHERE app = ?", (self.app.name,))
        finally:
            conn.execute(f"PRAGMA secure_delete = {secure}")

    def _committed(self, offset: int, pending: _Pending, delta_rows: int) -> None:
        self.committed_offset = offset
        self._delta_rows = delta_rows
        self._pending = _Pending()
        self._touched = set()
        self._last_checkpoint = time.monotonic()
        self._log.debug(
            "checkpoint",
            offset=offset,
            events=pending.events,
            outputs=len(pending.outputs),
            late=len(pending.late),
            dead_letters=len(pending.dead),
        )
        if self.source is not self.store:
            self._note_consumed(offset)
        if self.on_output is not None and not self._live:
            for output in pending.outputs:
                self.on_output(output)

    def _note_consumed(self, offset: int) -> None:
        if self.source.settings.read_only:
            return
        with self.source.transaction("record the consumer offset") as conn:
            write_consumer_offset(conn, self._consumer, offset)

    def _feature_row(self, output: Output) -> tuple[Any, ...]:
        return (
            self.app.name,
            output.key,
            output.task,
            output.device_id,
            output.window,
            output.ts,
            output.to_json(),
        )

    def _late_row(self, late: Any) -> tuple[Any, ...]:
        event = late.event
        self._log.info(
            "late event", task=late.task, device=event.device_id, seq=event.seq, reason=late.reason
        )
        return (self.app.name, late.task, event.device_id, event.seq, late.reason, event.to_json())

    def _dead_row(self, dead: Any) -> tuple[str, str, str | None, str, str]:
        event = dead.event
        where = f"app {self.app.name} device {event.device_id} seq {event.seq}"
        self._log.warning("dead letter", task=dead.task, device=event.device_id, reason=dead.reason)
        return (f"engine:{self.app.name}", where, dead.task, dead.reason, event.to_json())

    # -- live mode -------------------------------------------------------------------------

    def start_live(self, *, autoflush: bool = True) -> None:
        """Catch up with the log, then accept :meth:`append`: tasks fire as events arrive.

        Appended events become durable, together with a checkpoint of the state they led to,
        by the log's durability policy (every N events / T ms).
        """
        if self.source is not self.store:
            raise StateError("live mode appends to the runtime's own log; do not pass source=")
        self.run()
        self._live = True
        self.store.add_flush_participant(self._live_checkpoint)
        if autoflush:
            self.store.start_autoflush()

    def _live_checkpoint(self, conn: sqlite3.Connection) -> Callable[[], None]:
        return self._write_checkpoint(conn, self.store._last_offset(conn))

    def append(self, event: Event | dict[str, Any]) -> list[Output]:
        """Log one event and run the app's tasks on it; returns the outputs it produced.

        Raises ValidationError (nothing logged) for a malformed event, StorageError if a due
        commit failed (the events stay buffered and are retried at the next commit).
        """
        if not self._live:
            raise StateError("call start_live() before append()")
        checked = self.store.validate(event)
        now = self._clock.now_ms()
        with self.store.lock:
            emissions = self.engine.process_many([checked])
            self._pending.add(emissions, 1)
            self._touched.add(checked.device_id)
            self.store.append_valid(checked)
            self._arrivals[checked.device_id] = now
        if self.on_output is not None:
            for output in emissions.outputs:
                self.on_output(output)
        outputs = list(emissions.outputs)
        if now - self._idle_checked >= 1000:
            outputs += self.close_idle()
        return outputs

    def close_idle(self) -> list[Output]:
        """Close the windows of devices quiet for ``idle_timeout_ms`` (live mode).

        A quiet device's watermark moves on by the wall-clock time since its last event, so
        its tumbling, session and page windows close although no event arrives to close
        them. Call it from a timer; ``append`` also calls it at most once a second.
        """
        now = self._idle_checked = self._clock.now_ms()
        outputs: list[Output] = []
        with self.store.lock:
            for device, seen in list(self._arrivals.items()):
                idle = now - seen
                watermark = self.engine.watermark(device)
                if idle < self.settings.idle_timeout_ms or watermark is None:
                    continue
                emissions = self.engine.advance_to(watermark + int(idle), device)
                self._arrivals[device] = now
                self._touched.add(device)
                self._pending.add(emissions, 0)
                outputs.extend(emissions.outputs)
        if self.on_output is not None:
            for output in outputs:
                self.on_output(output)
        return outputs

    def flush(self) -> None:
        """Make appended events and their state durable now (live mode)."""
        self.store.flush()

    # -- reading results -------------------------------------------------------------------

    def features(self, *, written_order: bool = False) -> list[tuple[str, str]]:
        """The feature store of this app: ``(key, Output.to_json())`` sorted by key.

        ``written_order`` sorts by when each key was first written instead (an upsert keeps
        a key's place): for a run that emits each key once, the order of emission, across
        kills and restarts too.
        """
        order = "rowid" if written_order else "key"
        with storage_errors(self.store.path, "read the feature store"):
            rows = self.store.conn.execute(
                f"SELECT key, output FROM features WHERE app = ? ORDER BY {order}",
                (self.app.name,),
            ).fetchall()
        return [(key, output) for key, output in rows]

    def close(self) -> None:
        """Flush live appends (with their checkpoint) and close the databases."""
        try:
            self.store.close()
        finally:
            if self.source is not self.store:
                self.source.close()

    def __enter__(self) -> DeviceRuntime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _before(rows: list[tuple[int, Event]], until_ts: int) -> list[tuple[int, Event]]:
    for index, (_, event) in enumerate(rows):
        if event.ts > until_ts:
            return rows[:index]
    return rows

"""``DeviceRuntime``: drives the streams engine over the device's event log, crash-safely.

At every checkpoint ONE SQLite transaction writes the state of the devices touched since the
last checkpoint (their msgpack records in one compressed row appended to ``runtime_state``,
so it fills the table's last page wherever the devices sort; a compaction rewrites the state
as a compressed base once the records since the last one outnumber the devices: see
``walle.streams.device.state``), the input offset (carried by that row; the
``runtime_checkpoints`` row, with the app's fingerprint, is rewritten only when no row is
appended), the outputs (upserted into the feature store by ``Output.key``), late events, dead
letters, and whatever the checkpoint participants add (the uplink outbox). A crash anywhere
leaves either the previous checkpoint or the new one, and a restart resumes from it (the
engine built from the device records, the newest of each device); since the engine is
deterministic, re-processing the events after that offset reproduces exactly what was lost,
so nothing is lost or duplicated.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import pydantic

from walle.errors import StateError
from walle.logging import get_logger
from walle.streams.device._sqlite import storage_errors
from walle.streams.device.database import CheckpointParticipant
from walle.streams.device.log import EventLog
from walle.streams.device.outputs import read_features, write_emissions
from walle.streams.device.records import last_offset_in, write_consumer_offset
from walle.streams.device.retention import RetentionPolicy
from walle.streams.device.settings import LogSettings
from walle.streams.device.state import DeviceStates
from walle.streams.engine import END_OF_LOG_MS
from walle.streams.events import Event

if TYPE_CHECKING:
    from walle.streams.app import App
    from walle.streams.device.metrics import DeviceMetrics
    from walle.streams.engine import Engine, Output

__all__ = ["CheckpointParticipant", "DeviceRuntime", "RunReport", "RuntimeSettings"]

OutputCallback = Callable[["Output"], None]


class Clock(Protocol):
    """Milliseconds of processing time (``walle.testing.ManualClock`` in tests)."""

    def now_ms(self) -> float: ...


class _MonotonicClock:
    def now_ms(self) -> float:
        return time.monotonic() * 1000


_PER_DEVICE = b""  # runtime_checkpoints.snapshot when the state is in runtime_state
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
    (consumed events only). The checkpoint that would take the device records written since
    the last base past ``max(compact_after_records, devices held)`` writes a new base instead
    (so a restart decodes at most twice the records held, or the base plus this many).
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    batch_events: int = pydantic.Field(default=1024, ge=1)
    checkpoint_every_events: int = pydantic.Field(default=16384, ge=1)
    checkpoint_every_ms: int = pydantic.Field(default=2000, ge=0)
    idle_timeout_ms: int = pydantic.Field(default=60_000, ge=1)
    log: LogSettings = LogSettings()
    retention: RetentionPolicy | None = None
    compact_after_records: int = pydantic.Field(default=1024, ge=1)


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
        self._checkpoint_row_current = False  # runtime_checkpoints holds a per-device row
        self._states = DeviceStates(
            app.name, self.settings.compact_after_records, str(self.store.path)
        )
        self._live = False
        try:
            if self.source is self.store:
                self.store.register_consumer(self._consumer)
            self.engine, self.committed_offset = self._restore()
        except BaseException:
            self.store.close()
            raise
        self.processed_offset = self.committed_offset
        self._last_checkpoint = time.monotonic()
        self.metrics: DeviceMetrics | None = None  # set to serve /metrics (device/metrics.py)

    # -- state -----------------------------------------------------------------------------

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
        if snapshot != _PER_DEVICE:  # a whole-engine snapshot: the next checkpoint splits it
            engine = Engine.restore(self.app, snapshot)
            self._touched.update(engine.devices())
        else:
            engine = self._restore_devices(Engine(self.app))
            self._checkpoint_row_current = True
            offset = max(offset, self._states.offset or 0)  # the newest state row's
        self._log.info("restored", offset=offset)
        return engine, int(offset)

    def _restore_devices(self, engine: Engine) -> Engine:
        with storage_errors(self.store.path, "read the device states"):
            records = self._states.load(self.store.conn)
        latest = dict(records)  # in row order: the newest record of a device wins
        for device_id, blob in latest.items():
            engine.restore_device(device_id, blob, where=str(self.store.path))
        return engine

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
            retained = self.store.retain(self.settings.retention)
            if self.metrics is not None:
                self.metrics.retained(retained)
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
        started = time.perf_counter()
        with self.store.transaction("write a checkpoint") as conn:
            on_commit = self._write_checkpoint(conn, self.processed_offset)
        on_commit()
        if self.metrics is not None:
            self.metrics.checkpointed(time.perf_counter() - started)

    def _write_checkpoint(self, conn: sqlite3.Connection, offset: int) -> Callable[[], None]:
        pending, touched = self._pending, self._touched  # both cleared once committed
        written = self._states.write(conn, self.engine, touched, offset)
        if not (written.appended and self._checkpoint_row_current):
            # the state rows carry the offset; this row is written when they do not, or
            # when it is missing or holds a whole-engine snapshot
            row = (self.app.name, self.app.fingerprint, self.source.log_id, offset, _PER_DEVICE)
            conn.execute(_UPSERT_CHECKPOINT, (*row, int(time.time() * 1000)))
        app = self.app.name
        write_emissions(conn, app, pending.outputs, pending.late, pending.dead, self._log)
        if self.source is self.store:
            write_consumer_offset(conn, self._consumer, offset)
        for participant in self.participants:
            participant(conn, pending.outputs)
        return lambda: self._committed(offset, pending, written.since_base)

    def _committed(self, offset: int, pending: _Pending, since_base: int) -> None:
        self.committed_offset = offset
        self._states.committed(since_base)
        self._checkpoint_row_current = True
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
        return self._write_checkpoint(conn, last_offset_in(conn))

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
        with self.store.database.reading("read the feature store") as conn:
            return read_features(conn, self.app.name, written_order=written_order)

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

"""``AppendBuffer``: live appends buffered in memory and committed by the durability policy.

Appends are validated, buffered, and committed every N events or T ms (``DurabilityPolicy``),
by the appending thread or by a daemon flush thread. Flush participants (the live runtime's
checkpoint) run inside the same transaction as the events they follow. A failed commit keeps
the events buffered and is retried after a growing pause (not on every append); the buffer
is bounded, and a full one refuses appends with StorageError (backpressure).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from walle.errors import StorageError
from walle.logging import get_logger
from walle.streams.device.database import DeviceDatabase, FlushParticipant
from walle.streams.device.records import (
    check_storable,
    insert_events,
    log_refused,
    write_dead_letters,
)
from walle.streams.events import Event, validate_event

_log = get_logger("device.log")


class AppendBuffer:
    """The appended events of one device database not yet committed, and their commits."""

    def __init__(self, db: DeviceDatabase) -> None:
        self.db = db
        self.policy = db.settings.durability
        self.events: list[Event] = []
        self._since = 0.0  # time.monotonic() of the oldest buffered event
        self.participants: list[FlushParticipant] = []
        self.commit_error: StorageError | None = None  # the last failed commit, until one works
        self.retry_after_ms = 0
        self._retry_at = 0.0  # time.monotonic() before which no commit is retried
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    def validate(self, event: Event | dict[str, Any]) -> Event:
        """The validated Event for ``event``, if the buffer can take it now (see EventLog)."""
        record = event._asdict() if isinstance(event, Event) else event
        where = f"{self.db.path}: append"
        checked = check_storable(validate_event(record, where=where), where)
        self.check_capacity()
        return checked

    def append_valid(self, event: Event) -> None:
        """Buffer an already validated event; commits when the durability policy says so."""
        with self.db.lock:
            self.check_capacity()
            if not self.events:
                self._since = time.monotonic()
            self.events.append(event)
            with contextlib.suppress(StorageError):  # recorded; retried after the pause
                self.flush_if_due()

    def check_capacity(self) -> None:
        """Raise StorageError if the buffer is full and a commit cannot empty it now.

        A full buffer is committed at once, unless a commit failed less than the retry pause
        ago: then the refusal costs no database work.
        """
        limit = self.policy.max_buffered_events
        with self.db.lock:
            if len(self.events) < limit:
                return
            if self._retry_due():
                with contextlib.suppress(StorageError):
                    self.flush()
                if len(self.events) < limit:
                    return
            raise StorageError(
                f"{self.db.path}: event not logged: {len(self.events)} appended events"
                f" (max_buffered_events) wait in memory for a commit that failed:"
                f" {self.commit_error}. Nothing buffered is lost; free space or fix the cause,"
                f" then append this event again (next commit try in {self._retry_in_ms()} ms)"
            )

    def _retry_due(self) -> bool:
        return self.commit_error is None or time.monotonic() >= self._retry_at

    def _retry_in_ms(self) -> int:
        return max(0, round((self._retry_at - time.monotonic()) * 1000))

    def _commit_failed(self, exc: StorageError) -> None:
        first = self.commit_error is None
        pause = self.policy.retry_after_ms if first else self.retry_after_ms * 2
        self.retry_after_ms = min(pause, self.policy.max_retry_after_ms)
        self._retry_at = time.monotonic() + self.retry_after_ms / 1000
        self.commit_error = exc
        _log.error(
            "commit failed; events stay buffered",
            pending=len(self.events),
            retry_in_ms=self.retry_after_ms,
            error=str(exc),
        )

    def _commit_worked(self) -> None:
        if self.commit_error is not None:
            _log.info("commits work again", file=str(self.db.path))
        self.commit_error = None
        self.retry_after_ms = 0

    def flush_if_due(self) -> int:
        """Flush if N events are buffered or the oldest has waited T ms; returns events stored.

        After a failed commit nothing is tried until the retry pause has passed.
        """
        with self.db.lock:
            if not self.events or not self._retry_due():
                return 0
            waited_ms = (time.monotonic() - self._since) * 1000
            if (
                len(self.events) >= self.policy.commit_every_events
                or waited_ms >= self.policy.commit_every_ms
            ):
                return self.flush()
        return 0

    def flush(self) -> int:
        """Commit the buffered events and run the participants, in one transaction.

        Returns how many events were stored (refused ones become dead letters). On failure
        everything stays buffered, StorageError says why, and automatic retries pause.
        """
        with self.db.lock:
            if not self.events and not self.participants:
                return 0
            where = f"{self.db.path}: append"
            try:
                with self.db.transaction("commit appended events") as conn:
                    stored, refused = insert_events(conn, self.events, "append", None, where=where)
                    write_dead_letters(conn, refused)
                    committed = [participant(conn) for participant in self.participants]
            except StorageError as exc:
                self._commit_failed(exc)
                raise
            self.events.clear()
            self._commit_worked()
            log_refused("append", refused)
            for on_commit in committed:
                if on_commit is not None:
                    on_commit()
            return stored

    def start_autoflush(self) -> None:
        """Start a daemon thread that flushes buffered appends once they are T ms old."""
        if self._thread is not None:
            return
        self._stop = threading.Event()
        period = max(self.policy.commit_every_ms, 1) / 1000
        self._thread = threading.Thread(
            target=self._autoflush_loop, args=(self._stop, period), daemon=True
        )
        self._thread.start()

    def _autoflush_loop(self, stop: threading.Event, period: float) -> None:
        while not stop.wait(period):
            try:
                self.flush_if_due()
            except StorageError as exc:
                _log.error("autoflush failed; events stay buffered", error=str(exc))

    def stop_autoflush(self) -> None:
        """Stop the flush thread, if one runs (waits for it)."""
        if self._thread is not None and self._stop is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None

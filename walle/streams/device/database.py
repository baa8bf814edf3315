"""``DeviceDatabase``: the one owner of a device's SQLite file (connection, schema, transactions).

Everything that reads or writes the device database (the event log, the runtime's
checkpoints, the uplink outbox) goes through one of these: it opens the file in WAL mode with
the settings' fsync level and size limit, creates or migrates the tables
(``walle.streams.device.schema``), and runs write transactions (BEGIN IMMEDIATE .. COMMIT,
nothing kept on error, sqlite3 errors turned into StorageError naming the file). A failed
transaction may leave the WAL file at its full size; the next one that commits truncates it.

What may write inside a checkpoint's transaction besides the runtime is a *participant*:
``CheckpointParticipant`` (called by the runtime with the new outputs: the uplink outbox's
``enqueue``) or ``FlushParticipant`` (called by the live append buffer after the new events:
the live runtime's checkpoint).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from walle.errors import StorageError
from walle.logging import get_logger
from walle.streams.device import schema
from walle.streams.device._sqlite import connect, rollback_quietly, storage_errors
from walle.streams.device.settings import LogSettings

if TYPE_CHECKING:
    from walle.streams.engine import Output

CheckpointParticipant = Callable[[sqlite3.Connection, Sequence["Output"]], None]
"""Called inside every checkpoint transaction with the connection and the new outputs."""
FlushParticipant = Callable[[sqlite3.Connection], Callable[[], None] | None]
"""Called inside every live flush transaction; may return a callable run once it committed."""

_log = get_logger("device.database")


class DeviceDatabase:
    """One connection to a device database, opened, created or migrated, and checked.

    ``lock`` serialises every use of ``conn`` (the live runtime's appends, the flush thread,
    metrics scrapes). Read-only databases are checked, never created or migrated.
    """

    def __init__(self, path: str | Path, settings: LogSettings | None = None) -> None:
        self.path = Path(path)
        self.settings = settings or LogSettings()
        self.lock = threading.RLock()
        self._wal_dirty = False  # a transaction failed: truncate the WAL after the next commit
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

    def _prepare(self) -> None:
        with storage_errors(self.path, "open the event log"):
            if self.settings.read_only:
                self.version = schema.read_version(self.conn, self.path)
                return
            if self.conn.execute("PRAGMA page_count").fetchone()[0] == 0:
                self.conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StorageError(f"{self.path}: cannot switch to WAL mode (got {mode!r})")
            self.conn.execute(f"PRAGMA synchronous = {self.settings.durability.synchronous}")
            if self.settings.max_pages is not None:
                self.conn.execute(f"PRAGMA max_page_count = {int(self.settings.max_pages)}")
        with self.transaction("create the device database's tables") as conn:
            found = schema.create_or_migrate(conn, self.path)
        self.version = schema.SCHEMA_VERSION
        if found != schema.SCHEMA_VERSION:
            _log.info("migrated", file=str(self.path), version=found, to=self.version)

    @contextlib.contextmanager
    def transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE .. COMMIT); on any error nothing is kept.

        sqlite3 errors become StorageError naming the file and ``action``. A failed
        transaction may leave the WAL file at its full size; the next one that commits
        truncates it (``wal_checkpoint(TRUNCATE)``), giving the space back.
        """
        with self.lock:
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

    @contextlib.contextmanager
    def reading(self, action: str) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock, with sqlite3 errors named as failing ``action``."""
        with self.lock, storage_errors(self.path, action):
            yield self.conn

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

    @property
    def log_id(self) -> str:
        """A random id made when the database was created: checkpoints name the log they read."""
        with self.reading("read the log id") as conn:
            row = conn.execute("SELECT value FROM walle_meta WHERE key = 'log_id'").fetchone()
        return row[0] if row else str(self.path.resolve())

    def used_bytes(self) -> int:
        """Bytes of the database in use (pages minus free pages, times the page size)."""
        with self.reading("measure the database") as conn:
            return used_bytes(conn)

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self.conn.close()


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of the database in use, read on ``conn`` (pages minus free pages, times size)."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int((pages - free) * conn.execute("PRAGMA page_size").fetchone()[0])

"""Runtimes over files given by path: a log (JSONL, ingested, or an SQLite event log) in, and
the feature store out as a JSONL file that is replaced whole, never appended to.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from walle.errors import StorageError
from walle.streams.device._sqlite import storage_errors
from walle.streams.device.log import EventLog, IngestReport, LogSettings
from walle.streams.device.runtime import DeviceRuntime, OutputCallback, RuntimeSettings

if TYPE_CHECKING:
    from walle.streams.app import App

_SQLITE_MAGIC = b"SQLite format 3\x00"


class OpenedReplay(NamedTuple):
    """A runtime ready to run, and what ingesting the JSONL log did (None for SQLite logs)."""

    runtime: DeviceRuntime
    ingest: IngestReport | None


def is_sqlite_file(path: str | Path) -> bool:
    """True when ``path`` starts with SQLite's file header."""
    try:
        with Path(path).open("rb") as stream:
            return stream.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC
    except OSError as exc:
        raise StorageError(f"{path}: cannot read the event log ({exc})") from exc


def open_replay(
    app: App,
    log_path: str | Path,
    db_path: str | Path,
    *,
    settings: RuntimeSettings | None = None,
    on_output: OutputCallback | None = None,
) -> OpenedReplay:
    """A DeviceRuntime for ``app`` storing its state in ``db_path``, over ``log_path``.

    A JSONL log is ingested into the database's own event log (a file ingested before is
    skipped, so re-running resumes); an SQLite event log is read in place, read-only, unless
    it is the database itself.
    """
    log_path, db_path = Path(log_path), Path(db_path)
    settings = settings or RuntimeSettings()
    if not log_path.exists():
        raise StorageError(f"{log_path}: no such event log")
    if not is_sqlite_file(log_path):
        runtime = DeviceRuntime(app, db_path, settings=settings, on_output=on_output)
        try:
            return OpenedReplay(runtime, runtime.store.ingest_jsonl(log_path))
        except BaseException:
            runtime.close()
            raise
    if db_path.exists() and log_path.resolve() == db_path.resolve():
        return OpenedReplay(
            DeviceRuntime(app, db_path, settings=settings, on_output=on_output), None
        )
    source = EventLog(log_path, LogSettings(read_only=True))
    try:
        runtime = DeviceRuntime(app, db_path, settings=settings, source=source, on_output=on_output)
    except BaseException:
        source.close()
        raise
    return OpenedReplay(runtime, None)


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _out_error(path: Path, exc: OSError) -> StorageError:
    if exc.errno in _FULL:
        hint = (
            "the disk is full (or a quota or file size limit was reached); free space and run"
            " again: the database keeps every output and the file is rewritten from it"
        )
    else:
        hint = f"{exc.strerror or exc}; check that its directory exists and is writable"
    return StorageError(f"{path}: cannot write the outputs file: {hint}")


def check_outputs_file(path: str | Path) -> None:
    """Fail now (StorageError), not after a long run, if ``path``'s folder takes no new file."""
    path = Path(path)
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=True):
            pass
    except OSError as exc:
        raise _out_error(path, exc) from None


def write_outputs_file(runtime: DeviceRuntime, path: str | Path) -> int:
    """Replace ``path`` with the runtime's feature store as JSONL; returns the lines written.

    One ``Output.to_json()`` per line in the order keys were first written (see
    ``DeviceRuntime.features``). The lines go to a temporary file beside ``path``, synced,
    then renamed over it: after a kill or a full disk ``path`` holds the previous complete
    file or the new one, never part of one, and the next run rewrites it from the store.
    """
    path = Path(path)
    rows = runtime.features(written_order=True)
    temporary: Path | None = None
    try:
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        temporary = Path(name)
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.writelines(output + "\n" for _, output in rows)
            stream.flush()
            os.fsync(stream.fileno())
        temporary.chmod(path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(temporary, path)
        _sync_folder(path.parent)
    except OSError as exc:
        if temporary is not None:
            with contextlib.suppress(OSError):
                temporary.unlink()
        raise _out_error(path, exc) from None
    return len(rows)


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every system can sync a folder)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


class LateEventRecord(NamedTuple):
    """One late event of a device database: the app and task it was late for, and why."""

    id: int
    app: str
    task: str
    device_id: str
    seq: int
    ts: int | None
    reason: str
    raw: str


_LATE_QUERY = (
    "SELECT id, app, task, device_id, seq, json_extract(raw, '$.ts'), reason, raw"
    " FROM late_events ORDER BY id LIMIT ?"
)


def read_late_events(
    db_path: str | Path, limit: int | None = None
) -> tuple[int, list[LateEventRecord]]:
    """How many late events the device database holds, and the first ``limit`` (oldest first).

    The database is opened read-only: nothing on disk changes. A walle event log that no
    runtime has checkpointed is a StorageError saying so.
    """
    db_path = Path(db_path)
    with EventLog(db_path, LogSettings(read_only=True)) as log, log.lock:
        conn = log.conn
        with storage_errors(db_path, "read late events"):
            if not _has_checkpoint(conn):
                raise StorageError(
                    f"{db_path}: is an event log no device runtime has run over (no checkpoint"
                    " in it), so it holds no late events; pass the database given to --db of"
                    " walle run / walle replay"
                )
            total = conn.execute("SELECT count(*) FROM late_events").fetchone()[0]
            rows = conn.execute(_LATE_QUERY, (-1 if limit is None else limit,)).fetchall()
    return total, [LateEventRecord(*row) for row in rows]


def _has_checkpoint(conn: sqlite3.Connection) -> bool:
    """Whether a device runtime has checkpointed in this database (a schema-1 event log that
    none ran over has no runtime tables at all)."""
    table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runtime_checkpoints'"
    ).fetchone()
    return bool(table) and bool(conn.execute("SELECT 1 FROM runtime_checkpoints").fetchone())

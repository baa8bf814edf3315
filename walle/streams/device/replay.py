"""Opening a runtime over a log given by path: a JSONL file (ingested) or an SQLite event log."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from walle.errors import StorageError
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

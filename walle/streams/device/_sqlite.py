"""SQLite plumbing shared by the event log and the runtime: opening and error translation.

Every sqlite3 error that reaches a user becomes a :class:`~walle.errors.StorageError` that
names the database file, what was being done, and what to do about it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from walle.errors import StorageError

_HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("SQLITE_NOTADB", "file is not a database"),
        "is not an SQLite database (or is corrupt); point at a new path or move the file away",
    ),
    (
        ("SQLITE_READONLY_DIRECTORY",),
        "is in a directory this user cannot write: SQLite must create the database's -shm"
        " file beside a WAL database even to read it; run as a user who may write there, or"
        " copy the database (with its -wal file) to a writable directory",
    ),
    (
        ("SQLITE_READONLY", "readonly"),
        "is read-only; check the permissions of the file and of its directory",
    ),
    (
        ("SQLITE_BUSY", "SQLITE_LOCKED", "database is locked"),
        "is locked by another connection or process; stop the other writer or retry later",
    ),
    (
        ("SQLITE_FULL", "disk is full"),
        "is full (disk or size limit reached); free space or raise the limit, then retry",
    ),
    (
        ("SQLITE_CANTOPEN", "unable to open"),
        "cannot be opened; check that it and its directory exist and that this user may read"
        " them (and write the directory: SQLite keeps its -wal and -shm files there)",
    ),
    (
        ("SQLITE_IOERR", "disk I/O error"),
        "could not be written or read (I/O error: a full disk, a file size limit or failing"
        " storage); free space or check the device, then retry",
    ),
    (
        ("SQLITE_CORRUPT", "malformed"),
        "is corrupt; restore it from a copy or start a new one",
    ),
)


def describe(exc: sqlite3.Error) -> str:
    """A short human explanation of ``exc`` (what kind of storage failure it is)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    for needles, hint in _HINTS:
        if any(needle in name or needle in text for needle in needles):
            return hint
    return "failed"


@contextlib.contextmanager
def storage_errors(path: str | Path, action: str) -> Iterator[None]:
    """Turn sqlite3 errors raised inside the block into StorageError naming ``path``."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: {action}: database {describe(exc)} ({exc})") from exc


def connect(
    path: str | Path, *, busy_timeout_ms: int, read_only: bool = False
) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode (transactions are explicit), usable across threads.

    ``read_only`` opens through SQLite's ``mode=ro`` URI so nothing can be written.
    """
    target = f"file:{Path(path).resolve()}?mode=ro" if read_only else str(path)
    with storage_errors(path, "open"):
        conn = sqlite3.connect(
            target,
            uri=read_only,
            isolation_level=None,
            timeout=busy_timeout_ms / 1000,
            check_same_thread=False,
        )
    return conn


def rollback_quietly(conn: sqlite3.Connection) -> None:
    """Roll back an open transaction; SQLite may already have rolled it back (SQLITE_FULL)."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")

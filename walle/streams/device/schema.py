"""The device database's tables, its schema version, and the migrations from older layouts.

One SQLite file holds a device's event log, the runtime's checkpoints and feature store, and
the uplink outbox. Every table is created here (``create_or_migrate``, when a database is
opened for writing), and which module writes it is listed below:

=====================  ===================================================  =================
table                  what                                                 written by
=====================  ===================================================  =================
walle_meta             schema version, the log's random id                  this module
events                 the event log (offset = AUTOINCREMENT rowid)         records, appends
dead_letters           refused records: where, why, raw text                records (any txn)
consumers              each consumer's committed offset (retention floor)   records, runtime
ingested_files         sha256 of each JSONL file ingested (re-runs skip)    ingest
runtime_checkpoints    per app: plan fingerprint, log id, offset            runtime
runtime_state          per app: device state records, one row a checkpoint  state
features               per app: the feature store, one row per output key   runtime
late_events            per app: events later than their window              runtime
uplink_outbox          outputs waiting for the uplink                       uplink
=====================  ===================================================  =================

A checkpoint writes runtime_checkpoints (when needed), runtime_state, features,
late_events, dead_letters, consumers and, through its participants, uplink_outbox in ONE
transaction (``walle.streams.device.runtime``).

Version history: 1, the tables above but the engine state in ``runtime_device_state`` (one
row per device) and ``runtime_device_delta`` (one row per device and checkpoint); 2 (now),
``runtime_state``. Opening a version-1 database for writing migrates it in one transaction;
a read-only open reads versions 1 and 2 (the tables it reads are the same). A newer version
is refused: an older walle would misread it.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

from walle.errors import StorageError
from walle.streams.device.state import migrate_per_device_rows

SCHEMA_VERSION = 2
OLDEST_READABLE = 1  # read-only opens accept this version up to SCHEMA_VERSION

TABLES: dict[str, str] = {
    "walle_meta": """CREATE TABLE IF NOT EXISTS walle_meta (
        key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    "events": """CREATE TABLE IF NOT EXISTS events (
        log_offset INTEGER PRIMARY KEY AUTOINCREMENT,
        device_id TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL,
        event TEXT NOT NULL, page TEXT NOT NULL, args TEXT NOT NULL, logged_ms INTEGER NOT NULL,
        UNIQUE (device_id, seq))""",
    "dead_letters": """CREATE TABLE IF NOT EXISTS dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        source TEXT NOT NULL, location TEXT NOT NULL, task TEXT,
        reason TEXT NOT NULL, raw TEXT NOT NULL, logged_ms INTEGER NOT NULL)""",
    "consumers": """CREATE TABLE IF NOT EXISTS consumers (
        name TEXT PRIMARY KEY, log_offset INTEGER NOT NULL)""",
    "ingested_files": """CREATE TABLE IF NOT EXISTS ingested_files (
        sha256 TEXT PRIMARY KEY, path TEXT NOT NULL, events INTEGER NOT NULL,
        dead INTEGER NOT NULL, logged_ms INTEGER NOT NULL)""",
    "runtime_checkpoints": """CREATE TABLE IF NOT EXISTS runtime_checkpoints (
        app TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, log_id TEXT NOT NULL,
        log_offset INTEGER NOT NULL, snapshot BLOB NOT NULL, updated_ms INTEGER NOT NULL)""",
    # one row per checkpoint (the touched devices' records) or per chunk of a compaction's
    # base; appended in rowid order, no other index (see walle.streams.device.state)
    "runtime_state": """CREATE TABLE IF NOT EXISTS runtime_state (
        id INTEGER PRIMARY KEY, app TEXT NOT NULL, base INTEGER NOT NULL,
        log_offset INTEGER NOT NULL, records INTEGER NOT NULL, blob BLOB NOT NULL)""",
    "features": """CREATE TABLE IF NOT EXISTS features (
        app TEXT NOT NULL, key TEXT NOT NULL, task TEXT NOT NULL, device_id TEXT NOT NULL,
        window TEXT NOT NULL, ts INTEGER NOT NULL, output TEXT NOT NULL,
        value TEXT GENERATED ALWAYS AS (json_extract(output, '$.value')) VIRTUAL,
        PRIMARY KEY (app, key))""",
    "late_events": """CREATE TABLE IF NOT EXISTS late_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, task TEXT NOT NULL,
        device_id TEXT NOT NULL, seq INTEGER NOT NULL, reason TEXT NOT NULL, raw TEXT NOT NULL)""",
    "uplink_outbox": """CREATE TABLE IF NOT EXISTS uplink_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, value TEXT NOT NULL)""",
}

# MIGRATIONS[n] turns version n into n + 1, in the opening transaction, after the current
# tables were created (IF NOT EXISTS): it moves data, it need not create tables
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], object]] = {
    1: migrate_per_device_rows,
}


def create_or_migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Create the missing tables and migrate to SCHEMA_VERSION (caller's write transaction).

    Returns the version found (SCHEMA_VERSION for a new database). StorageError for a
    version this walle does not know.
    """
    for statement in TABLES.values():
        conn.execute(statement)
    conn.executemany(
        "INSERT OR IGNORE INTO walle_meta (key, value) VALUES (?, ?)",
        [("schema_version", str(SCHEMA_VERSION)), ("log_id", uuid.uuid4().hex)],
    )
    found = read_version(conn, path)
    for version in range(found, SCHEMA_VERSION):
        MIGRATIONS[version](conn)
    if found != SCHEMA_VERSION:
        conn.execute(
            "UPDATE walle_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
        )
    return found


def read_version(conn: sqlite3.Connection, path: Path) -> int:
    """The schema version of the database, if this walle can read it; else StorageError."""
    try:
        row = conn.execute("SELECT value FROM walle_meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):  # unreadable, locked, ...: the caller says that
            raise
        row = None
    if row is None:
        raise StorageError(f"{path}: not a walle event log (no walle_meta table)")
    version = int(row[0]) if str(row[0]).isdigit() else -1
    if not OLDEST_READABLE <= version <= SCHEMA_VERSION:
        raise StorageError(
            f"{path}: event log schema version {row[0]}, this walle reads {OLDEST_READABLE}"
            f" to {SCHEMA_VERSION}; open it with the walle that wrote it, or replay the"
            " original JSONL into a new log"
        )
    return version

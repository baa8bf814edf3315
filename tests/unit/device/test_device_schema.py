"""The device database's owner: every table from one schema, a version, and migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from walle.errors import StorageError
from walle.streams.device import EventLog, LogSettings
from walle.streams.device.database import DeviceDatabase
from walle.streams.device.schema import SCHEMA_VERSION, TABLES
from walle.streams.events import Event
from walle.streams.uplink import wait_until_empty


def _tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    finally:
        conn.close()
    return {name for (name,) in rows} - {"sqlite_sequence"}


def _set_version(path: Path, version: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE walle_meta SET value = ? WHERE key = 'schema_version'", (version,))
    conn.close()


def test_every_table_is_created_by_the_one_owner(tmp_path: Path) -> None:
    """Whoever opens the file first (the log, the uplink), all tables are there."""
    EventLog(tmp_path / "log.db").close()
    DeviceDatabase(tmp_path / "database.db").close()
    assert wait_until_empty(tmp_path / "uplink.db", 1.0)
    for name in ("log.db", "database.db", "uplink.db"):
        assert _tables(tmp_path / name) == set(TABLES), name
    assert len(TABLES) == 10


def test_a_newer_schema_is_refused_naming_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    EventLog(path).close()
    _set_version(path, str(SCHEMA_VERSION + 1))
    for settings in (LogSettings(), LogSettings(read_only=True)):
        with pytest.raises(StorageError, match=rf"schema version {SCHEMA_VERSION + 1}, this walle"):
            EventLog(path, settings)


def test_a_version_1_log_is_read_in_place_and_migrated_when_written(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    with EventLog(path) as log:
        log.append(Event("d1", 1, 1_000, "click", "item"))
    conn = sqlite3.connect(path)
    with conn:  # the schema-1 layout of a plain log: no runtime tables
        for table in ("runtime_checkpoints", "runtime_state", "features", "late_events"):
            conn.execute(f"DROP TABLE {table}")
    conn.close()
    _set_version(path, "1")
    with EventLog(path, LogSettings(read_only=True)) as log:
        assert log.count() == 1  # read as it is: nothing created
    assert "runtime_state" not in _tables(path)
    with EventLog(path) as log:
        assert log.count() == 1
    assert _tables(path) == set(TABLES)
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT value FROM walle_meta WHERE key = 'schema_version'").fetchone()
    finally:
        conn.close()
    assert row == (str(SCHEMA_VERSION),)

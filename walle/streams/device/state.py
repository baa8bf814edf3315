"""The engine state of one app in the device database: per-device records, appended in batches.

Each checkpoint appends ONE row to ``runtime_state``: the records (``Engine.snapshot_device``)
of the devices touched since the last checkpoint, as zlib-compressed msgpack of
``[[device_id, record], ...]``. Rows are appended in rowid order and the table has no other
index, so a checkpoint writes the table's last leaf page (and, when the row is large, its
overflow pages), wherever the devices sort. A restart applies the rows in id order: the newest
record of a device wins.

A compaction replaces the app's rows by a base: the records of every device the engine holds,
in chunks of ``CHUNK_RECORDS`` per row, compressed (a base is about the size of the compressed
whole-engine snapshot). It happens at the checkpoint that would take the records written
since the last base past ``max(compact_after_records, devices held)``: so a restart decodes
at most the base plus as many delta records again (twice the devices held, or the base plus
``compact_after_records`` for a few devices), and a compaction's cost, one compressed copy of
the state, is spread over at least that many records' checkpoints.

An older database holds per-device rows (``runtime_device_state``, then
``runtime_device_delta`` in id order); the schema migration turns them into rows of this
table (see ``walle.streams.device.schema``).
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

import msgpack

from walle.errors import StateError

if TYPE_CHECKING:
    from walle.streams.engine import Engine

CHUNK_RECORDS = 1024
"""Records per row of a base: bounds the bytes one row decompresses to."""
_LEVEL = 6  # zlib level: records of one app share most of their bytes (field names, ids)
_APPEND = "INSERT INTO runtime_state (app, base, log_offset, records, blob) VALUES (?, ?, ?, ?, ?)"


def encode_records(records: list[tuple[str, bytes]]) -> bytes:
    """One row's blob: zlib-compressed msgpack of ``[[device_id, record], ...]``."""
    return zlib.compress(msgpack.packb([list(record) for record in records]), _LEVEL)


def decode_records(blob: bytes, where: str) -> list[tuple[str, bytes]]:
    """The ``(device_id, record)`` pairs of a row; StateError naming ``where`` if unreadable."""
    try:
        pairs = msgpack.unpackb(zlib.decompress(blob))
        records = [(device, record) for device, record in pairs]
    except (zlib.error, ValueError, TypeError, msgpack.UnpackException) as exc:
        raise StateError(f"{where}: unreadable device state records ({exc})") from None
    for device, record in records:
        if not isinstance(device, str) or not isinstance(record, bytes):
            raise StateError(f"{where}: a device state record is not [device id, bytes]")
    return records


def append_base(
    conn: sqlite3.Connection, app: str, offset: int, records: list[tuple[str, bytes]]
) -> None:
    """Append ``records`` (in order) as base rows of at most CHUNK_RECORDS (caller's txn)."""
    for start in range(0, len(records), CHUNK_RECORDS):
        chunk = records[start : start + CHUNK_RECORDS]
        conn.execute(_APPEND, (app, 1, offset, len(chunk), encode_records(chunk)))


class StateWrite(NamedTuple):
    """What :meth:`DeviceStates.write` did: the records since the base after it, and whether
    it appended rows (which carry the checkpoint's offset)."""

    since_base: int
    appended: bool


class DeviceStates:
    """Reads and writes one app's device records; the runtime calls it inside its transactions.

    ``since_base`` counts the records written since the last base (committed): the runtime
    passes the value :meth:`write` returns back through :meth:`committed` once the
    checkpoint's transaction committed, so a failed checkpoint changes nothing here.

    Every row carries the log offset of the checkpoint that wrote it: a checkpoint that
    appends a row need not rewrite the ``runtime_checkpoints`` row (one page less); after
    :meth:`load`, ``offset`` is the highest (None without rows).
    """

    def __init__(self, app: str, compact_after_records: int, where: str) -> None:
        self.app = app
        self.compact_after_records = compact_after_records
        self.where = where
        self.since_base = 0
        self.offset: int | None = None

    def load(self, conn: sqlite3.Connection) -> list[tuple[str, bytes]]:
        """Every stored ``(device_id, record)`` of the app, oldest first (newest wins)."""
        rows = conn.execute(
            "SELECT id, base, log_offset, records, blob FROM runtime_state WHERE app = ?"
            " ORDER BY id",
            (self.app,),
        ).fetchall()
        self.since_base = sum(count for _, base, _, count, _ in rows if not base)
        self.offset = max((offset for _, _, offset, _, _ in rows), default=None)
        return [
            record
            for row_id, _, _, _, blob in rows
            for record in decode_records(blob, f"{self.where}: runtime_state id {row_id}")
        ]

    def write(
        self, conn: sqlite3.Connection, engine: Engine, touched: Iterable[str], offset: int
    ) -> StateWrite:
        """Append the touched devices' records as one row, or compact (caller's transaction)."""
        held = engine.devices()
        dirty = sorted(set(touched).intersection(held))
        if not dirty:
            return StateWrite(self.since_base, False)
        limit = max(self.compact_after_records, len(held))
        if self.since_base + len(dirty) <= limit:
            records = [(device, engine.snapshot_device(device)) for device in dirty]
            conn.execute(_APPEND, (self.app, 0, offset, len(records), encode_records(records)))
            return StateWrite(self.since_base + len(records), True)
        self._compact(conn, engine, held, offset)
        return StateWrite(0, True)

    def _compact(
        self, conn: sqlite3.Connection, engine: Engine, held: list[str], offset: int
    ) -> None:
        """Replace the app's rows by a base of every held device's record.

        The old rows' content is in the base: no need for ``secure_delete`` (on in many
        SQLite builds) to zero each freed page in the WAL. When no other app has rows, a
        DELETE without WHERE frees the table's pages without first rewriting each one (row
        by row, every leaf would be written and rebalanced before it is freed).
        """
        others = conn.execute(
            "SELECT 1 FROM runtime_state WHERE app != ? LIMIT 1", (self.app,)
        ).fetchone()
        secure = int(conn.execute("PRAGMA secure_delete").fetchone()[0])
        conn.execute("PRAGMA secure_delete = FAST")
        try:
            if others is None:
                conn.execute("DELETE FROM runtime_state")
            else:
                conn.execute("DELETE FROM runtime_state WHERE app = ?", (self.app,))
        finally:
            conn.execute(f"PRAGMA secure_delete = {secure}")
        records = [(device, engine.snapshot_device(device)) for device in held]
        append_base(conn, self.app, offset, records)

    def committed(self, since_base: int) -> None:
        """The checkpoint that :meth:`write` returned ``since_base`` for committed."""
        self.since_base = since_base


_LEGACY_TABLES = ("runtime_device_state", "runtime_device_delta")


def migrate_per_device_rows(conn: sqlite3.Connection) -> int:
    """Turn the per-device rows of an older database into base rows; returns the records.

    Each app's records (``runtime_device_state``, then ``runtime_device_delta`` in id order,
    the newest record of a device winning) become that app's base in ``runtime_state``, and
    the two old tables are dropped; all in the caller's transaction. A database without them
    is left as it is. The base rows carry offset 0: the ``runtime_checkpoints`` row has the
    offset of those records.
    """
    present = {
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)",
            _LEGACY_TABLES,
        )
    }
    if not present:
        return 0
    latest: dict[str, dict[str, bytes]] = {}
    queries = (
        "SELECT app, device_id, snapshot FROM runtime_device_state",
        "SELECT app, device_id, snapshot FROM runtime_device_delta ORDER BY id",
    )
    for table, query in zip(_LEGACY_TABLES, queries, strict=True):
        if table in present:
            for app, device, record in conn.execute(query):
                latest.setdefault(app, {})[device] = bytes(record)
    for app, records in sorted(latest.items()):
        append_base(conn, app, 0, sorted(records.items()))
    for table in sorted(present):
        conn.execute(f"DROP TABLE {table}")
    return sum(len(records) for records in latest.values())

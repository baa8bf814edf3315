"""What a checkpoint writes of the engine's emissions: the feature store, late events and the
engine's dead letters, for one app, in the checkpoint's transaction.

The feature store holds one row per output key (an update overwrites it in place, keeping the
key's first-written position), so re-processing after a crash rewrites the same rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from walle.streams.device.records import DeadRow, write_dead_letters

if TYPE_CHECKING:
    from walle.streams.engine import Output

_UPSERT_FEATURE = (
    "INSERT INTO features (app, key, task, device_id, window, ts, output)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (app, key) DO UPDATE SET"
    " task = excluded.task, device_id = excluded.device_id, window = excluded.window,"
    " ts = excluded.ts, output = excluded.output"
)
_INSERT_LATE = (
    "INSERT INTO late_events (app, task, device_id, seq, reason, raw) VALUES (?, ?, ?, ?, ?, ?)"
)


def write_emissions(
    conn: sqlite3.Connection,
    app: str,
    outputs: Sequence[Output],
    late: Sequence[Any],
    dead: Sequence[Any],
    log: Any,
) -> None:
    """Upsert ``outputs`` into the feature store and insert the late events and dead letters
    (the engine's ``Late``/``Dead`` records), each logged on ``log``; caller's transaction."""
    conn.executemany(_UPSERT_FEATURE, [_feature_row(app, output) for output in outputs])
    conn.executemany(_INSERT_LATE, [_late_row(app, record, log) for record in late])
    write_dead_letters(conn, [_dead_row(app, record, log) for record in dead])


def read_features(
    conn: sqlite3.Connection, app: str, *, written_order: bool = False
) -> list[tuple[str, str]]:
    """``(key, Output.to_json())`` of ``app``'s feature store, by key or first-written order."""
    order = "rowid" if written_order else "key"
    rows = conn.execute(
        f"SELECT key, output FROM features WHERE app = ? ORDER BY {order}", (app,)
    ).fetchall()
    return [(key, output) for key, output in rows]


def _feature_row(app: str, output: Output) -> tuple[Any, ...]:
    return (
        app,
        output.key,
        output.task,
        output.device_id,
        output.window,
        output.ts,
        output.to_json(),
    )


def _late_row(app: str, late: Any, log: Any) -> tuple[Any, ...]:
    event = late.event
    log.info(
        "late event", task=late.task, device=event.device_id, seq=event.seq, reason=late.reason
    )
    return (app, late.task, event.device_id, event.seq, late.reason, event.to_json())


def _dead_row(app: str, dead: Any, log: Any) -> DeadRow:
    event = dead.event
    where = f"app {app} device {event.device_id} seq {event.seq}"
    log.warning("dead letter", task=dead.task, device=event.device_id, reason=dead.reason)
    return (f"engine:{app}", where, dead.task, dead.reason, event.to_json())

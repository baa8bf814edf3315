"""Tables the CLI prints: outputs as the device's feature store and a topic show them."""

from __future__ import annotations

import json
from typing import Any


def outputs_table(rows: list[tuple[str, str]], limit: int, title: str = "features") -> Any:
    """A rich table of ``(key, Output.to_json())`` rows, the first ``limit`` of them."""
    from rich.table import Table

    table = Table(title=f"{title} ({len(rows)})")
    for column in ("task", "device", "window", "ts", "value"):
        table.add_column(column, overflow="fold")
    for _, text in rows[:limit]:
        record = json.loads(text)
        value = json.dumps(record["value"], sort_keys=True)
        table.add_row(
            record["task"], record["device_id"], record["window"], str(record["ts"]), value
        )
    if len(rows) > limit:
        table.caption = f"first {limit} of {len(rows)} rows (--limit)"
    return table


def side_records_table(records: list[dict[str, Any]], limit: int, title: str) -> Any:
    """A rich table of late events and dead letters (a side topic's JSON records)."""
    from rich.table import Table

    table = Table(title=f"{title} ({len(records)})")
    for column in ("kind", "task", "where", "reason"):
        table.add_column(column, overflow="fold")
    for record in records[:limit]:
        event = record.get("event") or {}
        where = (
            f"{record['topic']}[{record['partition']}]@{record['offset']}"
            if "offset" in record
            else f"{event.get('device_id')} seq {event.get('seq')}"
        )
        table.add_row(str(record.get("kind")), str(record.get("task") or ""), where,
                      str(record.get("reason")))  # fmt: skip
    if len(records) > limit:
        table.caption = f"first {limit} of {len(records)} rows (--limit)"
    return table


def late_events_table(records: list[Any], total: int, title: str) -> Any:
    """A rich table of a device database's late events (``LateEventRecord``), ``total`` in all."""
    from rich.table import Table

    table = Table(title=f"{title} ({total})")
    for column in ("id", "task", "device", "seq", "ts", "reason"):
        table.add_column(column, overflow="fold")
    for record in records:
        ts = "" if record.ts is None else str(record.ts)
        table.add_row(
            str(record.id), record.task, record.device_id, str(record.seq), ts, record.reason
        )
    if total > len(records):
        table.caption = f"first {len(records)} of {total} rows (--limit)"
    return table

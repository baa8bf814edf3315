"""Bulk JSONL ingest into the event log: one transaction per file, every line accounted for.

Good lines are stored in file order; bad lines (and a truncated last line), duplicate
``(device_id, seq)`` pairs and events below their device's highest seq go to the dead-letter
table with ``file:line``, the reason and the raw text. A file whose exact content was ingested
before is skipped (its sha256 is recorded), so re-running an ingest is harmless.
"""

from __future__ import annotations

import codecs
import hashlib
from pathlib import Path
from typing import NamedTuple

from walle.errors import StorageError, ValidationError
from walle.logging import get_logger
from walle.streams.device.database import DeviceDatabase
from walle.streams.device.records import (
    DeadRow,
    check_storable,
    insert_events,
    last_offset_in,
    log_refused,
    now_ms,
    write_dead_letters,
)
from walle.streams.events import Event, decode_event

_log = get_logger("device.log")


class IngestReport(NamedTuple):
    """What a bulk ingest did: events stored, records dead-lettered, file already ingested."""

    path: str
    events: int
    dead_letters: int
    already_ingested: bool
    first_offset: int | None
    last_offset: int | None


def ingest_jsonl(db: DeviceDatabase, path: str | Path, *, strict: bool = False) -> IngestReport:
    """Store the events of a JSONL file in one transaction, in file order (see EventLog)."""
    source = Path(path)
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise StorageError(f"{source}: cannot read the event file ({exc})") from exc
    digest = hashlib.sha256(data).hexdigest()
    events, locations, raws, bad = _decode_lines(source, data, strict=strict)
    with db.transaction(f"ingest {source}") as conn:
        if conn.execute("SELECT 1 FROM ingested_files WHERE sha256 = ?", (digest,)).fetchone():
            return IngestReport(str(source), 0, 0, True, None, None)
        before = last_offset_in(conn)
        where = f"{db.path}: append"
        stored, refused = insert_events(conn, events, "ingest", locations, raws, where=where)
        dead = refused + [("ingest", *record) for record in bad]
        write_dead_letters(conn, sorted(dead, key=_line_number))
        conn.execute(
            "INSERT INTO ingested_files (sha256, path, events, dead, logged_ms)"
            " VALUES (?, ?, ?, ?, ?)",
            (digest, str(source), stored, len(events) - stored + len(bad), now_ms()),
        )
        after = last_offset_in(conn)
    first = before + 1 if stored else None
    report = IngestReport(
        str(source), stored, len(events) - stored + len(bad), False, first, after or None
    )
    log_refused("ingest", refused)
    _log.info("ingested", file=str(source), events=stored, dead_letters=report.dead_letters)
    return report


def _line_number(record: DeadRow) -> int:
    return int(record[1].rsplit(":", 1)[1])


def _decode_lines(
    source: Path, data: bytes, *, strict: bool
) -> tuple[list[Event], list[str], list[bytes], list[tuple[str, str | None, str, str]]]:
    """Decode JSONL bytes: good events with their ``file:line`` and raw line, and dead-letter
    rows. A UTF-8 byte order mark at the start of the file is skipped."""
    events: list[Event] = []
    locations: list[str] = []
    raws: list[bytes] = []
    bad: list[tuple[str, str | None, str, str]] = []
    lines = data.removeprefix(codecs.BOM_UTF8).split(b"\n")
    truncated = bool(lines[-1].strip())
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            events.append(check_storable(decode_event(line), None))
            locations.append(where)
            raws.append(line)
        except ValidationError as exc:
            reason = str(exc)
            if truncated and number == len(lines):
                reason = f"truncated last line (no newline at end of file): {reason}"
            if strict:
                raise ValidationError(reason, where=where, field=exc.field) from None
            bad.append((where, None, reason, line.decode("utf-8", "replace")))
    return events, locations, raws, bad

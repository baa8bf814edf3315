"""User-behaviour events: the hot-path record, its validation, and JSONL encoding.

``Event`` is a plain named tuple so the engine pays nothing per event beyond a tuple;
pydantic validates at the boundaries (JSONL ingest, Kafka decode, the append API).
"""

from __future__ import annotations

import codecs
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pydantic

from walle.errors import ValidationError

PAGE_ENTER = "page_enter"
PAGE_EXIT = "page_exit"
CLICK = "click"
EXPOSURE = "exposure"
SCROLL = "scroll"
STANDARD_EVENTS = frozenset({PAGE_ENTER, PAGE_EXIT, CLICK, EXPOSURE, SCROLL})

_ID = r"^[A-Za-z0-9_.:\-]{1,64}$"


class Event(NamedTuple):
    """One user-behaviour event of one device.

    ``seq`` orders a device's events (strictly increasing per device); ``ts`` is event
    time in milliseconds; ``event`` the type id (``page_enter``, ``click``, or a custom id).
    """

    device_id: str
    seq: int
    ts: int
    event: str
    page: str = ""
    args: dict[str, Any] = {}  # noqa: RUF012 - never mutated; shared empty default

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces; byte-identical for equal events."""
        return json.dumps(self._asdict(), sort_keys=True, separators=(",", ":"))


class _EventModel(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", strict=True, frozen=True)

    device_id: str = pydantic.Field(min_length=1, max_length=128)
    seq: int = pydantic.Field(ge=0, le=2**63 - 1)  # SQLite INTEGER, Kafka tools: int64
    ts: int = pydantic.Field(ge=0, le=2**63 - 1)
    event: str = pydantic.Field(pattern=_ID)
    page: str = pydantic.Field(default="", max_length=128)
    args: dict[str, Any] = pydantic.Field(default_factory=dict)


def _describe(exc: pydantic.ValidationError) -> tuple[str, str]:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "<record>"
    return field, f"field {field!r}: {first['msg']}"


def _model_to_event(model: _EventModel) -> Event:
    return Event(model.device_id, model.seq, model.ts, model.event, model.page, model.args)


def _non_finite(value: Any, path: str) -> str | None:
    """The path of the first NaN or infinity inside ``value``; None if there is none."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, dict):
        items: Iterable[tuple[Any, Any]] = ((f"{path}.{k}", v) for k, v in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for inner, item in items:
        found = _non_finite(item, inner)
        if found is not None:
            return found
    return None


def _refuse_non_finite(event: Event, where: str | None) -> Event:
    """ValidationError if the args hold NaN or an infinity (Python's json writes them, but
    they are not JSON, and the log, Kafka and outputs must stay JSON)."""
    field = _non_finite(event.args, "args")
    if field is not None:
        raise ValidationError(
            f"field {field!r}: NaN and Infinity are not JSON numbers", where=where, field=field
        )
    return event


def _all_finite(values: Iterable[Any]) -> bool:
    """True unless a NaN or infinity is among ``values`` (nested dicts and lists included).

    A walk of the decoded values, on the hot path of every decode: cheaper than scanning
    the raw line for the tokens, and it allocates nothing.
    """
    for value in values:
        kind = type(value)
        if kind is float:
            if value - value != 0.0:  # inf - inf and nan - nan are nan
                return False
        elif kind is dict:
            if not _all_finite(value.values()):
                return False
        elif kind is list and not _all_finite(value):
            return False
    return True


def validate_event(record: dict[str, Any], *, where: str | None = None) -> Event:
    """Validate one event given as a dict; raises ValidationError naming the field."""
    try:
        event = _model_to_event(_EventModel.model_validate(record))
    except pydantic.ValidationError as exc:
        field, message = _describe(exc)
        raise ValidationError(message, where=where, field=field) from None
    if event.args and not _all_finite(event.args.values()):
        return _refuse_non_finite(event, where)
    return event


def decode_event(line: str | bytes, *, where: str | None = None) -> Event:
    """Decode and validate one JSON-encoded event (a JSONL line or a Kafka value)."""
    try:
        event = _model_to_event(_EventModel.model_validate_json(line))
    except pydantic.ValidationError as exc:
        field, message = _describe(exc)
        if exc.errors()[0]["type"] == "json_invalid":
            message = f"not valid JSON: {exc.errors()[0]['msg']}"
        raise ValidationError(message, where=where, field=field) from None
    if event.args and not _all_finite(event.args.values()):  # pydantic's parser takes NaN
        return _refuse_non_finite(event, where)
    return event


class BadRecord(NamedTuple):
    """A record that failed validation: where it was, why, and its raw text."""

    where: str
    reason: str
    raw: str


def read_jsonl(path: str | Path, *, errors: list[BadRecord] | None = None) -> Iterator[Event]:
    """Yield the events of a JSONL file in file order.

    With ``errors`` given, bad lines are appended to it (file:line and reason) and
    reading goes on; without it the first bad line raises ValidationError.
    """
    path = Path(path)
    with path.open("rb") as stream:
        for number, line in enumerate(stream, start=1):
            if number == 1:
                line = line.removeprefix(codecs.BOM_UTF8)
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                yield decode_event(line, where=where)
            except ValidationError as exc:
                if errors is None:
                    raise
                errors.append(BadRecord(where, str(exc), line.decode("utf-8", "replace")))


def write_jsonl(path: str | Path, events: Iterable[Event]) -> int:
    """Write events as canonical JSONL; returns how many were written."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as stream:
        for event in events:
            stream.write(event.to_json())
            stream.write("\n")
            count += 1
    return count

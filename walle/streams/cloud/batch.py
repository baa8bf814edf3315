"""One batch of input messages through the engine: the part of the worker that is not faust.

Kept apart from the faust plumbing so its rules are plain code: decode and validate each
message (bad ones become dead letters naming topic, partition and offset), load a device's
state lazily from the state table, feed the engine in partition order, and report the
outputs, side outputs and the new state of each device touched.
"""

from __future__ import annotations

import base64
import json
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from walle.errors import ValidationError
from walle.streams.engine import END_OF_LOG_MS, Engine
from walle.streams.events import Event, decode_event
from walle.streams.results import Emissions


class InputMessage(NamedTuple):
    """A consumed record: where it came from and its raw bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any = None  # [(name, bytes)] as the client gives them

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass
class BatchResult:
    """What a batch produced; ``states`` holds the new state blob of each touched device."""

    emissions: Emissions = field(default_factory=Emissions)
    bad: list[bytes] = field(default_factory=list)
    states: dict[bytes, bytes] = field(default_factory=dict)


def bad_message_record(message: InputMessage, reason: str) -> bytes:
    """The dead-letter value of an input message: reason, topic, partition, offset, raw."""
    raw = message.value or b""
    record = {
        "kind": "bad_message",
        "reason": reason,
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "key": None if message.key is None else message.key.decode("utf-8", "replace"),
        "raw_base64": base64.b64encode(raw).decode(),
    }
    return json.dumps(record, sort_keys=True).encode()


END_OF_LOG_HEADER = ("walle-control", b"end-of-log")


def is_end_of_log(value: bytes | None, headers: Any) -> bool:
    """True for a device's end-of-log marker: empty value, header walle-control=end-of-log.

    ``walle cloud produce`` appends one per device after a complete log, so the cloud closes
    that device's open windows exactly where the device runtime's ``--finish`` does.
    """
    return value == b"" and bool(headers) and END_OF_LOG_HEADER in headers


def check_input(key: bytes | None, value: bytes | None) -> Event | str:
    """The event of an input record, or why it is refused (the caller adds where it was)."""
    if value is None:
        return "empty message (no value)"
    try:
        event = decode_event(value)
    except ValidationError as exc:
        return str(exc)
    if key != event.device_id.encode():
        return (
            f"message key {key!r} is not the event's device_id {event.device_id!r}; "
            "produce keyed by device id so its events stay ordered"
        )
    return event


def side_output_record(kind: str, task: str | None, event: Event, reason: str) -> bytes:
    """The value of a late event or an engine dead letter on its side topic."""
    record = {"kind": kind, "task": task, "reason": reason, "event": event._asdict()}
    return json.dumps(record, sort_keys=True).encode()


class BatchProcessor:
    """Feeds batches to one engine, keeping each device's state in ``table``.

    ``table`` maps device id bytes to state blobs (a faust Table in the worker, a dict in
    tests). A device's in-memory state is reloaded whenever the table holds a blob other
    than the one this processor wrote last (after recovery or a rebalance).
    """

    def __init__(self, engine: Engine, table: MutableMapping[bytes, bytes]):
        self.engine = engine
        self.table = table
        self._written: dict[bytes, bytes] = {}

    def process(self, messages: list[InputMessage]) -> BatchResult:
        """Decode, validate and run the messages; the caller ships and stores the result."""
        result = BatchResult()
        touched: set[bytes] = set()
        for message in messages:
            if is_end_of_log(message.value, message.headers) and message.key:
                device_key = message.key
                self._touch(device_key, touched)
                ended = self.engine.advance_to(END_OF_LOG_MS, device_key.decode())
                result.emissions.extend(ended)
                continue
            event = self._decode(message, result)
            if event is None:
                continue
            self._touch(event.device_id.encode(), touched)
            result.emissions.extend(self.engine.process(event))
        for device_key in touched:
            blob = self.engine.snapshot_device(device_key.decode())
            result.states[device_key] = blob
        return result

    def _touch(self, device_key: bytes, touched: set[bytes]) -> None:
        if device_key not in touched:
            self._load(device_key, device_key.decode())
            touched.add(device_key)

    def stored(self, states: dict[bytes, bytes]) -> None:
        """Record that ``states`` were written to the table (by identity)."""
        self._written.update(states)

    def forget(self, device_key: bytes) -> None:
        """Drop a device's in-memory state; it is reloaded from the table when next seen."""
        self.engine.forget_device(device_key.decode())
        self._written.pop(device_key, None)

    def _decode(self, message: InputMessage, result: BatchResult) -> Event | None:
        checked = check_input(message.key, message.value)
        if isinstance(checked, str):
            result.bad.append(bad_message_record(message, f"{message.where}: {checked}"))
            return None
        return checked

    def _load(self, device_key: bytes, device_id: str) -> None:
        blob = self.table.get(device_key)
        if blob is None:
            if device_key in self._written:  # our state vanished from the table: start over
                self.engine.forget_device(device_id)
                del self._written[device_key]
            return
        if self._written.get(device_key) is blob:
            return
        self.engine.restore_device(device_id, blob)  # StateError: written by another app
        self._written[device_key] = blob

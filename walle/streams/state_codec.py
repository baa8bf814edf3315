"""Engine state as bytes: a versioned msgpack layout that loads nothing but plain data.

Device states travel through a Kafka changelog topic and a SQLite checkpoint, so loading
one must never run code (pickle would: anyone able to write to the topic could run code in
a worker). A snapshot is one msgpack array ``[MAGIC, VERSION, kind, fingerprint, payload]``;
``kind`` is ``"device"`` (payload: one device) or ``"engine"`` (payload: a map of device id
to device). A device is a fixed-position array::

    [last_seq, max_ts, forced_wm, last_event, trie_active, trie_consumed, trie_next_gc,
     buffer, tasks]

where events are arrays ``[device_id, seq, ts, event, page, args]``, ``trie_active`` maps
a node to ``[seq, ts]``, and ``tasks`` maps a task name to its window state. Window state
(``TaskRunner.new_state`` filled by the aggregates) is generic data; msgpack keeps None,
bool, int, float, str, bytes, list and dict (with any key type, in order) as they are, and
the three Python types it lacks travel as extension types: tuple, ``Event`` and ints
beyond 64 bits. Decoding builds exactly those types and nothing else; anything else in
the bytes (another format, a pickle, a truncated blob, an unknown extension code, a field
of the wrong type) raises ``StateError``.
"""

from __future__ import annotations

from collections import deque
from itertools import repeat
from typing import TYPE_CHECKING, Any

from msgpack import ExtType, Packer, unpackb

from walle.errors import StateError
from walle.streams.events import Event
from walle.streams.trie import TrieState

if TYPE_CHECKING:
    from walle.streams.engine import DeviceState

__all__ = [
    "MAGIC",
    "VERSION",
    "DeviceFields",
    "decode_device",
    "decode_engine",
    "encode_device",
    "encode_engine",
]

MAGIC = "walle-state"
VERSION = 2  # version 1 was a pickle
DEVICE = "device"
ENGINE = "engine"

_TUPLE = 1
_EVENT = 2
_BIG_INT = 3
_DEVICE_FIELDS = 9
_EVENT_FIELDS = len(Event._fields)
_COLUMN_NAMES = Event._fields[1:]
_COLUMN_TYPES = (frozenset({int}), frozenset({int}), frozenset({str}), frozenset({str}),
                 frozenset({dict}))  # fmt: skip
_new_tuple = tuple.__new__  # builds an Event from a row in C, without Event.__new__
_BUFFER = 16 * 1024  # a packer's first buffer (it grows): a device's state is ~1-10 KiB
_NESTED_BUFFER = 256  # a tuple's or an event's
_TYPES = "None, bool, int, float, str, bytes, list, tuple, dict and Event"

# The arguments of ``DeviceState(...)`` in its field order (the codec does not import the
# engine, which imports the codec): last_seq, max_ts, forced_wm, last_event, trie, buffer,
# tasks.
DeviceFields = tuple[int, int, int, Event | None, TrieState, deque[Event], dict[str, Any]]


class _Malformed(Exception):
    """Bytes that are msgpack but not this layout (raised inside decoding, then wrapped)."""


class _Unsupported(TypeError):
    """State holding a type outside the closed set (raised inside encoding, then wrapped)."""


# -- encoding -------------------------------------------------------------------------------


def _default(obj: Any) -> ExtType:
    """The extension types: msgpack calls this for every object it has no exact type for.

    A tuple or an Event is the msgpack of its items as a list, in a packer of its own
    (this one is mid-write); ``ExtType``'s own ``__new__`` re-checks in Python what is
    known good here, so it is skipped.
    """
    kind = type(obj)
    if kind is tuple:
        return _new_tuple(ExtType, (_TUPLE, _pack(list(obj), _NESTED_BUFFER)))
    if kind is Event:
        return _new_tuple(ExtType, (_EVENT, _pack(list(obj), _NESTED_BUFFER)))
    if kind is int:  # msgpack ints stop at 64 bits
        return ExtType(_BIG_INT, obj.to_bytes(obj.bit_length() // 8 + 1, "big", signed=True))
    raise _Unsupported(f"{kind.__module__}.{kind.__qualname__}")


def _pack(obj: Any, buffer_size: int) -> bytes:
    """msgpack bytes of ``obj``: only exact types are native, the rest go to ``_default``."""
    return Packer(strict_types=True, default=_default, buf_size=buffer_size).pack(obj)


def _device_row(device: DeviceState) -> list[Any]:
    """A device's state as its fixed-position array."""
    trie = device.trie
    last = device.last_event
    return [
        device.last_seq,
        device.max_ts,
        device.forced_wm,
        None if last is None else list(last),
        {node: list(start) for node, start in trie.active.items()},
        trie.consumed,
        trie.next_gc,
        _columns(device.buffer),
        device.tasks,
    ]


def _columns(buffer: deque[Event]) -> list[Any]:
    """Buffered events as ``[device_id, seqs, tss, events, pages, args]`` (empty: ``[]``).

    Columns, not one array per event: a buffer holds up to thousands of one device's
    events, and columns decode with one type check per column instead of per event.
    """
    if not buffer:
        return []
    ids, seqs, tss, names, pages, args = map(list, zip(*buffer, strict=True))
    if ids.count(ids[0]) != len(ids):
        raise _Unsupported("buffer of several devices' events")
    return [ids[0], seqs, tss, names, pages, args]


def _encode(kind: str, fingerprint: str, payload: Any, what: str) -> bytes:
    try:
        return _pack([MAGIC, VERSION, kind, fingerprint, payload], _BUFFER)
    except _Unsupported as exc:
        raise StateError(f"cannot snapshot {what}: it holds a {exc}, not one of {_TYPES}") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise StateError(f"cannot snapshot {what}: {type(exc).__name__}: {exc}") from None


def encode_device(device: DeviceState, fingerprint: str, what: str = "the device") -> bytes:
    """One device's state as a ``"device"`` snapshot of the app with ``fingerprint``."""
    return _encode(DEVICE, fingerprint, _device_row(device), what)


def encode_engine(devices: dict[str, DeviceState], fingerprint: str) -> bytes:
    """Every device's state as an ``"engine"`` snapshot of the app with ``fingerprint``."""
    rows = {device_id: _device_row(device) for device_id, device in devices.items()}
    return _encode(ENGINE, fingerprint, rows, "the engine")


# -- decoding -------------------------------------------------------------------------------


def _ext_hook(code: int, data: bytes) -> Any:
    """Build one extension value; only the closed set, never a type named by the bytes."""
    if code in (_TUPLE, _EVENT):
        items = unpackb(data, ext_hook=_ext_hook, strict_map_key=False)
        if type(items) is not list:
            raise _Malformed(f"extension {code} holds a {type(items).__name__}, not an array")
        if code == _TUPLE:
            return tuple(items)
        if len(items) != _EVENT_FIELDS:
            raise _Malformed(f"an event has {len(items)} fields, not {_EVENT_FIELDS}")
        return _new_tuple(Event, items)
    if code == _BIG_INT:
        return int.from_bytes(data, "big", signed=True)
    raise _Malformed(f"unknown extension type code {code}")


def _unpack(data: bytes) -> Any:
    """Plain data from msgpack bytes (map keys of any type; extensions by ``_ext_hook``)."""
    return unpackb(data, ext_hook=_ext_hook, strict_map_key=False)


def _event(row: Any, what: str) -> Event:
    """An event from its array, its field types checked (events in fixed positions)."""
    if type(row) is not list or len(row) != _EVENT_FIELDS:
        raise _Malformed(f"{what} is not an event array of {_EVENT_FIELDS} fields")
    device_id, seq, ts, name, page, args = row
    if not (
        type(device_id) is str
        and type(seq) is int
        and type(ts) is int
        and type(name) is str
        and type(page) is str
        and type(args) is dict
    ):
        raise _Malformed(f"{what} has a field of the wrong type: {row!r:.200}")
    return Event(device_id, seq, ts, name, page, args)


def _buffer(columns: Any) -> deque[Event]:
    """Buffered events from their columns, each column's length and element types checked."""
    if type(columns) is not list or len(columns) not in (0, _EVENT_FIELDS):
        raise _Malformed(f"buffer is not [] nor an array of {_EVENT_FIELDS} columns")
    if not columns:
        return deque()
    device_id, seqs, tss, names, pages, args = columns
    if not (type(device_id) is str and _column_types(columns[1:], len(columns[1]))):
        raise _Malformed(f"buffer is not [device_id, {', '.join(_COLUMN_NAMES)}] (equal-length "
                         "arrays of int, int, str, str and map)")  # fmt: skip
    rows = zip(repeat(device_id), seqs, tss, names, pages, args)  # lengths checked above
    return deque(map(_new_tuple, repeat(Event), rows))


def _column_types(columns: list[Any], size: int) -> bool:
    """Whether every column is an array of ``size`` values of its field's type."""
    for column, kinds in zip(columns, _COLUMN_TYPES, strict=True):
        if type(column) is not list or len(column) != size or not kinds.issuperset(map(type, column)):  # noqa: E501
            return False
    return True


def _trie(active: Any, consumed: Any, next_gc: Any) -> TrieState:
    """The trigger state; its exact types matter (the compiled trie casts without checks)."""
    if type(active) is not dict or type(consumed) is not dict:
        raise _Malformed("trie_active and trie_consumed must be maps")
    starts = {}
    for node, start in active.items():
        if not (type(node) is int and type(start) is list and len(start) == 2):
            raise _Malformed(f"trie_active entry {node!r}: {start!r} is not node: [seq, ts]")
        seq, ts = start
        if type(seq) is not int or type(ts) is not int:
            raise _Malformed(f"trie_active entry {node!r}: {start!r} is not node: [seq, ts]")
        starts[node] = (seq, ts)
    for pattern, seq in consumed.items():
        if type(pattern) is not int or type(seq) is not int:
            raise _Malformed(f"trie_consumed entry {pattern!r}: {seq!r} is not int: int")
    if type(next_gc) is not int and type(next_gc) is not float:
        raise _Malformed(f"trie_next_gc is a {type(next_gc).__name__}, not a number")
    return TrieState(starts, consumed, next_gc)


def _tasks(tasks: Any) -> dict[str, Any]:
    if type(tasks) is not dict:
        raise _Malformed(f"tasks is a {type(tasks).__name__}, not a map")
    for name, state in tasks.items():
        if type(name) is not str or type(state) is not dict:
            raise _Malformed(f"tasks entry {name!r} is not task name: map")
    return tasks


def _device(row: Any) -> DeviceFields:
    """A device's fields from its fixed-position array, every field's type checked."""
    if type(row) is not list or len(row) != _DEVICE_FIELDS:
        raise _Malformed(f"a device state is not an array of {_DEVICE_FIELDS} fields")
    last_seq, max_ts, forced_wm, last, active, consumed, next_gc, buffer, tasks = row
    if type(last_seq) is not int or type(max_ts) is not int or type(forced_wm) is not int:
        raise _Malformed("last_seq, max_ts and forced_wm must be ints")
    return (
        last_seq,
        max_ts,
        forced_wm,
        None if last is None else _event(last, "last_event"),
        _trie(active, consumed, next_gc),
        _buffer(buffer),
        _tasks(tasks),
    )


def _payload(blob: bytes, kind: str, fingerprint: str, what: str) -> Any:
    """The payload of a ``kind`` snapshot after checking its header."""
    if blob[:1] == b"\x80":  # every pickle since protocol 2 starts with PROTO
        raise StateError(
            f"{what} is a pickle (the state format before {MAGIC} v{VERSION}); pickles are "
            "never loaded: replay the log from the start"
        )
    data = _unpack(blob)
    if type(data) is not list or len(data) < 2 or data[0] != MAGIC:
        raise StateError(f"{what} is not a walle state snapshot ({MAGIC} v{VERSION})")
    if data[1] != VERSION:
        raise StateError(
            f"{what} has an unknown snapshot version {data[1]!r:.40} (this walle reads "
            f"{MAGIC} v{VERSION})"
        )
    if len(data) != 5 or data[2] != kind or type(data[3]) is not str:
        raise _Malformed(f"the header is not [{MAGIC!r}, {VERSION}, {kind!r}, fingerprint, ...]")
    if data[3] != fingerprint:
        raise StateError(
            f"{what} was written by app fingerprint {data[3]:.80}, this app is "
            f"{fingerprint}: its tasks changed; replay the log from the start"
        )
    return data[4]


def _decode(blob: bytes, kind: str, fingerprint: str, what: str, build: Any) -> Any:
    """Run ``build(payload)``, turning every failure into a StateError naming ``what``."""
    try:
        return build(_payload(blob, kind, fingerprint, what))
    except StateError:
        raise
    except _Malformed as exc:
        raise StateError(f"{what} is not a valid walle state snapshot: {exc}") from None
    except Exception as exc:  # msgpack's own errors: not msgpack, truncated, too deep
        raise StateError(
            f"{what} is not a walle state snapshot ({MAGIC} v{VERSION}): "
            f"{type(exc).__name__}: {exc}"
        ) from None


def decode_device(blob: bytes, fingerprint: str, what: str) -> DeviceFields:
    """The fields of the device in a ``"device"`` snapshot written by ``encode_device``."""
    return _decode(blob, DEVICE, fingerprint, what, _device)


def _devices(payload: Any) -> dict[str, DeviceFields]:
    if type(payload) is not dict:
        raise _Malformed(f"the devices are a {type(payload).__name__}, not a map")
    devices = {}
    for device_id, row in payload.items():
        if type(device_id) is not str:
            raise _Malformed(f"device id {device_id!r} is not a str")
        devices[device_id] = _device(row)
    return devices


def decode_engine(blob: bytes, fingerprint: str, what: str) -> dict[str, DeviceFields]:
    """Every device's fields in an ``"engine"`` snapshot written by ``encode_engine``."""
    return _decode(blob, ENGINE, fingerprint, what, _devices)

"""Engine state as bytes: a versioned msgpack layout that loads nothing but plain data.

Device states travel through a Kafka changelog topic and a SQLite checkpoint, so loading
one must never run code (pickle would: anyone able to write to the topic could run code in
a worker). A snapshot is one msgpack array ``[MAGIC, VERSION, kind, fingerprint, payload]``;
``kind`` is ``"device"`` (payload: one device) or ``"engine"`` (payload: a map of device id
to device). A device is a fixed-position array::

    [last_seq, max_ts, forced_wm, last_event, trie_active, trie_consumed, trie_next_gc,
     buffer, tasks]

``last_event`` is nil or an event array ``[device_id, seq, ts, event, page, args]``;
``trie_active`` maps a node to ``[seq, ts]`` and ``trie_consumed`` a pattern to a seq;
``buffer`` (the device's recent events) is ``[]`` or columns ``[device_id, seqs, tss,
events, pages, args]``; ``tasks`` maps a task name to its window state.

Window state (``WindowKind.new_state`` filled by the aggregates) is generic data: msgpack
keeps None, bool, int, float, str, bytes, list and dict (any key type, in order) as they
are, and the three Python types it lacks are extension types whose data is msgpack again:
tuple (code 1, or 4 when it holds no list or dict and can be read straight as a tuple),
``Event`` (code 2, its fields in order) and ints beyond 64 bits (code 3, big-endian).
Decoding builds exactly these types and nothing else; anything else in the bytes (another
format, a pickle, a truncated blob, an unknown extension code, a field of the wrong type)
raises ``StateError``, as does encoding state that holds another type.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from itertools import repeat
from typing import TYPE_CHECKING, Any, TypeVar

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
_FLAT_TUPLE = 4  # a tuple without lists or dicts: decoded straight to a tuple
_FLAT = frozenset({type(None), bool, int, float, str, bytes, tuple, Event})
_DEVICE_FIELDS = 9
_EVENT_FIELDS = len(Event._fields)
_COLUMN_NAMES = Event._fields[1:]
_LIST, _INT, _DICT, _NUMBER = {list}, frozenset({int}), frozenset({dict}), frozenset({int, float})
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
        code = _FLAT_TUPLE if _FLAT.issuperset(map(type, obj)) else _TUPLE
        return _new_tuple(ExtType, (code, _pack(list(obj), _NESTED_BUFFER)))
    if kind is Event:
        return _new_tuple(ExtType, (_EVENT, _pack(list(obj), _NESTED_BUFFER)))
    if kind is int:  # msgpack ints stop at 64 bits
        return ExtType(_BIG_INT, obj.to_bytes(obj.bit_length() // 8 + 1, "big", signed=True))
    raise _Unsupported(f"{kind.__module__}.{kind.__qualname__}")


def _pack(obj: Any, buffer_size: int) -> bytes:
    """msgpack bytes of ``obj``: only exact types are native, the rest go to ``_default``."""
    # buf_size is the C Packer's (msgpack-types describes only the pure-Python fallback)
    packer = Packer(strict_types=True, default=_default, buf_size=buffer_size)  # type: ignore[call-arg]
    return packer.pack(obj)


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
    if ids.count(ids[0]) != len(ids):  # the engine buffers one device's events per device
        raise ValueError("its buffer holds events of several devices")
    return [ids[0], seqs, tss, names, pages, args]


def _refusal(exc: Exception, what: str, devices: list[DeviceState]) -> StateError:
    """Why ``devices`` cannot be encoded, naming the task whose state is to blame."""
    if not isinstance(exc, _Unsupported):
        return StateError(f"cannot snapshot {what}: {type(exc).__name__}: {exc}")
    culprit = ""
    for device in devices:
        for name, state in device.tasks.items():
            try:
                _pack(state, _NESTED_BUFFER)
            except _Unsupported:
                culprit = f" (in the state of task {name!r})"
                break
        if culprit:
            break
    return StateError(f"cannot snapshot {what}: it holds a {exc}{culprit}, not one of {_TYPES}")


def encode_device(device: DeviceState, fingerprint: str, what: str = "the device") -> bytes:
    """One device's state as a ``"device"`` snapshot of the app with ``fingerprint``."""
    try:
        return _pack([MAGIC, VERSION, DEVICE, fingerprint, _device_row(device)], _BUFFER)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _refusal(exc, what, [device]) from None


def encode_engine(devices: dict[str, DeviceState], fingerprint: str) -> bytes:
    """Every device's state as an ``"engine"`` snapshot of the app with ``fingerprint``."""
    try:
        rows = {device_id: _device_row(device) for device_id, device in devices.items()}
        return _pack([MAGIC, VERSION, ENGINE, fingerprint, rows], _BUFFER)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _refusal(exc, "the engine", list(devices.values())) from None


# -- decoding -------------------------------------------------------------------------------


def _ext_hook(code: int, data: bytes) -> Any:
    """Build one extension value; only the closed set, never a type named by the bytes."""
    if code == _FLAT_TUPLE:
        items = unpackb(data, ext_hook=_ext_hook, use_list=False)
        if type(items) is tuple:
            return items
        raise _Malformed(f"a tuple holds a {type(items).__name__}, not an array")
    if code == _TUPLE:
        items = unpackb(data, ext_hook=_ext_hook, strict_map_key=False)
        if type(items) is list:
            return tuple(items)
        raise _Malformed(f"a tuple holds a {type(items).__name__}, not an array")
    if code == _EVENT:
        items = unpackb(data, ext_hook=_ext_hook, strict_map_key=False)
        if type(items) is list and len(items) == _EVENT_FIELDS:
            return _new_tuple(Event, items)
        raise _Malformed(f"an event is not an array of {_EVENT_FIELDS} fields: {items!r:.200}")
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
    return _new_tuple(Event, row)


def _buffer(columns: Any) -> deque[Event]:
    """Buffered events from their columns, each column's length and element types checked."""
    if type(columns) is not list or len(columns) not in (0, _EVENT_FIELDS):
        raise _Malformed(f"buffer is not [] nor an array of {_EVENT_FIELDS} columns")
    if not columns:
        return deque()
    device_id, seqs, tss, names, pages, args = columns
    if not (type(device_id) is str and _columns_valid(seqs, tss, names, pages, args)):
        raise _Malformed(
            f"buffer is not [device_id, {', '.join(_COLUMN_NAMES)}] with equal-length arrays"
            " of int, int, str, str and map"
        )
    rows = zip(repeat(device_id), seqs, tss, names, pages, args)  # lengths checked above
    return deque(map(_new_tuple, repeat(Event), rows))


def _columns_valid(seqs: Any, tss: Any, names: Any, pages: Any, args: Any) -> bool:
    """Whether the columns are arrays of one length, of int, int, str, str and dict."""
    columns = (seqs, tss, names, pages, args)
    if set(map(type, columns)) != _LIST or len(set(map(len, columns))) != 1:
        return False
    try:  # joining checks every element is a str, at a third of the cost of type()
        "".join(names)
        "".join(pages)
    except TypeError:
        return False
    return (
        _INT.issuperset(map(type, seqs))
        and _INT.issuperset(map(type, tss))
        and _DICT.issuperset(map(type, args))
    )


def _trie(active: Any, consumed: Any, next_gc: Any) -> TrieState:
    """The trigger state; its exact types matter (the compiled trie casts without checks)."""
    if type(active) is not dict or type(consumed) is not dict or type(next_gc) not in _NUMBER:
        raise _Malformed("the trie state is not {node: [seq, ts]}, {pattern: seq} and a number")
    starts = {}
    for node, start in active.items():
        if type(node) is not int or type(start) is not list or len(start) != 2:
            raise _Malformed(f"trie_active entry {node!r}: {start!r:.80} is not node: [seq, ts]")
        seq, ts = start
        if type(seq) is not int or type(ts) is not int:
            raise _Malformed(f"trie_active entry {node!r}: {start!r:.80} is not node: [seq, ts]")
        starts[node] = (seq, ts)
    if not (_INT.issuperset(map(type, consumed)) and _INT.issuperset(map(type, consumed.values()))):
        raise _Malformed("trie_consumed is not a map of int to int")
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


_Built = TypeVar("_Built")


def _decode(
    blob: bytes, kind: str, fingerprint: str, what: str, build: Callable[[Any], _Built]
) -> _Built:
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
            f"{type(exc).__name__}: {exc!s:.200}"
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

"""Engine state snapshots (msgpack, walle.streams.state_codec): exact round trips, and refusals.

Restoring at any point of a log, whole engine or device by device, gives exactly the
outputs of an engine that never stopped, and the restored state equals the original with
every object's type (tuple stays tuple, Event stays Event, big int stays int). Anything
that is not a snapshot of this app (random bytes, a pickle, a truncated or altered blob,
another app's state) raises StateError naming where it came from, and runs nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import pickle
from collections import deque
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from walle.errors import StateError
from walle.streams import (
    App,
    CountWindow,
    Engine,
    Event,
    Hopping,
    LookBack,
    PageWindow,
    Session,
    Span,
    Tumbling,
    Window,
    clicked,
    collect,
    count,
    distinct,
    entered,
    first,
    last,
    load_app,
    max_,
    mean,
    min_,
    on,
    seq,
    state_codec,
    sum_,
    top_k,
)
from walle.streams.engine import DeviceState
from walle.streams.generator import generate_events
from walle.streams.results import Emissions
from walle.streams.trie import TrieState
from walle.testing import literal_events

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
EXAMPLE_APPS = [
    load_app(EXAMPLES / f"{name}.py")
    for name in ("item_page_view", "clicks_per_category", "search_to_cart")
]
FUNNEL = seq(entered("search"), entered("item"), on("add_to_cart")).within(10 * 60 * 1000)
FAR_FUTURE = 2**50


def _aggregates() -> dict[str, Any]:
    """Every aggregate, plus ones whose state holds tuples, Events and ints beyond 64 bits."""
    return {
        "n": count(),
        "n_price": count("args.price"),
        "total": sum_("args.price"),
        "avg": mean("args.price"),
        "lo": min_("args.price"),
        "hi": max_("args.depth"),
        "pages": distinct("page"),
        "first_item": first("args.item_id"),
        "last_item": last("args.item_id"),
        "top": top_k("args.category", k=2),
        "depths": collect("args.depth", limit=4),
        "kinds": distinct(lambda e: (e.event, e.page)),
        "top_pairs": top_k(lambda e: (e.page, e.event), k=2),
        "first_event": first(lambda e: e),
        "recent": collect(lambda e: (e.seq, e.ts), limit=3),
        "big": sum_(lambda e: e.seq * 2**70 - 2**65),
        "earliest": min_(lambda e: (e.ts, e.seq)),
    }


def _tag(event: Event) -> Event:
    """A map step: its events (kept by function tasks) carry a tuple in their args."""
    return event._replace(args={**event.args, "pair": (event.seq % 3, event.page)})


def _everything_app() -> App:
    """Every window kind, both emit modes, key_by, filter, map and function tasks."""
    app = App("everything", out_of_orderness_ms=2_000)
    app.stream("tumbling").window(Tumbling(60_000, lateness_ms=10_000)).aggregate(**_aggregates())
    (
        app.stream("hopping")
        .key_by(lambda e: e.page or "none")
        .window(Hopping(120_000, 60_000), emit="update")
        .aggregate(**_aggregates())
    )
    (
        app.stream("session")
        .filter(lambda e: e.event != "scroll")
        .window(Session(30_000, lateness_ms=5_000))
        .aggregate(**_aggregates())
    )
    app.stream("count").key_by(lambda e: e.event).window(CountWindow(4)).aggregate(**_aggregates())
    app.stream("page").window(PageWindow("item", timeout_ms=60_000)).aggregate(**_aggregates())
    app.stream("span", trigger=FUNNEL).window(Span(max_events=50)).aggregate(**_aggregates())
    (
        app.stream("lookback_events", trigger=on("add_to_cart"))
        .window(LookBack(events=20))
        .aggregate(**_aggregates())
    )
    app.stream("lookback_ms", trigger=clicked()).window(LookBack(ms=30_000)).aggregate(n=count())
    app.stream("infinite").window(Tumbling(60_000)).aggregate(lo=min_(lambda e: -math.inf))
    (
        app.stream("tagged")
        .map(_tag)
        .window(Session(20_000))
        .aggregate(pairs=collect("args.pair"), events=collect(lambda e: e, limit=5))
    )

    @app.task(window=Session(20_000))
    def visit(window: Window) -> dict:
        return {"events": len(window.events), "first": window.events[0].seq}

    @app.task(window=PageWindow("list", timeout_ms=60_000), emit="update")
    def list_view(window: Window) -> dict:
        return {"events": len(window.events), "complete": window.complete}

    return app


APPS = [*EXAMPLE_APPS, _everything_app()]


def _log(seed: int) -> list[Event]:
    return generate_events(
        devices=3, sessions=2, seed=seed, out_of_order_rate=0.1, late_rate=0.02, duplicate_rate=0.02
    )


def _typed(value: Any) -> Any:
    """``value`` with every object's exact type spelled out, so comparisons see types."""
    kind = type(value).__name__
    if isinstance(value, DeviceState | TrieState):
        return kind, [_typed(getattr(value, f.name)) for f in dataclasses.fields(value)]
    if isinstance(value, dict):
        return kind, [(_typed(k), _typed(v)) for k, v in value.items()]
    if isinstance(value, list | tuple | deque):
        return kind, [_typed(item) for item in value]
    if isinstance(value, float):
        return kind, repr(value)  # nan and -0.0 compare by their spelling
    return kind, value


def _record(emissions: Emissions, log: list[Any]) -> None:
    """Append what one call emitted to ``log``, outputs serialized at once.

    At once: an update-mode ``collect`` output shares its list with the window's state,
    which later events of the same window change (and a restored state does not share).
    """
    log.extend(("output", o.to_json()) for o in emissions.outputs)
    log.extend(("late", x.task, x.event, x.reason) for x in emissions.late)
    log.extend(("dead", x.task, x.event, x.reason) for x in emissions.dead)
    log.extend(("duplicate", event) for event in emissions.duplicates)


def _moved(engine: Engine, app: App, whole: bool) -> Engine:
    """A fresh engine holding ``engine``'s state: one snapshot, or one blob per device."""
    if whole:
        moved = Engine.restore(app, engine.snapshot())
    else:
        moved = Engine(app)
        for device_id in engine.devices():
            moved.restore_device(device_id, engine.snapshot_device(device_id))
    for device_id in engine.devices():  # compared after snapshot's trim of span buffers
        assert _typed(moved._devices[device_id]) == _typed(engine._devices[device_id])
    assert moved.devices() == engine.devices()
    return moved


def _run(app: App, events: list[Event], cuts: list[int], whole: bool = True) -> list[Any]:
    """What ``app`` emits over ``events`` and then closing every window.

    At each cut, the engine's state moves to a fresh engine (``whole``: in one snapshot,
    else device by device).
    """
    engine, log, start = Engine(app), [], 0
    for cut in [*cuts, len(events)]:
        if start:
            engine = _moved(engine, app, whole)
        for event in events[start:cut]:
            _record(engine.process(event), log)
        start = cut
    _record(engine.advance_to(FAR_FUTURE), log)
    return log


# -- round trips --------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.data())
def test_restoring_at_random_points_gives_the_outputs_of_an_engine_that_never_stopped(seed, data):
    events = _log(seed)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(events)), min_size=1, max_size=3)))
    whole = data.draw(st.booleans())
    for app in APPS:
        assert _run(app, events, cuts, whole) == _run(app, events, [])


def test_the_everything_app_really_holds_every_state_type_it_claims():
    engine = Engine(APPS[-1])
    engine.process_many(_log(1))
    kinds = set()

    def walk(value: Any) -> None:
        kinds.add(type(value).__name__)
        if isinstance(value, dict):
            for k, v in value.items():
                walk(k)
                walk(v)
        elif isinstance(value, list | tuple | deque):
            for item in value:
                walk(item)
        elif type(value) is int and abs(value) >= 2**64:
            kinds.add("big int")
        elif type(value) is float and math.isinf(value):
            kinds.add("infinity")

    for device in engine._devices.values():
        walk(device.tasks)
    assert {"dict", "list", "tuple", "Event", "int", "float", "str", "NoneType"} <= kinds
    assert {"big int", "infinity"} <= kinds
    assert any(isinstance(e.args.get("pair"), tuple) for e in _events_in(engine))


def _events_in(engine: Engine) -> list[Event]:
    """The Events the engine's window states hold (function tasks, collect of events)."""
    found = []

    def walk(value: Any) -> None:
        if type(value) is Event:
            found.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    for device in engine._devices.values():
        walk(device.tasks)
    return found


_scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
_keys = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3).map(tuple), max_leaves=6)


def _events(args: st.SearchStrategy[Any]) -> st.SearchStrategy[Event]:
    return st.builds(
        Event,
        st.text(max_size=6),
        st.integers(0, 2**40),
        st.integers(0, 2**45),
        st.text(max_size=6),
        st.text(max_size=6),
        st.dictionaries(st.text(max_size=4), args, max_size=3),
    )


_values = st.recursive(
    _scalars | _events(_scalars),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(_keys, inner, max_size=4)
        | _events(inner)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_any_state_value_round_trips_with_its_exact_types(value):
    event = Event("d1", 1, 2, "click", "", {"value": value})
    device = DeviceState(
        last_event=event,
        buffer=deque([event]),
        tasks={"task": {"open": {("k", 1): [value]}, "heap": [(3, 1, "k")]}},
    )
    blob = state_codec.encode_device(device, "fp")
    assert _typed(DeviceState(*state_codec.decode_device(blob, "fp", "test"))) == _typed(device)


def test_a_device_state_round_trips_field_by_field():
    event = Event("d1", 7, 1_000, "click", "item", {"pair": (1, "item"), "n": [1, 2.5]})
    device = DeviceState(
        last_seq=7,
        max_ts=1_000,
        forced_wm=-5,
        last_event=event,
        trie=TrieState({3: (5, 900), 8: (6, 950)}, {0: 4}, 61_000),
        buffer=deque([event._replace(seq=6), event]),
        tasks={
            "t": {
                "open": {("", 0): [2, {"item": None}], ("k", 60_000): [1, {}]},
                "heap": [(60_000, 0, ""), (120_000, 60_000, "k")],
                "sessions": {"": [[900, 1_000, [event]]]},
                "counts": {"click": [0, 1, [0, [0.0, 0]]]},
                "visits": [[6, 900, [math.inf, -math.inf, 2**80, -(2**70), b"\x00"]]],
            }
        },
    )
    blob = state_codec.encode_device(device, "fp")
    assert _typed(DeviceState(*state_codec.decode_device(blob, "fp", "test"))) == _typed(device)


def test_span_buffers_keep_their_trim_through_a_snapshot():
    app = EXAMPLE_APPS[2]  # search_to_cart: Span(max_events=500)
    engine = Engine(app)
    engine.process_many(_log(5))
    moved = _moved(engine, app, whole=False)
    for device_id in engine.devices():
        state = moved._devices[device_id]
        starts = [s for s, _ in state.trie.active.values()]
        assert not state.buffer if not starts else state.buffer[0].seq >= min(starts)


# -- refusals -----------------------------------------------------------------------------------


def _blob(app: App = EXAMPLE_APPS[0]) -> tuple[Engine, bytes]:
    """An engine that ran a log, and the state of its first device."""
    engine = Engine(app)
    engine.process_many(_log(2))
    return engine, engine.snapshot_device(engine.devices()[0])


EVERYTHING_BLOB = _blob(APPS[-1])[1]


def _refused(blob: bytes, where: str = "changelog walle-x-state[2]@1234") -> str:
    """The message of restoring ``blob``; asserts it is a StateError naming ``where``."""
    engine = Engine(EXAMPLE_APPS[0])
    with pytest.raises(StateError) as caught:
        engine.restore_device("d1", blob, where=where)
    message = str(caught.value)
    assert "state of device 'd1'" in message and where in message
    return message


@pytest.mark.parametrize("blob", [b"", b"\x00", b"\xc1", b"not a snapshot", b"\x95" + b"\xff" * 9])
def test_bytes_that_are_no_snapshot_are_refused(blob):
    assert "not a walle state snapshot" in _refused(blob)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_refused_with_a_state_error(blob):
    _refused(blob)


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_a_pickle_is_never_loaded(tmp_path, protocol):
    class Touch:
        """Unpickling this creates a file: the proof that a pickle would run code."""

        def __reduce__(self) -> tuple[Any, ...]:
            return open, (str(tmp_path / "ran"), "w")

    for blob in (pickle.dumps(Touch(), protocol=protocol), pickle.dumps(os.system, protocol)):
        _refused(blob)
        with pytest.raises(StateError):
            Engine.restore(EXAMPLE_APPS[0], blob)
    assert not (tmp_path / "ran").exists()
    pickle.loads(pickle.dumps(Touch(), protocol=protocol)).close()
    assert (tmp_path / "ran").exists()  # the payload was live


def test_a_pickle_from_before_the_msgpack_format_is_named():
    assert "is a pickle" in _refused(pickle.dumps({"version": 1, "device": None}, protocol=5))


def test_every_truncation_of_a_valid_blob_is_refused():
    _, blob = _blob()
    for size in range(len(blob)):
        _refused(blob[:size])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_an_altered_blob_restores_or_raises_a_state_error_never_anything_else(data):
    blob = EVERYTHING_BLOB
    at = data.draw(st.integers(0, len(blob) - 1))
    patch = data.draw(st.binary(min_size=1, max_size=4))
    altered = blob[:at] + patch + blob[at + data.draw(st.integers(0, 4)) :]
    with contextlib.suppress(StateError):
        Engine(APPS[-1]).restore_device("d1", altered)


def test_another_apps_state_is_refused_by_its_fingerprint():
    _, blob = _blob(EXAMPLE_APPS[1])
    message = _refused(blob)
    assert "its tasks changed; replay the log from the start" in message


def test_a_device_snapshot_is_no_engine_snapshot_and_the_other_way_round():
    engine, blob = _blob()
    with pytest.raises(StateError, match="engine snapshot is not a valid"):
        Engine.restore(EXAMPLE_APPS[0], blob)
    _refused(engine.snapshot())


def _edit(blob: bytes, change: Any) -> bytes:
    """``blob`` decoded as plain msgpack (extensions left opaque), changed, encoded again."""
    data = msgpack.unpackb(blob, strict_map_key=False)
    change(data)
    return msgpack.packb(data)


def _set(*path_and_value: Any) -> Any:
    *path, key, value = path_and_value

    def change(data: Any) -> None:
        for step in path:
            data = data[step]
        data[key] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set(0, "pickle"), "not a walle state snapshot"),
        (_set(1, 1), "unknown snapshot version 1"),
        (_set(1, 3), "unknown snapshot version 3"),
        (_set(2, "engine"), "the header is not"),
        (_set(4, 0, "7"), "last_seq, max_ts and forced_wm must be ints"),
        (_set(4, 1, 1.5), "last_seq, max_ts and forced_wm must be ints"),
        (_set(4, 3, [1, 2]), "last_event is not an event array"),
        (_set(4, 3, ["d", "1", 2, "click", "", {}]), "last_event has a field of the wrong type"),
        (_set(4, 4, [1, 2]), "trie state is not"),
        (_set(4, 4, {"1": [1, 2]}), "trie_active entry '1'"),
        (_set(4, 4, {1: [1, "2"]}), "trie_active entry 1"),
        (_set(4, 5, {0: None}), "trie_consumed is not a map of int to int"),
        (_set(4, 6, "inf"), "trie state is not"),
        (_set(4, 7, {}), "buffer is not [] nor an array"),
        (_set(4, 7, ["d1", [1], [2], ["click"], [""], [None]]), "buffer is not [device_id"),
        (_set(4, 7, ["d1", [1, 2], [2], ["click"], [""], [{}]]), "buffer is not [device_id"),
        (_set(4, 8, []), "tasks is a list, not a map"),
        (_set(4, 8, {"item_view": []}), "tasks entry 'item_view' is not task name: map"),
        (_set(4, 8, {"t": {"x": msgpack.ExtType(99, b"")}}), "unknown extension type code 99"),
        (_set(4, 8, {"t": {"x": msgpack.ExtType(1, b"\x01")}}), "a tuple holds a int"),
        (_set(4, 8, {"t": {"x": msgpack.ExtType(2, b"\x91\x01")}}), "an event is not an array"),
        (_set(4, 8, {"t": {"x": msgpack.ExtType(1, b"\x92\x01")}}), "not a walle state snapshot"),
        (lambda data: data.pop(), "the header is not"),
        (lambda data: data[4].pop(), "a device state is not an array of 9 fields"),
    ],
)
def test_a_blob_of_the_wrong_layout_is_refused_saying_what_is_wrong(change, message):
    _, blob = _blob()
    assert message in _refused(_edit(blob, change))


def test_the_restored_state_is_refused_before_it_replaces_the_old_one():
    engine, blob = _blob()
    device_id = engine.devices()[0]
    before = _typed(engine._devices[device_id])
    with pytest.raises(StateError):
        engine.restore_device(device_id, blob[:-1])
    assert _typed(engine._devices[device_id]) == before


def test_state_of_a_type_outside_the_closed_set_is_refused_at_snapshot_naming_the_task():
    app = App("sets")
    app.stream("bad").window(Tumbling(10)).aggregate(seen=collect(lambda e: {e.page}))
    engine = Engine(app)
    engine.process_many(literal_events((1, "click", "a")))
    with pytest.raises(StateError, match=r"builtins\.set \(in the state of task 'bad'\)"):
        engine.snapshot_device("d1")
    with pytest.raises(StateError, match="cannot snapshot the engine"):
        engine.snapshot()

"""Snapshot/restore at any point, per-device state moves and device interleaving change
nothing; window assignment agrees with brute force."""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from walle.streams import Engine, Hopping, Tumbling, load_app
from walle.streams.generator import generate_events
from walle.testing import run_app

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
APPS = [
    load_app(EXAMPLES / f"{name}.py")
    for name in ("item_page_view", "clicks_per_category", "search_to_cart")
]


def _log(seed: int):
    return generate_events(
        devices=4, sessions=2, seed=seed, out_of_order_rate=0.1, late_rate=0.02, duplicate_rate=0.02
    )


def _key(sink):
    return [o.to_json() for o in sink.outputs], [(x.task, x.event) for x in sink.late]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.data())
def test_snapshot_restore_at_a_random_point_gives_the_same_outputs(seed, data):
    events = _log(seed)
    cut = data.draw(st.integers(0, len(events)))
    for app in APPS:
        whole = [o.to_json() for o in Engine(app).process_many(events).outputs]
        first = Engine(app)
        outputs = [o.to_json() for o in first.process_many(events[:cut]).outputs]
        second = Engine.restore(app, first.snapshot())
        outputs += [o.to_json() for o in second.process_many(events[cut:]).outputs]
        assert outputs == whole


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000))
def test_per_device_state_moved_between_engines_gives_the_same_outputs(seed):
    """As cloud workers do: load a device's state, process a batch, store it back."""
    events = _log(seed)
    rng = random.Random(seed)
    for app in APPS:
        whole = sorted(o.to_json() for o in Engine(app).process_many(events).outputs)
        store: dict[str, bytes] = {}
        outputs = []
        for start in range(0, len(events), 37):
            engine = Engine(app)  # a fresh worker each batch
            for event in events[start : start + 37]:
                if event.device_id in store and event.device_id not in engine.devices():
                    engine.restore_device(event.device_id, store[event.device_id])
                outputs += [o.to_json() for o in engine.process(event).outputs]
            for device in engine.devices():
                store[device] = engine.snapshot_device(device)
            if rng.random() < 0.3 and start:  # a redelivered batch changes nothing
                engine = Engine(app)
                for device, blob in store.items():
                    engine.restore_device(device, blob)
                replay = engine.process_many(events[start : start + 37])
                assert replay.outputs == []
        assert sorted(outputs) == whole


def test_device_interleaving_does_not_change_per_device_outputs():
    events = _log(3)
    by_device = sorted(events, key=lambda e: e.device_id)  # same per-device order
    for app in APPS:
        assert sorted(_key(run_app(app, events))[0]) == sorted(_key(run_app(app, by_device))[0])


def test_replaying_the_whole_log_twice_emits_nothing_new():
    events = _log(5)
    for app in APPS:
        engine = Engine(app)
        first = engine.process_many(events)
        again = engine.process_many(events)
        assert first.outputs and again.outputs == []
        assert len(again.duplicates) == len(events)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 50), st.integers(1, 50), st.integers(0, 500))
def test_window_assignment_matches_brute_force(size, hop, ts):
    tumbling = Tumbling(size)
    assert tumbling.starts(ts) == [
        s for s in range(0, ts + 1) if s % size == 0 and s <= ts < s + size
    ]
    if hop <= size:
        hopping = Hopping(size, hop)
        assert hopping.starts(ts) == [  # aligned to the epoch: may start before 0
            s for s in range(-size, ts + 1) if s % hop == 0 and s <= ts < s + size
        ]


def test_span_buffers_are_trimmed_to_the_oldest_active_match_in_snapshots():
    """Snapshots keep only the buffered events a future span window can still read."""
    app = APPS[2]  # search_to_cart: Span(max_events=500)
    engine = Engine(app)
    engine.process_many(_log(5))
    for device_id in engine.devices():
        engine.snapshot_device(device_id)
        state = engine._devices[device_id]
        starts = [seq for seq, _ in state.trie.active.values()]
        if not starts:
            assert not state.buffer
        else:
            assert state.buffer[0].seq >= min(starts)

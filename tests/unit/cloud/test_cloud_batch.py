"""BatchProcessor: the cloud worker's per-batch logic, with a dict standing in for the table."""

from __future__ import annotations

import base64
import json
from collections import Counter

from walle.streams import App, Engine, Event, PageWindow, Tumbling, count, distinct
from walle.streams.cloud.batch import BatchProcessor, InputMessage
from walle.streams.generator import generate_events


def _app() -> App:
    app = App("batch_test", out_of_orderness_ms=1_000)
    app.stream("visits").window(PageWindow("item")).aggregate(events=count())
    app.stream("minutes").window(Tumbling(60_000)).aggregate(pages=distinct("page"))
    return app


def _messages(events: list[Event], start_offset: int = 0) -> list[InputMessage]:
    return [
        InputMessage("in", 0, start_offset + index, e.device_id.encode(), e.to_json().encode())
        for index, e in enumerate(events)
    ]


def _events() -> list[Event]:
    return generate_events(devices=4, sessions=4, seed=3)


def _run(processor: BatchProcessor, messages: list[InputMessage], size: int) -> list[str]:
    outputs = []
    for start in range(0, len(messages), size):
        result = processor.process(messages[start : start + size])
        outputs.extend(output.to_json() for output in result.emissions.outputs)
        processor.table.update(result.states)
        processor.stored(result.states)
    return outputs


def test_batches_give_the_engines_outputs() -> None:
    events = _events()
    expected = [o.to_json() for o in Engine(_app()).process_many(events).outputs]
    got = _run(BatchProcessor(Engine(_app()), {}), _messages(events), 37)
    assert got == expected and got


def test_new_worker_resumes_from_the_table_and_skips_replays() -> None:
    events = _events()
    messages = _messages(events)
    expected = Counter(o.to_json() for o in Engine(_app()).process_many(events).outputs)
    table: dict[bytes, bytes] = {}
    first = _run(BatchProcessor(Engine(_app()), table), messages[:200], 50)
    # "rebalance": another worker takes over with the stored state and gets a replay of
    # the last 80 already-applied messages before the new ones
    second = BatchProcessor(Engine(_app()), table)
    replay = second.process(messages[120:200])
    assert replay.emissions.outputs == [] and len(replay.emissions.duplicates) == 80
    rest = _run(second, messages[200:], 50)
    assert Counter(first + rest) == expected


def test_bad_messages_become_dead_letters_and_good_ones_go_on() -> None:
    events = _events()[:20]
    messages = _messages(events)
    bad = [
        InputMessage("in", 2, 100, b"dev-x", b"{not json"),
        InputMessage("in", 2, 101, b"dev-x", json.dumps({"device_id": "dev-x"}).encode()),
        InputMessage("in", 2, 102, b"someone-else", events[0].to_json().encode()),
        InputMessage("in", 2, 103, b"dev-x", None),
    ]
    processor = BatchProcessor(Engine(_app()), {})
    result = processor.process(messages[:10] + bad + messages[10:])
    records = [json.loads(value) for value in result.bad]
    assert [(r["partition"], r["offset"]) for r in records] == [(2, 100), (2, 101), (2, 102),
                                                                (2, 103)]  # fmt: skip
    assert "not valid JSON" in records[0]["reason"] and "in[2]@100" in records[0]["reason"]
    assert "seq" in records[1]["reason"]
    assert "not the event's device_id" in records[2]["reason"]
    assert "empty message" in records[3]["reason"]
    assert base64.b64decode(records[0]["raw_base64"]) == b"{not json"
    clean = BatchProcessor(Engine(_app()), {}).process(messages)
    assert result.emissions.outputs == clean.emissions.outputs
    assert result.states.keys() == clean.states.keys()

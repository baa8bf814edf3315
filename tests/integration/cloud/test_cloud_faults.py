"""Cloud faults: SIGKILLed workers recover state from the changelog; bad messages are
dead-lettered with reason, partition and offset while good ones go on."""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from walle.streams import Engine, load_app
from walle.streams.generator import generate_events
from walle.testing_cloud import CloudRun, dedupe_outputs

APP_PATH = Path(__file__).resolve().parents[3] / "examples" / "item_page_view.py"


def _end_offsets(run: CloudRun, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=run.bootstrap)
    try:
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in range(run.partitions)])
        return {tp.partition: end for tp, end in ends.items()}
    finally:
        consumer.close()


def _expected(app, events) -> Counter[str]:
    return Counter(output.to_json() for output in Engine(app).process_many(events).outputs)


def test_killed_worker_recovers_state_from_the_changelog(broker, tmp_path) -> None:
    app = load_app(APP_PATH)
    events = generate_events(devices=16, sessions=3, seed=5, out_of_order_rate=0.05)
    thirds = [events[: len(events) // 3], events[len(events) // 3 : 2 * len(events) // 3],
              events[2 * len(events) // 3 :]]  # fmt: skip
    with CloudRun(app, broker, app_path=APP_PATH, datadir=tmp_path / "workers") as run:
        first = run.start_worker()
        run.start_worker()
        run.produce(thirds[0])
        run.wait_processed()
        # SIGKILL one of the two workers while the next third is arriving, then start a new
        # one: the survivor and the newcomer take over its partitions and resume each device
        # from the changelog-backed table at the committed offsets.
        run.produce(thirds[1][: len(thirds[1]) // 2])
        run.kill_worker(first)
        run.produce(thirds[1][len(thirds[1]) // 2 :])
        run.start_worker()
        run.produce(thirds[2])
        run.wait_processed(timeout_s=120)
        outputs = run.outputs()
        changelog = run.read_topic(run.settings.changelog_topic(app.name))
        reported_ends = _end_offsets(run, run.settings.changelog_topic(app.name))
    assert changelog, "device state must have gone through the changelog"
    # recovery reads up to the reported end: it must be the true end (see runtime's markers)
    true_ends = {m.partition: m.offset + 1 for m in changelog}
    assert {p: end for p, end in reported_ends.items() if end} == true_ends
    assert Counter(output.to_json() for output in dedupe_outputs(outputs)) == _expected(app, events)
    assert len({output.key for output in dedupe_outputs(outputs)}) == len(
        dedupe_outputs(outputs)
    ), "a key must never carry two different values"


def test_bad_messages_go_to_the_dead_letter_topic(broker) -> None:
    app = load_app(APP_PATH)
    events = generate_events(devices=6, sessions=2, seed=9)
    bad = [
        (b"dev-00001", b"{not json"),
        (b"dev-00002", json.dumps({"device_id": "dev-00002", "seq": "x"}).encode()),
        (b"other", events[0].to_json().encode()),
        (b"dev-00003", None),
    ]
    middle = len(events) // 2
    with CloudRun(app, broker, partitions=2) as run:
        run.start_worker()
        run.produce(events[:middle])
        run.produce_raw(bad)
        run.produce(events[middle:])
        run.wait_processed()
        outputs = run.outputs()
        dead = [json.loads(message.value) for message in run.dead_letters()]
        inputs = run.read_topic(run.settings.input_topic, 2)
    assert Counter(o.to_json() for o in dedupe_outputs(outputs)) == _expected(app, events)
    where = {(m.partition, m.offset): m.value for m in inputs}
    assert sorted(base64.b64decode(d["raw_base64"]) for d in dead) == sorted(
        value or b"" for _, value in bad
    )
    for record in dead:
        assert (where[(record["partition"], record["offset"])] or b"") == base64.b64decode(
            record["raw_base64"]
        )
        assert record["topic"] == run.settings.input_topic and record["reason"]
    reasons = " ".join(d["reason"] for d in dead)
    assert "not valid JSON" in reasons and "'seq'" in reasons
    assert "not the event's device_id" in reasons and "empty message" in reasons


def test_a_worker_whose_app_changed_stops_with_the_reason(broker, tmp_path) -> None:
    """State in the changelog written by other tasks: the worker exits 1 naming why (it
    must not restart its agent in place and sit there with offsets stuck)."""
    examples = APP_PATH.parent
    first_app = load_app(APP_PATH)
    events = generate_events(devices=4, sessions=2, seed=1)
    half = len(events) // 2
    with CloudRun(first_app, broker, app_path=APP_PATH, datadir=tmp_path / "a") as first:
        first.produce(events[:half])
        worker = first.start_worker()
        first.wait_processed()
        first.kill_worker(worker)
        changed_path = examples / "clicks_per_category.py"
        changed = CloudRun(load_app(changed_path), broker, app_path=changed_path,
                           datadir=tmp_path / "b")  # fmt: skip
        changed.settings = first.settings  # same group, topics and changelog
        with changed:
            changed.produce(events[half:])
            stopped = changed.start_worker()
            assert stopped.wait(timeout=60) == 1
            log = changed.logs[-1].read_text()
            assert "StateError" in log and "its tasks changed" in log

"""`walle produce`: a JSONL log into a topic keyed by device id, bad lines dead-lettered."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from click.testing import CliRunner
from kafka import KafkaConsumer

from walle.cli import cli
from walle.streams.events import Event, decode_event


def _write_log(path: Path) -> list[Event]:
    events = [
        Event(f"dev-{index % 5}", index // 5, 1000 + index, "click", "item", {"n": index})
        for index in range(60)
    ]
    lines = [event.to_json() for event in events]
    lines.insert(7, "{not json")
    lines.insert(20, json.dumps({"device_id": "d", "seq": -1, "ts": 1, "event": "click"}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return events


def _consume(bootstrap: str, topic: str, expected: int):
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    try:
        messages = []
        for message in consumer:
            messages.append(message)
            if len(messages) == expected:
                break
        return messages
    finally:
        consumer.close()


def test_produce_keys_by_device_and_dead_letters_bad_lines(tmp_path, broker, topic_name) -> None:
    log = tmp_path / "events.jsonl"
    events = _write_log(log)
    topic = topic_name("produce")
    result = CliRunner().invoke(
        cli,
        [
            "cloud",
            "produce",
            str(log),
            "--broker",
            broker.url,
            "--topic",
            topic,
            "--partitions",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "sent 60 events" in result.output and "skipped 2 bad lines" in result.output
    assert f"{log}:8" in result.output and f"{log}:21" in result.output
    dead = [json.loads(line) for line in (tmp_path / "events.jsonl.dead.jsonl").open()]
    assert [record["where"] for record in dead] == [f"{log}:8", f"{log}:21"]
    assert "seq" in dead[1]["reason"]

    devices = sorted({event.device_id for event in events})
    everything = _consume(broker.bootstrap, topic, len(events) + len(devices))
    messages = [m for m in everything if m.value]
    markers = [m for m in everything if not m.value]
    # the log is complete (--finish, the default): each device's events end with a marker
    assert sorted(m.key.decode() for m in markers) == devices
    for marker in markers:
        assert ("walle-control", b"end-of-log") in marker.headers
        own = [m for m in messages if m.key == marker.key]
        assert {m.partition for m in own} == {marker.partition}
        assert max(m.offset for m in own) < marker.offset
    partitions_of_device: dict[str, set[int]] = defaultdict(set)
    order_of_device: dict[str, list[int]] = defaultdict(list)
    for message in messages:
        event = decode_event(message.value)
        assert message.key == event.device_id.encode()
        partitions_of_device[event.device_id].add(message.partition)
        order_of_device[event.device_id].append(event.seq)
    assert sorted(decode_event(m.value) for m in messages) == sorted(events)
    assert all(len(partitions) == 1 for partitions in partitions_of_device.values())
    assert all(seqs == sorted(seqs) for seqs in order_of_device.values())


def test_produce_refuses_other_broker_schemes(tmp_path) -> None:
    log = tmp_path / "events.jsonl"
    _write_log(log)
    result = CliRunner().invoke(cli, ["cloud", "produce", str(log), "--broker", "http://x:1"])
    assert result.exit_code != 0
    assert "kafka://" in str(result.exception)

"""Load a recorded event log into a Kafka topic, keyed by device id.

Keying by ``device_id`` puts all of a device's events in one partition, in log order, which
is what the cloud runtime needs to feed the engine per device. Bad lines never stop the
load: each is reported with file:line and written to a dead-letter JSONL file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from walle.errors import BrokerError, StorageError
from walle.kafka import create_topics, sync_producer
from walle.streams.cloud.batch import END_OF_LOG_HEADER
from walle.streams.events import BadRecord, read_jsonl

_SEND_TIMEOUT_S = 30.0


class ProduceSummary(NamedTuple):
    """What a load did: events sent, bad lines skipped (with reasons), where they went."""

    sent: int
    bad: list[BadRecord]
    dead_letter_path: Path | None


def _write_dead_letters(path: Path, bad: list[BadRecord]) -> None:
    with path.open("a", encoding="utf-8") as stream:
        for record in bad:
            stream.write(json.dumps(record._asdict(), sort_keys=True) + "\n")


def produce_log(
    log_path: str | Path,
    bootstrap: list[str] | str,
    topic: str,
    *,
    partitions: int = 4,
    dead_letter_path: Path | None = None,
    finish: bool = True,
) -> ProduceSummary:
    """Send every valid event of the JSONL log to ``topic`` (created with ``partitions``).

    Bad lines are skipped and written, with file:line and reason, to ``dead_letter_path``
    (default ``<log>.dead.jsonl``); the summary counts them. With ``finish`` (the log is
    complete) each device's events are followed by an end-of-log marker, on which the
    worker closes that device's open windows, as ``walle replay --finish`` does.
    """
    from kafka.errors import KafkaError

    log_path = Path(log_path)
    if not log_path.is_file():
        raise StorageError(f"event log {log_path} does not exist")
    create_topics(bootstrap, {topic: partitions})
    bad: list[BadRecord] = []
    producer = sync_producer(bootstrap)
    sent = 0
    devices: dict[bytes, None] = {}
    try:
        for event in read_jsonl(log_path, errors=bad):
            key = event.device_id.encode()
            producer.send(topic, key=key, value=event.to_json().encode())
            devices[key] = None
            sent += 1
        for key in devices if finish else ():
            producer.send(topic, key=key, value=b"", headers=[END_OF_LOG_HEADER])
        producer.flush(timeout=_SEND_TIMEOUT_S)
    except KafkaError as exc:
        raise BrokerError(f"sending {log_path} to topic {topic!r} failed: {exc}") from exc
    finally:
        producer.close(timeout=5)
    if not bad:
        return ProduceSummary(sent, [], None)
    target = dead_letter_path or log_path.with_name(log_path.name + ".dead.jsonl")
    _write_dead_letters(target, bad)
    return ProduceSummary(sent, bad, target)

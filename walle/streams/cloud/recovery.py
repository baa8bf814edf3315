"""Recovering per-device engine state from the changelog when partitions are assigned.

Each changelog partition holds the state records of the devices whose events live in the
input partition of the same number: key = device id, value = the device's engine state
(with its last applied sequence number). Recovery reads a partition from its start and
keeps the last record per device.

Where does a partition end? The embedded broker reports end offsets too low (the first
offset of the last record batch, plus one), so recovery does not trust them: it first
writes a *fence*, a one-record batch with a key no device can have (not UTF-8), and reads
until it meets the fence. Everything written before the assignment is then read, on any
broker. Fences are compacted away like any other superseded record.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from walle.errors import BrokerError
from walle.kafka import consumer as make_consumer

FENCE_KEY = b"\xffwalle-fence"  # invalid UTF-8: never a device id
_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class StateRecord:
    """The newest state record of one device, and where it was read."""

    partition: int
    offset: int
    blob: bytes


def write_fences(producer: Any, topic: str, partitions: Iterable[int]) -> dict[int, int]:
    """Append a fence to each partition; returns partition -> the fence's offset."""
    fences: dict[int, int] = {}
    errors: list[str] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            errors.append(f"{topic}[{message.partition()}]: {error}")
        else:
            fences[message.partition()] = message.offset()

    wanted = sorted(set(partitions))
    for partition in wanted:
        producer.produce(topic, b"", FENCE_KEY, partition, on_delivery=delivered)
    producer.flush(_TIMEOUT_S)
    if errors or len(fences) != len(wanted):
        raise BrokerError(f"cannot write recovery fences to {topic}: {errors or 'no answer'}")
    return fences


class ChangelogReader:
    """Reads state records of changelog partitions up to their fences.

    One long-lived consumer (no group membership: it assigns partitions itself) whose
    metadata is fetched up front: a fresh consumer waits ~0.5 s for a partition leader
    before its first fetch, at every assignment.
    """

    def __init__(self, bootstrap: str | list[str], topic: str, **consumer_settings: Any):
        self.topic = topic
        self._consumer = make_consumer(bootstrap, "walle-recovery", **consumer_settings)
        try:
            self._consumer.list_topics(topic, timeout=_TIMEOUT_S)
        except Exception as exc:  # confluent_kafka.KafkaException
            self._consumer.close()
            raise BrokerError(f"cannot read changelog {topic} from {bootstrap}: {exc}") from None

    def read(self, fences: dict[int, int]) -> dict[bytes, StateRecord]:
        """The newest state record per device key in the fenced partitions."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        states: dict[bytes, StateRecord] = {}
        if not fences:
            return states
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in fences])
        try:
            _read_until_fences(self._consumer, self.topic, dict(fences), states)
        finally:
            self._consumer.unassign()
        return states

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()


def _read_until_fences(
    reader: Any, topic: str, remaining: dict[int, int], states: dict[bytes, StateRecord]
) -> None:
    deadline = time.monotonic() + _TIMEOUT_S
    while remaining:
        if time.monotonic() > deadline:
            raise BrokerError(f"recovery of {topic} partitions {sorted(remaining)} timed out")
        for message in reader.consume(num_messages=10_000, timeout=0.02):
            if message.error() is not None:
                raise BrokerError(f"reading changelog {topic}: {message.error()}")
            partition, offset = message.partition(), message.offset()
            fence = remaining.get(partition)
            if fence is None:
                continue
            if offset >= fence:
                del remaining[partition]
                continue
            key = message.key()
            if key is None or key == FENCE_KEY:
                continue
            value = message.value()
            if value is None:  # a tombstone: the device's state was deleted
                states.pop(key, None)
            else:
                states[key] = StateRecord(partition, offset, value)

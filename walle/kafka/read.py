"""Reading a topic from its start to its end, on any broker.

The embedded broker (Tansu 0.6) reports a partition's end offset as the first offset of its
last record batch plus one: after a batch of many records the reported end is too low, so
"read until the reported end" stops early. ``read_to_end`` reads past the reported end (and
past any end the caller knows, e.g. from produce acknowledgements) until the topic stays
quiet for a moment. A reader that owns the topic can do better with a fence (see
``walle.streams.cloud.recovery``): write a one-record batch and read until it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from walle.errors import BrokerError
from walle.kafka.clients import consumer as make_consumer

# Past the reported end only the rest of the last record batch can be missing, and it
# arrives in the same fetch as the batch's first record: one quiet poll is enough.
_QUIET_S = 0.15
_POLL_S = 0.05


class Record(NamedTuple):
    """One record of a topic: where it is, its key and its value."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def partition_count(bootstrap: str | Iterable[str], topic: str, timeout_s: float = 10.0) -> int:
    """How many partitions ``topic`` has; BrokerError if it does not exist."""
    client = make_consumer(bootstrap, "walle-metadata")
    try:
        meta = client.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise BrokerError(f"topic {topic!r} does not exist on {bootstrap}")
        return len(meta.partitions)
    finally:
        client.close()


def read_to_end(
    bootstrap: str | Iterable[str],
    topic: str,
    *,
    partitions: int | None = None,
    known_ends: Mapping[int, int] | None = None,
    timeout_s: float = 60.0,
) -> list[Record]:
    """Every record of ``topic`` from the beginning to its end, in (partition, offset) order.

    ``known_ends`` maps a partition to an end offset the caller knows to exist (records
    it produced); reading goes on until each partition reached both that and the reported
    end, then until nothing arrives for a moment.
    """
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    count = partitions if partitions is not None else partition_count(bootstrap, topic)
    client = make_consumer(bootstrap, "walle-read-to-end", **{"enable.partition.eof": False})
    try:
        parts = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(count)]
        client.assign(parts)
        ends = {
            p: max(client.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1],
                   (known_ends or {}).get(p, 0))
            for p in range(count)
        }  # fmt: skip
        return _read(client, topic, ends, time.monotonic() + timeout_s)
    finally:
        client.close()


def _behind(client: Any, topic: str, next_offset: dict[int, int], ends: dict[int, int]) -> bool:
    """True while a partition has not reached its end; the fetch position counts, since
    transaction markers take offsets that no record is delivered for."""
    from confluent_kafka import TopicPartition

    lagging = [p for p, end in ends.items() if next_offset[p] < end]
    if not lagging:
        return False
    positions = client.position([TopicPartition(topic, p) for p in lagging])
    return any(tp.offset < ends[tp.partition] for tp in positions)


def _read(client: object, topic: str, ends: dict[int, int], deadline: float) -> list[Record]:
    records: list[Record] = []
    next_offset = dict.fromkeys(ends, 0)
    quiet_since = time.monotonic()
    while True:
        now = time.monotonic()
        if now > deadline:
            raise BrokerError(f"reading topic {topic!r} to its end took too long")
        batch = client.consume(num_messages=10_000, timeout=_POLL_S)  # type: ignore[attr-defined]
        for message in batch:
            if message.error() is not None:
                raise BrokerError(f"reading topic {topic!r}: {message.error()}")
            partition, offset = message.partition(), message.offset()
            records.append(Record(topic, partition, offset, message.key(), message.value()))
            next_offset[partition] = offset + 1
        if batch:
            quiet_since = now
            continue
        behind = _behind(client, topic, next_offset, ends)
        if not behind and now - quiet_since >= _QUIET_S:
            records.sort(key=lambda r: (r.partition, r.offset))
            return records

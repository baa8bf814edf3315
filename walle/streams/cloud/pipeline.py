"""Finishing processed batches in order, while the engine runs the next ones.

A batch is finished in three steps, each waiting on the broker: its outputs (and side
outputs) are acknowledged, then its devices' states are in the changelog, then its input
offsets are committed. That order is what makes a crash harmless: a state never reaches
the changelog before the outputs it implies were acknowledged (else a restart would skip
their events as duplicates and lose the outputs), and offsets are never committed before
the state they imply. Waiting for those round trips between batches would leave the
worker idle, so batches queue here and move on as acknowledgements arrive (librdkafka
delivers them during ``producer.poll``); only the oldest batch moves, so batches finish in
the order they were taken.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from walle.errors import BrokerError
from walle.logging import get_logger

_log = get_logger("cloud")
_OUTPUTS, _STATES = 0, 1


class Batch:
    """One processed batch: sends still unacknowledged, its states and its offsets."""

    __slots__ = ("error", "offsets", "stage", "states", "waiting")

    def __init__(self, offsets: dict[int, int]) -> None:
        self.offsets = offsets  # input partition -> next offset to read
        self.states: list[tuple[int, bytes, bytes]] = []  # (partition, device key, blob)
        self.waiting = 0
        self.stage = _OUTPUTS
        self.error: str | None = None

    def sent(self) -> None:
        """Count one more send whose acknowledgement this batch waits for."""
        self.waiting += 1

    def acked(self, error: Any, message: Any) -> None:
        """librdkafka's delivery report for one of this batch's sends."""
        if error is not None:
            where = f"{message.topic()}[{message.partition()}]"
            self.error = f"the broker did not acknowledge a record for {where}: {error}"
        self.waiting -= 1


class CommitPipeline:
    """Moves submitted batches through outputs -> states -> offsets, oldest first."""

    def __init__(self, producer: Any, consumer: Any, input_topic: str, changelog: str) -> None:
        self._producer = producer
        self._consumer = consumer
        self._input_topic = input_topic
        self._changelog = changelog
        self._batches: deque[Batch] = deque()

    def __len__(self) -> int:
        return len(self._batches)

    def submit(self, batch: Batch) -> None:
        """Queue a batch whose outputs were sent (with ``batch.acked`` as callback)."""
        self._batches.append(batch)

    def advance(self, *, sync_commit: bool = False) -> None:
        """Move the oldest batches on as far as their acknowledgements allow.

        Raises BrokerError when a send failed: the batch's offsets are then never
        committed, so its events are read again by whoever owns the partition next.
        """
        batches = self._batches
        while batches:
            head = batches[0]
            if head.error is not None:
                raise BrokerError(head.error)
            if head.waiting:
                return
            if head.stage == _OUTPUTS:
                head.stage = _STATES
                self._write_states(head)
                continue
            self._commit(head.offsets, sync_commit)
            batches.popleft()

    def drain(self, timeout_s: float = 60.0) -> None:
        """Finish every queued batch, committing the last offsets synchronously."""
        import time

        deadline = time.monotonic() + timeout_s
        while self._batches:
            if time.monotonic() > deadline:
                raise BrokerError(f"{len(self._batches)} batches not acknowledged in {timeout_s}s")
            self._producer.poll(0.05)
            self.advance(sync_commit=True)

    def drop(self) -> None:
        """Forget every queued batch (partitions lost: their new owner re-reads them)."""
        self._batches.clear()

    def _write_states(self, batch: Batch) -> None:
        for partition, key, blob in batch.states:
            send(self._producer, batch, self._changelog, key, blob, partition)

    def _commit(self, offsets: dict[int, int], sync: bool) -> None:
        if not offsets:
            return
        from confluent_kafka import TopicPartition

        topic = self._input_topic
        marks = [TopicPartition(topic, p, o) for p, o in sorted(offsets.items())]
        try:
            self._consumer.commit(offsets=marks, asynchronous=not sync)
        except Exception as exc:  # a rebalance in between: the next owner re-reads
            _log.warning("offset commit failed", error=str(exc), offsets=dict(offsets))


def send(
    producer: Any, batch: Batch, topic: str, key: bytes | None, value: bytes, partition: int = -1
) -> None:
    """Produce one record for ``batch`` (partition -1: by key), waiting for queue room."""
    while True:
        try:
            if partition < 0:
                producer.produce(topic, value, key, on_delivery=batch.acked)
            else:
                producer.produce(topic, value, key, partition, on_delivery=batch.acked)
            break
        except BufferError:  # librdkafka's local queue is full: let it drain
            producer.poll(0.05)
    batch.sent()

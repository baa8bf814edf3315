"""CommitPipeline: outputs acknowledged, then states written, then offsets committed, in
batch order; an in-memory producer and consumer stand in for librdkafka's."""

from __future__ import annotations

from typing import Any

import pytest

from walle.errors import BrokerError
from walle.streams.cloud.pipeline import Batch, CommitPipeline, send


class _Message:
    def __init__(self, topic: str, partition: int) -> None:
        self._topic, self._partition = topic, partition

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition


class _Producer:
    """Records produce calls; ``deliver()`` acknowledges the oldest pending ones."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, int, Any]] = []
        self.log: list[tuple[str, bytes | None]] = []

    def produce(self, topic: str, value: bytes, key: bytes | None = None, partition: int = -1,
                on_delivery: Any = None) -> None:  # fmt: skip
        self.pending.append((topic, partition, on_delivery))
        self.log.append((topic, key))

    def poll(self, timeout: float = 0) -> int:
        return self.deliver()

    def deliver(self, count: int | None = None, error: Any = None) -> int:
        ready = self.pending[: len(self.pending) if count is None else count]
        del self.pending[: len(ready)]
        for topic, partition, callback in ready:
            callback(error, _Message(topic, partition))
        return len(ready)


class _Consumer:
    def __init__(self) -> None:
        self.commits: list[list[tuple[int, int]]] = []

    def commit(self, offsets: list[Any], asynchronous: bool = True) -> None:
        self.commits.append([(tp.partition, tp.offset) for tp in offsets])


def _batch(producer: _Producer, outputs: int, offsets: dict[int, int], device: bytes) -> Batch:
    batch = Batch(offsets)
    for _ in range(outputs):
        send(producer, batch, "out", b"k", b"v")
    batch.states = [(0, device, b"state")]
    return batch


def test_states_wait_for_outputs_and_offsets_wait_for_states() -> None:
    producer, consumer = _Producer(), _Consumer()
    pipeline = CommitPipeline(producer, consumer, "in", "changelog")
    pipeline.submit(_batch(producer, 2, {0: 10}, b"d1"))
    pipeline.advance()
    assert [t for t, _ in producer.log] == ["out", "out"] and not consumer.commits
    producer.deliver(1)
    pipeline.advance()
    assert "changelog" not in [t for t, _ in producer.log], "one output still unacknowledged"
    producer.deliver()
    pipeline.advance()
    assert producer.log[-1] == ("changelog", b"d1") and not consumer.commits
    producer.deliver()
    pipeline.advance()
    assert consumer.commits == [[(0, 10)]] and len(pipeline) == 0


def test_batches_finish_in_the_order_they_were_taken() -> None:
    producer, consumer = _Producer(), _Consumer()
    pipeline = CommitPipeline(producer, consumer, "in", "changelog")
    first = _batch(producer, 1, {0: 5}, b"a")
    second = _batch(producer, 1, {0: 9, 1: 3}, b"b")
    pipeline.submit(first)
    pipeline.submit(second)
    # the second batch's outputs are acknowledged first: nothing of it may move yet
    producer.pending.reverse()
    producer.deliver(1)
    pipeline.advance()
    assert "changelog" not in [t for t, _ in producer.log]
    pipeline.drain()
    assert consumer.commits == [[(0, 5)], [(0, 9), (1, 3)]]
    states = [key for topic, key in producer.log if topic == "changelog"]
    assert states == [b"a", b"b"]


def test_a_failed_send_stops_the_pipeline_before_its_offsets() -> None:
    producer, consumer = _Producer(), _Consumer()
    pipeline = CommitPipeline(producer, consumer, "in", "changelog")
    pipeline.submit(_batch(producer, 1, {2: 7}, b"d"))
    producer.deliver(error="broker said no")
    with pytest.raises(BrokerError, match=r"out\[-1\].*broker said no"):
        pipeline.advance()
    assert not consumer.commits


def test_dropped_batches_are_never_committed() -> None:
    producer, consumer = _Producer(), _Consumer()
    pipeline = CommitPipeline(producer, consumer, "in", "changelog")
    pipeline.submit(_batch(producer, 1, {0: 4}, b"d"))
    pipeline.drop()
    producer.deliver()
    pipeline.advance()
    assert not consumer.commits and len(pipeline) == 0

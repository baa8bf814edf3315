"""A supervised Kafka reader thread: read topics from the beginning, then follow them.

The gateway (releases topic) and the rollout controller (releases and status topics) both
need the same thing: every record from offset 0, a signal once the reader has caught up
with the end as it was at start, then each new record as it comes, for as long as the
process runs. ``TopicFollower`` does that on a daemon thread (kafka-python, manual
partition assignment, no consumer group) and keeps doing it when the broker goes away:

- any error (broker unreachable, topic missing, a read that times out) ends the current
  pass; the thread logs it and starts a new pass after a backoff (doubling, capped);
- kafka-python keeps retrying quietly while a broker is down, so every ``check_s`` the
  follower asks for the end offsets (which fails after ``request_timeout_ms`` when the
  broker is gone) and also restarts when an end offset went back (the broker lost data,
  e.g. an embedded broker restarted with memory storage);
- every ``reread_s`` it re-reads from the beginning anyway (cheap on compacted topics),
  which catches what no check can see, such as a restarted broker that grew back to the
  very offset the reader was at.

Each pass begins with ``handler.on_start()`` and replays from offset 0, so a handler
rebuilds its view from scratch and compares it with what it had (the gateway pushes only
what changed).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from walle.deploy.errors import ChannelError
from walle.logging import get_logger

_log = get_logger("deploy.follower")


class FollowerSettings(BaseModel):
    """How often a follower checks the broker and how it backs off after a failure."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    poll_ms: int = Field(default=200, ge=1)
    check_s: float = Field(default=1.0, gt=0)
    reread_s: float = Field(default=60.0, gt=0)
    backoff_min_s: float = Field(default=0.2, gt=0)
    backoff_max_s: float = Field(default=5.0, gt=0)
    request_timeout_ms: int = Field(default=4000, ge=100)
    catch_up_timeout_s: float = Field(default=30.0, gt=0)


class FollowHandler(Protocol):
    """What a follower calls, always on its own thread."""

    def on_start(self) -> None:
        """A pass begins: records from offset 0 follow."""

    def on_record(self, topic: str, key: bytes, value: bytes, offset: int) -> None:
        """One record, in offset order per partition."""

    def on_caught_up(self) -> None:
        """The pass reached the end offsets the topics had when it began."""

    def on_idle(self) -> None:
        """Called after every poll once caught up (a place for periodic decisions)."""


class _Reread(Exception):
    """Internal: start a fresh pass on purpose (not a failure)."""


class TopicFollower:
    """Reads ``topics`` on a daemon thread and restarts the read after any failure.

    ``prepare()``, if given, runs at the start of every pass (e.g. to create missing
    topics); ``restarts`` counts passes that ended in a failure.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        handler: FollowHandler,
        *,
        settings: FollowerSettings | None = None,
        name: str = "follower",
        prepare: Callable[[], None] | None = None,
    ):
        self.bootstrap = bootstrap
        self.topics = tuple(topics)
        self.handler = handler
        self.settings = settings or FollowerSettings()
        self.name = name
        self.prepare = prepare
        self.restarts = 0
        self.passes = 0
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the reader thread."""
        self._thread = threading.Thread(target=self._supervise, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the thread to stop and wait for it (a poll or check in flight ends first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        """Whether the reader thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def _supervise(self) -> None:
        delay = self.settings.backoff_min_s
        while not self._stop.is_set():
            self.passes += 1
            try:
                self._one_pass()
                return
            except _Reread:
                continue
            except Exception as exc:  # any failure: log it, back off, read again
                self.restarts += 1
                if self.caught_up.is_set():  # the pass had worked: start the backoff afresh
                    delay = self.settings.backoff_min_s
                self.caught_up.clear()
                _log.warning("reader restarts", reader=self.name, error=repr(exc), after_s=delay)
            self._stop.wait(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.settings.backoff_max_s)

    def _consumer(self) -> Any:  # a kafka.KafkaConsumer (kafka-python ships no types)
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError

        try:
            return KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                allow_auto_create_topics=False,
                request_timeout_ms=self.settings.request_timeout_ms,
                metadata_max_age_ms=max(1000, int(self.settings.check_s * 1000)),
            )
        except (KafkaError, OSError) as exc:
            raise ChannelError(f"cannot reach the broker at {self.bootstrap}: {exc}") from exc

    def _one_pass(self) -> None:
        if self.prepare is not None:
            self.prepare()
        consumer = self._consumer()
        try:
            parts = self._assign(consumer)
            self.handler.on_start()
            end = self._catch_up(consumer, parts)
            self.caught_up.set()
            self.handler.on_caught_up()
            self._follow(consumer, parts, end)
        finally:
            consumer.close()

    def _assign(self, consumer: Any) -> list[Any]:
        from kafka import TopicPartition

        parts: list[Any] = []
        for topic in self.topics:
            ids = consumer.partitions_for_topic(topic)
            if not ids:
                raise ChannelError(f"topic {topic!r} does not exist on {self.bootstrap}")
            parts.extend(TopicPartition(topic, p) for p in sorted(ids))
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        return parts

    def _deliver(self, consumer: Any) -> None:
        for tp, records in consumer.poll(timeout_ms=self.settings.poll_ms).items():
            for record in records:
                self.handler.on_record(
                    tp.topic, record.key or b"", record.value or b"", record.offset
                )

    def _catch_up(self, consumer: Any, parts: list[Any]) -> dict[Any, int]:
        end: dict[Any, int] = consumer.end_offsets(parts)
        deadline = time.monotonic() + self.settings.catch_up_timeout_s
        while any(consumer.position(tp) < end[tp] for tp in parts):
            if self._stop.is_set():
                break
            if time.monotonic() > deadline:
                raise ChannelError(f"catching up with {self.topics} timed out")
            self._deliver(consumer)
        return end

    def _follow(self, consumer: Any, parts: list[Any], end: dict[Any, int]) -> None:
        checked = began = time.monotonic()
        while not self._stop.is_set():
            self._deliver(consumer)
            self.handler.on_idle()
            now = time.monotonic()
            if now - checked >= self.settings.check_s:
                end = self._check(consumer, parts, end)
                checked = now
            if now - began >= self.settings.reread_s:
                raise _Reread()

    @staticmethod
    def _check(consumer: Any, parts: list[Any], before: dict[Any, int]) -> dict[Any, int]:
        """New end offsets; raise when the broker is gone (timeout) or an end went back.

        An end offset never decreases on a broker that keeps its data, so a smaller one
        means the partition was lost and re-created (e.g. an embedded broker restarted with
        memory storage). Comparing ends with ends, not with our position, also holds on
        brokers that report the base offset of the last batch as the end (Tansu does).
        """
        end: dict[Any, int] = consumer.end_offsets(parts)
        for tp in parts:
            if end[tp] < before[tp]:
                raise ChannelError(
                    f"{tp.topic}[{tp.partition}] now ends at {end[tp]}, before at {before[tp]}: "
                    "the broker lost data; reading again"
                )
        return end

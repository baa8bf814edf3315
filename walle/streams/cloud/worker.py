"""The cloud worker: a walle App over Kafka, in batches, on librdkafka's consumer group.

One loop per process: ``consume()`` a batch of up to ``batch_size`` input records, decode
and validate them (bad ones become dead letters naming topic, partition and offset), run
them through the engine in partition order, send outputs keyed by ``Output.key`` (and late
events and dead letters to their side topics), snapshot each touched device's state, and
hand the batch to a ``CommitPipeline``, which writes the states to the changelog once the
outputs are acknowledged and commits the input offsets once the states are. The loop goes
on with the next batch meanwhile; at most ``batches_in_flight`` batches wait.

Group membership and rebalancing are Kafka's (librdkafka's consumer group). On assignment
the worker recovers its partitions' device states from the changelog (``recovery``); on
revocation it finishes every queued batch first, so the next owner starts exactly where
this one stopped; when partitions are lost (this worker was thrown out of the group) it
drops its queued batches unfinished and their events are re-read by the new owner.

Guarantee: at-least-once, made idempotent. A crash may re-deliver events whose offsets were
not committed; each device's state record holds its last applied sequence number, so
events it already covers are skipped and the rest re-run from the stored state, giving the
same outputs under the same keys. After deduplication by key the outputs equal an
uninterrupted run. With ``exactly_once`` (Kafka transactions: Apache Kafka; the embedded
broker accepts transactions but does not hide aborted records) outputs, states and offsets
of a batch commit atomically.
"""

from __future__ import annotations

import threading
import time
import uuid
from itertools import takewhile
from typing import Any

from walle.errors import BrokerError, StateError
from walle.kafka import consumer as make_consumer
from walle.kafka import create_topics, parse_broker_url
from walle.kafka import producer as make_producer
from walle.logging import get_logger
from walle.streams.app import App
from walle.streams.cloud.batch import (
    InputMessage,
    bad_message_record,
    check_input,
    is_end_of_log,
    side_output_record,
)
from walle.streams.cloud.metrics import WorkerMetrics
from walle.streams.cloud.pipeline import Batch, CommitPipeline, send
from walle.streams.cloud.recovery import ChangelogReader, write_fences
from walle.streams.cloud.settings import CloudSettings
from walle.streams.cloud.status import TerminalStatus
from walle.streams.engine import END_OF_LOG_MS, Engine
from walle.streams.events import Event
from walle.streams.results import Emissions

log = get_logger("cloud")

_PROGRESS_EVERY_S = 10.0
_GAUGES_EVERY_S = 1.0


def declare_topics(app: App, settings: CloudSettings) -> None:
    """Create the worker's topics with the partition counts it relies on (idempotent).

    The state changelog has as many partitions as the input topic: a device's state lives
    in the partition its events do.
    """
    changelog = settings.changelog_topic(app.name)
    topics = {
        settings.input_topic: settings.partitions,
        settings.output_topic: settings.partitions,
        settings.dead_letter_topic: 1,
        settings.late_topic: 1,
        changelog: settings.partitions,
    }
    create_topics(
        parse_broker_url(settings.broker),
        topics,
        compacted=frozenset({changelog}),
        replication=settings.replication,
    )


class CloudWorker:
    """One member of the app's consumer group; ``run()`` until ``stop`` is set."""

    def __init__(self, app: App, settings: CloudSettings) -> None:
        self.app = app
        self.settings = settings
        self.engine = Engine(app)
        self.changelog = settings.changelog_topic(app.name)
        self._bootstrap = parse_broker_url(settings.broker)
        self._group = settings.resolved_app_id(app.name)
        self._partition_of: dict[str, int] = {}  # device id -> input partition
        # device id -> when its last event came (clock), oldest first
        self._arrivals: dict[str, float] = {}
        self._read_committed = {"isolation.level": "read_committed"}
        self.consumer = make_consumer(self._bootstrap, self._group, **self._consumer_settings())
        self.producer = make_producer(self._bootstrap, **self._producer_settings())
        # One record per partition and assignment: no idempotence (no producer id to wait
        # for), and metadata fetched up front, so a rebalance does not wait on either.
        self._fence_producer = make_producer(self._bootstrap, **{"enable.idempotence": False})
        _metadata(self._fence_producer, self.changelog, self._bootstrap)
        extra = self._read_committed if settings.exactly_once else {}
        self._changelog_reader = ChangelogReader(self._bootstrap, self.changelog, **extra)
        self.pipeline = CommitPipeline(
            self.producer, self.consumer, settings.input_topic, self.changelog
        )
        self.processed = 0
        self._ready = False
        self.metrics = WorkerMetrics()
        self.status: TerminalStatus | None = None  # set to show a status line on a terminal
        self._outputs = 0

    # -- clients ---------------------------------------------------------------------------

    def _consumer_settings(self) -> dict[str, Any]:
        s = self.settings
        settings = {
            "session.timeout.ms": int(s.session_timeout_s * 1000),
            "heartbeat.interval.ms": int(s.heartbeat_s * 1000),
            "fetch.wait.max.ms": s.fetch_max_wait_ms,
            "on_commit": _on_commit,
        }
        if s.exactly_once:
            settings.update(self._read_committed)
        return settings

    def _producer_settings(self) -> dict[str, Any]:
        if not self.settings.exactly_once:
            return {}
        return {"transactional.id": f"{self._group}-{uuid.uuid4().hex[:12]}"}

    # -- the loop --------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume, process and finish batches until ``stop`` is set or an error occurs."""
        s = self.settings
        if s.exactly_once:
            self.producer.init_transactions(30)
        self.consumer.subscribe(
            [s.input_topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )
        clean = False
        if self.status is not None:
            self.status.start()
        try:
            self._loop(stop)
            clean = True
        finally:
            if self.status is not None:
                self.status.stop()
            self._close(clean)

    def _loop(self, stop: threading.Event) -> None:
        s = self.settings
        consume, poll, pipeline = self.consumer.consume, self.producer.poll, self.pipeline
        next_report = time.monotonic() + _PROGRESS_EVERY_S
        next_gauges = 0.0
        caught_up = False
        while not stop.is_set():
            messages = consume(s.batch_size, s.batch_within_s)
            poll(0)
            pipeline.advance()
            if messages:
                self._run_batch(messages)
                caught_up = False
            elif not caught_up and not len(pipeline) and self._ready:
                caught_up = True  # nothing to read and everything read is committed
                log.info("caught up", processed=self.processed, devices=len(self._partition_of))
            while len(pipeline) >= s.batches_in_flight:
                poll(0.005)
                pipeline.advance()
            now = time.monotonic()
            if now >= next_gauges:
                next_gauges = now + _GAUGES_EVERY_S
                self._close_idle(now)
                lag = self._update_gauges()
                if now >= next_report:
                    next_report = now + _PROGRESS_EVERY_S
                    log.info(
                        "worker progress", processed=self.processed,
                        devices=len(self._partition_of), lag=lag,
                    )  # fmt: skip

    def _close_idle(self, now: float) -> None:
        """Close the windows of devices quiet for ``idle_timeout_ms`` of wall-clock time.

        As the device runtime's live mode does: a quiet device's watermark moves on by the
        time since its last event, so its windows close although no event comes to close
        them. The outputs and new states go through the pipeline like a batch's.
        """
        timeout = self.settings.idle_timeout_ms / 1000
        arrivals = self._arrivals  # oldest arrival first: only the quiet prefix is visited
        quiet = list(takewhile(lambda item: now - item[1] >= timeout, arrivals.items()))
        emissions, touched = Emissions(), {}
        for device_id, seen in quiet:
            del arrivals[device_id]
            arrivals[device_id] = now
            watermark = self.engine.watermark(device_id)
            if watermark is None:
                continue
            moved_to = watermark + int((now - seen) * 1000)
            emissions.extend(self.engine.advance_to(moved_to, device_id))
            touched[device_id] = self._partition_of[device_id]
        if not touched:
            return
        batch = Batch({})
        if self.settings.exactly_once:
            self._finish_atomically(batch, emissions, [], touched)
            return
        self._send_outputs(batch, emissions, [])
        batch.states = self._snapshots(touched)
        self.pipeline.submit(batch)

    def _update_gauges(self) -> dict[int, int]:
        lag = self._lag()
        self.metrics.set_lag(lag)
        self.metrics.devices.set(len(self._partition_of))
        self.metrics.batches_waiting.set(len(self.pipeline))
        if self.status is not None:
            devices = len(self._partition_of)
            self.status.update(self.processed, self._outputs, devices, sum(lag.values()))
        return lag

    def _lag(self) -> dict[int, int]:
        """Records behind per assigned partition, by the end offsets the broker reports
        (the embedded broker reports them low: there the lag reads low too)."""
        positions = self.consumer.position(self.consumer.assignment())
        lag = {}
        for tp in positions:
            _, end = self.consumer.get_watermark_offsets(tp, cached=True)
            lag[tp.partition] = max(0, end - tp.offset) if tp.offset >= 0 else end
        return lag

    def _close(self, clean: bool) -> None:
        try:
            if clean:
                self.pipeline.drain()
            else:  # a failed batch: nothing after it may be committed, on close neither
                self.pipeline.drop()
        finally:
            self.consumer.close()  # leaves the group (revocation finishes what is queued)
            self.producer.flush(10)
            self._fence_producer.flush(10)
            self._changelog_reader.close()

    # -- one batch -------------------------------------------------------------------------

    def _run_batch(self, messages: list[Any]) -> None:
        started = time.perf_counter()
        offsets: dict[int, int] = {}
        events: list[Event] = []
        ends: list[tuple[int, str]] = []  # (events before it, device) of end-of-log markers
        bad: list[bytes] = []
        touched: dict[str, int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == _partition_eof():
                    continue
                _raise_broker_error(message)
            partition = message.partition()
            offsets[partition] = message.offset() + 1
            value = message.value()
            if not value and is_end_of_log(value, message.headers()) and message.key():
                device_id = message.key().decode("utf-8", "replace")
                ends.append((len(events), device_id))
                touched.setdefault(device_id, partition)
                continue
            event = _decode(message, bad)
            if event is None:
                continue
            events.append(event)
            if event.device_id not in touched:
                touched[event.device_id] = partition
        emissions = self._engine_run(events, ends)
        self.processed += len(messages)
        arrived = time.monotonic()
        arrivals = self._arrivals
        for device_id in touched:  # moved to the end: the dict stays in arrival order
            arrivals.pop(device_id, None)
            arrivals[device_id] = arrived
        self._count(len(messages), emissions, len(bad), time.perf_counter() - started)
        batch = Batch(offsets)
        if self.settings.exactly_once:
            self._finish_atomically(batch, emissions, bad, touched)
            return
        self._send_outputs(batch, emissions, bad)
        batch.states = self._snapshots(touched)
        self.pipeline.submit(batch)

    def _engine_run(self, events: list[Event], ends: list[tuple[int, str]]) -> Emissions:
        """The events in order, each device's end-of-log marker closing its windows."""
        if not ends:
            return self.engine.process_many(events)
        emissions, done = Emissions(), 0
        for position, device_id in ends:
            emissions.extend(self.engine.process_many(events[done:position]))
            emissions.extend(self.engine.advance_to(END_OF_LOG_MS, device_id))
            done = position
        return emissions.extend(self.engine.process_many(events[done:]))

    def _count(self, records: int, emissions: Emissions, bad: int, seconds: float) -> None:
        m = self.metrics
        self._outputs += len(emissions.outputs)
        m.records.inc(records)
        m.outputs.inc(len(emissions.outputs))
        m.late_events.inc(len(emissions.late))
        m.duplicates.inc(len(emissions.duplicates))
        m.dead_letters.labels(source="bad_message").inc(bad)
        m.dead_letters.labels(source="task").inc(len(emissions.dead))
        m.batch_seconds.observe(seconds)

    def _send_outputs(self, batch: Batch, emissions: Emissions, bad: list[bytes]) -> None:
        s, producer = self.settings, self.producer
        for output in emissions.outputs:
            send(producer, batch, s.output_topic, output.key.encode(), output.to_json().encode())
        for record in bad:
            send(producer, batch, s.dead_letter_topic, None, record)
        for item in emissions.dead:
            send(producer, batch, s.dead_letter_topic, None, side_output_record("dead", *item))
        for late in emissions.late:
            send(producer, batch, s.late_topic, None, side_output_record("late", *late))
        if bad:
            log.warning("bad input messages dead-lettered", count=len(bad))

    def _snapshots(self, touched: dict[str, int]) -> list[tuple[int, bytes, bytes]]:
        snapshot, partition_of = self.engine.snapshot_device, self._partition_of
        states = []
        for device_id, partition in touched.items():
            partition_of[device_id] = partition
            states.append((partition, device_id.encode(), snapshot(device_id)))
        return states

    def _finish_atomically(
        self, batch: Batch, emissions: Emissions, bad: list[bytes], touched: dict[str, int]
    ) -> None:
        """Outputs, states and offsets of one batch in one Kafka transaction."""
        from confluent_kafka import TopicPartition

        producer = self.producer
        producer.begin_transaction()
        self._send_outputs(batch, emissions, bad)
        for partition, key, blob in self._snapshots(touched):
            send(producer, batch, self.changelog, key, blob, partition)
        topic = self.settings.input_topic
        marks = [TopicPartition(topic, p, o) for p, o in sorted(batch.offsets.items())]
        if marks:
            metadata = self.consumer.consumer_group_metadata()
            producer.send_offsets_to_transaction(marks, metadata, 30)
        producer.commit_transaction(60)

    # -- rebalancing -----------------------------------------------------------------------

    def _assigned(self, consumer: Any, partitions: list[Any]) -> None:
        numbers = sorted(tp.partition for tp in partitions)
        started = time.perf_counter()
        fences = write_fences(self._fence_producer, self.changelog, numbers)
        states = self._changelog_reader.read(fences)
        for key, record in states.items():
            device_id = _device_id(key, self.changelog, record)
            where = f"changelog {self.changelog}[{record.partition}]@{record.offset}"
            try:
                self.engine.restore_device(device_id, record.blob, where=where)
            except StateError as exc:
                raise StateError(
                    f"{exc}. In the cloud: run the changed App under a new --app-id (a new "
                    "consumer group and changelog), which replays the input topic from the start"
                ) from None
            self._partition_of[device_id] = record.partition
        seconds = time.perf_counter() - started
        self.metrics.recovered.inc(len(states))
        self.metrics.recovery_seconds.inc(seconds)
        self.metrics.partitions.set(len(numbers))
        log.info(
            "partitions assigned", partitions=numbers, devices_recovered=len(states),
            recovery_ms=round(seconds * 1000, 1),
        )  # fmt: skip
        if not self._ready:
            self._ready = True
            log.info("worker ready", group=self._group, input=self.settings.input_topic,
                     output=self.settings.output_topic)  # fmt: skip

    def _revoked(self, consumer: Any, partitions: list[Any]) -> None:
        self.pipeline.drain()  # the next owner starts exactly where this one stopped
        self._forget({tp.partition for tp in partitions})
        self.metrics.partitions.set(0)
        log.info("partitions revoked", partitions=sorted(tp.partition for tp in partitions))

    def _lost(self, consumer: Any, partitions: list[Any]) -> None:
        self.pipeline.drop()  # unfinished: the new owner re-reads those events
        self._forget({tp.partition for tp in partitions})
        log.warning("partitions lost", partitions=sorted(tp.partition for tp in partitions))

    def _forget(self, partitions: set[int]) -> None:
        gone = [d for d, p in self._partition_of.items() if p in partitions]
        for device_id in gone:
            self.engine.forget_device(device_id)
            del self._partition_of[device_id]
            self._arrivals.pop(device_id, None)


def _decode(message: Any, bad: list[bytes]) -> Event | None:
    """The event of one input record, or None after adding its dead-letter record."""
    checked = check_input(message.key(), message.value())
    if isinstance(checked, str):
        where = _input(message)
        bad.append(bad_message_record(where, f"{where.where}: {checked}"))
        return None
    return checked


def _input(message: Any) -> InputMessage:
    return InputMessage(
        message.topic(), message.partition(), message.offset(), message.key(), message.value()
    )


def _device_id(key: bytes, changelog: str, record: Any) -> str:
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        where = f"changelog {changelog}[{record.partition}]@{record.offset}"
        raise StateError(f"{where}: record key {key!r} is not a device id") from None


def _metadata(client: Any, topic: str, bootstrap: list[str]) -> None:
    """Fetch ``topic``'s metadata now (BrokerError when the broker cannot be reached)."""
    from confluent_kafka import KafkaException

    try:
        client.list_topics(topic, timeout=30)
    except KafkaException as exc:
        raise BrokerError(f"cannot reach the broker at {','.join(bootstrap)}: {exc}") from None


def _partition_eof() -> int:
    from confluent_kafka import KafkaError

    code: int = KafkaError._PARTITION_EOF
    return code


def _raise_broker_error(message: Any) -> None:
    """Raise a BrokerError for a consumed record that carries an error."""
    where = f"{message.topic()}[{message.partition()}]"
    raise BrokerError(f"consuming {where}: {message.error()}")


def _on_commit(error: Any, partitions: list[Any]) -> None:
    if error is not None:
        log.warning("offset commit failed", error=str(error))


def run_worker(app: App, settings: CloudSettings, stop: threading.Event | None = None) -> None:
    """Declare the topics and run one worker until ``stop`` is set (or SIGTERM / Ctrl-C).

    With ``settings.metrics_port`` the worker serves Prometheus metrics on ``/metrics``.
    """
    declare_topics(app, settings)
    stop = stop or _stop_on_signals()
    worker = CloudWorker(app, settings)
    if TerminalStatus.wanted():
        worker.status = TerminalStatus()
    if settings.metrics_port is not None:
        host, port = settings.metrics_host, settings.metrics_port
        worker.metrics.serve(port, host)
        log.info("metrics served", url=f"http://{host}:{port}/metrics")
    worker.run(stop)


def _stop_on_signals() -> threading.Event:
    import signal

    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    return stop

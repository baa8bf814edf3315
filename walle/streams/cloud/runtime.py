"""The faust-streaming app that runs a walle App on Kafka.

One agent consumes the input topic (keyed and partitioned by device id) in batches. For each
batch: the engine runs (``BatchProcessor``), outputs go to the output topic keyed by
``Output.key``, late events and dead letters to their side topics, and only once the broker
acknowledged those does each touched device's state go to the changelog-backed table (one
key per device, the device's last applied seq inside). Offsets are acknowledged after that.
Those waits run in a ``BatchCommitter``, batch after batch, while the engine goes on with
the next batches.

Guarantee: at-least-once. A crash may re-deliver events whose offsets were not committed;
the state record then already holds their seq (they are skipped as duplicates) or it does
not (they are re-run from the stored state, giving the same outputs with the same keys).
Either way, after deduplication by output key the outputs equal an uninterrupted run. On
Apache Kafka, exactly-once would come from faust's ``processing_guarantee="exactly_once"``
(transactions), which the embedded broker does not support.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from walle.broker import create_topics, parse_broker_url
from walle.logging import get_logger
from walle.streams.app import App
from walle.streams.cloud.batch import BatchProcessor, InputMessage, side_output_record
from walle.streams.cloud.commit import BatchCommitter
from walle.streams.cloud.settings import STATE_TABLE, CloudSettings
from walle.streams.cloud.transport import install_transport
from walle.streams.engine import Engine

_log = get_logger("cloud")

CHANGELOG_MARKER = b"\x00walle:end-of-batch"


def declare_topics(app: App, settings: CloudSettings) -> None:
    """Create the worker's topics with the partition counts it relies on (idempotent).

    The state changelog must have as many partitions as the input topic: a device's state
    lives in the partition its events do.
    """
    topics = {
        settings.input_topic: settings.partitions,
        settings.output_topic: settings.partitions,
        settings.dead_letter_topic: 1,
        settings.late_topic: 1,
        settings.changelog_topic(app.name): settings.partitions,
    }
    compacted = frozenset({settings.changelog_topic(app.name)})
    create_topics(
        parse_broker_url(settings.broker),
        topics,
        compacted=compacted,
        replication=settings.replication,
    )


def build_faust_app(app: App, settings: CloudSettings) -> Any:
    """A faust.App whose single agent runs ``app``'s engine over the input topic."""
    import faust
    from mode import CrashingSupervisor

    app_id = settings.resolved_app_id(app.name)
    brokers = ";".join(f"kafka://{server}" for server in parse_broker_url(settings.broker))
    faust_app = faust.App(
        app_id,
        broker=brokers,
        store="memory://",
        datadir=str(settings.datadir),
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        table_standby_replicas=0,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_s,
        broker_commit_interval=settings.commit_interval_s,
        broker_rebalance_timeout=settings.session_timeout_s * 2,
        processing_guarantee="exactly_once" if settings.exactly_once else "at_least_once",
        key_serializer="raw",
        value_serializer="raw",
    )
    install_transport(faust_app, settings.fetch_max_wait_ms)
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
           "value_serializer": "raw"}  # fmt: skip
    source = faust_app.topic(settings.input_topic, partitions=settings.partitions, **raw)
    outputs = faust_app.topic(settings.output_topic, partitions=settings.partitions, **raw)
    dead = faust_app.topic(settings.dead_letter_topic, partitions=1, **raw)
    late = faust_app.topic(settings.late_topic, partitions=1, **raw)
    # use_partitioner: the changelog partition comes from the key (the device id, as on the
    # input topic), not from "the current event", which a batch of many partitions lacks.
    table = faust_app.Table(
        STATE_TABLE,
        partitions=settings.partitions,
        use_partitioner=True,
        key_type=bytes,
        value_type=bytes,
    )
    table.on_recover(_hold_streams_until_seeked(faust_app))
    processor = BatchProcessor(Engine(app), table)

    async def finish(step: _Processed) -> None:
        await asyncio.gather(*step.sent)  # outputs acknowledged before the state moves
        states = _owned_states(faust_app, settings.input_topic, step.states, processor)
        await _store_states(table, states)
        processor.stored(states)
        for event in step.events:  # offsets acknowledged once the state is stored
            await step.stream.ack(event)

    async def run_engine(stream: Any) -> None:
        committer = BatchCommitter(finish, depth=settings.batches_in_flight)
        try:
            async for batch in stream.noack_take(settings.batch_size, settings.batch_within_s):
                result = processor.process([_input_message(event.message) for event in batch])
                emissions = result.emissions
                sent = [await outputs.send(key=o.key.encode(), value=o.to_json().encode())
                        for o in emissions.outputs]  # fmt: skip
                sent += [await dead.send(value=bad) for bad in result.bad]
                sent += [await dead.send(value=side_output_record("dead", *item))
                         for item in emissions.dead]  # fmt: skip
                sent += [await late.send(value=side_output_record("late", *item))
                         for item in emissions.late]  # fmt: skip
                if result.bad:
                    _log.warning("bad input messages dead-lettered", count=len(result.bad))
                await committer.submit(_Processed(stream, batch, sent, result.states))
        finally:
            committer.close()

    # A crashed engine agent stops the worker (faust's default restarts the agent in place,
    # with the taken batch neither finished nor redelivered and offsets stuck behind it);
    # a restarted worker resumes from the committed offsets and the changelog.
    faust_app.agent(source, name="walle-engine", supervisor_strategy=CrashingSupervisor)(run_engine)
    return faust_app


@dataclass(frozen=True)
class _Processed:
    """A batch the engine ran: what the committer must wait for, store and acknowledge."""

    stream: Any
    events: list[Any]
    sent: list[Any]
    states: dict[bytes, bytes]


def _hold_streams_until_seeked(faust_app: Any) -> Any:
    """A table-recovery callback that stops message delivery until faust's seek is done.

    After a recovery that read a changelog, faust (0.15) leaves its fetcher running, then
    resumes the input partitions and only then seeks them to the committed offsets. Input
    messages fetched in between reach the agent, and the seek then rewinds faust's read
    offsets under them: later messages are skipped as a bogus "gap" whose offsets count as
    acknowledged (events lost, outputs wrong), or the acknowledged-offset list gets
    duplicates and commits stop advancing (the restarted worker "stalls"). Faust runs table
    recovery callbacks just before that resume-then-seek step and resumes the flow after
    it, so stopping the flow here makes delivery start exactly at the committed offsets.
    """

    async def hold_streams() -> None:
        faust_app.consumer.stop_flow()

    return hold_streams


def _owned_states(
    faust_app: Any, topic: str, states: dict[bytes, bytes], processor: BatchProcessor
) -> dict[bytes, bytes]:
    """The states of devices whose input partition this worker still owns.

    A batch taken before a rebalance may finish after its partitions moved; writing those
    states would race the new owner's (a stale record last in the changelog). They are
    dropped here and forgotten in memory; the new owner replays from committed offsets.
    """
    owned = {tp.partition for tp in faust_app.consumer.assignment() if tp.topic == topic}
    kept = {}
    for key, blob in states.items():
        if faust_app.producer.key_partition(topic, key).partition in owned:
            kept[key] = blob
        else:
            processor.forget(key)
    return kept


async def _store_states(table: Any, states: dict[bytes, bytes]) -> None:
    """Write each device's state to the table and wait until the changelog has it.

    Then append a one-record batch to each changelog partition just written: the
    embedded broker (Tansu 0.6) reports a partition's end offset as the base offset of its
    last record batch plus one, so after a multi-record batch faust's recovery would stop
    early and restore stale device state. The trailing marker makes the reported end the
    true end (harmless on Apache Kafka; the marker key is no device id).
    """
    if not states:
        return
    written = []
    for key, blob in states.items():  # what table[key] = blob does, keeping the futures
        written.append(table.send_changelog(table.partition_for_key(key), key, blob))
        table.data[key] = blob
    await asyncio.gather(*written)
    topic = table.changelog_topic
    partitions = {fut.message.partition for fut in written}
    markers = [await topic.send(key=CHANGELOG_MARKER, value=b"", partition=partition)
               for partition in sorted(partitions)]  # fmt: skip
    await asyncio.gather(*markers)


def _input_message(message: Any) -> InputMessage:
    return InputMessage(
        message.topic, message.partition, message.offset, message.key, message.value
    )


def run_worker(app: App, settings: CloudSettings, *, loglevel: str = "WARNING") -> None:
    """Declare the topics and run one worker in the foreground until it is stopped."""
    import faust

    declare_topics(app, settings)
    faust_app = build_faust_app(app, settings)
    worker = faust.Worker(faust_app, loglevel=loglevel, quiet=True)
    # faust's start-up spinner sets the root logger to DEBUG, so every debug call of faust
    # and aiokafka (several per message) would build a log record only to drop it.
    worker.spinner = None
    worker.execute_from_commandline()

"""Host a walle App inside an existing faust-streaming app, through faust's public API only.

``attach(faust_app, app, ...)`` declares on ``faust_app`` one Table (device id bytes -> engine
state blob, changelog-backed) and one agent over the input topic. The agent takes batches with
``stream.take_events(batch_size, within_s)`` (``take``'s twin that yields the events, so each
message's topic, partition and offset are at hand for dead letters) and, per batch:

1. runs them through walle's ``BatchProcessor`` (decode and validate, restore a device's state
   from the table when first seen, run the engine in partition order);
2. sends outputs to the output topic keyed by ``Output.key`` (task|device|window), bad messages
   and engine dead letters to the dead-letter topic, late events to the late topic, and waits
   until the broker acknowledged every one of them;
3. writes each touched device's state with ``table[key] = blob``.

Only then does faust acknowledge the batch's events (``take_events`` acknowledges a batch when
the agent asks for the next one), and faust flushes its producer, table changelog included,
before it commits offsets.

Guarantee: at-least-once. A worker that dies, restarts or loses partitions in a rebalance
re-reads events whose offsets were not committed. Each device's state record holds the last
sequence number applied to it, so a re-read event the stored state already covers is skipped
as a duplicate; one it does not cover is run again from the stored state and gives the same
outputs under the same keys. Outputs are keyed deterministically, so a replay is idempotent
downstream once outputs are deduplicated by key (a compacted topic or an upsert does it).
A batch whose processing raises (a walle bug, a send the broker refused) falls under faust's
rule for agent errors, which acknowledges it; the agent is therefore supervised by mode's
``CrashingSupervisor`` by default, so that such an error stops the worker loudly instead of
skipping events quietly.

Keep faust's ``stream_wait_empty`` on (its default): before faust gives partitions away it
waits until the batches in flight are acknowledged, so no state is written for a partition
this worker no longer owns. On the embedded broker (Tansu 0.6) faust's changelog recovery
reads up to the reported end offset, which is too low after multi-record batches, so a
restarted worker may restore stale state there; Apache Kafka reports the true end.

This integration is for users who already run a faust app and want a walle App in it. The
walle worker (``walle cloud worker``) is the fast path: it owns its consumer loop and pays no
per-message delivery cost in Python.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from walle.streams.app import App
from walle.streams.cloud.batch import BatchProcessor, InputMessage, side_output_record
from walle.streams.engine import Engine

if TYPE_CHECKING:
    from faust import Stream
    from faust.types import AgentT, AppT, EventT, StreamT, TableT, TopicT

_RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


def state_table_name(app: App) -> str:
    """The faust Table that holds ``app``'s device states on the hosting faust app.

    Its changelog topic is ``f"{faust_app.conf.id}-{state_table_name(app)}-changelog"``.
    """
    return f"walle-{app.name}-state"


def attach(
    faust_app: AppT,
    app: App,
    *,
    input_topic: str,
    output_topic: str,
    dead_letter_topic: str,
    late_topic: str,
    partitions: int,
    batch_size: int = 500,
    within_s: float = 0.05,
    supervisor_strategy: Any = None,
) -> AgentT[Any]:
    """Run ``app`` on ``faust_app`` over ``input_topic``; returns the faust agent.

    The input topic must be keyed by device id (each device's events in one partition, in
    order) and have ``partitions`` partitions, as must the state table's changelog (faust
    creates it when missing). Keys and values are raw bytes on every topic. Batches hold at
    most ``batch_size`` events, taken within ``within_s`` seconds. ``supervisor_strategy``
    is the agent's faust supervisor (default: mode's ``CrashingSupervisor``, see the module
    docstring).
    """
    from mode import CrashingSupervisor

    table = faust_app.Table(
        state_table_name(app),
        partitions=partitions,
        # The changelog partition comes from the key (the device id, as on the input
        # topic), not from "the current event", which a batch spanning partitions lacks.
        use_partitioner=True,
        key_type=bytes,  # bytes: faust's raw codec
        value_type=bytes,
    )
    table.on_recover(_hold_flow_until_seeked(faust_app))
    topics = _Topics(
        outputs=faust_app.topic(output_topic, **_RAW),
        dead=faust_app.topic(dead_letter_topic, **_RAW),
        late=faust_app.topic(late_topic, **_RAW),
    )
    source = faust_app.topic(input_topic, partitions=partitions, **_RAW)

    async def run_walle_app(stream: StreamT[Any]) -> None:
        # A processor per agent start: a restarted agent reloads device states from the table.
        processor = BatchProcessor(Engine(app), table)
        # faust hands agents its Stream class; take_events is not on the StreamT protocol
        batches = cast("Stream[Any]", stream).take_events(batch_size, within=within_s)
        async for events in batches:
            await _run_batch(processor, table, topics, [_input_message(e) for e in events])

    agent = faust_app.agent(
        source,
        name=f"walle-{app.name}",
        supervisor_strategy=supervisor_strategy or CrashingSupervisor,
    )
    return agent(run_walle_app)


@dataclass(frozen=True)
class _Topics:
    """Where a batch's records go."""

    outputs: TopicT
    dead: TopicT
    late: TopicT


async def _run_batch(
    processor: BatchProcessor,
    table: TableT[bytes, bytes],
    topics: _Topics,
    messages: list[InputMessage],
) -> None:
    """Process one batch, wait until its records are acknowledged, then store the states."""
    result = processor.process(messages)
    emissions = result.emissions
    sent = [
        await topics.outputs.send(key=o.key.encode(), value=o.to_json().encode())
        for o in emissions.outputs
    ]
    sent += [await topics.dead.send(value=record) for record in result.bad]
    sent += await _send_side(topics.dead, "dead", emissions.dead)
    sent += await _send_side(topics.late, "late", emissions.late)
    await asyncio.gather(*sent)  # outputs acknowledged before the state moves on
    for key, blob in result.states.items():
        table[key] = blob
    processor.stored(result.states)


async def _send_side(topic: TopicT, kind: str, items: Iterable[Any]) -> list[Awaitable[Any]]:
    """Send late events or dead letters, keyed by device id; returns the pending sends."""
    return [
        await topic.send(
            key=item.event.device_id.encode(),
            value=side_output_record(kind, item.task, item.event, item.reason),
        )
        for item in items
    ]


def _input_message(event: EventT[Any]) -> InputMessage:
    message = event.message
    return InputMessage(
        message.topic, message.partition, message.offset, message.key, message.value,
        message.headers,
    )  # fmt: skip


def _hold_flow_until_seeked(faust_app: AppT) -> Any:
    """A table-recovery callback that pauses delivery until faust has seeked the input.

    After a recovery that read a changelog, faust 0.15 resumes the input partitions with its
    flow running and only then seeks them to the committed offsets: messages fetched in
    between reach the agent, and the seek rewinds the read offsets under them (skipped or
    doubly tracked offsets). Faust calls recovery callbacks just before that step and resumes
    the flow right after the seek, so stopping the flow here makes delivery start at the
    committed offsets.
    """

    async def hold_flow() -> None:
        faust_app.consumer.stop_flow()

    return hold_flow

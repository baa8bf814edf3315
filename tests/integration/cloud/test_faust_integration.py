"""A walle App hosted in a plain faust app (``faust_agent.attach``) equals the in-memory engine.

A faust worker with the example apps' tasks attached runs in a forked process on the embedded
broker; events go in keyed by device id, with two bad messages among them. The outputs read
back (re-sent copies dropped) must be the engine's outputs for the same events, the late
topic must hold the engine's late events, each bad message must be dead-lettered naming its
topic, partition and offset, and each device's state must sit in the changelog partition
its events have on the input topic.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from walle.kafka import EmbeddedBroker, consumer, create_topics, read_to_end, sync_producer
from walle.streams import App, Engine, Event, load_app
from walle.streams.cloud.batch import side_output_record
from walle.streams.cloud.faust_agent import attach, state_table_name
from walle.streams.generator import generate_events
from walle.streams.results import Output
from walle.testing_cloud import dedupe_outputs

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
NAMES = ("item_page_view", "clicks_per_category", "search_to_cart")
PARTITIONS = 3
DEADLINE_S = 40.0
POLL_S = 0.2


def examples_app() -> App:
    """The example apps' tasks in one App, as the cloud benchmark builds it."""
    app = App("examples", out_of_orderness_ms=5_000)
    for name in NAMES:
        for plan in load_app(EXAMPLES / f"{name}.py").plans:
            app.add(plan)
    return app


@dataclass(frozen=True)
class Deployment:
    """One faust app's id, topics and data directory on the test broker."""

    broker: EmbeddedBroker
    app_id: str
    input: str
    output: str
    dead: str
    late: str
    datadir: Path

    @classmethod
    def create(cls, broker: EmbeddedBroker, tmp_path: Path) -> Deployment:
        run = uuid.uuid4().hex[:8]
        deployment = cls(broker, f"faust-host-{run}", f"events-{run}", f"outputs-{run}",
                         f"dead-{run}", f"late-{run}", tmp_path / "faust")  # fmt: skip
        create_topics(broker.bootstrap, {deployment.input: PARTITIONS,
                                         deployment.output: PARTITIONS,
                                         deployment.dead: 1, deployment.late: 1})  # fmt: skip
        return deployment

    @property
    def log_path(self) -> Path:
        return self.datadir / "worker.log"


def _host_worker(deployment: Deployment, app: App) -> None:
    """A user's faust app with the walle App attached, run in the foreground (forked child)."""
    import faust

    os.setsid()  # its own process group: killing it never reaches pytest
    faust_app = faust.App(
        deployment.app_id, broker=deployment.broker.url, store="memory://", web_enabled=False,
        topic_partitions=PARTITIONS, consumer_auto_offset_reset="earliest",
        broker_session_timeout=6.0, broker_heartbeat_interval=1.0, broker_commit_interval=0.5,
        key_serializer="raw", value_serializer="raw", producer_acks=-1,
        datadir=str(deployment.datadir),
    )  # fmt: skip
    attach(faust_app, app, input_topic=deployment.input, output_topic=deployment.output,
           dead_letter_topic=deployment.dead, late_topic=deployment.late,
           partitions=PARTITIONS, batch_size=100)  # fmt: skip
    worker = faust.Worker(faust_app, loglevel="WARNING", quiet=True,
                          logfile=str(deployment.log_path))  # fmt: skip
    worker.spinner = None  # its start-up spinner would set the root logger to DEBUG
    worker.execute_from_commandline()


@contextlib.contextmanager
def hosted(deployment: Deployment, app: App) -> Iterator[Any]:
    """The faust worker in a forked process, SIGKILLed (its process group) on exit."""
    deployment.datadir.mkdir(parents=True, exist_ok=True)
    process = multiprocessing.get_context("fork").Process(
        target=_host_worker, args=(deployment, app), daemon=True
    )
    process.start()
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.join(timeout=10)


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> list[Any]:
    """Send (key, value) messages in order; returns each one's record metadata."""
    producer = sync_producer(bootstrap)
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in messages]
        producer.flush(timeout=30)
        return [future.get(timeout=10) for future in futures]
    finally:
        producer.close(timeout=5)


def wait_committed(deployment: Deployment, ends: dict[int, int], worker: Any) -> None:
    """Block until the faust app's group committed ``ends`` on every input partition."""
    from confluent_kafka import TopicPartition

    client = consumer(deployment.broker.bootstrap, deployment.app_id)
    parts = [TopicPartition(deployment.input, p) for p in range(PARTITIONS)]
    deadline = time.monotonic() + DEADLINE_S
    try:
        while time.monotonic() < deadline:
            committed = {tp.partition: tp.offset for tp in client.committed(parts, timeout=10)}
            if all(committed[p] >= end for p, end in ends.items()):
                return
            assert worker.is_alive(), f"the faust worker exited\n{_tail(deployment)}"
            time.sleep(POLL_S)  # poll interval of the deadline loop
    finally:
        client.close()
    raise AssertionError(f"committed {committed}, expected {ends}\n{_tail(deployment)}")


def read_outputs(deployment: Deployment) -> list[Output]:
    """The output topic, read until two reads in a row give the same count."""
    deadline = time.monotonic() + DEADLINE_S
    count = -1
    while time.monotonic() < deadline:
        records = read_to_end(deployment.broker.bootstrap, deployment.output,
                              partitions=PARTITIONS)  # fmt: skip
        if len(records) == count:
            return [Output.from_json(record.value) for record in records]
        count = len(records)
    raise AssertionError(f"the output count of {deployment.output} kept changing")


def _tail(deployment: Deployment) -> str:
    if not deployment.log_path.exists():
        return "(no worker log)"
    return deployment.log_path.read_text(errors="replace")[-4000:]


def _events() -> list[Event]:
    return generate_events(devices=8, sessions=2, seed=23, out_of_order_rate=0.05,
                           late_rate=0.03)  # fmt: skip


def _bad_messages(events: list[Event]) -> list[tuple[bytes, bytes]]:
    """Invalid JSON, and a valid event whose key is not its device id."""
    stranger = events[0]._replace(device_id="dev-stranger")
    return [(b"dev-00000", b"{not json"), (b"dev-00001", stranger.to_json().encode())]


def test_a_faust_hosted_app_gives_the_engines_outputs(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    app = examples_app()
    events = _events()
    expected = Engine(app).process_many(events)
    assert expected.outputs and expected.late, "the log should give outputs and late events"
    deployment = Deployment.create(broker, tmp_path)

    with hosted(deployment, app) as worker:
        half = len(events) // 2
        messages = [(e.device_id.encode(), e.to_json().encode()) for e in events]
        bad = _bad_messages(events)
        sent = produce(broker.bootstrap, deployment.input, [*messages[:half], *bad,
                                                            *messages[half:]])  # fmt: skip
        sent_good = sent[:half] + sent[half + len(bad) :]
        ends: dict[int, int] = {}
        for meta in sent:
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
        wait_committed(deployment, ends, worker)
        outputs = read_outputs(deployment)

    got = Counter(o.to_json() for o in dedupe_outputs(outputs))
    assert got == Counter(o.to_json() for o in dedupe_outputs(expected.outputs))

    late = read_to_end(broker.bootstrap, deployment.late, partitions=1)
    expected_late = [side_output_record("late", *item) for item in expected.late]
    assert Counter(r.value for r in late) == Counter(expected_late)

    dead = [json.loads(r.value) for r in read_to_end(broker.bootstrap, deployment.dead,
                                                      partitions=1)]  # fmt: skip
    bad_meta = sent[half : half + len(bad)]
    where = {(d["topic"], d["partition"], d["offset"]) for d in dead if d["kind"] == "bad_message"}
    assert where == {(deployment.input, m.partition, m.offset) for m in bad_meta}
    assert len([d for d in dead if d["kind"] == "dead"]) == len(expected.dead)

    # one state key per device, in the changelog partition its events have on the input
    changelog = f"{deployment.app_id}-{state_table_name(app)}-changelog"
    states = read_to_end(broker.bootstrap, changelog, partitions=PARTITIONS)
    on_input = {(key, m.partition) for (key, _), m in zip(messages, sent_good, strict=True)}
    assert {(r.key, r.partition) for r in states} == on_input

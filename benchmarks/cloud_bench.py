"""Cloud runtime benchmark on the embedded broker (Tansu), all figures from one run.

  (a) raw aiokafka consume of the input topic, events/s: the limit;
  (b) the cloud runtime (walle worker: batched engine, per-device state table) events/s
      for the example apps' tasks in one App, and its fraction of (a); then 2 workers;
  (c) the same App as a naive plain faust agent: per event, decode, then for every task
      load that task's state from a table, run it, write the state back and send the
      outputs; (b) / (c) is the ratio;
  (d) end-to-end latency p50/p99 from producing an event to receiving the output it
      caused, with a warm worker and a paced producer;
  (e) the faust ceiling: a faust agent, configured as the worker is, that takes the same
      batches and acknowledges them without doing anything else. What separates (a)
      from (e) is faust's per-message delivery, which every faust worker pays;
  (f) the upper bound of a worker that consumed batches below faust: aiokafka getmany
      into decode + the engine, with no output, state or offset I/O at all.

Rates (b) and (c) are timed from the worker's first offset commit to its last, so worker
start-up and group joins are not counted. Run:

    .venv/bin/python benchmarks/cloud_bench.py [--events N] [--quick]

Results are printed and written to benchmarks/results/cloud_bench.md.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

from walle.broker import EmbeddedBroker, create_topics
from walle.streams import App, Engine, Event, decode_event, load_app
from walle.streams.cloud.settings import CloudSettings
from walle.streams.generator import generate_events
from walle.testing_cloud import CloudRun

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ("item_page_view", "clicks_per_category", "search_to_cart")
RESULTS = ROOT / "benchmarks" / "results" / "cloud_bench.md"


def examples_app() -> App:
    """The committed example apps' tasks in one App (3 tasks, shared engine)."""
    app = App("examples", out_of_orderness_ms=5_000)
    for name in EXAMPLES:
        for plan in load_app(ROOT / "examples" / f"{name}.py").plans:
            app.add(plan)
    return app


def bench_events(count: int) -> list[Event]:
    """About ``count`` generated events (40 devices, sessions added until enough)."""
    devices = 40
    sessions = max(1, count // (devices * 60))
    events = generate_events(devices=devices, sessions=sessions, seed=3, out_of_order_rate=0.02)
    while len(events) < count:
        sessions += 1
        events = generate_events(devices=devices, sessions=sessions, seed=3,
                                 out_of_order_rate=0.02)  # fmt: skip
    return events[:count]


# -- (a) raw consume ------------------------------------------------------------------------


async def _consume_all(
    bootstrap: list[str], topic: str, partitions: int, total: int, handle: Any = None
) -> float:
    """Events/s of reading ``total`` records from the start, each batch given to ``handle``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=4 * 1024 * 1024)  # fmt: skip
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        seen = 0
        start = time.perf_counter()
        while seen < total:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batch.values():
                seen += len(records)
                if handle is not None:
                    handle(records)
        return total / (time.perf_counter() - start)
    finally:
        await consumer.stop()


async def _raw_consume(bootstrap: list[str], topic: str, partitions: int, total: int) -> float:
    return await _consume_all(bootstrap, topic, partitions, total)


async def _engine_on_raw_batches(
    bootstrap: list[str], topic: str, partitions: int, total: int, app: App
) -> float:
    engine = Engine(app)

    def run(records: list[Any]) -> None:
        engine.process_many(decode_event(record.value) for record in records)

    return await _consume_all(bootstrap, topic, partitions, total, run)


# -- (b) and (c): time a worker from its first commit to its last -----------------------------


def _timed_processing(run: CloudRun, start_worker: Any, timeout_s: float = 600) -> float:
    """Events/s between the group's first committed offset and the end of the input."""
    start_worker()
    deadline = time.monotonic() + timeout_s
    first_at, first_done = None, 0
    while time.monotonic() < deadline:
        done, end = run.committed_fraction()
        now = time.perf_counter()
        if first_at is None and done > 0:
            first_at, first_done = now, done
        if done >= end:
            if first_at is None or now - first_at < 1e-3:
                raise RuntimeError("too few events to time: raise --events")
            return (end - first_done) / (now - first_at)
        time.sleep(0.05)
    raise RuntimeError("the worker did not finish in time")


def _plain_faust_app(app: App, settings: CloudSettings) -> Any:
    """A faust app with the worker's broker settings, in its own process group."""
    import faust

    os.setsid()
    return faust.App(
        settings.resolved_app_id(app.name), broker=settings.broker,
        store="memory://", web_enabled=False, topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest", broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_s,
        broker_commit_interval=settings.commit_interval_s, key_serializer="raw",
        value_serializer="raw", producer_acks=-1, datadir=str(settings.datadir),
    )  # fmt: skip


def _run_faust_worker(faust_app: Any) -> None:
    import faust

    worker = faust.Worker(faust_app, loglevel="WARNING", quiet=True)
    worker.spinner = None  # as the walle worker: no root logger at DEBUG
    worker.execute_from_commandline()


def _naive_worker(app: App, settings: CloudSettings) -> None:
    """A plain faust agent: per event, every task loads, runs and stores its own state."""
    faust_app = _plain_faust_app(app, settings)
    source = faust_app.topic(settings.input_topic, key_type=bytes, value_type=bytes)
    outputs = faust_app.topic(settings.output_topic, key_type=bytes, value_type=bytes)
    table = faust_app.Table("naive-state", partitions=settings.partitions, key_type=bytes,
                            value_type=bytes)  # fmt: skip
    tasks = {}
    for plan in app.plans:
        single = App(plan.name, out_of_orderness_ms=app.out_of_orderness_ms)
        single.add(plan)
        tasks[plan.name] = single

    async def naive(stream: Any) -> None:
        async for value in stream:
            event = decode_event(value)
            for name, single in tasks.items():
                engine = Engine(single)
                key = f"{name}|{event.device_id}".encode()
                blob = table.get(key)
                if blob is not None:
                    engine.restore_device(event.device_id, blob)
                emissions = engine.process(event)
                table[key] = engine.snapshot_device(event.device_id)
                for output in emissions.outputs:
                    await outputs.send(key=output.key.encode(), value=output.to_json().encode())

    faust_app.agent(source, name="naive")(naive)
    _run_faust_worker(faust_app)


def _empty_worker(app: App, settings: CloudSettings) -> None:
    """The walle worker's faust app with an agent that only takes and acknowledges."""
    from walle.streams.cloud.transport import install_transport

    faust_app = _plain_faust_app(app, settings)
    install_transport(faust_app, settings.fetch_max_wait_ms)
    source = faust_app.topic(settings.input_topic, key_type=bytes, value_type=bytes)

    async def empty(stream: Any) -> None:
        async for batch in stream.noack_take(settings.batch_size, settings.batch_within_s):
            for event in batch:
                await stream.ack(event)

    faust_app.agent(source, name="empty")(empty)
    _run_faust_worker(faust_app)


def _start_in_fork(run: CloudRun, app: App, target: Any) -> None:
    process = multiprocessing.get_context("fork").Process(
        target=target, args=(app, run.settings), daemon=True
    )
    process.start()
    run.workers.append(process)


# -- (d) latency ------------------------------------------------------------------------------


def _causes(app: App, before: list[Event], events: list[Event]) -> dict[str, tuple[str, int]]:
    """Output key -> (device, seq) of the event of ``events`` whose processing emitted it."""
    engine = Engine(app)
    engine.process_many(before)
    causes = {}
    for event in events:
        for output in engine.process(event).outputs:
            causes.setdefault(output.key, (event.device_id, event.seq))
    return causes


def _latencies(
    run: CloudRun, app: App, before: list[Event], events: list[Event], rate: float
) -> list[float]:
    from kafka import KafkaConsumer

    from walle.streams.cloud.produce import make_producer
    from walle.streams.results import Output

    causes = _causes(app, before, events)
    received: dict[str, float] = {}
    stop = threading.Event()
    consumer = KafkaConsumer(run.settings.output_topic, bootstrap_servers=run.bootstrap,
                             auto_offset_reset="latest", fetch_max_wait_ms=5)  # fmt: skip
    while not consumer.assignment():
        consumer.poll(timeout_ms=100)

    def _collect() -> None:
        while not stop.is_set():
            for records in consumer.poll(timeout_ms=20).values():
                now = time.perf_counter()
                for record in records:
                    received.setdefault(Output.from_json(record.value).key, now)

    thread = threading.Thread(target=_collect)
    thread.start()
    producer = make_producer(run.bootstrap, linger_ms=0)
    sent: dict[tuple[str, int], float] = {}
    start = time.perf_counter()
    for index, event in enumerate(events):
        while time.perf_counter() < start + index / rate:
            time.sleep(0.0005)
        sent[(event.device_id, event.seq)] = time.perf_counter()
        producer.send(run.settings.input_topic, key=event.device_id.encode(),
                      value=event.to_json().encode())  # fmt: skip
        producer.flush()
    time.sleep(2.0)
    stop.set()
    thread.join()
    consumer.close()
    producer.close()
    return sorted(received[key] - sent[cause] for key, cause in causes.items() if key in received)


def _percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--quick", action="store_true", help="10,000 events")
    args = parser.parse_args()
    total = 10_000 if args.quick else args.events
    app = examples_app()
    events = bench_events(total)
    lines = [
        f"events: {len(events)} from 40 devices; app: {len(app.plans)} tasks "
        f"({', '.join(p.name for p in app.plans)}); 4 partitions; embedded broker (Tansu)"
    ]

    with EmbeddedBroker() as broker:
        with CloudRun(app, broker) as run:
            run.produce(events)
            raw = asyncio.run(_raw_consume(run.bootstrap, run.settings.input_topic, 4,
                                           len(events)))  # fmt: skip
            bound = asyncio.run(_engine_on_raw_batches(run.bootstrap, run.settings.input_topic,
                                                       4, len(events), app))  # fmt: skip
            walle_rate = _timed_processing(run, run.start_worker)
        with CloudRun(app, broker) as pair:
            pair.produce(events)
            pair_rate = _timed_processing(pair, lambda: [pair.start_worker() for _ in range(2)])
        with CloudRun(app, broker) as naive_run:
            changelog = f"{naive_run.settings.app_id}-naive-state-changelog"
            create_topics(naive_run.bootstrap, {changelog: 4})
            naive_run.produce(events)
            naive_rate = _timed_processing(
                naive_run, lambda: _start_in_fork(naive_run, app, _naive_worker)
            )
        with CloudRun(app, broker) as empty_run:
            empty_run.produce(events)
            empty_rate = _timed_processing(
                empty_run, lambda: _start_in_fork(empty_run, app, _empty_worker)
            )
        with CloudRun(app, broker, batch_size=500) as live:
            live.start_worker()
            live.produce(events[:200])
            live.wait_processed()
            latencies = _latencies(live, app, events[:200], events[200:2200], rate=1000.0)

    lines += [
        f"(a) raw aiokafka consume:          {raw:12,.0f} events/s (the limit)",
        f"(b) walle cloud runtime, 1 worker: {walle_rate:12,.0f} events/s = "
        f"{walle_rate / raw:.1%} of (a) (target >= 50%)",
        f"    2 workers (this machine has {os.cpu_count()} cores, shared with the broker): "
        f"{pair_rate:,.0f} events/s = {pair_rate / walle_rate:.2f}x 1 worker",
        f"(c) naive faust agent:             {naive_rate:12,.0f} events/s; (b)/(c) = "
        f"{walle_rate / naive_rate:.1f}x (target >= 5x)",
        f"(d) produce->output latency at 1,000 events/s: "
        f"p50 {_percentile(latencies, 0.5) * 1e3:.1f} ms, "
        f"p99 {_percentile(latencies, 0.99) * 1e3:.1f} ms over {len(latencies)} outputs",
        f"(e) faust ceiling (take + ack only): {empty_rate:10,.0f} events/s = "
        f"{empty_rate / raw:.1%} of (a); (b) = {walle_rate / empty_rate:.0%} of (e)",
        f"(f) getmany + decode + engine, no I/O: {bound:8,.0f} events/s = {bound / raw:.1%} of (a)",
    ]
    report = "\n".join(lines)
    print(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        "# cloud_bench\n\n"
        f"Command: `.venv/bin/python benchmarks/cloud_bench.py {' '.join(sys.argv[1:])}`\n\n"
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}\n\n"
        f"```\n{report}\n```\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()

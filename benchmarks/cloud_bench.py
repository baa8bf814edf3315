"""Cloud runtime benchmark on the embedded broker (Tansu), all figures from one run.

  (a) raw confluent-kafka batched consume of the input topic, events/s: the client limit;
  (b) the walle worker (batched engine, per-device changelog state) events/s, with client
      and broker CPU per 1,000 events; then with its /metrics served and scraped every
      second; then 2 workers;
  (c) the same App as a naive plain faust agent: per event, decode, then for every task
      load that task's state from a table, run it, write the state back and send the
      outputs; (b) / (c) is the ratio;
  (d) end-to-end latency p50/p99 from producing an event to receiving the output it
      caused, with a warm worker and a paced producer at 1,000 events/s;
  (f) the engine's ceiling: batched consume into decode + the engine, with no output,
      state or offset I/O at all;
  (g) Quix Streams 3.28 doing the same three tasks on the same topic (RocksDB state,
      changelog topics, its defaults), with client and broker CPU per 1,000 events.

Rates (b) and (c) are timed from 10% of the input committed to all of it, (g) from the first
processed event to the last, so start-up and group joins are not counted. Run:

    .venv/bin/python benchmarks/cloud_bench.py [--events N] [--quick]

Results are printed and written to benchmarks/results/cloud_bench.md.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

from walle.kafka import EmbeddedBroker, create_topics
from walle.streams import App, Engine, Event, decode_event, load_app
from walle.streams.cloud.settings import CloudSettings
from walle.streams.generator import generate_events
from walle.testing_cloud import CloudRun

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quix_peer import broker_cpu_seconds, run_quix

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


# -- (a) raw consume and (f) the engine's ceiling -------------------------------------------


def _consume_all(bootstrap: list[str], topic: str, partitions: int, total: int,
                 handle: Any = None) -> float:  # fmt: skip
    """Events/s of reading ``total`` records from the start, each batch given to ``handle``."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    from walle.kafka import consumer as make_consumer

    consumer = make_consumer(bootstrap, f"bench-{time.monotonic_ns()}")
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        seen, start = 0, None
        while seen < total:
            batch = consumer.consume(num_messages=1000, timeout=0.5)
            if batch and start is None:
                start = time.perf_counter()
            seen += len(batch)
            if handle is not None and batch:
                handle(batch)
        assert start is not None
        return total / (time.perf_counter() - start)
    finally:
        consumer.close()


def _engine_on_raw_batches(bootstrap: list[str], topic: str, partitions: int, total: int,
                           app: App) -> float:  # fmt: skip
    engine = Engine(app)

    def run(records: list[Any]) -> None:
        engine.process_many([decode_event(record.value()) for record in records])

    return _consume_all(bootstrap, topic, partitions, total, run)


# -- (b), (c): time workers from the first commit to the last, with their CPU -----------------


class Timed:
    """A rate and the CPU that workers and broker spent per 1,000 events over it."""

    def __init__(self, rate: float, events: int, client_s: float, broker_s: float) -> None:
        self.rate = rate
        self.client_ms = client_s * 1e6 / events
        self.broker_ms = broker_s * 1e6 / events


def _cpu(pids: list[int]) -> float:
    return sum(broker_cpu_seconds(pid) for pid in pids)


def _timed_processing(run: CloudRun, broker: EmbeddedBroker, start_workers: Any,
                      timeout_s: float = 600) -> Timed:  # fmt: skip
    """Events/s from 10% of the input committed to all of it (start-up and joins excluded)."""
    start_workers()
    pids = [worker.pid for worker in run.workers]
    broker_pid = broker.pid
    deadline = time.monotonic() + timeout_s
    first: tuple[float, int, float, float] | None = None
    while time.monotonic() < deadline:
        done, end = run.committed_fraction()
        now = time.perf_counter()
        if first is None and done >= end // 10:  # past start-up: the pipeline is full
            first = (now, done, _cpu(pids), broker_cpu_seconds(broker_pid))
        if done >= end:
            if first is None or now - first[0] < 1e-3:
                raise RuntimeError("too few events to time: raise --events")
            counted = end - first[1]
            client = _cpu(pids) - first[2]
            return Timed(counted / (now - first[0]), counted, client,
                         broker_cpu_seconds(broker_pid) - first[3])  # fmt: skip
        time.sleep(0.02)
    raise RuntimeError("the workers did not finish in time")


def _plain_faust_app(app: App, settings: CloudSettings) -> Any:
    """A faust app with the worker's broker settings, in its own process group."""
    import tempfile

    import faust

    os.setsid()
    return faust.App(
        settings.resolved_app_id(app.name), broker=settings.broker,
        store="memory://", web_enabled=False, topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest", broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_s, key_serializer="raw",
        value_serializer="raw", producer_acks=-1, datadir=tempfile.mkdtemp(prefix="faust-"),
    )  # fmt: skip


def _run_faust_worker(faust_app: Any) -> None:
    import faust

    worker = faust.Worker(faust_app, loglevel="ERROR", quiet=True)  # no per-batch warnings
    worker.spinner = None  # faust's spinner puts the root logger at DEBUG
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

    from walle.kafka import sync_producer as make_producer
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


def _with_scraper(run: CloudRun, timed: Any) -> Timed:
    """Run ``timed()`` with the worker serving /metrics and a scraper reading it every second."""
    from urllib.request import urlopen

    from walle.kafka.embedded import _free_port

    port = _free_port("127.0.0.1")
    run.settings = run.settings.model_copy(update={"metrics_port": port})
    stop = threading.Event()

    def scrape() -> None:
        while not stop.wait(1.0):
            with contextlib.suppress(OSError):  # not serving yet
                urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()

    scraper = threading.Thread(target=scrape, daemon=True)
    scraper.start()
    try:
        return timed()
    finally:
        stop.set()
        scraper.join()


def _quix_row(broker: EmbeddedBroker, events: list[Event], app: App) -> Any:
    with CloudRun(app, broker) as run:
        run.produce(events)
        return run_quix(run.bootstrap[0], run.settings.input_topic, 4, len(events),
                        f"quix-out-{run.settings.app_id}", broker_pid=broker.pid)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 180,000: at ~70,000 events/s a 60,000-event run lasts under a second, too short to
    # time two workers whose group join and recovery overlap its start.
    parser.add_argument("--events", type=int, default=180_000)
    parser.add_argument("--quick", action="store_true", help="10,000 events")
    args = parser.parse_args()
    total = 10_000 if args.quick else args.events
    app = examples_app()
    events = bench_events(total)
    naive_events = events[: min(len(events), 10_000)]
    lines = [
        f"events: {len(events)} from 40 devices; app: {len(app.plans)} tasks "
        f"({', '.join(p.name for p in app.plans)}); 4 partitions; embedded broker (Tansu); "
        f"(c) on the first {len(naive_events)}"
    ]

    with EmbeddedBroker() as broker:
        with CloudRun(app, broker) as run:
            run.produce(events)
            raw = _consume_all(run.bootstrap, run.settings.input_topic, 4, len(events))
            bound = _engine_on_raw_batches(run.bootstrap, run.settings.input_topic, 4,
                                           len(events), app)  # fmt: skip
            one = _timed_processing(run, broker, run.start_worker)
        with CloudRun(app, broker) as pair_run:
            pair_run.produce(events)
            pair = _timed_processing(
                pair_run, broker, lambda: [pair_run.start_worker() for _ in range(2)]
            )
        with CloudRun(app, broker) as scraped_run:
            scraped_run.produce(events)
            scraped = _with_scraper(scraped_run, lambda: _timed_processing(
                scraped_run, broker, scraped_run.start_worker))  # fmt: skip
        quix = _quix_row(broker, events, app)
        with CloudRun(app, broker) as naive_run:
            changelog = f"{naive_run.settings.app_id}-naive-state-changelog"
            create_topics(naive_run.bootstrap, {changelog: 4})
            naive_run.produce(naive_events)
            naive = _timed_processing(
                naive_run, broker, lambda: _start_in_fork(naive_run, app, _naive_worker)
            )
        with CloudRun(app, broker) as live:
            live.start_worker()
            live.produce(events[:200])
            live.wait_processed()
            latencies = _latencies(live, app, events[:200], events[200:2200], rate=1000.0)

    quix_client = quix.per_1000(quix.client_cpu_s)
    quix_broker = quix.per_1000(quix.broker_cpu_s)
    lines += [
        f"(a) raw confluent-kafka consume:   {raw:12,.0f} events/s (the client's limit)",
        f"(b) walle worker, 1 worker:        {one.rate:12,.0f} events/s = "
        f"{one.rate / bound:.0%} of (f) (target >= 50%), {one.rate / quix.events_per_s:.2f}x "
        f"Quix (g) (target >= 2x)",
        f"    CPU per 1,000 events: worker {one.client_ms:.0f} ms, broker {one.broker_ms:.1f} ms",
        f"    with /metrics served and scraped every second: {scraped.rate:,.0f} events/s = "
        f"{scraped.rate / one.rate:.2f}x (target >= 0.98x)",
        f"    2 workers (this machine has {os.cpu_count()} cores, shared with the broker): "
        f"{pair.rate:,.0f} events/s = {pair.rate / one.rate:.2f}x 1 worker (target >= 1.5x)",
        f"(c) naive faust agent:             {naive.rate:12,.0f} events/s; (b)/(c) = "
        f"{one.rate / naive.rate:.1f}x",
        f"(d) produce->output latency at 1,000 events/s: "
        f"p50 {_percentile(latencies, 0.5) * 1e3:.1f} ms, "
        f"p99 {_percentile(latencies, 0.99) * 1e3:.1f} ms over {len(latencies)} outputs "
        f"(target p99 <= 150 ms)",
        f"(f) consume + decode + engine, no I/O: {bound:8,.0f} events/s = {bound / raw:.1%} of (a)",
        f"(g) Quix Streams {quix_version()}, same 3 tasks: {quix.events_per_s:8,.0f} events/s; "
        f"CPU per 1,000 events: client {quix_client:.0f} ms, broker {quix_broker:.1f} ms; "
        f"outputs {dict(sorted(quix.outputs.items()))}",
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


def quix_version() -> str:
    from importlib.metadata import version

    return version("quixstreams")


if __name__ == "__main__":
    main()

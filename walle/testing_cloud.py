"""Run an App on the cloud runtime over a broker, for parity tests and benchmarks.

``run_on_cloud(app, events, broker)`` is the cloud half of walle.testing's parity check:
it produces the events to a fresh input topic keyed by device id, runs ``workers`` cloud
workers (forked processes, so an App built in the caller works as is), waits until the
consumer group has committed every input offset (outputs are acknowledged before that),
and returns the outputs read back from the output topic. ``CloudRun`` is the same with
its steps exposed, for fault tests (kill a worker, add bad messages).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from walle.errors import BrokerError
from walle.kafka import Record, read_to_end, sync_producer
from walle.kafka import consumer as make_consumer
from walle.streams.app import App
from walle.streams.cloud.settings import CloudSettings
from walle.streams.cloud.worker import declare_topics, run_worker
from walle.streams.events import Event
from walle.streams.results import Output

_POLL_S = 0.1


def _broker_url(broker: Any) -> str:
    return broker if isinstance(broker, str) else broker.url


def _fork_entry(app: App, settings: CloudSettings) -> None:
    os.setsid()  # its own process group: killing it never reaches the caller
    run_worker(app, settings)


@dataclass
class CloudRun:
    """One cloud deployment of ``app`` on ``broker`` with its own topics and group id.

    With ``app_path`` set, workers are ``walle cloud worker`` subprocesses loading that file
    (the real CLI); otherwise forked processes running ``app``.
    """

    app: App
    broker: Any
    partitions: int = 4
    app_path: Path | None = None
    logdir: Path | None = None  # worker logs (app_path workers); default: a temp folder
    batch_size: int = 1000
    exactly_once: bool = False
    settings: CloudSettings = field(init=False)
    workers: list[Any] = field(default_factory=list, init=False)
    _input_ends: dict[int, int] = field(default_factory=dict, init=False)
    logs: list[Path] = field(default_factory=list, init=False)
    _observer: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        run_id = uuid.uuid4().hex[:10]
        tmp = Path(os.environ.get("TMPDIR", "/tmp"))
        self._logdir = self.logdir or tmp / f"walle-{run_id}"
        self.settings = CloudSettings(
            broker=_broker_url(self.broker),
            app_id=f"walle-{self.app.name}-{run_id}",
            input_topic=f"events-{run_id}",
            output_topic=f"outputs-{run_id}",
            dead_letter_topic=f"events-dead-{run_id}",
            late_topic=f"outputs-late-{run_id}",
            partitions=self.partitions,
            batch_size=self.batch_size,
            exactly_once=self.exactly_once,
        )
        declare_topics(self.app, self.settings)

    @property
    def bootstrap(self) -> list[str]:
        from walle.kafka import parse_broker_url

        return parse_broker_url(self.settings.broker)

    # -- input -----------------------------------------------------------------------------

    def produce(self, events: Iterable[Event]) -> int:
        """Send events keyed by device id, in order; returns how many."""
        return self.produce_raw((e.device_id.encode(), e.to_json().encode()) for e in events)

    def produce_raw(self, messages: Iterable[tuple[bytes | None, bytes | None]]) -> int:
        """Send raw (key, value) messages to the input topic (bad ones included)."""
        producer = sync_producer(self.bootstrap, linger_ms=20, batch_size=256 * 1024)
        futures = []
        try:
            for key, value in messages:
                futures.append(producer.send(self.settings.input_topic, key=key, value=value))
            producer.flush(timeout=60)
            for future in futures:
                meta = future.get(timeout=10)
                end = max(self._input_ends.get(meta.partition, 0), meta.offset + 1)
                self._input_ends[meta.partition] = end
        finally:
            producer.close(timeout=5)
        return len(futures)

    # -- workers ---------------------------------------------------------------------------

    def start_worker(self) -> Any:
        """Start one more worker; returns its process handle."""
        if self.app_path is not None:
            self._logdir.mkdir(parents=True, exist_ok=True)
            log_path = self._logdir / f"worker-{len(self.logs)}.log"
            self.logs.append(log_path)
            with log_path.open("ab") as log:
                worker: Any = subprocess.Popen(
                    [*_walle_command(), "--log-level", "INFO", "cloud", "worker",
                     str(self.app_path), *self.worker_flags()],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
        else:
            worker = multiprocessing.get_context("fork").Process(
                target=_fork_entry, args=(self.app, self.settings), daemon=True
            )
            worker.start()
        self.workers.append(worker)
        return worker

    def worker_flags(self) -> list[str]:
        """The `walle cloud worker` flags that reproduce these settings."""
        s = self.settings
        return [
            "--broker", s.broker, "--app-id", str(s.app_id),
            "--input-topic", s.input_topic, "--output-topic", s.output_topic,
            "--dead-letter-topic", s.dead_letter_topic, "--late-topic", s.late_topic,
            "--partitions", str(s.partitions), "--batch-size", str(s.batch_size),
            *(["--exactly-once"] if s.exactly_once else []),
            *(["--metrics-port", str(s.metrics_port)] if s.metrics_port else []),
            "--idle-timeout-ms", str(s.idle_timeout_ms),
            "--fetch-max-wait-ms", str(s.fetch_max_wait_ms),
            "--session-timeout-ms", str(max(1, round(s.session_timeout_s * 1000))),
        ]  # fmt: skip

    def kill_worker(self, worker: Any) -> None:
        """SIGKILL a worker (its whole process group) and wait for it."""
        try:
            os.killpg(worker.pid, signal.SIGKILL)
        except ProcessLookupError:  # not yet its own group leader, or already gone
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)
        if isinstance(worker, subprocess.Popen):
            worker.wait(timeout=10)
        else:
            worker.join(timeout=10)
        self.workers.remove(worker)

    def close(self) -> None:
        """Kill every worker still running."""
        for worker in list(self.workers):
            self.kill_worker(worker)
        if self._observer is not None:
            self._observer.close()
            self._observer = None

    def __enter__(self) -> CloudRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- progress and output ---------------------------------------------------------------

    def committed_fraction(self) -> tuple[int, int]:
        """(committed, end): summed over the input partitions, for the worker group.

        The end is the larger of the reported end and the acknowledged offsets of what was
        produced here: the embedded broker under-reports end offsets.
        """
        from confluent_kafka import TopicPartition

        if self._observer is None:  # same group id, never subscribes: reads commits only
            self._observer = make_consumer(self.bootstrap, str(self.settings.app_id))
        topic = self.settings.input_topic
        parts = [TopicPartition(topic, p) for p in range(self.partitions)]
        committed = self._observer.committed(parts, timeout=10)
        end = 0
        for tp in parts:
            reported = self._observer.get_watermark_offsets(tp, timeout=10)[1]
            end += max(reported, self._input_ends.get(tp.partition, 0))
        return sum(max(tp.offset, 0) for tp in committed), end

    def wait_processed(self, timeout_s: float = 90.0) -> None:
        """Block until the group committed every input offset; BrokerError after timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            committed, end = self.committed_fraction()
            if committed >= end:
                return
            for worker in self.workers:
                if not _alive(worker):
                    raise BrokerError(f"cloud worker {worker.pid} exited before the end")
            time.sleep(_POLL_S * 3)
        committed, end = self.committed_fraction()
        tails = "".join(
            f"\n--- {path} ---\n" + path.read_text(errors="replace")[-3000:] for path in self.logs
        )
        raise BrokerError(
            f"cloud workers committed {committed}/{end} offsets in {timeout_s}s{tails}"
        )

    def read_topic(self, topic: str, partitions: int | None = None) -> list[Record]:
        """Every record of ``topic`` from the beginning to its end, in partition order."""
        count = self.partitions if partitions is None else partitions
        return read_to_end(self.bootstrap, topic, partitions=count)

    def outputs(self) -> list[Output]:
        """Every output on the output topic (re-sent copies included), in topic order."""
        records = self.read_topic(self.settings.output_topic)
        return [Output.from_json(m.value) for m in records if m.value is not None]

    def dead_letters(self) -> list[Any]:
        """Messages on the dead-letter topic."""
        return self.read_topic(self.settings.dead_letter_topic, 1)


def dedupe_outputs(outputs: Sequence[Output]) -> list[Output]:
    """Drop re-sent copies: an output whose key and value were already seen."""
    seen: set[tuple[str, str]] = set()
    unique = []
    for output in outputs:
        mark = (output.key, output.to_json())
        if mark not in seen:
            seen.add(mark)
            unique.append(output)
    return unique


def run_on_cloud(
    app: App, events: Iterable[Event], broker: Any, workers: int = 1, *, partitions: int = 4
) -> list[Output]:
    """Run ``app`` over ``events`` on the cloud runtime; the outputs, re-sent copies dropped.

    ``broker`` is an EmbeddedBroker or a ``kafka://`` URL.
    """
    with CloudRun(app, broker, partitions=partitions) as run:
        for _ in range(workers):
            run.start_worker()
        run.produce(events)
        run.wait_processed()
        return dedupe_outputs(run.outputs())


def _walle_command() -> list[str]:
    script = Path(sys.executable).with_name("walle")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from walle.cli import main; main()"]


def _alive(worker: Any) -> bool:
    if isinstance(worker, subprocess.Popen):
        return worker.poll() is None
    return bool(worker.is_alive())

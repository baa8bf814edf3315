"""Cloud faults: SIGKILLed workers recover state from the changelog, a worker joining
mid-stream takes partitions over, bad messages are dead-lettered with reason, partition and
offset while good ones go on, and a changelog record that is not walle state is refused
without running anything."""

from __future__ import annotations

import base64
import json
import os
import pickle
import re
from collections import Counter
from pathlib import Path

import pytest

from tests._wait import wait_until
from walle.kafka import sync_producer
from walle.streams import Engine, load_app
from walle.streams.generator import generate_events
from walle.testing_cloud import CloudRun, dedupe_outputs

APP_PATH = Path(__file__).resolve().parents[3] / "examples" / "item_page_view.py"


def _expected(app, events) -> Counter[str]:
    return Counter(output.to_json() for output in Engine(app).process_many(events).outputs)


def test_killed_worker_recovers_state_from_the_changelog(broker, tmp_path) -> None:
    app = load_app(APP_PATH)
    events = generate_events(devices=16, sessions=3, seed=5, out_of_order_rate=0.05)
    thirds = [events[: len(events) // 3], events[len(events) // 3 : 2 * len(events) // 3],
              events[2 * len(events) // 3 :]]  # fmt: skip
    with CloudRun(app, broker, app_path=APP_PATH, logdir=tmp_path / "workers") as run:
        first = run.start_worker()
        run.start_worker()
        run.produce(thirds[0])
        run.wait_processed()
        # SIGKILL one of the two workers while the next third is arriving, then start a new
        # one: the survivor and the newcomer take over its partitions and resume each device
        # from the changelog at the committed offsets.
        run.produce(thirds[1][: len(thirds[1]) // 2])
        run.kill_worker(first)
        run.produce(thirds[1][len(thirds[1]) // 2 :])
        run.start_worker()
        run.produce(thirds[2])
        run.wait_processed(timeout_s=120)
        outputs = run.outputs()
        changelog = run.read_topic(run.settings.changelog_topic(app.name))
        logs = "".join(path.read_text() for path in run.logs)
    assert changelog, "device state must have gone through the changelog"
    recovered = [int(n) for n in re.findall(r"devices_recovered=(\d+)", logs)]
    assert max(recovered) > 0, "the newcomers must have recovered device state"
    assert Counter(output.to_json() for output in dedupe_outputs(outputs)) == _expected(app, events)
    assert len({output.key for output in dedupe_outputs(outputs)}) == len(
        dedupe_outputs(outputs)
    ), "a key must never carry two different values"


def test_bad_messages_go_to_the_dead_letter_topic(broker) -> None:
    app = load_app(APP_PATH)
    events = generate_events(devices=6, sessions=2, seed=9)
    bad = [
        (b"dev-00001", b"{not json"),
        (b"dev-00002", json.dumps({"device_id": "dev-00002", "seq": "x"}).encode()),
        (b"other", events[0].to_json().encode()),
        (b"dev-00003", None),
    ]
    middle = len(events) // 2
    with CloudRun(app, broker, partitions=2) as run:
        run.start_worker()
        run.produce(events[:middle])
        run.produce_raw(bad)
        run.produce(events[middle:])
        run.wait_processed()
        outputs = run.outputs()
        dead = [json.loads(message.value) for message in run.dead_letters()]
        inputs = run.read_topic(run.settings.input_topic, 2)
    assert Counter(o.to_json() for o in dedupe_outputs(outputs)) == _expected(app, events)
    where = {(m.partition, m.offset): m.value for m in inputs}
    assert sorted(base64.b64decode(d["raw_base64"]) for d in dead) == sorted(
        value or b"" for _, value in bad
    )
    for record in dead:
        assert (where[(record["partition"], record["offset"])] or b"") == base64.b64decode(
            record["raw_base64"]
        )
        assert record["topic"] == run.settings.input_topic and record["reason"]
    reasons = " ".join(d["reason"] for d in dead)
    assert "not valid JSON" in reasons and "'seq'" in reasons
    assert "not the event's device_id" in reasons and "empty message" in reasons


def test_a_worker_whose_app_changed_stops_with_the_reason(broker, tmp_path) -> None:
    """State in the changelog written by other tasks: the worker exits 1 naming why (it
    must not restart its agent in place and sit there with offsets stuck)."""
    examples = APP_PATH.parent
    first_app = load_app(APP_PATH)
    events = generate_events(devices=4, sessions=2, seed=1)
    half = len(events) // 2
    with CloudRun(first_app, broker, app_path=APP_PATH, logdir=tmp_path / "a") as first:
        first.produce(events[:half])
        worker = first.start_worker()
        first.wait_processed()
        first.kill_worker(worker)
        changed_path = examples / "clicks_per_category.py"
        changed = CloudRun(load_app(changed_path), broker, app_path=changed_path,
                           logdir=tmp_path / "b")  # fmt: skip
        changed.settings = first.settings  # same group, topics and changelog
        with changed:
            changed.produce(events[half:])
            stopped = changed.start_worker()
            assert stopped.wait(timeout=60) == 1
            log = changed.logs[-1].read_text()
            assert "its tasks changed" in log and "changelog" in log and "--app-id" in log


def test_a_worker_joining_mid_stream_takes_partitions_over(broker, tmp_path) -> None:
    app = load_app(APP_PATH)
    events = generate_events(devices=16, sessions=3, seed=8, out_of_order_rate=0.05)
    half = len(events) // 2
    with CloudRun(app, broker, app_path=APP_PATH, logdir=tmp_path) as run:
        run.start_worker()
        run.produce(events[:half])
        run.wait_processed()
        run.start_worker()  # a rebalance: the first worker hands over half its partitions
        rest = events[half:]
        run.produce(rest[: len(rest) // 4])  # taken by the first worker, or during the join
        wait_until(lambda: "partitions assigned" in run.logs[1].read_text(), 60, poll_s=0.05)
        run.produce(rest[len(rest) // 4 :])
        run.wait_processed(timeout_s=120)
        outputs = run.outputs()
        logs = [path.read_text() for path in run.logs]
    assert Counter(o.to_json() for o in dedupe_outputs(outputs)) == _expected(app, events)
    assert "partitions revoked" in logs[0] and "partitions assigned" in logs[1]
    for log in logs:  # what an operator sees at info level
        assert "worker ready" in log and "caught up" in log


def test_walle_outputs_prints_what_the_cloud_produced(broker, tmp_path) -> None:
    app = load_app(APP_PATH)
    events = generate_events(devices=4, sessions=2, seed=6)
    bad = [(b"dev-00001", b"{not json")]
    with CloudRun(app, broker, app_path=APP_PATH, logdir=tmp_path, partitions=2) as run:
        run.start_worker()
        run.produce(events)
        run.produce_raw(bad)
        run.wait_processed()
        url, s = run.settings.broker, run.settings
        printed = _walle("cloud", "outputs", "--broker", url, "--topic", s.output_topic, "--json",
                         "--limit", "100000")  # fmt: skip
        table = _walle("cloud", "outputs", "--broker", url, "--topic", s.output_topic)
        dead = _walle("cloud", "outputs", "--broker", url, "--topic", s.dead_letter_topic, "--side",
                      "dead")  # fmt: skip
    expected = sorted(o.to_json() for o in Engine(app).process_many(events).outputs)
    assert sorted(printed.splitlines()) == expected
    assert f"{len(expected)} outputs" in table and "item_view" in table
    assert "not valid JSON" in dead and f"{s.dead_letter_topic}" in dead


def _walle(*args: str) -> str:
    import subprocess
    import sys

    walle = Path(sys.executable).with_name("walle")
    done = subprocess.run([str(walle), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


class _Payload:
    """A pickle of this runs ``open(path, "w")`` when unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize("kind", ["random", "pickle"])
def test_a_changelog_record_that_is_not_walle_state_is_refused(kind, broker, tmp_path) -> None:
    app = load_app(APP_PATH)
    events = generate_events(devices=4, sessions=1, seed=2)
    marker = tmp_path / "code-ran"
    blob = os.urandom(64) if kind == "random" else pickle.dumps(_Payload(marker))
    with CloudRun(app, broker, app_path=APP_PATH, logdir=tmp_path, partitions=1) as run:
        changelog = run.settings.changelog_topic(app.name)
        producer = sync_producer(run.bootstrap)
        meta = producer.send(changelog, key=events[0].device_id.encode(), value=blob,
                             partition=0).get(timeout=10)  # fmt: skip
        producer.close()
        run.produce(events)
        worker = run.start_worker()
        assert worker.wait(timeout=60) == 1
        log = run.logs[-1].read_text()
    assert (f"changelog {changelog}[0]@{meta.offset}" in log and "StateError" in log) or (
        f"{changelog}[0]@{meta.offset}" in log
    ), log[-2000:]
    assert not marker.exists(), "decoding state must never run code"


def test_the_exactly_once_mode_runs_batches_as_transactions(broker, tmp_path) -> None:
    """Outputs, states and offsets per batch in one transaction. The embedded broker accepts
    transactions but does not hide aborted records (tests/unit/cloud), so a kill test of this
    mode needs Apache Kafka; this checks the transactional path end to end."""
    app = load_app(APP_PATH)
    events = generate_events(devices=8, sessions=2, seed=4)
    half = len(events) // 2
    with CloudRun(app, broker, app_path=APP_PATH, logdir=tmp_path, exactly_once=True) as run:
        worker = run.start_worker()
        run.produce(events[:half])
        run.wait_processed()
        run.kill_worker(worker)
        run.start_worker()  # recovers the transactional state written by the first
        run.produce(events[half:])
        run.wait_processed()
        outputs = run.outputs()
    assert Counter(o.to_json() for o in dedupe_outputs(outputs)) == _expected(app, events)


def test_the_worker_metrics_move_as_the_run_does(broker, tmp_path) -> None:
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    from walle.kafka.embedded import _free_port

    app = load_app(APP_PATH)
    events = generate_events(devices=4, sessions=2, seed=12)
    port = _free_port("127.0.0.1")
    with CloudRun(app, broker, app_path=APP_PATH, logdir=tmp_path, partitions=2) as run:
        run.settings = run.settings.model_copy(update={"metrics_port": port})
        run.start_worker()
        run.produce(events)
        run.produce_raw([(b"dev-00001", b"{not json")])
        run.wait_processed()
        url = f"http://127.0.0.1:{port}/metrics"
        wait_until(lambda: "walle_worker_devices 4.0" in urlopen(url, timeout=5).read().decode(),
                   10, poll_s=0.05)  # fmt: skip
        text = urlopen(url, timeout=5).read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    expected = Engine(app).process_many(events).outputs
    assert samples[("walle_worker_records_total", ())] == len(events) + 1
    assert samples[("walle_worker_outputs_total", ())] == len(expected)
    assert samples[("walle_worker_dead_letters_total", (("source", "bad_message"),))] == 1
    assert samples[("walle_worker_assigned_partitions", ())] == 2
    assert samples[("walle_worker_batch_seconds_count", ())] >= 1
    assert {labels for name, labels in samples if name == "walle_worker_consumer_lag_records"} == {
        (("partition", "0"),),
        (("partition", "1"),),
    }


def test_the_worker_closes_windows_of_quiet_devices(broker) -> None:
    """A device quiet for idle_timeout_ms (wall-clock) has its windows closed, as on the
    device's live runtime: the last tumbling window of each device comes out without any
    later event."""
    from walle.streams import App, Tumbling, count
    from walle.streams.engine import END_OF_LOG_MS

    app = App("idle", out_of_orderness_ms=0)
    app.stream("n").window(Tumbling(100)).aggregate(n=count())
    events = generate_events(devices=3, sessions=1, seed=3)
    engine = Engine(app)
    expected = engine.process_many(events).outputs + engine.advance_to(END_OF_LOG_MS).outputs
    assert len(expected) > len(Engine(app).process_many(events).outputs)
    with CloudRun(app, broker, partitions=2) as run:
        run.settings = run.settings.model_copy(update={"idle_timeout_ms": 500})
        run.start_worker()
        run.produce(events)
        run.wait_processed()
        wait_until(lambda: len(dedupe_outputs(run.outputs())) >= len(expected), 30, poll_s=0.05)
        outputs = dedupe_outputs(run.outputs())
    assert Counter(o.to_json() for o in outputs) == Counter(o.to_json() for o in expected)


def test_only_quiet_devices_have_their_windows_closed(broker) -> None:
    """Devices are visited oldest arrival first: a device that keeps sending keeps its window
    open while the quiet ones, which arrived before and after it, are closed; it closes once
    it stops too."""
    import time

    from walle.streams import App, Event, Tumbling, count

    app = App("quiet", out_of_orderness_ms=0)
    app.stream("n").window(Tumbling(1_000)).aggregate(n=count())  # [1000, 2000): events stay in

    def event(device: str, seq: int) -> Event:
        return Event(device, seq, 1_000 + seq, "click", "item", {})

    with CloudRun(app, broker, partitions=1) as run:
        # one idle step moves a quiet device's watermark past 2000, closing its window
        run.settings = run.settings.model_copy(update={"idle_timeout_ms": 1_500})
        run.start_worker()
        run.produce([event("quiet-1", 1), event("busy", 1), event("quiet-2", 1)])
        closed: set[str] = set()
        seq = 1
        deadline = time.monotonic() + 30
        while closed != {"quiet-1", "quiet-2"}:  # busy sends every 100 ms meanwhile
            assert time.monotonic() < deadline, closed
            seq += 1
            run.produce([event("busy", seq)])
            time.sleep(0.1)  # the busy device's pace, not a synchronisation
            closed = {o.device_id for o in run.outputs()}
            assert "busy" not in closed
        wait_until(lambda: "busy" in {o.device_id for o in run.outputs()}, 30, poll_s=0.05)
        outputs = dedupe_outputs(run.outputs())
    assert sorted((o.device_id, o.value["n"]) for o in outputs) == [
        ("busy", seq),
        ("quiet-1", 1),
        ("quiet-2", 1),
    ]

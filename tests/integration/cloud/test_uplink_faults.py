"""Uplink faults on a real broker: broker down, sender SIGKILLed, outputs too large to send."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from kafka import KafkaConsumer

from tests._wait import wait_until
from walle.errors import BrokerError
from walle.kafka import EmbeddedBroker, create_topics
from walle.streams.device.log import EventLog, LogSettings
from walle.streams.uplink import (
    HEADROOM_BYTES,
    MAX_REQUEST_BYTES,
    OutputDeduplicator,
    UplinkSender,
    enqueue,
    pending,
)

_WALLE = str(Path(sys.executable).with_name("walle"))


class _Out:
    def __init__(self, index: int):
        self.key = f"task|dev-1|w{index}"
        self.index = index

    def to_json(self) -> str:
        return json.dumps({"index": self.index}, sort_keys=True)


def _enqueue_range(db: Path, start: int, stop: int, per_txn: int = 10) -> None:
    conn = sqlite3.connect(db, timeout=5)
    try:
        for first in range(start, stop, per_txn):
            with conn:
                enqueue(conn, [_Out(i) for i in range(first, min(first + per_txn, stop))])
    finally:
        conn.close()


def _queued(db: Path) -> int:
    conn = sqlite3.connect(db, timeout=5)
    try:
        return len(pending(conn))
    finally:
        conn.close()


def _collect(bootstrap: str, topic: str, dedup: OutputDeduplicator, want: int, limit_s: float):
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    deadline = time.monotonic() + limit_s
    try:
        while len(dedup.outputs) < want and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                for message in records:
                    where = f"{topic}@{message.partition}:{message.offset}"
                    dedup.accept(message.value, where=where)
    finally:
        consumer.close()


def _wait_empty(db: Path, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while _queued(db) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _queued(db) == 0


def test_outputs_survive_a_broker_outage_exactly_once(tmp_path) -> None:
    db = tmp_path / "device.db"
    dedup = OutputDeduplicator()
    with EmbeddedBroker() as broker:
        # ack timeout well under the outage: a send still queued when the broker comes back
        # would reach it before the topic is re-created (Tansu then serves no records).
        sender = UplinkSender(db, broker.bootstrap, "uplink", batch_size=25, ack_timeout_s=0.5)
        failures = [0]  # BrokerErrors the sender met: it keeps trying and failing meanwhile
        send_pending = sender.send_pending

        def counted() -> int:
            try:
                return send_pending()
            except BrokerError:
                failures[0] += 1
                raise

        sender.send_pending = counted  # type: ignore[method-assign]
        stop = threading.Event()
        thread = threading.Thread(target=sender.run, args=(stop,), kwargs={"retry_s": 0.2})
        thread.start()
        try:
            _enqueue_range(db, 0, 100)
            _wait_empty(db, 20)
            _collect(broker.bootstrap, "uplink", dedup, 100, 20)
            assert len(dedup.outputs) == 100

            broker.stop()  # memory storage: what the broker held is gone, as after a crash
            _enqueue_range(db, 100, 200)
            wait_until(lambda: failures[0] >= 1, 20, "the sender to fail")
            assert _queued(db) == 100

            broker.start()
            _enqueue_range(db, 200, 300)
            _wait_empty(db, 30)
            _collect(broker.bootstrap, "uplink", dedup, 300, 20)
        finally:
            stop.set()
            thread.join(timeout=30)
            sender.close()
    assert sorted(dedup.outputs) == sorted(_Out(i).key for i in range(300))
    assert all(dedup.outputs[_Out(i).key] == {"index": i} for i in range(300))


def test_sigkilled_sender_loses_nothing(tmp_path, broker) -> None:
    db = tmp_path / "device.db"
    topic = f"uplink-kill-{os.getpid()}-{time.monotonic_ns()}"
    create_topics(broker.bootstrap, {topic: 1})
    total = 3000
    _enqueue_range(db, 0, total, per_txn=500)
    command = [
        _WALLE,
        "device",
        "uplink",
        "--db",
        str(db),
        "--broker",
        broker.url,
        "--topic",
        topic,
    ]
    sender = subprocess.Popen([*command, "--batch-size", "10"], start_new_session=True)
    try:  # kill once the sender has had some batches acknowledged (rows deleted)
        deadline = time.monotonic() + 30
        while _queued(db) == total and time.monotonic() < deadline:
            time.sleep(0.002)
    finally:
        os.killpg(sender.pid, signal.SIGKILL)
        sender.wait(timeout=10)
    left = _queued(db)
    assert 0 < left < total, "the kill should land mid-send"

    finished = subprocess.run([*command, "--once"], capture_output=True, timeout=60, check=True)
    assert b"sent" in finished.stdout
    assert _queued(db) == 0
    dedup = OutputDeduplicator()
    _collect(broker.bootstrap, topic, dedup, total, 20)
    assert sorted(dedup.outputs) == sorted(_Out(i).key for i in range(total))


class _Embedding:
    """An output of about ``size`` bytes of JSON: an embedding of random floats, or a blob."""

    def __init__(self, index: int, size: int):
        rng = random.Random(index)
        self.key = f"embed|dev-1|w{index}"
        if size > 100_000:  # incompressible, so even compressed it is over any message
            self.body = {
                "index": index,
                "blob": base64.b64encode(rng.randbytes(size * 3 // 4)).decode(),
            }
        else:
            self.body = {
                "index": index,
                "vector": [round(rng.random(), 6) for _ in range(size // 10)],
            }

    def to_json(self) -> str:
        return json.dumps(self.body, sort_keys=True)


def _enqueue_embeddings(db: Path, outputs: list[_Embedding]) -> None:
    conn = sqlite3.connect(db, timeout=5)
    try:
        with conn:
            enqueue(conn, outputs)
    finally:
        conn.close()


def _embeddings_with_a_huge_one(huge_at: int) -> list[_Embedding]:
    outputs = [_Embedding(index, 9_400) for index in range(500)]
    outputs.insert(huge_at, _Embedding(9_999, 2_000_000))
    return outputs


def test_an_output_too_large_for_any_message_is_dead_lettered(tmp_path, broker) -> None:
    db, topic = tmp_path / "device.db", f"uplink-size-{os.getpid()}-{time.monotonic_ns()}"
    outputs = _embeddings_with_a_huge_one(huge_at=137)
    huge = outputs[137]
    assert 9_000 < len(outputs[0].to_json()) < 10_000
    _enqueue_embeddings(db, outputs)
    sender = UplinkSender(db, broker.bootstrap, topic, batch_size=500, ack_timeout_s=5)
    try:
        started = time.monotonic()
        assert sender.send_pending() == 500
        assert time.monotonic() - started < 30
        assert sender.dead_lettered == 1
        assert sender.sent_batches >= 2  # 500 x 9.4 KB do not fit one 1 MB message
    finally:
        sender.close()
    assert _queued(db) == 0
    with EventLog(db, LogSettings(read_only=True)) as log:
        [dead] = log.dead_letters()
    assert (dead.source, dead.raw) == (f"uplink:{topic}", huge.to_json())
    assert huge.key in dead.location
    assert f"output of {len(huge.to_json()):,} bytes" in dead.reason
    assert f"message limit of {MAX_REQUEST_BYTES - HEADROOM_BYTES:,} bytes" in dead.reason

    dedup = OutputDeduplicator()
    _collect(broker.bootstrap, topic, dedup, 500, 30)
    assert dedup.duplicates == 0
    assert dedup.outputs == {out.key: out.body for out in outputs if out is not huge}


def test_a_refused_message_is_split_not_retried(tmp_path, broker) -> None:
    """A limit above what the producer accepts: each refusal halves it, nothing loops."""
    db, topic = tmp_path / "device.db", f"uplink-refused-{os.getpid()}-{time.monotonic_ns()}"
    outputs = _embeddings_with_a_huge_one(huge_at=0)
    _enqueue_embeddings(db, outputs)
    sender = UplinkSender(db, broker.bootstrap, topic, ack_timeout_s=5)
    sender.limit_bytes = 8 * MAX_REQUEST_BYTES  # as if the broker's limit were lower than ours
    try:
        assert sender.send_pending() == 500
        assert sender.dead_lettered == 1
        assert sender.limit_bytes <= MAX_REQUEST_BYTES
    finally:
        sender.close()
    with EventLog(db, LogSettings(read_only=True)) as log:
        [dead] = log.dead_letters()
    assert dead.raw == outputs[0].to_json()
    dedup = OutputDeduplicator()
    _collect(broker.bootstrap, topic, dedup, 500, 30)
    assert dedup.outputs == {out.key: out.body for out in outputs[1:]}

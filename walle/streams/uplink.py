"""The device-to-cloud uplink: a durable outbox in the device database, shipped to Kafka.

The device runtime calls ``enqueue(conn, outputs)`` inside the transaction that commits its
checkpoint, so an output is in the outbox if and only if the state that produced it is
committed. ``UplinkSender`` reads the outbox in id order, packs a batch into one
zstd-compressed Kafka message (acks=all), and deletes the rows only after the broker
acknowledged the message. While the broker is unreachable the rows stay; they are sent on
reconnect. A kill between the acknowledgement and the delete re-sends the batch, so the
cloud side (``OutputDeduplicator``) keeps the first copy of each output key: at-least-once
delivery, exactly-once after deduplication.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import zstandard

from walle.errors import BrokerError, StorageError, ValidationError
from walle.kafka import create_topics
from walle.logging import get_logger

_log = get_logger("uplink")

OUTBOX_TABLE = "uplink_outbox"
BATCH_FORMAT = 1
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {OUTBOX_TABLE} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    value TEXT NOT NULL
)
"""


class KeyedOutput(Protocol):
    """What the outbox stores: an idempotent key and a canonical JSON value (engine Output)."""

    @property
    def key(self) -> str: ...

    def to_json(self) -> str: ...


class OutboxRow(NamedTuple):
    """One queued output: its outbox id, its output key and its JSON value."""

    id: int
    key: str
    value: str


def ensure_outbox(conn: sqlite3.Connection) -> None:
    """Create the outbox table if the database has none (safe inside a transaction)."""
    conn.execute(_SCHEMA)


def enqueue(conn: sqlite3.Connection, outputs: Iterable[KeyedOutput]) -> int:
    """Queue outputs in the caller's open transaction; the caller commits. Returns the count.

    Run it in the same transaction as the checkpoint that produced the outputs.
    """
    rows = [(output.key, output.to_json()) for output in outputs]
    if rows:
        ensure_outbox(conn)
        conn.executemany(f"INSERT INTO {OUTBOX_TABLE} (key, value) VALUES (?, ?)", rows)
    return len(rows)


def pending(conn: sqlite3.Connection, limit: int = -1) -> list[OutboxRow]:
    """The oldest ``limit`` queued outputs (all with -1), in enqueue order."""
    ensure_outbox(conn)
    cursor = conn.execute(
        f"SELECT id, key, value FROM {OUTBOX_TABLE} ORDER BY id LIMIT ?", (limit,)
    )
    return [OutboxRow(*row) for row in cursor]


def encode_batch(rows: list[OutboxRow], source: str) -> bytes:
    """One Kafka message value: zstd-compressed JSON of the rows and where they came from."""
    body = {
        "format": BATCH_FORMAT,
        "source": source,
        "outputs": [[row.key, row.value] for row in rows],
    }
    return zstandard.ZstdCompressor(level=3).compress(json.dumps(body).encode())


def decode_batch(value: bytes, *, where: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The (key, output dict) pairs of an uplink message; ValidationError when malformed."""
    try:
        body = json.loads(zstandard.ZstdDecompressor().decompress(value))
        if body.get("format") != BATCH_FORMAT:
            raise ValueError(f"unknown batch format {body.get('format')!r}")
        return [(str(key), json.loads(output)) for key, output in body["outputs"]]
    except (zstandard.ZstdError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValidationError(f"undecodable uplink batch: {exc}", where=where) from None


class OutputDeduplicator:
    """Cloud side: keeps the first copy of each output key, drops re-sent copies."""

    def __init__(self) -> None:
        self.outputs: dict[str, dict[str, Any]] = {}
        self.duplicates = 0

    def accept(self, value: bytes, *, where: str | None = None) -> list[tuple[str, dict]]:
        """Decode one uplink message; returns only the outputs not seen before."""
        fresh = []
        for key, output in decode_batch(value, where=where):
            if key in self.outputs:
                self.duplicates += 1
                continue
            self.outputs[key] = output
            fresh.append((key, output))
        return fresh


class UplinkSender:
    """Ships a device database's outbox to a Kafka topic, batch by batch.

    ``send_pending()`` drains what is queued now; ``run()`` keeps draining until stopped.
    """

    def __init__(
        self,
        db_path: str | Path,
        bootstrap: list[str] | str,
        topic: str,
        *,
        source: str = "device",
        batch_size: int = 500,
        ack_timeout_s: float = 10.0,
        partitions: int = 4,
    ):
        if batch_size < 1:
            raise ValidationError("batch_size must be at least 1", field="batch_size")
        self.db_path = Path(db_path)
        self.bootstrap = bootstrap
        self.topic = topic
        self.source = source
        self.batch_size = batch_size
        self.ack_timeout_s = ack_timeout_s
        self.partitions = partitions
        self.sent_batches = 0
        self._conn = _open(self.db_path)
        self._producer: Any = None

    def send_pending(self) -> int:
        """Send every queued output; returns how many were acknowledged and deleted.

        Raises BrokerError when the broker cannot be reached or does not acknowledge;
        the unsent rows stay in the outbox.
        """
        sent = 0
        for rows in self._batches():
            self._send_batch(rows)
            sent += len(rows)
        return sent

    def _batches(self) -> Iterator[list[OutboxRow]]:
        while rows := pending(self._conn, self.batch_size):
            yield rows

    def _send_batch(self, rows: list[OutboxRow]) -> None:
        from kafka.errors import KafkaError

        producer = self._connect()
        value = encode_batch(rows, self.source)
        try:
            producer.send(self.topic, key=self.source.encode(), value=value).get(
                timeout=self.ack_timeout_s
            )
        except KafkaError as exc:
            self._disconnect()
            raise BrokerError(
                f"uplink batch of {len(rows)} outputs to {self.topic!r} not acknowledged: {exc}"
            ) from exc
        with self._conn:
            self._conn.execute(
                f"DELETE FROM {OUTBOX_TABLE} WHERE id BETWEEN ? AND ?", (rows[0].id, rows[-1].id)
            )
        self.sent_batches += 1

    def _connect(self) -> Any:
        if self._producer is None:
            from walle.kafka import sync_producer

            # The broker may be a fresh one (embedded broker restarted): make sure the topic
            # exists with the partition count we mean before producing to it.
            create_topics(self.bootstrap, {self.topic: self.partitions})
            self._producer = sync_producer(
                self.bootstrap, retries=2, linger_ms=0, max_block_ms=int(self.ack_timeout_s * 1000)
            )
        return self._producer

    def _disconnect(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                # timeout=0 drops what it still holds instead of retrying it into whatever
                # broker answers next; the rows stay in the outbox and go again.
                producer.close(timeout=0)
            except Exception as exc:  # a producer already broken: nothing left to flush
                _log.debug("producer close failed", error=str(exc))

    def run(self, stop: threading.Event, *, poll_s: float = 0.2, retry_s: float = 0.5) -> None:
        """Drain the outbox until ``stop`` is set; on broker failure wait and retry."""
        while not stop.is_set():
            try:
                if self.send_pending() == 0:
                    stop.wait(poll_s)
            except BrokerError as exc:
                _log.warning("uplink waiting for the broker", error=str(exc))
                stop.wait(retry_s)

    def close(self) -> None:
        """Close the producer and the database connection."""
        self._disconnect()
        self._conn.close()


def _open(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, timeout=5.0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        ensure_outbox(conn)
        conn.commit()
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open the uplink outbox in {path}: {exc}") from exc
    return conn


def wait_until_empty(db_path: str | Path, timeout_s: float) -> bool:
    """True once the outbox of ``db_path`` is empty, False after ``timeout_s``."""
    conn = _open(Path(db_path))
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not pending(conn, 1):
                return True
            time.sleep(0.05)
        return False
    finally:
        conn.close()

"""The device-to-cloud uplink: a durable outbox in the device database, shipped to Kafka.

The device runtime calls ``enqueue(conn, outputs)`` inside the transaction that commits its
checkpoint, so an output is in the outbox if and only if the state that produced it is
committed. ``UplinkSender`` reads the outbox in id order, packs a batch into one
zstd-compressed Kafka message (acks=all), and deletes the rows only after the broker
acknowledged the message. A batch holds at most ``batch_size`` rows and, compressed, at most
the producer's request limit less some headroom for the record and request headers; an output
too large for any message moves, in one transaction, from the outbox to the ``dead_letters``
table with its size and the limit, and the outputs after it flow on. While the broker is
unreachable the rows stay; they are sent on reconnect. A kill between the acknowledgement and
the delete re-sends the batch, so the cloud side (``OutputDeduplicator``) keeps the first copy
of each output key: at-least-once delivery, exactly-once after deduplication.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import zstandard

from walle.errors import BrokerError, ValidationError
from walle.kafka import create_topics
from walle.logging import get_logger
from walle.streams.device.database import DeviceDatabase
from walle.streams.device.records import write_dead_letters
from walle.streams.device.schema import TABLES

_log = get_logger("uplink")

OUTBOX_TABLE = "uplink_outbox"
BATCH_FORMAT = 1
MAX_REQUEST_BYTES = 1_048_576
"""The producer's request limit unless told otherwise (kafka-python's ``max_request_size``)."""
HEADROOM_BYTES = 8 * 1024
"""Kept free under the request limit for the record batch, record and request headers."""
_READ_FACTOR = 8  # rows read per attempt: up to this many times the byte limit, uncompressed


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
    """Create the outbox table if the database has none (safe inside a transaction).

    A device database has it from the start (``walle.streams.device.schema``); this is for
    a connection to any other SQLite file.
    """
    conn.execute(TABLES[OUTBOX_TABLE])


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


class PackedBatch(NamedTuple):
    """The first ``rows`` rows of a read, and their encoded message ``value``.

    ``rows`` is 0 when even the first row alone is over the limit; ``value`` is then that
    row alone, encoded (its size goes into the dead-letter reason).
    """

    rows: int
    value: bytes


def pack_batch(rows: list[OutboxRow], source: str, limit: int) -> PackedBatch:
    """The longest prefix of ``rows`` whose encoded batch is at most ``limit`` bytes.

    Sizes are measured on the compressed message, by bisection over the prefix length.
    """
    value = encode_batch(rows, source)
    if len(value) <= limit:
        return PackedBatch(len(rows), value)
    fits, too_big, best = 0, len(rows), b""
    while too_big - fits > 1:
        middle = (fits + too_big) // 2
        candidate = encode_batch(rows[:middle], source)
        if len(candidate) <= limit:
            fits, best = middle, candidate
        else:
            too_big = middle
    if fits == 0:
        return PackedBatch(0, encode_batch(rows[:1], source))
    return PackedBatch(fits, best)


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

    def accept(self, value: bytes, *, where: str | None = None) -> list[tuple[str, dict[str, Any]]]:
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
    ``batch_size`` caps the rows of one message, ``max_request_bytes`` (the producer's
    ``max_request_size``) its bytes. When the broker refuses a message as too large (its own
    limit is lower), the byte limit is halved for this sender and the batch re-packed; a
    single output it refuses is dead-lettered. Neither case is retried as it was.
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
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ):
        if batch_size < 1:
            raise ValidationError("batch_size must be at least 1", field="batch_size")
        if max_request_bytes <= 2 * HEADROOM_BYTES:
            raise ValidationError(
                f"max_request_bytes must be over {2 * HEADROOM_BYTES}", field="max_request_bytes"
            )
        self.db_path = Path(db_path)
        self.bootstrap = bootstrap
        self.topic = topic
        self.source = source
        self.batch_size = batch_size
        self.ack_timeout_s = ack_timeout_s
        self.partitions = partitions
        self.max_request_bytes = max_request_bytes
        self.limit_bytes = max_request_bytes - HEADROOM_BYTES
        self.sent_batches = 0
        self.dead_lettered = 0
        self._store = DeviceDatabase(self.db_path)  # its tables include the outbox
        self._producer: Any = None

    def send_pending(self) -> int:
        """Send every queued output; returns how many were acknowledged and deleted.

        Raises BrokerError when the broker cannot be reached or does not acknowledge;
        the unsent rows stay in the outbox.
        """
        sent = 0
        while rows := self._read_rows():
            packed = pack_batch(rows, self.source, self.limit_bytes)
            if packed.rows == 0:
                self._dead_letter(rows[0], self._too_large_reason(rows[0], packed.value))
            elif self._send_batch(rows[: packed.rows], packed.value):
                sent += packed.rows
        return sent

    def _read_rows(self) -> list[OutboxRow]:
        """The oldest queued rows: ``batch_size`` at most, fewer once they are many bytes."""
        cursor = self._store.conn.execute(
            f"SELECT id, key, value FROM {OUTBOX_TABLE} ORDER BY id LIMIT ?", (self.batch_size,)
        )
        rows: list[OutboxRow] = []
        read_bytes = 0
        try:
            for row in cursor:
                rows.append(OutboxRow(*row))
                read_bytes += len(row[1]) + len(row[2])
                if read_bytes > self.limit_bytes * _READ_FACTOR:
                    break
        finally:
            cursor.close()
        return rows

    def _send_batch(self, rows: list[OutboxRow], value: bytes) -> bool:
        """Send one message; True once acknowledged and deleted, False if refused as too large.

        A refusal lowers the byte limit (or dead-letters a single output), so the next packing
        differs; any other failure is a BrokerError and the rows stay queued.
        """
        from kafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError

        producer = self._connect()
        try:
            producer.send(self.topic, key=self.source.encode(), value=value).get(
                timeout=self.ack_timeout_s
            )
        except (MessageSizeTooLargeError, RecordListTooLargeError) as exc:
            self._refused(rows, value, exc)
            return False
        except KafkaError as exc:
            self._disconnect()
            raise BrokerError(
                f"uplink batch of {len(rows)} outputs to {self.topic!r} not acknowledged: {exc}"
            ) from exc
        with self._store.transaction("delete sent outputs from the uplink outbox") as conn:
            conn.execute(
                f"DELETE FROM {OUTBOX_TABLE} WHERE id BETWEEN ? AND ?", (rows[0].id, rows[-1].id)
            )
        self.sent_batches += 1
        return True

    def _refused(self, rows: list[OutboxRow], value: bytes, exc: Exception) -> None:
        if len(rows) == 1:
            reason = (
                f"output of {len(rows[0].value):,} bytes ({len(value):,} compressed) refused"
                f" by the broker as too large ({type(exc).__name__}); raise the broker's"
                " message.max.bytes to send it"
            )
            self._dead_letter(rows[0], reason)
            return
        self.limit_bytes = max(min(self.limit_bytes, len(value)) // 2, 1)
        _log.warning(
            "uplink message refused as too large; smaller messages from now on",
            outputs=len(rows),
            bytes=len(value),
            limit_bytes=self.limit_bytes,
        )

    def _too_large_reason(self, row: OutboxRow, alone: bytes) -> str:
        limit = f"max_request_size {self.max_request_bytes:,} less {HEADROOM_BYTES:,} for headers"
        if self.limit_bytes < self.max_request_bytes - HEADROOM_BYTES:
            limit = "lowered after the broker refused larger messages"
        return (
            f"output of {len(row.value):,} bytes ({len(alone):,} compressed) is over the uplink"
            f" message limit of {self.limit_bytes:,} bytes ({limit}): no message can carry it"
        )

    def _dead_letter(self, row: OutboxRow, reason: str) -> None:
        """Move one output from the outbox to the dead-letter table, in one transaction."""
        where = f"{OUTBOX_TABLE} id {row.id} key {row.key}"
        with self._store.transaction("dead-letter an uplink output") as conn:
            record = (f"uplink:{self.topic}", where, _task(row), reason, row.value)
            write_dead_letters(conn, [record])
            conn.execute(f"DELETE FROM {OUTBOX_TABLE} WHERE id = ?", (row.id,))
        self.dead_lettered += 1
        _log.warning("uplink output dead-lettered", key=row.key, reason=reason)

    def _connect(self) -> Any:
        if self._producer is None:
            from walle.kafka import sync_producer

            # The broker may be a fresh one (embedded broker restarted): make sure the topic
            # exists with the partition count we mean before producing to it.
            create_topics(self.bootstrap, {self.topic: self.partitions})
            self._producer = sync_producer(
                self.bootstrap,
                retries=2,
                linger_ms=0,
                max_block_ms=int(self.ack_timeout_s * 1000),
                max_request_size=self.max_request_bytes,
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
        self._store.close()


def _task(row: OutboxRow) -> str | None:
    """The task named in an output's JSON, if it is readable."""
    try:
        task = json.loads(row.value).get("task")
    except (ValueError, AttributeError):
        return None
    return task if isinstance(task, str) else None


def wait_until_empty(db_path: str | Path, timeout_s: float) -> bool:
    """True once the outbox of ``db_path`` is empty, False after ``timeout_s``."""
    database = DeviceDatabase(db_path)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with database.reading("read the uplink outbox") as conn:
                if not pending(conn, 1):
                    return True
            time.sleep(0.05)
        return False
    finally:
        database.close()

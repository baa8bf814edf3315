"""The uplink outbox: enqueue inside the caller's transaction, batch encoding and sizing, dedup."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
import zstandard

from walle.errors import ValidationError
from walle.streams.uplink import (
    OutboxRow,
    OutputDeduplicator,
    decode_batch,
    encode_batch,
    enqueue,
    pack_batch,
    pending,
)


class _Out:
    def __init__(self, key: str, n: int):
        self.key = key
        self.n = n

    def to_json(self) -> str:
        return json.dumps({"key": self.key, "n": self.n}, sort_keys=True)


def test_enqueue_follows_the_callers_transaction(tmp_path) -> None:
    conn = sqlite3.connect(tmp_path / "device.db")
    with conn:
        conn.execute("CREATE TABLE checkpoint (offset INTEGER)")
    with pytest.raises(RuntimeError), conn:
        conn.execute("INSERT INTO checkpoint VALUES (1)")
        enqueue(conn, [_Out("a", 1), _Out("b", 2)])
        raise RuntimeError("crash before commit")
    assert pending(conn) == []
    assert conn.execute("SELECT COUNT(*) FROM checkpoint").fetchone()[0] == 0
    with conn:
        conn.execute("INSERT INTO checkpoint VALUES (2)")
        assert enqueue(conn, [_Out("a", 1), _Out("b", 2)]) == 2
    assert [(row.key, json.loads(row.value)["n"]) for row in pending(conn)] == [("a", 1), ("b", 2)]
    assert [row.key for row in pending(conn, 1)] == ["a"]


def test_batch_round_trip_and_dedup() -> None:
    rows = [OutboxRow(index, f"k{index}", json.dumps({"v": index})) for index in range(5)]
    value = encode_batch(rows, "dev-1")
    assert decode_batch(value) == [(f"k{index}", {"v": index}) for index in range(5)]
    dedup = OutputDeduplicator()
    assert len(dedup.accept(value)) == 5
    assert dedup.accept(encode_batch([*rows[3:], OutboxRow(9, "k9", "{}")], "dev-1")) == [
        ("k9", {})
    ]
    assert dedup.duplicates == 2 and len(dedup.outputs) == 6


@pytest.mark.parametrize(
    "value",
    [b"plain bytes", zstandard.ZstdCompressor().compress(b"[1]"),
     zstandard.ZstdCompressor().compress(b'{"format": 99, "outputs": []}')],
)  # fmt: skip
def test_malformed_batch_is_a_validation_error(value: bytes) -> None:
    with pytest.raises(ValidationError, match="uplink@3:7: undecodable uplink batch"):
        decode_batch(value, where="uplink@3:7")


def _rows(sizes: list[int]) -> list[OutboxRow]:
    """Rows whose values are incompressible text of the given lengths."""
    return [
        OutboxRow(index, f"k{index}", json.dumps({"blob": os.urandom(size // 2).hex()}))
        for index, size in enumerate(sizes)
    ]


def test_pack_batch_takes_the_longest_prefix_under_the_limit() -> None:
    rows = _rows([10_000] * 40)
    assert pack_batch(rows, "dev-1", 1_000_000) == (40, encode_batch(rows, "dev-1"))
    packed = pack_batch(rows, "dev-1", 100_000)
    assert 0 < packed.rows < 40
    assert packed.value == encode_batch(rows[: packed.rows], "dev-1")
    assert len(packed.value) <= 100_000 < len(encode_batch(rows[: packed.rows + 1], "dev-1"))


def test_pack_batch_of_an_output_too_large_for_any_message_is_empty() -> None:
    rows = _rows([200_000, 1_000])
    packed = pack_batch(rows, "dev-1", 100_000)
    assert packed == (0, encode_batch(rows[:1], "dev-1"))
    assert len(packed.value) > 100_000

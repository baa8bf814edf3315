"""The agent's SSE parser: events split anywhere across chunks, oversize events skipped whole."""

from __future__ import annotations

import json

import pytest

from walle.deploy.sse import SseItem, SseParser


def _feed_in_pieces(parser: SseParser, stream: bytes, size: int) -> list[SseItem]:
    items: list[SseItem] = []
    for i in range(0, len(stream), size):
        items.extend(parser.feed(stream[i : i + size]))
    return items


@pytest.mark.parametrize("piece", [1, 3, 7, 64, 100_000])
def test_events_and_comments_across_any_chunking(piece):
    stream = b': keepalive\n\nevent: release\ndata: {"a": 1}\n\ndata: x\r\ndata: y\r\n\r\n'
    items = _feed_in_pieces(SseParser(1024), stream, piece)
    assert items == [
        SseItem("comment"),
        SseItem("event", data=b'{"a": 1}'),
        SseItem("event", data=b"x\ny"),
    ]


def test_oversize_event_skipped_whole_and_the_next_one_delivered():
    big = b"data: " + b"x" * 5000 + b"\n\n"
    stream = big + b"data: small\n\n"
    items = _feed_in_pieces(SseParser(1000), stream, 256)
    assert items[0].kind == "oversize" and items[0].data is None
    assert items[0].size >= 5000
    assert items[1:] == [SseItem("event", data=b"small")]


def test_oversize_over_several_data_lines():
    stream = b"data: " + b"a" * 600 + b"\ndata: " + b"b" * 600 + b"\n\ndata: ok\n\n"
    items = SseParser(1000).feed(stream)
    assert [i.kind for i in items] == ["oversize", "event"]
    assert items[1].data == b"ok"


def test_memory_held_stays_under_the_cap_for_an_endless_line():
    parser = SseParser(10_000)
    for _ in range(1000):  # 64 MB without a newline
        assert parser.feed(b"data: " + b"z" * 65_536) == []
        assert len(parser._line) <= 10_000 + 65_536 + 6
    assert parser.feed(b"\n\ndata: after\n\n")[-1] == SseItem("event", data=b"after")


def test_a_release_for_25000_devices_fits_the_default_cap():
    from walle.deploy.agent import AgentSettings

    ids = [f"device-{i:012d}" for i in range(25_000)]
    payload = json.dumps({"policy": {"targeting": {"devices": ids}}}).encode()
    assert len(payload) > 512 * 1024  # what used to kill aiohttp's line reader
    cap = AgentSettings(gateway_url="http://x", home="/tmp").max_notification_bytes
    items = _feed_in_pieces(SseParser(cap), b"data: " + payload + b"\n\n", 65_536)
    assert items == [SseItem("event", data=payload)]

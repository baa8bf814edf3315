"""A size-capped, incremental Server-Sent Events parser for the agent's notification stream.

aiohttp's line reader refuses a line longer than its buffer limit by raising, which ended
the agent: one large legitimate release (a device list of 25,000 ids is ~0.5 MiB on one
``data:`` line) crash-looped every device, since the gateway replays it on reconnect.
``SseParser`` is fed raw chunks as they arrive and never holds more than
``max_event_bytes`` (plus one chunk) of an event: an event over the cap is dropped whole
(the bytes up to the blank line that ends it are discarded as they come) and reported as
an ``SseItem`` with ``data=None`` and the size seen, so the caller logs it and goes on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SseItem:
    """One thing the stream said: an event's data, an event over the cap, or a comment."""

    kind: str  # "event", "oversize" or "comment"
    data: bytes | None = None
    size: int = 0


class SseParser:
    """Turns chunks into ``SseItem``s; an event's data over ``max_event_bytes`` is skipped."""

    def __init__(self, max_event_bytes: int):
        self.max_event_bytes = max_event_bytes
        self._line = bytearray()
        self._data: list[bytes] = []
        self._size = 0
        self._skipping = False

    def feed(self, chunk: bytes) -> list[SseItem]:
        """The items completed by ``chunk`` (a partial line waits for the next chunk)."""
        items: list[SseItem] = []
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            self._take(chunk[start:end])
            self._end_line(items)
            start = end + 1
        self._take(chunk[start:])
        return items

    def _take(self, piece: bytes) -> None:
        """Add a piece of the current line, or count it when the event is being skipped."""
        if self._skipping:
            self._size += len(piece)
            return
        self._line += piece
        if self._size + len(self._line) > self.max_event_bytes:
            self._skip()

    def _skip(self) -> None:
        self._size += len(self._line)
        self._skipping = True
        self._line = bytearray()
        self._data = []

    def _end_line(self, items: list[SseItem]) -> None:
        line = bytes(self._line).rstrip(b"\r")
        self._line = bytearray()
        if self._skipping:
            if not line:  # the blank line ends the oversize event
                items.append(SseItem("oversize", size=self._size))
                self._skipping, self._size = False, 0
            return
        if not line:
            if self._data:
                items.append(SseItem("event", data=b"\n".join(self._data)))
            self._data, self._size = [], 0
        elif line.startswith(b"data:"):
            value = line[5:]
            value = value[1:] if value.startswith(b" ") else value
            self._data.append(value)
            self._size += len(value) + 1
        elif line.startswith(b":"):
            items.append(SseItem("comment"))

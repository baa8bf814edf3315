"""A hostile push gateway and a hostile bundle store on loopback, for the agent's fault tests.

``HostileGateway`` is an aiohttp app: ``/events`` streams whatever frames the test queues
(oversized lines, junk JSON, a legitimate release), ``/notifications`` answers the polling
bodies the test lists in turn (the first ``refuse_streams`` stream requests get a 503, so
the agent falls back to polling), ``/status`` records every report with what the agent was
running when it arrived (``running_at_report``, when the test hands it a probe).

``HostileStore`` speaks HTTP/1.1 by hand on a raw asyncio server, so it can do what a
well-behaved framework would not: cut a body half-way, stream past the size, answer a
``Range`` request with a 206 from byte 0 or from the wrong byte, or hang. Each request
takes the next mode from ``modes`` (then ``"good"``); ``requests`` records each ``Range``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from walle.deploy.bundle import BuiltBundle
from walle.deploy.notification import Notification, load_bundle_signature, make_notification


def bundle_note(bundle: BuiltBundle, private: Any, url: str, **kwargs: Any) -> Notification:
    """The signed notification of ``bundle`` served at ``url`` (seq = its version)."""
    return make_notification(
        task=bundle.manifest.task,
        version=bundle.manifest.version,
        digest=bundle.digest,
        size=bundle.size,
        url=url,
        private=private,
        bundle_signature=load_bundle_signature(bundle.path),
        seq=bundle.manifest.version,
        now=time.time(),
        **kwargs,
    )


def sse_frame(payload: bytes) -> bytes:
    """One SSE event carrying ``payload`` on a single ``data:`` line."""
    return b"event: release\ndata: " + payload + b"\n\n"


def deep_json(depth: int = 100_000) -> bytes:
    """Nested JSON deeper than any parser's recursion limit."""
    return b"[" * depth + b"]" * depth


class HostileGateway:
    """What a compromised or broken gateway could send an agent."""

    def __init__(self, polls: list[bytes] | None = None, refuse_streams: int = 0):
        self.refuse_streams = refuse_streams  # the first N /events requests get a 503
        self.frames: asyncio.Queue[bytes] = asyncio.Queue()
        self.polls = list(polls or [])
        self.poll_count = 0
        self.connects = 0
        self.reports: list[dict[str, Any]] = []
        self.probe: Callable[[], Any] | None = None

    def push(self, payload: bytes | Notification, *, raw: bool = False) -> None:
        """Queue an event (a notification, bytes for ``data:``) or raw bytes for the stream."""
        data = payload.to_bytes() if isinstance(payload, Notification) else payload
        self.frames.put_nowait(data if raw else sse_frame(data))

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_get("/events", self._events)
        app.router.add_get("/notifications", self._notifications)
        app.router.add_post("/status", self._status)
        return app

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_streams > 0:
            self.refuse_streams -= 1
            return web.Response(status=503)
        self.connects += 1
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        while True:
            try:
                frame = await asyncio.wait_for(self.frames.get(), 0.5)
            except TimeoutError:
                frame = b": keepalive\n\n"
            try:
                await response.write(frame)
            except ConnectionError:  # the agent went away (the test ended)
                return response

    async def _notifications(self, request: web.Request) -> web.Response:
        self.poll_count += 1
        body = self.polls.pop(0) if self.polls else b"[]"
        return web.Response(body=body, content_type="application/json")

    async def _status(self, request: web.Request) -> web.Response:
        report = json.loads(await request.read())
        if self.probe is not None:
            report["running_at_report"] = self.probe()
        self.reports.append(report)
        return web.json_response({"ok": True}, status=202)

    def states(self) -> list[tuple[int, str]]:
        """(version, state) of every report, in order."""
        return [(r["version"], r["state"]) for r in self.reports]


class HostileStore:
    """Serves one bundle's bytes at any path, misbehaving as ``modes`` says, request by request.

    Modes: ``good``; ``cut`` (half the body, then the connection closes); ``oversize``
    (the body plus 5,000 bytes, no Content-Length); ``from_zero`` (a 206 with the whole body
    from byte 0, whatever was asked); ``wrong_start`` (a 206 from byte 7); ``hang`` (nothing,
    until the client gives up); ``error`` (503); ``garbage`` (200, the right size, wrong
    bytes).
    """

    def __init__(self, data: bytes, modes: list[str] | None = None):
        self.data = data
        self.modes = list(modes or [])
        self.requests: list[str | None] = []
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bundles/b"

    async def start(self) -> HostileStore:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            headers = dict(
                line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line
            )
            wanted = headers.get("Range")
            self.requests.append(wanted)
            mode = self.modes.pop(0) if self.modes else "good"
            start = int(wanted.removeprefix("bytes=").split("-")[0]) if wanted else 0
            await getattr(self, f"_{mode}")(reader, writer, start)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _head(self, status: str, fields: dict[str, object]) -> bytes:
        lines = [
            f"HTTP/1.1 {status}",
            "Connection: close",
            *(f"{k}: {v}" for k, v in fields.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def _answer(self, start: int) -> tuple[bytes, bytes]:
        """The correct head and body for a request from byte ``start``."""
        size = len(self.data)
        if start:
            fields = {"Content-Range": f"bytes {start}-{size - 1}/{size}"}
            fields["Content-Length"] = size - start
            return self._head("206 Partial Content", fields), self.data[start:]
        return self._head("200 OK", {"Content-Length": size}), self.data

    async def _good(self, reader, writer, start: int) -> None:
        head, body = self._answer(start)
        writer.write(head + body)
        await writer.drain()

    async def _cut(self, reader, writer, start: int) -> None:
        head, body = self._answer(start)
        writer.write(head + body[: len(body) // 2])
        await writer.drain()

    async def _oversize(self, reader, writer, start: int) -> None:
        writer.write(self._head("200 OK", {}) + self.data + b"X" * 5000)
        await writer.drain()

    async def _from_zero(self, reader, writer, start: int) -> None:
        size = len(self.data)
        fields = {"Content-Range": f"bytes 0-{size - 1}/{size}", "Content-Length": size}
        writer.write(self._head("206 Partial Content", fields) + self.data)
        await writer.drain()

    async def _wrong_start(self, reader, writer, start: int) -> None:
        size = len(self.data)
        fields = {"Content-Range": f"bytes 7-{size - 1}/{size}", "Content-Length": size - 7}
        writer.write(self._head("206 Partial Content", fields) + self.data[7:])
        await writer.drain()

    async def _hang(self, reader, writer, start: int) -> None:
        await reader.read()  # returns when the client gives up and closes

    async def _error(self, reader, writer, start: int) -> None:
        writer.write(self._head("503 Service Unavailable", {"Content-Length": 0}))
        await writer.drain()

    async def _garbage(self, reader, writer, start: int) -> None:
        body = bytes(b ^ 0x5A for b in self.data)
        writer.write(self._head("200 OK", {"Content-Length": len(body)}) + body)
        await writer.drain()

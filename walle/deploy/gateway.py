"""The push gateway: Kafka notifications in, Server-Sent Events out to connected agents.

A supervised background thread (``TopicFollower``, kafka-python) reads the compacted
releases topic from the beginning with manual partition assignment (no consumer group:
every gateway wants every record) and hands each notification to the event loop; if the
thread's connection dies it reads again after a backoff. ``GET /events`` is a long-lived SSE stream
that first replays the latest notification per task (catch-up on connect), then every new
one; ``GET /notifications`` is the polling fallback; ``POST /status`` takes an agent's
report and writes it to the status topic.

It always verifies: ``trust`` (the root whose roles sign notifications) and ``enrolment``
(the secret that derives each device's report key) are required. A notification that is
not signed by the right roles, is expired or future-dated, or is not newer than the one in
force never reaches an agent; a report without a valid device MAC never reaches the topic.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pydantic
from aiohttp import web
from kafka.errors import KafkaError

from walle.deploy.channel import ChannelTopics, StatusReport, ensure_topics
from walle.deploy.enrolment import Enrolment, ReportAuthError
from walle.deploy.errors import BundleRefused
from walle.deploy.follower import FollowerSettings, TopicFollower
from walle.deploy.freshness import verify_record
from walle.deploy.notification import Notification
from walle.deploy.roles import TrustStore
from walle.logging import get_logger

_log = get_logger("deploy.gateway")
_KEEPALIVE_S = 10.0
_SEND_BLOCK_MS = 2000  # a status write waits at most this long for broker metadata


def _observe(gateway: Gateway, app: web.Application) -> None:
    """Prometheus /metrics and the rollout dashboard (walle.deploy.metrics, .dashboard)."""
    from walle.deploy.dashboard import RolloutBoard, attach_dashboard
    from walle.deploy.metrics import GatewayCollector, attach_metrics

    attach_metrics(app, "gateway", [GatewayCollector(gateway)])
    board = RolloutBoard(
        gateway.bootstrap, gateway.topics, trust=gateway.trust, enrolment=gateway.enrolment
    )
    attach_dashboard(app, board, lambda: gateway.counters["connected"])


def _require(value: object, kind: type, name: str, what: str) -> None:
    """Refuse a missing or wrong ``name=`` argument: the gateway has no unverified mode."""
    if not isinstance(value, kind):
        raise TypeError(
            f"Gateway needs {name}={kind.__name__} ({what}), got {type(value).__name__}:"
            " it never forwards unverified records or unauthenticated reports"
        )


def _sse_frame(note: Notification) -> bytes:
    return b"event: release\ndata: " + note.to_bytes() + b"\n\n"


class Gateway:
    """Fans notifications out to agents; one instance per aiohttp application.

    The releases topic is read by a supervised ``TopicFollower``: if its connection dies
    (broker restarted, network cut) it reads again from the beginning after a backoff and
    pushes only the notifications that changed, so agents neither miss a release nor see a
    stale one again.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: ChannelTopics,
        *,
        trust: TrustStore,
        enrolment: Enrolment,
        follower: FollowerSettings | None = None,
    ):
        _require(trust, TrustStore, "trust", "the root whose roles sign notifications")
        _require(enrolment, Enrolment, "enrolment", "the secret that authenticates reports")
        self.bootstrap = bootstrap
        self.trust = trust
        self.enrolment = enrolment
        self.topics = topics
        self.latest: dict[str, Notification] = {}
        self._generation = 0
        self._subscribers: set[asyncio.Queue[Notification | None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._producer: Any = None  # a kafka.KafkaProducer once started (kafka-python: untyped)
        self._pass: dict[str, Notification] = {}
        self._live = False
        self.reader = TopicFollower(
            bootstrap,
            [topics.releases],
            self,
            settings=follower,
            name="gateway-releases",
            prepare=lambda: ensure_topics(bootstrap, topics),
        )
        self.counters = {
            "connected": 0,
            "pushed": 0,
            "reports": 0,
            "bad_records": 0,
            "report_errors": 0,
            "dropped_records": 0,
            "stale_records": 0,
            "unauthenticated_reports": 0,
        }

    def app(self) -> web.Application:
        """The aiohttp application; starting it starts the Kafka reader thread."""
        app = web.Application()
        app.router.add_get("/events", self.events)
        app.router.add_get("/notifications", self.notifications)
        app.router.add_post("/status", self.status)
        app.router.add_get("/metrics", self.metrics)
        _observe(self, app)
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._close_streams)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _start(self, _app: web.Application) -> None:
        from walle.kafka import sync_producer

        self._loop = asyncio.get_running_loop()
        self._producer = await asyncio.to_thread(
            sync_producer, self.bootstrap, linger_ms=20, max_block_ms=_SEND_BLOCK_MS
        )
        self.reader.start()

    # -- the reader thread's handler (FollowHandler) -----------------------------------------

    def on_start(self) -> None:
        """A pass over the releases topic begins: collect it before pushing anything."""
        self._pass = {}
        self._live = False

    def on_record(self, topic: str, key: bytes, value: bytes, offset: int) -> None:
        """One notification: kept for the pass while catching up, pushed once live."""
        try:
            note = Notification.model_validate_json(value)
        except pydantic.ValidationError as exc:
            self.counters["bad_records"] += 1
            _log.warning("bad notification skipped", offset=offset, error=str(exc))
            return
        if not self._verified(note, offset):
            return
        if not self._live:
            kept = self._pass.get(note.task)
            if kept is None or note.seq > kept.seq:
                self._pass[note.task] = note
        elif self._loop is not None:
            self._loop.call_soon_threadsafe(self._publish, note)

    def on_caught_up(self) -> None:
        """The pass has read the whole topic: push what differs from what agents have."""
        snapshot, self._pass, self._live = self._pass, {}, True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._reconcile, snapshot)

    def on_idle(self) -> None:
        """Nothing periodic to do."""

    def _reconcile(self, snapshot: dict[str, Notification]) -> None:
        for note in snapshot.values():
            if self.latest.get(note.task) != note:
                self._publish(note)

    def _verified(self, note: Notification, offset: int) -> bool:
        """Whether ``note`` may reach agents: signed by the right roles, in date."""
        try:
            verify_record(note, self.trust)
        except BundleRefused as exc:
            self.counters["dropped_records"] += 1
            _log.warning(
                "unverified notification dropped", offset=offset, task=note.task, error=str(exc)
            )
            return False
        return True

    def _publish(self, note: Notification) -> None:
        current = self.latest.get(note.task)
        if current is not None and note.seq <= current.seq:
            self.counters["stale_records"] += 1
            _log.warning(
                "notification not newer than the one in force dropped",
                task=note.task,
                seq=note.seq,
                in_force=current.seq,
            )
            return
        self.latest[note.task] = note
        self._generation += 1
        for queue in self._subscribers:
            queue.put_nowait(note)

    async def events(self, request: web.Request) -> web.StreamResponse:
        """SSE stream: the latest notification per task, then each new one."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        queue: asyncio.Queue[Notification | None] = asyncio.Queue()
        self._subscribers.add(queue)  # before the snapshot, so nothing falls in between
        self.counters["connected"] += 1
        try:
            for current in list(self.latest.values()):
                await response.write(_sse_frame(current))
            while True:
                try:
                    note = await asyncio.wait_for(queue.get(), _KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if note is None:  # the gateway is shutting down
                    break
                await response.write(_sse_frame(note))
                self.counters["pushed"] += 1
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._subscribers.discard(queue)
            self.counters["connected"] -= 1
        return response

    async def notifications(self, request: web.Request) -> web.Response:
        """Polling fallback: all latest notifications; ETag is the update generation."""
        etag = f'"g{self._generation}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        body = [n.model_dump(mode="json") for n in self.latest.values()]
        return web.json_response(body, headers={"ETag": etag})

    async def status(self, request: web.Request) -> web.Response:
        """Take an agent's status report and write it to the status topic."""
        try:
            report = StatusReport.model_validate_json(await request.read())
        except pydantic.ValidationError as exc:
            raise web.HTTPBadRequest(text=f"bad status report: {exc}\n") from exc
        try:
            self.enrolment.check(report)
        except ReportAuthError as exc:
            self.counters["unauthenticated_reports"] += 1
            _log.warning("unauthenticated status report refused", error=str(exc))
            raise web.HTTPUnauthorized(text=f"{exc}\n") from exc
        key = f"{report.task}/{report.device_id}".encode()
        value = report.model_dump_json().encode()
        try:  # send() blocks while it has no metadata for the topic (broker away)
            await asyncio.to_thread(self._producer.send, self.topics.status, key=key, value=value)
        except KafkaError as exc:
            self.counters["report_errors"] += 1
            raise web.HTTPServiceUnavailable(text=f"status topic unavailable: {exc}\n") from exc
        self.counters["reports"] += 1
        return web.json_response({"ok": True}, status=202)

    async def metrics(self, _request: web.Request) -> web.Response:
        """Counters: connected agents, pushes, reports, bad records; tasks known."""
        return web.json_response(
            {
                **self.counters,
                "tasks": sorted(self.latest),
                "reader_restarts": self.reader.restarts,
                "reader_alive": self.reader.alive,
            }
        )

    async def _close_streams(self, _app: web.Application) -> None:
        for queue in list(self._subscribers):
            queue.put_nowait(None)

    async def _cleanup(self, _app: web.Application) -> None:
        await asyncio.to_thread(self.reader.stop, 10)
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._producer.close, 5)

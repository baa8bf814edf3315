"""The rollout dashboard: one page served by the gateway, updated live over SSE.

``RolloutBoard`` follows the release history and the status topics (a supervised
``TopicFollower``, like the gateway and the rollout watcher) and folds them into a
``RolloutController``, so the page shows exactly the counts and the decision the controller
acts on (``tally``, ``decide``, ``describe``), not a second computation of them. It also keeps
what the controller forgets: every notification of each task (releases, advances, halts,
pauses, rollbacks, with their reasons) and the devices installed and failed over time (the
coverage chart). Like the controller it folds only verified records: a notification whose
signatures the root's roles did not make, or a report without a valid device MAC, is
dropped (counted in ``dropped``), so a forged record cannot put a false count or step on the
page. Expiry is not checked here: the history is shown as it happened, old releases too.

``attach_dashboard`` adds ``GET /dashboard`` (the page: plain HTML and JavaScript shipped in
the package, no build step, no CDN), ``GET /dashboard/state`` (the board as JSON) and
``GET /dashboard/events`` (SSE: the board again each time it changes). The board starts
following the topics on the first request, so a gateway nobody looks at pays nothing.

Pending devices are an estimate: the gateway knows how many agents hold a stream, not which
tasks target them, so pending = connected agents x the stage's percentage - reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import pydantic
from aiohttp import web

from walle.deploy.channel import ChannelTopics, StatusReport, ensure_topics
from walle.deploy.enrolment import Enrolment, ReportAuthError
from walle.deploy.errors import BundleRefused
from walle.deploy.follower import FollowerSettings, TopicFollower
from walle.deploy.notification import Notification, verify_signatures
from walle.deploy.roles import TrustStore
from walle.deploy.rollout import RolloutController
from walle.logging import get_logger

_log = get_logger("deploy.dashboard")

_PUSH_EVERY_S = 0.25
_KEEPALIVE_S = 10.0


def _step(note: Notification) -> str:
    """What one notification did: released, advanced, halted, paused, rolled back."""
    if note.rollback:
        return "rollback"
    if note.paused:
        return "halt" if note.reason.startswith("halted:") else "pause"
    if note.reason.startswith("advanced:"):
        return "advance"
    return "release"


@dataclass
class _TaskView:
    """What the board keeps per task beyond the controller's view."""

    history: list[Notification] = field(default_factory=list)
    coverage: list[tuple[float, int, int]] = field(default_factory=list)


class RolloutBoard:
    """Folds the history and status topics into what the dashboard shows (a FollowHandler)."""

    def __init__(
        self,
        bootstrap: str,
        topics: ChannelTopics,
        *,
        trust: TrustStore,
        enrolment: Enrolment,
        settings: FollowerSettings | None = None,
    ):
        self.trust = trust
        self.enrolment = enrolment
        self.dropped = 0
        self.controller = RolloutController()
        self.generation = 0
        self._tasks: dict[str, _TaskView] = {}
        self._lock = threading.Lock()
        self.follower = TopicFollower(
            bootstrap,
            [topics.history, topics.status],
            self,
            settings=settings,
            name="rollout-board",
            prepare=lambda: ensure_topics(bootstrap, topics),
        )
        self._history_topic = topics.history

    def start(self) -> None:
        """Start following the topics (idempotent)."""
        if not self.follower.alive:
            self.follower.start()

    def stop(self) -> None:
        """Stop the reader thread."""
        self.follower.stop()

    # -- FollowHandler -----------------------------------------------------------------------

    def on_start(self) -> None:
        """A fresh pass from offset 0: forget everything."""
        with self._lock:
            self.controller.reset()
            self._tasks.clear()
            self.generation += 1

    def on_record(self, topic: str, key: bytes, value: bytes, offset: int) -> None:
        """Fold one notification (history topic) or status report."""
        try:
            if topic == self._history_topic:
                note = Notification.model_validate_json(value)
                verify_signatures(note, self.trust)
                self._fold_note(note)
            else:
                report = StatusReport.model_validate_json(value)
                self.enrolment.check(report)
                self._fold_report(report)
        except pydantic.ValidationError:
            return  # the gateway and the watcher already log unreadable records
        except (BundleRefused, ReportAuthError) as exc:
            self.dropped += 1
            _log.warning("unverified record kept off the board", topic=topic, error=str(exc))

    def on_caught_up(self) -> None:
        """Nothing to do: every record already moved the board."""

    def on_idle(self) -> None:
        """Nothing periodic."""

    def _fold_note(self, note: Notification) -> None:
        with self._lock:
            self.controller.observe_release(note)
            self._tasks.setdefault(note.task, _TaskView()).history.append(note)
            self._sample(note.task, note.issued_at)

    def _fold_report(self, report: StatusReport) -> None:
        with self._lock:
            self.controller.observe_report(report)
            if report.task in self.controller.current:
                self._sample(report.task, report.ts)

    def _sample(self, task: str, ts: float) -> None:
        """Add a coverage point when the counts changed (called under the lock)."""
        tally = self.controller.tally(task)
        series = self._tasks.setdefault(task, _TaskView()).coverage
        if not series or series[-1][1:] != (tally.installed, tally.failed):
            series.append((ts, tally.installed, tally.failed))
        self.generation += 1

    # -- what the page shows -----------------------------------------------------------------

    def snapshot(self, connected_agents: int) -> dict[str, Any]:
        """The board as JSON-ready data: one entry per task, sorted by name."""
        with self._lock:
            tasks = [self._task(task, connected_agents) for task in sorted(self.controller.current)]
            return {
                "generation": self.generation,
                "connected_agents": connected_agents,
                "caught_up": self.follower.caught_up.is_set(),
                "tasks": tasks,
            }

    def _task(self, task: str, connected: int) -> dict[str, Any]:
        action = self.controller.decide(task)
        note, tally, policy = action.note, action.tally, action.note.policy
        stages = list(policy.stages.percentages) if policy.stages else [100.0]
        expected = round(connected * policy.effective_percentage / 100)
        view = self._tasks.get(task, _TaskView())
        return {
            "task": task,
            "version": note.version,
            "stage": policy.stage,
            "stages": stages,
            "percent": policy.effective_percentage,
            "paused": note.paused,
            "rollback": note.rollback,
            "reason": note.reason,
            "installed": tally.installed,
            "failed": tally.failed,
            "pending": max(0, expected - tally.installed - tally.failed),
            "failure_rate": tally.failure_rate,
            "decision": action.decision,
            "summary": action.describe(),
            "releases": sorted({n.version for n in view.history}),
            "history": [
                {
                    "ts": n.issued_at,
                    "step": _step(n),
                    "version": n.version,
                    "stage": n.policy.stage,
                    "reason": n.reason,
                }
                for n in view.history
            ],
            "coverage": [list(point) for point in view.coverage],
        }


BOARD = web.AppKey("rollout_board", RolloutBoard)
_CONNECTED: web.AppKey[Callable[[], int] | None] = web.AppKey("dashboard_connected")
_CLOSING = web.AppKey("dashboard_closing", asyncio.Event)


def _page() -> bytes:
    return resources.files("walle.deploy").joinpath("static/dashboard.html").read_bytes()


async def _dashboard(request: web.Request) -> web.Response:
    request.app[BOARD].start()
    return web.Response(body=_page(), content_type="text/html", charset="utf-8")


def _connected(request: web.Request) -> int:
    counts = request.app.get(_CONNECTED)
    return counts() if counts is not None else 0


async def _state(request: web.Request) -> web.Response:
    board = request.app[BOARD]
    board.start()
    return web.json_response(board.snapshot(_connected(request)))


async def _events(request: web.Request) -> web.StreamResponse:
    """SSE: the board now, then again whenever it changes (checked every 250 ms)."""
    board = request.app[BOARD]
    board.start()
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    sent: tuple[int, int] | None = None
    idle_s = 0.0
    with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
        while not request.app.get(_CLOSING, asyncio.Event()).is_set():
            now = (board.generation, _connected(request))
            if now != sent:
                body = json.dumps(board.snapshot(now[1]), separators=(",", ":"))
                await response.write(b"event: board\ndata: " + body.encode() + b"\n\n")
                sent, idle_s = now, 0.0
            elif idle_s >= _KEEPALIVE_S:
                await response.write(b": keepalive\n\n")
                idle_s = 0.0
            await asyncio.sleep(_PUSH_EVERY_S)
            idle_s += _PUSH_EVERY_S
    return response


def attach_dashboard(
    app: web.Application,
    board: RolloutBoard,
    connected_agents: Callable[[], int] | None = None,
) -> None:
    """Serve ``board`` on ``app`` at /dashboard, /dashboard/state and /dashboard/events.

    ``connected_agents()``, if given, says how many agents hold a stream (for pending).
    """
    app[BOARD] = board
    app[_CONNECTED] = connected_agents
    app[_CLOSING] = asyncio.Event()
    app.router.add_get("/dashboard", _dashboard)
    app.router.add_get("/dashboard/state", _state)
    app.router.add_get("/dashboard/events", _events)

    async def _closing(_app: web.Application) -> None:
        _app[_CLOSING].set()

    async def _stop(_app: web.Application) -> None:
        await asyncio.to_thread(board.stop)

    app.on_shutdown.append(_closing)
    app.on_cleanup.append(_stop)

"""The device agent: hears about releases, pulls, verifies, installs, activates, reports.

It keeps a Server-Sent Events connection to the gateway (reconnecting with backoff; a
reconnect replays the latest notification per task, which is how an offline device catches
up) and falls back to polling ``/notifications`` while the stream cannot be opened. For
each notification whose policy admits this device it downloads the bundle from the store
(resuming with ``Range`` after a cut, retrying with backoff), verifies everything, installs
atomically, activates the task in its ``TaskHost`` and reports to the gateway. A task that
fails its first health check is reverted to the previous version and reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pydantic
from pydantic import BaseModel, ConfigDict

from walle.deploy.channel import State, StatusReport
from walle.deploy.container import TaskHost
from walle.deploy.errors import BundleRefused, HealthCheckError, StoreError
from walle.deploy.install import ActiveRecord, Installer, accept_release
from walle.deploy.manifest import RUNTIME_ABI
from walle.deploy.notification import Notification
from walle.deploy.policy import DeviceAttrs
from walle.deploy.signing import TrustStore
from walle.deploy.verify import check_notification
from walle.logging import get_logger

_log = get_logger("deploy.agent")
_CHUNK = 64 * 1024


class AgentSettings(BaseModel):
    """How an agent connects and how hard it retries (one frozen object, passed whole)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gateway_url: str
    home: Path
    runtime_abis: tuple[int, ...] = (RUNTIME_ABI,)
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 5.0
    download_attempts: int = 10
    download_timeout_s: float = 60.0
    poll_only: bool = False
    poll_interval_s: float = 5.0


class Agent:
    """One device's agent; ``run()`` until cancelled. ``stats`` counts what it did."""

    def __init__(
        self,
        attrs: DeviceAttrs,
        settings: AgentSettings,
        trust: TrustStore,
        host: TaskHost,
        session: aiohttp.ClientSession | None = None,
    ):
        self.attrs = attrs
        self.settings = settings
        self.trust = trust
        self.host = host
        self.installer = Installer(settings.home)
        self.stats: Counter[str] = Counter()
        self.states: dict[str, tuple[int | None, State]] = {}
        self._session = session
        self._own_session = session is None
        self._locks: dict[str, asyncio.Lock] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._unsent: list[StatusReport] = []
        self._told_failed: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Sweep interrupted installs and re-activate every installed task (after a restart)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        await asyncio.to_thread(self.installer.recover)
        for task in self.installer.tasks():
            record = self.installer.active(task)
            if record is not None:
                _log.info("starting installed task", task=task, version=record.version)
                await self._activate_or_revert(task, record, report=False)
        _log.info(
            "agent started",
            device=self.attrs.device_id,
            gateway=self.settings.gateway_url,
            running=self._running_text() or "none",
        )

    async def run(self) -> None:
        """Start, then follow the gateway forever (cancel to stop)."""
        await self.start()
        try:
            await self._follow()
        finally:
            await self.close()

    async def close(self) -> None:
        """Cancel handlers in flight and close the HTTP session if the agent made it."""
        for handler in list(self._handlers):
            handler.cancel()
        if self._own_session and self._session is not None:
            await self._session.close()

    async def _follow(self) -> None:
        delay = self.settings.reconnect_min_s
        while True:
            if self.settings.poll_only:
                await self._poll_once()
                await asyncio.sleep(self.settings.poll_interval_s)
                continue
            try:
                await self._stream()
                delay = self.settings.reconnect_min_s
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.stats["stream_failures"] += 1
                _log.debug("stream lost", device=self.attrs.device_id, error=repr(exc))
                await self._poll_once()
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.settings.reconnect_max_s)

    # -- hearing about releases ------------------------------------------------------------

    async def _stream(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=60)
        async with self._session.get(
            f"{self.settings.gateway_url}/events", timeout=timeout
        ) as resp:
            resp.raise_for_status()
            self.stats["connects"] += 1
            await self._flush_unsent()
            data: list[bytes] = []
            async for raw in resp.content:
                line = raw.rstrip(b"\r\n")
                if line.startswith(b"data:"):
                    data.append(line[5:].lstrip())
                elif not line and data:
                    self._dispatch(b"\n".join(data))
                    data = []
                elif line.startswith(b":") and self._unsent:  # keepalive: retry reports
                    await self._flush_unsent()

    async def _poll_once(self) -> None:
        try:
            async with self._session.get(
                f"{self.settings.gateway_url}/notifications", timeout=aiohttp.ClientTimeout(10)
            ) as resp:
                resp.raise_for_status()
                self.stats["polls"] += 1
                for item in await resp.json():
                    self._dispatch(item)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
            self.stats["poll_failures"] += 1

    def _dispatch(self, payload: bytes | dict) -> None:
        try:
            if isinstance(payload, dict):
                note = Notification.model_validate(payload)
            else:
                note = Notification.model_validate_json(payload)
        except pydantic.ValidationError as exc:
            self.stats["bad_notifications"] += 1
            _log.warning("bad notification skipped", device=self.attrs.device_id, error=str(exc))
            return
        handler = asyncio.create_task(self.handle(note))
        self._handlers.add(handler)
        handler.add_done_callback(self._handlers.discard)

    # -- handling one release --------------------------------------------------------------

    async def handle(self, note: Notification) -> None:
        """Act on one notification (serialised per task; idempotent)."""
        lock = self._locks.setdefault(note.task, asyncio.Lock())
        async with lock:
            try:
                await self._handle(note)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an agent must survive any one bad release
                self.stats["handler_errors"] += 1
                _log.error("release handling failed", task=note.task, error=repr(exc))

    async def _handle(self, note: Notification) -> None:
        what = {"task": note.task, "version": note.version}
        if not note.policy.admits(self.attrs):
            self.stats["not_admitted"] += 1
            _log.info("release not for this device", **what, device=self.attrs.device_id)
            return
        active = self.installer.active(note.task)
        if active is not None and active.digest == note.digest:
            return
        if note.paused:
            self.stats["paused"] += 1
            _log.info("release paused: not installed", **what, reason=note.reason)
            return
        if note.digest in self.installer.failed_digests():
            await self._refuse_failed_before(note, active.version if active else None)
            return
        try:
            check_notification(note, self.trust, active.version if active else None, time.time())
        except BundleRefused as exc:
            await self._report(note.task, note.version, "refused", exc.reason, note.digest)
            return
        _log.info("release received", **what, rollback=note.rollback)
        kept = self.installer.unpacked(note.task, note.version, note.digest)
        if kept is not None:  # verified when it was first installed: activate, no download
            record = await asyncio.to_thread(self.installer.activate, note.task, kept)
            await self._activate_or_revert(note.task, record, report=True)
            return
        try:
            data = await self._download(note)
        except StoreError as exc:
            await self._report(note.task, note.version, "download_failed", str(exc), note.digest)
            return
        await self._install(note, data)

    async def _refuse_failed_before(self, note: Notification, running: int | None) -> None:
        """A release whose bundle already failed here: say so once (e.g. a rollback to it)."""
        if note.digest in self._told_failed:
            return
        self._told_failed.add(note.digest)
        now = f"v{running} keeps running" if running is not None else "nothing runs"
        reason = f"v{note.version} ({note.digest[:12]}) failed on this device before; {now}"
        await self._report(note.task, note.version, "refused", reason, note.digest)

    async def _install(self, note: Notification, data: bytes) -> None:
        try:
            record = await asyncio.to_thread(
                accept_release,
                self.installer,
                self.trust,
                note,
                data,
                now=time.time(),
                runtime_abis=self.settings.runtime_abis,
            )
        except BundleRefused as exc:
            self.installer.mark_failed(note.digest)
            await self._report(note.task, note.version, "refused", exc.reason, note.digest)
            return
        finally:
            self._part_path(note.digest).unlink(missing_ok=True)
        self.stats["installs"] += 1
        _log.info("installed", task=note.task, version=note.version, digest=note.digest[:12])
        await self._activate_or_revert(note.task, record, report=True)

    async def _activate_or_revert(self, task: str, record: ActiveRecord, report: bool) -> None:
        path = self.installer.path_of(task, record)
        try:
            await self.host.activate(task, record.version, path)
        except HealthCheckError as exc:
            self.installer.mark_failed(record.digest)
            previous = self.installer.revert(task)
            if previous is not None:
                await self.host.activate(
                    task, previous.version, self.installer.path_of(task, previous)
                )
            else:
                await self.host.deactivate(task)
            self.stats["rolled_back"] += 1
            await self._report(task, record.version, "rolled_back", str(exc), record.digest)
            return
        _log.info("activated", task=task, version=record.version)
        if report:
            await self._report(task, record.version, "installed", "", record.digest)

    # -- download --------------------------------------------------------------------------

    def _part_path(self, digest: str) -> Path:
        return self.settings.home / "downloads" / f"{digest}.part"

    async def _download(self, note: Notification) -> bytes:
        """The bundle's bytes, resuming with Range after a cut; at most size + 1 bytes kept."""
        part = self._part_path(note.digest)
        part.parent.mkdir(parents=True, exist_ok=True)
        delay = self.settings.reconnect_min_s
        for _attempt in range(self.settings.download_attempts):
            have = part.stat().st_size if part.exists() else 0
            if have >= note.size:
                break
            try:
                if await self._fetch(note, part, have):
                    break
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.stats["download_retries"] += 1
                _log.debug("download cut", task=note.task, have=have, error=repr(exc))
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.settings.reconnect_max_s)
        data = part.read_bytes() if part.exists() else b""
        if len(data) < note.size:
            raise StoreError(
                f"bundle {note.digest[:12]}: {len(data)} of {note.size} bytes after "
                f"{self.settings.download_attempts} attempts"
            )
        return data

    async def _fetch(self, note: Notification, part: Path, have: int) -> bool:
        headers = {"Range": f"bytes={have}-"} if have else {}
        timeout = aiohttp.ClientTimeout(total=self.settings.download_timeout_s, sock_connect=5)
        async with self._session.get(note.url, headers=headers, timeout=timeout) as resp:
            self.stats["store_requests"] += 1
            if have:
                self.stats["range_requests"] += 1
            if resp.status not in (200, 206):
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
            mode = "ab" if resp.status == 206 else "wb"
            with open(part, mode) as handle:
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    handle.write(chunk)
                    if handle.tell() > note.size:  # more than announced: keep size + 1, stop
                        handle.truncate(note.size + 1)
                        return True
                return handle.tell() >= note.size

    # -- reporting -------------------------------------------------------------------------

    def _running_text(self) -> str:
        running = {t: r.version for t in self.installer.tasks() if (r := self.installer.active(t))}
        return ", ".join(f"{task} v{version}" for task, version in sorted(running.items()))

    async def _report(
        self, task: str, version: int | None, state: State, reason: str, digest: str
    ) -> None:
        self.states[task] = (version, state)
        self.stats[f"report_{state}"] += 1
        active = self.installer.active(task)
        running = active.version if active is not None else None
        if state == "installed":
            _log.info("reported", task=task, version=version, state=state)
        else:
            _log.warning(
                state.replace("_", " "), task=task, version=version, running=running, reason=reason
            )
        report = StatusReport(
            device_id=self.attrs.device_id,
            task=task,
            version=version,
            state=state,
            reason=reason,
            digest=digest,
            running=running,
            ts=time.time(),
        )
        if not await self._send(report):
            self._unsent.append(report)

    async def _send(self, report: StatusReport) -> bool:
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            async with self._session.post(
                f"{self.settings.gateway_url}/status",
                data=report.model_dump_json(),
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(10),
            ) as resp:
                return resp.status < 300
        return False

    async def _flush_unsent(self) -> None:
        pending, self._unsent = self._unsent, []
        for report in pending:
            if not await self._send(report):
                self._unsent.append(report)

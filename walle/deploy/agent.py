"""The device agent: hears about releases, pulls, verifies, installs, activates, reports.

It keeps a Server-Sent Events connection to the gateway (reconnecting with backoff; a
reconnect replays the latest notification per task, which is how an offline device catches
up) and falls back to polling ``/notifications`` while the stream cannot be opened. For
each notification whose policy admits this device it downloads the bundle from the store
(resuming with ``Range`` after a cut, retrying with backoff), verifies everything, installs
atomically, activates the task in its ``TaskHost`` and reports to the gateway. A task that
fails its first health check is reverted to the previous version and reported.

No input ends the agent. The stream is parsed in chunks with a per-notification cap
(``walle.deploy.sse``), a polling answer is read up to a cap and must be a JSON list; any
bad notification is logged and skipped. A store fault (cut, hang past the read timeout,
more bytes than announced, a 206 from the wrong byte, resumed bytes that hash wrong) is a
transport fault: the ``.part`` is discarded and fetched again, and after ``download_failed``
the release is retried with backoff while it is its task's latest notification. Only a
complete, size-correct download that fails verification marks the digest failed. A newer
notification for the task stops a download in progress, so a hanging store never holds the
task. Start-up sets aside an unreadable pointer and falls back from a missing version.
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
import pydantic_core
from pydantic import BaseModel, ConfigDict

from walle.deploy.channel import State, StatusReport
from walle.deploy.container import TaskHost
from walle.deploy.download import BundleDownloader, Superseded, TransportFault
from walle.deploy.enrolment import authenticate
from walle.deploy.errors import (
    BundleRefused,
    DigestMismatchError,
    HealthCheckError,
    IncompatibleRuntimeError,
    MalformedBundleError,
    OversizeBundleError,
    PathTraversalError,
    StoreError,
    TamperedFileError,
)
from walle.deploy.freshness import MetadataLog
from walle.deploy.install import ActiveRecord, Installer, accept_release
from walle.deploy.manifest import RUNTIME_ABI
from walle.deploy.notification import Notification, verify_signatures
from walle.deploy.policy import DeviceAttrs
from walle.deploy.signing import TrustStore
from walle.deploy.sse import SseItem, SseParser
from walle.deploy.verify import check_notification
from walle.errors import StorageError
from walle.logging import get_logger

_log = get_logger("deploy.agent")
#: Refusals about the bundle's bytes (complete and of the announced size): remembered, so
#: the digest is never tried again. Anything else (transport, expiry, order) is not.
_CONTENT_FAILURES = (
    DigestMismatchError,
    TamperedFileError,
    OversizeBundleError,
    PathTraversalError,
    MalformedBundleError,
    IncompatibleRuntimeError,
)


def _poll_items(body: bytes) -> list[object] | None:
    """The items of a polling answer; None (logged) for anything but a JSON list."""
    try:
        items = pydantic_core.from_json(body)
    except ValueError as exc:  # not JSON, or nested past the parser's recursion limit
        _log.warning("bad polling answer skipped", error=str(exc)[:200], size=len(body))
        return None
    if not isinstance(items, list):
        kind = type(items).__name__
        _log.warning("bad polling answer skipped", error=f"a JSON {kind}, not a list")
        return None
    return items


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
    #: A store that sends nothing for this long is cut and retried (a hang is a transport
    #: fault; with ``download_attempts`` it bounds how long one task's lock is held).
    download_read_timeout_s: float = 10.0
    #: After ``download_failed`` the release is tried again after this backoff (doubling,
    #: with jitter) for as long as it is the latest notification of its task.
    retry_min_s: float = 2.0
    retry_max_s: float = 300.0
    #: One notification (an SSE event) larger than this is skipped with a warning. 8 MiB
    #: holds a device list of ~300,000 ids of 20 characters.
    max_notification_bytes: int = 8 * 1024 * 1024
    #: A polling answer (every task's latest notification) larger than this is skipped.
    max_poll_bytes: int = 64 * 1024 * 1024
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
        self.metadata = MetadataLog(settings.home)
        self.stats: Counter[str] = Counter()
        self.states: dict[str, tuple[int | None, State]] = {}
        self._session = session
        self._own_session = session is None
        self._locks: dict[str, asyncio.Lock] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._unsent: list[StatusReport] = []
        self._told_failed: set[str] = set()
        self._latest: dict[str, Notification] = {}
        self._retries: Counter[str] = Counter()
        self.downloads = BundleDownloader(
            settings, lambda: self._http, self._superseded, self.stats
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Sweep interrupted installs and re-activate every installed task (after a restart)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        await asyncio.to_thread(self.installer.recover)
        for task in self.installer.tasks():
            try:
                await self._restore(task)
            except Exception as exc:  # one task's bad local state never stops the agent
                self.stats["restore_errors"] += 1
                _log.warning("installed task not started", task=task, error=repr(exc))
        _log.info(
            "agent started",
            device=self.attrs.device_id,
            gateway=self.settings.gateway_url,
            running=self._running_text() or "none",
        )

    async def _restore(self, task: str) -> None:
        """Start ``task``'s active version; a pointer to a missing directory falls back."""
        try:
            record = self.installer.active(task)
        except StorageError as exc:
            moved = self.installer.set_aside_pointer(task)
            _log.warning("unreadable active pointer set aside", task=task, to=str(moved))
            raise exc
        while record is not None and not self.installer.is_unpacked(task, record):
            _log.warning(
                "active version directory missing: falling back to the previous version",
                task=task,
                version=record.version,
                missing=str(self.installer.path_of(task, record)),
            )
            record = self.installer.revert(task)
        if record is not None:
            _log.info("starting installed task", task=task, version=record.version)
            await self._activate_or_revert(task, record, report=False)

    async def run(self) -> None:
        """Start, then follow the gateway forever (cancel to stop)."""
        await self.start()
        try:
            await self._follow()
        finally:
            await self.close()

    @property
    def _http(self) -> aiohttp.ClientSession:
        """The HTTP session (made on start when none was given)."""
        if self._session is None:
            raise RuntimeError("the agent is not started: no HTTP session yet")
        return self._session

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
                await self._poll_once()  # never raises: a bad answer is logged and skipped
                await asyncio.sleep(self.settings.poll_interval_s)
                continue
            try:
                await self._stream()
                delay = self.settings.reconnect_min_s
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.stats["stream_failures"] += 1
                _log.debug("stream lost", device=self.attrs.device_id, error=repr(exc))
                await self._poll_once()
            except Exception as exc:  # whatever the gateway sends, the agent stays up
                self.stats["stream_failures"] += 1
                _log.warning("stream failed", device=self.attrs.device_id, error=repr(exc))
                await self._poll_once()
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.settings.reconnect_max_s)

    # -- hearing about releases ------------------------------------------------------------

    async def _stream(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=60)
        async with self._http.get(f"{self.settings.gateway_url}/events", timeout=timeout) as resp:
            resp.raise_for_status()
            self.stats["connects"] += 1
            await self._flush_unsent()
            parser = SseParser(self.settings.max_notification_bytes)
            async for chunk in resp.content.iter_any():
                for item in parser.feed(chunk):
                    await self._on_sse(item)

    async def _on_sse(self, item: SseItem) -> None:
        if item.kind == "event" and item.data is not None:
            self._dispatch(item.data)
        elif item.kind == "oversize":
            self.stats["bad_notifications"] += 1
            _log.warning(
                "notification over the size cap skipped",
                device=self.attrs.device_id,
                size=item.size,
                cap=self.settings.max_notification_bytes,
            )
        elif item.kind == "comment" and self._unsent:  # keepalive: retry reports
            await self._flush_unsent()

    async def _poll_once(self) -> None:
        try:
            async with self._http.get(
                f"{self.settings.gateway_url}/notifications", timeout=aiohttp.ClientTimeout(10)
            ) as resp:
                resp.raise_for_status()
                body = await self._read_capped(resp, self.settings.max_poll_bytes)
                self.stats["polls"] += 1
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.stats["poll_failures"] += 1
            _log.debug("poll failed", device=self.attrs.device_id, error=repr(exc))
            return
        except Exception as exc:  # an answer over the cap, or anything else: skip it, go on
            self.stats["poll_failures"] += 1
            _log.warning("bad polling answer skipped", device=self.attrs.device_id, error=str(exc))
            return
        items = _poll_items(body)
        if items is None:
            self.stats["bad_polls"] += 1
            return
        for item in items:
            self._dispatch(item)

    @staticmethod
    async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes:
        """The whole body, or TransportFault as soon as it passes ``cap`` bytes."""
        body = bytearray()
        async for chunk in resp.content.iter_any():
            body += chunk
            if len(body) > cap:
                raise TransportFault(f"answer over {cap} bytes")
        return bytes(body)

    def _dispatch(self, payload: object) -> None:
        """Validate one notification (any JSON value, or raw bytes) and start its handler."""
        try:
            if isinstance(payload, bytes):
                note = Notification.model_validate_json(payload)
            else:
                note = Notification.model_validate(payload)
        except pydantic.ValidationError as exc:
            self.stats["bad_notifications"] += 1
            error = str(exc)[:500]
            _log.warning("bad notification skipped", device=self.attrs.device_id, error=error)
            return
        handler = asyncio.create_task(self.handle(note))
        self._handlers.add(handler)
        handler.add_done_callback(self._handlers.discard)

    # -- handling one release --------------------------------------------------------------

    async def handle(self, note: Notification) -> None:
        """Act on one notification (serialised per task; idempotent)."""
        self._note_latest(note)
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
        try:  # before acting: signatures, expiry, newer than what was accepted (no replay)
            version = active.version if active else None
            await asyncio.to_thread(self.metadata.admit, note, self.trust, version)
        except BundleRefused as exc:
            self.stats["metadata_refused"] += 1
            _log.warning("notification refused", **what, seq=note.seq, reason=str(exc))
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
            data = await self.downloads.download(note)
        except Superseded:
            self.stats["superseded"] += 1
            self.downloads.part_path(note.digest).unlink(missing_ok=True)
            _log.info("download dropped: a newer notification arrived", **what)
            return
        except StoreError as exc:
            await self._report(note.task, note.version, "download_failed", str(exc), note.digest)
            self._retry_later(note)
            return
        self._retries.pop(note.digest, None)
        await self._install(note, data)

    def _note_latest(self, note: Notification) -> None:
        """Remember ``note`` as its task's latest when it is signed and not older (``seq``)
        than the one remembered: only such a note stops a download in progress, so a forged
        or replayed one cannot starve a legitimate release."""
        try:
            verify_signatures(note, self.trust)
        except BundleRefused:
            return
        latest = self._latest.get(note.task)
        if latest is None or note.seq >= latest.seq:
            self._latest[note.task] = note

    def _superseded(self, note: Notification) -> bool:
        latest = self._latest.get(note.task)
        return latest is not None and latest != note

    def _retry_later(self, note: Notification) -> None:
        """Try ``note`` again after a backoff, unless a newer one for its task came meanwhile."""
        tries = self._retries[note.digest]
        self._retries[note.digest] += 1
        base = min(self.settings.retry_min_s * 2**tries, self.settings.retry_max_s)
        delay = base * (0.5 + random.random())
        _log.info("release retried later", task=note.task, version=note.version, after_s=delay)

        async def _later() -> None:
            await asyncio.sleep(delay)
            if not self._superseded(note):
                self.stats["release_retries"] += 1
                await self.handle(note)

        retry = asyncio.create_task(_later())
        self._handlers.add(retry)
        retry.add_done_callback(self._handlers.discard)

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
            if isinstance(exc, _CONTENT_FAILURES):  # the complete bytes are bad: never again
                self.installer.mark_failed(note.digest)
            await self._report(note.task, note.version, "refused", exc.reason, note.digest)
            return
        finally:
            self.downloads.part_path(note.digest).unlink(missing_ok=True)
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
            async with self._http.post(
                f"{self.settings.gateway_url}/status",
                data=authenticate(report, self.settings.home).model_dump_json(),
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

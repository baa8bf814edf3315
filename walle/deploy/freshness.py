"""The newest metadata a device accepted, per task: replay, freeze and fast-forward defence.

Before acting on a notification (one whose policy admits the device and whose bundle is
not what runs: the others cause no action, so they need no record) the agent asks
``MetadataLog.admit``. It checks, in order:

1. the signatures (release content by the release role, control layer by the rollout or
   release role, see ``walle.deploy.notification``): nothing unauthenticated is recorded;
2. time: neither layer expired, neither issued more than ``CLOCK_SKEW_S`` in the future;
3. order: ``seq`` must be newer than the accepted one (the same notification again is fine:
   a reconnect replays it), ``release_seq`` not older, and the same ``release_seq`` must
   carry the same release content; a version may not jump more than ``MAX_JUMP`` past what
   this device accepted or runs, nor ``seq`` more than ``MAX_JUMP`` past the current Unix
   second (publishers count from the clock), so a compromised key cannot publish 10**9 and
   lock out every later release.

What passes is written to ``<home>/metadata.json`` (fsynced, atomic rename) before the agent
acts, so a restart keeps refusing replays. An unreadable file is set aside (``.corrupt``)
and the device starts from what it runs; the installed-version check still refuses
downgrades that are not signed rollbacks.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from walle.deploy.errors import BundleRefused
from walle.deploy.notification import Notification, verify_signatures
from walle.deploy.roles import TrustStore
from walle.logging import get_logger

_log = get_logger("deploy.freshness")

#: Seconds a notification's issue time may lie ahead of the device's clock.
CLOCK_SKEW_S = 300.0
#: Most a version or sequence number may exceed what the device accepted or runs.
MAX_JUMP = 10_000
_FILE = "metadata.json"


class ReplayError(BundleRefused):
    """A notification not newer than what the device accepted for its task."""

    reason = "replay"


class FutureMetadataError(BundleRefused):
    """A notification issued further in the future than the allowed clock skew."""

    reason = "future-dated"


class ExpiredMetadataError(BundleRefused):
    """A notification whose control layer or release content has expired."""

    reason = "expired"


class VersionJumpError(BundleRefused):
    """A version or sequence number implausibly far past the accepted one."""

    reason = "version-jump"


class Accepted(BaseModel):
    """The newest notification a device accepted for one task."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int
    release_seq: int
    release_id: str
    content_id: str
    version: int


class MetadataLog:
    """Per-task newest accepted metadata, persisted under the agent's home."""

    def __init__(self, home: Path):
        self.path = home / _FILE
        self._lock = threading.Lock()  # admit may run on worker threads (the fsync)
        self.accepted: dict[str, Accepted] = self._load()
        #: (task, message) of every refusal since start, newest last (for logs and tests).
        self.refusals: list[tuple[str, str]] = []

    def _load(self) -> dict[str, Accepted]:
        if not self.path.exists():
            return {}
        try:
            raw = json.loads(self.path.read_bytes())
            return {task: Accepted.model_validate(item) for task, item in raw.items()}
        except (OSError, ValueError, AttributeError, ValidationError) as exc:
            aside = self.path.with_name(_FILE + ".corrupt")
            os.replace(self.path, aside)
            _log.error("unreadable metadata log set aside", path=str(aside), error=str(exc))
            return {}

    def _save(self) -> None:
        body = {task: item.model_dump() for task, item in sorted(self.accepted.items())}
        tmp = self.path.with_name(_FILE + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as handle:
            json.dump(body, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def admit(
        self,
        note: Notification,
        trust: TrustStore,
        running: int | None,
        now: float | None = None,
    ) -> None:
        """Record ``note`` as the newest for its task, or raise a ``BundleRefused`` naming why.

        Thread-safe; it fsyncs, so an event loop should call it through ``asyncio.to_thread``.
        """
        with self._lock:
            try:
                self._check(note, trust, running, time.time() if now is None else now)
            except BundleRefused as exc:
                self.refusals.append((note.task, str(exc)))
                raise
            accepted = Accepted(
                seq=note.seq,
                release_seq=note.release_seq,
                release_id=note.release_id(),
                content_id=note.content_id(),
                version=note.version,
            )
            if self.accepted.get(note.task) == accepted:
                return  # the same notification again: nothing to write
            self.accepted[note.task] = accepted
            self._save()

    def _check(
        self, note: Notification, trust: TrustStore, running: int | None, now: float
    ) -> None:
        verify_record(note, trust, now)
        what = f"release {note.task} v{note.version} (seq {note.seq})"
        last = self.accepted.get(note.task)
        _check_jump(note, what, last, running, now)
        if last is None:
            return
        if note.seq == last.seq and note.content_id() == last.content_id:
            return  # the same notification again (a reconnect replays the latest)
        if note.seq <= last.seq:
            raise ReplayError(
                f"{what} is a replay: this device already accepted seq {last.seq} for"
                f" {note.task}; a pause, rollback or advance must carry a higher seq"
            )
        if note.release_seq < last.release_seq:
            raise ReplayError(
                f"{what} re-wraps release content seq {note.release_seq}, older than the"
                f" accepted release seq {last.release_seq}"
            )
        if note.release_seq == last.release_seq and note.release_id() != last.release_id:
            raise ReplayError(
                f"{what} carries different release content under the accepted release seq"
                f" {last.release_seq}"
            )


def verify_record(note: Notification, trust: TrustStore, now: float | None = None) -> None:
    """Signatures by the right roles, not expired, not future-dated: what the gateway and the
    rollout controller check before forwarding or acting on a notification."""
    verify_signatures(note, trust)
    what = f"release {note.task} v{note.version} (seq {note.seq})"
    _check_time(note, what, time.time() if now is None else now)


def _check_time(note: Notification, what: str, now: float) -> None:
    for label, issued in (("issued", note.issued_at), ("released", note.released_at)):
        if issued > now + CLOCK_SKEW_S:
            raise FutureMetadataError(
                f"{what} is {label} {issued - now:.0f}s in the future (allowed clock skew"
                f" {CLOCK_SKEW_S:.0f}s): check the device clock or the publisher's"
            )
    for label, expires in (("notification", note.expires_at), ("release", note.release_expires_at)):
        if now >= expires:
            raise ExpiredMetadataError(
                f"{what}: the {label} expired at {expires:.0f} (now {now:.0f})"
            )


def _check_jump(
    note: Notification, what: str, last: Accepted | None, running: int | None, now: float
) -> None:
    base_version = max(last.version if last else 0, running or 0)
    if base_version and note.version > base_version + MAX_JUMP:
        raise VersionJumpError(
            f"{what} jumps from v{base_version} by more than {MAX_JUMP} versions"
        )
    ahead = note.seq - int(now + CLOCK_SKEW_S)
    if ahead > MAX_JUMP:
        raise VersionJumpError(
            f"{what}: seq is {ahead} past the current Unix second plus the clock skew (more"
            f" than {MAX_JUMP}): publishers count from the clock, so it cannot be this far ahead"
        )

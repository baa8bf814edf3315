"""Operator actions: release a bundle, roll back, pause (kill switch), advance or halt a stage.

``release`` uploads the bundle to the store (HTTP PUT to its content address, which the
store verifies) and publishes a signed notification; ``rollback`` re-publishes an older
release from the history as a signed rollback; ``pause`` re-publishes the current release
with ``paused`` set, so agents that have not installed it yet stop installing it;
``advance`` re-publishes a staged release at its next stage and ``halt`` pauses it with the
reason (what the rollout controller does on its own, see ``walle.deploy.rollout``).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from walle.deploy.bundle import open_bundle, sha256_hex
from walle.deploy.channel import (
    ChannelTopics,
    history,
    latest,
    publish,
    rejected_by_all,
    reports,
)
from walle.deploy.errors import ChannelError, RolloutError, StoreError
from walle.deploy.notification import Notification, load_bundle_signature, make_notification
from walle.deploy.policy import ReleasePolicy
from walle.errors import ValidationError
from walle.logging import get_logger

_log = get_logger("deploy.release")

DEFAULT_TTL_S = 7 * 24 * 3600.0
DEFAULT_TOPICS = ChannelTopics()


def upload(store_url: str, data: bytes) -> str:
    """PUT ``data`` to the store at its digest; return the bundle's URL."""
    digest = sha256_hex(data)
    url = f"{store_url.rstrip('/')}/bundles/{digest}"
    request = urllib.request.Request(
        url, data=data, method="PUT", headers={"Content-Type": "application/x-tar"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise StoreError(f"cannot upload bundle {digest[:12]} to {store_url}: {exc}") from exc
    return url


def release(
    bundle_path: Path,
    policy: ReleasePolicy,
    *,
    bootstrap: str,
    store_url: str,
    private: Ed25519PrivateKey,
    topics: ChannelTopics = DEFAULT_TOPICS,
    ttl_s: float = DEFAULT_TTL_S,
) -> Notification:
    """Upload a signed bundle and publish its notification; returns what was published."""
    data = bundle_path.read_bytes()
    bundle_signature = load_bundle_signature(bundle_path)
    if bundle_signature is None:
        raise ValidationError(
            "bundle is not signed: run `walle bundle sign` first", where=str(bundle_path)
        )
    manifest = open_bundle(data).manifest
    url = upload(store_url, data)
    salt = policy.salt or sha256_hex(data)[:16]
    note = make_notification(
        task=manifest.task,
        version=manifest.version,
        digest=sha256_hex(data),
        size=len(data),
        url=url,
        private=private,
        bundle_signature=bundle_signature,
        policy=policy.model_copy(update={"salt": salt}),
        ttl_s=ttl_s,
    )
    publish(bootstrap, topics, note)
    return note


def _republish(
    base: Notification,
    private: Ed25519PrivateKey,
    bootstrap: str,
    topics: ChannelTopics,
    ttl_s: float,
    **changes: object,
) -> Notification:
    now = time.time()
    fields = base.model_dump(exclude={"signature"})
    fields.update(issued_at=now, expires_at=now + ttl_s, reason="")
    fields.update(changes)
    note = Notification.model_validate(fields).signed_with(private)
    publish(bootstrap, topics, note)
    return note


def rollback(
    task: str,
    *,
    bootstrap: str,
    private: Ed25519PrivateKey,
    to_version: int | None = None,
    topics: ChannelTopics = DEFAULT_TOPICS,
    ttl_s: float = DEFAULT_TTL_S,
    force: bool = False,
) -> Notification:
    """Re-publish an earlier release of ``task`` (``to_version``, or the one before the
    current) as a signed rollback.

    Refused (RolloutError) when every device that reported on that bundle rejected it
    (devices skip a bundle that failed on them, so nothing would change); ``force``
    publishes it anyway, with a warning.
    """
    current = latest(bootstrap, topics, task)
    if current is None:
        raise ChannelError(f"task {task!r} has never been released")
    earlier = [n for n in history(bootstrap, topics, task) if not n.paused]
    if to_version is None:
        candidates = [n for n in earlier if n.version < current.version]
    else:
        candidates = [n for n in earlier if n.version == to_version]
    if not candidates:
        wanted = f"v{to_version}" if to_version else f"a version below v{current.version}"
        raise ChannelError(f"no release of {task!r} with {wanted} in the history")
    target = max(candidates, key=lambda n: (n.version, n.issued_at))
    if to_version is None:
        target = [n for n in candidates if n.version == target.version][-1]
    rejected = rejected_by_all(reports(bootstrap, topics, task), target.digest)
    if rejected and not force:
        example = rejected[-1]
        raise RolloutError(
            f"every device that tried {task} v{target.version} rejected it ({len(rejected)}"
            f" device(s); {example.device_id}: {example.state} {example.reason!r}), so devices"
            " would keep what they run: pick another version with --to, release a fixed one,"
            " or pass --force to publish the rollback anyway"
        )
    if rejected:
        _log.warning(
            "rollback to a version every device rejected",
            task=task,
            version=target.version,
            devices=len(rejected),
        )
    return _republish(target, private, bootstrap, topics, ttl_s, rollback=True, paused=False)


def pause(
    task: str,
    *,
    bootstrap: str,
    private: Ed25519PrivateKey,
    topics: ChannelTopics = DEFAULT_TOPICS,
    ttl_s: float = DEFAULT_TTL_S,
) -> Notification:
    """Kill switch: re-publish the current release of ``task`` marked paused."""
    current = latest(bootstrap, topics, task)
    if current is None:
        raise ChannelError(f"task {task!r} has never been released")
    return _republish(
        current, private, bootstrap, topics, ttl_s, paused=True, reason="paused by hand"
    )


def _staged_current(
    task: str, bootstrap: str, topics: ChannelTopics, current: Notification | None
) -> Notification:
    note = current or latest(bootstrap, topics, task)
    if note is None:
        raise ChannelError(f"task {task!r} has never been released")
    if note.policy.stages is None:
        raise RolloutError(f"{task} v{note.version} is not a staged release (no stages:)")
    if note.paused:
        why = f" ({note.reason})" if note.reason else ""
        raise RolloutError(f"{task} v{note.version} is paused{why}: release again to resume")
    return note


def advance(
    task: str,
    *,
    bootstrap: str,
    private: Ed25519PrivateKey,
    topics: ChannelTopics = DEFAULT_TOPICS,
    ttl_s: float = DEFAULT_TTL_S,
    current: Notification | None = None,
    reason: str = "advanced by hand",
) -> Notification:
    """Publish the next stage of ``task``'s staged release (``current``: skip reading it)."""
    note = _staged_current(task, bootstrap, topics, current)
    last = len(note.policy.stages.percentages) - 1  # type: ignore[union-attr]
    if note.policy.stage >= last:
        raise RolloutError(f"{task} v{note.version} is already at its last stage ({last + 1})")
    policy = note.policy.model_copy(update={"stage": note.policy.stage + 1})
    return _republish(note, private, bootstrap, topics, ttl_s, policy=policy, reason=reason)


def halt(
    task: str,
    reason: str,
    *,
    bootstrap: str,
    private: Ed25519PrivateKey,
    topics: ChannelTopics = DEFAULT_TOPICS,
    ttl_s: float = DEFAULT_TTL_S,
    current: Notification | None = None,
) -> Notification:
    """Stop ``task``'s staged release where it is (paused, with ``reason``)."""
    note = _staged_current(task, bootstrap, topics, current)
    return _republish(note, private, bootstrap, topics, ttl_s, paused=True, reason=reason)

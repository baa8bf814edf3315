"""Operator actions: release a bundle, roll back, pause (kill switch), advance or halt a stage.

``release`` uploads the bundle to the store (HTTP PUT to its content address, which the
store verifies) and publishes a signed notification; ``rollback`` re-publishes an older
release from the history as a signed rollback; ``pause`` re-publishes the current release
with ``paused`` set, so agents that have not installed it yet stop installing it;
``advance`` re-publishes a staged release at its next stage and ``halt`` pauses it with the
reason (what the rollout controller does on its own, see ``walle.deploy.rollout``).

Every publication takes the task's next ``seq`` (one more than the notification in force),
so devices can refuse replays. ``release`` and ``rollback`` sign new release content and
need a release key; ``pause``, ``advance`` and ``halt`` re-sign only the control layer
around the release content in force, so the rollout key is enough. What they read from the
topics is filtered (``walle.deploy.channel.latest``): given ``trust``, records that do not
verify are skipped; without it, records missing a signature layer are.
"""

from __future__ import annotations

import base64
import time
import urllib.error
import urllib.request
from pathlib import Path

from cryptography.exceptions import InvalidSignature
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
from walle.deploy.roles import TrustStore
from walle.deploy.signing import RELEASE_DOMAIN, key_id
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
    trust: TrustStore | None = None,
) -> Notification:
    """Upload a signed bundle and publish its notification; returns what was published."""
    data = bundle_path.read_bytes()
    bundle_signature = load_bundle_signature(bundle_path)
    if bundle_signature is None:
        raise ValidationError(
            "bundle is not signed: run `walle deploy bundle sign` first", where=str(bundle_path)
        )
    manifest = open_bundle(data).manifest
    if manifest.expired(time.time()):
        raise ValidationError(
            f"bundle {manifest.task} v{manifest.version} expired at {manifest.expires_at:.0f}"
            " (task.yaml expires_at): build it again with a later expiry",
            where=str(bundle_path),
        )
    current = latest(bootstrap, topics, manifest.task, trust)
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
        seq=next_seq(current),
        release_expires_at=manifest.expires_at,
    )
    publish(bootstrap, topics, note)
    return note


def next_seq(current: Notification | None, now: float | None = None) -> int:
    """The ``seq`` of the next publication for a task whose notification in force is
    ``current``: one more than its, and at least the current Unix second, so a channel
    rebuilt empty (a broker that lost its topics) still publishes above what devices hold.
    """
    second = int(time.time() if now is None else now)
    return max(1 if current is None else current.seq + 1, second)


def _republish(
    base: Notification,
    private: Ed25519PrivateKey,
    bootstrap: str,
    topics: ChannelTopics,
    ttl_s: float,
    *,
    seq: int,
    new_release: bool = False,
    **changes: object,
) -> Notification:
    """Publish ``base`` changed by ``changes`` at ``seq``; ``new_release``: re-sign its content
    (a release key's job) instead of keeping the release signatures."""
    now = time.time()
    fields = base.model_dump(exclude={"signature"})
    fields.update(issued_at=now, expires_at=now + ttl_s, reason="", seq=seq)
    if new_release:
        fields.update(release_seq=seq, released_at=now, release_expires_at=now + ttl_s)
    fields.update(changes)
    note = Notification.model_validate(fields)
    if new_release:
        note = note.release_signed_with(private)
    note = note.signed_with(private)
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
    trust: TrustStore | None = None,
    force: bool = False,
) -> Notification:
    """Re-publish an earlier release of ``task`` (``to_version``, or the one before the
    current) as a signed rollback.

    Refused (RolloutError) when every device that reported on that bundle rejected it
    (devices skip a bundle that failed on them, so nothing would change); ``force``
    publishes it anyway, with a warning.
    """
    current = latest(bootstrap, topics, task, trust)
    if current is None:
        raise ChannelError(f"task {task!r} has never been released")
    signer = key_id(private.public_key())
    earlier = [
        n
        for n in history(bootstrap, topics, task, trust)
        if not n.paused and _release_signed_by(n, private, signer)
    ]
    if to_version is None:
        candidates = [n for n in earlier if n.version < current.version]
    else:
        candidates = [n for n in earlier if n.version == to_version]
    if not candidates:
        wanted = f"v{to_version}" if to_version else f"a version below v{current.version}"
        raise ChannelError(
            f"no release of {task!r} with {wanted} signed by release key {signer} in the"
            " history (a rollback re-signs old release content, so only content this key"
            " signed qualifies: release that version again instead)"
        )
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
    return _republish(
        target,
        private,
        bootstrap,
        topics,
        ttl_s,
        seq=next_seq(current),
        new_release=True,
        rollback=True,
        paused=False,
    )


def _release_signed_by(note: Notification, private: Ed25519PrivateKey, signer: str) -> bool:
    """Whether ``note``'s release content carries a valid signature by ``private``'s key.

    A rollback re-signs an old release's content, so it only takes content this release
    key signed before: a record someone wrote to the history topic unsigned, or signed by
    another key, is skipped (with a warning) rather than signed into a rollback.
    """
    public = private.public_key()
    for signature in note.release_signatures:
        if signature.key_id != signer:
            continue
        try:
            raw = base64.b64decode(signature.value, validate=True)
            public.verify(raw, RELEASE_DOMAIN + note.release_payload())
        except (InvalidSignature, ValueError):
            break
        return True
    _log.warning(
        "history record not signed by this release key skipped",
        task=note.task,
        version=note.version,
        seq=note.seq,
        key=signer,
    )
    return False


def pause(
    task: str,
    *,
    bootstrap: str,
    private: Ed25519PrivateKey,
    topics: ChannelTopics = DEFAULT_TOPICS,
    ttl_s: float = DEFAULT_TTL_S,
    trust: TrustStore | None = None,
) -> Notification:
    """Kill switch: re-publish the current release of ``task`` marked paused."""
    current = latest(bootstrap, topics, task, trust)
    if current is None:
        raise ChannelError(f"task {task!r} has never been released")
    return _republish(
        current,
        private,
        bootstrap,
        topics,
        ttl_s,
        seq=next_seq(current),
        paused=True,
        reason="paused by hand",
    )


def _staged_current(
    task: str,
    bootstrap: str,
    topics: ChannelTopics,
    current: Notification | None,
    trust: TrustStore | None,
) -> Notification:
    note = current or latest(bootstrap, topics, task, trust)
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
    trust: TrustStore | None = None,
    current: Notification | None = None,
    reason: str = "advanced by hand",
) -> Notification:
    """Publish the next stage of ``task``'s staged release (``current``: skip reading it)."""
    note = _staged_current(task, bootstrap, topics, current, trust)
    last = len(note.policy.stages.percentages) - 1  # type: ignore[union-attr]
    if note.policy.stage >= last:
        raise RolloutError(f"{task} v{note.version} is already at its last stage ({last + 1})")
    policy = note.policy.model_copy(update={"stage": note.policy.stage + 1})
    return _republish(
        note, private, bootstrap, topics, ttl_s, seq=next_seq(note), policy=policy, reason=reason
    )


def halt(
    task: str,
    reason: str,
    *,
    bootstrap: str,
    private: Ed25519PrivateKey,
    topics: ChannelTopics = DEFAULT_TOPICS,
    ttl_s: float = DEFAULT_TTL_S,
    trust: TrustStore | None = None,
    current: Notification | None = None,
) -> Notification:
    """Stop ``task``'s staged release where it is (paused, with ``reason``)."""
    note = _staged_current(task, bootstrap, topics, current, trust)
    return _republish(
        note, private, bootstrap, topics, ttl_s, seq=next_seq(note), paused=True, reason=reason
    )

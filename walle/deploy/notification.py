"""The release notification: the small signed message that says "this bundle is out".

It travels on the compacted Kafka topic ``walle.releases`` (key = task) and through the
gateway to agents. The release signature covers every field except ``url`` (where to fetch
is not a trust decision: the digest pins the bytes) and the signature itself.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field

from walle.deploy.manifest import Sha256
from walle.deploy.policy import ReleasePolicy
from walle.deploy.signing import BUNDLE_DOMAIN, RELEASE_DOMAIN, Signature, TrustStore, sign
from walle.errors import ValidationError


class Notification(BaseModel):
    """One release of one task, as published to devices."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str
    version: int = Field(ge=1)
    digest: Sha256
    size: int = Field(ge=1)
    url: str
    policy: ReleasePolicy = Field(default_factory=ReleasePolicy)
    rollback: bool = False
    paused: bool = False
    reason: str = ""  # why this re-publication (a halt's failure rate, a manual pause)
    issued_at: float
    expires_at: float
    bundle_signature: Signature | None = None
    signature: Signature | None = None

    def signed_payload(self) -> bytes:
        """Canonical JSON of the fields the release signature covers."""
        body = self.model_dump(mode="json", exclude={"url", "signature"})
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def to_bytes(self) -> bytes:
        """The wire form (JSON) of the whole notification."""
        return self.model_dump_json().encode()

    def signed_with(self, private: Ed25519PrivateKey) -> Notification:
        """A copy carrying a release signature by ``private``."""
        signature = sign(private, RELEASE_DOMAIN, self.signed_payload())
        return self.model_copy(update={"signature": signature})

    def expired(self, now: float | None = None) -> bool:
        """Whether the notification's expiry has passed."""
        return (time.time() if now is None else now) >= self.expires_at


def bundle_payload(digest: str) -> bytes:
    """What a bundle signature signs: the bundle's digest."""
    return digest.encode()


def verify_signatures(note: Notification, trust: TrustStore) -> None:
    """Check the release signature and the bundle signature against ``trust``."""
    where = f"release {note.task} v{note.version}"
    trust.verify(note.signature, RELEASE_DOMAIN, note.signed_payload(), where)
    what = f"bundle {note.digest[:12]}"
    trust.verify(note.bundle_signature, BUNDLE_DOMAIN, bundle_payload(note.digest), what)


def signature_path(bundle_path: Path) -> Path:
    """Where ``walle bundle sign`` puts a bundle's detached signature."""
    return bundle_path.with_name(bundle_path.name + ".sig")


def sign_bundle(bundle_path: Path, private: Ed25519PrivateKey) -> Path:
    """Sign the digest of the bundle at ``bundle_path``; write ``<bundle>.sig``; return it."""
    digest = hashlib.sha256(bundle_path.read_bytes()).hexdigest()
    out = signature_path(bundle_path)
    out.write_text(sign(private, BUNDLE_DOMAIN, bundle_payload(digest)).model_dump_json())
    return out


def load_bundle_signature(bundle_path: Path) -> Signature | None:
    """The detached signature of a bundle, or None when it was never signed."""
    path = signature_path(bundle_path)
    if not path.is_file():
        return None
    try:
        return Signature.model_validate_json(path.read_bytes())
    except ValueError as exc:
        raise ValidationError(f"unreadable bundle signature: {exc}", where=str(path)) from exc


def make_notification(
    *,
    task: str,
    version: int,
    digest: str,
    size: int,
    url: str,
    private: Ed25519PrivateKey,
    bundle_signature: Signature | None,
    policy: ReleasePolicy | None = None,
    ttl_s: float = 7 * 24 * 3600,
    rollback: bool = False,
    paused: bool = False,
    now: float | None = None,
) -> Notification:
    """A release notification signed by ``private``, expiring ``ttl_s`` seconds from ``now``."""
    issued = time.time() if now is None else now
    note = Notification(
        task=task,
        version=version,
        digest=digest,
        size=size,
        url=url,
        policy=policy or ReleasePolicy(),
        rollback=rollback,
        paused=paused,
        issued_at=issued,
        expires_at=issued + ttl_s,
        bundle_signature=bundle_signature,
    )
    return note.signed_with(private)

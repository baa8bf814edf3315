"""The release notification: the small signed message that says "this bundle is out".

It travels on the compacted Kafka topic ``walle.releases`` (key = task) and through the
gateway to agents. It has two signed layers (after TUF's targets and timestamp roles):

- the **release content** (task, version, digest, size, policy without its stage,
  rollback, ``release_seq``, ``released_at``, ``release_expires_at``, the bundle signature)
  is signed by a threshold of the root's ``release`` keys (``release_signatures``);
- the **control layer** (everything but ``url``: adds ``seq``, the stage, ``paused``,
  ``reason``, ``issued_at``, ``expires_at`` and the release signatures) is signed by one
  ``release`` or ``rollout`` key (``signature``).

So the online rollout key can advance, halt or pause a release but never name another
bundle, roll back or extend a release's life. ``seq`` is the per-task metadata version:
every publication (release, rollback, pause, advance, halt) takes the next one (at least
the current Unix second), and a device refuses anything not newer than what it accepted
(``walle.deploy.freshness``).
``url`` is not signed: the digest pins the bytes.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field

from walle.deploy.errors import UntrustedSignatureError
from walle.deploy.manifest import MAX_VERSION, Sha256
from walle.deploy.policy import ReleasePolicy
from walle.deploy.roles import TrustStore
from walle.deploy.signing import (
    BUNDLE_DOMAIN,
    CONTROL_DOMAIN,
    RELEASE_DOMAIN,
    Signature,
    key_id,
    sign,
)
from walle.errors import ValidationError

#: Highest ``seq``: publishers use at least the Unix second (``walle.deploy.release``).
MAX_SEQ = 10**12

#: Fields the release keys sign (the policy without its ``stage``).
RELEASE_FIELDS = frozenset(
    {
        "task",
        "version",
        "digest",
        "size",
        "policy",
        "rollback",
        "release_seq",
        "released_at",
        "release_expires_at",
        "bundle_signature",
    }
)


def _canonical(body: dict[str, object]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


class Notification(BaseModel):
    """One release of one task, as published to devices."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str
    version: int = Field(ge=1, le=MAX_VERSION)
    digest: Sha256
    size: int = Field(ge=1)
    url: str
    policy: ReleasePolicy = Field(default_factory=ReleasePolicy)
    rollback: bool = False
    release_seq: int = Field(default=1, ge=1, le=MAX_SEQ)
    released_at: float
    release_expires_at: float
    bundle_signature: Signature | None = None
    release_signatures: tuple[Signature, ...] = ()
    seq: int = Field(default=1, ge=1, le=MAX_SEQ)
    paused: bool = False
    reason: str = ""  # why this re-publication (a halt's failure rate, a manual pause)
    issued_at: float
    expires_at: float
    signature: Signature | None = None

    def release_payload(self) -> bytes:
        """Canonical JSON of the release content (what release keys sign)."""
        body = self.model_dump(mode="json", include=set(RELEASE_FIELDS))
        body["policy"].pop("stage", None)
        return _canonical(body)

    def signed_payload(self) -> bytes:
        """Canonical JSON of the control layer (what the control signature covers)."""
        return _canonical(self.model_dump(mode="json", exclude={"url", "signature"}))

    def to_bytes(self) -> bytes:
        """The wire form (JSON) of the whole notification."""
        return self.model_dump_json().encode()

    def release_signed_with(self, *privates: Ed25519PrivateKey) -> Notification:
        """A copy whose release content is signed by ``privates`` (release keys)."""
        payload = self.release_payload()
        signatures = tuple(sign(p, RELEASE_DOMAIN, payload) for p in privates)
        return self.model_copy(update={"release_signatures": signatures, "signature": None})

    def signed_with(self, private: Ed25519PrivateKey) -> Notification:
        """A copy whose control layer is signed by ``private`` (a release or rollout key)."""
        signature = sign(private, CONTROL_DOMAIN, self.signed_payload())
        return self.model_copy(update={"signature": signature})

    def expired(self, now: float | None = None) -> bool:
        """Whether the control layer's or the release's expiry has passed."""
        moment = time.time() if now is None else now
        return moment >= min(self.expires_at, self.release_expires_at)

    def content_id(self) -> str:
        """SHA-256 of the signed control payload: tells two notifications apart."""
        return hashlib.sha256(self.signed_payload()).hexdigest()

    def release_id(self) -> str:
        """SHA-256 of the release content: the same release re-wrapped keeps it."""
        return hashlib.sha256(self.release_payload()).hexdigest()


def bundle_payload(digest: str) -> bytes:
    """What a bundle signature signs: the bundle's digest."""
    return digest.encode()


def verify_signatures(note: Notification, trust: TrustStore) -> None:
    """Check all three signatures of ``note`` against the roles of ``trust``'s root.

    The release content needs a threshold of release keys; the control layer the rollout
    role's threshold or one release key; the bundle one release key. Raises
    ``UnsignedBundleError`` or ``UntrustedSignatureError`` (``ThresholdError``) naming the
    layer and the key.
    """
    wire = hashlib.sha256(note.to_bytes()).hexdigest()  # the whole record, signatures too
    if trust.seen_valid(wire):
        return
    where = f"release {note.task} v{note.version}"
    trust.verify_role(
        "release", note.release_signatures, RELEASE_DOMAIN, note.release_payload(), where
    )
    control = f"{where} (seq {note.seq})"
    signatures = (note.signature,) if note.signature is not None else ()
    try:
        trust.verify_role("rollout", signatures, CONTROL_DOMAIN, note.signed_payload(), control)
    except UntrustedSignatureError:  # one release key may sign the control layer too
        trust.verify_role(
            "release", signatures, CONTROL_DOMAIN, note.signed_payload(), control, threshold=1
        )
    what = f"bundle {note.digest[:12]}"
    trust.verify(note.bundle_signature, BUNDLE_DOMAIN, bundle_payload(note.digest), what)
    trust.remember_valid(wire)


def signature_path(bundle_path: Path) -> Path:
    """Where ``walle deploy bundle sign`` puts a bundle's detached signature."""
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
    seq: int = 1,
    release_expires_at: float | None = None,
) -> Notification:
    """A notification whose release content and control layer are both signed by ``private``
    (a release key), expiring ``ttl_s`` seconds from ``now`` (or at ``release_expires_at``
    when that is sooner: a manifest's own expiry); ``seq`` is its per-task version.
    """
    issued = time.time() if now is None else now
    expires = issued + ttl_s
    if release_expires_at is not None:
        expires = min(expires, release_expires_at)
    note = Notification(
        task=task,
        version=version,
        digest=digest,
        size=size,
        url=url,
        policy=policy or ReleasePolicy(),
        rollback=rollback,
        release_seq=seq,
        released_at=issued,
        release_expires_at=expires,
        bundle_signature=bundle_signature,
        seq=seq,
        paused=paused,
        issued_at=issued,
        expires_at=expires,
    )
    return note.release_signed_with(private).signed_with(private)


def signer_id(private: Ed25519PrivateKey) -> str:
    """The key id of ``private`` (for messages naming who signed)."""
    return key_id(private.public_key())

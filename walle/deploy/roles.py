"""Root metadata: which keys may sign what, k of n (after TUF's root role), and device trust.

Three roles, each a set of key ids and a threshold:

- ``root``: offline keys. A threshold of them signs root metadata, the only thing that
  says which keys hold which role. A new root (rotation, revocation) is accepted only as
  the next version, signed by a threshold of the current root's root keys *and* of its
  own, so one stolen root key changes nothing.
- ``release``: the keys of the release process. They sign bundles and the release content
  of a notification (task, version, digest, size, policy, rollback, release expiry).
- ``rollout``: the online key of the rollout controller. It signs only the control layer of
  a notification (sequence number, stage, pause, control expiry) around release content a
  release key signed; it cannot name another bundle nor roll back.

A device keeps its current root as ``root.json`` in its trust directory (``TrustStore``).
Keys that a newer root leaves out are revoked from then on: their signatures are refused.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import time
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, model_validator

from walle.deploy.errors import BundleRefused, UnsignedBundleError, UntrustedSignatureError
from walle.deploy.manifest import MAX_VERSION
from walle.deploy.signing import Signature, key_id, load_public_key, sign
from walle.errors import ValidationError

ROOT_DOMAIN = b"walle-root-v1\0"
#: Name of the root metadata file in a device's trust directory.
ROOT_FILE = "root.json"
_VERIFIED_CACHE = 4096

RoleName = Literal["root", "release", "rollout"]
ROLE_NAMES: tuple[RoleName, ...] = ("root", "release", "rollout")


class ThresholdError(UntrustedSignatureError):
    """Fewer valid signatures by a role's keys than its threshold."""

    reason = "threshold-not-met"


class RootUpdateError(BundleRefused):
    """A new root metadata version that does not chain from the current one."""

    reason = "bad-root"


class Role(BaseModel):
    """The keys that hold one role and how many of them must sign."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keyids: tuple[str, ...] = Field(min_length=1)
    threshold: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _reachable(self) -> Role:
        if self.threshold > len(set(self.keyids)):
            raise ValueError(
                f"threshold {self.threshold} exceeds the {len(set(self.keyids))} distinct key(s)"
            )
        return self


class RootBody(BaseModel):
    """What the root keys sign: version, expiry, public keys by id, roles."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(ge=1, le=MAX_VERSION)
    expires_at: float
    keys: dict[str, str]  # key id -> base64 of the raw 32-byte Ed25519 public key
    roles: dict[RoleName, Role]

    @model_validator(mode="after")
    def _consistent(self) -> RootBody:
        for kid, raw in self.keys.items():
            if key_id(_public(raw)) != kid:
                raise ValueError(f"key id {kid} does not match its public key")
        for name in ROLE_NAMES:
            if name not in self.roles:
                raise ValueError(f"role {name!r} is missing")
            unknown = set(self.roles[name].keyids) - set(self.keys)
            if unknown:
                raise ValueError(f"role {name!r} names unknown key(s) {sorted(unknown)}")
        return self

    def payload(self) -> bytes:
        """Canonical JSON: what root signatures sign."""
        body = self.model_dump(mode="json")
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def role_of(self, kid: str) -> list[str]:
        """The roles key ``kid`` holds in this root (empty: revoked or never trusted)."""
        return [name for name in ROLE_NAMES if kid in self.roles[name].keyids]


class RootMetadata(BaseModel):
    """Signed root metadata, as stored in ``root.json``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    signed: RootBody
    signatures: tuple[Signature, ...] = ()

    def to_bytes(self) -> bytes:
        """The JSON form written to disk and handed to devices."""
        return self.model_dump_json(indent=1).encode()

    def signed_by(self, private: Ed25519PrivateKey) -> RootMetadata:
        """A copy with one more signature, by ``private``."""
        signature = sign(private, ROOT_DOMAIN, self.signed.payload())
        kept = tuple(s for s in self.signatures if s.key_id != signature.key_id)
        return self.model_copy(update={"signatures": (*kept, signature)})

    @classmethod
    def load(cls, path: Path) -> RootMetadata:
        """Read ``root.json``; errors name the file."""
        try:
            return cls.model_validate_json(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ValidationError(f"unreadable root metadata: {exc}", where=str(path)) from exc


@functools.lru_cache(maxsize=256)
def _public(raw_b64: str) -> Ed25519PublicKey:
    """The key object of a root's base64 key (cached: every verification looks one up)."""
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(raw_b64, validate=True))
    except ValueError as exc:
        raise ValueError(f"not a raw Ed25519 public key: {exc}") from exc


def encode_public(public: Ed25519PublicKey) -> str:
    """Base64 of the raw public key bytes, as root metadata stores keys."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def new_root(
    roles: dict[RoleName, list[Path | Ed25519PublicKey]],
    thresholds: dict[RoleName, int] | None = None,
    *,
    version: int = 1,
    expires_in_s: float = 365 * 24 * 3600.0,
    now: float | None = None,
) -> RootMetadata:
    """Unsigned root metadata giving each role its public keys (files or key objects)."""
    keys: dict[str, str] = {}
    spec: dict[RoleName, Role] = {}
    for name in ROLE_NAMES:
        ids = []
        for item in roles.get(name, []):
            public = load_public_key(item) if isinstance(item, Path) else item
            ids.append(key_id(public))
            keys[ids[-1]] = encode_public(public)
        if not ids:
            raise ValidationError(f"root metadata needs at least one {name} key", field=name)
        spec[name] = Role(keyids=tuple(ids), threshold=(thresholds or {}).get(name, 1))
    issued = time.time() if now is None else now
    body = RootBody(version=version, expires_at=issued + expires_in_s, keys=keys, roles=spec)
    return RootMetadata(signed=body)


def verify_role(
    root: RootBody,
    role: RoleName,
    signatures: tuple[Signature, ...] | list[Signature],
    domain: bytes,
    payload: bytes,
    what: str,
    threshold: int | None = None,
) -> None:
    """Accept when a threshold of ``role``'s keys in ``root`` signed ``domain + payload``
    (``threshold``: another count than the role's, e.g. 1 for a bundle's single signature).

    Signatures by keys outside the role (revoked, another role's, a stranger's) do not
    count; when none counts the error names the first such key and why.
    """
    spec = root.roles[role]
    if not signatures:
        raise UnsignedBundleError(f"{what} is not signed")
    valid: set[str] = set()
    refused: list[str] = []
    for signature in signatures:
        if signature.key_id not in spec.keyids:
            held = root.role_of(signature.key_id)
            why = f"holds {', '.join(held)}" if held else "is revoked or was never trusted"
            refused.append(
                f"key {signature.key_id} is not a {role} key in root v{root.version} (it {why})"
            )
            continue
        public = _public(root.keys[signature.key_id])
        try:
            public.verify(base64.b64decode(signature.value, validate=True), domain + payload)
        except (InvalidSignature, ValueError):
            refused.append(f"signature by key {signature.key_id} does not verify")
            continue
        valid.add(signature.key_id)
    needed = spec.threshold if threshold is None else threshold
    if len(valid) >= needed:
        return
    if not valid:
        raise UntrustedSignatureError(f"{what}: {refused[0]}")
    raise ThresholdError(
        f"{what}: {len(valid)} valid {role} signature(s), root v{root.version} requires {needed}"
    )


def check_root_update(current: RootBody, new: RootMetadata, now: float) -> None:
    """Accept ``new`` as the successor of ``current`` or raise ``RootUpdateError``.

    The next version only; signed by a threshold of the current root keys (so the old
    keys authorise the change) and of the new ones (so the new keys exist); not expired.
    """
    body = new.signed
    if body.version != current.version + 1:
        raise RootUpdateError(
            f"root v{body.version} does not follow the trusted root v{current.version}"
            f" (only v{current.version + 1} is accepted)"
        )
    if body.expires_at <= now:
        raise RootUpdateError(f"root v{body.version} expired at {body.expires_at:.0f}")
    what = f"root v{body.version}"
    for signer, label in ((current, "trusted"), (body, "new")):
        try:
            verify_role(signer, "root", new.signatures, ROOT_DOMAIN, body.payload(), what)
        except UntrustedSignatureError as exc:
            raise RootUpdateError(f"{exc} (checked against the {label} root's keys)") from exc


def verify_root_self(meta: RootMetadata) -> None:
    """A first root (no predecessor) must at least carry its own root threshold."""
    what = f"root v{meta.signed.version}"
    payload = meta.signed.payload()
    verify_role(meta.signed, "root", meta.signatures, ROOT_DOMAIN, payload, what)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class TrustStore:
    """What a device (or gateway, or controller) trusts: one root metadata version.

    ``verify`` checks a single signature by a release key (bundle signatures);
    ``verify_role`` a threshold of any role; ``update`` moves to the next root version.
    """

    def __init__(self, root: RootMetadata, path: Path | None = None):
        verify_root_self(root)
        self.root = root
        self.path = path
        self._verified: set[str] = set()

    @classmethod
    def from_paths(cls, paths: list[Path]) -> TrustStore:
        """Trust the root metadata in ``paths`` (a ``root.json`` file or a directory holding one).

        A directory of bare ``.pub`` files (how trust worked before roles) is refused with
        what to do: public keys alone say nothing about who may sign what.
        """
        for path in paths:
            candidate = path / ROOT_FILE if path.is_dir() else path
            if candidate.is_file() and candidate.suffix == ".json":
                return cls(RootMetadata.load(candidate), candidate)
        where = ", ".join(map(str, paths))
        raise ValidationError(
            "no root metadata (root.json) found: devices now trust a signed root that names"
            " the root, release and rollout keys, not a directory of .pub files. Create one"
            " with `walle deploy root init --root-key ROOT.pub --release-key RELEASE.pub"
            " --rollout-key ROLLOUT.pub --out root.json`, sign it with `walle deploy root"
            " sign root.json --key ROOT.key`, and pass that file (or its directory) as --trust",
            where=where,
        )

    @property
    def version(self) -> int:
        """The trusted root's version."""
        return self.root.signed.version

    @property
    def key_ids(self) -> frozenset[str]:
        """Ids of every key the root names (any role)."""
        return frozenset(self.root.signed.keys)

    def verify(self, signature: Signature | None, domain: bytes, payload: bytes, what: str) -> None:
        """Accept one signature by a release key over ``domain + payload`` (a bundle's: the
        release content, signed by the role's threshold, pins the same digest)."""
        signatures = (signature,) if signature is not None else ()
        verify_role(self.root.signed, "release", signatures, domain, payload, what, threshold=1)

    def verify_role(
        self,
        role: RoleName,
        signatures: tuple[Signature, ...] | list[Signature],
        domain: bytes,
        payload: bytes,
        what: str,
        threshold: int | None = None,
    ) -> None:
        """Accept a threshold of ``role``'s signatures over ``domain + payload``."""
        verify_role(self.root.signed, role, signatures, domain, payload, what, threshold)

    def update(self, new: RootMetadata, now: float | None = None) -> None:
        """Trust ``new`` from now on if it chains from the current root; persist it."""
        check_root_update(self.root.signed, new, time.time() if now is None else now)
        if self.path is not None:
            _write_atomic(self.path, new.to_bytes())
        self.root = new
        self._verified = set()

    def seen_valid(self, digest: str) -> bool:
        """Whether a record with this SHA-256 (of its whole wire form) verified under the
        current root (an agent checks one notification at several steps; a fleet in one
        process shares one store)."""
        return digest in self._verified

    def remember_valid(self, digest: str) -> None:
        """Note that the record with this SHA-256 verified under the current root."""
        if len(self._verified) >= _VERIFIED_CACHE:
            self._verified = set()
        self._verified.add(digest)

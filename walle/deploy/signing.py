"""Ed25519 keys and signatures (which key may sign what: ``walle.deploy.roles``).

A key's id is the first 16 hex digits of SHA-256 of its raw public key. Signatures are
made over a domain-separated message (``b"walle-<kind>-v1\\0" + payload``) so a bundle
signature can never be replayed as a release signature.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict

from walle.errors import ValidationError

if TYPE_CHECKING:  # at run time ``TrustStore`` comes lazily from ``__getattr__`` below
    from walle.deploy.roles import TrustStore as TrustStore

BUNDLE_DOMAIN = b"walle-bundle-v1\0"
RELEASE_DOMAIN = b"walle-release-v1\0"
CONTROL_DOMAIN = b"walle-control-v1\0"


class Signature(BaseModel):
    """A detached Ed25519 signature and the id of the key that made it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: str
    value: str  # base64 of the 64 signature bytes


def key_id(public: Ed25519PublicKey) -> str:
    """The id of ``public``: 16 hex digits of SHA-256 of its raw bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def new_key(out_dir: Path, name: str) -> tuple[Path, Path, str]:
    """Write ``name.key`` (PEM, private, mode 0600) and ``name.pub``; return paths and key id."""
    private = Ed25519PrivateKey.generate()
    out_dir.mkdir(parents=True, exist_ok=True)
    key_path, pub_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    if key_path.exists():
        raise ValidationError("refusing to overwrite an existing key", where=str(key_path))
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_path.touch(mode=0o600)
    key_path.write_bytes(pem)
    pub_path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key_path, pub_path, key_id(private.public_key())


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a PEM Ed25519 private key; errors name the file."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ValidationError(f"cannot read private key: {exc}", where=str(path)) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ValidationError("not an Ed25519 private key", where=str(path))
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a PEM Ed25519 public key; errors name the file."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ValidationError(f"cannot read public key: {exc}", where=str(path)) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValidationError("not an Ed25519 public key", where=str(path))
    return key


def sign(private: Ed25519PrivateKey, domain: bytes, payload: bytes) -> Signature:
    """Sign ``domain + payload`` with ``private``."""
    value = private.sign(domain + payload)
    return Signature(key_id=key_id(private.public_key()), value=base64.b64encode(value).decode())


def __getattr__(name: str) -> object:
    """``TrustStore`` moved to ``walle.deploy.roles`` (it now holds root metadata)."""
    if name == "TrustStore":
        from walle.deploy.roles import TrustStore

        return TrustStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The device-side checks a release and its bundle must pass before anything is installed.

``check_notification`` runs before any download (signatures, expiry, version order);
``check_bundle`` runs on the downloaded bytes (size, digest, archive, manifest, runtime).
Each failure raises a ``BundleRefused`` subclass whose ``reason`` the agent reports.
"""

from __future__ import annotations

from collections.abc import Collection

from walle.deploy.bundle import BundleContents, open_bundle, sha256_hex
from walle.deploy.errors import (
    DigestMismatchError,
    ExpiredNotificationError,
    IncompatibleRuntimeError,
    MalformedBundleError,
    OversizeBundleError,
    RollbackAttackError,
)
from walle.deploy.manifest import RUNTIME_ABI
from walle.deploy.notification import Notification, verify_signatures
from walle.deploy.signing import TrustStore


def check_notification(
    note: Notification, trust: TrustStore, installed_version: int | None, now: float
) -> None:
    """Refuse an unsigned, untrusted, expired or not-newer (unless signed rollback) release."""
    verify_signatures(note, trust)
    if note.expired(now):
        raise ExpiredNotificationError(
            f"release {note.task} v{note.version} expired at {note.expires_at:.0f} (now {now:.0f})"
        )
    if installed_version is not None and note.version <= installed_version and not note.rollback:
        raise RollbackAttackError(
            f"release {note.task} v{note.version} is not newer than installed "
            f"v{installed_version} and is not a signed rollback"
        )


def check_bundle(
    data: bytes, note: Notification, runtime_abis: Collection[int] = (RUNTIME_ABI,)
) -> BundleContents:
    """Check downloaded ``data`` against ``note`` and open it; nothing is written to disk."""
    if len(data) > note.size:
        raise OversizeBundleError(
            f"bundle {note.digest[:12]} is {len(data)} bytes, the release says {note.size}"
        )
    actual = sha256_hex(data)
    if actual != note.digest:
        raise DigestMismatchError(
            f"bundle bytes hash to {actual[:12]}, release says {note.digest[:12]}"
        )
    contents = open_bundle(data)
    manifest = contents.manifest
    if (manifest.task, manifest.version) != (note.task, note.version):
        raise MalformedBundleError(
            f"manifest says {manifest.task} v{manifest.version}, release says "
            f"{note.task} v{note.version}"
        )
    if manifest.runtime_abi not in runtime_abis:
        raise IncompatibleRuntimeError(
            f"bundle {note.task} v{note.version} needs runtime ABI {manifest.runtime_abi}, "
            f"this device has {sorted(runtime_abis)}"
        )
    return contents

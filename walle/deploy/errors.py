"""Why a bundle or release is refused: one ``BundleError`` subclass per reason.

Every refusal carries a short machine-readable ``reason`` (reported to the status topic)
and a message that says what was checked and where.
"""

from __future__ import annotations

from walle.errors import BundleError, WalleError


class BundleRefused(BundleError):
    """Base of every refusal; ``reason`` is the code an agent reports."""

    reason = "refused"


class UnsignedBundleError(BundleRefused):
    """The bundle or the notification carries no signature."""

    reason = "unsigned"


class UntrustedSignatureError(BundleRefused):
    """The signature is by an unknown key or does not verify."""

    reason = "bad-signature"


class TamperedFileError(BundleRefused):
    """A file in the archive does not match the SHA-256 in the manifest."""

    reason = "tampered-file"


class DigestMismatchError(BundleRefused):
    """The downloaded bytes do not hash to the digest in the notification."""

    reason = "digest-mismatch"


class ExpiredNotificationError(BundleRefused):
    """The notification's expiry has passed."""

    reason = "expired"


class RollbackAttackError(BundleRefused):
    """The version is not newer than the installed one and the release is no signed rollback."""

    reason = "version-not-newer"


class OversizeBundleError(BundleRefused):
    """The bundle is larger than its notification or manifest says."""

    reason = "oversize"


class PathTraversalError(BundleRefused):
    """An archive member would land outside the install directory."""

    reason = "path-traversal"


class IncompatibleRuntimeError(BundleRefused):
    """The bundle needs a runtime/ABI version this device does not have."""

    reason = "incompatible-runtime"


class MalformedBundleError(BundleRefused):
    """The archive or manifest cannot be read, or disagrees with the notification."""

    reason = "malformed"


class StoreError(WalleError):
    """The bundle store cannot be reached or answered with an error."""


class ChannelError(WalleError):
    """The release channel (Kafka topics) cannot be read or written."""


class PolicyError(WalleError):
    """A release policy file is malformed; names the file and field."""


class RolloutError(WalleError):
    """A staged rollout cannot take the step asked for (not staged, paused, at the end)."""


class HealthCheckError(WalleError):
    """A task failed its health check after activation (error, timeout or false result)."""

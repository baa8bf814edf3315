"""Why a bundle or release is refused: one ``BundleError`` subclass per reason.

Every refusal carries a short machine-readable ``reason`` (reported to the status topic)
and a message that says what was checked and where.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from walle.errors import BundleError, WalleError

if TYPE_CHECKING:
    from pydantic import BaseModel


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


def _nested_model(model: type, loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The pydantic model at ``loc`` inside ``model`` (None where it is not a model)."""
    import types
    import typing

    from pydantic import BaseModel

    current: object = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return None
        annotation = fields[part].annotation
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = options[0] if len(options) == 1 else None
        current = annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def describe_config_errors(exc: object, model: type[BaseModel]) -> tuple[str, str]:
    """One line naming every wrong field of a pydantic error and the fields allowed.

    Returns ``(message, first_field)``, e.g. ``"2 problems: field percentage: Input should
    be less than or equal to 100; field colour: not an allowed field (allowed fields:
    percentage, stages, ...)"``.
    """
    problems: list[str] = []
    fields: list[str] = []
    unknown_in: set[tuple[str | int, ...]] = set()
    for err in exc.errors():  # type: ignore[attr-defined]
        loc = tuple(err["loc"])
        field = ".".join(str(p) for p in loc) or "(root)"
        fields.append(field)
        if err["type"] == "extra_forbidden":
            problems.append(f"field {field}: not an allowed field")
            unknown_in.add(loc[:-1])
        else:
            problems.append(f"field {field}: {err['msg']}")
    head = f"{len(problems)} problems: " if len(problems) > 1 else ""
    message = head + "; ".join(problems)
    for parent in sorted(unknown_in | {()}, key=len):
        nested = _nested_model(model, parent)
        if nested is None:
            continue
        where = f" of {'.'.join(str(p) for p in parent)}" if parent else ""
        message += f" (allowed fields{where}: {', '.join(nested.model_fields)})"
    return message, fields[0] if fields else "(root)"

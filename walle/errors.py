"""The exception tree: one root, specific subclasses, messages that say what and where."""

from __future__ import annotations


class WalleError(Exception):
    """Root of every error walle raises on purpose."""


class ValidationError(WalleError):
    """Input at a boundary (event, message, file, argument) is malformed.

    ``where`` names the place: a file and line, a topic/partition/offset, a field.
    """

    def __init__(self, message: str, *, where: str | None = None, field: str | None = None):
        self.where = where
        self.field = field
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}{message}")


class PlanError(WalleError):
    """A task, trigger, window or aggregate definition is invalid; names the task."""


class StateError(WalleError):
    """Engine state cannot be restored (corrupt, or from an incompatible plan)."""


class StorageError(WalleError):
    """A durable store (SQLite log, outbox, feature store) cannot be used."""


class BrokerError(WalleError):
    """The Kafka-protocol broker cannot be started or reached."""


class BackendError(WalleError):
    """An ops backend is missing or failed; names the backend and the extra to install."""


class ModelError(WalleError):
    """A model (ONNX or walle graph) is malformed or uses something unsupported."""


class BundleError(WalleError):
    """A task bundle is refused: unsigned, tampered, expired, too old, or malformed."""

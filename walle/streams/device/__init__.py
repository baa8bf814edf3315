"""The device runtime: a durable SQLite event log and the runtime that drives the engine on it."""

from __future__ import annotations

from walle.streams.device.log import (
    DeadLetterRecord,
    DurabilityPolicy,
    EventLog,
    IngestReport,
    LogSettings,
    RetentionPolicy,
    RetentionReport,
)

__all__ = [
    "DeadLetterRecord",
    "DurabilityPolicy",
    "EventLog",
    "IngestReport",
    "LogSettings",
    "RetentionPolicy",
    "RetentionReport",
]

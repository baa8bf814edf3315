"""The device runtime: a durable SQLite event log and the runtime that drives the engine on it.

One SQLite file per device, owned by ``DeviceDatabase`` (``database.py``, tables and migrations
in ``schema.py``); ``EventLog`` (``log.py``) is the log's facade, ``DeviceRuntime``
(``runtime.py``) checkpoints the engine into the same file.
"""

from __future__ import annotations

from walle.streams.device.database import DeviceDatabase
from walle.streams.device.log import (
    DeadLetterRecord,
    DurabilityPolicy,
    EventLog,
    IngestReport,
    LogSettings,
    RetentionPolicy,
    RetentionReport,
)
from walle.streams.device.replay import OpenedReplay, open_replay
from walle.streams.device.runtime import (
    CheckpointParticipant,
    DeviceRuntime,
    RunReport,
    RuntimeSettings,
)

__all__ = [
    "CheckpointParticipant",
    "DeadLetterRecord",
    "DeviceDatabase",
    "DeviceRuntime",
    "DurabilityPolicy",
    "EventLog",
    "IngestReport",
    "LogSettings",
    "OpenedReplay",
    "RetentionPolicy",
    "RetentionReport",
    "RunReport",
    "RuntimeSettings",
    "open_replay",
]

"""How the device database is opened and how live appends become durable (frozen settings)."""

from __future__ import annotations

from typing import Literal

import pydantic


class DurabilityPolicy(pydantic.BaseModel):
    """When buffered live appends become durable: every N events or after T ms, whichever first.

    ``synchronous`` is SQLite's fsync level in WAL mode: NORMAL survives a process crash
    (the crash tests kill with SIGKILL), FULL also survives a power cut.

    Backpressure: at most ``max_buffered_events`` appended events wait in memory. A full
    buffer commits at once; if that commit fails (disk full, locked), appends are refused with
    StorageError until one works. A failed commit is retried after ``retry_after_ms``,
    doubling after each further failure up to ``max_retry_after_ms``; appends in between only
    buffer (they do not retry the commit).
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    commit_every_events: int = pydantic.Field(default=64, ge=1)
    commit_every_ms: int = pydantic.Field(default=100, ge=0)
    synchronous: Literal["OFF", "NORMAL", "FULL"] = "NORMAL"
    max_buffered_events: int = pydantic.Field(default=4096, ge=1)
    retry_after_ms: int = pydantic.Field(default=50, ge=0)
    max_retry_after_ms: int = pydantic.Field(default=2000, ge=0)


class LogSettings(pydantic.BaseModel):
    """How the device database is opened: durability, lock wait, and an optional size limit.

    ``max_pages`` caps the database (SQLite ``max_page_count``): small devices use it to keep
    the log inside a quota, and tests use it to simulate a full disk. ``read_only`` opens
    through SQLite's ``mode=ro``: nothing is created, migrated or written.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    durability: DurabilityPolicy = DurabilityPolicy()
    busy_timeout_ms: int = pydantic.Field(default=5000, ge=0)
    max_pages: int | None = pydantic.Field(default=None, ge=1)
    read_only: bool = False

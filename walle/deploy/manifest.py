"""The manifest of a task bundle: what is inside, what it needs, and how to start it.

Versions are **monotonic integers** (1, 2, 3, ...): a device installs a bundle only when its
version is greater than the installed one, unless the release is a signed rollback. An
integer leaves no room for disagreement about ordering (no pre-release or build-tag rules);
it is bounded by ``MAX_VERSION``. ``expires_at`` (optional) bounds how long the bundle may be
released: ``walle deploy release`` refuses an expired one and a notification never outlives it.
"""

from __future__ import annotations

import json
import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: The runtime/ABI version this build of the device runtime provides.
RUNTIME_ABI = 1
#: Name of the manifest member inside every bundle archive.
MANIFEST_NAME = "manifest.json"
#: Name of the task description file a task directory must hold.
TASK_FILE = "task.yaml"
#: Highest version (of a bundle, a notification's sequence, a root): a key that could
#: publish 10**15 would lock every later version out, and 10**300 breaks file names.
MAX_VERSION = 10**9

_TASK_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_ENTRY = re.compile(r"^[A-Za-z0-9_./-]+\.py:[A-Za-z_][A-Za-z0-9_]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Sha256 = Annotated[str, Field(pattern=_SHA256.pattern)]


class FileEntry(BaseModel):
    """One file of the bundle: its SHA-256 and size in bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: Sha256
    size: int = Field(ge=0)


class TaskSpec(BaseModel):
    """What a task author writes in ``task.yaml`` (the manifest minus the file table)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str
    version: int = Field(ge=1, le=MAX_VERSION)
    runtime_abi: int = Field(default=RUNTIME_ABI, ge=1)
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    expires_at: float | None = None
    entry_points: dict[str, str] = Field(default_factory=dict)
    health_check: str | None = None

    def expired(self, now: float) -> bool:
        """Whether the bundle's own expiry (if any) has passed."""
        return self.expires_at is not None and now >= self.expires_at

    @field_validator("task")
    @classmethod
    def _task_name(cls, value: str) -> str:
        if not _TASK_NAME.match(value):
            raise ValueError(f"task name {value!r} must match {_TASK_NAME.pattern}")
        return value

    @field_validator("entry_points")
    @classmethod
    def _entries(cls, value: dict[str, str]) -> dict[str, str]:
        for name, ref in value.items():
            if not _ENTRY.match(ref):
                raise ValueError(f"entry point {name!r}={ref!r} must look like 'file.py:function'")
        return value

    @field_validator("health_check")
    @classmethod
    def _health(cls, value: str | None) -> str | None:
        if value is not None and not _ENTRY.match(value):
            raise ValueError(f"health_check {value!r} must look like 'file.py:function'")
        return value


class Manifest(TaskSpec):
    """The full manifest stored as ``manifest.json`` in a bundle."""

    format: int = 1
    files: dict[str, FileEntry]

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces): the same manifest gives the same bytes."""
        body = self.model_dump(mode="json")
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @property
    def content_bytes(self) -> int:
        """Total size of the files the manifest lists."""
        return sum(entry.size for entry in self.files.values())

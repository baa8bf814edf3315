"""What the engine emits: outputs, late events, dead letters, skipped duplicates."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from walle.streams.events import Event


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, ASCII: the same bytes for equal values on every runtime."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


class Output(NamedTuple):
    """One feature record. ``key`` = task|device|window makes replays idempotent."""

    task: str
    device_id: str
    window: str
    ts: int
    value: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.task}|{self.device_id}|{self.window}"

    def to_json(self) -> str:
        """Canonical JSON of the whole record."""
        return canonical_json(self._asdict())

    @classmethod
    def from_json(cls, text: str | bytes) -> Output:
        """Inverse of ``to_json``."""
        data = json.loads(text)
        return cls(data["task"], data["device_id"], data["window"], data["ts"], data["value"])


class LateEvent(NamedTuple):
    """An event that arrived after the window it belongs to had closed."""

    task: str
    event: Event
    reason: str


class DeadLetter(NamedTuple):
    """An event (or window) a task could not process, and why; ``task`` None: app level."""

    task: str | None
    event: Event
    reason: str


@dataclass
class Emissions:
    """Everything one call into the engine produced, in deterministic order."""

    outputs: list[Output] = field(default_factory=list)
    late: list[LateEvent] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    duplicates: list[Event] = field(default_factory=list)

    def extend(self, other: Emissions) -> Emissions:
        """Append ``other``'s records to this one's; returns self."""
        self.outputs.extend(other.outputs)
        self.late.extend(other.late)
        self.dead.extend(other.dead)
        self.duplicates.extend(other.duplicates)
        return self

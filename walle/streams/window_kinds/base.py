"""The interface every window kind implements, and the per-device state they keep.

A kind is chosen once per task, when its runner is built (``walle.streams.window_kinds``),
and the engine calls it without asking what it is:

- ``assign(state, event, wm, out)``: a device's raw event (tasks without a trigger): put it
  in its windows, or report it on ``out.late`` if the watermark ``wm`` has closed them
  (each event-time kind decides what late means for it);
- ``close(state, last, wm, out)``: close what the watermark has passed and emit it;
- ``fire(fire, buffer, out)``: a trigger's firing defines one window (trigger-relative
  kinds), computed over the device's recent events ``buffer``.

A kind keeps nothing per device itself: a device's window state is the plain data of
``new_state``, which the engine stores and ``walle.streams.state_codec`` snapshots.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from walle.streams.events import Event
from walle.streams.matches import Fire
from walle.streams.results import Emissions
from walle.streams.window_kinds.task import Task
from walle.streams.windows import WindowSpec

WindowState = dict[str, Any]


class WindowKind:
    """One kind of window; subclasses implement the methods their kind receives."""

    #: how many recent events of a device ``fire`` may read (0: the kind reads none)
    buffer_events: int = 0
    #: whether a device's buffer may be cut at its oldest active partial match (``Span``)
    trims_buffer: bool = False

    def __init__(self, spec: WindowSpec, task: Task) -> None:
        self.spec = spec
        self.task = task
        self.name = task.name

    def new_state(self) -> WindowState:
        """Empty per-device state of the task.

        One layout for every kind, each using its own entries: it is the layout snapshots
        of ``state_codec`` version 2 hold, so checkpoints written before the kinds were
        split restore unchanged.
        """
        return {"open": {}, "heap": [], "sessions": {}, "counts": {}, "visits": []}

    def assign(self, state: WindowState, event: Event, wm: int, out: Emissions) -> None:
        """Put a device's raw event in its windows (or report it late)."""
        raise NotImplementedError(f"{type(self).__name__} windows open on a trigger's firing")

    def close(self, state: WindowState, last: Event, wm: int, out: Emissions) -> None:
        """Close what watermark ``wm`` has passed; ``last`` is the device's last event."""
        raise NotImplementedError(f"{type(self).__name__} windows open on a trigger's firing")

    def fire(self, fire: Fire, buffer: Sequence[Event], out: Emissions) -> None:
        """Compute the task over the window a trigger's firing defines."""
        raise NotImplementedError(f"{type(self).__name__} windows do not open on a trigger")


class KeyedWindows(WindowKind):
    """A kind that sees each event after the task's transforms, split by the task's key."""

    def assign(self, state: WindowState, event: Event, wm: int, out: Emissions) -> None:
        item = self.task.transform(event, out)
        if item is None:
            return
        key = self.task.key(item, out)
        if key is None:
            return
        self.add(state, item, key, wm, out)

    def add(self, state: WindowState, event: Event, key: str, wm: int, out: Emissions) -> None:
        """Put a transformed event of ``key`` in its windows (or report it late)."""
        raise NotImplementedError


def window_id(kind: str, start: int, end: int, key: str) -> str:
    """``kind:start-end`` and ``:key`` when the task has a key (the outputs' window id)."""
    return f"{kind}:{start}-{end}:{key}" if key else f"{kind}:{start}-{end}"

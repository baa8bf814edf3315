"""Trigger-relative windows: a trigger's firing defines one window over recent events.

- ``Span()``: the events of the match, its first to its last (at most ``max_events``);
  incomplete when the device's buffer no longer holds the match's first event.
- ``LookBack(events=N)``: the last N events up to the firing.
- ``LookBack(ms=T)``: the events of the last T ms (event time) up to the firing.

The engine keeps each device's recent events (``buffer_events`` of them) for these kinds.
"""

from __future__ import annotations

from collections.abc import Sequence

from walle.streams.events import Event
from walle.streams.matches import Fire
from walle.streams.results import Emissions
from walle.streams.window_kinds.base import WindowKind
from walle.streams.window_kinds.task import Task
from walle.streams.windows import LookBack, Span

__all__ = ["LookBackEvents", "LookBackTime", "SpanWindows", "look_back"]

Selection = tuple[list[Event], str, int, bool]  # events, window id, start, complete


class _TriggerWindows(WindowKind):
    """Computes the task over the events ``select`` picks for a firing."""

    def fire(self, fire: Fire, buffer: Sequence[Event], out: Emissions) -> None:
        task = self.task
        events, wid, start, complete = self.select(fire, buffer)
        acc = task.acc.init()
        for event in events:
            item = task.transform(event, out)
            if item is not None:
                task.acc.add(acc, item)
        task.emit(out, fire.end, acc, wid, "", start, fire.end.ts, complete)

    def select(self, fire: Fire, buffer: Sequence[Event]) -> Selection:
        """The window of ``fire``: its events, id, start time and whether it is complete."""
        raise NotImplementedError


class SpanWindows(_TriggerWindows):
    """The events of a match, first to last."""

    trims_buffer = True

    def __init__(self, spec: Span, task: Task) -> None:
        super().__init__(spec, task)
        self._max = spec.max_events
        self.buffer_events = spec.max_events

    def select(self, fire: Fire, buffer: Sequence[Event]) -> Selection:
        first, end = fire.start, fire.end
        events = [e for e in buffer if first.seq <= e.seq <= end.seq]
        complete = bool(events) and events[0].seq == first.seq
        return events[-self._max :], f"match:{first.seq}-{end.seq}", first.ts, complete


class LookBackEvents(_TriggerWindows):
    """The last ``events`` events up to the firing."""

    def __init__(self, spec: LookBack, task: Task) -> None:
        super().__init__(spec, task)
        assert spec.events is not None  # internal: look_back picks this kind for events=
        self.buffer_events = spec.events

    def select(self, fire: Fire, buffer: Sequence[Event]) -> Selection:
        events = list(buffer)[-self.buffer_events :]
        return events, f"lookback:{fire.end.seq}", events[0].ts, True


class LookBackTime(_TriggerWindows):
    """The events of the last ``ms`` milliseconds (event time) up to the firing."""

    buffer_events = 10_000  # the most recent events a device keeps for a time look-back

    def __init__(self, spec: LookBack, task: Task) -> None:
        super().__init__(spec, task)
        assert spec.ms is not None  # internal: look_back picks this kind for ms=
        self._ms = spec.ms

    def select(self, fire: Fire, buffer: Sequence[Event]) -> Selection:
        end = fire.end
        events = [e for e in buffer if end.ts - self._ms <= e.ts <= end.ts]
        return events, f"lookback:{end.seq}", end.ts - self._ms, True


def look_back(spec: LookBack, task: Task) -> LookBackEvents | LookBackTime:
    """The kind of a ``LookBack``: by a number of events or by a span of event time."""
    if spec.events is not None:
        return LookBackEvents(spec, task)
    return LookBackTime(spec, task)

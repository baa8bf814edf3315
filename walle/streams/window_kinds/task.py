"""The steps of a task around its window, which every window kind uses the same way.

A task's transforms (filter, map), its key, its aggregate and how its outputs are made do
not depend on the window kind; ``Task`` holds them so that each kind is only the logic of
its windows: which window an event joins, when a window closes, what is late.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from walle.streams.app import Window
from walle.streams.events import Event
from walle.streams.plan import FilterStep, Plan
from walle.streams.results import DeadLetter, Emissions, Output, canonical_json
from walle.streams.windows import EMIT_UPDATE


class Accumulator:
    """Folds events into a window's state and turns that state into an output value.

    The state is a list: the events themselves for a task function, one state per named
    aggregate otherwise (plain data, as snapshots need).
    """

    def __init__(self, plan: Plan) -> None:
        step = plan.aggregate
        self.fn = step.fn
        self.aggregates = step.aggregates

    def init(self) -> list[Any]:
        """An empty window state."""
        return [] if self.fn is not None else [agg.init() for _, agg in self.aggregates]

    def add(self, acc: list[Any], event: Event) -> None:
        """Fold ``event`` into ``acc`` in place."""
        if self.fn is not None:
            acc.append(event)
            return
        for i, (_, agg) in enumerate(self.aggregates):
            acc[i] = agg.add(acc[i], agg.value(event))

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        """The state of two windows joined into one (sessions); inputs are left untouched."""
        if self.fn is not None:
            return sorted(a + b, key=lambda e: e.seq)
        return [agg.merge(x, y) for (_, agg), x, y in zip(self.aggregates, a, b, strict=True)]

    def value(self, acc: list[Any], window: Window) -> Any:
        """The task's output value for a window (None: no output)."""
        if self.fn is not None:
            return self.fn(window)
        return {
            name: agg.result(state) for (name, agg), state in zip(self.aggregates, acc, strict=True)
        }


class Task:
    """One task's name, transforms, key, aggregate and emit mode, as its window kind uses them.

    A task's own code (filter, map, key_by, its function) may fail on an event: the event
    then goes to the dead letters with the reason, and the task goes on.
    """

    def __init__(self, plan: Plan) -> None:
        self.name = plan.name
        self.update = plan.window.emit == EMIT_UPDATE
        self.acc = Accumulator(plan)
        self._transforms: list[tuple[bool, Callable[[Event], Any]]] = [
            (isinstance(step, FilterStep), step.fn) for step in plan.transforms
        ]
        self._key = plan.key_by.fn if plan.key_by is not None else None

    def transform(self, event: Event, out: Emissions) -> Event | None:
        """``event`` after the task's filters and maps (None: filtered out or failed)."""
        try:
            for is_filter, fn in self._transforms:
                if is_filter:
                    if not fn(event):
                        return None
                else:
                    event = fn(event)
                    if not isinstance(event, Event):
                        raise TypeError(f"map returned {type(event).__name__}, not an Event")
        except Exception as exc:  # a task's own code failed: contain it
            out.dead.append(DeadLetter(self.name, event, f"{type(exc).__name__}: {exc}"))
            return None
        return event

    def key(self, event: Event, out: Emissions) -> str | None:
        """The key of ``event`` ("" without key_by; None: key_by failed or gave a bad key)."""
        if self._key is None:
            return ""
        try:
            key = self._key(event)
        except Exception as exc:
            out.dead.append(DeadLetter(self.name, event, f"key_by {type(exc).__name__}: {exc}"))
            return None
        if not isinstance(key, str) or "|" in key:
            out.dead.append(DeadLetter(self.name, event, f"key_by gave {key!r}: need str w/o '|'"))
            return None
        return key

    def emit(
        self,
        out: Emissions,
        event: Event,
        acc: list[Any],
        window_id: str,
        key: str,
        start: int,
        end: int,
        complete: bool = True,
    ) -> None:
        """Compute the task over one window and append its output (or a dead letter)."""
        events = tuple(acc) if self.acc.fn is not None else ()
        window = Window(self.name, event.device_id, window_id, key, start, end, events, complete)
        try:
            value = self.acc.value(acc, window)
            if value is None:
                return
            if not isinstance(value, dict):
                raise TypeError(f"task returned {type(value).__name__}, expected dict or None")
            canonical_json(value)
        except Exception as exc:
            out.dead.append(DeadLetter(self.name, event, f"{type(exc).__name__}: {exc}"))
            return
        out.outputs.append(Output(self.name, event.device_id, window_id, end, value))

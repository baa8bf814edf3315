"""``App``: where tasks are declared, with decorators or a stream chain, as plans.

>>> from walle.streams import App, PageWindow, count, exited
>>> app = App("shop")
>>> @app.task(window=PageWindow("item"))
... def item_view(window):
...     return {"events": len(window.events)}
>>> _ = app.stream("clicks").filter(lambda e: e.event == "click").window(
...     PageWindow("item")).aggregate(clicks=count())
>>> [plan.name for plan in app.plans]
['item_view', 'clicks']
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from walle.errors import PlanError, WalleError
from walle.streams.aggregates import Aggregate
from walle.streams.events import STANDARD_EVENTS, Event
from walle.streams.patterns import Pattern, Step, as_pattern
from walle.streams.plan import (
    AggregateStep,
    FilterStep,
    KeyByStep,
    MapStep,
    Plan,
    SinkStep,
    SourceStep,
    TriggerStep,
    WindowStep,
    fingerprint,
)
from walle.streams.windows import EMIT_FINAL, Span, WindowSpec

TaskFn = Callable[["Window"], dict[str, Any] | None]


@dataclass(frozen=True)
class Window:
    """What a task function receives: one window's events of one device (and key)."""

    task: str
    device_id: str
    id: str
    key: str
    start: int
    end: int
    events: tuple[Event, ...]
    complete: bool = True


class App:
    """A named set of tasks.

    ``out_of_orderness_ms`` bounds how far behind the newest event time an event may come
    and still be on time (the watermark is the device's max event time minus it).
    ``custom_events``, with ``strict_events=True``, makes events whose type is neither a
    standard one nor declared here dead letters.
    """

    def __init__(
        self,
        name: str,
        *,
        out_of_orderness_ms: int = 0,
        custom_events: Iterable[str] = (),
        strict_events: bool = False,
    ) -> None:
        if not isinstance(out_of_orderness_ms, int) or out_of_orderness_ms < 0:
            raise PlanError(f"app {name!r}: out_of_orderness_ms must be >= 0")
        self.name = name
        self.out_of_orderness_ms = out_of_orderness_ms
        self.known_events = (
            frozenset(STANDARD_EVENTS | set(custom_events)) if strict_events else None
        )
        self._plans: dict[str, Plan] = {}

    @property
    def plans(self) -> tuple[Plan, ...]:
        """The tasks, in registration order."""
        return tuple(self._plans.values())

    @property
    def fingerprint(self) -> str:
        """Stable hash of the app's settings and plans (checkpoints are tied to it)."""
        known = ",".join(sorted(self.known_events)) if self.known_events is not None else "*"
        return fingerprint(self.plans, salt=f"{self.name} ooo={self.out_of_orderness_ms} {known}")

    def add(self, plan: Plan) -> Plan:
        """Register a plan (a task name is unique within the app)."""
        if plan.name in self._plans:
            raise PlanError(f"task {plan.name!r} is already defined in app {self.name!r}")
        self._plans[plan.name] = plan
        return plan

    def remove(self, name: str) -> Plan:
        """Unregister a task."""
        try:
            return self._plans.pop(name)
        except KeyError:
            raise PlanError(f"app {self.name!r} has no task {name!r}") from None

    def task(
        self,
        *,
        window: WindowSpec | None = None,
        trigger: Pattern | Step | None = None,
        emit: str = EMIT_FINAL,
        name: str | None = None,
        sink: str = "features",
    ) -> Callable[[TaskFn], TaskFn]:
        """Declare a task whose function computes features from one window's events."""

        def register(fn: TaskFn) -> TaskFn:
            builder = self.stream(name or fn.__name__, trigger=trigger)
            spec = window if window is not None else (Span() if trigger is not None else None)
            if spec is None:
                raise PlanError(f"task {builder.name!r}: give a window= (or a trigger=)")
            builder.window(spec, emit=emit)._finish(AggregateStep(fn=fn), sink)
            return fn

        return register

    def stream(self, name: str, *, trigger: Pattern | Step | None = None) -> StreamBuilder:
        """Start a declarative chain: filter, map, key_by, window, aggregate."""
        return StreamBuilder(self, name, trigger)


class StreamBuilder:
    """Builds one plan step by step; ``aggregate`` finishes and registers it."""

    def __init__(self, app: App, name: str, trigger: Pattern | Step | None) -> None:
        self.app = app
        self.name = name
        self._steps: list[Any] = [SourceStep()]
        if trigger is not None:
            try:
                self._steps.append(TriggerStep(as_pattern(trigger)))
            except PlanError as exc:
                raise PlanError(f"task {name!r}: {exc}") from None

    def _then(self, step: Any) -> StreamBuilder:
        self._steps.append(step)
        return self

    def filter(self, fn: Callable[[Event], bool]) -> StreamBuilder:
        """Keep the events for which ``fn`` is true."""
        return self._then(FilterStep(_callable(self.name, "filter", fn)))

    def map(self, fn: Callable[[Event], Event]) -> StreamBuilder:
        """Transform each event."""
        return self._then(MapStep(_callable(self.name, "map", fn)))

    def key_by(self, fn: Callable[[Event], str]) -> StreamBuilder:
        """Group events by a key within each window."""
        return self._then(KeyByStep(_callable(self.name, "key_by", fn)))

    def window(self, spec: WindowSpec, *, emit: str = EMIT_FINAL) -> StreamBuilder:
        """Set the window (and emit mode: 'final' or 'update')."""
        if not isinstance(spec, WindowSpec):
            raise PlanError(f"task {self.name!r}: window must be a window, got {spec!r}")
        return self._then(WindowStep(spec, emit))

    def aggregate(self, *, sink: str = "features", **aggregates: Aggregate) -> Plan:
        """Finish with named aggregates; returns the registered plan."""
        for label, agg in aggregates.items():
            if not isinstance(agg, Aggregate):
                raise PlanError(f"task {self.name!r}: aggregate {label!r} is not an aggregate")
        return self._finish(AggregateStep(aggregates=tuple(aggregates.items())), sink)

    def _finish(self, step: AggregateStep, sink: str) -> Plan:
        if not any(isinstance(s, WindowStep) for s in self._steps):
            spec = Span() if any(isinstance(s, TriggerStep) for s in self._steps) else None
            if spec is None:
                raise PlanError(f"task {self.name!r}: call .window(...) before .aggregate(...)")
            self._steps.append(WindowStep(spec))
        try:
            plan = Plan(self.name, (*self._steps, step, SinkStep(sink)))
        except PlanError as exc:
            raise PlanError(str(exc)) from None
        return self.app.add(plan)


def _callable(task: str, what: str, fn: object) -> Any:
    if not callable(fn):
        raise PlanError(f"task {task!r}: {what} needs a function, got {type(fn).__name__}")
    return fn


def load_app(path: str | Path, attribute: str = "app") -> App:
    """Import a Python file and return its module-level ``App`` (named ``attribute``)."""
    path = Path(path)
    if not path.is_file():
        raise WalleError(f"{path}: no such app file")
    module_name = f"walle_app_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise WalleError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        raise WalleError(f"{path}: defines no App named {attribute!r}")
    return app

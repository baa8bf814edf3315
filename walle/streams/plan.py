"""Plans: a task as a frozen value built from a short, closed list of steps.

Decorators and the stream builder only build plans; runtimes only run them. A plan can
be printed, compared and fingerprinted. The steps, in their one canonical order:

``SourceStep`` -> ``TriggerStep``? -> (``FilterStep`` | ``MapStep``)* -> ``KeyByStep``?
-> ``WindowStep`` -> ``AggregateStep`` -> ``SinkStep``
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from walle.errors import PlanError
from walle.streams.aggregates import Aggregate
from walle.streams.events import Event
from walle.streams.patterns import Pattern
from walle.streams.windows import EMIT_FINAL, EMIT_MODES, Session, WindowSpec

_S = TypeVar("_S")


def _fn_id(fn: Callable[..., Any]) -> str:
    code = getattr(fn, "__code__", None)
    digest = hashlib.sha256(code.co_code).hexdigest()[:12] if code is not None else ""
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}#{digest}"


@dataclass(frozen=True)
class SourceStep:
    """The device's event stream."""

    def describe(self) -> str:
        return "source"


@dataclass(frozen=True)
class TriggerStep:
    """Fire on every match of ``pattern`` (the trie decides)."""

    pattern: Pattern

    def describe(self) -> str:
        return f"trigger {self.pattern.signature}"


@dataclass(frozen=True)
class FilterStep:
    """Keep events for which ``fn(event)`` is true."""

    fn: Callable[[Event], bool]

    def describe(self) -> str:
        return f"filter {_fn_id(self.fn)}"


@dataclass(frozen=True)
class MapStep:
    """Replace each event by ``fn(event)`` (an Event)."""

    fn: Callable[[Event], Event]

    def describe(self) -> str:
        return f"map {_fn_id(self.fn)}"


@dataclass(frozen=True)
class KeyByStep:
    """Group a device's events by ``fn(event)`` (a string) within the window."""

    fn: Callable[[Event], str]

    def describe(self) -> str:
        return f"key_by {_fn_id(self.fn)}"


@dataclass(frozen=True)
class WindowStep:
    """Which events a computation covers and when its result is emitted."""

    spec: WindowSpec
    emit: str = EMIT_FINAL

    def describe(self) -> str:
        return f"window {self.spec!r} emit={self.emit}"


@dataclass(frozen=True)
class AggregateStep:
    """Named aggregates, or a function over the window (a task script)."""

    aggregates: tuple[tuple[str, Aggregate], ...] = ()
    fn: Callable[..., dict[str, Any] | None] | None = None

    def describe(self) -> str:
        if self.fn is not None:
            return f"aggregate fn {_fn_id(self.fn)}"
        return "aggregate " + ", ".join(f"{n}={a.signature}" for n, a in self.aggregates)


@dataclass(frozen=True)
class SinkStep:
    """Where outputs go: a named feature table (the runtime maps it to storage/topics)."""

    name: str = "features"

    def describe(self) -> str:
        return f"sink {self.name}"


STEP_KINDS: tuple[type, ...] = (
    SourceStep,
    TriggerStep,
    FilterStep,
    MapStep,
    KeyByStep,
    WindowStep,
    AggregateStep,
    SinkStep,
)
Step = (
    SourceStep
    | TriggerStep
    | FilterStep
    | MapStep
    | KeyByStep
    | WindowStep
    | AggregateStep
    | SinkStep
)


@dataclass(frozen=True)
class Plan:
    """One task: its name and its steps."""

    name: str
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        _check(self)

    def describe(self) -> str:
        """One line per step, the text the fingerprint hashes."""
        return "\n".join([f"task {self.name}", *(f"  {s.describe()}" for s in self.steps)])

    def step(self, kind: type[_S]) -> _S | None:
        """The first step of ``kind`` (None if absent)."""
        return next((s for s in self.steps if isinstance(s, kind)), None)

    def _one(self, kind: type[_S]) -> _S:
        step = self.step(kind)
        if step is None:  # a checked plan has one: _check refuses it otherwise
            raise PlanError(f"task {self.name!r}: needs exactly one {kind.__name__}")
        return step

    @property
    def trigger(self) -> TriggerStep | None:
        return self.step(TriggerStep)

    @property
    def window(self) -> WindowStep:
        return self._one(WindowStep)

    @property
    def aggregate(self) -> AggregateStep:
        return self._one(AggregateStep)

    @property
    def key_by(self) -> KeyByStep | None:
        return self.step(KeyByStep)

    @property
    def transforms(self) -> tuple[FilterStep | MapStep, ...]:
        return tuple(s for s in self.steps if isinstance(s, FilterStep | MapStep))


_ORDER = {kind: rank for rank, kind in enumerate(STEP_KINDS)}
_ORDER[MapStep] = _ORDER[FilterStep]


def _check(plan: Plan) -> None:
    where = f"task {plan.name!r}"
    if not isinstance(plan.name, str) or not plan.name or "|" in plan.name:
        raise PlanError(f"{where}: a task name must be a non-empty string without '|'")
    ranks = [_ORDER.get(type(step), -1) for step in plan.steps]
    if -1 in ranks:
        bad = plan.steps[ranks.index(-1)]
        raise PlanError(f"{where}: {bad!r} is not a plan step")
    if ranks != sorted(ranks):
        raise PlanError(
            f"{where}: steps out of order; expected " + " -> ".join(k.__name__ for k in STEP_KINDS)
        )
    for kind in (SourceStep, WindowStep, AggregateStep, SinkStep):
        if sum(isinstance(s, kind) for s in plan.steps) != 1:
            raise PlanError(f"{where}: needs exactly one {kind.__name__}")
    spec = plan.window.spec
    if plan.trigger is not None and not spec.trigger_relative:
        raise PlanError(f"{where}: a triggered task needs Span() or LookBack(...), got {spec!r}")
    if plan.trigger is None and spec.trigger_relative:
        raise PlanError(f"{where}: {spec!r} is relative to a trigger, but the task has none")
    if plan.key_by is not None and (spec.trigger_relative or spec.kind == "page"):
        raise PlanError(f"{where}: key_by works with time and count windows only")
    if plan.window.emit not in EMIT_MODES:
        raise PlanError(f"{where}: emit must be one of {EMIT_MODES}, got {plan.window.emit!r}")
    if isinstance(spec, Session) and plan.window.emit != EMIT_FINAL:
        raise PlanError(f"{where}: session windows emit final values only")
    agg = plan.aggregate
    if (agg.fn is None) == (not agg.aggregates):
        raise PlanError(f"{where}: give either named aggregates or a function")


def fingerprint(plans: tuple[Plan, ...], salt: str = "") -> str:
    """A stable hash of the plans; state written under one fingerprint needs the same."""
    text = "\n".join([salt, *(plan.describe() for plan in plans)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]

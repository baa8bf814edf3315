"""Mergeable aggregates: count, sum, mean, min, max, distinct, first, last, top-k, collect.

An aggregate is configuration (what to read, how to combine); its state is plain data
(numbers, lists, dicts) so engine snapshots stay simple. ``merge`` combines two partial
states, which session windows (and batched partial aggregation) rely on.

>>> agg = mean("args.price")
>>> state = agg.add(agg.add(agg.init(), 2.0), 4.0)
>>> agg.result(state)
3.0
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from walle.errors import PlanError
from walle.streams.events import Event

Accessor = Callable[[Event], Any]


def accessor(spec: str | Accessor | None) -> Accessor:
    """Turn ``"ts"``, ``"page"``, ``"args.price"`` (or a function) into a value getter."""
    if spec is None:
        return lambda event: None
    if callable(spec):
        return spec
    if not isinstance(spec, str) or not spec:
        raise PlanError(f"a field must be a name like 'args.price' or a function, got {spec!r}")
    if spec.startswith("args."):
        name = spec[5:]
        return lambda event: event.args.get(name)
    if spec in Event._fields:
        index = Event._fields.index(spec)
        return lambda event: event[index]
    raise PlanError(
        f"unknown field {spec!r}: use one of {', '.join(Event._fields)} or 'args.<name>'"
    )


@dataclass(frozen=True)
class Aggregate:
    """Base of the aggregates; ``field`` is what each event contributes (None: skipped).

    ``add`` may update mutable states in place and returns the state; ``merge`` returns a
    new state and leaves both inputs untouched.
    """

    field: str | Accessor | None = None
    _get: Accessor = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_get", accessor(self.field))

    @property
    def signature(self) -> str:
        """Stable identity for plan fingerprints."""
        name = self.field if isinstance(self.field, str | None) else self.field.__qualname__
        return f"{type(self).__name__}({name})"

    def value(self, event: Event) -> Any:
        """What ``event`` contributes."""
        return self._get(event)

    def init(self) -> Any:
        raise NotImplementedError

    def add(self, state: Any, value: Any) -> Any:
        raise NotImplementedError

    def merge(self, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def result(self, state: Any) -> Any:
        return state


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Count(Aggregate):
    """Number of events (or of events whose field is present)."""

    def init(self) -> int:
        return 0

    def add(self, state: int, value: Any) -> int:
        return state + 1 if self.field is None or value is not None else state

    def merge(self, a: int, b: int) -> int:
        return a + b


class Sum(Aggregate):
    """Sum of numeric values; non-numeric values are skipped."""

    def init(self) -> float:
        return 0

    def add(self, state: float, value: Any) -> float:
        return state + value if _numeric(value) else state

    def merge(self, a: float, b: float) -> float:
        return a + b


class Mean(Aggregate):
    """Arithmetic mean of numeric values (None when there were none)."""

    def init(self) -> list[float]:
        return [0, 0]

    def add(self, state: list[float], value: Any) -> list[float]:
        return [state[0] + value, state[1] + 1] if _numeric(value) else state

    def merge(self, a: list[float], b: list[float]) -> list[float]:
        return [a[0] + b[0], a[1] + b[1]]

    def result(self, state: list[float]) -> float | None:
        return state[0] / state[1] if state[1] else None


class Min(Aggregate):
    """Smallest value (None when there were none)."""

    def init(self) -> Any:
        return None

    def add(self, state: Any, value: Any) -> Any:
        if value is None:
            return state
        return value if state is None or value < state else state

    def merge(self, a: Any, b: Any) -> Any:
        return self.add(a, b)


class Max(Min):
    """Largest value (None when there were none)."""

    def add(self, state: Any, value: Any) -> Any:
        if value is None:
            return state
        return value if state is None or value > state else state


class Distinct(Aggregate):
    """Number of distinct values (the state is an insertion-ordered dict used as a set)."""

    def init(self) -> dict[Any, None]:
        return {}

    def add(self, state: dict[Any, None], value: Any) -> dict[Any, None]:
        if value is not None:
            state[value] = None
        return state

    def merge(self, a: dict[Any, None], b: dict[Any, None]) -> dict[Any, None]:
        return {**a, **b}

    def result(self, state: dict[Any, None]) -> int:
        return len(state)


class First(Aggregate):
    """Value of the first event to arrive (where present)."""

    def init(self) -> Any:
        return None

    def add(self, state: Any, value: Any) -> Any:
        return value if state is None else state

    def merge(self, a: Any, b: Any) -> Any:
        return a if a is not None else b


class Last(First):
    """Value of the last event to arrive (where present)."""

    def add(self, state: Any, value: Any) -> Any:
        return value if value is not None else state

    def merge(self, a: Any, b: Any) -> Any:
        return b if b is not None else a


@dataclass(frozen=True)
class TopK(Aggregate):
    """The k most frequent values, most frequent first, ties by value."""

    k: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.k, int) or self.k <= 0:
            raise PlanError(f"top_k needs k > 0, got {self.k!r}")

    @property
    def signature(self) -> str:
        return f"{super().signature}[{self.k}]"

    def init(self) -> dict[Any, int]:
        return {}

    def add(self, state: dict[Any, int], value: Any) -> dict[Any, int]:
        if value is not None:
            state[value] = state.get(value, 0) + 1
        return state

    def merge(self, a: dict[Any, int], b: dict[Any, int]) -> dict[Any, int]:
        merged = dict(a)
        for value, count in b.items():
            merged[value] = merged.get(value, 0) + count
        return merged

    def result(self, state: dict[Any, int]) -> list[list[Any]]:
        top = heapq.nsmallest(self.k, state.items(), key=lambda kv: (-kv[1], repr(kv[0])))
        return [[value, count] for value, count in top]


@dataclass(frozen=True)
class Collect(Aggregate):
    """Values in arrival order, at most ``limit`` of them."""

    limit: int = 100

    @property
    def signature(self) -> str:
        return f"{super().signature}[{self.limit}]"

    def init(self) -> list[Any]:
        return []

    def add(self, state: list[Any], value: Any) -> list[Any]:
        if value is not None and len(state) < self.limit:
            state.append(value)
        return state

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return (a + b)[: self.limit]

    def result(self, state: list[Any]) -> list[Any]:
        # a copy: the state list grows on, and an output emitted earlier (update mode)
        # must not change with it before a runtime serialises it
        return list(state)


def count(field: str | Accessor | None = None) -> Count:
    """Count events (with ``field``: events where it is present)."""
    return Count(field)


def sum_(field: str | Accessor) -> Sum:
    """Sum of a numeric field."""
    return Sum(field)


def mean(field: str | Accessor) -> Mean:
    """Mean of a numeric field."""
    return Mean(field)


def min_(field: str | Accessor) -> Min:
    """Minimum of a field."""
    return Min(field)


def max_(field: str | Accessor) -> Max:
    """Maximum of a field."""
    return Max(field)


def distinct(field: str | Accessor) -> Distinct:
    """Distinct count of a field."""
    return Distinct(field)


def first(field: str | Accessor) -> First:
    """Field of the first event."""
    return First(field)


def last(field: str | Accessor) -> Last:
    """Field of the last event."""
    return Last(field)


def top_k(field: str | Accessor, k: int = 3) -> TopK:
    """The k most frequent values of a field, with their counts."""
    return TopK(field, k)


def collect(field: str | Accessor, limit: int = 100) -> Collect:
    """The values of a field in order (at most ``limit``)."""
    return Collect(field, limit)

"""The trigger DSL: patterns over a device's events.

A pattern is a sequence of steps. Each step matches one event by type, page and field
predicates; a step may be ``optional`` or ``one_or_more``; ``not_followed_by(x)`` placed
between two steps cancels a partial match when an ``x`` event arrives while waiting for
the next step; ``.within(ms)`` bounds the event-time span of a match. Semantics are in
the README ("Trigger semantics"); ``walle.streams.naive`` is their executable definition.

>>> p = seq(entered("search"), entered("item"), on("add_to_cart")).within(600_000)
>>> len(p.elements), p.within_ms
(3, 600000)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from walle.errors import PlanError
from walle.streams.events import CLICK, EXPOSURE, PAGE_ENTER, PAGE_EXIT, SCROLL, Event

Predicate = Callable[[Event], bool]

ONE = "one"
OPTIONAL = "optional"
ONE_OR_MORE = "one_or_more"


@dataclass(frozen=True)
class Step:
    """Matches one event: type (None = any), page (None = any), ``args`` equalities, a predicate."""

    event: str | None = None
    page: str | None = None
    equals: tuple[tuple[str, Any], ...] = ()
    predicate: Predicate | None = field(default=None, compare=False)
    predicate_id: str = ""

    def matches(self, event: Event) -> bool:
        """Whether ``event`` satisfies this step (the reference check, field by field)."""
        if self.event is not None and event.event != self.event:
            return False
        if self.page is not None and event.page != self.page:
            return False
        missing = object()
        for name, value in self.equals:
            if event.args.get(name, missing) != value:
                return False
        return self.predicate is None or bool(self.predicate(event))

    @property
    def signature(self) -> str:
        """A stable text identity; equal signatures share trie nodes."""
        eq = ",".join(f"{k}={v!r}" for k, v in self.equals)
        return f"{self.event or '*'}@{self.page or '*'}[{eq}]{{{self.predicate_id}}}"


@dataclass(frozen=True)
class Element:
    """One position of a pattern: a step, its quantifier and the guards waiting after it."""

    step: Step
    quantifier: str = ONE
    guards: tuple[Step, ...] = ()


@dataclass(frozen=True)
class Pattern:
    """A compiled, validated trigger pattern (build it with ``seq`` and friends)."""

    elements: tuple[Element, ...]
    within_ms: int | None = None

    def within(self, ms: int) -> Pattern:
        """Bound the match's event-time span: last.ts - first.ts <= ms."""
        if not isinstance(ms, int) or isinstance(ms, bool) or ms <= 0:
            raise PlanError(f"within() needs a positive integer of milliseconds, got {ms!r}")
        return replace(self, within_ms=ms)

    def in_page(self, page: str) -> Pattern:
        """Restrict every step (and guard) to events of ``page``."""

        def scoped(step: Step) -> Step:
            if step.page not in (None, page):
                raise PlanError(f"step {step.signature} conflicts with in_page({page!r})")
            return replace(step, page=page)

        return replace(
            self,
            elements=tuple(
                replace(el, step=scoped(el.step), guards=tuple(scoped(g) for g in el.guards))
                for el in self.elements
            ),
        )

    @property
    def signature(self) -> str:
        """Stable text identity of the whole pattern."""
        parts = [
            f"{el.step.signature}:{el.quantifier}!" + "|".join(g.signature for g in el.guards)
            for el in self.elements
        ]
        return " -> ".join(parts) + f" within {self.within_ms}"


@dataclass(frozen=True)
class _Quantified:
    step: Step
    quantifier: str


@dataclass(frozen=True)
class _Guard:
    step: Step


PatternItem = Step | _Quantified | _Guard | Pattern


def _predicate_id(fn: Predicate) -> str:
    code = getattr(fn, "__code__", None)
    source = code.co_code.hex()[:16] if code is not None else ""
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}#{source}"


def on(
    event: str | None = None,
    page: str | None = None,
    *,
    where: Predicate | None = None,
    **equals: Any,
) -> Step:
    """A step matching events of type ``event`` (None: any) on ``page`` (None: any).

    Keyword arguments are equalities on ``args`` (indexed: cheap for many tasks);
    ``where`` is an arbitrary predicate (checked per candidate event).
    """
    if where is not None and not callable(where):
        raise PlanError(f"where= must be callable, got {type(where).__name__}")
    if where is not None and len(inspect.signature(where).parameters) != 1:
        raise PlanError("where= must take exactly one argument (the event)")
    return Step(
        event=event,
        page=page,
        equals=tuple(sorted(equals.items())),
        predicate=where,
        predicate_id=_predicate_id(where) if where is not None else "",
    )


def entered(page: str | None = None, **equals: Any) -> Step:
    """A page_enter event (of ``page``)."""
    return on(PAGE_ENTER, page, **equals)


def exited(page: str | None = None, **equals: Any) -> Step:
    """A page_exit event (of ``page``)."""
    return on(PAGE_EXIT, page, **equals)


def clicked(page: str | None = None, **equals: Any) -> Step:
    """A click event (on ``page``)."""
    return on(CLICK, page, **equals)


def exposed(page: str | None = None, **equals: Any) -> Step:
    """An exposure event (on ``page``)."""
    return on(EXPOSURE, page, **equals)


def scrolled(page: str | None = None, **equals: Any) -> Step:
    """A scroll event (on ``page``)."""
    return on(SCROLL, page, **equals)


def optional(step: Step) -> _Quantified:
    """The step may match once or be skipped."""
    return _Quantified(_as_step(step), OPTIONAL)


def one_or_more(step: Step) -> _Quantified:
    """The step matches one or more times in a row (other events may come between)."""
    return _Quantified(_as_step(step), ONE_OR_MORE)


def not_followed_by(step: Step) -> _Guard:
    """Cancel the partial match if ``step`` occurs before the next step matches."""
    return _Guard(_as_step(step))


def _as_step(item: object) -> Step:
    if not isinstance(item, Step):
        raise PlanError(f"expected a step such as on('click'), got {item!r}")
    return item


MAX_OPTIONAL = 4


def seq(*items: PatternItem) -> Pattern:
    """Steps in order, each followed by the next (other events may come between)."""
    elements: list[Element] = []
    within: int | None = None
    for item in items:
        if isinstance(item, Pattern):
            elements.extend(item.elements)
            within = item.within_ms if within is None else min(within, item.within_ms or within)
        elif isinstance(item, _Guard):
            if not elements:
                raise PlanError("not_followed_by() cannot start a pattern: nothing to cancel")
            last = elements[-1]
            elements[-1] = replace(last, guards=(*last.guards, item.step))
        elif isinstance(item, _Quantified):
            elements.append(Element(item.step, item.quantifier))
        else:
            elements.append(Element(_as_step(item)))
    return _validated(Pattern(tuple(elements), within))


def _validated(pattern: Pattern) -> Pattern:
    if not pattern.elements:
        raise PlanError("a pattern needs at least one step")
    if all(el.quantifier == OPTIONAL for el in pattern.elements):
        raise PlanError("a pattern of only optional steps would match every event")
    if pattern.elements[-1].guards:
        raise PlanError(
            "not_followed_by() cannot end a pattern (it would need a timeout to fire); "
            "put it between two steps"
        )
    if sum(el.quantifier == OPTIONAL for el in pattern.elements) > MAX_OPTIONAL:
        raise PlanError(f"at most {MAX_OPTIONAL} optional steps per pattern")
    for el, following in zip(pattern.elements, pattern.elements[1:], strict=False):
        if following.quantifier != OPTIONAL and following.step in el.guards:
            raise PlanError(
                f"not_followed_by({following.step.signature}) cancels the very step that "
                "follows it: the pattern can never match"
            )
    return pattern


def as_pattern(trigger: Pattern | Step) -> Pattern:
    """Accept a bare step wherever a pattern is expected."""
    if isinstance(trigger, Step):
        return seq(trigger)
    if isinstance(trigger, Pattern):
        return trigger
    raise PlanError(f"a trigger must be a pattern or a step, got {type(trigger).__name__}")

"""Window configurations: which events a task's computation runs over, and when it closes.

Configuration only (sizes, modes); the per-device logic that assigns events, tracks the
watermark and closes windows lives in ``walle.streams.window_kinds``, one class per kind.

- ``Tumbling(size_ms)``, ``Hopping(size_ms, hop_ms)``, ``Session(gap_ms)``: event time;
  a window [start, end) closes when the device watermark reaches ``end + lateness_ms``.
- ``CountWindow(n)``: every ``n`` events of a key, in arrival order.
- ``PageWindow(page)``: one visit of ``page``, from its page_enter to its page_exit
  (nested visits each get their own window; a visit still open ``timeout_ms`` after its
  enter, by watermark, closes as incomplete).
- ``Span()`` and ``LookBack(events=..., ms=...)``: relative to a trigger's match: the
  events from the match's first to last event, or the last N events / T ms up to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from walle.errors import PlanError


def _positive(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise PlanError(f"{name} must be a positive integer, got {value!r}")


def _non_negative(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PlanError(f"{name} must be a non-negative integer, got {value!r}")


@dataclass(frozen=True)
class WindowSpec:
    """Base of the window configurations."""

    @property
    def kind(self) -> str:
        return type(self).__name__.lower().removesuffix("window")

    @property
    def trigger_relative(self) -> bool:
        """Whether this window is defined by a trigger's firing."""
        return False

    @property
    def event_time(self) -> bool:
        """Whether this window closes on the watermark (and so can receive late events)."""
        return False


@dataclass(frozen=True)
class Tumbling(WindowSpec):
    """Fixed, non-overlapping event-time windows of ``size_ms``."""

    size_ms: int
    lateness_ms: int = 0

    def __post_init__(self) -> None:
        _positive("Tumbling.size_ms", self.size_ms)
        _non_negative("Tumbling.lateness_ms", self.lateness_ms)

    @property
    def event_time(self) -> bool:
        return True

    def starts(self, ts: int) -> list[int]:
        """Start of the one window holding ``ts``."""
        return [ts - ts % self.size_ms]

    @property
    def size(self) -> int:
        return self.size_ms


@dataclass(frozen=True)
class Hopping(WindowSpec):
    """Overlapping event-time windows of ``size_ms`` starting every ``hop_ms``.

    Aligned to the epoch; the first windows of a timestamp near 0 start before it.
    """

    size_ms: int
    hop_ms: int
    lateness_ms: int = 0

    def __post_init__(self) -> None:
        _positive("Hopping.size_ms", self.size_ms)
        _positive("Hopping.hop_ms", self.hop_ms)
        _non_negative("Hopping.lateness_ms", self.lateness_ms)
        if self.hop_ms > self.size_ms:
            raise PlanError(
                f"Hopping.hop_ms ({self.hop_ms}) > size_ms ({self.size_ms}) would skip events"
            )

    @property
    def event_time(self) -> bool:
        return True

    def starts(self, ts: int) -> list[int]:
        """Starts of every window holding ``ts``, oldest first."""
        last = ts - ts % self.hop_ms
        first = last - ((self.size_ms - 1) // self.hop_ms) * self.hop_ms
        starts = range(first, last + 1, self.hop_ms)  # aligned to the epoch, may start < 0
        return [s for s in starts if s <= ts < s + self.size_ms]

    @property
    def size(self) -> int:
        return self.size_ms


@dataclass(frozen=True)
class Session(WindowSpec):
    """Event-time sessions: events closer than ``gap_ms`` share a window.

    A session is [first ts, last ts + gap_ms), so ts 0 and 3 with ``Session(3)`` are two.
    """

    gap_ms: int
    lateness_ms: int = 0

    def __post_init__(self) -> None:
        _positive("Session.gap_ms", self.gap_ms)
        _non_negative("Session.lateness_ms", self.lateness_ms)

    @property
    def event_time(self) -> bool:
        return True


@dataclass(frozen=True)
class CountWindow(WindowSpec):
    """Every ``n`` events of a key, in arrival order."""

    n: int

    def __post_init__(self) -> None:
        _positive("CountWindow.n", self.n)


@dataclass(frozen=True)
class PageWindow(WindowSpec):
    """One visit of ``page``: from its page_enter to its page_exit."""

    page: str
    timeout_ms: int = 30 * 60 * 1000

    def __post_init__(self) -> None:
        if not isinstance(self.page, str) or not self.page:
            raise PlanError(f"PageWindow.page must be a non-empty page name, got {self.page!r}")
        _positive("PageWindow.timeout_ms", self.timeout_ms)


@dataclass(frozen=True)
class Span(WindowSpec):
    """The events of a trigger's match, first to last (at most ``max_events``)."""

    max_events: int = 1000

    def __post_init__(self) -> None:
        _positive("Span.max_events", self.max_events)

    @property
    def trigger_relative(self) -> bool:
        return True


@dataclass(frozen=True)
class LookBack(WindowSpec):
    """The last ``events`` events, or the events of the last ``ms`` ms, up to the trigger."""

    events: int | None = None
    ms: int | None = None

    def __post_init__(self) -> None:
        if (self.events is None) == (self.ms is None):
            raise PlanError("LookBack needs exactly one of events= or ms=")
        if self.events is not None:
            _positive("LookBack.events", self.events)
        if self.ms is not None:
            _positive("LookBack.ms", self.ms)

    @property
    def trigger_relative(self) -> bool:
        return True


EMIT_FINAL = "final"
EMIT_UPDATE = "update"
EMIT_MODES = (EMIT_FINAL, EMIT_UPDATE)

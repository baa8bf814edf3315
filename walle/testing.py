"""Public helpers for testing walle apps: literal events, a collecting sink, a manual clock,
and ``run_app`` which runs an App over events on the pure engine.

>>> from walle.streams import App, PageWindow, count
>>> app = App("demo")
>>> _ = app.stream("clicks").window(PageWindow("item")).aggregate(n=count())
>>> result = run_app(app, literal_events(
...     (0, "page_enter", "item"), (5, "click", "item"), (9, "page_exit", "item")))
>>> [(o.window, o.value) for o in result.outputs]
[('page:item:0', {'n': 3})]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from walle.streams.app import App
from walle.streams.engine import Engine
from walle.streams.events import Event
from walle.streams.results import Emissions


def literal_events(
    *rows: tuple[Any, ...], device_id: str = "d1", first_seq: int = 0
) -> list[Event]:
    """Events from ``(ts, event, page[, args])`` rows, numbered in order from ``first_seq``."""
    events = []
    for offset, row in enumerate(rows):
        ts, kind, page, *rest = row
        events.append(Event(device_id, first_seq + offset, ts, kind, page, rest[0] if rest else {}))
    return events


class CollectingSink(Emissions):
    """Collects what an engine or runtime emits, for assertions."""

    def add(self, emissions: Emissions) -> None:
        """Append a batch of emissions."""
        self.extend(emissions)

    def values(self, task: str | None = None) -> list[dict[str, Any]]:
        """Output values (of one task), in emission order."""
        return [o.value for o in self.outputs if task is None or o.task == task]


class ManualClock:
    """A clock that moves only when told to: ``now_ms()`` and ``advance(ms)``."""

    def __init__(self, start_ms: int = 0) -> None:
        self._now = start_ms

    def now_ms(self) -> int:
        return self._now

    def advance(self, ms: int) -> int:
        """Move forward by ``ms``; returns the new time."""
        if ms < 0:
            raise ValueError("a clock does not go back")
        self._now += ms
        return self._now


def run_app(app: App, events: Iterable[Event], *, close_at: int | None = None) -> CollectingSink:
    """Run ``app`` over ``events`` on the pure engine.

    With ``close_at``, every device's watermark is then raised to it, so the windows it
    passes close (as an idle timeout would do on a live runtime).
    """
    engine = Engine(app)
    sink = CollectingSink()
    sink.add(engine.process_many(events))
    if close_at is not None:
        sink.add(engine.advance_to(close_at))
    return sink

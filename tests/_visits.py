"""A one-task App over item page visits and padded visit events, for device-log tests that
fill a small disk (full-disk backpressure, unit and integration)."""

from __future__ import annotations

from walle.streams import App, PageWindow, count
from walle.streams.events import Event
from walle.testing import literal_events


def visits_app() -> App:
    """Counts the events of each item page visit."""
    app = App("visits")
    app.stream("item_visits").window(PageWindow("item")).aggregate(events=count())
    return app


def padded_visits(visits: int) -> list[Event]:
    """``visits`` item page visits of device d1 (enter, click, exit), each event ~300 bytes."""
    rows = []
    for visit in range(visits):
        base = visit * 10_000
        rows += [(base, "page_enter", "item"), (base + 5, "click", "item")]
        rows += [(base + 9, "page_exit", "item")]
    return [e._replace(args={"pad": "z" * 300}) for e in literal_events(*rows, device_id="d1")]

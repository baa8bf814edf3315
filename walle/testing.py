"""Public helpers for testing walle apps: literal events, a collecting sink, a manual clock,
``run_app`` (the pure engine), ``run_on_device`` (the SQLite device runtime),
``run_on_cloud`` (cloud workers on a Kafka-protocol broker) and ``compare_runtimes``.

>>> from walle.streams import App, PageWindow, count
>>> app = App("demo")
>>> _ = app.stream("clicks").window(PageWindow("item")).aggregate(n=count())
>>> result = run_app(app, literal_events(
...     (0, "page_enter", "item"), (5, "click", "item"), (9, "page_exit", "item")))
>>> [(o.window, o.value) for o in result.outputs]
[('page:item:0', {'n': 3})]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from walle.streams.app import App
from walle.streams.engine import Engine
from walle.streams.events import Event
from walle.streams.results import Emissions, Output


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


def run_on_device(app: App, events: Iterable[Event], db_path: str | Path) -> list[Output]:
    """Run ``app`` over ``events`` on the device runtime (logged, then replayed from SQLite)."""
    from walle.streams.device import DeviceRuntime

    outputs: list[Output] = []
    with DeviceRuntime(app, db_path, on_output=outputs.append) as runtime:
        for event in events:
            runtime.store.append_valid(event)
        runtime.store.flush()
        runtime.run()
    return outputs


def run_on_cloud(app: App, events: Iterable[Event], broker: Any, workers: int = 1) -> list[Output]:
    """Run ``app`` over ``events`` on ``workers`` cloud workers; outputs, re-sent copies dropped.

    ``broker`` is a started ``walle.kafka.EmbeddedBroker`` or a ``kafka://`` URL.
    """
    from walle.testing_cloud import run_on_cloud as _run_on_cloud

    return _run_on_cloud(app, events, broker, workers=workers)


class RuntimeComparison(NamedTuple):
    """Outputs of one log on both runtimes, and what only one of them produced."""

    device: list[Output]
    cloud: list[Output]
    only_device: list[str]
    only_cloud: list[str]

    @property
    def equal(self) -> bool:
        """Whether both runtimes produced the same multiset of output records."""
        return not self.only_device and not self.only_cloud


def compare_runtimes(
    app: App, events: Iterable[Event], broker: Any, db_path: str | Path, *, workers: int = 1
) -> RuntimeComparison:
    """Run one log on the device runtime and on the cloud runtime; compare byte for byte."""
    events = list(events)
    device = run_on_device(app, events, db_path)
    cloud = run_on_cloud(app, events, broker, workers=workers)
    on_device = Counter(o.to_json() for o in device)
    on_cloud = Counter(o.to_json() for o in cloud)
    return RuntimeComparison(
        device,
        cloud,
        sorted((on_device - on_cloud).elements()),
        sorted((on_cloud - on_device).elements()),
    )

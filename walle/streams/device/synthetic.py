"""Deterministic synthetic user-behaviour logs for tests, benchmarks and example logs.

Each device browses pages: ``page_enter``, a few clicks / exposures / scrolls, ``page_exit``.
A seeded ``random.Random`` makes the same arguments give the same events on every machine.
Devices interleave in the log the way a shared device log or a broker partition would.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from walle.streams.events import CLICK, EXPOSURE, PAGE_ENTER, PAGE_EXIT, SCROLL, Event

PAGES = ("home", "item", "cart", "search")
_INSIDE = (CLICK, EXPOSURE, EXPOSURE, SCROLL)


def _visit(rng: random.Random, device: str, seq: int, ts: int) -> Iterator[Event]:
    page = rng.choice(PAGES)
    item = f"i{rng.randrange(40)}"
    yield Event(device, seq, ts, PAGE_ENTER, page, {"item": item})
    for _ in range(rng.randrange(1, 7)):
        seq, ts = seq + 1, ts + rng.randrange(200, 4_000)
        kind = rng.choice(_INSIDE)
        args = {"item": item, "price": rng.randrange(1, 500)} if kind == CLICK else {}
        yield Event(device, seq, ts, kind, page, args)
    yield Event(device, seq + 1, ts + rng.randrange(100, 2_000), PAGE_EXIT, page, {"item": item})


def device_events(device: str, count: int, *, seed: int = 0, start_ts: int = 0) -> list[Event]:
    """About ``count`` events of one device (whole page visits), seq from 1, time increasing."""
    rng = random.Random(f"{seed}:{device}")
    events: list[Event] = []
    seq, ts = 1, start_ts + rng.randrange(0, 60_000)
    while len(events) < count:
        visit = list(_visit(rng, device, seq, ts))
        events.extend(visit)
        seq, ts = visit[-1].seq + 1, visit[-1].ts + rng.randrange(1_000, 90_000)
    return events


def synthetic_log(
    devices: int, events_per_device: int, *, seed: int = 0, start_ts: int = 1_767_225_600_000
) -> list[Event]:
    """Events of ``devices`` devices merged in event-time order (ties by device, seq)."""
    merged = [
        event
        for number in range(devices)
        for event in device_events(
            f"dev-{number:04d}", events_per_device, seed=seed, start_ts=start_ts
        )
    ]
    merged.sort(key=lambda event: (event.ts, event.device_id, event.seq))
    return merged

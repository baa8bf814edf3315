"""A seeded generator of realistic user sessions, for examples, tests and benchmarks.

Each device browses in sessions separated by idle gaps: home -> search -> list -> item
pages (item pages sometimes nested, e.g. a recommended item opened from an item), with
exposures, clicks, scrolls and add-to-cart events inside visits. Rates of out-of-order
(event time a little behind), late (far behind) and duplicate (same seq re-sent) events
are configurable. The log order is the order devices would upload in: per device by seq.

>>> events = generate_events(devices=2, sessions=1, seed=7)
>>> events == generate_events(devices=2, sessions=1, seed=7)
True
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from walle.streams.events import CLICK, EXPOSURE, PAGE_ENTER, PAGE_EXIT, SCROLL, Event

ADD_TO_CART = "add_to_cart"
CATEGORIES = ("shoes", "books", "phones", "toys", "food")
START_TS = 1_700_000_000_000


@dataclass(frozen=True)
class GeneratorSettings:
    """Shape of the generated traffic."""

    devices: int = 10
    sessions: int = 3
    seed: int = 0
    out_of_order_rate: float = 0.0
    out_of_order_ms: int = 2_000
    late_rate: float = 0.0
    late_ms: int = 15 * 60 * 1000
    duplicate_rate: float = 0.0
    items: int = 500


class _Device:
    def __init__(self, device_id: str, rng: random.Random, settings: GeneratorSettings) -> None:
        self.id = device_id
        self.rng = rng
        self.settings = settings
        self.seq = 0
        self.ts = START_TS + rng.randrange(0, 60_000)
        self.events: list[Event] = []

    def emit(self, event: str, page: str, **args: object) -> None:
        self.ts += self.rng.randrange(200, 4_000)
        ts = self.ts
        s = self.settings
        roll = self.rng.random()
        if roll < s.late_rate:
            ts = max(0, ts - s.late_ms - self.rng.randrange(0, s.late_ms))
        elif roll < s.late_rate + s.out_of_order_rate:
            ts = max(0, ts - self.rng.randrange(1, s.out_of_order_ms))
        record = Event(self.id, self.seq, ts, event, page, dict(args))
        self.seq += 1
        self.events.append(record)
        if self.rng.random() < s.duplicate_rate:
            self.events.append(record)

    def visit(self, page: str, depth: int = 0) -> None:
        rng = self.rng
        item = f"i{rng.randrange(self.settings.items)}"
        category = rng.choice(CATEGORIES)
        args = {"item_id": item, "category": category} if page == "item" else {}
        self.emit(PAGE_ENTER, page, **args)
        for _ in range(rng.randrange(1, 6)):
            roll = rng.random()
            if roll < 0.3:
                self.emit(EXPOSURE, page, item_id=f"i{rng.randrange(self.settings.items)}")
            elif roll < 0.55:
                self.emit(SCROLL, page, depth=rng.randrange(1, 100))
            elif roll < 0.85:
                self.emit(CLICK, page, category=category, target=rng.choice(("img", "buy", "tab")))
            elif page == "item":
                self.emit(ADD_TO_CART, page, item_id=item, price=rng.randrange(1, 500) + 0.99)
            if page == "item" and depth < 2 and rng.random() < 0.15:
                self.visit("item", depth + 1)
        self.emit(PAGE_EXIT, page, **args)

    def session(self) -> None:
        rng = self.rng
        self.visit("home")
        if rng.random() < 0.7:
            self.visit("search")
        for _ in range(rng.randrange(1, 4)):
            self.visit("list")
            for _ in range(rng.randrange(0, 3)):
                self.visit("item")
        if rng.random() < 0.3:
            self.visit("cart")
        self.ts += rng.randrange(5 * 60_000, 40 * 60_000)


def generate_events(
    devices: int = 10, sessions: int = 3, seed: int = 0, **options: Any
) -> list[Event]:
    """Events of ``devices`` devices, ``sessions`` sessions each, interleaved in upload order."""
    settings = GeneratorSettings(devices=devices, sessions=sessions, seed=seed, **options)
    rng = random.Random(seed)
    logs = []
    for number in range(settings.devices):
        device = _Device(f"dev-{number:05d}", random.Random(rng.getrandbits(64)), settings)
        for _ in range(settings.sessions):
            device.session()
        logs.append(device.events)
    return _interleave(logs, rng)


def _interleave(logs: list[list[Event]], rng: random.Random) -> list[Event]:
    """Merge per-device logs in arrival order, keeping each device's own order."""
    positions = [0] * len(logs)
    merged: list[Event] = []
    live = [i for i, log in enumerate(logs) if log]
    while live:
        i = rng.choice(live)
        merged.append(logs[i][positions[i]])
        positions[i] += 1
        if positions[i] == len(logs[i]):
            live.remove(i)
    return merged

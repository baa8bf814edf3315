"""Writes the example event logs (examples/<app>.jsonl) and their golden outputs.

Run ``python tests/replay/replay_example_logs.py`` from the repository root after changing
an example app or the engine on purpose; the golden replay tests then pin the new outputs.
Logs come from a seeded generator, so regenerating gives the same bytes. The golden
outputs come from the pure engine (``walle.testing.run_app``), closing every window at the
end of the log as ``walle run`` does.
"""

from __future__ import annotations

import random
from pathlib import Path

from walle.streams.events import Event, read_jsonl, write_jsonl

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
APPS = ("item_page_view", "clicks_per_category", "search_to_cart")
CATEGORIES = ("shoes", "books", "phones", "toys")


class _Device:
    """One simulated user: a seq counter, an event-time clock, and a random source."""

    def __init__(self, device_id: str, rng: random.Random, start_ts: int) -> None:
        self.device_id, self.rng, self.ts, self.seq = device_id, rng, start_ts, 0
        self.events: list[Event] = []

    def emit(self, kind: str, page: str, args: dict | None = None, gap: tuple = (300, 4_000)):
        self.seq += 1
        self.ts += self.rng.randrange(*gap)
        self.events.append(Event(self.device_id, self.seq, self.ts, kind, page, args or {}))

    def item_visit(self, nested: bool = True) -> None:
        item = f"item-{self.rng.randrange(100)}"
        category = self.rng.choice(CATEGORIES)
        self.emit("page_enter", "item", {"item_id": item, "category": category})
        for _ in range(self.rng.randrange(0, 6)):
            roll = self.rng.random()
            if roll < 0.45:
                self.emit("click", "item", {"item_id": item, "category": category})
            elif roll < 0.8:
                self.emit("scroll", "item", {"depth": self.rng.randrange(1, 100)})
            elif roll < 0.9 and nested:
                self.item_visit(nested=False)
            else:
                self.emit("exposure", "item", {"item_id": f"item-{self.rng.randrange(100)}"})
        if self.rng.random() < 0.3:
            price = self.rng.randrange(5, 300)
            self.emit("add_to_cart", "item", {"item_id": item, "price": price})
        self.emit("page_exit", "item", {"item_id": item})

    def session(self) -> None:
        self.emit("page_enter", "home", gap=(30_000, 400_000))
        self.emit("page_exit", "home")
        for _ in range(self.rng.randrange(1, 4)):
            if self.rng.random() < 0.5:
                self.emit("page_enter", "search", {"query": f"q{self.rng.randrange(20)}"})
                self.emit("exposure", "search")
                self.emit("page_exit", "search")
            self.item_visit()


def _device_log(number: int, seed: int, sessions: int) -> list[tuple[int, Event]]:
    """``(arrival time, event)`` pairs of one device; some event times lag their arrival."""
    rng = random.Random(f"walle-example:{seed}:{number}")
    device = _Device(f"device-{number:02d}", rng, 1_767_225_600_000 + number * 7_000)
    for _ in range(sessions):
        device.session()
    arrivals = [(event.ts, event) for event in device.events]
    for index in range(5, len(arrivals), 23):  # a little disorder, within the 5 s bound
        ts, event = arrivals[index]
        arrivals[index] = (ts, event._replace(ts=event.ts - rng.randrange(0, 4_000)))
    for index in range(40, len(arrivals), 150):  # and a few events far too late
        ts, event = arrivals[index]
        arrivals[index] = (ts, event._replace(ts=event.ts - 420_000))
    return arrivals


def example_log(seed: int, devices: int = 4, sessions: int = 12) -> list[Event]:
    """Interleaved events of ``devices`` users in arrival order (ties: device, seq)."""
    merged = [pair for n in range(devices) for pair in _device_log(n, seed, sessions)]
    merged.sort(key=lambda pair: (pair[0], pair[1].device_id, pair[1].seq))
    return [event for _, event in merged]


def golden_outputs(app_path: Path, log_path: Path) -> list[str]:
    """The pure engine's outputs for ``log_path``, all windows closed at the end, as JSON."""
    from walle.streams.app import load_app
    from walle.streams.device.runtime import END_OF_LOG_MS
    from walle.testing import run_app

    app = load_app(app_path)
    result = run_app(app, read_jsonl(log_path), close_at=END_OF_LOG_MS)
    return [output.to_json() for output in result.outputs]


def main() -> None:
    """(Re)write every example's log and golden output."""
    for seed, name in enumerate(APPS):
        log_path = EXAMPLES / f"{name}.jsonl"
        write_jsonl(log_path, example_log(seed))
        golden = golden_outputs(EXAMPLES / f"{name}.py", log_path)
        (EXAMPLES / f"{name}.golden.jsonl").write_text("".join(f"{line}\n" for line in golden))
        print(f"{log_path.name}: {len(golden)} outputs")


if __name__ == "__main__":
    main()

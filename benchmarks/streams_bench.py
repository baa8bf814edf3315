"""Streams benchmark: decode limit, trigger matching (trie vs naive), device replay, append.

Prints, in one run on generated events:
  (a) JSONL decode-only events/s (the limit);
  (b) trigger matching events/s with 1, 100, 1,000 and 10,000 tasks sharing prefixes,
      for the trie (pure Python and compiled) against the naive per-task matcher;
  (c) full device replay events/s as a fraction of (a) (benchmarks/device_bench.py);
  (d) live append latency p50/p99 at the default durability policy.

Run: .venv/bin/python benchmarks/streams_bench.py [--events N] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from walle.streams.events import decode_event, write_jsonl
from walle.streams.generator import generate_events
from walle.streams.naive import NaiveMatcher
from walle.streams.patterns import Pattern, entered, exposed, on, seq
from walle.streams.trie import TriggerTrie

PAGES = ("home", "search", "list", "item", "cart")
EVENTS = ("click", "scroll", "add_to_cart", "page_exit")


def task_patterns(n: int) -> list[Pattern]:
    """``n`` patterns that share prefixes the way real task sets do."""
    patterns = []
    for i in range(n):
        page = PAGES[i % len(PAGES)]
        last = on(EVENTS[(i // len(PAGES)) % len(EVENTS)], page)
        middle = exposed(page, item_id=f"i{(i // 20) % 500}")
        patterns.append(seq(entered(page), middle, last).within(60_000 + 1000 * (i % 7)))
    return patterns


def _watermarks(events) -> list[int]:
    out, high = [], {}
    for e in events:
        high[e.device_id] = max(high.get(e.device_id, e.ts), e.ts)
        out.append(high[e.device_id] - 5_000)
    return out


def best_rate(run: Callable[[], int], repeat: int = 3) -> float:
    """Best of ``repeat`` runs, in items per second."""
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        count = run()
        best = max(best, count / (time.perf_counter() - start))
    return best


def bench_decode(lines: list[bytes]) -> float:
    def run() -> int:
        for line in lines:
            decode_event(line)
        return len(lines)

    return best_rate(run)


def bench_trie(patterns: list[Pattern], events, watermarks, compiled: bool) -> float:
    trie = TriggerTrie(compiled=compiled)
    for p in patterns:
        trie.add(p)

    def run() -> int:
        states: dict[str, object] = {}
        feed = trie.feed
        fires = 0
        for event, wm in zip(events, watermarks, strict=True):
            state = states.get(event.device_id)
            if state is None:
                state = states[event.device_id] = trie.new_state()
            fires += len(feed(state, event, wm))
        run.fires = fires  # type: ignore[attr-defined]
        return len(events)

    rate = best_rate(run)
    return rate, run.fires  # type: ignore[attr-defined]


def bench_naive(patterns: list[Pattern], events, watermarks, budget_s: float) -> tuple[float, int]:
    per_device: dict[str, list[NaiveMatcher]] = {}
    fires = 0
    start = time.perf_counter()
    done = 0
    for event, wm in zip(events, watermarks, strict=True):
        matchers = per_device.get(event.device_id)
        if matchers is None:
            matchers = per_device[event.device_id] = [
                NaiveMatcher(p, i) for i, p in enumerate(patterns)
            ]
        for matcher in matchers:
            if matcher.feed(event, wm) is not None:
                fires += 1
        done += 1
        if done % 64 == 0 and time.perf_counter() - start > budget_s:
            break
    return done / (time.perf_counter() - start), done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller run (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.devices, args.sessions = 20, 2
    events = generate_events(args.devices, args.sessions, seed=42, out_of_order_rate=0.05)
    watermarks = _watermarks(events)
    print(f"{len(events):,} generated events, {args.devices} devices; one core, best of 3")
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "events.jsonl"
        write_jsonl(log, events)
        lines = log.read_bytes().splitlines()
        decode = bench_decode(lines)
        print(f"(a) JSONL decode + validate: {decode:,.0f} events/s  (the limit)")
        print("(b) trigger matching, events/s:")
        print(
            f"    {'tasks':>6} {'trie nodes':>10} {'naive':>12} {'trie (py)':>12} "
            f"{'trie (cy)':>12} {'py/naive':>9} {'cy/naive':>9}"
        )
        for n in (1, 100, 1000, 10_000):
            patterns = task_patterns(n)
            py, py_fires = bench_trie(patterns, events, watermarks, compiled=False)
            cy, cy_fires = bench_trie(patterns, events, watermarks, compiled=True)
            naive, _ = bench_naive(patterns, events, watermarks, budget_s=2.0 if n > 1 else 5)
            if py_fires != cy_fires:
                print(f"    MISMATCH: python trie fired {py_fires}, compiled {cy_fires}")
                return 1
            nodes = TriggerTrie()
            for p in patterns:
                nodes.add(p)
            print(
                f"    {n:>6} {nodes.node_count:>10} {naive:>12,.0f} {py:>12,.0f} {cy:>12,.0f} "
                f"{py / naive:>8.1f}x {cy / naive:>8.1f}x"
            )
        try:
            sys.path.insert(0, str(Path(__file__).parent))
            import device_bench
        except ImportError as exc:
            print(f"(c)/(d) device runtime benchmark unavailable: {exc}")
            return 0
        replay = device_bench.bench_device_replay(log)
        print(
            f"(c) device replay (decode+match+windows+aggregates+checkpoints): {replay:,.0f} "
            f"events/s = {replay / decode:.0%} of decode-only"
        )
        p50, p99 = device_bench.bench_append_latency()
        print(
            f"(d) live append latency at the default durability policy: p50 {p50:.1f} us, "
            f"p99 {p99:.1f} us"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

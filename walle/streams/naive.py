"""The reference trigger matcher: one pattern at a time, position by position.

It is the executable definition of the trigger semantics (see the README) and the
baseline the trie is measured against. Per pattern it keeps ``best[i]``: the latest-starting
partial match that has matched positions 1..i. For each event, in this order:

1. guards: a partial match at position i whose guard matches the event is cancelled;
2. advances: position i takes the latest start among the positions it can follow
   (i-1, earlier positions across skipped optional steps, itself if one_or_more, or the
   event itself when every earlier step is optional);
3. fire: if an accepting position advanced, the pattern fires once with its latest
   start, provided the match is alive (``within``: end.ts - start.ts <= within and the
   watermark has not passed start.ts + within) and it starts after the previous match of
   this pattern ended (after-match skip: past the last event).

It stands alone: it imports only the event and pattern types of the DSL and declares its
own ``Start`` and ``Fire`` (equal, as tuples, to the trie's), so the trie cannot pass the
property test by sharing a bug with its oracle. Nothing in the engine imports it.
"""

from __future__ import annotations

from typing import NamedTuple

from walle.streams.events import Event
from walle.streams.patterns import ONE_OR_MORE, OPTIONAL, Pattern


class Start(NamedTuple):
    """Where a partial match began."""

    seq: int
    ts: int


class Fire(NamedTuple):
    """One firing of one pattern: its index, where it started, the event that ended it."""

    pattern: int
    start: Start
    end: Event


def alive(start: Start, end: Event, watermark: int, within_ms: int | None) -> bool:
    """Whether a match from ``start`` to ``end`` satisfies ``within`` at ``watermark``."""
    if within_ms is None:
        return True
    return end.ts - start.ts <= within_ms and watermark <= start.ts + within_ms


def _later(a: Start | None, b: Start | None) -> Start | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a.seq >= b.seq else b


class NaiveMatcher:
    """Matches one pattern, independently of every other."""

    def __init__(self, pattern: Pattern, index: int = 0) -> None:
        self.pattern = pattern
        self.index = index
        self._k = len(pattern.elements)
        self._best: list[Start | None] = [None] * (self._k + 1)
        self._consumed = -1
        opt = [el.quantifier == OPTIONAL for el in pattern.elements]
        self._accepting = [
            i for i in range(1, self._k + 1) if all(opt[j] for j in range(i, self._k))
        ]

    def feed(self, event: Event, watermark: int) -> Fire | None:
        """Advance over one event; return the firing it causes, if any."""
        elements = self.pattern.elements
        best = self._best
        for i in range(1, self._k + 1):
            if best[i] is not None and any(g.matches(event) for g in elements[i - 1].guards):
                best[i] = None
        new: dict[int, Start] = {}
        here = Start(event.seq, event.ts)
        for i in range(1, self._k + 1):
            element = elements[i - 1]
            if not element.step.matches(event):
                continue
            source = best[i] if element.quantifier == ONE_OR_MORE else None
            j = i - 1
            while True:
                if j == 0:
                    source = _later(source, here)
                    break
                source = _later(source, best[j])
                if elements[j - 1].quantifier != OPTIONAL:
                    break
                j -= 1
            if source is not None:
                new[i] = source
        for i, start in new.items():
            best[i] = _later(best[i], start)
        fired: Start | None = None
        for i in self._accepting:
            fired = _later(fired, new.get(i))
        if fired is None or fired.seq <= self._consumed:
            return None
        if not alive(fired, event, watermark, self.pattern.within_ms):
            return None
        self._consumed = event.seq
        return Fire(self.index, fired, event)


def naive_fires(patterns: list[Pattern], events: list[Event], watermarks: list[int]) -> list[Fire]:
    """All firings of every pattern over one device's events, in (event, pattern) order."""
    matchers = [NaiveMatcher(p, i) for i, p in enumerate(patterns)]
    fires = []
    for event, watermark in zip(events, watermarks, strict=True):
        for matcher in matchers:
            fire = matcher.feed(event, watermark)
            if fire is not None:
                fires.append(fire)
    return fires

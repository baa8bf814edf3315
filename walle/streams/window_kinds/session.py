"""Session windows: events of a key closer than ``gap_ms`` share one window.

A session is ``[first ts, last ts + gap_ms)``; an event touching several sessions merges
them (their aggregate states merge). A session closes, and emits (final only), when the
watermark reaches its end plus ``lateness_ms``. An event is late when it touches no open
session and the session it would start has already closed.
"""

from __future__ import annotations

import heapq

from walle.streams.events import Event
from walle.streams.results import Emissions, LateEvent
from walle.streams.window_kinds.base import KeyedWindows, WindowState, window_id
from walle.streams.window_kinds.task import Task
from walle.streams.windows import Session

__all__ = ["SessionWindows"]


class SessionWindows(KeyedWindows):
    """Session windows of one task.

    State: ``sessions`` maps a key to its open sessions ``[lo, hi, acc]``, sorted by
    ``lo``; ``heap`` holds (close time, lo, key) of every session ever opened (entries of
    sessions since merged away are skipped when they come up).
    """

    def __init__(self, spec: Session, task: Task) -> None:
        super().__init__(spec, task)
        self._gap = spec.gap_ms
        self._lateness = spec.lateness_ms

    def add(self, state: WindowState, event: Event, key: str, wm: int, out: Emissions) -> None:
        acc_of = self.task.acc
        sessions = state["sessions"].setdefault(key, [])
        # half-open [first ts, last ts + gap): events closer than gap_ms share a session
        lo, hi = event.ts, event.ts + self._gap
        touching = [s for s in sessions if s[0] < hi and lo < s[1]]
        if not touching and hi + self._lateness <= wm:
            out.late.append(
                LateEvent(self.name, event, f"its session would have closed by watermark {wm}")
            )
            return
        acc = acc_of.init()
        acc_of.add(acc, event)
        for s in sorted(touching, key=lambda s: s[0]):
            sessions.remove(s)
            lo, hi, acc = min(lo, s[0]), max(hi, s[1]), acc_of.merge(s[2], acc)
        sessions.append([lo, hi, acc])
        sessions.sort(key=lambda s: s[0])
        heapq.heappush(state["heap"], (hi + self._lateness, lo, key))

    def close(self, state: WindowState, last: Event, wm: int, out: Emissions) -> None:
        heap = state["heap"]
        while heap and heap[0][0] <= wm:
            close_at, start, key = heapq.heappop(heap)
            end = close_at - self._lateness
            sessions = state["sessions"].get(key, [])
            match = next((s for s in sessions if s[0] == start and s[1] == end), None)
            if match is None:
                continue  # merged into a later session since
            sessions.remove(match)
            if not sessions:
                del state["sessions"][key]
            self.task.emit(
                out, last, match[2], window_id("session", start, end, key), key, start, end
            )

"""Tumbling and hopping windows: fixed-size event-time windows ``[start, end)``.

``Tumbling(size_ms)`` puts an event in one window, ``Hopping(size_ms, hop_ms)`` in every
window that holds its time (the spec says which starts: ``starts(ts)``); a window closes,
and emits in ``final`` mode, when the watermark reaches ``end + lateness_ms``. An event is
late for each of its windows that has closed: one late record per such window.
"""

from __future__ import annotations

import heapq

from walle.streams.events import Event
from walle.streams.results import Emissions, LateEvent
from walle.streams.window_kinds.base import KeyedWindows, WindowState, window_id
from walle.streams.window_kinds.task import Task
from walle.streams.windows import Hopping, Tumbling

__all__ = ["TimeWindows"]


class TimeWindows(KeyedWindows):
    """Tumbling or hopping windows of one task.

    State: ``open`` maps (key, start) to a window's aggregate state; ``heap`` holds
    (close time, start, key) of the open windows, earliest close first.
    """

    def __init__(self, spec: Tumbling | Hopping, task: Task) -> None:
        super().__init__(spec, task)
        self._kind = spec.kind
        self._size = spec.size_ms
        self._lateness = spec.lateness_ms
        self._starts = spec.starts

    def add(self, state: WindowState, event: Event, key: str, wm: int, out: Emissions) -> None:
        task = self.task
        for start in self._starts(event.ts):
            end = start + self._size
            wid = window_id(self._kind, start, end, key)
            if end + self._lateness <= wm:
                out.late.append(
                    LateEvent(self.name, event, f"window {wid} closed at watermark {wm}")
                )
                continue
            acc = state["open"].get((key, start))
            if acc is None:
                acc = state["open"][(key, start)] = task.acc.init()
                heapq.heappush(state["heap"], (end + self._lateness, start, key))
            task.acc.add(acc, event)
            if task.update:
                task.emit(out, event, acc, wid, key, start, end)

    def close(self, state: WindowState, last: Event, wm: int, out: Emissions) -> None:
        heap = state["heap"]
        while heap and heap[0][0] <= wm:
            _, start, key = heapq.heappop(heap)
            acc = state["open"].pop((key, start))
            end = start + self._size
            if not self.task.update:
                self.task.emit(
                    out, last, acc, window_id(self._kind, start, end, key), key, start, end
                )

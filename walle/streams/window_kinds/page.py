"""Page windows: one visit of a page, from its ``page_enter`` to its ``page_exit``.

In arrival order; nested visits of the same page each get their own window (the outer one
includes the inner's events). A visit still open ``timeout_ms`` after its enter, by
watermark, closes as incomplete (window id ``page:<page>:<seq>:open``). The markers are
read from the raw events; the task's transforms apply to the events counted in a visit.
"""

from __future__ import annotations

from typing import Any

from walle.streams.events import PAGE_ENTER, PAGE_EXIT, Event
from walle.streams.results import Emissions
from walle.streams.window_kinds.base import WindowKind, WindowState
from walle.streams.window_kinds.task import Task
from walle.streams.windows import PageWindow

__all__ = ["PageVisits"]


class PageVisits(WindowKind):
    """Page-visit windows of one task.

    State: ``visits`` lists the open visits ``[enter seq, enter ts, acc]``, oldest first.
    """

    def __init__(self, spec: PageWindow, task: Task) -> None:
        super().__init__(spec, task)
        self._page = spec.page
        self._timeout = spec.timeout_ms
        self._enter = (PAGE_ENTER, spec.page)
        self._exit = (PAGE_EXIT, spec.page)

    def assign(self, state: WindowState, event: Event, wm: int, out: Emissions) -> None:
        task = self.task
        visits = state["visits"]
        marker = (event.event, event.page)
        if marker == self._enter:
            visits.append([event.seq, event.ts, task.acc.init()])
        item = task.transform(event, out) if visits else None
        if item is not None:
            for visit in visits:
                task.acc.add(visit[2], item)
                if task.update:
                    task.emit(out, event, visit[2], self._visit_id(visit), "", visit[1], event.ts)
        if marker == self._exit and visits:
            visit = visits.pop()
            if not task.update:
                task.emit(out, event, visit[2], self._visit_id(visit), "", visit[1], event.ts)

    def close(self, state: WindowState, last: Event, wm: int, out: Emissions) -> None:
        visits = state["visits"]
        while visits and visits[0][1] + self._timeout <= wm:
            visit = visits.pop(0)
            entered = visit[1]
            wid = self._visit_id(visit, ":open")
            self.task.emit(out, last, visit[2], wid, "", entered, entered + self._timeout, False)

    def _visit_id(self, visit: list[Any], suffix: str = "") -> str:
        return f"page:{self._page}:{visit[0]}{suffix}"

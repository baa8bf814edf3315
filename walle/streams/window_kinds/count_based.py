"""Count windows: every ``n`` events of a key, in arrival (seq) order.

The watermark plays no part: a window closes on its ``n``-th event, and no event is late.
"""

from __future__ import annotations

from walle.streams.events import Event
from walle.streams.results import Emissions
from walle.streams.window_kinds.base import KeyedWindows, WindowState
from walle.streams.window_kinds.task import Task
from walle.streams.windows import CountWindow

__all__ = ["CountWindows"]


class CountWindows(KeyedWindows):
    """Count windows of one task.

    State: ``counts`` maps a key to ``[window number, events so far, acc]``.
    """

    def __init__(self, spec: CountWindow, task: Task) -> None:
        super().__init__(spec, task)
        self._n = spec.n

    def add(self, state: WindowState, event: Event, key: str, wm: int, out: Emissions) -> None:
        task = self.task
        slot = state["counts"].get(key)
        if slot is None:
            slot = state["counts"][key] = [0, 0, task.acc.init()]
        task.acc.add(slot[2], event)
        slot[1] += 1
        wid = f"count:{slot[0]}:{key}" if key else f"count:{slot[0]}"
        if task.update or slot[1] == self._n:
            task.emit(out, event, slot[2], wid, key, event.ts, event.ts)
        if slot[1] == self._n:
            state["counts"][key] = [slot[0] + 1, 0, task.acc.init()]

    def close(self, state: WindowState, last: Event, wm: int, out: Emissions) -> None:
        """Nothing to do: count windows close on their last event, not on the watermark."""

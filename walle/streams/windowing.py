"""Per-device window logic: assign events, close windows on the watermark, emit results.

One runner per task (built from its plan); all per-device state is plain data kept in
the device's state record (dicts, lists, tuples, numbers, strings and Events), which
``walle.streams.state_codec`` snapshots as msgpack: a new type in this state must be one
the codec knows, or snapshots refuse it.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

from walle.streams.app import Window
from walle.streams.events import PAGE_ENTER, PAGE_EXIT, Event
from walle.streams.naive import Fire
from walle.streams.plan import FilterStep, Plan
from walle.streams.results import DeadLetter, Emissions, LateEvent, Output, canonical_json
from walle.streams.windows import (
    EMIT_UPDATE,
    CountWindow,
    Hopping,
    LookBack,
    PageWindow,
    Session,
    Span,
    Tumbling,
)


class _Accumulator:
    """Folds events into a window's state and turns that state into an output value."""

    def __init__(self, plan: Plan) -> None:
        step = plan.aggregate
        self.fn = step.fn
        self.aggregates = step.aggregates

    def init(self) -> list[Any]:
        return [] if self.fn is not None else [agg.init() for _, agg in self.aggregates]

    def add(self, acc: list[Any], event: Event) -> None:
        if self.fn is not None:
            acc.append(event)
            return
        for i, (_, agg) in enumerate(self.aggregates):
            acc[i] = agg.add(acc[i], agg.value(event))

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        if self.fn is not None:
            return sorted(a + b, key=lambda e: e.seq)
        return [agg.merge(x, y) for (_, agg), x, y in zip(self.aggregates, a, b, strict=True)]

    def value(self, acc: list[Any], window: Window) -> Any:
        if self.fn is not None:
            return self.fn(window)
        return {
            name: agg.result(state) for (name, agg), state in zip(self.aggregates, acc, strict=True)
        }


class TaskRunner:
    """Runs one plan's window and aggregate steps for any device."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.name = plan.name
        self.spec = plan.window.spec
        self.update = plan.window.emit == EMIT_UPDATE
        self.acc = _Accumulator(plan)
        self._transforms = [(isinstance(step, FilterStep), step.fn) for step in plan.transforms]
        self._key = plan.key_by.fn if plan.key_by is not None else None
        self._page_enter = (PAGE_ENTER, getattr(self.spec, "page", None))
        self._page_exit = (PAGE_EXIT, getattr(self.spec, "page", None))

    # -- helpers -----------------------------------------------------------------------

    def new_state(self) -> dict[str, Any]:
        """Empty per-device state for this task."""
        return {"open": {}, "heap": [], "sessions": {}, "counts": {}, "visits": []}

    def _transform(self, event: Event, out: Emissions) -> Event | None:
        try:
            for is_filter, fn in self._transforms:
                if is_filter:
                    if not fn(event):
                        return None
                else:
                    event = fn(event)
                    if not isinstance(event, Event):
                        raise TypeError(f"map returned {type(event).__name__}, not an Event")
        except Exception as exc:  # a task's own code failed: contain it
            out.dead.append(DeadLetter(self.name, event, f"{type(exc).__name__}: {exc}"))
            return None
        return event

    def _keyed(self, event: Event, out: Emissions) -> str | None:
        if self._key is None:
            return ""
        try:
            key = self._key(event)
        except Exception as exc:
            out.dead.append(DeadLetter(self.name, event, f"key_by {type(exc).__name__}: {exc}"))
            return None
        if not isinstance(key, str) or "|" in key:
            out.dead.append(DeadLetter(self.name, event, f"key_by gave {key!r}: need str w/o '|'"))
            return None
        return key

    def _emit(
        self,
        out: Emissions,
        event: Event,
        acc: list[Any],
        window_id: str,
        key: str,
        start: int,
        end: int,
        complete: bool = True,
    ) -> None:
        events = tuple(acc) if self.acc.fn is not None else ()
        window = Window(self.name, event.device_id, window_id, key, start, end, events, complete)
        try:
            value = self.acc.value(acc, window)
            if value is None:
                return
            if not isinstance(value, dict):
                raise TypeError(f"task returned {type(value).__name__}, expected dict or None")
            canonical_json(value)
        except Exception as exc:
            out.dead.append(DeadLetter(self.name, event, f"{type(exc).__name__}: {exc}"))
            return
        out.outputs.append(Output(self.name, event.device_id, window_id, end, value))

    # -- events ------------------------------------------------------------------------

    def on_event(self, state: dict[str, Any], event: Event, wm: int, out: Emissions) -> None:
        """Feed one raw event of the device (non-triggered tasks)."""
        spec = self.spec
        if isinstance(spec, PageWindow):
            self._page(state, event, out)
            return
        item = self._transform(event, out)
        if item is None:
            return
        key = self._keyed(item, out)
        if key is None:
            return
        if isinstance(spec, Tumbling | Hopping):
            self._timed(state, item, key, wm, out)
        elif isinstance(spec, Session):
            self._session(state, item, key, wm, out)
        elif isinstance(spec, CountWindow):
            self._count(state, item, key, out)

    def _timed(
        self, state: dict[str, Any], event: Event, key: str, wm: int, out: Emissions
    ) -> None:
        spec = self.spec
        suffix = f":{key}" if key else ""
        for start in spec.starts(event.ts):
            end = start + spec.size
            window_id = f"{spec.kind}:{start}-{end}{suffix}"
            if end + spec.lateness_ms <= wm:
                out.late.append(
                    LateEvent(self.name, event, f"window {window_id} closed at watermark {wm}")
                )
                continue
            acc = state["open"].get((key, start))
            if acc is None:
                acc = state["open"][(key, start)] = self.acc.init()
                heapq.heappush(state["heap"], (end + spec.lateness_ms, start, key))
            self.acc.add(acc, event)
            if self.update:
                self._emit(out, event, acc, window_id, key, start, end)

    def _session(
        self, state: dict[str, Any], event: Event, key: str, wm: int, out: Emissions
    ) -> None:
        spec = self.spec
        sessions = state["sessions"].setdefault(key, [])
        # half-open [first ts, last ts + gap): events closer than gap_ms share a session
        lo, hi = event.ts, event.ts + spec.gap_ms
        touching = [s for s in sessions if s[0] < hi and lo < s[1]]
        if not touching and hi + spec.lateness_ms <= wm:
            out.late.append(
                LateEvent(self.name, event, f"its session would have closed by watermark {wm}")
            )
            return
        acc = self.acc.init()
        self.acc.add(acc, event)
        for s in sorted(touching, key=lambda s: s[0]):
            sessions.remove(s)
            lo, hi, acc = min(lo, s[0]), max(hi, s[1]), self.acc.merge(s[2], acc)
        sessions.append([lo, hi, acc])
        sessions.sort(key=lambda s: s[0])
        heapq.heappush(state["heap"], (hi + spec.lateness_ms, lo, key))

    def _count(self, state: dict[str, Any], event: Event, key: str, out: Emissions) -> None:
        slot = state["counts"].get(key)
        if slot is None:
            slot = state["counts"][key] = [0, 0, self.acc.init()]
        self.acc.add(slot[2], event)
        slot[1] += 1
        suffix = f":{key}" if key else ""
        window_id = f"count:{slot[0]}{suffix}"
        if self.update or slot[1] == self.spec.n:
            self._emit(out, event, slot[2], window_id, key, event.ts, event.ts)
        if slot[1] == self.spec.n:
            state["counts"][key] = [slot[0] + 1, 0, self.acc.init()]

    def _page(self, state: dict[str, Any], event: Event, out: Emissions) -> None:
        visits = state["visits"]
        marker = (event.event, event.page)
        if marker == self._page_enter:
            visits.append([event.seq, event.ts, self.acc.init()])
        item = self._transform(event, out) if visits else None
        if item is not None:
            for visit in visits:
                self.acc.add(visit[2], item)
                if self.update:
                    self._emit(out, event, visit[2], self._visit_id(visit), "", visit[1], event.ts)
        if marker == self._page_exit and visits:
            visit = visits.pop()
            if not self.update:
                self._emit(out, event, visit[2], self._visit_id(visit), "", visit[1], event.ts)

    def _visit_id(self, visit: list[Any], suffix: str = "") -> str:
        return f"page:{self.spec.page}:{visit[0]}{suffix}"

    # -- watermark -----------------------------------------------------------------------

    def on_watermark(self, state: dict[str, Any], last: Event, wm: int, out: Emissions) -> None:
        """Close what the watermark ``wm`` has passed; ``last`` is the device's last event."""
        spec = self.spec
        if isinstance(spec, PageWindow):
            while state["visits"] and state["visits"][0][1] + spec.timeout_ms <= wm:
                visit = state["visits"].pop(0)
                self._emit(
                    out,
                    last,
                    visit[2],
                    self._visit_id(visit, ":open"),
                    "",
                    visit[1],
                    visit[1] + spec.timeout_ms,
                    complete=False,
                )
            return
        heap = state["heap"]
        while heap and heap[0][0] <= wm:
            close_at, start, key = heapq.heappop(heap)
            suffix = f":{key}" if key else ""
            if isinstance(spec, Session):
                end = close_at - spec.lateness_ms
                sessions = state["sessions"].get(key, [])
                match = next((s for s in sessions if s[0] == start and s[1] == end), None)
                if match is None:
                    continue
                sessions.remove(match)
                if not sessions:
                    del state["sessions"][key]
                self._emit(out, last, match[2], f"session:{start}-{end}{suffix}", key, start, end)
            else:
                acc = state["open"].pop((key, start))
                end = start + spec.size
                if not self.update:
                    self._emit(
                        out, last, acc, f"{spec.kind}:{start}-{end}{suffix}", key, start, end
                    )

    # -- triggers ------------------------------------------------------------------------

    def on_fire(self, fire: Fire, buffer: Sequence[Event], out: Emissions) -> None:
        """Compute the task over the window a trigger's firing defines."""
        spec = self.spec
        end = fire.end
        complete = True
        if isinstance(spec, Span):
            events = [e for e in buffer if fire.start.seq <= e.seq <= end.seq]
            complete = bool(events) and events[0].seq == fire.start.seq
            events = events[-spec.max_events :]
            window_id, start = f"match:{fire.start.seq}-{end.seq}", fire.start.ts
        elif isinstance(spec, LookBack) and spec.events is not None:
            events = list(buffer)[-spec.events :]
            window_id, start = f"lookback:{end.seq}", events[0].ts
        else:
            events = [e for e in buffer if end.ts - spec.ms <= e.ts <= end.ts]
            window_id, start = f"lookback:{end.seq}", end.ts - spec.ms
        acc = self.acc.init()
        for event in events:
            item = self._transform(event, out)
            if item is not None:
                self.acc.add(acc, item)
        self._emit(out, end, acc, window_id, "", start, end.ts, complete)

    @property
    def buffer_events(self) -> int:
        """How many recent events of a device this task's trigger windows may need."""
        spec = self.spec
        if isinstance(spec, Span):
            return spec.max_events
        if isinstance(spec, LookBack):
            return spec.events if spec.events is not None else 10_000
        return 0

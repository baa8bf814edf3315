"""The engine: one deterministic function from a device's ordered events to outputs.

It knows nothing about where events come from or where state lives; the device runtime
(SQLite) and the cloud runtime (Kafka) both drive it. Per device it keeps one
state record (last applied sequence number, watermark, trigger state, window state), so
a runtime can store a device's whole state under one key; an event at or below the
device's last applied sequence number is a duplicate and changes nothing, which makes
re-delivery after a crash or a rebalance harmless.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from walle.streams import state_codec
from walle.streams.app import App
from walle.streams.events import Event
from walle.streams.plan import Plan
from walle.streams.results import DeadLetter, Emissions, LateEvent, Output
from walle.streams.trie import TrieState, TriggerTrie
from walle.streams.window_kinds import WindowKind, for_plan

__all__ = ["DeadLetter", "Emissions", "Engine", "LateEvent", "Output"]

_LOWEST = -(2**62)
END_OF_LOG_MS = 2**62  # the watermark that closes every window when a log is complete


@dataclass
class DeviceState:
    """Everything the engine remembers about one device."""

    last_seq: int = -1
    max_ts: int = _LOWEST
    forced_wm: int = _LOWEST
    last_event: Event | None = None
    trie: TrieState = field(default_factory=TrieState)
    buffer: deque[Event] = field(default_factory=deque)
    tasks: dict[str, Any] = field(default_factory=dict)

    def trim_buffer(self) -> None:
        """Drop buffered events older than every active partial match.

        Only for span windows (a fire's window runs from its match's start): a future fire
        starts at a partial match active now or at a future event, so older events can
        never be read again.
        """
        buffer = self.buffer
        if not buffer:
            return
        starts = self.trie.active.values()
        oldest = min(seq for seq, _ in starts) if starts else buffer[-1].seq + 1
        while buffer and buffer[0].seq < oldest:
            buffer.popleft()


class Engine:
    """Runs an App's plans over events of any number of devices."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._ooo = app.out_of_orderness_ms
        self._known = app.known_events
        self._devices: dict[str, DeviceState] = {}
        self._trie = TriggerTrie()
        self._runners: dict[str, WindowKind] = {}  # task name -> its window kind
        self._window_runners: list[WindowKind] = []  # the tasks without a trigger
        self._fired_by: dict[int, WindowKind] = {}  # trie pattern -> its task's kind
        self._patterns: dict[str, int] = {}
        self._buffer_events = 0
        self._trim_buffers = False
        for plan in app.plans:
            self._install(plan, for_plan(plan))
        self._fingerprint = app.fingerprint  # cached: snapshots are taken per batch

    # -- tasks ---------------------------------------------------------------------------

    def _install(self, plan: Plan, runner: WindowKind) -> None:
        self._runners[plan.name] = runner
        if plan.trigger is not None:
            index = self._trie.add(plan.trigger.pattern)
            self._patterns[plan.name] = index
            self._fired_by[index] = runner
        else:
            self._window_runners.append(runner)
        self._update_buffering()

    def add_task(self, plan: Plan) -> None:
        """Start running a new task (it sees events from now on)."""
        runner = for_plan(plan)  # a window no kind runs is refused before the app changes
        self.app.add(plan)
        self._install(plan, runner)
        self._fingerprint = self.app.fingerprint

    def remove_task(self, name: str) -> None:
        """Stop running a task and forget its state on every device."""
        self.app.remove(name)
        runner = self._runners.pop(name)
        if name in self._patterns:
            index = self._patterns.pop(name)
            self._trie.remove(index)
            del self._fired_by[index]
        else:
            self._window_runners.remove(runner)
        for device in self._devices.values():
            device.tasks.pop(name, None)
        self._update_buffering()
        self._fingerprint = self.app.fingerprint

    def _update_buffering(self) -> None:
        users = [r for r in self._runners.values() if r.buffer_events]
        self._buffer_events = max((r.buffer_events for r in users), default=0)
        self._trim_buffers = bool(users) and all(r.trims_buffer for r in users)

    @property
    def trie(self) -> TriggerTrie:
        """The shared trigger automaton (for inspection and benchmarks)."""
        return self._trie

    # -- events --------------------------------------------------------------------------

    def process(self, event: Event) -> Emissions:
        """Feed one event; returns what it caused."""
        out = Emissions()
        self._process(event, out)
        return out

    def process_many(self, events: Iterable[Event]) -> Emissions:
        """Feed events in order; returns what they caused, in order."""
        out = Emissions()
        for event in events:
            self._process(event, out)
        return out

    def _device(self, device_id: str) -> DeviceState:
        device = self._devices.get(device_id)
        if device is None:
            device = self._devices[device_id] = DeviceState()
        return device

    def _process(self, event: Event, out: Emissions) -> None:
        device = self._device(event.device_id)
        if event.seq <= device.last_seq:
            out.duplicates.append(event)
            return
        device.last_seq = event.seq
        if event.ts > device.max_ts:
            device.max_ts = event.ts
        wm = max(device.max_ts - self._ooo, device.forced_wm)
        if self._known is not None and event.event not in self._known:
            out.dead.append(
                DeadLetter(
                    None,
                    event,
                    f"unknown event id {event.event!r} (app "
                    f"{self.app.name!r} declares its custom events)",
                )
            )
            return
        device.last_event = event
        if self._fired_by:
            if self._buffer_events:
                device.buffer.append(event)
                if len(device.buffer) > self._buffer_events:
                    device.buffer.popleft()
            fires = self._trie.feed(device.trie, event, wm)
            for fire in fires:
                self._fired_by[fire.pattern].fire(fire, device.buffer, out)
        tasks = device.tasks
        for runner in self._window_runners:
            state = tasks.get(runner.name)
            if state is None:
                state = tasks[runner.name] = runner.new_state()
            runner.assign(state, event, wm, out)
            runner.close(state, event, wm, out)

    def advance_to(self, watermark_ms: int, device_id: str | None = None) -> Emissions:
        """Raise a device's (or every device's) watermark to close quiet windows."""
        out = Emissions()
        ids = [device_id] if device_id is not None else sorted(self._devices)
        for did in ids:
            device = self._devices.get(did)
            if device is None or device.last_event is None:
                continue
            device.forced_wm = max(device.forced_wm, watermark_ms)
            wm = max(device.max_ts - self._ooo, device.forced_wm)
            for runner in self._window_runners:
                state = device.tasks.get(runner.name)
                if state is not None:
                    runner.close(state, device.last_event, wm, out)
        return out

    # -- state ---------------------------------------------------------------------------

    def last_seq(self, device_id: str) -> int | None:
        """The last applied sequence number of a device (None if never seen)."""
        device = self._devices.get(device_id)
        return None if device is None or device.last_seq < 0 else device.last_seq

    def devices(self) -> list[str]:
        """Devices the engine holds state for, sorted."""
        return sorted(self._devices)

    def watermark(self, device_id: str) -> int | None:
        """A device's current watermark (None if never seen)."""
        device = self._devices.get(device_id)
        if device is None or device.last_event is None:
            return None
        return max(device.max_ts - self._ooo, device.forced_wm)

    # Snapshots are msgpack in the layout of ``walle.streams.state_codec``: loading one builds
    # plain data only, never runs code, and refuses (StateError) anything else.

    def snapshot(self) -> bytes:
        """The whole engine state (every device), as bytes."""
        if self._trim_buffers:
            for device in self._devices.values():
                device.trim_buffer()
        return state_codec.encode_engine(self._devices, self._fingerprint)

    @classmethod
    def restore(cls, app: App, blob: bytes) -> Engine:
        """An engine for ``app`` with the state of ``snapshot()``; StateError if it is not."""
        engine = cls(app)
        devices = state_codec.decode_engine(blob, engine._fingerprint, "engine snapshot")
        engine._devices = {device_id: DeviceState(*f) for device_id, f in devices.items()}
        return engine

    def snapshot_device(self, device_id: str) -> bytes:
        """One device's state, its last applied sequence number included."""
        device = self._device(device_id)
        if self._trim_buffers:
            device.trim_buffer()
        return state_codec.encode_device(device, self._fingerprint, f"device {device_id!r}")

    def restore_device(self, device_id: str, blob: bytes, where: str | None = None) -> None:
        """Load one device's state (as written by ``snapshot_device``); StateError if it is not.

        ``where`` names where the blob came from (a changelog topic, partition and offset)
        in the error message.
        """
        what = f"state of device {device_id!r}" + (f" at {where}" if where else "")
        fields = state_codec.decode_device(blob, self._fingerprint, what)
        self._devices[device_id] = DeviceState(*fields)

    def forget_device(self, device_id: str) -> None:
        """Drop a device's state from memory (a cloud worker that lost its partition)."""
        self._devices.pop(device_id, None)

"""Per-device engine state: msgpack snapshots (walle/streams/state_codec.py) against pickle.

The cloud worker snapshots every touched device once per batch and restores devices when
partitions are assigned. The baseline is what the engine did before the state codec: a
pickle of the device record (buffered events as plain tuples) with a version and app
fingerprint, measured in the same run over the same states: the example apps' three tasks
after 60,000 generated events of 40 devices. Best of 9 interleaved rounds.

    .venv/bin/python benchmarks/state_bench.py
"""

from __future__ import annotations

import pickle
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cloud_bench import bench_events, examples_app

from walle.streams import Engine
from walle.streams.engine import DeviceState
from walle.streams.events import Event

_ROUNDS = 300


def _pickle_device(device: DeviceState, fingerprint: str) -> bytes:
    record = dict(device.__dict__)
    record["buffer"] = [tuple(event) for event in device.buffer]
    return pickle.dumps({"version": 1, "fingerprint": fingerprint, "device": record}, protocol=5)


def _unpickle_device(blob: bytes) -> DeviceState:
    record = pickle.loads(blob)["device"]
    record["buffer"] = deque(Event._make(row) for row in record["buffer"])
    return DeviceState(**record)


def _per_device(run: Any, devices: list[str]) -> float:
    start = time.perf_counter()
    for _ in range(_ROUNDS):
        for device_id in devices:
            run(device_id)
    return (time.perf_counter() - start) / _ROUNDS / len(devices)


def main() -> None:
    app = examples_app()
    engine = Engine(app)
    engine.process_many(bench_events(60_000))
    devices = engine.devices()
    blobs = {d: engine.snapshot_device(d) for d in devices}  # the first call trims buffers
    states = engine._devices
    fingerprint = app.fingerprint
    pickles = {d: _pickle_device(states[d], fingerprint) for d in devices}
    target = Engine(examples_app())
    rows = {
        "snapshot msgpack": lambda d: engine.snapshot_device(d),
        "snapshot pickle": lambda d: _pickle_device(states[d], fingerprint),
        "restore msgpack": lambda d: target.restore_device(d, blobs[d]),
        "restore pickle": lambda d: _unpickle_device(pickles[d]),
    }
    best = dict.fromkeys(rows, float("inf"))
    for _ in range(9):
        for name, run in rows.items():
            best[name] = min(best[name], _per_device(run, devices))
    size = sum(map(len, blobs.values())) / len(blobs)
    print(f"{len(devices)} devices, {size:.0f} bytes of state per device (msgpack)")
    for what in ("snapshot", "restore"):
        ours, base = best[f"{what} msgpack"], best[f"{what} pickle"]
        print(f"{what:8s} msgpack {ours * 1e6:5.1f} us/device, pickle {base * 1e6:5.1f} "
              f"us/device: {base / ours:.2f}x pickle's speed")  # fmt: skip


if __name__ == "__main__":
    main()

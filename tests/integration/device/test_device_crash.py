"""SIGKILL the device runtime at random points of a replay; the result must not change.

A child process replays a log from the last checkpoint; the parent kills it at a random
moment (>= 20 times), restarts it, and finally compares the feature store, late events
and dead letters with those of an uninterrupted run: equal, with nothing lost or doubled.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from walle.streams.app import load_app
from walle.streams.device import DeviceRuntime, EventLog
from walle.streams.events import write_jsonl
from walle.streams.generator import generate_events

HERE = Path(__file__).parent
APP = HERE / "device_crash_app.py"
CHILD = HERE / "device_crash_child.py"
KILLS = 20


def _log_with_late_events(path: Path) -> Path:
    events = generate_events(30, 11, seed=7)
    shifted = [
        event._replace(ts=event.ts - 300_000) if index % 97 == 0 else event
        for index, event in enumerate(events)
    ]
    write_jsonl(path, shifted)
    return path


def _results(db: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(db)
    try:
        return {
            "features": conn.execute("SELECT key, output FROM features ORDER BY key").fetchall(),
            "late": conn.execute(
                "SELECT task, device_id, seq, reason, raw FROM late_events ORDER BY id"
            ).fetchall(),
            "dead": conn.execute(
                "SELECT source, location, task, reason, raw FROM dead_letters ORDER BY id"
            ).fetchall(),
            # the newest state row carries the offset when the checkpoint row was not rewritten
            "checkpoint": conn.execute(
                "SELECT MAX(log_offset) FROM (SELECT log_offset FROM runtime_checkpoints"
                " UNION ALL SELECT log_offset FROM runtime_state)"
            ).fetchall(),
        }
    finally:
        conn.close()


def _start(db: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(APP), str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigkill_at_random_points_changes_nothing(tmp_path: Path) -> None:
    log = _log_with_late_events(tmp_path / "log.jsonl")
    reference = tmp_path / "reference.db"
    with DeviceRuntime(load_app(APP), reference) as runtime:
        runtime.store.ingest_jsonl(log)
        began = time.perf_counter()
        runtime.run(finish=True)
        seconds = time.perf_counter() - began
    expected = _results(reference)
    total = int(expected["checkpoint"][0][0])  # the log's last offset
    assert expected["late"] and expected["dead"] and len(expected["features"]) > 1000

    crashed = tmp_path / "crashed.db"
    with EventLog(crashed) as target:
        target.ingest_jsonl(log)
    rng = random.Random(20261127)
    kills, deadline = 0, time.monotonic() + 180  # generous: start-ups are slow under load
    while time.monotonic() < deadline:
        child = _start(crashed)
        assert child.stdout is not None
        ready = child.stdout.readline().split()
        assert ready[0] == "ready"
        if kills < KILLS:
            # somewhere in the first half of what is left, so the kill lands mid-replay
            # however fast this machine replays (a fixed window let fast replays finish)
            left = max(0, total - int(ready[1])) / total
            time.sleep(rng.uniform(0, 0.5 * left * seconds))
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
                child.wait(timeout=10)
                kills += 1
                continue
        rest, _ = child.communicate(timeout=60)
        assert child.returncode == 0, rest
        break
    assert kills >= KILLS
    assert _results(crashed) == expected

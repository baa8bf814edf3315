"""Issue 18 item 3 on a real file-size limit: live appends to the device runtime fill the
"disk" (RLIMIT_FSIZE, in a forked child, so every write past the limit fails as on a full
small filesystem), get backpressure, and recover with nothing lost once space returns."""

from __future__ import annotations

import json
import os
import resource
import signal
import statistics
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any

from tests._visits import padded_visits, visits_app
from tests._wait import wait_until
from walle.errors import StorageError
from walle.streams.device import DeviceRuntime, DurabilityPolicy, LogSettings, RuntimeSettings
from walle.streams.engine import Engine
from walle.streams.events import Event

LIMIT_BYTES = 256 * 1024
BOUND = 128


def _settings() -> RuntimeSettings:
    policy = DurabilityPolicy(
        commit_every_events=16,
        commit_every_ms=20,
        max_buffered_events=BOUND,
        retry_after_ms=20,
        max_retry_after_ms=100,
    )
    return RuntimeSettings(log=LogSettings(durability=policy))


def _append_retrying(runtime: DeviceRuntime, event: Event, deadline_s: float = 10.0) -> None:
    until = time.monotonic() + deadline_s
    while True:
        try:
            runtime.append(event)
            return
        except StorageError:
            assert time.monotonic() < until, "appends still refused after space returned"
            time.sleep(0.005)


def _scenario(path: Path, events: list[Event]) -> dict[str, Any]:
    """Fill the limit with live appends, give the space back, append the rest; report."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT_BYTES, hard))
    wal = Path(f"{path}-wal")
    result: dict[str, Any] = {"most_pending": 0, "refusal_us": []}
    with DeviceRuntime(visits_app(), path, settings=_settings()) as runtime:
        runtime.start_live()
        held: deque[Event] = deque()  # refused events, kept by the caller in order
        for event in events:
            held.append(event)
            while held:  # the caller offers its oldest event again at each new one
                started = time.perf_counter()
                try:
                    runtime.append(held[0])
                except StorageError as exc:
                    result["refusal_us"].append((time.perf_counter() - started) * 1e6)
                    result.setdefault("message", str(exc))
                    break
                held.popleft()
            result["most_pending"] = max(result["most_pending"], runtime.store.pending)
        result["held"] = len(held)
        result["logged_while_full"] = runtime.store.count()
        result["wal_while_full"] = wal.stat().st_size
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space returns
        wait_until(  # the autoflush retries alone
            lambda: runtime.store.commit_error is None, 10.0, "a clean commit", poll_s=0.005
        )
        result["wal_after_recovery"] = wal.stat().st_size
        for event in held:
            _append_retrying(runtime, event)
    return result


def _in_child(path: Path, events: list[Event]) -> dict[str, Any]:
    report = path.with_suffix(".json")
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            report.write_text(json.dumps(_scenario(path, events)))
            code = 0
        except BaseException:
            report.write_text(json.dumps({"error": traceback.format_exc()}))
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    result: dict[str, Any] = json.loads(report.read_text())
    assert os.WEXITSTATUS(status) == 0, result.get("error")
    return result


def test_live_appends_on_a_full_filesystem_get_backpressure_and_lose_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d.db"
    DeviceRuntime(visits_app(), path).close()  # schema written before the limit
    events = padded_visits(700)  # ~750 KB of events, three times the limit
    result = _in_child(path, events)

    assert result["held"] > 0, "the limit was never reached"
    assert result["most_pending"] <= BOUND  # bounded memory
    assert result["message"].startswith(f"{path}: event not logged: {BOUND} appended events")
    assert "I/O error" in result["message"]
    assert statistics.median(result["refusal_us"]) < 1_000  # no commit retried per append
    assert result["wal_while_full"] > 0 and result["wal_after_recovery"] == 0

    with DeviceRuntime(visits_app(), path) as runtime:  # a fresh process's view: nothing lost
        assert [event for _, event in runtime.store.read()] == events
        assert runtime.store.dead_letters() == []
        expected = sorted(o.to_json() for o in Engine(visits_app()).process_many(events).outputs)
        assert sorted(text for _, text in runtime.features()) == expected
        assert runtime.committed_offset == len(events)

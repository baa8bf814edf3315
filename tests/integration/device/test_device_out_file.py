"""`walle replay --out` after a SIGKILL mid-replay and a resumed run: the file equals the store.

The file is rewritten whole from the feature store at the end of each run (a temporary file
renamed over it), so a kill leaves the previous complete file, and the next run that
completes leaves exactly what the database holds.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from walle.streams.events import write_jsonl
from walle.streams.generator import generate_events

HERE = Path(__file__).parent
APP = HERE / "device_crash_app.py"
WALLE = str(Path(sys.executable).with_name("walle"))
FIRST_RUN = 5_000  # events replayed by the first, completed run


def _replay(log: Path, db: Path, out: Path, *extra: str) -> list[str]:
    return [WALLE, "--log-level", "error", "replay", str(APP), str(log), "--db", str(db),
            "--out", str(out), *extra]  # fmt: skip


def _checkpoint_offset(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        # the newest state row carries the offset when the checkpoint row was not rewritten
        row = conn.execute(
            "SELECT MAX(log_offset) FROM (SELECT log_offset FROM runtime_checkpoints"
            " UNION ALL SELECT log_offset FROM runtime_state)"
        ).fetchone()
    except sqlite3.OperationalError:  # not created yet
        row = None
    finally:
        conn.close()
    return 0 if row is None or row[0] is None else int(row[0])


def _store(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [row[0] for row in conn.execute("SELECT output FROM features ORDER BY rowid")]
    finally:
        conn.close()


def _ok(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_out_file_equals_the_store_after_a_kill_and_a_resume(tmp_path: Path) -> None:
    log, db, out = tmp_path / "log.jsonl", tmp_path / "device.db", tmp_path / "out.jsonl"
    events = generate_events(80, 20, seed=11)
    write_jsonl(log, events)

    _ok(_replay(log, db, out, "--until", str(FIRST_RUN)))
    first = out.read_text()
    assert first.splitlines() == _store(db) and first

    # resume, and kill once the run has committed a checkpoint of its own, mid-replay
    child = subprocess.Popen(
        _replay(log, db, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while _checkpoint_offset(db) <= FIRST_RUN and time.monotonic() < deadline:
            assert child.poll() is None, "the replay finished before a kill could land"
            time.sleep(0.01)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    killed_at = _checkpoint_offset(db)
    assert FIRST_RUN < killed_at < len(events)
    assert out.read_text() == first  # the previous complete file, not a part of a new one
    assert len(_store(db)) > len(first.splitlines())

    _ok(_replay(log, db, out))
    resumed = out.read_text().splitlines()
    assert resumed == _store(db)

    reference = tmp_path / "reference.jsonl"
    _ok(_replay(log, tmp_path / "reference.db", reference))
    assert resumed == reference.read_text().splitlines()
    assert len(resumed) == len(set(resumed)) > len(first.splitlines())

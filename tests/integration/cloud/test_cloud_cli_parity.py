"""Equal outputs by default, as a user types it: `walle replay LOG` on the device and
`walle cloud produce LOG` + `walle cloud worker` in the cloud give the same outputs, byte
for byte, with the defaults on both (the device closes open windows at the end of a
complete log; the producer marks each device's end, on which the worker does the same)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
WALLE = str(Path(sys.executable).with_name("walle"))


def _walle(*args: str) -> str:
    done = subprocess.run([WALLE, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _outputs_so_far(url: str, topic: str) -> list[str]:
    """The output topic's records as JSON lines; none while the worker, still starting,
    has not created the topic yet (a slow start on a busy machine is not a failure)."""
    done = subprocess.run(
        [WALLE, "cloud", "outputs", "--broker", url, "--topic", topic, "--json",
         "--limit", "1000000"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if done.returncode != 0 and "does not exist" in done.stderr:
        return []
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("name", ["item_page_view", "clicks_per_category"])
def test_device_and_cloud_outputs_are_equal_with_default_flags(name, broker, tmp_path) -> None:
    app, log = EXAMPLES / f"{name}.py", EXAMPLES / f"{name}.jsonl"
    device_out = tmp_path / "device.jsonl"
    _walle("replay", str(app), str(log), "--out", str(device_out))
    device = sorted(device_out.read_text().splitlines())
    assert device

    run = uuid.uuid4().hex[:8]
    events, outputs = f"events-{run}", f"outputs-{run}"
    _walle("cloud", "produce", str(log), "--broker", broker.url, "--topic", events)
    worker = subprocess.Popen(
        [WALLE, "cloud", "worker", str(app), "--broker", broker.url, "--app-id", f"cli-{run}",
         "--input-topic", events, "--output-topic", outputs,
         "--dead-letter-topic", f"dead-{run}", "--late-topic", f"late-{run}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        cloud: list[str] = []
        deadline = time.monotonic() + 90
        while len(cloud) < len(device) and time.monotonic() < deadline:
            assert worker.poll() is None, worker.stderr.read().decode()  # type: ignore[union-attr]
            time.sleep(0.5)
            cloud = _outputs_so_far(broker.url, outputs)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    assert sorted(cloud) == device


def test_the_worker_shows_its_progress_on_a_terminal(broker, tmp_path) -> None:
    """`walle cloud worker` in a terminal keeps a status line: events, rate, outputs, lag."""
    import pty
    import select

    app, log = EXAMPLES / "item_page_view.py", EXAMPLES / "item_page_view.jsonl"
    run = uuid.uuid4().hex[:8]
    _walle("cloud", "produce", str(log), "--broker", broker.url, "--topic", f"events-{run}")
    master, slave = pty.openpty()
    worker = subprocess.Popen(
        [WALLE, "cloud", "worker", str(app), "--broker", broker.url, "--app-id", f"tty-{run}",
         "--input-topic", f"events-{run}", "--output-topic", f"outputs-{run}",
         "--dead-letter-topic", f"dead-{run}", "--late-topic", f"late-{run}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave,
        start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    screen = b""
    try:
        deadline = time.monotonic() + 60
        while b"(caught up)" not in screen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                screen += os.read(master, 65536)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
        os.close(master)
    text = screen.decode("utf-8", "replace")
    assert "(caught up)" in text and "events (" in text and "outputs" in text, text[-2000:]
    assert worker.returncode == 0, text[-2000:]

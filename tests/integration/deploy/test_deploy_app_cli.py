"""Deploying a walle App from the shell, as a user types it (each command a subprocess).

Keys, a bundle whose ``task.yaml`` names an ``app`` entry point, ``walle deploy bundle sign``,
``walle deploy store``, ``walle deploy gateway``, ``walle deploy agent --db DEVICE.db`` (the App's
tasks join a device runtime over that database), ``walle release``; events reach the
device's event log through ``walle run DEVICE_APP --log NEW.jsonl --db DEVICE.db`` and the
deployed task's outputs appear in the device's feature store. A bundle whose App raises at
import is rolled back: the agent logs why and ``walle deploy status`` shows the reason.
Once a command is checked that way, a later test makes the same set-up (keys, signed bundles)
in-process: process starts are most of these tests' time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from walle.deploy.testing import write_app_task_dir, write_trust

_WALLE = [sys.executable, "-m", "walle.cli"]
DEADLINE_S = 40.0

_DEVICE_APP = """from walle.streams import App, PageWindow

app = App("device")


@app.task(window=PageWindow("item"))
def item_events(window):
    return {"events": len(window.events)}
"""


def _ok(*args: object) -> str:
    done = subprocess.run([*_WALLE, *map(str, args)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"walle {args[0]}: rc {done.returncode}\n{done.stderr}"
    return done.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _spawn(args: list[object], stderr: Path, port: int | None = None) -> subprocess.Popen:
    with stderr.open("wb") as sink:
        proc = subprocess.Popen([*_WALLE, *map(str, args)], stderr=sink)
    deadline = time.monotonic() + 20
    while port is not None and time.monotonic() < deadline:
        assert proc.poll() is None, f"walle {args}: exited early\n{stderr.read_text()}"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    if port is not None:
        proc.kill()
        pytest.fail(f"walle {args[0]} did not listen on {port}")
    return proc


def _serve_store_and_gateway(
    tmp_path: Path, channel: tuple[str, ...]
) -> tuple[str, str, list[subprocess.Popen]]:
    """`walle deploy store` and `walle deploy gateway` on free ports: their URLs and processes.

    The gateway trusts ``keys/root.json`` (written here around ``keys/release.pub``) and
    checks reports with an enrolment secret; device phone-1 (home ``home``) is enrolled.
    """
    root = write_trust(tmp_path / "keys")
    secret = tmp_path / "enrolment.secret"
    _ok("deploy", "root", "enrol-secret", "--out", secret)
    _ok(
        "deploy",
        "root",
        "enrol",
        "phone-1",
        "--enrolment-secret",
        secret,
        "--home",
        tmp_path / "home",
    )
    verified = ("--trust", root, "--enrolment-secret", secret)
    store_port, gateway_port = _free_port(), _free_port()
    servers = [
        _spawn(["deploy", "store", "--bundles-dir", tmp_path / "store", "--port", store_port],
               tmp_path / "store.log", store_port),
        _spawn(["deploy", "gateway", *channel, *verified, "--port", gateway_port],
               tmp_path / "gateway.log", gateway_port),
    ]  # fmt: skip
    return f"http://127.0.0.1:{store_port}", f"http://127.0.0.1:{gateway_port}", servers


def _until(what: str, probe, log: Path | None = None):
    deadline = time.monotonic() + DEADLINE_S
    while not (found := probe()):
        if time.monotonic() > deadline:
            extra = f"\nagent log:\n{log.read_text()}" if log else ""
            raise AssertionError(f"timed out waiting for {what}{extra}")
        time.sleep(0.1)
    return found


def _features(db: Path, task: str) -> list[dict]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute(
            "SELECT output FROM features WHERE task = ? ORDER BY rowid", (task,)
        ).fetchall()
    except sqlite3.OperationalError:  # the runtime has not created its tables yet
        return []
    finally:
        conn.close()
    return [json.loads(row[0]) for row in rows]


def _visit(path: Path, first_seq: int, clicks: int) -> Path:
    kinds = ["page_enter", *["click"] * clicks, "page_exit"]
    with path.open("w") as out:
        for n, kind in enumerate(kinds):
            seq = first_seq + n
            event = {"device_id": "phone-1", "seq": seq, "ts": 1_000_000 + 10 * seq,
                     "event": kind, "page": "item", "args": {}}  # fmt: skip
            out.write(json.dumps(event) + "\n")
    return path


def _broken_task_dir(root: Path) -> Path:
    task_dir = root / "broken-v1"
    task_dir.mkdir(parents=True)
    spec = {"task": "broken", "version": 1, "entry_points": {"app": "app.py:app"}}
    (task_dir / "task.yaml").write_text(yaml.safe_dump(spec))
    (task_dir / "app.py").write_text('raise RuntimeError("no camera on this device")\n')
    return task_dir


@pytest.fixture
def prefix(topics) -> str:
    return topics.releases.removesuffix(".releases")


def test_agent_runs_a_released_app_in_the_device_runtime_and_reports_rollbacks(
    tmp_path, broker, prefix
):
    _ok("deploy", "keygen", "--out", tmp_path / "keys")
    key = tmp_path / "keys" / "release.key"
    bundles = {}
    for name, task_dir in (
        ("clicks", write_app_task_dir(tmp_path / "src", "clicks", 1)),
        ("broken", _broken_task_dir(tmp_path / "src")),
    ):
        built = _ok("deploy", "bundle", "build", task_dir, "--out", tmp_path / "dist").split()[0]
        _ok("deploy", "bundle", "sign", built, "--key", key)
        bundles[name] = built
    attrs = tmp_path / "attrs.json"
    attrs.write_text(json.dumps({"device_id": "phone-1", "os": "android"}))
    device_app = tmp_path / "device_app.py"
    device_app.write_text(_DEVICE_APP)
    db = tmp_path / "device.db"
    channel = ("--broker", broker.url, "--topic-prefix", prefix)
    agent_log = tmp_path / "agent.log"
    store_url, gateway_url, servers = _serve_store_and_gateway(tmp_path, channel)
    procs = list(servers)
    agent = _spawn(["--log-level", "info", "deploy", "agent", "--device-attrs", attrs,
                    "--gateway", gateway_url, "--home", tmp_path / "home",
                    "--trust", tmp_path / "keys", "--db", db], agent_log)  # fmt: skip
    procs.append(agent)
    try:
        _ok("deploy", "release", bundles["clicks"], *channel, "--store", store_url, "--key", key)
        _until("activation", lambda: "activated in the runtime" in agent_log.read_text(), agent_log)

        _ok("run", device_app, "--log", _visit(tmp_path / "a.jsonl", 1, 2), "--db", db)
        got = _until("a deployed output", lambda: _features(db, "item_clicks"), agent_log)
        assert got[0]["value"] == {"clicks": 2, "version": 1}
        _ok("run", device_app, "--log", _visit(tmp_path / "b.jsonl", 5, 3), "--db", db)
        got = _until("a second output", lambda: len(_features(db, "item_clicks")) == 2 and
                     _features(db, "item_clicks"), agent_log)  # fmt: skip
        assert [o["value"]["clicks"] for o in got] == [2, 3]
        assert _features(db, "item_events"), "the device's own app ran too"

        _ok("deploy", "release", bundles["broken"], *channel, "--store", store_url, "--key", key)
        status = _until(
            "the rollback in status",
            lambda: "rolled_back" in (out := _ok("deploy", "status", "broken", *channel)) and out,
            agent_log,
        )
        assert "no camera on this device" in status, status
        assert "devices run: nothing on 1 (of 1 reporting)" in status, status
        log = agent_log.read_text()
        assert "rolled back" in log and "no camera on this device" in log, log
        assert "installed" in log and "task=clicks" in log, log

        # the deployed task keeps running after the other task's rollback
        _ok("run", device_app, "--log", _visit(tmp_path / "c.jsonl", 10, 1), "--db", db)
        _until("a third output", lambda: len(_features(db, "item_clicks")) == 3, agent_log)

        agent.send_signal(signal.SIGINT)
        assert agent.wait(timeout=20) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def test_rollback_to_a_version_every_device_rejected_is_refused_and_status_says_what_runs(
    tmp_path, broker, prefix
):
    from walle.deploy.bundle import build_bundle
    from walle.deploy.notification import sign_bundle
    from walle.deploy.signing import load_private_key, new_key
    from walle.deploy.testing import write_task_dir

    # keys and signed bundles in-process: the test above makes them through `walle` already
    key = new_key(tmp_path / "keys", "release")[0]
    bundles = []
    for version, health in ((1, "fail"), (2, "ok")):
        task_dir = write_task_dir(tmp_path / "src", "demo", version, health=health)
        built = build_bundle(task_dir, tmp_path / "dist").path
        sign_bundle(built, load_private_key(key))
        bundles.append(built)
    attrs = tmp_path / "attrs.json"
    attrs.write_text(json.dumps({"device_id": "phone-1"}))
    channel = ("--broker", broker.url, "--topic-prefix", prefix)
    agent_log = tmp_path / "agent.log"
    store_url, gateway_url, servers = _serve_store_and_gateway(tmp_path, channel)
    procs = [
        *servers,
        _spawn(["deploy", "agent", "--device-attrs", attrs, "--gateway", gateway_url,
                "--home", tmp_path / "home", "--trust", tmp_path / "keys"], agent_log),
    ]  # fmt: skip

    def status() -> str:
        return _ok("deploy", "status", "demo", *channel)

    try:
        _ok("deploy", "release", bundles[0], *channel, "--store", store_url, "--key", key)
        _until("v1 rolled back", lambda: "rolled_back" in status(), agent_log)
        _ok("deploy", "release", bundles[1], *channel, "--store", store_url, "--key", key)
        _until("v2 installed", lambda: "devices run: v2 on 1" in status(), agent_log)

        done = subprocess.run(
            [*_WALLE, "deploy", "rollback", "demo", *channel, "--key", str(key)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, done.stderr
        assert "every device that tried demo v1 rejected it" in done.stderr
        assert "--force" in done.stderr and "\n" not in done.stderr.strip()
        assert status().startswith("release demo v2 at 100%\n")

        assert _ok("deploy", "rollback", "demo", "--force", *channel, "--key", key).strip() == (
            "rolled back demo to v1"
        )
        shown = _until(
            "the device's answer", lambda: "failed on this device before" in (s := status()) and s
        )
        lines = shown.splitlines()
        assert lines[0] == "release demo v1 at 100% (rollback)"
        assert lines[1].startswith("devices run: v2 on 1 (of 1 reporting); not all run v1")
        assert "v2 keeps running" in shown
        assert "rolled_back" not in shown, shown
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

"""The deploy commands run for real: ``python -m walle.cli ...`` subprocesses against the
session broker, a ``walle deploy store`` and a ``walle deploy gateway`` process, and a
``walle deploy agent`` process. Exit codes: 0 ok, 1 a walle error (one line), 2 bad usage.
Every command is checked through a real process at least once; set-up that repeats a command
already checked (more keys, more bundles) runs in-process, since process starts dominate.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._wait import wait_until
from walle.deploy.bundle import build_bundle
from walle.deploy.install import Installer
from walle.deploy.notification import sign_bundle
from walle.deploy.policy import ReleasePolicy, Stages, in_stage_band
from walle.deploy.signing import load_private_key, new_key
from walle.deploy.testing import write_task_dir

_WALLE = [sys.executable, "-m", "walle.cli"]


def _skipped(agent_log: Path, version: int) -> bool:
    """Whether the agent logged that release ``version`` does not target it."""
    for line in agent_log.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if (
            record.get("event") == "release not for this device"
            and record.get("version") == version
        ):
            return True
    return False


def _walle(*args: object, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_WALLE, *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def _ok(*args: object) -> str:
    done = _walle(*args)
    assert done.returncode == 0, f"walle {args[0]}: rc {done.returncode}\n{done.stderr}"
    return done.stdout


def _fails(code: int, *args: object) -> str:
    done = _walle(*args)
    assert done.returncode == code, f"walle {args[0]}: rc {done.returncode}\n{done.stderr}"
    return done.stderr.strip()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _spawn(args: list[object], port: int | None = None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([*_WALLE, *map(str, args)], stderr=subprocess.DEVNULL)
    if port is None:
        return proc
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"walle {args[0]} exited early"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"walle {args[0]} did not listen on {port}")


def _built_and_signed(src: Path, dist: Path, version: int, key: Path) -> str:
    """Bundle demo v``version``, signed with ``key``, in-process: set-up, not what is tested.

    Each CLI behaviour (``bundle build``, ``bundle sign``, ``keygen``) is checked once
    through a real ``walle`` process; repeating it for every bundle or key only adds process
    starts (~0.8 s each) to the test.
    """
    built = build_bundle(write_task_dir(src, "demo", version), dist)
    sign_bundle(built.path, load_private_key(key))
    return str(built.path)


def _staged_policy(path: Path, device_id: str, first_stage: bool) -> Path:
    """A 50% -> 100% policy whose salt puts ``device_id`` in (or out of) the first stage."""
    for n in range(1000):
        policy = ReleasePolicy(stages=Stages(percentages=(50, 100)), salt=f"cli-{n}")
        if in_stage_band(device_id, policy, 0) == first_stage:
            path.write_text(f"stages:\n  percentages: [50, 100]\nsalt: cli-{n}\n")
            return path
    raise AssertionError("no salt found")


def _wait_active(home: Path, version: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (home / "tasks").is_dir():
            record = Installer(home).active("demo")
            if record is not None and record.version == version:
                return
        time.sleep(0.05)
    raise TimeoutError(f"agent did not activate demo v{version}")


@pytest.fixture
def prefix(topics) -> str:
    return topics.releases.removesuffix(".releases")


def test_release_agent_status_rollback_pause_advance(tmp_path, broker, prefix):
    out = _ok("deploy", "keygen", "--out", tmp_path / "keys", "--name", "ops")
    assert out.startswith("key ") and "ops.pub" in out
    key = tmp_path / "keys" / "ops.key"
    task_dir = write_task_dir(tmp_path / "src", "demo", 1)
    built = _ok("deploy", "bundle", "build", task_dir, "--out", tmp_path / "dist").split()[0]
    assert _ok("deploy", "bundle", "sign", built, "--key", key).strip() == f"{built}.sig"
    bundles = [built]
    bundles += [_built_and_signed(tmp_path / "src", tmp_path / "dist", v, key) for v in (2, 3, 4)]
    keys = tmp_path / "keys"
    for name in ("root", "rollout"):
        new_key(keys, name)
    root = keys / "root.json"
    roles = ("--root-key", keys / "root.pub", "--release-key", keys / "ops.pub")
    _ok("deploy", "root", "init", *roles, "--rollout-key", keys / "rollout.pub", "--out", root)
    signed = _ok("deploy", "root", "sign", root, "--key", keys / "root.key").strip()
    assert signed == "root v1: 1 signature(s)"
    secret = tmp_path / "enrolment.secret"
    _ok("deploy", "root", "enrol-secret", "--out", secret)
    home = tmp_path / "home"
    _ok("deploy", "root", "enrol", "phone-1", "--enrolment-secret", secret, "--home", home)
    verified = ("--trust", root, "--enrolment-secret", secret)
    attrs = tmp_path / "attrs.json"
    attrs.write_text(json.dumps({"device_id": "phone-1", "os": "android"}))
    later = _staged_policy(tmp_path / "later.yaml", "phone-1", first_stage=False)
    first = _staged_policy(tmp_path / "first.yaml", "phone-1", first_stage=True)
    store_port, gateway_port = _free_port(), _free_port()
    store_url, gateway_url = (f"http://127.0.0.1:{p}" for p in (store_port, gateway_port))
    channel = ("--broker", broker.url, "--topic-prefix", prefix)
    error = _fails(2, "deploy", "gateway", *channel, *verified, "--rollout-key", key)
    assert "--rollout-key is gone: the gateway faces the devices" in error
    procs = [
        _spawn(
            ["deploy", "store", "--bundles-dir", tmp_path / "store", "--port", store_port],
            store_port,
        ),
        _spawn(["deploy", "gateway", *channel, *verified, "--port", gateway_port], gateway_port),
    ]
    watch = ["deploy", "rollout", *channel, *verified, "--key", keys / "rollout.key"]
    procs.append(_spawn(watch))
    agent_log = tmp_path / "agent.log"  # JSON lines: the test waits on what the agent decided
    with agent_log.open("wb") as log_file:
        agent = subprocess.Popen(
            [*_WALLE, "--log-level", "INFO", "--log-json", "deploy", "agent",
             "--device-attrs", attrs, "--gateway", gateway_url, "--home", home, "--trust", root],
            stderr=log_file,
        )  # fmt: skip
    try:
        out = _ok("deploy", "release", bundles[0], *channel, "--store", store_url, "--key", key)
        assert out.startswith("released demo v1 sha256=")
        _wait_active(home, 1)
        _ok("deploy", "release", bundles[1], *channel, "--store", store_url, "--key", key)
        _wait_active(home, 2)
        status = _ok("deploy", "status", "demo", *channel)
        assert status.splitlines()[0] == "release demo v2 at 100%"
        assert re.search(r"│\s*2\s*│\s*installed\s*│\s*1\s*│", status), status

        assert (
            _ok("deploy", "rollback", "demo", *channel, "--key", key).strip()
            == "rolled back demo to v1"
        )
        _wait_active(home, 1)
        assert _ok("deploy", "pause", "demo", *channel, "--key", key).strip() == "paused demo v1"
        assert "PAUSED: paused by hand" in _ok("deploy", "status", "demo", *channel)

        # phone-1 is not in the first 50%: nothing reports, the controller (its own process,
        # holding only the rollout key) holds, and a manual step takes the release to 100%
        _ok(
            "deploy",
            "release",
            bundles[2],
            "--policy",
            later,
            *channel,
            "--store",
            store_url,
            "--key",
            key,
        )
        wait_until(lambda: _skipped(agent_log, version=3), 20)  # seen, not for this device
        assert Installer(home).active("demo").version == 1
        out = _ok("deploy", "advance", "demo", *channel, "--key", key).strip()
        assert out == "advanced demo v3 to stage 2/2 (100%)"
        _wait_active(home, 3)
        error = _fails(1, "deploy", "advance", "demo", *channel, "--key", key)
        assert error == "error: demo v3 is already at its last stage (2)"
        once = ("deploy", "rollout", "--once", *channel, *verified, "--key", keys / "rollout.key")
        assert _ok(*once) == ""  # nothing due

        # phone-1 is in the first 50%: its authenticated report makes the controller advance
        _ok(
            "deploy",
            "release",
            bundles[3],
            "--policy",
            first,
            *channel,
            "--store",
            store_url,
            "--key",
            key,
        )
        _wait_active(home, 4)
        deadline = time.monotonic() + 20
        while "stage 2/2" not in (status := _ok("deploy", "status", "demo", *channel)):
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert status.splitlines()[0] == "release demo v4 stage 2/2 at 100%"

        agent.send_signal(signal.SIGINT)
        assert agent.wait(timeout=20) == 0
    finally:
        for proc in [agent, *procs]:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["deploy", "release"], "Missing argument 'BUNDLE'"),
        (["deploy", "status", "demo"], "Missing option '--broker'"),
        (
            ["deploy", "rollback", "demo", "--to", "two", "--broker", "kafka://x:1", "--key", "."],
            "'two' is not a valid integer",
        ),
        (
            [
                "deploy",
                "agent",
                "--gateway",
                "http://127.0.0.1:1",
                "--home",
                ".",
                "--trust",
                "nowhere",
                "--device-attrs",
                "nowhere.json",
            ],
            "does not exist",
        ),
        (["deploy", "rollout", "--bogus"], "No such option: --bogus"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(args, needle):
    assert needle in _fails(2, *args)


def test_walle_errors_exit_1_with_one_line(tmp_path, broker, prefix):
    key_dir = tmp_path / "keys"
    key = new_key(key_dir, "release")[0]  # what `walle deploy keygen --out key_dir` writes
    channel = ("--broker", broker.url, "--topic-prefix", prefix)
    unsigned = str(build_bundle(write_task_dir(tmp_path, "demo", 1), tmp_path).path)
    bad_policy = tmp_path / "bad.yaml"
    bad_policy.write_text("percentage: 150\n")
    bad_attrs = tmp_path / "attrs.json"
    bad_attrs.write_text('{"os": "android"}')
    attrs = tmp_path / "phone.json"
    attrs.write_text('{"device_id": "phone-1"}')
    cases = [
        (["deploy", "rollback", "nosuch", *channel, "--key", key], "has never been released"),
        (["deploy", "status", "nosuch", *channel], "has never been released"),
        (["deploy", "advance", "nosuch", *channel, "--key", key], "has never been released"),
        (["deploy", "status", "demo", "--broker", "http://127.0.0.1:1"], "expected kafka://"),
        (["deploy", "release", unsigned, *channel, "--store", "http://127.0.0.1:1",
          "--key", key], "bundle is not signed"),
        (["deploy", "release", unsigned, "--policy", bad_policy, *channel,
          "--store", "http://127.0.0.1:1", "--key", key], "field percentage"),
        (["deploy", "agent", "--device-attrs", bad_attrs, "--gateway", "http://127.0.0.1:1",
          "--home", tmp_path / "h", "--trust", key_dir], "bad device attributes"),
        (["deploy", "keygen", "--out", key_dir], "refusing to overwrite"),
        # a trust directory of .pub files (before roles): what to do instead, not silent trust
        (["deploy", "agent", "--device-attrs", attrs, "--gateway", "http://127.0.0.1:1",
          "--home", tmp_path / "h", "--trust", key_dir], "no root metadata (root.json) found"),
        (["deploy", "gateway", *channel, "--trust", key_dir, "--enrolment-secret", key],
         "walle deploy root init --root-key"),
    ]  # fmt: skip
    for args, needle in cases:
        message = _fails(1, *args)
        assert message.startswith("error: ") and needle in message, (args, message)
        assert "\n" not in message, (args, message)

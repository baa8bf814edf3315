"""Commands that only look change nothing: checked on the embedded broker and real files.

`walle deploy status` and `walle cloud outputs` leave the broker's topics and every
consumer group's committed offsets as they were (status used to create the channel's
topics); `walle device late` and `deadletters` leave a device database's bytes and mtime
alone; `walle plan` writes nothing but --out (importing the App wrote `__pycache__`).
Each runs as the real console entry point, in a subprocess.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests._wait import wait_until
from walle.deploy.testing import write_task_dir, write_trust
from walle.kafka import EmbeddedBroker

ROOT = Path(__file__).resolve().parents[3]
_WALLE = [sys.executable, "-m", "walle.cli"]


def _walle(*args: object, code: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(
        [*_WALLE, *map(str, args)], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == code, done.stdout + done.stderr
    return done


def _broker_state(broker: EmbeddedBroker) -> tuple[list[str], dict[str, Any]]:
    """Every topic, and every consumer group's committed offsets."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        groups = sorted(group["group_id"] for group in admin.list_groups())
        offsets = admin.list_group_offsets(groups) if groups else {}
        return sorted(admin.list_topics()), offsets
    finally:
        admin.close()


def _file_state(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), stat.st_size, stat.st_mtime_ns


def _tree(folder: Path) -> dict[str, tuple[str, int, int]]:
    return {str(p.relative_to(folder)): _file_state(p) for p in folder.rglob("*") if p.is_file()}


def test_deploy_status_creates_no_topic(broker: EmbeddedBroker, tmp_path: Path) -> None:
    prefix = f"ro-{uuid.uuid4().hex[:10]}"
    channel = ("--broker", broker.url, "--topic-prefix", prefix)
    before = _broker_state(broker)
    error = _walle("deploy", "status", "demo", *channel, code=1).stderr
    assert "task 'demo' has never been released" in error and f"{prefix}.releases" in error
    assert _broker_state(broker) == before
    assert not [t for t in before[0] if t.startswith(prefix)]

    keys = write_trust(tmp_path / "keys").parent
    bundle = _signed_bundle(tmp_path, keys / "release.key")
    port = _free_port()
    store = subprocess.Popen(
        [*_WALLE, "deploy", "store", "--bundles-dir", str(tmp_path / "store"), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: _listening(port), 30, "the bundle store")
        _walle("deploy", "release", bundle, *channel, "--store", f"http://127.0.0.1:{port}",
               "--key", keys / "release.key")  # fmt: skip
    finally:
        store.terminate()
        store.wait(timeout=30)
    released = _broker_state(broker)
    shown = _walle("deploy", "status", "demo", *channel).stdout
    assert shown.splitlines()[0] == "release demo v1 at 100%"
    assert "no device has reported yet" in shown
    assert _broker_state(broker) == released


def test_cloud_outputs_creates_no_topic_and_commits_nothing(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    topic, missing = f"ro-out-{uuid.uuid4().hex[:10]}", f"ro-none-{uuid.uuid4().hex[:10]}"
    log = tmp_path / "log.jsonl"
    _walle("device", "generate", log, "--devices", "3", "--sessions", "1")
    _walle("cloud", "produce", log, "--broker", broker.url, "--topic", topic)
    before = _broker_state(broker)
    printed = _walle("cloud", "outputs", "--broker", broker.url, "--topic", topic, "--json")
    assert printed.stdout.strip()
    error = _walle("cloud", "outputs", "--broker", broker.url, "--topic", missing, code=1)
    assert f"topic {missing!r} does not exist" in error.stderr
    assert _broker_state(broker) == before


@pytest.fixture
def device_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A device database a replay wrote, with late events and dead letters in it."""
    folder = tmp_path_factory.mktemp("device")
    log, db = folder / "log.jsonl", folder / "device.db"
    _walle("device", "generate", log, "--devices", "5", "--late", "0.2", "--seed", "3")
    with log.open("a") as out:
        out.write("not json\n")
    _walle("replay", ROOT / "examples" / "clicks_per_category.py", log, "--db", db)
    return db


@pytest.mark.parametrize("command", ["late", "deadletters"])
def test_device_listings_leave_the_database_alone(device_db: Path, command: str) -> None:
    before = _file_state(device_db)
    listed = _walle("device", command, "--db", device_db, "--json").stdout.splitlines()
    assert listed, f"the fixture should hold {command} rows"
    _walle("device", command, "--db", device_db)
    assert _file_state(device_db) == before


def test_plan_writes_nothing_but_out(tmp_path: Path) -> None:
    app = tmp_path / "app" / "shop.py"
    app.parent.mkdir()
    app.write_bytes((ROOT / "examples" / "search_to_cart.py").read_bytes())
    before = _tree(tmp_path)
    assert "fingerprint" in _walle("plan", app).stdout
    assert _tree(tmp_path) == before
    _walle("plan", app, "--format", "dot", "--out", tmp_path / "shop.dot")
    assert set(_tree(tmp_path)) == {*before, "shop.dot"}


def _signed_bundle(tmp_path: Path, key: Path) -> Path:
    task_dir = write_task_dir(tmp_path / "src", "demo", 1)
    built = _walle("deploy", "bundle", "build", task_dir, "--out", tmp_path / "dist")
    bundle = Path(built.stdout.split()[0])
    _walle("deploy", "bundle", "sign", bundle, "--key", key)
    return bundle


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0

"""Bad local state at start-up is repaired or ignored with a warning; the agent starts.

A version directory deleted under a live pointer, a truncated ``failed.json`` and an
unreadable ``active.json`` each stopped the agent at start or blocked every later install.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

from structlog.testing import capture_logs

from walle.deploy.agent import Agent, AgentSettings
from walle.deploy.bundle import build_bundle, open_bundle, sha256_hex
from walle.deploy.container import TaskContainer
from walle.deploy.install import Installer
from walle.deploy.policy import DeviceAttrs
from walle.deploy.testing import write_task_dir


def _install(installer: Installer, tmp_path: Path, task: str, version: int) -> str:
    """Unpack and activate ``task`` v``version`` directly (start-up checks no signature)."""
    built = build_bundle(write_task_dir(tmp_path / "src", task, version), tmp_path / "out")
    raw = built.path.read_bytes()
    installer.activate(task, installer.unpack(open_bundle(raw), sha256_hex(raw)))
    return sha256_hex(raw)


def _start(home: Path) -> tuple[Agent, list[dict]]:
    """Start an agent on ``home`` (no gateway needed) and return it with its log lines."""

    async def scenario() -> Agent:
        settings = AgentSettings(gateway_url="http://127.0.0.1:9", home=home)
        # start() touches no signature: no trust store is needed
        agent = Agent(DeviceAttrs(device_id="d"), settings, None, TaskContainer())  # type: ignore[arg-type]
        await agent.start()
        await agent.close()
        return agent

    with capture_logs() as logs:
        agent = asyncio.run(asyncio.wait_for(scenario(), 10))
    return agent, logs


def _events(logs: list[dict], level: str = "warning") -> list[str]:
    return [line["event"] for line in logs if line["log_level"] == level]


def test_missing_active_version_directory_falls_back_to_the_previous(tmp_path):
    installer = Installer(tmp_path / "home")
    _install(installer, tmp_path, "demo", 1)
    _install(installer, tmp_path, "demo", 2)
    _install(installer, tmp_path, "other", 1)
    shutil.rmtree(installer.path_of("demo", installer.active("demo")))
    agent, logs = _start(installer.home)
    assert agent.host.running == {"demo": 1, "other": 1}
    assert installer.active("demo").version == 1
    assert "active version directory missing: falling back to the previous version" in _events(logs)


def test_missing_active_version_without_previous_starts_with_nothing(tmp_path):
    installer = Installer(tmp_path / "home")
    _install(installer, tmp_path, "demo", 1)
    _install(installer, tmp_path, "other", 3)
    shutil.rmtree(installer.path_of("demo", installer.active("demo")))
    agent, logs = _start(installer.home)
    assert agent.host.running == {"other": 3}
    assert installer.active("demo") is None  # free to install again
    assert any("directory missing" in event for event in _events(logs))


def test_truncated_failed_list_is_ignored_and_rewritten(tmp_path):
    installer = Installer(tmp_path / "home")
    _install(installer, tmp_path, "demo", 1)
    (installer.home / "failed.json").write_text('["abc", "de')  # torn by a crash
    agent, _logs = _start(installer.home)
    assert agent.host.running == {"demo": 1}
    with capture_logs() as more:
        assert installer.failed_digests() == set()
    assert _events(more) == ["unreadable failed-bundle list ignored"]
    installer.mark_failed("f" * 64)
    assert json.loads((installer.home / "failed.json").read_text()) == ["f" * 64]


def test_failed_list_of_the_wrong_shape_is_ignored(tmp_path):
    installer = Installer(tmp_path / "home")
    (installer.home / "failed.json").write_text('{"not": "a list"}')
    with capture_logs() as logs:
        assert installer.failed_digests() == set()
    assert _events(logs) == ["failed-bundle list is not a list of digests: ignored"]


def test_unreadable_active_pointer_set_aside_others_start(tmp_path):
    installer = Installer(tmp_path / "home")
    _install(installer, tmp_path, "demo", 1)
    _install(installer, tmp_path, "other", 2)
    pointer = installer.home / "tasks" / "demo" / "active.json"
    pointer.write_text('{"version": 1, "dig')
    agent, logs = _start(installer.home)
    assert agent.host.running == {"other": 2}
    assert agent.stats["restore_errors"] == 1
    assert "unreadable active pointer set aside" in _events(logs)
    assert (pointer.parent / "active.json.bad").read_text() == '{"version": 1, "dig'
    assert installer.active("demo") is None

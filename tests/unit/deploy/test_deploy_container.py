"""Task container: isolation, time budgets, health checks; agent restart re-activates."""

from __future__ import annotations

import asyncio
import time

import pytest

from walle.deploy.agent import Agent, AgentSettings
from walle.deploy.container import TaskContainer
from walle.deploy.errors import HealthCheckError
from walle.deploy.install import accept_release
from walle.deploy.policy import DeviceAttrs


def _install(installer, trust, built, release, version, **kwargs):
    bundle = built(version, **kwargs)
    record = accept_release(
        installer, trust, release(bundle), bundle.path.read_bytes(), now=time.time()
    )
    return installer.path_of("demo", record)


@pytest.mark.parametrize("mode", ["fail", "raise", "hang"])
def test_unhealthy_version_is_refused_and_previous_keeps_running(
    mode, installer, trust, built, release
):
    good = _install(installer, trust, built, release, 1)
    bad = _install(installer, trust, built, release, 2, health=mode)

    async def scenario() -> None:
        container = TaskContainer(budget_s=0.5)
        await container.activate("demo", 1, good)
        with pytest.raises(HealthCheckError, match="demo v2"):
            await container.activate("demo", 2, bad)
        assert container.running == {"demo": 1}
        assert (await container.run("demo", "x")).value["version"] == 1

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_one_task_hanging_or_raising_never_stops_the_others(tmp_path):
    scripts = {
        "ok": "def run(p):\n    return p * 2\n",
        "boom": "def run(p):\n    raise ValueError('bad input ' + str(p))\n",
        "stuck": "import time\ndef run(p):\n    time.sleep(3600)\n",
    }
    from walle.deploy.manifest import FileEntry, Manifest

    async def scenario() -> None:
        container = TaskContainer(budget_s=0.3)
        for name, body in scripts.items():
            path = tmp_path / name
            path.mkdir()
            (path / "main.py").write_text(body)
            manifest = Manifest(
                task=name,
                version=1,
                entry_points={"main": "main.py:run"},
                files={"main.py": FileEntry(sha256="0" * 64, size=len(body))},
            )
            (path / "manifest.json").write_bytes(manifest.to_bytes())
            await container.activate(name, 1, path)
        started = time.monotonic()
        results = {r.task: r for r in await container.run_all(21)}
        assert time.monotonic() - started < 2.0  # concurrent: one budget, not three
        assert results["ok"].ok and results["ok"].value == 42
        assert not results["boom"].ok and "bad input 21" in results["boom"].error
        assert not results["stuck"].ok and "timed out" in results["stuck"].error
        assert (await container.run("ok", 1)).value == 2  # the runtime goes on

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_agent_restart_reactivates_installed_version(tmp_path, installer, trust, built, release):
    _install(installer, trust, built, release, 1)
    (installer.home / "tasks" / "demo" / ".staging-leftover").mkdir()  # as after a kill

    async def scenario() -> None:
        settings = AgentSettings(gateway_url="http://127.0.0.1:9", home=installer.home)
        agent = Agent(DeviceAttrs(device_id="d"), settings, trust, TaskContainer())
        await agent.start()
        try:
            assert agent.host.running == {"demo": 1}
            assert not (installer.home / "tasks" / "demo" / ".staging-leftover").exists()
        finally:
            await agent.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))

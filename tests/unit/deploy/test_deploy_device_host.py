"""DeviceTaskHost on a live DeviceRuntime, without a broker: swaps, refusals, fallback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from walle.deploy.bundle import build_bundle, open_bundle
from walle.deploy.container import TaskContainer
from walle.deploy.device_host import DeviceTaskHost
from walle.deploy.errors import HealthCheckError
from walle.deploy.install import Installer
from walle.deploy.testing import write_app_task_dir, write_task_dir
from walle.streams import App, PageWindow
from walle.streams.device.runtime import DeviceRuntime


def _base_app() -> App:
    app = App("device")

    @app.task(window=PageWindow("item"))
    def item_events(window):
        return {"events": len(window.events)}

    return app


@pytest.fixture
def runtime(tmp_path: Path):
    started = DeviceRuntime(_base_app(), tmp_path / "device.db")
    started.start_live(autoflush=False)
    yield started
    started.close()


@pytest.fixture
def install(tmp_path: Path):
    installer = Installer(tmp_path / "home")

    def _install(task_dir: Path) -> Path:
        built = build_bundle(task_dir, tmp_path / "dist")
        contents = open_bundle(built.path.read_bytes())
        return installer.path_of(contents.manifest.task, installer.unpack(contents, built.digest))

    return _install


class _Visits:
    def __init__(self, runtime: DeviceRuntime):
        self.runtime, self.seq = runtime, 0

    def one(self) -> dict[str, dict]:
        """Append one item visit; the outputs by task."""
        out = []
        for kind in ("page_enter", "click", "page_exit"):
            self.seq += 1
            event = {"device_id": "d", "seq": self.seq, "ts": self.seq * 10, "event": kind,
                     "page": "item", "args": {}}  # fmt: skip
            out.extend(self.runtime.append(event))
        return {o.task: o.value for o in out}


def test_activate_swap_and_deactivate(runtime, install, tmp_path):
    host, visits = DeviceTaskHost(runtime), _Visits(runtime)
    v1 = install(write_app_task_dir(tmp_path / "src", version=1))
    v2 = install(write_app_task_dir(tmp_path / "src", version=2))
    assert visits.one() == {"item_events": {"events": 3}}
    asyncio.run(host.activate("clicks", 1, v1))
    assert visits.one()["item_clicks"] == {"clicks": 1, "version": 1}
    asyncio.run(host.activate("clicks", 2, v2))
    assert visits.one()["item_clicks"] == {"clicks": 1, "version": 2}
    assert [p.name for p in runtime.engine.app.plans] == ["item_events", "item_clicks"]
    asyncio.run(host.deactivate("clicks"))
    assert visits.one() == {"item_events": {"events": 3}}
    assert host.running == {}


@pytest.mark.parametrize(
    ("writer", "message"),
    [
        (lambda root: write_app_task_dir(root, version=2, health="fail"), "returned False"),
        (lambda root: write_app_task_dir(root, version=2, plan="item_events"), "already taken"),
        (lambda root: write_task_dir(root, "clicks", 2), "no 'app' entry point"),
    ],
)
def test_refused_activation_keeps_the_previous_version(runtime, install, tmp_path, writer, message):
    host, visits = DeviceTaskHost(runtime), _Visits(runtime)
    asyncio.run(host.activate("clicks", 1, install(write_app_task_dir(tmp_path / "src"))))
    with pytest.raises(HealthCheckError, match=message):
        asyncio.run(host.activate("clicks", 2, install(writer(tmp_path / "bad"))))
    assert host.running == {"clicks": 1}
    assert visits.one() == {
        "item_events": {"events": 3},
        "item_clicks": {"clicks": 1, "version": 1},
    }


def test_an_app_that_is_not_an_app_is_refused(runtime, install, tmp_path):
    task_dir = write_app_task_dir(tmp_path / "src")
    (task_dir / "app.py").write_text("app = 42\ndef health():\n    return True\n")
    with pytest.raises(HealthCheckError, match="is not a walle.streams.App"):
        asyncio.run(DeviceTaskHost(runtime).activate("clicks", 1, install(task_dir)))
    assert [p.name for p in runtime.engine.app.plans] == ["item_events"]


def test_plain_tasks_go_to_the_fallback_container(runtime, install, tmp_path):
    container = TaskContainer(budget_s=2)
    host = DeviceTaskHost(runtime, fallback=container)

    async def scenario() -> None:
        await host.activate("demo", 1, install(write_task_dir(tmp_path / "src", "demo", 1)))
        assert container.running == {"demo": 1} and host.running == {}
        assert (await container.run("demo", 7)).value["payload"] == 7
        await host.deactivate("demo")
        assert container.running == {}

    asyncio.run(scenario())


def test_an_apps_plans_keep_their_fingerprint_across_loads(install, tmp_path):
    from walle.deploy.device_host import _load_app
    from walle.streams.plan import fingerprint

    path = install(write_app_task_dir(tmp_path / "src"))
    first, again = (_load_app(path, "clicks", 1, "app.py:app") for _ in range(2))
    assert first is not again
    assert fingerprint(first.plans) == fingerprint(again.plans)

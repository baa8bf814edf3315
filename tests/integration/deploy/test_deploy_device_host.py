"""Activation in the device runtime: a release's App joins a live DeviceRuntime, no restart.

A thread appends item-page visits to a live device runtime the whole time. Release v1 of
task ``clicks`` (a bundle whose entry point ``app.py:app`` is a streams App): the agent
pulls, verifies, installs and activates it in the runtime, and the visits after that
produce its outputs. v2 replaces it atomically (once a v2 output is seen, no v1 output
follows); a rollback swaps v1 back the same way. The runtime's own task never stops.
"""

from __future__ import annotations

import asyncio
import threading
import time

from tests._wait import until
from walle.deploy.agent import Agent, AgentSettings
from walle.deploy.bundle import build_bundle
from walle.deploy.device_host import DeviceTaskHost
from walle.deploy.enrolment import Enrolment
from walle.deploy.gateway import Gateway
from walle.deploy.notification import sign_bundle
from walle.deploy.policy import DeviceAttrs, ReleasePolicy
from walle.deploy.release import release, rollback
from walle.deploy.serving import start_site
from walle.deploy.store import make_store_app
from walle.deploy.testing import write_app_task_dir
from walle.streams import App, PageWindow
from walle.streams.device.runtime import DeviceRuntime

DEADLINE_S = 30.0


def _base_app() -> App:
    app = App("device")

    @app.task(window=PageWindow("item"))
    def item_events(window):
        return {"events": len(window.events)}

    return app


class _Appender(threading.Thread):
    """Appends item-page visits (enter, 2 clicks, exit) until stopped; keeps the outputs."""

    def __init__(self, runtime: DeviceRuntime):
        super().__init__(daemon=True)
        self.runtime = runtime
        self.outputs: list = []
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        seq, ts = 0, 1_000_000
        try:
            while not self.halt.is_set():
                for kind in ("page_enter", "click", "click", "page_exit"):
                    seq, ts = seq + 1, ts + 10
                    event = {"device_id": "dev", "seq": seq, "ts": ts, "event": kind,
                             "page": "item", "args": {}}  # fmt: skip
                    self.outputs.extend(self.runtime.append(event))
                time.sleep(0.005)
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def versions(self, since: int = 0) -> list[int]:
        return [o.value["version"] for o in self.outputs[since:] if o.task == "item_clicks"]


async def _until(predicate, timeout_s: float = DEADLINE_S) -> None:
    await until(predicate, timeout_s)


def test_release_activates_app_in_live_runtime_and_rollback_swaps_back(
    tmp_path, broker, topics, trust, private
):
    bundles = []
    for version in (1, 2):
        built = build_bundle(write_app_task_dir(tmp_path / "src", version=version), tmp_path / "d")
        sign_bundle(built.path, private)
        bundles.append(built)
    runtime = DeviceRuntime(_base_app(), tmp_path / "device.db")
    runtime.start_live()
    appender = _Appender(runtime)
    appender.start()

    async def scenario() -> None:
        store = await start_site(make_store_app(tmp_path / "store"))
        enrolment = Enrolment.new(tmp_path / "enrolment.secret")
        enrolment.enrol("dev", tmp_path / "home")
        core = Gateway(broker.bootstrap, topics, trust=trust, enrolment=enrolment)
        gateway = await start_site(core.app())
        settings = AgentSettings(gateway_url=gateway.url, home=tmp_path / "home")
        host = DeviceTaskHost(runtime)
        agent = Agent(DeviceAttrs(device_id="dev"), settings, trust, host)
        run = asyncio.create_task(agent.run())
        common = {"bootstrap": broker.bootstrap, "store_url": store.url,
                  "private": private, "topics": topics}  # fmt: skip
        try:
            await _until(lambda: len(appender.outputs) >= 5)
            assert appender.versions() == []  # nothing deployed yet

            await asyncio.to_thread(release, bundles[0].path, ReleasePolicy(), **common)
            await _until(lambda: agent.states.get("clicks") == (1, "installed"))
            assert host.running == {"clicks": 1} and host.plans == {"clicks": ("item_clicks",)}
            await _until(lambda: len(appender.versions()) >= 3)
            v1 = [o.value for o in appender.outputs if o.task == "item_clicks"]
            assert v1[1:3] == [{"clicks": 2, "version": 1}] * 2  # the first may straddle

            await asyncio.to_thread(release, bundles[1].path, ReleasePolicy(), **common)
            await _until(lambda: 2 in appender.versions())
            at = appender.versions().index(2)
            await _until(lambda: len(appender.versions()) >= at + 5)
            assert set(appender.versions()[at:]) == {2}  # the swap is atomic

            await asyncio.to_thread(
                rollback, "clicks", bootstrap=broker.bootstrap, private=private, topics=topics
            )
            await _until(lambda: agent.states.get("clicks") == (1, "installed"))
            mark = len(appender.versions())
            await _until(lambda: len(appender.versions()) >= mark + 5)
            tail = appender.versions()[mark:]
            assert tail[-1] == 1 and set(tail[tail.index(1) :]) == {1}
            assert host.running == {"clicks": 1}
            assert core.counters["dropped_records"] == 0  # releases and rollback verified
            assert core.counters["unauthenticated_reports"] == 0
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            await gateway.stop()
            await store.stop()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 90))
    finally:
        appender.halt.set()
        appender.join(10)
        features = _features(runtime)
        runtime.close()
    assert appender.error is None
    base = [o for o in appender.outputs if o.task == "item_events"]
    assert len(base) >= len(appender.versions())  # the runtime's own task ran throughout
    assert runtime.engine.app.plans[0].name == "item_events"
    assert any(key.startswith("item_clicks|dev|") for key, _ in features)  # in the store


def _features(runtime: DeviceRuntime) -> list[tuple[str, str]]:
    runtime.flush()
    return runtime.features()

"""The rollout dashboard in headless Chromium during real staged rollouts on loopback.

A real broker, store, gateway (serving /dashboard), rollout controller and 40 agents:
release v1 (healthy) goes 25% -> 60% -> 100% and the page shows the stage advance and the
coverage chart grow; v2 fails its health check on half of its first stage, the controller
halts it, and the page shows the halt with the controller's reason and the history. The
page's counts are the controller's own (same tally). Screenshots go to
out/test-artifacts/dashboard/ (the path is printed).
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
from playwright.async_api import async_playwright

from tests._browser import LAUNCH_ARGS, artifact_dir, chromium
from tests._wait import until
from walle.deploy.enrolment import Enrolment
from walle.deploy.fleet import LoopbackFleet
from walle.deploy.follower import FollowerSettings
from walle.deploy.policy import DeviceAttrs, ReleasePolicy, Stages, in_stage_band
from walle.deploy.release import release
from walle.deploy.rollout import RolloutWatcher
from walle.deploy.signing import load_private_key
from walle.deploy.testing import BROKEN_MARKER

DEVICES = [DeviceAttrs(device_id=f"d{i:02d}", os="android") for i in range(40)]
IDS = [d.device_id for d in DEVICES]
DEADLINE_MS = 30_000

# Records what each render of the page showed for task demo (the page replaces its cards).
_OBSERVER = """
window.seen = [];
document.addEventListener("DOMContentLoaded", () => {
  new MutationObserver(() => {
    const card = document.querySelector('section[data-task="demo"]');
    if (!card) return;
    const line = card.querySelector("polyline.installed");
    window.seen.push({version: +card.dataset.version, stage: +card.dataset.stage,
                      paused: card.dataset.paused === "true",
                      samples: line ? +line.dataset.samples : 0,
                      installed: line ? +line.dataset.last : 0});
  }).observe(document.getElementById("tasks"), {childList: true});
});
"""


def _policy(min_reports: int) -> ReleasePolicy:
    stages = Stages(
        percentages=(25, 60, 100),
        advance_success_rate=0.9,
        halt_failure_rate=0.2,
        min_reports=min_reports,
    )
    return ReleasePolicy(stages=stages, salt="dashboard")


async def _state(url: str) -> dict:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/dashboard/state") as resp:
        return json.loads(await resp.text())


def test_dashboard_shows_stages_coverage_and_a_halt(
    tmp_path, broker, topics, trust, private, key_dir, make_bundle
):
    first = [d for d in IDS if in_stage_band(d, _policy(1), 0)]
    broken = first[::2]
    for device_id in broken:  # v2 fails its health check here; v1 does not look
        (tmp_path / "devices" / device_id).mkdir(parents=True)
        (tmp_path / "devices" / device_id / BROKEN_MARKER).write_text("no NPU\n")
    v1, v2 = make_bundle(1), make_bundle(2, health="marker")
    shots = artifact_dir("dashboard")
    print(f"dashboard screenshots in {shots}")
    watcher = RolloutWatcher(  # the fleet enrols its devices with the secret at tmp_path
        broker.bootstrap,
        topics,
        load_private_key(key_dir / "rollout.key"),
        trust=trust,
        enrolment=Enrolment.new(tmp_path / "enrolment.secret"),
        settings=FollowerSettings(poll_ms=50, check_s=0.5),
    )
    watcher.start()

    async def scenario() -> None:
        async with (
            LoopbackFleet(broker.bootstrap, topics, tmp_path, trust, DEVICES) as fleet,
            async_playwright() as pw,
        ):
            browser = await pw.chromium.launch(executable_path=str(chromium()), args=LAUNCH_ARGS)
            page = await browser.new_page(viewport={"width": 960, "height": 640})
            await page.add_init_script(_OBSERVER)
            await page.goto(f"{fleet.gateway.url}/dashboard")
            await page.wait_for_function(
                "document.getElementById('meta').textContent.startsWith('40 agents')",
                timeout=DEADLINE_MS,
            )
            common = {"bootstrap": broker.bootstrap, "store_url": fleet.store_url}
            common |= {"private": private, "topics": topics}
            await asyncio.to_thread(release, v1.path, _policy(3), **common)

            await page.wait_for_selector('section[data-task="demo"]', timeout=DEADLINE_MS)
            await page.screenshot(path=str(shots / "1-released.png"), full_page=True)
            done = "window.seen.some(s => s.version === 1 && s.stage === 2 && s.installed === 40)"
            await page.wait_for_function(done, timeout=DEADLINE_MS)
            await page.screenshot(path=str(shots / "2-complete.png"), full_page=True)
            seen = [s for s in await page.evaluate("window.seen") if s["version"] == 1]
            stages = [s["stage"] for s in seen]
            assert stages == sorted(stages) and stages[0] < 2  # the stage advanced on the page
            samples = [s["samples"] for s in seen]
            assert samples == sorted(samples) and samples[0] < samples[-1]  # the chart grew
            assert seen[0]["installed"] < 40 and not any(s["paused"] for s in seen)

            await asyncio.to_thread(release, v2.path, _policy(len(first)), **common)
            halt = 'section[data-task="demo"][data-version="2"] .halt'
            await page.wait_for_selector(halt, timeout=DEADLINE_MS)
            text = await page.inner_text(halt)
            assert text.startswith("HALTED: halted: demo v2 stage 1/3") and "-> halt" in text
            steps = await page.eval_on_selector_all(
                "table.history tr[class^=step-]", "rows => rows.map(r => r.className)"
            )
            assert steps[:4] == ["step-release", "step-advance", "step-advance", "step-release"]
            assert steps[4:] == ["step-halt"]
            failed = await page.inner_text('section[data-task="demo"] .failed b')
            assert int(failed) >= 1
            await page.screenshot(path=str(shots / "3-halted.png"), full_page=True)
            await browser.close()

            async def same_as_controller() -> bool:  # the page shows the controller's tally
                task = (await _state(fleet.gateway.url))["tasks"][0]
                tally = watcher.controller.tally("demo")
                return (task["installed"], task["failed"]) == (tally.installed, tally.failed)

            await until(same_as_controller, 10, "the board to show the controller's tally")

    try:
        asyncio.run(asyncio.wait_for(scenario(), 120))
    finally:
        watcher.stop()

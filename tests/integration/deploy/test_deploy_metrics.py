"""Prometheus /metrics of the gateway, the store and the rollout controller, scraped over HTTP.

A loopback fleet (real broker, store, gateway and agents) takes two releases; the counters
scraped from each /metrics endpoint move as the run does: notifications pushed = agents x
releases, status reports = installs, bundle bytes served = agents x bundle sizes. A staged
rollout's controller exports the stage it reached and the devices it counted.
"""

from __future__ import annotations

import asyncio

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests._wait import until
from walle.deploy.enrolment import Enrolment
from walle.deploy.fleet import LoopbackFleet
from walle.deploy.follower import FollowerSettings
from walle.deploy.metrics import rollout_registry, serve_registry
from walle.deploy.policy import DeviceAttrs, ReleasePolicy, Stages
from walle.deploy.release import release
from walle.deploy.rollout import RolloutWatcher
from walle.deploy.signing import load_private_key

AGENTS = 8
DEVICES = [DeviceAttrs(device_id=f"m{i:02d}", os="android") for i in range(AGENTS)]
DEADLINE_S = 30.0


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` from a Prometheus text endpoint."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _installed(fleet: LoopbackFleet, version: int) -> bool:
    return all(a.states.get("demo") == (version, "installed") for a in fleet.agents.values())


def test_gateway_and_store_counters_follow_the_run(
    tmp_path, broker, topics, trust, private, make_bundle
):
    bundles = [make_bundle(1), make_bundle(2)]

    async def scenario() -> None:
        async with LoopbackFleet(broker.bootstrap, topics, tmp_path, trust, DEVICES) as fleet:
            gateway, store = fleet.gateway.url, fleet.store_url
            connected = ("walle_gateway_connected_agents", ())
            await until(
                lambda: _value(scrape(gateway), connected, AGENTS), DEADLINE_S, "all connected"
            )
            before = await scrape(gateway)
            assert before[("walle_gateway_notifications_pushed_total", ())] == 0
            common = {"bootstrap": broker.bootstrap, "store_url": store, "private": private}
            for version, bundle in enumerate(bundles, start=1):
                await asyncio.to_thread(
                    release, bundle.path, ReleasePolicy(), topics=topics, **common
                )
                await fleet.wait_for(lambda v=version: _installed(fleet, v), DEADLINE_S)
            reports = ("walle_gateway_status_reports_total", ())
            await until(lambda: _value(scrape(gateway), reports, 2 * AGENTS), DEADLINE_S, "reports")
            after = await scrape(gateway)
            assert after[("walle_gateway_notifications_pushed_total", ())] == 2 * AGENTS
            assert after[("walle_gateway_connected_agents", ())] == AGENTS
            assert after[("walle_gateway_tasks", ())] == 1
            accepted = after[("walle_gateway_http_responses_total", (("status_class", "2xx"),))]
            assert accepted >= 2 * AGENTS  # each report's 202 (and the scrapes before)

            served = await scrape(store)
            sizes = sum(b.path.stat().st_size for b in bundles)
            assert served[("walle_store_bundle_gets_total", ())] == 2 * AGENTS
            assert served[("walle_store_bundle_bytes_served_total", ())] == AGENTS * sizes
            assert served[("walle_store_http_response_bytes_total", ())] >= AGENTS * sizes
            assert served[("walle_store_http_responses_total", (("status_class", "2xx"),))] >= (
                2 * AGENTS
            )
            assert (await fleet.store_metrics())["gets"] == 2 * AGENTS  # JSON still served

            async with (  # a 404 is counted as 4xx
                aiohttp.ClientSession() as session,
                session.get(f"{store}/bundles/{'0' * 64}") as resp,
            ):
                assert resp.status == 404
            missing = await scrape(store)
            assert missing[("walle_store_http_responses_total", (("status_class", "4xx"),))] == 1

    asyncio.run(asyncio.wait_for(scenario(), 90))


async def _value(scraped, key, wanted: float) -> bool:
    return (await scraped).get(key) == wanted


def test_rollout_controller_exports_stage_counts_and_steps(
    tmp_path, broker, topics, trust, private, key_dir, make_bundle
):
    stages = Stages(percentages=(50, 100), advance_success_rate=0.9, min_reports=1)
    policy = ReleasePolicy(stages=stages, salt="metrics")
    bundle = make_bundle(1)
    watcher = RolloutWatcher(  # the fleet enrols its devices with the secret at tmp_path
        broker.bootstrap,
        topics,
        load_private_key(key_dir / "rollout.key"),
        trust=trust,
        enrolment=Enrolment.new(tmp_path / "enrolment.secret"),
        settings=FollowerSettings(poll_ms=50, check_s=0.5),
    )
    server = serve_registry(rollout_registry(watcher), 0)
    url = f"http://127.0.0.1:{server.server_port}"
    watcher.start()

    async def scenario() -> None:
        async with LoopbackFleet(broker.bootstrap, topics, tmp_path, trust, DEVICES) as fleet:
            assert await scrape(url) == {
                ("walle_rollout_steps_total", (("decision", "advance"),)): 0,
                ("walle_rollout_steps_total", (("decision", "halt"),)): 0,
                ("walle_rollout_publish_errors_total", ()): 0,
            }
            await asyncio.to_thread(
                release,
                bundle.path,
                policy,
                bootstrap=broker.bootstrap,
                store_url=fleet.store_url,
                private=private,
                topics=topics,
            )
            await fleet.wait_for(lambda: _installed(fleet, 1), DEADLINE_S)
            done = ("walle_rollout_devices", (("state", "installed"), ("task", "demo")))
            await until(lambda: _value(scrape(url), done, AGENTS), DEADLINE_S, "all counted")
            final = await scrape(url)
            assert final[("walle_rollout_stage", (("task", "demo"),))] == 1
            assert final[("walle_rollout_stage_percent", (("task", "demo"),))] == 100
            assert final[("walle_rollout_devices", (("state", "failed"), ("task", "demo")))] == 0
            assert final[("walle_rollout_steps_total", (("decision", "advance"),))] == 1
            assert final[("walle_rollout_paused", (("task", "demo"),))] == 0

    try:
        asyncio.run(asyncio.wait_for(scenario(), 90))
    finally:
        watcher.stop()
        server.shutdown()

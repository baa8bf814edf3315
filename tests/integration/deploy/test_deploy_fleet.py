"""End to end on loopback: 220 agents, real broker, store and gateway over HTTP.

Release reaches every matching online agent; non-matching agents never download; a
rollback reaches them all; a paused release stops further installs; a release whose
health check fails is rolled back on every device and reported.
"""

from __future__ import annotations

import asyncio

import aiohttp

from tests._wait import until
from walle.deploy.channel import status_counts
from walle.deploy.fleet import LoopbackFleet
from walle.deploy.policy import DeviceAttrs, ReleasePolicy, Targeting
from walle.deploy.release import pause, release, rollback

MATCHING, OTHERS = 200, 20
DEADLINE_S = 30.0  # stated bound: release -> all matching online agents installed


def _devices() -> list[DeviceAttrs]:
    android = [
        DeviceAttrs(device_id=f"a{i:03d}", os="android", app_version="3.4", region="eu")
        for i in range(MATCHING)
    ]
    ios = [
        DeviceAttrs(device_id=f"i{i:03d}", os="ios", app_version="3.4", region="eu")
        for i in range(OTHERS)
    ]
    return android + ios


def _at(fleet: LoopbackFleet, ids: list[str], version: int, state: str = "installed") -> bool:
    return all(fleet.agents[d].states.get("demo") == (version, state) for d in ids)


async def _gateway_paused(fleet: LoopbackFleet) -> bool:
    """The gateway's latest notification for demo is the paused one (its polling endpoint)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{fleet.gateway.url}/notifications") as resp,
    ):
        notes = await resp.json()
    return any(n["task"] == "demo" and n["paused"] for n in notes)


def test_release_rollback_pause_on_loopback(tmp_path, broker, topics, trust, private, make_bundle):
    policy = ReleasePolicy(targeting=Targeting(os=("android",), app_version=">=3.2,<4"))
    v1, v2, v3 = make_bundle(1), make_bundle(2), make_bundle(3)
    android = [f"a{i:03d}" for i in range(MATCHING)]
    ios = [f"i{i:03d}" for i in range(OTHERS)]

    async def scenario() -> None:
        async with LoopbackFleet(broker.bootstrap, topics, tmp_path, trust, _devices()) as fleet:
            common = {
                "bootstrap": broker.bootstrap,
                "store_url": fleet.store_url,
                "private": private,
                "topics": topics,
            }
            await asyncio.to_thread(release, v1.path, policy, **common)
            await fleet.wait_for(lambda: _at(fleet, android, 1), DEADLINE_S)
            await asyncio.to_thread(release, v2.path, policy, **common)
            await fleet.wait_for(lambda: _at(fleet, android, 2), DEADLINE_S)
            assert all(fleet.agents[d].stats["store_requests"] == 0 for d in ios)
            assert fleet.active_versions("demo", ios) == dict.fromkeys(ios)

            await asyncio.to_thread(
                rollback, "demo", bootstrap=broker.bootstrap, private=private, topics=topics
            )
            await fleet.wait_for(lambda: _at(fleet, android, 1), DEADLINE_S)
            assert set(fleet.active_versions("demo", android).values()) == {1}
            requests = (await fleet.store_metrics())["gets"]
            assert requests == 2 * MATCHING  # v1 kept on disk: a rollback downloads nothing

            offline = android[:50]
            await fleet.take_offline(offline)
            await asyncio.to_thread(release, v3.path, policy, **common)
            await fleet.wait_for(lambda: _at(fleet, android[50:], 3), DEADLINE_S)
            await asyncio.to_thread(
                pause, "demo", bootstrap=broker.bootstrap, private=private, topics=topics
            )
            await until(lambda: _gateway_paused(fleet), DEADLINE_S, "the gateway to hold the pause")
            for device_id in offline:
                fleet.go_online(device_id)
            await fleet.wait_for(
                lambda: all(fleet.agents[d].stats["paused"] >= 1 for d in offline), DEADLINE_S
            )
            assert set(fleet.active_versions("demo", offline).values()) == {1}
            assert set(fleet.active_versions("demo", android[50:]).values()) == {3}

    asyncio.run(asyncio.wait_for(scenario(), 120))
    counts = status_counts(broker.bootstrap, topics, "demo")
    assert counts[(3, "installed")] == MATCHING - 50
    assert counts[(1, "installed")] == 50
    assert sum(counts.values()) == MATCHING  # the iOS devices never reported anything


def test_failing_health_check_rolls_back_everywhere(
    tmp_path, broker, topics, trust, private, make_bundle
):
    devices = [DeviceAttrs(device_id=f"d{i}", os="android") for i in range(5)]
    good, bad = make_bundle(1), make_bundle(2, health="raise")

    async def scenario() -> None:
        async with LoopbackFleet(broker.bootstrap, topics, tmp_path, trust, devices) as fleet:
            common = {
                "bootstrap": broker.bootstrap,
                "store_url": fleet.store_url,
                "private": private,
                "topics": topics,
            }
            ids = list(fleet.agents)
            await asyncio.to_thread(release, good.path, ReleasePolicy(), **common)
            await fleet.wait_for(lambda: _at(fleet, ids, 1), DEADLINE_S)
            await asyncio.to_thread(release, bad.path, ReleasePolicy(), **common)
            await fleet.wait_for(lambda: _at(fleet, ids, 2, "rolled_back"), DEADLINE_S)
            assert set(fleet.active_versions("demo").values()) == {1}
            for agent in fleet.agents.values():
                assert agent.host.running == {"demo": 1}
                result = await agent.host.run("demo", {"x": 1})
                assert result.ok and result.value["version"] == 1

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert status_counts(broker.bootstrap, topics, "demo")[(2, "rolled_back")] == 5

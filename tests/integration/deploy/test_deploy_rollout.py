"""Staged rollouts driven by the rollout controller, on loopback with a real broker.

40 agents, stages 25% -> 60% -> 100%. All healthy: the controller advances stage by stage
and every device ends up installed. Some devices failing the health check (a device-
specific fault): the failure rate of the first stage crosses the threshold, the controller
halts the release, and no device outside the first stage ever downloads it.
"""

from __future__ import annotations

import asyncio
import time

from walle.deploy.channel import history, latest, status_counts
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
SALT = "rollout-test"
DEADLINE_S = 30.0


def _eventually_counts(bootstrap, topics, expected, deadline_s=DEADLINE_S):
    """The status topic's counts once they reach ``expected`` (or at the deadline).

    An agent's report travels agent -> gateway -> Kafka after its local install, so the
    topic can trail the agents' own state for a moment.
    """
    stop = time.monotonic() + deadline_s
    while True:
        counts = status_counts(bootstrap, topics, "demo")
        if counts == expected or time.monotonic() > stop:
            return counts
        time.sleep(0.2)


_FAST = FollowerSettings(poll_ms=50, check_s=0.5)


def _policy(min_reports: int, halt_failure_rate: float = 0.2) -> ReleasePolicy:
    stages = Stages(
        percentages=(25, 60, 100),
        advance_success_rate=0.9,
        halt_failure_rate=halt_failure_rate,
        min_reports=min_reports,
    )
    return ReleasePolicy(stages=stages, salt=SALT)


def _band(policy: ReleasePolicy, stage: int) -> list[str]:
    return [d for d in IDS if in_stage_band(d, policy, stage)]


def _watcher(bootstrap, topics, tmp_path, trust, key_dir) -> RolloutWatcher:
    """The controller as deployed: the rollout key, the fleet's root and enrolment secret
    (``LoopbackFleet`` enrols its devices with the secret it finds at ``tmp_path``)."""
    return RolloutWatcher(
        bootstrap,
        topics,
        load_private_key(key_dir / "rollout.key"),
        trust=trust,
        enrolment=Enrolment.new(tmp_path / "enrolment.secret"),
        settings=_FAST,
    )


def test_all_healthy_rollout_advances_to_everyone(
    tmp_path, broker, topics, trust, private, key_dir, make_bundle
):
    policy = _policy(min_reports=3)
    assert all(len(_band(policy, k)) >= 3 for k in range(3))  # each stage can advance
    bundle = make_bundle(1)
    watcher = _watcher(broker.bootstrap, topics, tmp_path, trust, key_dir)
    watcher.start()

    async def scenario() -> None:
        async with LoopbackFleet(broker.bootstrap, topics, tmp_path, trust, DEVICES) as fleet:
            await asyncio.to_thread(
                release,
                bundle.path,
                policy,
                bootstrap=broker.bootstrap,
                store_url=fleet.store_url,
                private=private,
                topics=topics,
            )
            await fleet.wait_for(
                lambda: all(
                    a.states.get("demo") == (1, "installed") for a in fleet.agents.values()
                ),
                DEADLINE_S,
            )
            assert set(fleet.active_versions("demo").values()) == {1}
            # while the fleet still runs: an agent notes its state before its report is sent,
            # so the last report may still be on its way through the gateway
            counts = await asyncio.to_thread(_eventually_counts, broker.bootstrap, topics, expected)
            assert counts == expected

    expected = {(1, "installed"): len(IDS)}
    try:
        asyncio.run(asyncio.wait_for(scenario(), 90))
    finally:
        watcher.stop()
    stages = [n.policy.stage for n in history(broker.bootstrap, topics, "demo")]
    assert stages == [0, 1, 2]  # released at stage 0, advanced twice, never halted
    assert [n.policy.stage for n in watcher.applied] == [1, 2]
    assert all(n.reason.startswith("advanced:") for n in watcher.applied)
    assert watcher.dropped == 0  # every release, step and report verified
    assert not latest(broker.bootstrap, topics, "demo").paused


def test_failing_devices_halt_the_rollout_at_the_first_stage(
    tmp_path, broker, topics, trust, private, key_dir, make_bundle
):
    policy = _policy(min_reports=len(_band(_policy(1), 0)))  # stage 0 waits for all its devices
    first = _band(policy, 0)
    broken = first[::2]  # half of the first stage fails its health check
    later = [d for d in IDS if d not in first]
    for device_id in broken:
        (tmp_path / "devices" / device_id).mkdir(parents=True)
        (tmp_path / "devices" / device_id / BROKEN_MARKER).write_text("no NPU\n")
    bundle = make_bundle(1, health="marker")
    watcher = _watcher(broker.bootstrap, topics, tmp_path, trust, key_dir)
    watcher.start()

    async def scenario() -> None:
        async with LoopbackFleet(broker.bootstrap, topics, tmp_path, trust, DEVICES) as fleet:
            await asyncio.to_thread(
                release,
                bundle.path,
                policy,
                bootstrap=broker.bootstrap,
                store_url=fleet.store_url,
                private=private,
                topics=topics,
            )
            await fleet.wait_for(lambda: any(n.paused for n in watcher.applied), DEADLINE_S)
            await fleet.wait_for(  # both notifications (release, halt) reached every later one
                lambda: all(fleet.agents[d].stats["not_admitted"] >= 2 for d in later), DEADLINE_S
            )
            for device_id in broken:
                assert fleet.agents[device_id].states["demo"] == (1, "rolled_back")
                assert fleet.agents[device_id].host.running == {}
            for device_id in later:  # never eligible before the halt: nothing fetched
                assert fleet.agents[device_id].stats["store_requests"] == 0
                assert fleet.agents[device_id].installer.active("demo") is None

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        watcher.stop()
    note = latest(broker.bootstrap, topics, "demo")
    assert note.paused and note.policy.stage == 0
    assert note.reason.startswith("halted:") and "-> halt" in note.reason
    assert [n.paused for n in watcher.applied] == [True]  # no advance ever happened
    assert watcher.dropped == 0  # the failures it halted on were authenticated reports
    counts = status_counts(broker.bootstrap, topics, "demo")
    assert counts[(1, "rolled_back")] + counts[(1, "installed")] <= len(first)
    assert set(counts) <= {(1, "rolled_back"), (1, "installed")}

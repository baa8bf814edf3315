"""Attacks on the release channel (issue 14), on loopback with a real broker.

Each test runs a fleet (store, gateway, agents over real HTTP, the gateway reading the
embedded broker), installs a legitimate version, then tries one attack two ways where it
applies: through Kafka (the gateway must drop it) and straight into the agent's
acceptance path (``Agent.handle``, what a hostile gateway or a man in the middle would
reach). Each asserts the refusal, its message, and that the running version keeps running.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import aiohttp
import pytest

from tests._wait import until
from walle.deploy.channel import StatusReport, publish, reports
from walle.deploy.enrolment import report_mac
from walle.deploy.fleet import LoopbackFleet
from walle.deploy.follower import FollowerSettings
from walle.deploy.freshness import MetadataLog, ReplayError
from walle.deploy.notification import load_bundle_signature, make_notification
from walle.deploy.policy import DeviceAttrs, ReleasePolicy, Stages
from walle.deploy.release import pause, release, rollback, upload
from walle.deploy.roles import new_root
from walle.deploy.rollout import RolloutWatcher
from walle.deploy.signing import load_private_key, new_key

DEVICE = DeviceAttrs(device_id="d1", os="android")
_FAST = FollowerSettings(poll_ms=50, check_s=0.5)


async def _release(fleet, bundle, private, topics, policy=None, **kwargs):
    return await asyncio.to_thread(
        release,
        bundle.path,
        policy or ReleasePolicy(),
        bootstrap=fleet.bootstrap,
        store_url=fleet.store_url,
        private=private,
        topics=topics,
        **kwargs,
    )


async def _running(fleet: LoopbackFleet, version: int) -> None:
    agent = fleet.agents["d1"]
    await until(lambda: agent.host.running.get("demo") == version, 30, f"demo v{version}")
    assert fleet.active_versions("demo", ["d1"]) == {"d1": version}


def _refused(fleet: LoopbackFleet) -> str:
    """The agent's last metadata refusal message."""
    task, message = fleet.agents["d1"].metadata.refusals[-1]
    assert task == "demo"
    return message


def test_replayed_release_rollback_and_pause_are_refused(
    tmp_path, broker, topics, trust, private, make_bundle
):
    async def scenario():
        async with LoopbackFleet(broker.bootstrap, topics, tmp_path, trust, [DEVICE]) as fleet:
            agent, gateway = fleet.agents["d1"], fleet.gateway_core
            await _release(fleet, make_bundle(1), private, topics)
            await _running(fleet, 1)
            v2 = await _release(fleet, make_bundle(2), private, topics)
            await _running(fleet, 2)
            back = await asyncio.to_thread(
                rollback, "demo", bootstrap=broker.bootstrap, private=private, topics=topics
            )
            await _running(fleet, 1)

            # the old "v2" again: through Kafka the gateway drops it, into the agent refused
            await asyncio.to_thread(publish, broker.bootstrap, topics, v2)
            await until(lambda: gateway.counters["stale_records"] == 1, 15, "gateway drop")
            await agent.handle(v2)
            assert _refused(fleet) == (
                f"release demo v2 (seq {v2.seq}) is a replay: this device already accepted"
                f" seq {back.seq} for demo; a pause, rollback or advance must carry a higher seq"
            )
            await _running(fleet, 1)

            # a pause, then a new release (resume); the old pause replayed is refused
            stop = await asyncio.to_thread(
                pause, "demo", bootstrap=broker.bootstrap, private=private, topics=topics
            )
            v3 = await _release(fleet, make_bundle(3), private, topics)
            await _running(fleet, 3)
            await agent.handle(stop)
            assert f"demo v1 (seq {stop.seq}) is a replay" in _refused(fleet)
            # and the old rollback to v1 after v3 is installed
            await agent.handle(back)
            assert f"accepted seq {v3.seq} for demo" in _refused(fleet)
            await _running(fleet, 3)
            assert agent.stats["report_refused"] == 0  # replays are not reported on a digest

            # the refusals survive a restart: the accepted seq is on disk
            await fleet.take_offline(["d1"])
            reopened = MetadataLog(agent.settings.home)
            with pytest.raises(ReplayError, match=f"already accepted seq {v3.seq} for demo"):
                reopened.admit(back, trust, running=3)
            assert fleet.active_versions("demo") == {"d1": 3}

    asyncio.run(scenario())


def test_expired_future_dated_and_jumping_metadata_is_refused(
    tmp_path, broker, topics, trust, private, make_bundle
):
    async def scenario():
        async with LoopbackFleet(broker.bootstrap, topics, tmp_path, trust, [DEVICE]) as fleet:
            agent, gateway = fleet.agents["d1"], fleet.gateway_core
            first = await _release(fleet, make_bundle(1), private, topics)
            await _running(fleet, 1)
            bundle = make_bundle(2)
            now = time.time()

            def note(version_bundle=bundle, **kwargs):
                return make_notification(
                    task="demo",
                    version=version_bundle.manifest.version,
                    digest=version_bundle.digest,
                    size=version_bundle.size,
                    url=f"{fleet.store_url}/bundles/{version_bundle.digest}",
                    private=private,
                    bundle_signature=load_bundle_signature(version_bundle.path),
                    seq=first.seq + 1,
                    **kwargs,
                )

            expired = note(now=now - 7200, ttl_s=3600)
            future = note(now=now + 3600)
            for attack in (expired, future):
                await asyncio.to_thread(publish, broker.bootstrap, topics, attack)
            await until(lambda: gateway.counters["dropped_records"] == 2, 15, "gateway drops")
            await agent.handle(expired)
            expected = f"release demo v2 (seq {first.seq + 1}): the notification expired"
            assert _refused(fleet).startswith(expected)
            await agent.handle(future)
            # the agent measures from its own clock, read after the publishes: the wait can
            # take seconds, so the figure is bounded, not exact
            ahead = re.search(
                r"is issued (\d+)s in the future \(allowed clock skew 300s\)", _refused(fleet)
            )
            assert ahead is not None, _refused(fleet)
            assert 3600 - 60 <= int(ahead.group(1)) <= 3600

            jump = make_bundle(20_000)
            await agent.handle(note(version_bundle=jump))
            assert _refused(fleet) == (
                f"release demo v20000 (seq {first.seq + 1}) jumps from v1 by more than 10000"
                " versions"
            )
            # 10**300 does not even parse: the gateway skips it, nothing raises OSError
            huge = json.loads(first.to_bytes())
            huge.update(version=10**300, seq=first.seq + 1)
            await asyncio.to_thread(
                publish_raw, broker.bootstrap, topics.releases, json.dumps(huge).encode()
            )
            await until(lambda: gateway.counters["bad_records"] == 1, 15, "gateway skip")
            await _running(fleet, 1)
            assert gateway.latest["demo"] == first

    asyncio.run(scenario())


def publish_raw(bootstrap: str, topic: str, value: bytes) -> None:
    """Write ``value`` as a record of ``topic`` (key ``demo``), as an attacker with Kafka would."""
    from walle.kafka import sync_producer

    producer = sync_producer(bootstrap)
    try:
        producer.send(topic, key=b"demo", value=value).get(timeout=15)
    finally:
        producer.close(timeout=5)


def test_revoked_key_and_unmet_threshold_are_refused(
    tmp_path, broker, topics, trust, private, key_dir, make_bundle
):
    new_key(key_dir, "release2")
    root_key = load_private_key(key_dir / "root.key")

    def root(version, release_keys, threshold=1):
        roles = {"root": [key_dir / "root.pub"], "rollout": [key_dir / "rollout.pub"]}
        meta = new_root(
            {**roles, "release": [key_dir / f"{k}.pub" for k in release_keys]},
            {"release": threshold},
            version=version,
        )
        return meta.signed_by(root_key)

    async def scenario():
        async with LoopbackFleet(broker.bootstrap, topics, tmp_path, trust, [DEVICE]) as fleet:
            agent, gateway = fleet.agents["d1"], fleet.gateway_core
            await _release(fleet, make_bundle(1), private, topics)
            await _running(fleet, 1)

            # root v2 revokes "release" and gives the role to "release2"
            trust.update(root(2, ["release2"]))
            revoked = await _release(fleet, make_bundle(2), private, topics)
            await until(lambda: gateway.counters["dropped_records"] == 1, 15, "gateway drop")
            await agent.handle(revoked)
            kid = revoked.release_signatures[0].key_id
            assert _refused(fleet) == (
                f"release demo v2: key {kid} is not a release key in root v2 (it is revoked or"
                " was never trusted)"
            )
            await _running(fleet, 1)

            # root v3 needs two release signatures; one is not enough
            trust.update(root(3, ["release", "release2"], threshold=2))
            one = await _release(fleet, make_bundle(3), private, topics)
            await until(lambda: gateway.counters["dropped_records"] == 2, 15, "gateway drop")
            await agent.handle(one)
            assert _refused(fleet) == (
                "release demo v3: 1 valid release signature(s), root v3 requires 2"
            )
            both = one.release_signed_with(private, load_private_key(key_dir / "release2.key"))
            await asyncio.to_thread(publish, broker.bootstrap, topics, both.signed_with(private))
            await _running(fleet, 3)

    asyncio.run(scenario())


def test_unsigned_records_are_dropped_by_gateway_and_controller(
    tmp_path, broker, topics, trust, private, key_dir, make_bundle
):
    staged = ReleasePolicy(stages=Stages(percentages=(50, 100), min_reports=1), salt="s")

    async def scenario():
        async with LoopbackFleet(broker.bootstrap, topics, tmp_path, trust, [DEVICE]) as fleet:
            agent, gateway = fleet.agents["d1"], fleet.gateway_core
            v1 = await _release(fleet, make_bundle(1), private, topics)
            await _running(fleet, 1)
            # v2, signed and uploaded; a copy with its signatures stripped goes out first
            bundle = make_bundle(2)
            url = await asyncio.to_thread(upload, fleet.store_url, bundle.path.read_bytes())
            v2 = make_notification(
                task="demo",
                version=2,
                digest=bundle.digest,
                size=bundle.size,
                url=url,
                private=private,
                bundle_signature=load_bundle_signature(bundle.path),
                seq=v1.seq + 1,
            )
            stripped = v2.model_copy(update={"release_signatures": (), "signature": None})
            await asyncio.to_thread(publish, broker.bootstrap, topics, stripped)
            await until(lambda: gateway.counters["dropped_records"] == 1, 15, "gateway drop")
            assert gateway.latest["demo"] == v1
            await agent.handle(stripped)
            assert _refused(fleet) == "release demo v2 is not signed"
            await _running(fleet, 1)
            # nothing was said against v2's digest, and the real v2 installs
            assert agent.stats["report_refused"] == 0
            await asyncio.to_thread(publish, broker.bootstrap, topics, v2)
            await _running(fleet, 2)

            # an unsigned staged rollback to v1: what the controller, unverified, would have
            # advanced on forged reports (and the device on v2 installed v1)
            unsigned_back = v1.model_copy(
                update={
                    "seq": v2.seq + 1,
                    "rollback": True,
                    "policy": staged,
                    "release_signatures": (),
                    "signature": None,
                }
            )
            await asyncio.to_thread(publish, broker.bootstrap, topics, unsigned_back)
            await until(lambda: gateway.counters["dropped_records"] == 2, 15, "gateway drop")
            assert gateway.latest["demo"] == v2

            # forged "installed" reports (no MAC) from three device ids for it to act on
            for device_id in ("d7", "d8", "d9"):
                forged = StatusReport(
                    device_id=device_id,
                    task="demo",
                    version=1,
                    state="installed",
                    digest=v1.digest,
                    ts=time.time(),
                )
                await asyncio.to_thread(publish_status, broker.bootstrap, topics.status, forged)
            watcher = RolloutWatcher(
                broker.bootstrap,
                topics,
                load_private_key(key_dir / "rollout.key"),
                settings=_FAST,
                trust=trust,
                enrolment=fleet.enrolment,
            )
            applied = await asyncio.to_thread(watcher.run_once)
            assert watcher.dropped == 5  # the two notifications and the three reports
            assert watcher.controller.current["demo"] == v2
            assert applied == []
            await _running(fleet, 2)

            # the operator's rollback skips the unsigned record in the history and re-signs
            # only content its release key signed (the real v1)
            back = await asyncio.to_thread(
                rollback, "demo", bootstrap=broker.bootstrap, private=private, topics=topics
            )
            assert (back.digest, back.rollback) == (v1.digest, True)
            assert back.release_signatures[0].key_id == v1.release_signatures[0].key_id
            await _running(fleet, 1)

    asyncio.run(scenario())


def publish_status(bootstrap: str, topic: str, report: StatusReport) -> None:
    """Write a status record straight to Kafka (bypassing the gateway)."""
    from walle.kafka import sync_producer

    producer = sync_producer(bootstrap)
    try:
        key = f"{report.task}/{report.device_id}".encode()
        producer.send(topic, key=key, value=report.model_dump_json().encode()).get(timeout=15)
    finally:
        producer.close(timeout=5)


def test_forged_and_unauthenticated_status_reports_are_refused(
    tmp_path, broker, topics, trust, private, make_bundle
):
    async def scenario():
        devices = [DEVICE, DeviceAttrs(device_id="d2")]
        async with LoopbackFleet(broker.bootstrap, topics, tmp_path, trust, devices) as fleet:
            gateway = fleet.gateway_core
            note = await _release(fleet, make_bundle(1), private, topics)
            await _running(fleet, 1)
            base = StatusReport(
                device_id="d2", task="demo", version=1, state="failed", digest=note.digest, ts=1
            )
            d1_key = fleet.enrolment.device_key("d1")
            attempts = {
                "no MAC": base,
                "d1's key": base.model_copy(update={"mac": report_mac(d1_key, base)}),
                "garbage": base.model_copy(update={"mac": "00" * 32}),
            }
            texts = {}
            async with aiohttp.ClientSession() as session:
                for what, report in attempts.items():
                    url = f"{fleet.gateway.url}/status"
                    async with session.post(url, data=report.model_dump_json()) as resp:
                        assert resp.status == 401, what
                        texts[what] = await resp.text()
            assert gateway.counters["unauthenticated_reports"] == 3
            assert texts["no MAC"].startswith("status report from 'd2' on demo carries no MAC")
            for what in ("d1's key", "garbage"):
                assert "has a MAC that does not match that device's key" in texts[what]
            await until(
                lambda: (
                    {r.device_id for r in reports(broker.bootstrap, topics, "demo")} == {"d1", "d2"}
                ),
                15,
                "the devices' own reports",
            )
            mine = reports(broker.bootstrap, topics, "demo")
            assert {r.state for r in mine} == {"installed"}  # no forged "failed"
            await _running(fleet, 1)

    asyncio.run(scenario())

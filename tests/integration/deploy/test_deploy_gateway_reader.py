"""The gateway's Kafka reader survives its broker: stop the broker, start it again (same
port, empty: memory storage), and notifications published afterwards still reach agents
over their unbroken SSE connection; nothing old is pushed twice.
"""

from __future__ import annotations

import asyncio

from tests._wait import until
from walle.deploy.agent import Agent, AgentSettings
from walle.deploy.channel import ensure_topics
from walle.deploy.container import TaskContainer
from walle.deploy.enrolment import Enrolment
from walle.deploy.follower import FollowerSettings
from walle.deploy.gateway import Gateway
from walle.deploy.policy import DeviceAttrs, ReleasePolicy
from walle.deploy.release import release
from walle.deploy.serving import start_site
from walle.deploy.store import make_store_app
from walle.kafka import EmbeddedBroker

_FAST = FollowerSettings(
    poll_ms=50, check_s=0.3, backoff_min_s=0.1, backoff_max_s=0.5, request_timeout_ms=1000
)


async def _until(predicate, timeout_s: float = 30.0) -> None:
    await until(predicate, timeout_s)


def test_reader_restarts_after_broker_restart_and_notifications_resume(
    tmp_path, topics, trust, private, make_bundle
):
    v1, v2 = make_bundle(1), make_bundle(2)
    own = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    ensure_topics(own.bootstrap, topics)
    enrolment = Enrolment.new(tmp_path / "enrolment.secret")
    enrolment.enrol("dev-1", tmp_path / "device")
    gateway = Gateway(own.bootstrap, topics, trust=trust, enrolment=enrolment, follower=_FAST)

    async def scenario() -> None:
        store = await start_site(make_store_app(tmp_path / "store"))
        site = await start_site(gateway.app())
        settings = AgentSettings(gateway_url=site.url, home=tmp_path / "device")
        agent = Agent(DeviceAttrs(device_id="dev-1"), settings, trust, TaskContainer())
        run = asyncio.create_task(agent.run())
        common = {"store_url": store.url, "private": private, "topics": topics}
        try:
            await _until(lambda: agent.stats["connects"] == 1 and gateway.reader.caught_up.is_set())
            await asyncio.to_thread(
                release, v1.path, ReleasePolicy(), bootstrap=own.bootstrap, **common
            )
            await _until(lambda: agent.states.get("demo") == (1, "installed"))

            await asyncio.to_thread(own.stop)
            await _until(lambda: gateway.reader.restarts >= 1)  # it noticed: broker gone
            await asyncio.to_thread(own.start)
            await _until(lambda: gateway.reader.caught_up.is_set())  # topics made again, re-read
            await asyncio.to_thread(
                release, v2.path, ReleasePolicy(), bootstrap=own.bootstrap, **common
            )
            await _until(lambda: agent.states.get("demo") == (2, "installed"))
            assert agent.stats["connects"] == 1  # pushed over the same stream: no reconnect
            assert gateway.counters["pushed"] == 2  # v1 then v2, nothing replayed
            assert agent.stats["report_refused"] == 0
            await _until(lambda: gateway.counters["reports"] >= 2)  # both installs reported
            assert gateway.counters["unauthenticated_reports"] == 0
            assert gateway.counters["dropped_records"] == 0  # both releases verified
            assert gateway.reader.alive and gateway.latest["demo"].version == 2
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            await site.stop()
            await store.stop()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 90))
    finally:
        own.stop()

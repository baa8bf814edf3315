"""A loopback fleet: bundle store, push gateway and many device agents in one event loop.

Used by the integration tests and ``benchmarks/deploy_bench.py``: everything speaks real
HTTP over 127.0.0.1 and the gateway reads a real Kafka-protocol broker. The gateway verifies
notifications against the fleet's trust store and status reports against an enrolment
secret (``root/enrolment.secret``; every device is enrolled). Agents can be taken offline
and brought back (a reconnect is how a device catches up).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from walle.deploy.agent import Agent, AgentSettings
from walle.deploy.channel import ChannelTopics
from walle.deploy.container import TaskContainer
from walle.deploy.enrolment import DEVICE_KEY_FILE, Enrolment
from walle.deploy.gateway import Gateway
from walle.deploy.policy import DeviceAttrs
from walle.deploy.serving import RunningSite, start_site
from walle.deploy.signing import TrustStore
from walle.deploy.store import make_store_app


class LoopbackFleet:
    """``async with LoopbackFleet(...) as fleet:`` starts store, gateway and agents."""

    def __init__(
        self,
        bootstrap: str,
        topics: ChannelTopics,
        root: Path,
        trust: TrustStore,
        devices: list[DeviceAttrs],
        *,
        agent_overrides: dict[str, object] | None = None,
    ):
        self.bootstrap = bootstrap
        self.topics = topics
        self.root = root
        self.trust = trust
        self.devices = devices
        self.overrides = {
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.5,
            **(agent_overrides or {}),
        }
        self.agents: dict[str, Agent] = {}
        self.store: RunningSite | None = None
        self.gateway_core: Gateway | None = None  # the gateway's state: latest, counters
        self.enrolment: Enrolment | None = None
        self.gateway: RunningSite | None = None
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def store_url(self) -> str:
        """Base URL of the bundle store."""
        assert self.store is not None  # set in __aenter__; internal invariant
        return self.store.url

    async def __aenter__(self) -> LoopbackFleet:
        self.store = await start_site(make_store_app(self.root / "store"))
        secret = self.root / "enrolment.secret"
        self.enrolment = Enrolment.load(secret) if secret.exists() else Enrolment.new(secret)
        gateway = Gateway(self.bootstrap, self.topics, trust=self.trust, enrolment=self.enrolment)
        self.gateway_core = gateway
        self.gateway = await start_site(gateway.app())
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        self._session = aiohttp.ClientSession(connector=connector)
        for attrs in self.devices:
            settings = AgentSettings.model_validate(
                {
                    "gateway_url": self.gateway.url,
                    "home": self.root / "devices" / attrs.device_id,
                    **self.overrides,
                }
            )
            if not (settings.home / DEVICE_KEY_FILE).exists():
                self.enrolment.enrol(attrs.device_id, settings.home)
            agent = Agent(attrs, settings, self.trust, TaskContainer(), session=self._session)
            self.agents[attrs.device_id] = agent
        for device_id in self.agents:
            self.go_online(device_id)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.take_offline(list(self._runs))
        if self._session is not None:
            await self._session.close()
        for site in (self.gateway, self.store):
            if site is not None:
                await site.stop()

    def go_online(self, device_id: str) -> None:
        """(Re)start the agent of ``device_id``: it reconnects and catches up."""
        if device_id not in self._runs:
            self._runs[device_id] = asyncio.create_task(self._run(self.agents[device_id]))

    @staticmethod
    async def _run(agent: Agent) -> None:
        await agent.start()
        await agent._follow()

    async def take_offline(self, device_ids: list[str]) -> None:
        """Stop these agents (their installs in flight are cancelled)."""
        runs = [self._runs.pop(d) for d in device_ids if d in self._runs]
        for run in runs:
            run.cancel()
        for device_id in device_ids:
            for handler in list(self.agents[device_id]._handlers):
                handler.cancel()
        await asyncio.gather(*runs, return_exceptions=True)

    async def store_metrics(self) -> dict[str, int]:
        """The store's request counters."""
        assert self._session is not None
        json_only = {"Accept": "application/json"}  # plain /metrics is Prometheus text
        async with self._session.get(f"{self.store_url}/metrics", headers=json_only) as resp:
            counters: dict[str, int] = await resp.json()
            return counters

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> float:
        """Seconds until ``predicate()`` holds; TimeoutError after ``timeout_s``."""
        start = time.monotonic()
        while not predicate():
            if time.monotonic() - start > timeout_s:
                raise TimeoutError(f"condition not reached within {timeout_s}s")
            await asyncio.sleep(0.02)
        return time.monotonic() - start

    def active_versions(
        self, task: str, device_ids: list[str] | None = None
    ) -> dict[str, int | None]:
        """Device id -> active version of ``task`` on disk (None when not installed)."""
        out: dict[str, int | None] = {}
        for device_id in device_ids or list(self.agents):
            record = self.agents[device_id].installer.active(task)
            out[device_id] = record.version if record else None
        return out

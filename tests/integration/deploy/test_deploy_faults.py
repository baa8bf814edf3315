"""Fault tests: the store killed mid-download, the gateway killed and restarted.

The store and the gateway run as real ``walle ... serve`` processes and are SIGKILLed;
the agent runs in the test's event loop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._wait import until
from walle.deploy.agent import Agent, AgentSettings
from walle.deploy.container import TaskContainer
from walle.deploy.enrolment import Enrolment
from walle.deploy.gateway import Gateway
from walle.deploy.policy import DeviceAttrs, ReleasePolicy
from walle.deploy.release import release
from walle.deploy.serving import start_site
from walle.deploy.store import make_store_app

_WALLE = [sys.executable, "-c", "from walle.cli import main; main()"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve(args: list[str], port: int) -> subprocess.Popen:
    """Start ``walle <args>`` and wait until it accepts connections on ``port``."""
    proc = subprocess.Popen([*_WALLE, *args], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"walle {args[0]} exited early"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"walle {args[0]} did not start on port {port}")


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _agent(tmp_path: Path, gateway_url: str, trust) -> Agent:
    settings = AgentSettings(
        gateway_url=gateway_url,
        home=tmp_path / "device",
        reconnect_min_s=0.05,
        reconnect_max_s=0.3,
        download_attempts=40,
    )
    return Agent(DeviceAttrs(device_id="dev-1"), settings, trust, TaskContainer())


def test_store_killed_mid_download_resumes_and_never_installs_partial(
    tmp_path, broker, topics, trust, private, make_bundle
):
    bundle = make_bundle(1, resources={"model.bin": os.urandom(1_000_000)})
    port = _free_port()
    store_args = [
        "deploy",
        "store",
        "--bundles-dir",
        str(tmp_path / "store"),
        "--port",
        str(port),
        "--max-bytes-per-s",
        "400000",
    ]
    store = _serve(store_args, port)

    async def scenario() -> None:
        nonlocal store
        enrolment = Enrolment.new(tmp_path / "enrolment.secret")
        enrolment.enrol("dev-1", tmp_path / "device")
        core = Gateway(broker.bootstrap, topics, trust=trust, enrolment=enrolment)
        gateway = await start_site(core.app())
        agent = _agent(tmp_path, gateway.url, trust)
        run = asyncio.create_task(agent.run())
        try:
            await asyncio.to_thread(
                release,
                bundle.path,
                ReleasePolicy(),
                bootstrap=broker.bootstrap,
                store_url=f"http://127.0.0.1:{port}",
                private=private,
                topics=topics,
            )
            part = tmp_path / "device" / "downloads" / f"{bundle.digest}.part"
            await until(
                lambda: part.exists() and part.stat().st_size > 150_000, 20, "a partial download"
            )
            _kill(store)
            # the agent found the store gone and failed again on retrying (not a fixed sleep)
            retries = agent.stats["download_retries"]
            await until(lambda: agent.stats["download_retries"] >= retries + 2, 20, "retries")
            assert agent.installer.active("demo") is None  # partial bytes never installed
            assert 0 < part.stat().st_size < bundle.size
            store = await asyncio.to_thread(_serve, store_args, port)
            await until(lambda: agent.states.get("demo") == (1, "installed"), 30, "v1 installed")
            assert agent.stats["range_requests"] >= 1
            assert agent.installer.active("demo").digest == bundle.digest
            assert not part.exists()
            await until(lambda: core.counters["reports"] >= 1, 10, "the install reported")
            assert core.counters["unauthenticated_reports"] == 0  # the enrolled device's MAC
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            await gateway.stop()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 90))
    finally:
        store.kill()
        store.wait(timeout=10)


def test_gateway_restart_agents_reconnect_and_catch_up(
    tmp_path, broker, topics, trust, private, make_bundle
):
    v1, v2 = make_bundle(1), make_bundle(2)
    port = _free_port()
    prefix = topics.releases.removesuffix(".releases")
    gateway_args = [
        "deploy",
        "gateway",
        "--broker",
        broker.url,
        "--topic-prefix",
        prefix,
        "--port",
        str(port),
        "--trust",
        str(trust.path),
        "--enrolment-secret",
        str(tmp_path / "enrolment.secret"),
    ]
    Enrolment.new(tmp_path / "enrolment.secret").enrol("dev-1", tmp_path / "device")
    gateway = _serve(gateway_args, port)

    async def scenario() -> None:
        nonlocal gateway
        store = await start_site(make_store_app(tmp_path / "store"))
        agent = _agent(tmp_path, f"http://127.0.0.1:{port}", trust)
        run = asyncio.create_task(agent.run())
        common = {
            "bootstrap": broker.bootstrap,
            "store_url": store.url,
            "private": private,
            "topics": topics,
        }
        try:
            await asyncio.to_thread(release, v1.path, ReleasePolicy(), **common)
            await until(lambda: agent.states.get("demo") == (1, "installed"), 30, "v1 installed")
            _kill(gateway)
            await asyncio.to_thread(release, v2.path, ReleasePolicy(), **common)
            # v2 is on the topic; wait until the agent has tried (and failed) to hear of it
            polls = agent.stats["poll_failures"]
            await until(lambda: agent.stats["poll_failures"] > polls, 20, "a failed poll")
            assert agent.installer.active("demo").version == 1
            gateway = await asyncio.to_thread(_serve, gateway_args, port)
            await until(lambda: agent.states.get("demo") == (2, "installed"), 30, "v2 installed")
            assert agent.stats["connects"] >= 2
            assert agent.host.running == {"demo": 2}
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            await store.stop()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 90))
    finally:
        gateway.kill()
        gateway.wait(timeout=10)

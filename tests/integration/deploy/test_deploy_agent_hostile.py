"""The agent never dies on input and never loses a legitimate release to a transport fault.

A hostile gateway and a hostile store on loopback (``_hostile.py``) send each bad thing in
turn; the agent runs in the test's event loop with v1 of ``demo`` installed and running.
Every test asserts the refusal or the retry, that the agent is still running, that v1 kept
running meanwhile, and (for transport faults) that the digest was never blacklisted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests._wait import until
from tests.integration.deploy._hostile import HostileGateway, HostileStore, bundle_note, deep_json
from walle.deploy.agent import Agent, AgentSettings
from walle.deploy.bundle import BuiltBundle, open_bundle
from walle.deploy.container import TaskContainer
from walle.deploy.policy import DeviceAttrs, ReleasePolicy, Targeting
from walle.deploy.serving import start_site

_DEVICE = "dev-1"


def _settings(home: Path, gateway_url: str, **kwargs: object) -> AgentSettings:
    fields = {
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.2,
        "download_attempts": 3,
        "download_read_timeout_s": 0.5,
        "retry_min_s": 0.1,
        "retry_max_s": 0.5,
        "poll_interval_s": 0.05,
        **kwargs,
    }
    return AgentSettings(gateway_url=gateway_url, home=home, **fields)


Scenario = Callable[[Agent, HostileGateway], Awaitable[None]]


def _run(
    tmp_path: Path,
    trust,
    v1: BuiltBundle,
    gateway: HostileGateway,
    scenario: Scenario,
    **settings: object,
) -> Agent:
    """Install v1, run an agent against ``gateway`` during ``scenario``; it must stay up."""
    home = tmp_path / "device"

    async def main() -> Agent:
        site = await start_site(gateway.app())
        agent = Agent(
            DeviceAttrs(device_id=_DEVICE),
            _settings(home, site.url, **settings),
            trust,
            TaskContainer(),
        )
        raw = v1.path.read_bytes()
        agent.installer.activate("demo", agent.installer.unpack(open_bundle(raw), v1.digest))
        gateway.probe = lambda: dict(agent.host.running)
        run = asyncio.create_task(agent.run())
        try:
            await until(lambda: agent.host.running == {"demo": 1}, 10, "v1 running")
            await scenario(agent, gateway)
            assert not run.done(), run.exception() if run.done() else None
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            await site.stop()
        return agent

    return asyncio.run(asyncio.wait_for(main(), 60))


def _reported(gateway: HostileGateway, version: int, state: str = "installed") -> Callable:
    """Whether the gateway has received the agent's report of ``state`` for ``version``."""
    return lambda: (version, state) in gateway.states()


# -- the agent never dies on input -------------------------------------------------------


def test_oversized_and_malformed_events_are_skipped_and_the_stream_goes_on(
    tmp_path, trust, private, make_bundle
):
    v1, v2 = make_bundle(1), make_bundle(2)
    ids = [f"device-{i:012d}" for i in range(25_000)] + [_DEVICE]
    big_policy = ReleasePolicy(targeting=Targeting(devices=tuple(ids)))

    async def scenario(agent: Agent, gateway: HostileGateway) -> None:
        store = await HostileStore(v2.path.read_bytes()).start()
        legit = bundle_note(v2, private, store.url, policy=big_policy)
        assert len(legit.to_bytes()) > 512 * 1024  # killed aiohttp's line reader before
        bad = [
            b"x" * (9 * 1024 * 1024),  # over the 8 MiB cap, on one line
            b"{not json",
            b"5",
            b"null",
            deep_json(),
            json.dumps({**json.loads(legit.to_bytes()), "version": "two"}).encode(),
        ]
        with capture_logs() as logs:
            for payload in bad:
                gateway.push(payload)
            await until(lambda: agent.stats["bad_notifications"] == len(bad), 20, "all skipped")
            assert agent.host.running == {"demo": 1}  # the running version keeps running
            gateway.push(legit)
            await until(_reported(gateway, 2), 20, "the 25,001-device release installed")
            await store.stop()
        warnings = [line for line in logs if line["log_level"] == "warning"]
        assert warnings[0]["event"] == "notification over the size cap skipped"
        assert warnings[0]["size"] > 9 * 1024 * 1024
        assert [w["event"] for w in warnings[1:6]] == ["bad notification skipped"] * 5
        assert "recursion limit exceeded" in warnings[4]["error"]
        assert "version" in warnings[5]["error"]
        assert agent.stats["connects"] == 1  # the same stream, never broken
        assert agent.host.running == {"demo": 2}

    _run(tmp_path, trust, v1, HostileGateway(), scenario)


def test_malformed_polling_answers_are_skipped(tmp_path, trust, private, make_bundle):
    v1, v2 = make_bundle(1), make_bundle(2)
    polls = [b"null", b"5", b'"text"', deep_json(), b"{", b'[1, null, "a", {}]']
    polls.append(b"[" + b" " * (2 * 1024 * 1024) + b"]")  # over max_poll_bytes below

    async def scenario(agent: Agent, gateway: HostileGateway) -> None:
        await until(lambda: agent.stats["bad_polls"] == 5, 20, "every bad answer skipped")
        await until(lambda: agent.stats["poll_failures"] >= 1, 20, "the answer over the cap")
        assert agent.stats["bad_notifications"] == 4  # the four items of the list
        assert agent.host.running == {"demo": 1}
        store = await HostileStore(v2.path.read_bytes()).start()
        gateway.polls.append(
            json.dumps([bundle_note(v2, private, store.url).model_dump(mode="json")]).encode()
        )
        await until(_reported(gateway, 2), 20, "v2 installed from a good poll")
        await store.stop()

    gateway = HostileGateway(polls=polls)
    _run(tmp_path, trust, v1, gateway, scenario, poll_only=True, max_poll_bytes=1024 * 1024)


# -- transport faults never blacklist a digest -------------------------------------------


@pytest.mark.parametrize(
    ("modes", "discarded"),
    [
        (["cut", "cut"], 0),  # cut twice, resumed with Range
        (["oversize"], 1),  # a store streaming more than the size
        (["cut", "from_zero"], 0),  # a 206 from byte 0 after a Range request: rewritten
        (["cut", "wrong_start"], 1),  # a 206 from the wrong byte: discarded
        (["hang"], 0),  # cut by the per-read timeout
        (["error", "error", "error", "error"], 0),  # download_failed, then retried
    ],
    ids=["cut", "oversize", "206-from-0", "206-wrong-start", "hang", "503-past-attempts"],
)
def test_transport_faults_retry_and_never_blacklist(
    tmp_path, trust, private, make_bundle, modes, discarded
):
    v1, v2 = make_bundle(1), make_bundle(2, resources={"model.bin": bytes(range(256)) * 400})

    async def scenario(agent: Agent, gateway: HostileGateway) -> None:
        store = await HostileStore(v2.path.read_bytes(), list(modes)).start()
        gateway.push(bundle_note(v2, private, store.url))
        await until(_reported(gateway, 2), 30, "v2 installed once the store behaves")
        await store.stop()
        assert agent.installer.failed_digests() == set()
        assert agent.stats["downloads_discarded"] == discarded
        assert agent.stats["download_retries"] >= 1
        for report in gateway.reports[:-1]:  # v1 ran until v2 was installed
            assert report["running_at_report"] == {"demo": 1}
        assert gateway.reports[-1]["running_at_report"] == {"demo": 2}

    _run(tmp_path, trust, v1, HostileGateway(), scenario)


def test_download_failed_is_retried_while_the_stream_stays_up(
    tmp_path, trust, private, make_bundle
):
    v1, v2 = make_bundle(1), make_bundle(2)

    async def scenario(agent: Agent, gateway: HostileGateway) -> None:
        store = await HostileStore(v2.path.read_bytes(), ["error"] * 7).start()
        gateway.push(bundle_note(v2, private, store.url))  # sent once; never replayed
        await until(_reported(gateway, 2), 30, "v2 installed after two failed rounds")
        await store.stop()
        assert gateway.states() == [
            (2, "download_failed"),
            (2, "download_failed"),
            (2, "installed"),
        ]
        assert agent.stats["report_download_failed"] == 2
        assert agent.stats["release_retries"] == 2
        assert agent.stats["connects"] == 1
        assert agent.installer.failed_digests() == set()
        failed = [r for r in gateway.reports if r["state"] == "download_failed"]
        assert "0 of" in failed[0]["reason"] and "after 3 attempts" in failed[0]["reason"]
        assert all(r["running_at_report"] == {"demo": 1} for r in failed)

    _run(tmp_path, trust, v1, HostileGateway(), scenario)


@pytest.mark.parametrize("torn", ["short", "full-size"])
def test_torn_part_file_from_a_crash_is_discarded_not_blacklisted(
    tmp_path, trust, private, make_bundle, torn
):
    v1, v2 = make_bundle(1), make_bundle(2, resources={"model.bin": b"m" * 50_000})
    part = tmp_path / "device" / "downloads" / f"{v2.digest}.part"
    part.parent.mkdir(parents=True)
    good = v2.path.read_bytes()
    size = len(good) // 2 if torn == "short" else len(good)
    part.write_bytes(good[: size - 4096] + b"\xff" * 4096)  # a torn tail after a crash

    async def scenario(agent: Agent, gateway: HostileGateway) -> None:
        store = await HostileStore(good).start()
        gateway.push(bundle_note(v2, private, store.url))
        await until(_reported(gateway, 2), 30, "v2 installed from a fresh download")
        await store.stop()
        assert agent.stats["downloads_discarded"] == 1
        assert agent.installer.failed_digests() == set()
        assert store.requests[-1] is None  # the last fetch started at byte 0

    _run(tmp_path, trust, v1, HostileGateway(), scenario)


def test_verified_content_failure_is_remembered(tmp_path, trust, private, make_bundle):
    """The contrast: complete, size-correct bytes that hash wrong are a content failure."""
    v1, v2 = make_bundle(1), make_bundle(2)

    async def scenario(agent: Agent, gateway: HostileGateway) -> None:
        store = await HostileStore(v2.path.read_bytes(), ["garbage"]).start()
        gateway.push(bundle_note(v2, private, store.url))
        await until(_reported(gateway, 2, "refused"), 20, "v2 refused")
        await store.stop()
        assert gateway.reports[-1]["reason"] == "digest-mismatch"
        assert agent.installer.failed_digests() == {v2.digest}
        assert agent.host.running == {"demo": 1}

    _run(tmp_path, trust, v1, HostileGateway(), scenario)


def test_hanging_store_does_not_hold_the_task_when_a_newer_release_comes(
    tmp_path, trust, private, make_bundle
):
    v1, v2, v3 = make_bundle(1), make_bundle(2), make_bundle(3)

    async def scenario(agent: Agent, gateway: HostileGateway) -> None:
        hanging = await HostileStore(v2.path.read_bytes(), ["hang"] * 1000).start()
        good = await HostileStore(v3.path.read_bytes()).start()
        gateway.push(bundle_note(v2, private, hanging.url))
        await until(lambda: len(hanging.requests) >= 1, 10, "v2's download hanging")
        gateway.push(bundle_note(v3, private, good.url))
        await until(_reported(gateway, 3), 20, "v3 installed while v2's store hangs")
        await hanging.stop()
        await good.stop()
        assert agent.stats["superseded"] == 1
        assert (2, "download_failed") not in gateway.states()
        assert agent.installer.failed_digests() == set()

    # 1,000 attempts of a 0.5 s read timeout: only superseding frees the task's lock
    _run(tmp_path, trust, v1, HostileGateway(), scenario, download_attempts=1000)


def test_forged_or_replayed_notes_do_not_stop_a_legitimate_download(
    tmp_path, trust, private, make_bundle
):
    v1, v2, v3 = make_bundle(1), make_bundle(2), make_bundle(3)

    async def scenario(agent: Agent, gateway: HostileGateway) -> None:
        store = await HostileStore(v2.path.read_bytes(), ["hang"] * 3).start()
        gateway.push(bundle_note(v2, private, store.url))
        await until(lambda: len(store.requests) >= 1, 10, "v2's download hanging")
        forged = json.loads(bundle_note(v3, private, store.url).to_bytes())
        forged["version"] = 4  # the signatures no longer verify
        gateway.push(json.dumps(forged).encode())
        gateway.push(bundle_note(v1, private, store.url))  # validly signed, but older (seq 1)
        await until(_reported(gateway, 2), 20, "v2 installed once the store answers")
        await store.stop()
        assert agent.stats["superseded"] == 0
        assert len(store.requests) == 4  # three hangs, then the whole bundle
        assert agent.host.running == {"demo": 2}

    _run(tmp_path, trust, v1, HostileGateway(), scenario, download_attempts=10)

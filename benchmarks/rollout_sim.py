"""First hour after a release, for the devices online at release time: push vs polling.

Run: ``.venv/bin/python benchmarks/rollout_sim.py`` (``--clients N`` for the loopback
fan-out measurement, ``--devices N`` for the fleet size, ``--poll-interval-s S``).

1. Loopback measurement (real embedded broker, real gateway, real HTTP): ``--clients`` SSE
   streams on one gateway; a release and then a pause, signed by the roles of a throwaway
   root made for the run (the gateway verifies every record), are published to the
   releases topic and each stream's arrival time is recorded. The first arrival gives ``publish_s``
   (record -> broker -> gateway -> first stream); arrivals over the spread give the
   gateway's fan-out rate. The clients share the process (and the CPU) with the gateway,
   so the rate is a lower bound.
2. Model (``walle.deploy.delivery_sim``) of the devices online at release time in a fleet
   of ``--devices`` with the churn of the 24 h view (online 30 min / offline 3 h), the
   measured ``publish_s`` and fan-out rate, a stated network model, and polling at the
   stated interval with jitter. Prints time to 50/90/99% of those devices for push and
   polling and the ratios, for a release and for a kill switch (pause); writes
   benchmarks/results/rollout_sim.md and the plot benchmarks/results/rollout_first_hour.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from walle.deploy.channel import ChannelTopics, ensure_topics, publish
from walle.deploy.delivery_sim import (
    CHANGES,
    DeliveryModel,
    delivery_table,
    format_seconds,
    missed_before_notice,
    plot_first_hour,
    simulate_polling_delivery,
    simulate_push_delivery,
)
from walle.deploy.enrolment import Enrolment
from walle.deploy.gateway import Gateway
from walle.deploy.notification import Notification, bundle_payload, make_notification
from walle.deploy.roles import TrustStore
from walle.deploy.serving import start_site
from walle.deploy.signing import BUNDLE_DOMAIN, load_private_key, sign
from walle.deploy.simulator import FleetModel
from walle.deploy.testing import write_trust
from walle.kafka import EmbeddedBroker

RESULTS = Path(__file__).parent / "results"


async def _stream(session: aiohttp.ClientSession, url: str, arrivals: dict[bool, list[float]]):
    """One SSE client: the monotonic arrival time of each release / pause frame."""
    async with session.get(f"{url}/events", timeout=aiohttp.ClientTimeout(total=None)) as resp:
        async for line in resp.content:
            if line.startswith(b"data: "):
                paused = bool(json.loads(line[6:])["paused"])
                arrivals[paused].append(time.monotonic())
                if paused:
                    return


def _signed_notes(private: Ed25519PrivateKey) -> dict[bool, Notification]:
    """A release and then its pause (a higher ``seq``), signed by the release key as
    ``walle deploy release`` and ``pause`` would: the gateway forwards nothing else."""
    digest = "0" * 64
    seq = int(time.time())
    return {
        paused: make_notification(
            task="demo",
            version=1,
            digest=digest,
            size=200_000,
            url="http://127.0.0.1/unused",
            private=private,
            bundle_signature=sign(private, BUNDLE_DOMAIN, bundle_payload(digest)),
            paused=paused,
            seq=seq + paused,
        )
        for paused in (False, True)
    }


async def _measure(bootstrap: str, clients: int) -> dict[str, np.ndarray]:
    topics = ChannelTopics.prefixed(f"fanout-{uuid.uuid4().hex[:8]}")
    await asyncio.to_thread(ensure_topics, bootstrap, topics)
    with tempfile.TemporaryDirectory() as keys:  # a throwaway root: root, release, rollout
        trust = TrustStore.from_paths([write_trust(Path(keys))])
        notes = _signed_notes(load_private_key(Path(keys) / "release.key"))
    gateway = Gateway(bootstrap, topics, trust=trust, enrolment=Enrolment(secrets.token_bytes(32)))
    site = await start_site(gateway.app())
    arrivals: dict[bool, list[float]] = {False: [], True: []}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        streams = [
            asyncio.create_task(_stream(session, site.url, arrivals)) for _ in range(clients)
        ]
        await _until(lambda: gateway.counters["connected"] == clients, 60)
        sent = {}
        for paused, note in notes.items():
            sent[paused] = time.monotonic()
            await asyncio.to_thread(publish, bootstrap, topics, note)
            await _until(lambda p=paused: len(arrivals[p]) == clients, 60)
        await asyncio.gather(*streams)
    await site.stop()
    if gateway.counters["dropped_records"] or gateway.counters["stale_records"]:
        raise RuntimeError(f"the gateway dropped the benchmark's notes: {gateway.counters}")
    return {
        change: np.sort(np.array(arrivals[paused]) - sent[paused])
        for change, paused in (("release", False), ("pause", True))
    }


async def _until(predicate, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"loopback fan-out: condition not met within {timeout_s} s")
        await asyncio.sleep(0.005)


def _fanout_rate(delays: np.ndarray) -> float:
    """Frames per second over the spread from first to last arrival."""
    return (delays.size - 1) / max(delays[-1] - delays[0], 1e-6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2_000)
    parser.add_argument("--devices", type=int, default=10_000_000)
    parser.add_argument("--poll-interval-s", type=float, default=900.0)
    parser.add_argument("--connections-per-gateway", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-churn", action="store_true", help="devices online at release stay online"
    )
    args = parser.parse_args()
    with EmbeddedBroker() as broker:
        loop = asyncio.run(_measure(broker.bootstrap, args.clients))
    rates = {change: _fanout_rate(loop[change]) for change in CHANGES}
    fleet = FleetModel(devices=args.devices)
    online = round(
        args.devices * fleet.mean_online_s / (fleet.mean_online_s + fleet.mean_offline_s)
    )
    model = DeliveryModel(
        devices=online,
        poll_interval_s=args.poll_interval_s,
        publish_s=float(np.median([loop[c][0] for c in CHANGES])),
        fanout_per_s=min(rates.values()),
        connections_per_gateway=args.connections_per_gateway,
        mean_online_s=None if args.no_churn else fleet.mean_online_s,
        mean_offline_s=fleet.mean_offline_s,
        seed=args.seed,
    )
    started = time.perf_counter()
    results = [
        simulate(model, change)
        for change in CHANGES
        for simulate in (simulate_push_delivery, simulate_polling_delivery)
    ]
    elapsed = time.perf_counter() - started
    png = plot_first_hour(results, model, RESULTS / "rollout_first_hour.png")
    print("\n".join(_report(args, loop, rates, model, results, elapsed, png)))


def _report(args, loop, rates, model, results, elapsed, png) -> list[str]:
    lines = [
        "# First hour after a release: devices online at release time",
        "",
        f"Command: `{' '.join(['.venv/bin/python benchmarks/rollout_sim.py', *sys.argv[1:]])}`",
        "",
        f"## Loopback: one gateway, {args.clients:,} SSE clients in the same process",
        "",
    ]
    for change in CHANGES:
        d = loop[change]
        lines.append(
            f"- {change}: publish -> first stream {1000 * d[0]:.0f} ms, -> last "
            f"{1000 * d[-1]:.0f} ms; fan-out {rates[change]:,.0f} frames/s"
        )
    lines += [
        "",
        f"## Model: {args.devices:,} devices (30 min online / 3 h offline): "
        f"{model.devices:,} online at release",
        "",
        f"Push: {1000 * model.publish_s:.0f} ms to the gateway, "
        f"{model.connections_per_gateway:,} connections per gateway at "
        f"{model.fanout_per_s:,.0f} frames/s (the loopback rate). Polling every "
        f"{model.poll_interval_s / 60:g} min +- {100 * model.poll_jitter:g}% jitter. "
        f"Network hop lognormal, median {1000 * model.hop_median_s:.0f} ms, sigma "
        f"{model.hop_sigma:g}; a release pulls {model.bundle_bytes / 1000:.0f} kB at "
        f"lognormal bandwidth, median {8 * model.bandwidth_median_bytes_s / 1e6:g} Mbit/s, "
        f"sigma {model.bandwidth_sigma:g}. {_churn_note(model)}",
        "",
        "| change | share of online devices | push-then-pull | polling | polling / push |",
        "|---|---|---|---|---|",
    ]
    for row in delivery_table(results):
        lines.append(
            f"| {row.change} | {100 * row.fraction:g}% | {format_seconds(row.push_s)} | "
            f"{format_seconds(row.polling_s)} | {row.ratio:,.0f}x |"
        )
    lines.append("")
    for result in results:
        within = float(result.coverage_at(np.array([3600.0]))[0])
        lines.append(f"- {result.change}, {result.name}: {100 * within:.2f}% reached within 1 h")
    lines += [
        "",
        f"Simulation wall time {elapsed:.1f} s; plot: {png.relative_to(RESULTS.parent)}",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "rollout_sim.md").write_text("\n".join(lines) + "\n")
    return lines


def _churn_note(model: DeliveryModel) -> str:
    if model.mean_online_s is None:
        return "No churn: devices online at release stay online."
    fanout_s = model.connections_per_gateway / model.fanout_per_s
    push = missed_before_notice(model.mean_online_s, fanout_s)
    poll = missed_before_notice(model.mean_online_s, model.poll_interval_s)
    return (
        f"Churn: sessions end after {model.mean_online_s / 60:g} min on average, devices "
        f"come back after {model.mean_offline_s / 3600:g} h and then catch up; sessions "
        f"ending before the notice is due: push {100 * push:.2f}%, polling {100 * poll:.1f}% "
        "(closed form, no jitter)."
    )


if __name__ == "__main__":
    main()

"""walle.deploy benchmark: a 500-agent loopback fleet and the 10M-device simulator.

Run: ``.venv/bin/python benchmarks/deploy_bench.py`` (add ``--devices N`` for a smaller
simulation). Prints, and writes to benchmarks/results/deploy_bench.md:

- loopback fleet: seconds from release to 99% (and 100%) of matching agents installed,
  and bundle-store requests per matching agent (target <= 1.05);
- simulator: polling / push-then-pull ratios of store requests and time to 95% coverage;
  the coverage plot goes to benchmarks/results/deploy_coverage.png.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from walle.broker import EmbeddedBroker
from walle.deploy.bundle import build_bundle
from walle.deploy.channel import ChannelTopics, ensure_topics
from walle.deploy.fleet import LoopbackFleet
from walle.deploy.notification import sign_bundle
from walle.deploy.policy import DeviceAttrs, ReleasePolicy, Targeting
from walle.deploy.release import release
from walle.deploy.signing import TrustStore, load_private_key, new_key
from walle.deploy.simulator import FleetModel, plot_coverage, simulate_polling, simulate_push
from walle.deploy.testing import write_task_dir

RESULTS = Path(__file__).parent / "results"


async def _fleet_run(root: Path, bootstrap: str, agents: int, matching: int) -> dict[str, float]:
    new_key(root / "keys", "release")
    private = load_private_key(root / "keys" / "release.key")
    trust = TrustStore.from_paths([root / "keys"])
    bundle = build_bundle(
        write_task_dir(root / "src", "demo", 1, resources={"model.bin": bytes(200_000)}),
        root / "dist",
    )
    sign_bundle(bundle.path, private)
    topics = ChannelTopics.prefixed(f"bench-{uuid.uuid4().hex[:8]}")
    ensure_topics(bootstrap, topics)
    devices = [
        DeviceAttrs(device_id=f"d{i:04d}", os="android" if i < matching else "ios")
        for i in range(agents)
    ]
    policy = ReleasePolicy(targeting=Targeting(os=("android",)))
    async with LoopbackFleet(bootstrap, topics, root / "fleet", trust, devices) as fleet:
        ids = [d.device_id for d in devices[:matching]]
        await fleet.wait_for(lambda: fleet.gateway is not None, 5)
        await asyncio.sleep(1.0)  # let every agent open its stream
        started = time.monotonic()
        await asyncio.to_thread(
            release,
            bundle.path,
            policy,
            bootstrap=bootstrap,
            store_url=fleet.store_url,
            private=private,
            topics=topics,
        )

        def installed() -> int:
            return sum(fleet.agents[d].states.get("demo") == (1, "installed") for d in ids)

        await fleet.wait_for(lambda: installed() >= 0.99 * matching, 120)
        t99 = time.monotonic() - started  # includes upload to the store and publish
        await fleet.wait_for(lambda: installed() == matching, 120)
        t100 = time.monotonic() - started
        gets = (await fleet.store_metrics()).get("gets", 0)
    return {"t99": t99, "t100": t100, "requests_per_agent": gets / matching}


def _simulate(devices: int) -> tuple[dict[str, float], Path]:
    model = FleetModel(devices=devices)
    t0 = time.perf_counter()
    push, poll = simulate_push(model), simulate_polling(model)
    elapsed = time.perf_counter() - t0
    png = plot_coverage([push, poll], model.horizon_s, RESULTS / "deploy_coverage.png")
    return {
        "devices": devices,
        "push_requests": push.store_requests,
        "poll_requests": poll.store_requests,
        "push_t95_h": push.time_to(0.95) / 3600,
        "poll_t95_h": poll.time_to(0.95) / 3600,
        "push_t50_h": push.time_to(0.5) / 3600,
        "poll_t50_h": poll.time_to(0.5) / 3600,
        "sim_s": elapsed,
    }, png


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--matching", type=int, default=450)
    parser.add_argument("--devices", type=int, default=10_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        fleet = asyncio.run(_fleet_run(Path(tmp), broker.bootstrap, args.agents, args.matching))
    sim, png = _simulate(args.devices)
    lines = [
        "# walle.deploy benchmark",
        "",
        "Command: `.venv/bin/python benchmarks/deploy_bench.py`",
        "",
        f"## Loopback fleet: {args.agents} agents ({args.matching} matching), one process, "
        "real broker + store + gateway",
        "",
        f"- release -> 99% of matching agents installed: {fleet['t99']:.2f} s "
        f"(100%: {fleet['t100']:.2f} s), upload and publish included",
        f"- bundle-store requests per matching agent: {fleet['requests_per_agent']:.3f} "
        "(target <= 1.05)",
        "",
        f"## Simulator: {sim['devices']:,} devices, 24 h, online 30 min / offline 3 h, "
        "poll every 15 min and on connect",
        "",
        f"- store requests: push-then-pull {sim['push_requests']:,}, polling "
        f"{sim['poll_requests']:,}; ratio polling/push = "
        f"{sim['poll_requests'] / sim['push_requests']:.1f}x",
        f"- time to 95% coverage: push {sim['push_t95_h']:.2f} h, polling "
        f"{sim['poll_t95_h']:.2f} h; ratio polling/push = "
        f"{sim['poll_t95_h'] / sim['push_t95_h']:.3f}",
        f"- time to 50% coverage: push {sim['push_t50_h']:.2f} h, polling "
        f"{sim['poll_t50_h']:.2f} h; ratio = {sim['poll_t50_h'] / sim['push_t50_h']:.3f}",
        f"- simulation wall time: {sim['sim_s']:.1f} s; plot: {png.relative_to(RESULTS.parent)}",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "deploy_bench.md").write_text(text)


if __name__ == "__main__":
    main()

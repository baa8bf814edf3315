"""walle.deploy benchmark: a 500-agent loopback fleet and the 10M-device simulator.

Run: ``.venv/bin/python benchmarks/deploy_bench.py`` (add ``--devices N`` for a smaller
simulation). Prints, and writes to benchmarks/results/deploy_bench.md:

- loopback fleet: seconds from release to 99% (and 100%) of matching agents installed,
  and bundle-store requests per matching agent (target <= 1.05); then, on the same fleet,
  a staged release (1% -> 10% -> 50% -> 100%) walked by the rollout controller, and its
  time to 99% as a ratio to the uniform release's;
- simulator: polling / push-then-pull ratios of store requests and time to 95% coverage;
  the coverage plot goes to benchmarks/results/deploy_coverage.png.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
import uuid
from pathlib import Path

from walle.deploy.bundle import build_bundle
from walle.deploy.channel import ChannelTopics, ensure_topics
from walle.deploy.enrolment import Enrolment
from walle.deploy.fleet import LoopbackFleet
from walle.deploy.follower import FollowerSettings
from walle.deploy.notification import sign_bundle
from walle.deploy.policy import DeviceAttrs, ReleasePolicy, Stages, Targeting
from walle.deploy.release import release
from walle.deploy.rollout import RolloutWatcher
from walle.deploy.signing import TrustStore, load_private_key
from walle.deploy.simulator import FleetModel, plot_coverage, simulate_polling, simulate_push
from walle.deploy.testing import write_task_dir, write_trust
from walle.kafka import EmbeddedBroker

RESULTS = Path(__file__).parent / "results"
#: The staged release the rollout controller walks (its first stage needs ``min_reports``).
STAGES = Stages(percentages=(1, 10, 50, 100), advance_success_rate=0.95, min_reports=3)


async def _fleet_run(root: Path, bootstrap: str, agents: int, matching: int) -> dict[str, float]:
    write_trust(root / "keys")  # root.json: root, release and rollout keys
    private = load_private_key(root / "keys" / "release.key")
    trust = TrustStore.from_paths([root / "keys"])
    enrolment = Enrolment.new(root / "fleet" / "enrolment.secret")  # the fleet enrols devices
    bundles = []
    for version in (1, 2):
        bundle = build_bundle(
            write_task_dir(root / "src", "demo", version, resources={"model.bin": bytes(200_000)}),
            root / "dist",
        )
        sign_bundle(bundle.path, private)
        bundles.append(bundle)
    topics = ChannelTopics.prefixed(f"bench-{uuid.uuid4().hex[:8]}")
    ensure_topics(bootstrap, topics)
    devices = [
        DeviceAttrs(device_id=f"d{i:04d}", os="android" if i < matching else "ios")
        for i in range(agents)
    ]
    target = Targeting(os=("android",))
    watcher = RolloutWatcher(
        bootstrap,
        topics,
        load_private_key(root / "keys" / "rollout.key"),
        settings=FollowerSettings(poll_ms=50, check_s=1.0),
        trust=trust,
        enrolment=enrolment,
    )
    watcher.start()
    try:
        async with LoopbackFleet(bootstrap, topics, root / "fleet", trust, devices) as fleet:
            ids = [d.device_id for d in devices[:matching]]
            await fleet.wait_for(lambda: fleet.gateway is not None, 5)
            await asyncio.sleep(1.0)  # let every agent open its stream
            common = {
                "bootstrap": bootstrap,
                "store_url": fleet.store_url,
                "private": private,
                "topics": topics,
            }

            def installed(version: int) -> int:
                return sum(
                    fleet.agents[d].states.get("demo") == (version, "installed") for d in ids
                )

            started = time.monotonic()
            policy = ReleasePolicy(targeting=target)
            await asyncio.to_thread(release, bundles[0].path, policy, **common)
            await fleet.wait_for(lambda: installed(1) >= 0.99 * matching, 120)
            t99 = time.monotonic() - started  # includes upload to the store and publish
            await fleet.wait_for(lambda: installed(1) == matching, 120)
            t100 = time.monotonic() - started
            gets = (await fleet.store_metrics()).get("gets", 0)

            started = time.monotonic()
            staged = ReleasePolicy(targeting=target, stages=STAGES, salt="bench")
            await asyncio.to_thread(release, bundles[1].path, staged, **common)
            await fleet.wait_for(lambda: installed(2) >= 0.99 * matching, 120)
            staged_t99 = time.monotonic() - started
            gateway = fleet.gateway_core
            dropped = gateway.counters["dropped_records"] if gateway else 0
    finally:
        watcher.stop()
    if dropped or watcher.dropped:  # the run measures the verified path: nothing is forged
        raise RuntimeError(f"records dropped: gateway {dropped}, controller {watcher.dropped}")
    return {
        "t99": t99,
        "t100": t100,
        "requests_per_agent": gets / matching,
        "staged_t99": staged_t99,
        "staged_steps": len(watcher.applied),
    }


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
    first = args.matching * STAGES.percentages[0] / 100  # devices hashed into stage 1, about
    if first < STAGES.min_reports:
        needed = math.ceil(100 * STAGES.min_reports / STAGES.percentages[0])
        parser.error(
            f"--matching {args.matching} puts about {first:g} devices in the staged release's"
            f" first stage ({STAGES.percentages[0]:g}%), which needs {STAGES.min_reports}"
            f" reports to advance: use --matching {needed} or more"
        )
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        fleet = asyncio.run(_fleet_run(Path(tmp), broker.bootstrap, args.agents, args.matching))
    sim, png = _simulate(args.devices)
    lines = [
        "# walle.deploy benchmark",
        "",
        f"Command: `{' '.join(['.venv/bin/python benchmarks/deploy_bench.py', *sys.argv[1:]])}`",
        "",
        f"## Loopback fleet: {args.agents} agents ({args.matching} matching), one process, "
        "real broker + store + gateway",
        "",
        f"- release -> 99% of matching agents installed: {fleet['t99']:.2f} s "
        f"(100%: {fleet['t100']:.2f} s), upload and publish included",
        f"- bundle-store requests per matching agent: {fleet['requests_per_agent']:.3f} "
        "(target <= 1.05)",
        f"- staged release 1% -> 10% -> 50% -> 100% (advance at >= 95% success with >= 3 "
        f"reports from each stage), walked by the rollout controller in "
        f"{fleet['staged_steps']} steps: 99% installed in {fleet['staged_t99']:.2f} s; "
        f"ratio staged/uniform = {fleet['staged_t99'] / fleet['t99']:.2f}x",
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

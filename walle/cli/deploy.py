"""`walle deploy`: keys, root metadata, bundles, the store and gateway, releases, agents.

Servers and the rollout controller are single commands (`walle deploy store`, `gateway`,
`rollout`); `walle deploy status` only reads: it creates no topic.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from walle.cli._deploy_options import (
    BROKER,
    ENROLMENT,
    EXISTING,
    KEY,
    PORT,
    PREFIX,
    TRUST,
    channel,
    serve,
)
from walle.cli.deploy_agent import agent_cmd
from walle.cli.deploy_status import status_cmd
from walle.cli.deploy_trust import keys_new, root_group

if TYPE_CHECKING:
    from aiohttp import web


@click.group("deploy")
def deploy_group() -> None:
    """Ship tasks to devices: sign, store, release, roll out, watch, roll back."""


@deploy_group.group("bundle")
def bundle_group() -> None:
    """Build and sign task bundles."""


@bundle_group.command("build")
@click.argument("task_dir", type=EXISTING)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("dist"),
    show_default=True,
    help="Where the bundle is written.",
)
def bundle_build(task_dir: Path, out_dir: Path) -> None:
    """Pack TASK_DIR (task.yaml + scripts + resources) into a content-addressed bundle."""
    from walle.deploy.bundle import build_bundle

    built = build_bundle(task_dir, out_dir)
    click.echo(f"{built.path} sha256={built.digest} size={built.size}")


@bundle_group.command("sign")
@click.argument("bundle", type=EXISTING)
@click.option("--key", "key_path", type=EXISTING, required=True, help="Private key (.key).")
def bundle_sign(bundle: Path, key_path: Path) -> None:
    """Sign BUNDLE's digest; writes BUNDLE.sig next to it."""
    from walle.deploy.notification import sign_bundle
    from walle.deploy.signing import load_private_key

    click.echo(str(sign_bundle(bundle, load_private_key(key_path))))


@deploy_group.command("store")
@click.option(
    "--bundles-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bundles"),
    show_default=True,
    help="Directory holding the bundles.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8070, show_default=True, type=PORT)
@click.option(
    "--max-bytes-per-s",
    default=0.0,
    type=click.FloatRange(min=0),
    help="Bandwidth cap (0 = none).",
)
def store_serve(bundles_dir: Path, host: str, port: int, max_bytes_per_s: float) -> None:
    """Serve the bundle store (content-addressed HTTP): PUT/POST upload (digest checked),
    GET with Range and ETag."""
    from walle.deploy.store import make_store_app

    def _app() -> web.Application:
        return make_store_app(bundles_dir, max_bytes_per_s=max_bytes_per_s)

    serve(_app, host, port, "store")


@deploy_group.command("gateway")
@BROKER
@PREFIX
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8071, show_default=True, type=PORT)
@TRUST
@ENROLMENT
@click.option("--rollout-key", type=click.Path(path_type=Path), default=None, hidden=True)
def gateway_serve(
    broker: str,
    topic_prefix: str,
    host: str,
    port: int,
    trust_paths: tuple[Path, ...],
    secret_path: Path,
    rollout_key: Path | None,
) -> None:
    """Run the push gateway: fan verified release notifications out to agents (SSE /events,
    polling /notifications) and take enrolled devices' authenticated status reports.

    The gateway faces the devices, so it holds no signing key: records not signed by the
    roles of the --trust root are dropped, reports without a valid device MAC refused.
    """
    from walle.deploy.enrolment import Enrolment
    from walle.deploy.gateway import Gateway
    from walle.deploy.roles import TrustStore

    if rollout_key is not None:
        raise click.UsageError(
            "--rollout-key is gone: the gateway faces the devices and holds no signing key."
            " Run the controller on its own host: walle deploy rollout --key ROLLOUT.key"
            " --trust ROOT.json --enrolment-secret SECRET"
        )
    trust = TrustStore.from_paths(list(trust_paths))
    enrolment = Enrolment.load(secret_path)
    bootstrap, topics = channel(broker, topic_prefix)

    def _app() -> web.Application:
        return Gateway(bootstrap, topics, trust=trust, enrolment=enrolment).app()

    serve(_app, host, port, "gateway")


@deploy_group.command("rollout")
@BROKER
@KEY
@PREFIX
@TRUST
@ENROLMENT
@click.option("--once", is_flag=True, help="Read the topics, apply what is due now, exit.")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve the controller's Prometheus metrics on 127.0.0.1:PORT/metrics.",
)
def rollout_watch(
    broker: str,
    key_path: Path,
    topic_prefix: str,
    trust_paths: tuple[Path, ...],
    secret_path: Path,
    once: bool,
    metrics_port: int | None = None,
) -> None:
    """Run the staged-rollout controller: advance releases on success, halt them when
    failures cross the threshold.

    --key is the rollout key (it signs only stage changes and halts); notifications not
    signed by the --trust root's roles and unauthenticated reports are ignored.
    """
    import signal
    import threading

    from walle.deploy.enrolment import Enrolment
    from walle.deploy.roles import TrustStore
    from walle.deploy.rollout import RolloutWatcher
    from walle.deploy.signing import load_private_key

    bootstrap, topics = channel(broker, topic_prefix)
    watcher = RolloutWatcher(
        bootstrap,
        topics,
        load_private_key(key_path),
        trust=TrustStore.from_paths(list(trust_paths)),
        enrolment=Enrolment.load(secret_path),
    )
    if once:
        for note in watcher.run_once():
            click.echo(f"{note.task} v{note.version}: {note.reason}")
        return
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if metrics_port is not None:  # stage, device counts, steps (walle/deploy/metrics.py)
        from walle.deploy.metrics import rollout_registry, serve_registry

        serve_registry(rollout_registry(watcher), metrics_port)
    watcher.start()
    click.echo("rollout controller watching", err=True)
    shown = 0
    try:
        while not stop.wait(0.2):
            for note in watcher.applied[shown:]:
                click.echo(f"{note.task} v{note.version}: {note.reason}")
                shown += 1
    finally:
        watcher.stop()


@deploy_group.command("advance")
@click.argument("task")
@BROKER
@KEY
@PREFIX
def advance_cmd(task: str, broker: str, key_path: Path, topic_prefix: str) -> None:
    """Move TASK's staged release to its next stage now (a manual step)."""
    from walle.deploy.release import advance
    from walle.deploy.signing import load_private_key

    bootstrap, topics = channel(broker, topic_prefix)
    note = advance(task, bootstrap=bootstrap, private=load_private_key(key_path), topics=topics)
    staged = note.policy.stages  # advance refuses a release without stages
    stages = staged.percentages if staged is not None else ()
    click.echo(
        f"advanced {task} v{note.version} to stage {note.policy.stage + 1}/{len(stages)} "
        f"({note.policy.effective_percentage:g}%)"
    )


@deploy_group.command("release")
@click.argument("bundle", type=EXISTING)
@click.option(
    "--policy",
    "policy_path",
    type=EXISTING,
    default=None,
    help="YAML release policy (default: everyone).",
)
@BROKER
@click.option("--store", "store_url", required=True, help="Base URL of the bundle store.")
@KEY
@PREFIX
@click.option(
    "--ttl-s",
    default=7 * 24 * 3600.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds until the notification expires.",
)
def release_cmd(
    bundle: Path,
    policy_path: Path | None,
    broker: str,
    store_url: str,
    key_path: Path,
    topic_prefix: str,
    ttl_s: float,
) -> None:
    """Upload BUNDLE to the store and publish its signed notification."""
    from walle.deploy.policy import ReleasePolicy, load_policy
    from walle.deploy.release import release
    from walle.deploy.signing import load_private_key

    policy = load_policy(policy_path) if policy_path else ReleasePolicy()
    bootstrap, topics = channel(broker, topic_prefix)
    note = release(
        bundle,
        policy,
        bootstrap=bootstrap,
        store_url=store_url,
        private=load_private_key(key_path),
        topics=topics,
        ttl_s=ttl_s,
    )
    click.echo(f"released {note.task} v{note.version} sha256={note.digest} url={note.url}")


@deploy_group.command("rollback")
@click.argument("task")
@click.option("--to", "to_version", type=int, default=None, help="Version to return to.")
@BROKER
@KEY
@PREFIX
@click.option(
    "--force", is_flag=True, help="Publish even if every device that tried that version failed."
)
def rollback_cmd(
    task: str,
    to_version: int | None,
    broker: str,
    key_path: Path,
    topic_prefix: str,
    force: bool,
) -> None:
    """Publish a signed rollback of TASK to an earlier version.

    Refused when every device that reported on that version rejected it (they would keep
    what they run); --force publishes it anyway.
    """
    from walle.deploy.release import rollback
    from walle.deploy.signing import load_private_key

    bootstrap, topics = channel(broker, topic_prefix)
    note = rollback(
        task,
        bootstrap=bootstrap,
        private=load_private_key(key_path),
        to_version=to_version,
        topics=topics,
        force=force,
    )
    click.echo(f"rolled back {task} to v{note.version}")


@deploy_group.command("pause")
@click.argument("task")
@BROKER
@KEY
@PREFIX
def pause_cmd(task: str, broker: str, key_path: Path, topic_prefix: str) -> None:
    """Kill switch: stop further installs of TASK's current release."""
    from walle.deploy.release import pause
    from walle.deploy.signing import load_private_key

    bootstrap, topics = channel(broker, topic_prefix)
    note = pause(task, bootstrap=bootstrap, private=load_private_key(key_path), topics=topics)
    click.echo(f"paused {task} v{note.version}")


for _command in (keys_new, root_group, agent_cmd, status_cmd):
    deploy_group.add_command(_command)

COMMANDS: list[click.Command] = [deploy_group]

"""`walle` sub-commands of the deploy area: keys, bundles, store, releases, gateway, agent."""

from __future__ import annotations

from pathlib import Path

import click

_EXISTING = click.Path(exists=True, path_type=Path)


@click.group("keys")
def keys_group() -> None:
    """Manage Ed25519 signing keys."""


@keys_group.command("new")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("keys"),
    show_default=True,
    help="Directory for NAME.key and NAME.pub.",
)
@click.option("--name", default="release", show_default=True, help="Key file base name.")
def keys_new(out_dir: Path, name: str) -> None:
    """Create a new signing key pair (the .pub goes to devices' trust directory)."""
    from walle.deploy.signing import new_key

    key_path, pub_path, kid = new_key(out_dir, name)
    click.echo(f"key {kid}: private {key_path}, public {pub_path}")


@click.group("bundle")
def bundle_group() -> None:
    """Build and sign task bundles."""


@bundle_group.command("build")
@click.argument("task_dir", type=_EXISTING)
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
@click.argument("bundle", type=_EXISTING)
@click.option("--key", "key_path", type=_EXISTING, required=True, help="Private key (.key).")
def bundle_sign(bundle: Path, key_path: Path) -> None:
    """Sign BUNDLE's digest; writes BUNDLE.sig next to it."""
    from walle.deploy.notification import sign_bundle
    from walle.deploy.signing import load_private_key

    click.echo(str(sign_bundle(bundle, load_private_key(key_path))))


def _serve(app_factory: object, host: str, port: int, what: str) -> None:
    import asyncio

    from walle.deploy.serving import serve_forever

    def _ready(site: object) -> None:
        click.echo(f"{what} listening on {site.url}", err=True)  # type: ignore[attr-defined]

    asyncio.run(serve_forever(app_factory(), host, port, _ready))  # type: ignore[operator]


@click.group("store")
def store_group() -> None:
    """The bundle store (content-addressed HTTP)."""


@store_group.command("serve")
@click.option(
    "--root",
    type=click.Path(path_type=Path),
    default=Path("bundles"),
    show_default=True,
    help="Directory holding the bundles.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8070, show_default=True, type=int)
@click.option("--max-bytes-per-s", default=0.0, type=float, help="Bandwidth cap (0 = none).")
def store_serve(root: Path, host: str, port: int, max_bytes_per_s: float) -> None:
    """Serve bundles: PUT/POST upload (digest checked), GET with Range and ETag."""
    from walle.deploy.store import make_store_app

    _serve(lambda: make_store_app(root, max_bytes_per_s=max_bytes_per_s), host, port, "store")


_BROKER = click.option("--broker", required=True, help="kafka://HOST:PORT of the broker.")
_PREFIX = click.option(
    "--topic-prefix",
    default="walle",
    show_default=True,
    help="Topics are PREFIX.releases, PREFIX.releases.history, PREFIX.status.",
)
_KEY = click.option(
    "--key",
    "key_path",
    type=_EXISTING,
    required=True,
    help="Private key (.key) that signs the notification.",
)


_TRUST = click.option(
    "--trust",
    "trust_paths",
    type=_EXISTING,
    multiple=True,
    required=True,
    help="Root metadata (root.json, or the directory holding it) naming the trusted keys.",
)
_ENROLMENT = click.option(
    "--enrolment-secret",
    "secret_path",
    type=_EXISTING,
    required=True,
    help="Enrolment secret (walle root enrol-secret): checks devices' status reports.",
)


def _channel(broker: str, prefix: str) -> tuple[str, object]:
    from walle.deploy.channel import ChannelTopics, ensure_topics
    from walle.kafka import parse_broker_url

    bootstrap = ",".join(parse_broker_url(broker))
    topics = ChannelTopics.prefixed(prefix)
    ensure_topics(bootstrap, topics)
    return bootstrap, topics


@click.group("gateway")
def gateway_group() -> None:
    """The push gateway (Kafka notifications -> SSE to agents)."""


@gateway_group.command("serve")
@_BROKER
@_PREFIX
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8071, show_default=True, type=int)
@_TRUST
@_ENROLMENT
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
    """Fan verified release notifications out to agents (SSE /events, polling /notifications)
    and take enrolled devices' authenticated status reports (POST /status).

    The gateway faces the devices, so it holds no signing key: records not signed by the
    roles of the --trust root are dropped, reports without a valid device MAC refused.
    """
    from walle.deploy.enrolment import Enrolment
    from walle.deploy.gateway import Gateway
    from walle.deploy.roles import TrustStore

    if rollout_key is not None:
        raise click.UsageError(
            "--rollout-key is gone: the gateway faces the devices and holds no signing key."
            " Run the controller on its own host: walle rollout watch --key ROLLOUT.key"
            " --trust ROOT.json --enrolment-secret SECRET"
        )
    trust = TrustStore.from_paths(list(trust_paths))
    enrolment = Enrolment.load(secret_path)
    bootstrap, topics = _channel(broker, topic_prefix)

    def _app() -> object:
        return Gateway(bootstrap, topics, trust=trust, enrolment=enrolment).app()  # type: ignore[arg-type]

    _serve(_app, host, port, "gateway")


@click.group("rollout")
def rollout_group() -> None:
    """Staged rollouts: the controller that advances or halts them."""


@rollout_group.command("watch")
@_BROKER
@_KEY
@_PREFIX
@_TRUST
@_ENROLMENT
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
    """Advance staged releases on success and halt them when failures cross the threshold.

    --key is the rollout key (it signs only stage changes and halts); notifications not
    signed by the --trust root's roles and unauthenticated reports are ignored.
    """
    import signal
    import threading

    from walle.deploy.enrolment import Enrolment
    from walle.deploy.roles import TrustStore
    from walle.deploy.rollout import RolloutWatcher
    from walle.deploy.signing import load_private_key

    bootstrap, topics = _channel(broker, topic_prefix)
    watcher = RolloutWatcher(
        bootstrap,
        topics,  # type: ignore[arg-type]
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


@click.command("advance")
@click.argument("task")
@_BROKER
@_KEY
@_PREFIX
def advance_cmd(task: str, broker: str, key_path: Path, topic_prefix: str) -> None:
    """Move TASK's staged release to its next stage now (a manual step)."""
    from walle.deploy.release import advance
    from walle.deploy.signing import load_private_key

    bootstrap, topics = _channel(broker, topic_prefix)
    note = advance(task, bootstrap=bootstrap, private=load_private_key(key_path), topics=topics)  # type: ignore[arg-type]
    stages = note.policy.stages.percentages  # type: ignore[union-attr]
    click.echo(
        f"advanced {task} v{note.version} to stage {note.policy.stage + 1}/{len(stages)} "
        f"({note.policy.effective_percentage:g}%)"
    )


@click.command("release")
@click.argument("bundle", type=_EXISTING)
@click.option(
    "--policy",
    "policy_path",
    type=_EXISTING,
    default=None,
    help="YAML release policy (default: everyone).",
)
@_BROKER
@click.option("--store", "store_url", required=True, help="Base URL of the bundle store.")
@_KEY
@_PREFIX
@click.option(
    "--ttl",
    "ttl_s",
    default=7 * 24 * 3600.0,
    show_default=True,
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
    bootstrap, topics = _channel(broker, topic_prefix)
    note = release(
        bundle,
        policy,
        bootstrap=bootstrap,
        store_url=store_url,
        private=load_private_key(key_path),
        topics=topics,
        ttl_s=ttl_s,
    )  # type: ignore[arg-type]
    click.echo(f"released {note.task} v{note.version} sha256={note.digest} url={note.url}")


@click.command("rollback")
@click.argument("task")
@click.option("--to", "to_version", type=int, default=None, help="Version to return to.")
@_BROKER
@_KEY
@_PREFIX
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

    bootstrap, topics = _channel(broker, topic_prefix)
    note = rollback(
        task,
        bootstrap=bootstrap,
        private=load_private_key(key_path),
        to_version=to_version,
        topics=topics,
        force=force,
    )  # type: ignore[arg-type]
    click.echo(f"rolled back {task} to v{note.version}")


@click.command("pause")
@click.argument("task")
@_BROKER
@_KEY
@_PREFIX
def pause_cmd(task: str, broker: str, key_path: Path, topic_prefix: str) -> None:
    """Kill switch: stop further installs of TASK's current release."""
    from walle.deploy.release import pause
    from walle.deploy.signing import load_private_key

    bootstrap, topics = _channel(broker, topic_prefix)
    note = pause(task, bootstrap=bootstrap, private=load_private_key(key_path), topics=topics)  # type: ignore[arg-type]
    click.echo(f"paused {task} v{note.version}")


@click.command("status")
@click.argument("task")
@_BROKER
@_PREFIX
def status_cmd(task: str, broker: str, topic_prefix: str) -> None:
    """TASK's release in force, what its devices run, and their last reports with reasons."""
    from walle.deploy.channel import last_reports, latest
    from walle.deploy.errors import ChannelError

    bootstrap, topics = _channel(broker, topic_prefix)
    note = latest(bootstrap, topics, task)  # type: ignore[arg-type]
    if note is None:
        raise ChannelError(f"task {task!r} has never been released")
    click.echo(_describe_release(note))
    last = last_reports(bootstrap, topics, task)  # type: ignore[arg-type]
    click.echo(_describe_running(note.version, last.values()))
    _status_table(task, last.values())


def _status_table(task: str, last: object) -> None:
    """Devices per (reported version, state, version run), with the latest reason."""
    from collections import Counter

    from rich.console import Console
    from rich.table import Table

    from walle.deploy.channel import running_version

    counts: Counter[tuple[int, str, str]] = Counter()
    reasons: dict[tuple[int, str, str], str] = {}
    for report in sorted(last, key=lambda r: r.ts):  # type: ignore[attr-defined]
        runs = running_version(report)
        row = (report.version or 0, report.state, f"v{runs}" if runs is not None else "-")
        counts[row] += 1
        reasons[row] = report.reason
    table = Table(title=task)
    for column in ("version", "state", "devices", "runs", "reason"):
        table.add_column(column, overflow="fold")
    for row in sorted(counts):
        version, state, runs = row
        table.add_row(str(version), state, str(counts[row]), runs, reasons[row] or "")
    Console(width=max(_terminal_width(), 120)).print(table)


def _terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((120, 24)).columns


def _describe_running(in_force: int, last: object) -> str:
    """One line: which versions the devices that reported run now."""
    from collections import Counter

    from walle.deploy.channel import running_version

    runs = Counter(running_version(report) for report in last)  # type: ignore[attr-defined]
    if not runs:
        return "devices run: no device has reported yet"
    parts = [
        f"v{version} on {n}" if version is not None else f"nothing on {n}"
        for version, n in sorted(runs.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
    ]
    line = f"devices run: {', '.join(parts)} (of {sum(runs.values())} reporting)"
    if runs.get(in_force, 0) < sum(runs.values()):
        line += f"; not all run v{in_force}, the release in force: see the reasons below"
    return line


def _describe_release(note: object) -> str:
    """One line: the release in force, its stage and whether it is paused (and why)."""
    policy = note.policy  # type: ignore[attr-defined]
    line = f"release {note.task} v{note.version}"  # type: ignore[attr-defined]
    if policy.stages is not None:
        line += f" stage {policy.stage + 1}/{len(policy.stages.percentages)}"
    line += f" at {policy.effective_percentage:g}%"
    if note.rollback:  # type: ignore[attr-defined]
        line += " (rollback)"
    if note.paused:  # type: ignore[attr-defined]
        line += f" PAUSED: {note.reason or 'by hand'}"  # type: ignore[attr-defined]
    return line


def _device_attrs(path: Path) -> object:
    """The agent's DeviceAttrs from a JSON file; one-line errors naming the file and field."""
    import pydantic

    from walle.deploy.errors import describe_config_errors
    from walle.deploy.policy import DeviceAttrs
    from walle.errors import ValidationError

    try:
        return DeviceAttrs.model_validate_json(path.read_bytes())
    except pydantic.ValidationError as exc:
        message, field = describe_config_errors(exc, DeviceAttrs)
        raise ValidationError(
            f"bad device attributes: {message}", where=str(path), field=field
        ) from exc


@click.command("agent")
@click.option(
    "--device-attrs",
    "attrs_path",
    type=_EXISTING,
    required=True,
    help="JSON file with device_id, app_version, os, os_version, model, tier, ...",
)
@click.option("--gateway", "gateway_url", required=True, help="Base URL of the push gateway.")
@click.option(
    "--home",
    type=click.Path(path_type=Path),
    required=True,
    help="Agent state directory (installed tasks, downloads).",
)
@click.option(
    "--trust",
    "trust_paths",
    type=_EXISTING,
    multiple=True,
    required=True,
    help="Root metadata (root.json, or the directory holding it) naming the trusted keys.",
)
@click.option("--poll", is_flag=True, help="Poll instead of keeping an SSE stream.")
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Device database: bundles with an 'app' entry point (file.py:app) run in a device"
    " runtime over its event log, outputs going to its feature store.",
)
@click.option(
    "--app",
    "app_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="With --db: a base App file the deployed tasks join [default: an empty App"
    " named 'deployed'].",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="With --db: serve the device runtime's Prometheus metrics on 127.0.0.1:PORT/metrics.",
)
def agent_cmd(
    attrs_path: Path,
    gateway_url: str,
    home: Path,
    trust_paths: tuple[Path, ...],
    poll: bool,
    db_path: Path | None,
    app_path: Path | None,
    metrics_port: int | None,
) -> None:
    """Run a device agent: follow releases, install matching ones, run their tasks.

    Without --db, tasks run in a task container (entry points called as functions); with
    --db, a walle App bundle joins a device runtime that follows the database's event log
    (append events with e.g. `walle run DEVICE_APP --log NEW.jsonl --db DB`). Installs,
    activations and rollbacks are logged (--log-level info); failures are warnings.
    """
    import asyncio
    import contextlib

    from walle.deploy.agent import Agent, AgentSettings
    from walle.deploy.container import TaskContainer
    from walle.deploy.signing import TrustStore

    if app_path is not None and db_path is None:
        raise click.UsageError("--app needs --db (the device database the App runs over)")
    if metrics_port is not None and db_path is None:
        raise click.UsageError("--metrics-port needs --db (it serves the device runtime's metrics)")
    attrs = _device_attrs(attrs_path)
    settings = AgentSettings(gateway_url=gateway_url.rstrip("/"), home=home, poll_only=poll)
    trust = TrustStore.from_paths(list(trust_paths))
    where = f", tasks in {db_path}" if db_path is not None else ""
    click.echo(f"agent {attrs.device_id} following {settings.gateway_url}{where}", err=True)  # type: ignore[attr-defined]
    if db_path is None:
        agent = Agent(attrs, settings, trust, TaskContainer())
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(agent.run())
        return
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run_device_agent(attrs, settings, trust, db_path, app_path, metrics_port))


async def _run_device_agent(
    attrs: object,
    settings: object,
    trust: object,
    db_path: Path,
    app_path: Path | None,
    metrics_port: int | None = None,
) -> None:
    """An agent whose App bundles run in a DeviceRuntime over ``db_path``, following its log."""
    import asyncio
    import contextlib

    from walle.deploy.agent import Agent
    from walle.deploy.container import TaskContainer
    from walle.deploy.device_host import follow_log, open_device_host
    from walle.deploy.install import Installer

    base = None
    if app_path is not None:
        from walle.streams.app import load_app

        base = load_app(app_path)
    installer = Installer(settings.home)  # type: ignore[attr-defined]
    host = open_device_host(db_path, installer, base_app=base, fallback=TaskContainer())
    if metrics_port is not None:  # Prometheus /metrics of the runtime (device/metrics.py)
        from walle.streams.device.metrics import DeviceMetrics

        host.runtime.metrics = DeviceMetrics(host.runtime)
        host.runtime.metrics.serve(metrics_port)
    try:
        agent = Agent(attrs, settings, trust, host)  # type: ignore[arg-type]
        follower = asyncio.create_task(follow_log(host.runtime))
        try:
            await agent.run()
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
    finally:
        host.runtime.close()


@click.group("root")
def root_group() -> None:
    """Root metadata: which keys may sign releases (release role) and stage changes
    (rollout role), k of n root keys to change that; device enrolment for status reports."""


@root_group.command("init")
@click.option("--root-key", "root_keys", type=_EXISTING, multiple=True, required=True)
@click.option("--release-key", "release_keys", type=_EXISTING, multiple=True, required=True)
@click.option("--rollout-key", "rollout_keys", type=_EXISTING, multiple=True, required=True)
@click.option("--threshold", default=1, show_default=True, help="Root signatures needed.")
@click.option(
    "--previous",
    type=_EXISTING,
    default=None,
    help="The root this one replaces (rotation/revocation): the version becomes its + 1.",
)
@click.option("--expires-days", default=365.0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
def root_init(
    root_keys: tuple[Path, ...],
    release_keys: tuple[Path, ...],
    rollout_keys: tuple[Path, ...],
    threshold: int,
    previous: Path | None,
    expires_days: float,
    out: Path,
) -> None:
    """Write unsigned root metadata from public keys (.pub); sign it with `walle root sign`.

    A key left out of a new version (--previous) is revoked once devices take it.
    """
    from walle.deploy.roles import RootMetadata, new_root

    version = 1 if previous is None else RootMetadata.load(previous).signed.version + 1
    meta = new_root(
        {"root": list(root_keys), "release": list(release_keys), "rollout": list(rollout_keys)},
        {"root": threshold},
        version=version,
        expires_in_s=expires_days * 86400,
    )
    out.write_bytes(meta.to_bytes())
    click.echo(f"root v{version} written to {out}: sign it with {threshold} root key(s)")


@root_group.command("sign")
@click.argument("root_file", type=_EXISTING)
@click.option("--key", "key_path", type=_EXISTING, required=True, help="A root private key.")
def root_sign(root_file: Path, key_path: Path) -> None:
    """Add a root key's signature to ROOT_FILE (for a new version: old and new root keys)."""
    from walle.deploy.roles import RootMetadata
    from walle.deploy.signing import load_private_key

    meta = RootMetadata.load(root_file).signed_by(load_private_key(key_path))
    root_file.write_bytes(meta.to_bytes())
    click.echo(f"root v{meta.signed.version}: {len(meta.signatures)} signature(s)")


@root_group.command("update")
@click.argument("new_root", type=_EXISTING)
@click.option("--trust", "trust_path", type=_EXISTING, required=True, help="The device's root.")
def root_update(new_root: Path, trust_path: Path) -> None:
    """Move a device's trust to NEW_ROOT if the current root's keys signed it (k of n)."""
    from walle.deploy.roles import RootMetadata, TrustStore

    trust = TrustStore.from_paths([trust_path])
    trust.update(RootMetadata.load(new_root))
    click.echo(f"trusting root v{trust.version} ({trust.path})")


@root_group.command("enrol-secret")
@click.option("--out", type=click.Path(path_type=Path), required=True)
def root_enrol_secret(out: Path) -> None:
    """Create the enrolment secret the gateway and rollout controller check reports with."""
    from walle.deploy.enrolment import Enrolment

    Enrolment.new(out)
    click.echo(f"enrolment secret written to {out} (keep it off devices)")


@root_group.command("enrol")
@click.argument("device_id")
@click.option("--secret", "secret_path", type=_EXISTING, required=True)
@click.option("--home", type=click.Path(path_type=Path), required=True, help="Agent home.")
def root_enrol(device_id: str, secret_path: Path, home: Path) -> None:
    """Give device DEVICE_ID its status-report key (HOME/device.key)."""
    from walle.deploy.enrolment import Enrolment

    path = Enrolment.load(secret_path).enrol(device_id, home)
    click.echo(f"device {device_id} enrolled: {path}")


COMMANDS: list[click.Command] = [
    keys_group,
    bundle_group,
    store_group,
    gateway_group,
    release_cmd,
    rollback_cmd,
    pause_cmd,
    status_cmd,
    agent_cmd,
    advance_cmd,
    rollout_group,
    root_group,
]

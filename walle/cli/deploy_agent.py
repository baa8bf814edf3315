"""`walle deploy agent`: a device agent following releases, optionally over a device database."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from walle.cli._deploy_options import EXISTING, HOME, TRUST

if TYPE_CHECKING:
    from walle.deploy.agent import AgentSettings
    from walle.deploy.policy import DeviceAttrs
    from walle.deploy.roles import TrustStore


def _device_attrs(path: Path) -> DeviceAttrs:
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
    type=EXISTING,
    required=True,
    help="JSON file with device_id, app_version, os, os_version, model, tier, ...",
)
@click.option("--gateway", "gateway_url", required=True, help="Base URL of the push gateway.")
@HOME
@TRUST
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
    metavar="APP",
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
    click.echo(f"agent {attrs.device_id} following {settings.gateway_url}{where}", err=True)
    if db_path is None:
        agent = Agent(attrs, settings, trust, TaskContainer())
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(agent.run())
        return
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run_device_agent(attrs, settings, trust, db_path, app_path, metrics_port))


async def _run_device_agent(
    attrs: DeviceAttrs,
    settings: AgentSettings,
    trust: TrustStore,
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
    installer = Installer(settings.home)
    host = open_device_host(db_path, installer, base_app=base, fallback=TaskContainer())
    if metrics_port is not None:  # Prometheus /metrics of the runtime (device/metrics.py)
        from walle.streams.device.metrics import DeviceMetrics

        host.runtime.metrics = DeviceMetrics(host.runtime)
        host.runtime.metrics.serve(metrics_port)
    try:
        agent = Agent(attrs, settings, trust, host)
        follower = asyncio.create_task(follow_log(host.runtime))
        try:
            await agent.run()
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
    finally:
        host.runtime.close()

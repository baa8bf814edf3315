"""docker/compose.yaml: valid, a 3-node KRaft cluster, and every walle command real.

Each walle service's command is parsed by the real click command tree, so a renamed
sub-command or flag fails here before it fails in a deployment.
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import yaml

from walle.cli import cli
from walle.kafka import parse_broker_url

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker" / "compose.yaml"


def _services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]


def _walle_services() -> list[str]:
    return [name for name, spec in _services().items() if spec.get("image", "").startswith("walle")]


def _in_repo(arg: str) -> str:
    """Container paths under /app/ are the repository's files."""
    return str(ROOT / arg.removeprefix("/app/")) if arg.startswith("/app/") else arg


def _parse(args: list[str]) -> click.Context:
    """Resolve ``walle ARGS`` through the click tree; raises click errors on bad usage."""
    command: click.Command = cli
    name, parent = "walle", None
    while True:
        ctx = command.make_context(name, list(args), parent=parent)
        if not isinstance(command, click.Group):
            return ctx
        protected = getattr(ctx, "_protected_args", None)  # click >= 8.2
        rest = [*(ctx.protected_args if protected is None else protected), *ctx.args]
        assert rest, f"{name} needs a sub-command"
        sub = command.get_command(ctx, rest[0])
        assert sub is not None, f"walle has no sub-command {rest[0]!r} under {name!r}"
        command, name, parent, args = sub, rest[0], ctx, rest[1:]


def test_compose_has_a_three_node_kraft_cluster() -> None:
    services = _services()
    kafka = {name: spec for name, spec in services.items() if name.startswith("kafka-")}
    assert len(kafka) == 3
    ids = {spec["environment"]["KAFKA_NODE_ID"] for spec in kafka.values()}
    assert ids == {"1", "2", "3"}
    for spec in kafka.values():
        env = spec["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
        assert sorted(v.split("@")[1].split(":")[0] for v in voters) == sorted(kafka)


def _with_secrets(arg: str, spec: dict, folder: Path) -> str:
    """A /run/secrets/NAME path must be a secret the service mounts; here, an empty file."""
    name, _, value = arg.partition("=")
    if not value.startswith("/run/secrets/"):
        return arg
    secret = value.removeprefix("/run/secrets/")
    assert secret in spec.get("secrets", []), f"{secret} is not mounted"
    assert secret in yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["secrets"]
    (folder / secret).touch()
    return f"{name}={folder / secret}"


@pytest.mark.parametrize("service", _walle_services())
def test_walle_service_command_is_a_real_subcommand(service: str, tmp_path: Path) -> None:
    spec = _services()[service]
    args = [_with_secrets(_in_repo(str(arg)), spec, tmp_path) for arg in spec["command"]]
    ctx = _parse(args)
    assert ctx.command.callback is not None
    broker = ctx.params.get("broker_url") or ctx.params.get("broker")
    if broker:
        hosts = {server.split(":")[0] for server in parse_broker_url(broker)}
        assert hosts <= set(_services()), f"{service}: unknown broker hosts {hosts}"


def test_compose_names_the_workers_and_deploy_services() -> None:
    assert {"walle-worker", "walle-store", "walle-gateway"} <= set(_walle_services())


def test_a_wrong_flag_is_caught() -> None:
    with pytest.raises(click.UsageError):
        _parse(["cloud", "worker", str(ROOT / "examples" / "item_page_view.py"), "--brokers", "x"])

"""Options and helpers the `walle deploy` commands share: one spelling per flag."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from aiohttp import web

    from walle.deploy.channel import ChannelTopics
    from walle.deploy.serving import RunningSite

EXISTING = click.Path(exists=True, path_type=Path)
PORT = click.IntRange(0, 65535)

BROKER = click.option("--broker", required=True, help="kafka://HOST:PORT of the broker.")
PREFIX = click.option(
    "--topic-prefix",
    default="walle",
    show_default=True,
    help="Topics are PREFIX.releases, PREFIX.releases.history, PREFIX.status.",
)
KEY = click.option(
    "--key",
    "key_path",
    type=EXISTING,
    required=True,
    help="Private key (.key) that signs the notification.",
)
TRUST = click.option(
    "--trust",
    "trust_paths",
    type=EXISTING,
    multiple=True,
    required=True,
    help="Root metadata (root.json, or the directory holding it) naming the trusted keys.",
)
HOME = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Agent state directory (installed tasks, downloads, its enrolment key).",
)
ENROLMENT = click.option(
    "--enrolment-secret",
    "secret_path",
    type=EXISTING,
    required=True,
    help="Enrolment secret (walle deploy root enrol-secret): checks devices' status reports.",
)


def channel(broker: str, prefix: str, *, create: bool = True) -> tuple[str, ChannelTopics]:
    """The bootstrap servers and the channel's topics; ``create``: make missing topics."""
    from walle.deploy.channel import ChannelTopics, ensure_topics
    from walle.kafka import parse_broker_url

    bootstrap = ",".join(parse_broker_url(broker))
    topics = ChannelTopics.prefixed(prefix)
    if create:
        ensure_topics(bootstrap, topics)
    return bootstrap, topics


def serve(app_factory: Callable[[], web.Application], host: str, port: int, what: str) -> None:
    """Serve the aiohttp app ``app_factory()`` builds until interrupted; says where on stderr."""
    import asyncio

    from walle.deploy.serving import serve_forever

    def _ready(site: RunningSite) -> None:
        click.echo(f"{what} listening on {site.url}", err=True)

    asyncio.run(serve_forever(app_factory(), host, port, _ready))

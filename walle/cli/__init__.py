"""The ``walle`` command line, by area.

Top level holds the verbs typed most, each about one App: ``walle run APP``, ``walle replay
APP LOG`` and ``walle plan APP``. Everything else lives in one group per area: ``walle device``
(generate, late, deadletters, uplink), ``walle cloud`` (broker, produce, worker, outputs),
``walle ops`` (explain, bench) and ``walle deploy`` (keys, root metadata, bundles, the store
and gateway, releases, agents, the rollout controller). Each command has one place and each
concept one flag spelling, with its unit in the name (``--session-timeout-ms``, ``--ttl-s``);
``tests/unit/cli/test_cli_tree.py`` walks the tree to keep it so.

Each area module lists its top-level commands and groups in ``COMMANDS``; imports of heavy
modules happen inside the commands, so ``walle --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import click

from walle.errors import WalleError

_AREAS = ("streams", "device", "cloud", "ops", "deploy")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="WARNING",
    show_default=True,
    help="Log level.",
)
@click.option("--log-json", is_flag=True, help="Log as JSON lines.")
@click.version_option(package_name="walle")
def cli(log_level: str, log_json: bool) -> None:
    """walle: device-cloud collaborative ML pipelines."""
    from walle.logging import configure_logging

    configure_logging(log_level.upper(), json=log_json)


for _area in _AREAS:
    for _command in importlib.import_module(f"walle.cli.{_area}").COMMANDS:
        cli.add_command(_command)


def main() -> None:
    """Console entry point: walle errors become a one-line message and exit code 1."""
    try:
        code = cli.main(prog_name="walle", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except WalleError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)

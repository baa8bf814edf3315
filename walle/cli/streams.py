"""`walle` sub-commands of the streams area."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []

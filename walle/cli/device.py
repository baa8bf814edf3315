"""`walle` sub-commands of the device area."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []

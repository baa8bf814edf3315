"""`walle` sub-commands of the deploy area."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []

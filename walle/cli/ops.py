"""`walle` sub-commands of the ops area."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []

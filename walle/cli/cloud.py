"""`walle` sub-commands of the cloud area."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []

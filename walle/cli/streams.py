"""`walle plan`: print or draw an app's frozen plans (a top-level verb)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from walle.streams.app import App


@click.command("plan")
@click.argument(
    "app_file", metavar="APP", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "dot", "svg"]),
    default="text",
    show_default=True,
    help="text: the plans and fingerprint; dot: graphviz source of the trigger trie and each"
    " task's steps; svg: that drawing (graphviz `dot` if on PATH, else walle's own).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the drawing to this file instead of standard output.",
)
def plan(app_file: Path, fmt: str, out: Path | None) -> None:
    """Print or draw the frozen plans of the App in APP; writes nothing but --out.

    (Importing APP writes no ``__pycache__`` beside it.)
    """
    app = _load_without_bytecode(app_file)
    if fmt == "text":
        text = "\n".join(
            [*(task.describe() for task in app.plans), f"fingerprint {app.fingerprint}"]
        )
    else:
        from walle.streams.plan_graph import plan_graph, to_dot, to_svg

        draw = to_dot if fmt == "dot" else to_svg
        text = draw(plan_graph(app.plans), app_file.stem).rstrip("\n")
    if out is None:
        click.echo(text)
    else:
        out.write_text(text + "\n")
        click.echo(f"wrote {fmt} of {len(app.plans)} tasks to {out}", err=True)


def _load_without_bytecode(app_file: Path) -> App:
    """``load_app`` with bytecode writing off, so that reading a plan leaves no trace on disk."""
    import sys

    from walle.streams.app import load_app

    previous = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        return load_app(app_file)
    finally:
        sys.dont_write_bytecode = previous


COMMANDS: list[click.Command] = [plan]

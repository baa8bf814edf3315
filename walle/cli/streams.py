"""`walle` sub-commands of the streams area: generate event logs, print an app's plans."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("generate")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--devices", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--sessions",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Sessions per device.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--out-of-order",
    "out_of_order",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of events a little behind in event time.",
)
@click.option(
    "--late",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of events far behind in event time.",
)
@click.option(
    "--duplicates",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of events sent twice.",
)
def generate(
    out: Path,
    devices: int,
    sessions: int,
    seed: int,
    out_of_order: float,
    late: float,
    duplicates: float,
) -> None:
    """Write a seeded, realistic JSONL event log to OUT."""
    from walle.streams.events import write_jsonl
    from walle.streams.generator import generate_events

    events = generate_events(
        devices,
        sessions,
        seed=seed,
        out_of_order_rate=out_of_order,
        late_rate=late,
        duplicate_rate=duplicates,
    )
    click.echo(f"wrote {write_jsonl(out, events):,} events of {devices} devices to {out}")


@click.command("plan")
@click.argument("app_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
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
    """Print or draw the frozen plans of the App in APP_FILE."""
    from walle.streams.app import load_app

    app = load_app(app_file)
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


COMMANDS: list[click.Command] = [generate, plan]

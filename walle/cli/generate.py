"""`walle device generate`: a seeded, realistic JSONL event log for demos, tests and benchmarks."""

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
def generate_command(
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

"""`walle ops` sub-commands: bench and explain a model (ONNX file) on the ops backends."""

from __future__ import annotations

import click

from walle.errors import ValidationError


def _parse_shape(text: str) -> int:
    try:
        return int(text)
    except ValueError as exc:
        raise ValidationError(f"batch must be an integer, got {text!r}", field="batch") from exc


@click.group("ops")
def ops() -> None:
    """Run, time and explain models on the walle.ops backends."""


@ops.command("explain")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--batch", default="1", show_default=True, help="Batch size (leading dim).")
@click.option("--backend", default=None, help="Pin a backend (numpy, cython, opencl).")
@click.option("--no-cache", is_flag=True, help="Search again, ignoring cached decisions.")
def explain_command(model: str, batch: str, backend: str | None, no_cache: bool) -> None:
    """Show per step the chosen backend, algorithm, cost estimate and measured time."""
    from rich.console import Console
    from rich.table import Table

    from walle.ops.model import Model

    rows = Model(model, backend=backend, use_cache=not no_cache).explain(_parse_shape(batch))
    table = Table(title=f"{model} (batch {batch})")
    for col in ("step", "op", "shape", "backend", "algorithm", "estimate_us", "measured_us"):
        table.add_column(col)
    for row in rows:
        table.add_row(*[str(row[c]) for c in row])
    Console().print(table)


@ops.command("bench")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--batch", default="1", show_default=True, help="Batch size (leading dim).")
@click.option("--backend", default=None, help="Pin a backend (numpy, cython, opencl).")
@click.option("--runs", default=200, show_default=True, help="Timed runs.")
def bench_command(model: str, batch: str, backend: str | None, runs: int) -> None:
    """Median latency of the model on walle.ops (chosen or pinned backend)."""
    import statistics
    import time

    import numpy as np

    from walle.ops.model import Model

    m = Model(model, backend=backend)
    rows = _parse_shape(batch)
    plan = m.plan(rows)
    x = np.random.default_rng(0).standard_normal(plan.buffers[plan.graph.inputs[0]].shape)
    x = x.astype(np.float32)
    samples = []
    for _ in range(max(runs, 1) + 10):
        start = time.perf_counter()
        plan.run1(x)
        samples.append(time.perf_counter() - start)
    median = statistics.median(samples[10:]) * 1e6
    used = sorted({c.backend for c in plan.choices.values()})
    click.echo(f"{model}: batch {rows}: median {median:.1f} us over {runs} runs "
               f"({plan.call_count} calls; backends {', '.join(used)})")


COMMANDS: list[click.Command] = [ops]

"""`walle ops` sub-commands: bench and explain a model (ONNX file) on the ops backends."""

from __future__ import annotations

import click

_BATCH = click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Batch size (leading dim).",
)
_BACKEND = click.option("--backend", default=None, help="Pin a backend (numpy, cython, opencl).")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@click.group("ops")
def ops() -> None:
    """Time and explain models (ONNX files) on the walle.ops backends."""


@ops.command("explain")
@click.argument("model", type=click.Path(dir_okay=False))
@_BATCH
@_BACKEND
@click.option("--no-cache", is_flag=True, help="Search again, ignoring cached decisions.")
def explain_command(model: str, batch: int, backend: str | None, no_cache: bool) -> None:
    """Show per step the chosen backend, algorithm, cost estimate, measured time and the
    copies planned between host and device memory."""
    import shutil

    from rich.console import Console
    from rich.table import Table

    from walle.ops.model import Model

    rows = Model(model, backend=backend, use_cache=not no_cache).explain(batch)
    runs = rows[0].get("runs") if rows else None
    split = f", {runs} runs of {batch // runs} rows" if isinstance(runs, int) else ""
    table = Table(title=f"{model} (batch {batch}{split})")
    cols = ("step", "op", "shape", "backend", "algorithm", "estimate_us", "measured_us")
    for col in (*cols, "transfers"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*[str(row[c]) for c in (*cols, "transfers")])
    width = max(shutil.get_terminal_size((160, 24)).columns, 160)
    Console(width=width).print(table)


@ops.command("bench")
@click.argument("model", type=click.Path(dir_okay=False))
@_BATCH
@_BACKEND
@click.option("--runs", type=click.IntRange(min=1), default=200, show_default=True)
def bench_command(model: str, batch: int, backend: str | None, runs: int) -> None:
    """Median latency of the model on walle.ops (chosen or pinned backend)."""
    import statistics
    import time

    from walle.ops.ir import sample_inputs
    from walle.ops.model import Model

    m = Model(model, backend=backend)
    plan = m.plan(batch)
    inputs = sample_inputs(plan.graph)  # every input; valid ids for an embedding's
    one = inputs[0] if len(inputs) == 1 else None
    samples = []
    for _ in range(runs + 10):
        start = time.perf_counter()
        if one is not None:
            plan.run1(one)  # the batch-1 scoring path
        else:
            plan(*inputs)
        samples.append(time.perf_counter() - start)
    median = statistics.median(samples[10:]) * 1e6
    used = sorted({c.backend for c in plan.choices.values()})
    click.echo(
        f"{model}: batch {batch}: median {median:.1f} us over {_plural(runs, 'run')} "
        f"({_plural(plan.call_count, 'call')}; backends {', '.join(used)})"
    )


COMMANDS: list[click.Command] = [ops]

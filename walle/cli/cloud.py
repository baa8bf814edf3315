"""`walle cloud`: the cloud runtime from a shell (broker, produce, worker, outputs).

`walle cloud outputs` only reads: it creates no topic and commits no consumer-group offset.
"""

from __future__ import annotations

from pathlib import Path

import click

_SHOWN_BAD_LINES = 20


@click.group("cloud")
def cloud_group() -> None:
    """The cloud side: a development broker, loading logs, workers and what they produced."""


@cloud_group.command("broker")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address.")
@click.option(
    "--port",
    default=9092,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="0 picks a free port.",
)
def broker_command(host: str, port: int) -> None:
    """Run the embedded Kafka-protocol broker (Tansu, memory storage) until Ctrl-C or SIGTERM."""
    import signal
    import threading

    from walle.kafka import EmbeddedBroker

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with EmbeddedBroker(host, port) as running:
            click.echo(f"broker ready: {running.url} (bootstrap {running.bootstrap}); Ctrl-C stops")
            try:
                while running.running and not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                stop.set()
            if stop.is_set():
                click.echo("stopping broker")
                return
    finally:
        signal.signal(signal.SIGTERM, previous)
    raise click.ClickException("the broker process exited unexpectedly")


@cloud_group.command("produce")
@click.argument("log", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--broker", "broker_url", required=True, help="kafka://HOST:PORT[,HOST:PORT]")
@click.option("--topic", default="events", show_default=True, help="Input topic.")
@click.option("--partitions", default=4, show_default=True, type=click.IntRange(1, 1024))
@click.option(
    "--dead-letter",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where bad lines go (JSONL). Default: LOG.dead.jsonl",
)
@click.option(
    "--finish/--no-finish",
    default=True,
    show_default=True,
    help="The log is complete: mark each device's end, so the worker closes its windows.",
)
def produce_command(
    log: Path,
    broker_url: str,
    topic: str,
    partitions: int,
    dead_letter: Path | None,
    finish: bool,
) -> None:
    """Load a JSONL event LOG into a topic, keyed (and so partitioned) by device id."""
    from walle.kafka import parse_broker_url
    from walle.streams.cloud.produce import produce_log

    summary = produce_log(
        log, parse_broker_url(broker_url), topic, partitions=partitions,
        dead_letter_path=dead_letter, finish=finish,
    )  # fmt: skip
    for record in summary.bad[:_SHOWN_BAD_LINES]:
        click.echo(f"bad line {record.reason}", err=True)
    if len(summary.bad) > _SHOWN_BAD_LINES:
        click.echo(f"... and {len(summary.bad) - _SHOWN_BAD_LINES} more", err=True)
    if summary.dead_letter_path is not None:
        click.echo(f"bad lines written to {summary.dead_letter_path}", err=True)
    click.echo(f"sent {summary.sent} events to {topic!r}; skipped {len(summary.bad)} bad lines")


@cloud_group.command("worker")
@click.argument("app_path", metavar="APP", type=click.Path(exists=True, dir_okay=False))
@click.option("--broker", "broker_url", required=True, help="kafka://HOST:PORT[,HOST:PORT]")
@click.option("--app-id", help="Consumer group and changelog prefix. Default: walle-<app name>")
@click.option("--input-topic", default="events", show_default=True)
@click.option("--output-topic", default="outputs", show_default=True)
@click.option("--dead-letter-topic", default="events-dead", show_default=True)
@click.option("--late-topic", default="outputs-late", show_default=True)
@click.option("--partitions", default=4, show_default=True, type=click.IntRange(1, 1024))
@click.option("--replication", default=1, show_default=True, type=click.IntRange(1, 16))
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 100_000))
@click.option(
    "--batches-in-flight",
    default=8,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Processed batches that may wait for the broker's acknowledgements at once.",
)
@click.option(
    "--fetch-max-wait-ms",
    default=20,
    show_default=True,
    type=click.IntRange(1, 30_000),
    help="How long a fetch may wait for new events (bounds latency on a quiet stream).",
)
@click.option(
    "--session-timeout-ms",
    default=6_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Consumer-group session timeout: a worker silent this long loses its partitions.",
)
@click.option(
    "--idle-timeout-ms",
    default=60_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Close the windows of a device quiet this long (wall-clock), as the device does.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Serve Prometheus metrics on http://HOST:PORT/metrics.",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Metrics address.")
@click.option(
    "--exactly-once",
    is_flag=True,
    help="Kafka transactions (Apache Kafka; `walle cloud broker` does not hide aborted records).",
)
def worker_command(
    app_path: str,
    broker_url: str,
    app_id: str | None,
    input_topic: str,
    output_topic: str,
    dead_letter_topic: str,
    late_topic: str,
    partitions: int,
    replication: int,
    batch_size: int,
    batches_in_flight: int,
    fetch_max_wait_ms: int,
    session_timeout_ms: int,
    idle_timeout_ms: int,
    metrics_port: int | None,
    metrics_host: str,
    exactly_once: bool,
) -> None:
    """Run the App in file APP as a cloud worker until SIGTERM or Ctrl-C."""
    from walle.streams.app import load_app
    from walle.streams.cloud.settings import CloudSettings
    from walle.streams.cloud.worker import run_worker

    app = load_app(app_path)
    settings = CloudSettings(
        broker=broker_url, app_id=app_id, input_topic=input_topic, output_topic=output_topic,
        dead_letter_topic=dead_letter_topic, late_topic=late_topic, partitions=partitions,
        replication=replication, batch_size=batch_size, batches_in_flight=batches_in_flight,
        fetch_max_wait_ms=fetch_max_wait_ms, session_timeout_s=session_timeout_ms / 1000,
        idle_timeout_ms=idle_timeout_ms, metrics_port=metrics_port, metrics_host=metrics_host,
        exactly_once=exactly_once,
    )  # fmt: skip
    run_worker(app, settings)


@cloud_group.command("outputs")
@click.option("--broker", "broker_url", required=True, help="kafka://HOST:PORT[,HOST:PORT]")
@click.option("--topic", default="outputs", show_default=True, help="Output topic to read.")
@click.option(
    "--side",
    type=click.Choice(["late", "dead"]),
    help="Read a side topic instead: late events (--topic outputs-late) or dead letters.",
)
@click.option(
    "--limit", type=click.IntRange(min=0), default=20, show_default=True, help="Rows to print."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
def outputs_command(
    broker_url: str, topic: str, side: str | None, limit: int, as_json: bool
) -> None:
    """Print what a cloud worker produced: the output topic, by key, as the device's features.

    Re-sent copies (at-least-once delivery) are counted and shown once. With --side, print
    a late-event or dead-letter topic with each record's reason. Read-only: no topic is
    created (a missing one is an error) and no group offset is committed.
    """
    import json

    from rich.console import Console

    from walle.cli._tables import outputs_table, side_records_table
    from walle.kafka import parse_broker_url, read_to_end

    if side is not None and topic == "outputs":
        topic = {"late": "outputs-late", "dead": "events-dead"}[side]
    records = read_to_end(parse_broker_url(broker_url), topic)
    values = [r.value.decode("utf-8", "replace") for r in records if r.value is not None]
    console = Console()
    if side is not None:
        parsed = [json.loads(v) for v in values]
        for line in values[:limit] if as_json else ():
            click.echo(line)
        if not as_json:
            console.print(side_records_table(parsed, limit, f"{side} records in {topic!r}"))
        return
    latest = {r.key.decode(): r.value.decode() for r in records if r.key and r.value}
    rows = sorted(latest.items())  # the key is task|device|window: one row per output
    if as_json:
        for _, text in rows[:limit]:
            click.echo(text)
        return
    console.print(outputs_table(rows, limit, f"outputs in {topic!r}"))
    copies = len(values) - len(rows)
    click.echo(f"{len(rows)} outputs; {copies} re-sent copies (same key) not shown")


COMMANDS: list[click.Command] = [cloud_group]

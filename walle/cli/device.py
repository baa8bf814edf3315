"""The device runtime from a shell: `walle run`, `walle replay` (top level, the verbs typed
most) and the `walle device` group (generate, late, deadletters, uplink).

Heavy imports (the engine, sqlite, rich) happen inside the commands so `walle --help` is fast.
The listing commands (late, deadletters) open the database read-only: its bytes and mtime
stay as they were.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shlex
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from walle.cli._tables import outputs_table
from walle.cli.generate import generate_command

if TYPE_CHECKING:
    from rich.console import Console

    from walle.streams.device.replay import OpenedReplay
    from walle.streams.device.runtime import DeviceRuntime, RunReport

_APP = click.Path(exists=True, dir_okay=False, path_type=Path)
_FILE = click.Path(dir_okay=False, path_type=Path)


def _parse_until(text: str | None) -> tuple[int | None, int | None]:
    """``N`` is an offset; ``ts:MS`` or an ISO date-time (UTC if naive) is an event time."""
    if text is None:
        return None, None
    if text.isdigit():
        return int(text), None
    if text.startswith("ts:") and text[3:].isdigit():
        return None, int(text[3:])
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither an offset (N), an event time in ms (ts:MS) nor an ISO"
            " date-time (2026-01-31T12:00:00)",
            param_hint="--until",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return None, int(moment.timestamp() * 1000)


@contextlib.contextmanager
def _database(db: Path | None) -> Iterator[Path]:
    """The given database path, or one in a temporary folder removed afterwards."""
    if db is not None:
        yield db
        return
    with tempfile.TemporaryDirectory(prefix="walle-device-") as folder:
        yield Path(folder) / "device.db"


_OUT_HELP = (
    "Write the feature store as JSONL (Output.to_json per line), replacing FILE at the end of"
    " the run: with --db it holds every output so far, kills and restarts included."
)


def _write_out(console: Console, runtime: DeviceRuntime, out: Path | None) -> None:
    from walle.streams.device.replay import write_outputs_file

    if out is not None:
        console.print(f"wrote {write_outputs_file(runtime, out)} outputs to {out}")


def _summary(console: Console, opened: OpenedReplay, report: RunReport, db: Path | None) -> None:
    """The run's counts, then one line each for dead letters and late events, if any.

    Each says how many there were and the command that lists them; with a temporary
    database (no --db) it says they are gone with it.
    """
    from rich.markup import escape

    console.print(
        f"events {report.events}  outputs {report.outputs}"
        f"  offsets {report.from_offset + 1}..{report.to_offset}"
        f"  checkpoints {report.checkpoints}  {report.events_per_s:,.0f} events/s"
    )
    if report.duplicates:
        console.print(
            f"{report.duplicates} event(s) repeated a device's seq already processed and were"
            " skipped"
        )
    ingested = opened.ingest.dead_letters if opened.ingest is not None else 0
    dead = ingested + report.dead_letters
    if dead:
        parts = []
        if opened.ingest is not None and ingested:
            parts.append(f"{ingested} bad or duplicate record(s) of {opened.ingest.path}")
        if report.dead_letters:
            parts.append(f"{report.dead_letters} event(s) the app failed on")
        console.print(
            f"[yellow]{dead} record(s) went to the dead-letter table[/]:"
            f" {escape(', '.join(parts))}; {escape(_see('deadletters', db))}",
            soft_wrap=True,
        )
    if report.late:
        console.print(
            f"[yellow]{report.late} late event(s)[/] came after their window had closed and are"
            f" in no output; {escape(_see('late', db))}",
            soft_wrap=True,
        )


def _see(command: str, db: Path | None) -> str:
    """How to list a side table: ``walle device COMMAND --db DB``, or why it cannot be."""
    if db is None:
        return (
            "the database was temporary and is gone: run again with --db PATH, then"
            f" walle device {command} --db PATH"
        )
    return f"list them with: walle device {command} --db {shlex.quote(str(db))}"


@click.command("run")
@click.argument("app_path", metavar="APP", type=_APP)
@click.option(
    "--log",
    "log_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Event log, JSONL or SQLite [default: the .jsonl beside APP].",
)
@click.option("--db", type=_FILE, help="Device database (state, features) [default: temporary].")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Feature rows to print.",
)
@click.option("--out", type=_FILE, help=_OUT_HELP)
@click.option(
    "--finish/--no-finish",
    default=True,
    show_default=True,
    help="Close every open window at the end of the log.",
)
def run_command(
    app_path: Path,
    log_path: Path | None,
    db: Path | None,
    limit: int,
    out: Path | None,
    finish: bool,
) -> None:
    """Run APP over its event log on the device runtime and print its features."""
    from rich.console import Console

    from walle.streams.app import load_app
    from walle.streams.device.replay import check_outputs_file, open_replay

    if log_path is None:
        log_path = app_path.with_suffix(".jsonl")
        if not log_path.exists():
            raise click.UsageError(
                f"no event log beside {app_path}: looked for {log_path}; pass --log LOG"
                " (a JSONL or SQLite event log, e.g. one written by walle device generate)"
            )
    app = load_app(app_path)
    if out is not None:
        check_outputs_file(out)
    console = Console()
    with _database(db) as db_path:
        opened = open_replay(app, log_path, db_path)
        with opened.runtime as runtime:
            report = runtime.run(finish=finish)
            console.print(outputs_table(runtime.features(), limit))
            _summary(console, opened, report, db)
            _write_out(console, runtime, out)


@click.command("replay")
@click.argument("app_path", metavar="APP", type=_APP)
@click.argument(
    "log_path", metavar="LOG", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--db", type=_FILE, help="Device database; resumes its checkpoint [default: temporary]."
)
@click.option("--from-offset", type=click.IntRange(min=1), help="Skip log offsets below N.")
@click.option("--until", help="Stop after offset N, or at event time ts:MS / an ISO date-time.")
@click.option("--out", type=_FILE, help=_OUT_HELP)
@click.option(
    "--finish/--no-finish",
    default=True,
    show_default=True,
    help="Close every open window at the end (off by default with --until).",
)
def replay_command(
    app_path: Path,
    log_path: Path,
    db: Path | None,
    from_offset: int | None,
    until: str | None,
    out: Path | None,
    finish: bool,
) -> None:
    """Replay LOG (JSONL or SQLite event log) through APP with a progress bar and a summary."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from walle.streams.app import load_app
    from walle.streams.device.replay import check_outputs_file, open_replay

    until_offset, until_ts = _parse_until(until)
    app = load_app(app_path)
    if out is not None:
        check_outputs_file(out)
    console = Console()
    with contextlib.ExitStack() as stack:
        db_path = stack.enter_context(_database(db))
        opened = open_replay(app, log_path, db_path)
        runtime = stack.enter_context(opened.runtime)
        last = runtime.source.last_offset() if until_offset is None else until_offset
        start = max(runtime.processed_offset, (from_offset or 1) - 1)
        progress = stack.enter_context(
            Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
        )
        bar = progress.add_task(f"replaying {log_path.name}", total=max(last - start, 0))
        report = runtime.run(
            from_offset=from_offset,
            until_offset=until_offset,
            until_ts=until_ts,
            finish=finish and until is None,
            progress=lambda _events, offset: progress.update(bar, completed=offset - start),
        )
        progress.stop()
        _summary(console, opened, report, db)
        _write_out(console, runtime, out)


def _reachable(db: Path) -> None:
    """StorageError naming the real reason (permissions, missing) if ``db`` cannot be opened.

    click's ``exists=True`` reports a file in an unreadable directory as missing.
    """
    from walle.errors import StorageError

    try:
        db.stat()
    except FileNotFoundError:
        raise StorageError(f"{db}: no such database file") from None
    except OSError as exc:
        raise StorageError(
            f"{db}: cannot reach the database ({exc.strerror}); check the permissions of"
            " its directory"
        ) from None
    if db.is_dir():
        raise StorageError(f"{db}: is a directory, not a device database")


@click.group("device")
def device_group() -> None:
    """The device side: event logs, a device database's side tables, its uplink."""


_DB_READ = click.option(
    "--db",
    type=click.Path(path_type=Path),
    required=True,
    help="Device database (or event log); opened read-only, nothing in it changes.",
)
_LIMIT = click.option(
    "--limit", type=click.IntRange(min=0), default=50, show_default=True, help="Rows to print."
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")


@device_group.command("deadletters")
@_DB_READ
@_LIMIT
@_JSON
def deadletters_command(db: Path, limit: int, as_json: bool) -> None:
    """List the dead-letter table of a device database or event log (read-only)."""
    from rich.console import Console
    from rich.table import Table

    from walle.streams.device.log import EventLog, LogSettings

    _reachable(db)
    with EventLog(db, LogSettings(read_only=True)) as log:
        records = log.dead_letters(limit)
    if as_json:
        for record in records:
            click.echo(json.dumps(record._asdict(), sort_keys=True))
        return
    table = Table(title=f"dead letters in {db}")
    for column in ("id", "source", "where", "task", "reason", "raw"):
        table.add_column(column, overflow="fold")
    for record in records:
        raw = record.raw if len(record.raw) <= 120 else record.raw[:117] + "..."
        table.add_row(
            str(record.id), record.source, record.location, record.task or "", record.reason, raw
        )
    Console().print(table)


@device_group.command("late")
@_DB_READ
@_LIMIT
@_JSON
def late_command(db: Path, limit: int, as_json: bool) -> None:
    """List the late events of a device database (read-only: --db is not changed).

    A late event came after the window it belongs to had closed (past the app's lateness),
    so it is in no output; the reason names the window and the watermark.
    """
    from rich.console import Console

    from walle.cli._tables import late_events_table
    from walle.streams.device.replay import read_late_events

    _reachable(db)
    total, records = read_late_events(db, limit)
    if as_json:
        for record in records:
            click.echo(json.dumps(record._asdict(), sort_keys=True))
        return
    Console().print(late_events_table(records, total, title=f"late events in {db}"))


@device_group.command("uplink")
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Device database whose outbox is shipped.",
)
@click.option("--broker", "broker_url", required=True, help="kafka://HOST:PORT[,HOST:PORT]")
@click.option("--topic", default="uplink", show_default=True, help="Uplink topic.")
@click.option("--source", default="device", show_default=True, help="Message key (device).")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--once", is_flag=True, help="Send what is queued now, then exit.")
def uplink_command(
    db: Path, broker_url: str, topic: str, source: str, batch_size: int, once: bool
) -> None:
    """Ship the outbox of a device database to Kafka; rows go only once acknowledged."""
    import threading

    from walle.kafka import parse_broker_url
    from walle.streams.uplink import UplinkSender

    sender = UplinkSender(
        db, parse_broker_url(broker_url), topic, source=source, batch_size=batch_size
    )
    try:
        if once:
            click.echo(f"sent {sender.send_pending()} outputs to {topic!r}")
            return
        stop = threading.Event()
        try:
            sender.run(stop)
        except KeyboardInterrupt:
            stop.set()
    finally:
        sender.close()


device_group.add_command(generate_command)

COMMANDS: list[click.Command] = [run_command, replay_command, device_group]

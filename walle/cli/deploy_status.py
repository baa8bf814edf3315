"""`walle deploy status`: a task's release in force and its devices' reports (read-only).

It creates no topic: a channel nothing was released on is an error, a channel no device has
reported on shows no reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import click

from walle.cli._deploy_options import BROKER, PREFIX, channel

if TYPE_CHECKING:
    from walle.deploy.channel import StatusReport
    from walle.deploy.notification import Notification


@click.command("status")
@click.argument("task")
@BROKER
@PREFIX
def status_cmd(task: str, broker: str, topic_prefix: str) -> None:
    """TASK's release in force, what its devices run, and their last reports with reasons.

    Read-only: it creates no topic (a channel nothing was released on is an error).
    """
    from walle.deploy.channel import last_reports, latest
    from walle.deploy.errors import ChannelError

    bootstrap, topics = channel(broker, topic_prefix, create=False)
    existing = _existing_topics(bootstrap)
    if topics.releases not in existing:
        raise ChannelError(
            f"task {task!r} has never been released: no topic {topics.releases!r} on {broker}"
            " (check --broker and --topic-prefix)"
        )
    note = latest(bootstrap, topics, task)
    if note is None:
        raise ChannelError(f"task {task!r} has never been released")
    click.echo(_describe_release(note))
    last = last_reports(bootstrap, topics, task) if topics.status in existing else {}
    click.echo(_describe_running(note.version, last.values()))
    _status_table(task, last.values())


def _existing_topics(bootstrap: str) -> set[str]:
    """The broker's topic names, from metadata (a read: nothing is created)."""
    from confluent_kafka import KafkaException

    from walle.errors import BrokerError
    from walle.kafka import consumer

    client = consumer(bootstrap, "walle-cli-metadata")
    try:
        return set(client.list_topics(timeout=10).topics)
    except KafkaException as exc:
        raise BrokerError(f"cannot list the topics of {bootstrap}: {exc}") from exc
    finally:
        client.close()


def _status_table(task: str, last: Iterable[StatusReport]) -> None:
    """Devices per (reported version, state, version run), with the latest reason."""
    from collections import Counter

    from rich.console import Console
    from rich.table import Table

    from walle.deploy.channel import running_version

    counts: Counter[tuple[int, str, str]] = Counter()
    reasons: dict[tuple[int, str, str], str] = {}
    for report in sorted(last, key=lambda r: r.ts):
        runs = running_version(report)
        row: tuple[int, str, str] = (
            report.version or 0,
            report.state,
            f"v{runs}" if runs is not None else "-",
        )
        counts[row] += 1
        reasons[row] = report.reason
    table = Table(title=task)
    for column in ("version", "state", "devices", "runs", "reason"):
        table.add_column(column, overflow="fold")
    for shown in sorted(counts):
        version, state, runs_shown = shown
        table.add_row(str(version), state, str(counts[shown]), runs_shown, reasons[shown] or "")
    Console(width=max(_terminal_width(), 120)).print(table)


def _terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((120, 24)).columns


def _describe_running(in_force: int, last: Iterable[StatusReport]) -> str:
    """One line: which versions the devices that reported run now."""
    from collections import Counter

    from walle.deploy.channel import running_version

    runs = Counter(running_version(report) for report in last)
    if not runs:
        return "devices run: no device has reported yet"
    parts = [
        f"v{version} on {n}" if version is not None else f"nothing on {n}"
        for version, n in sorted(runs.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
    ]
    line = f"devices run: {', '.join(parts)} (of {sum(runs.values())} reporting)"
    if runs.get(in_force, 0) < sum(runs.values()):
        line += f"; not all run v{in_force}, the release in force: see the reasons below"
    return line


def _describe_release(note: Notification) -> str:
    """One line: the release in force, its stage and whether it is paused (and why)."""
    policy = note.policy
    line = f"release {note.task} v{note.version}"
    if policy.stages is not None:
        line += f" stage {policy.stage + 1}/{len(policy.stages.percentages)}"
    line += f" at {policy.effective_percentage:g}%"
    if note.rollback:
        line += " (rollback)"
    if note.paused:
        line += f" PAUSED: {note.reason or 'by hand'}"
    return line

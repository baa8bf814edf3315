"""The release channel on Kafka (kafka-python): notifications out, status reports back.

Three topics, created explicitly with one partition each (order per task matters more
than throughput here):

- ``walle.releases``: compacted, key = task; the latest notification per task. The
  gateway reads it from the beginning, so a device that reconnects catches up.
- ``walle.releases.history``: every notification ever published (what rollback reads).
- ``walle.status``: agents' reports (key = task/device); ``walle deploy status`` folds them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from walle.deploy.errors import BundleRefused, ChannelError
from walle.deploy.notification import Notification, verify_signatures
from walle.deploy.roles import TrustStore
from walle.logging import get_logger

_log = get_logger("deploy.channel")

State = Literal["installed", "refused", "failed", "rolled_back", "download_failed"]
#: Report states that count against a release.
FAILED_STATES = frozenset({"failed", "rolled_back", "refused", "download_failed"})


@dataclass(frozen=True)
class ChannelTopics:
    """Names of the channel's topics; tests use a unique prefix per run."""

    releases: str = "walle.releases"
    history: str = "walle.releases.history"
    status: str = "walle.status"

    @classmethod
    def prefixed(cls, prefix: str) -> ChannelTopics:
        """Topics named ``<prefix>.releases`` and so on."""
        return cls(f"{prefix}.releases", f"{prefix}.releases.history", f"{prefix}.status")


class StatusReport(BaseModel):
    """What an agent reports after handling a release of one task."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_id: str
    task: str
    version: int | None
    state: State
    reason: str = ""
    digest: str = ""
    #: The version this device runs after handling the release (None: none, or unknown).
    running: int | None = None
    ts: float
    #: HMAC under the device's enrolment key (``walle.deploy.enrolment``); "" if unenrolled.
    mac: str = ""


def ensure_topics(bootstrap: str, topics: ChannelTopics) -> None:
    """Create the channel's topics (one partition each; releases compacted) if missing."""
    from walle.kafka import create_topics

    names = {topics.releases: 1, topics.history: 1, topics.status: 1}
    create_topics(bootstrap, names, compacted=frozenset({topics.releases}))


def _producer(bootstrap: str) -> Any:  # a kafka.KafkaProducer (kafka-python ships no types)
    from walle.errors import BrokerError
    from walle.kafka import sync_producer

    try:
        return sync_producer(bootstrap, retries=5)
    except BrokerError as exc:
        raise ChannelError(str(exc)) from exc


def publish(bootstrap: str, topics: ChannelTopics, note: Notification) -> None:
    """Write ``note`` to the compacted releases topic and to the history (key = task)."""
    from kafka.errors import KafkaError

    producer = _producer(bootstrap)
    try:
        key, value = note.task.encode(), note.to_bytes()
        for topic in (topics.history, topics.releases):
            producer.send(topic, key=key, value=value).get(timeout=15)
    except KafkaError as exc:
        raise ChannelError(f"cannot publish {note.task} v{note.version}: {exc}") from exc
    finally:
        producer.close(timeout=5)
    _log.info("published", task=note.task, version=note.version, paused=note.paused)


def read_topic(
    bootstrap: str, topic: str, timeout_s: float = 15.0
) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) of ``topic`` from the beginning up to its current end."""
    from walle.errors import BrokerError
    from walle.kafka import read_to_end

    try:
        records = read_to_end(bootstrap, topic, timeout_s=timeout_s)
    except BrokerError as exc:
        raise ChannelError(str(exc)) from exc
    for record in records:
        yield record.key or b"", record.value or b""


def _notes(bootstrap: str, topic: str, trust: TrustStore | None) -> Iterator[Notification]:
    for offset, (_key, value) in enumerate(read_topic(bootstrap, topic)):
        try:
            note = Notification.model_validate_json(value)
        except ValidationError as exc:
            _log.warning("bad notification skipped", topic=topic, index=offset, error=str(exc))
            continue
        why = _unverified(note, trust)
        if why:
            _log.warning("unverified notification skipped", topic=topic, index=offset, why=why)
            continue
        yield note


def _unverified(note: Notification, trust: TrustStore | None) -> str:
    """Why ``note`` cannot be trusted ("" if it can): with ``trust``, a failed signature
    check; without, a missing signature layer (an unsigned or stripped record)."""
    if trust is None:
        missing = not note.release_signatures or note.signature is None
        return "a signature layer is missing" if missing else ""
    try:
        verify_signatures(note, trust)
    except BundleRefused as exc:
        return str(exc)
    return ""


def history(
    bootstrap: str, topics: ChannelTopics, task: str, trust: TrustStore | None = None
) -> list[Notification]:
    """Every notification published for ``task``, oldest first (unverified ones skipped)."""
    return [n for n in _notes(bootstrap, topics.history, trust) if n.task == task]


def latest(
    bootstrap: str, topics: ChannelTopics, task: str, trust: TrustStore | None = None
) -> Notification | None:
    """The notification now in force for ``task``: the highest ``seq`` on the releases topic
    (the last of equals) among those that verify, so neither a replayed older record nor a
    forged one written after it counts."""
    found = None
    for note in _notes(bootstrap, topics.releases, trust):
        if note.task == task and (found is None or note.seq >= found.seq):
            found = note
    return found


def reports(bootstrap: str, topics: ChannelTopics, task: str) -> list[StatusReport]:
    """Every status report on ``task``, oldest first (unreadable records skipped)."""
    found = []
    for _key, value in read_topic(bootstrap, topics.status):
        try:
            report = StatusReport.model_validate_json(value)
        except ValidationError:
            continue
        if report.task == task:
            found.append(report)
    return found


def last_reports(bootstrap: str, topics: ChannelTopics, task: str) -> dict[str, StatusReport]:
    """Each device's last report on ``task``, by device id."""
    return {report.device_id: report for report in reports(bootstrap, topics, task)}


def running_version(report: StatusReport) -> int | None:
    """The version a device runs after ``report`` (older agents: installed means that one)."""
    if report.running is not None:
        return report.running
    return report.version if report.state == "installed" else None


def rejected_by_all(found: list[StatusReport], digest: str) -> list[StatusReport]:
    """The devices' last reports on ``digest`` if there are some and every one is a failure."""
    last = {r.device_id: r for r in found if r.digest == digest}
    if last and all(r.state in FAILED_STATES for r in last.values()):
        return list(last.values())
    return []


def status_counts(
    bootstrap: str, topics: ChannelTopics, task: str
) -> Counter[tuple[int | None, str]]:
    """Devices per (version, state) for ``task``, from each device's last report."""
    last = last_reports(bootstrap, topics, task)
    return Counter((r.version, r.state) for r in last.values())

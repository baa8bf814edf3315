"""Topic administration: every topic walle uses is created explicitly, with its layout.

Topics that a broker creates on first use get its default partition count (4 on the
embedded broker), which silently breaks co-partitioning; so nothing relies on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from walle.errors import BrokerError

# The embedded broker's describe-configs returns only the settings given at creation, and
# some clients (Quix Streams' changelog set-up) read retention.ms: give it explicitly.
_RETENTION_FOREVER = {"retention.ms": "-1"}


def create_topics(
    bootstrap: str | Iterable[str],
    topics: Mapping[str, int],
    compacted: frozenset[str] = frozenset(),
    replication: int = 1,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Create each topic with its partition count; topics that already exist are kept.

    Names in ``compacted`` get ``cleanup.policy=compact`` (state changelogs, notifications);
    ``replication`` is the replication factor (3 on the docker/ cluster); ``configs`` adds
    per-topic settings.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=10000, bootstrap_timeout_ms=5000
        )
    except (KafkaError, OSError) as exc:
        raise BrokerError(f"cannot reach the broker at {bootstrap}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        for name, partitions in topics.items():
            if name in existing:
                continue
            settings = dict(_RETENTION_FOREVER)
            if name in compacted:
                settings["cleanup.policy"] = "compact"
            settings.update((configs or {}).get(name, {}))
            topic = NewTopic(name, partitions, replication, topic_configs=settings)
            try:
                admin.create_topics([topic])
            except TopicAlreadyExistsError:
                pass
            except KafkaError as exc:
                raise BrokerError(f"cannot create topic {name!r} on {bootstrap}: {exc}") from exc
    finally:
        admin.close()

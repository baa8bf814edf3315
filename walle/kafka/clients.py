"""Kafka clients with one set of defaults, built in one place.

The cloud worker and ``read_to_end`` use confluent-kafka (librdkafka): its batched
``consume()`` reads 2.6x faster than aiokafka here, and group membership, rebalancing,
idempotent produce and transactions come from librdkafka itself. Small synchronous
producers (loading a log, the uplink) use kafka-python.

Defaults everywhere: the producer waits for every in-sync replica (acks=all), no client
ever creates a topic as a side effect (``walle.kafka.create_topics`` does, with the
partition count meant), consumers commit only what the caller says.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from walle.errors import BrokerError
from walle.logging import get_logger

_log = get_logger("kafka")

_COMMON: dict[str, Any] = {
    "allow.auto.create.topics": False,
    # librdkafka logs every closed idle connection at info level; they are routine.
    "log.connection.close": False,
}

PRODUCER_DEFAULTS: dict[str, Any] = {
    **_COMMON,
    "acks": "all",
    # Idempotence keeps a partition's records in send order across retries (the state
    # changelog relies on it); the embedded broker accepts it through librdkafka.
    "enable.idempotence": True,
    "linger.ms": 5,
    # Java's key hashing, so a key lands in the same partition whichever client sent it.
    "partitioner": "murmur2_random",
}

CONSUMER_DEFAULTS: dict[str, Any] = {
    **_COMMON,
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "fetch.wait.max.ms": 50,
}


def _servers(bootstrap: str | Iterable[str]) -> str:
    return bootstrap if isinstance(bootstrap, str) else ",".join(bootstrap)


def _on_error(error: Any) -> None:
    _log.warning("kafka client error", error=str(error))


def producer(bootstrap: str | Iterable[str], **overrides: Any) -> Any:
    """A confluent-kafka Producer with walle's defaults (override with librdkafka names)."""
    from confluent_kafka import KafkaException, Producer

    config = {**PRODUCER_DEFAULTS, "bootstrap.servers": _servers(bootstrap), "error_cb": _on_error}
    config.update(overrides)
    try:
        return Producer(config)
    except KafkaException as exc:
        raise BrokerError(f"cannot build a producer for {bootstrap}: {exc}") from exc


def consumer(bootstrap: str | Iterable[str], group_id: str, **overrides: Any) -> Any:
    """A confluent-kafka Consumer in ``group_id`` that commits only what it is told."""
    from confluent_kafka import Consumer, KafkaException

    config = {
        **CONSUMER_DEFAULTS,
        "bootstrap.servers": _servers(bootstrap),
        "group.id": group_id,
        "error_cb": _on_error,
    }
    config.update(overrides)
    try:
        return Consumer(config)
    except KafkaException as exc:
        raise BrokerError(f"cannot build a consumer for {bootstrap}: {exc}") from exc


def sync_producer(bootstrap: list[str] | str, **overrides: object) -> Any:
    """A kafka-python KafkaProducer (acks=all) for small synchronous senders."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    settings: dict[str, object] = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        # kafka-python's InitProducerId fails on the embedded broker (no idempotent
        # producer through it); duplicates from retries are absorbed by idempotent keys.
        "enable_idempotence": False,
        "allow_auto_create_topics": False,
        "linger_ms": 5,
        "request_timeout_ms": 10000,
        "bootstrap_timeout_ms": 5000,
    }
    settings.update(overrides)
    try:
        return KafkaProducer(**settings)
    except (KafkaError, OSError) as exc:
        raise BrokerError(f"cannot reach the broker at {bootstrap}: {exc}") from exc

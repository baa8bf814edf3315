"""Kafka plumbing in one home: broker URLs, topics, clients, reading to the end, Tansu.

Every Kafka client walle builds comes from here, with one set of defaults (acks=all, no
topic auto-creation, explicit commits), and the embedded broker's quirks are handled here
once (``read_to_end``; explicit ``retention.ms`` on created topics).
"""

from walle.kafka.admin import create_topics
from walle.kafka.clients import consumer, producer, sync_producer
from walle.kafka.embedded import EmbeddedBroker, tansu_binary
from walle.kafka.read import Record, partition_count, read_to_end
from walle.kafka.urls import KAFKA_SCHEME, parse_broker_url

__all__ = [
    "KAFKA_SCHEME",
    "EmbeddedBroker",
    "Record",
    "consumer",
    "create_topics",
    "parse_broker_url",
    "partition_count",
    "producer",
    "read_to_end",
    "sync_producer",
    "tansu_binary",
]

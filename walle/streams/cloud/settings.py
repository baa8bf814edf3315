"""Settings of a cloud worker: one frozen value, passed whole."""

from __future__ import annotations

import pydantic

from walle.kafka import parse_broker_url

STATE_TABLE = "walle-state"


class CloudSettings(pydantic.BaseModel):
    """Where a worker reads, writes and keeps state, and how it talks to the broker.

    Session and heartbeat timeouts are short because group joins on the embedded broker
    take about one session timeout; production may raise them.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    broker: str = "kafka://127.0.0.1:9092"
    app_id: str | None = None
    input_topic: str = "events"
    output_topic: str = "outputs"
    dead_letter_topic: str = "events-dead"
    late_topic: str = "outputs-late"
    partitions: int = pydantic.Field(default=4, ge=1, le=1024)
    replication: int = pydantic.Field(default=1, ge=1, le=16)
    exactly_once: bool = False  # Kafka transactions (Apache Kafka; not the embedded broker)
    batch_size: int = pydantic.Field(default=1000, ge=1, le=100_000)
    batch_within_s: float = pydantic.Field(default=0.02, gt=0)  # longest wait for a batch
    batches_in_flight: int = pydantic.Field(default=8, ge=1, le=64)
    fetch_max_wait_ms: int = pydantic.Field(default=20, ge=1, le=30_000)
    session_timeout_s: float = pydantic.Field(default=6.0, gt=0)
    heartbeat_s: float = pydantic.Field(default=1.0, gt=0)
    # as the device runtime's RuntimeSettings.idle_timeout_ms: a device quiet for this long
    # (wall-clock) has its watermark moved on, so its windows close
    idle_timeout_ms: int = pydantic.Field(default=60_000, ge=1)
    metrics_port: int | None = pydantic.Field(default=None, ge=1, le=65535)  # None: no /metrics
    metrics_host: str = "127.0.0.1"

    @pydantic.field_validator("broker")
    @classmethod
    def _kafka_url(cls, value: str) -> str:
        parse_broker_url(value)
        return value

    def resolved_app_id(self, app_name: str) -> str:
        """The consumer group and table prefix: ``app_id`` or ``walle-<app name>``."""
        return self.app_id or f"walle-{app_name}"

    def changelog_topic(self, app_name: str) -> str:
        """Name of the per-device state changelog topic (compacted)."""
        return f"{self.resolved_app_id(app_name)}-{STATE_TABLE}-changelog"

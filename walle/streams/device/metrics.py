"""Prometheus metrics of a device runtime, served on ``/metrics`` when asked.

``DeviceMetrics(runtime)`` gives one runtime a registry of its own: the log's last offset
(events appended), the offsets processed and committed, the outbox depth and the database's
size are read at scrape time (under the event log's lock, so a scrape from the server thread
never meets a half-written transaction); checkpoint durations and retention passes are
recorded by the runtime as they happen (``runtime.metrics``). Nothing is counted per event,
so serving metrics costs the runtime nothing it would notice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from walle.streams.device.log import RetentionReport
    from walle.streams.device.runtime import DeviceRuntime

_CHECKPOINT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class _RuntimeCollector(Collector):
    """Offsets, outbox depth and database size of one runtime, read at scrape time."""

    def __init__(self, runtime: DeviceRuntime):
        self.runtime = runtime

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Read the runtime and its database now."""
        runtime, store = self.runtime, self.runtime.store
        last, depth, used = _read_database(runtime)
        labels = ["app"]
        rows: list[tuple[str, str, float]] = [
            ("walle_device_log_last_offset", "Offset of the last event appended to the log.", last),
            (
                "walle_device_processed_offset",
                "Last log offset the app has run.",
                runtime.processed_offset,
            ),
            (
                "walle_device_committed_offset",
                "Last log offset a checkpoint committed.",
                runtime.committed_offset,
            ),
            (
                "walle_device_lag_events",
                "Events appended but not yet run by the app.",
                max(0, last - runtime.processed_offset),
            ),
            ("walle_device_outbox_depth", "Outputs queued in the uplink outbox.", depth),
            ("walle_device_database_bytes", f"Bytes in use in {store.path.name}.", used),
        ]
        for name, doc, value in rows:
            family = GaugeMetricFamily(name, doc, labels=labels)
            family.add_metric([runtime.app.name], value)
            yield family


def _read_database(runtime: DeviceRuntime) -> tuple[int, int, int]:
    """(last offset, outbox rows, used bytes), in one hold of the log's lock."""
    from walle.streams.uplink import OUTBOX_TABLE

    store = runtime.store
    with store.lock:
        last = store.last_offset()
        try:
            depth = int(store.conn.execute(f"SELECT COUNT(*) FROM {OUTBOX_TABLE}").fetchone()[0])
        except sqlite3.OperationalError:  # no uplink: the table was never made
            depth = 0
        used = store.used_bytes()
    return last, depth, used


class DeviceMetrics:
    """One runtime's registry: what ``_RuntimeCollector`` reads, plus checkpoints and retention.

    Attach with ``runtime.metrics = DeviceMetrics(runtime)``; ``serve(port)`` starts the
    HTTP endpoint in a daemon thread.
    """

    def __init__(self, runtime: DeviceRuntime):
        self.registry = CollectorRegistry()
        r = self.registry
        r.register(_RuntimeCollector(runtime))
        self.checkpoint_seconds = Histogram(
            "walle_device_checkpoint_seconds", "Time to write and commit one checkpoint.",
            buckets=_CHECKPOINT_BUCKETS, registry=r,
        )  # fmt: skip
        self.retention_passes = Counter(
            "walle_device_retention_passes", "Retention passes over the event log.", registry=r
        )
        self.retention_deleted = Counter(
            "walle_device_retention_deleted_events", "Events retention deleted.", registry=r
        )
        self.retention_freed = Counter(
            "walle_device_retention_freed_bytes", "Database bytes retention gave back.", registry=r
        )

    def checkpointed(self, seconds: float) -> None:
        """A checkpoint committed after ``seconds``."""
        self.checkpoint_seconds.observe(seconds)

    def retained(self, report: RetentionReport) -> None:
        """A retention pass ran."""
        self.retention_passes.inc()
        self.retention_deleted.inc(report.deleted)
        self.retention_freed.inc(max(0, report.bytes_before - report.bytes_after))

    def serve(self, port: int, host: str = "127.0.0.1") -> Any:
        """Serve ``/metrics`` on ``host:port`` in a daemon thread; returns the server."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, host, registry=self.registry)
        return server

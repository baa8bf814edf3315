"""The cloud worker's Prometheus metrics, served on ``/metrics`` when a port is given.

Names follow Prometheus conventions (``walle_worker_`` prefix, ``_total`` counters, units in
names). Counters move once per batch, not per record, so serving them costs the worker
nothing measurable. Each worker has its own registry, so several workers in one process
(tests) never share counts.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class WorkerMetrics:
    """Counters, gauges and histograms of one worker, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.records = Counter("walle_worker_records", "Input records consumed.", registry=r)
        self.outputs = Counter("walle_worker_outputs", "Outputs sent.", registry=r)
        self.dead_letters = Counter(
            "walle_worker_dead_letters", "Records sent to the dead-letter topic.", ["source"],
            registry=r,
        )  # fmt: skip
        self.late_events = Counter("walle_worker_late_events", "Late events sent.", registry=r)
        self.duplicates = Counter(
            "walle_worker_duplicate_events", "Re-delivered events skipped by seq.", registry=r
        )
        self.batch_seconds = Histogram(
            "walle_worker_batch_seconds", "Time to decode and run one batch through the engine.",
            buckets=_BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.batches_waiting = Gauge(
            "walle_worker_batches_waiting", "Batches waiting for acknowledgements.", registry=r
        )
        self.devices = Gauge("walle_worker_devices", "Devices whose state is held.", registry=r)
        self.lag = Gauge(
            "walle_worker_consumer_lag_records", "Records behind the reported end, per partition.",
            ["partition"], registry=r,
        )  # fmt: skip
        self.partitions = Gauge(
            "walle_worker_assigned_partitions", "Input partitions assigned.", registry=r
        )
        self.recovered = Counter(
            "walle_worker_recovered_devices", "Device states restored from the changelog.",
            registry=r,
        )  # fmt: skip
        self.recovery_seconds = Counter(
            "walle_worker_recovery_seconds", "Time spent recovering state on assignment.",
            registry=r,
        )  # fmt: skip

    def set_lag(self, lag: dict[int, int]) -> None:
        """Replace the per-partition lag (partitions no longer assigned disappear)."""
        self.lag.clear()
        for partition, records in lag.items():
            self.lag.labels(partition=str(partition)).set(records)

    def serve(self, port: int, host: str = "127.0.0.1") -> Any:
        """Serve ``/metrics`` on ``host:port`` in a daemon thread; returns the server."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, host, registry=self.registry)
        return server

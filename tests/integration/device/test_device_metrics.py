"""A device runtime's Prometheus /metrics, scraped over HTTP while it runs (real SQLite).

Events in = events appended to the log; the offsets scraped mid-run are the ones the run
has reached; at the end the checkpoints observed equal the run's checkpoints, the outbox holds
one row per output, and the retention pass counts the events it deleted.
"""

from __future__ import annotations

from urllib.request import urlopen

import pytest
from prometheus_client.parser import text_string_to_metric_families

from walle.streams import App, Tumbling, count
from walle.streams.device.log import RetentionPolicy
from walle.streams.device.metrics import DeviceMetrics
from walle.streams.device.runtime import DeviceRuntime, RuntimeSettings
from walle.streams.events import write_jsonl
from walle.streams.generator import generate_events
from walle.streams.uplink import enqueue


def _app() -> App:
    app = App("metered")
    app.stream("clicks").filter(lambda e: e.event == "click").window(Tumbling(60_000)).aggregate(
        clicks=count()
    )
    return app


def scrape(port: int) -> dict[str, float]:
    """Sample name -> value (the runtime's samples have at most an ``app`` label)."""
    text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("le") is None
    }


@pytest.fixture
def runtime(tmp_path):
    settings = RuntimeSettings(
        checkpoint_every_events=200, batch_events=100, retention=RetentionPolicy()
    )
    with DeviceRuntime(_app(), tmp_path / "device.db", settings=settings) as opened:
        opened.participants.append(enqueue)  # the uplink outbox, in every checkpoint
        yield opened


def test_device_metrics_follow_a_run(tmp_path, runtime):
    log = tmp_path / "events.jsonl"
    produced = write_jsonl(log, generate_events(6, 3, seed=4))
    assert runtime.store.ingest_jsonl(log).events == produced
    metrics = DeviceMetrics(runtime)
    runtime.metrics = metrics
    server = metrics.serve(0)
    port = server.server_port
    try:
        before = scrape(port)
        assert before["walle_device_log_last_offset"] == produced  # events in = events produced
        assert before["walle_device_processed_offset"] == 0
        assert before["walle_device_lag_events"] == produced
        assert before["walle_device_checkpoint_seconds_count"] == 0

        seen: list[tuple[int, float, float]] = []

        def progress(_events: int, offset: int) -> None:  # scraped mid-run, over HTTP
            now = scrape(port)
            seen.append(
                (offset, now["walle_device_processed_offset"], now["walle_device_lag_events"])
            )

        report = runtime.run(finish=True, progress=progress)
        assert len(seen) >= 3  # several batches
        assert all(processed == offset for offset, processed, _lag in seen)
        assert all(lag == produced - offset for offset, _processed, lag in seen)

        after = scrape(port)
        assert after["walle_device_processed_offset"] == produced
        assert after["walle_device_committed_offset"] == produced
        assert after["walle_device_lag_events"] == 0
        assert after["walle_device_checkpoint_seconds_count"] == report.checkpoints >= 2
        assert report.outputs > 0
        assert after["walle_device_outbox_depth"] == report.outputs
        assert after["walle_device_retention_passes_total"] == 1
        assert after["walle_device_retention_deleted_events_total"] == produced
        assert after["walle_device_log_last_offset"] == produced  # survives retention
        assert after["walle_device_database_bytes"] > 0
    finally:
        server.shutdown()

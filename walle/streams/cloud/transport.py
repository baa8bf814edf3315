"""The worker's Kafka transport: faust's aiokafka driver with a configurable fetch wait.

faust 0.15 creates its worker consumer with a fixed 1.5 s ``fetch_max_wait_ms``. A broker
that answers a fetch only once data arrived or that wait ran out (the embedded broker
does) then holds each produced event for up to that long before the worker sees it: the
produce-to-output latency of a quiet stream. The worker sets its own wait instead
(``CloudSettings.fetch_max_wait_ms``); everything else is faust's driver unchanged.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # read by AIOKafkaConsumer.start() when it builds its fetcher
        consumer._fetch_max_wait_ms = transport.fetch_max_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class WorkerTransport(faust_aiokafka.Transport):
    """faust's aiokafka transport whose worker consumer waits at most ``fetch_max_wait_ms``."""

    Consumer = _Consumer

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetch_max_wait_ms = fetch_max_wait_ms


def install_transport(faust_app: Any, fetch_max_wait_ms: int) -> None:
    """Give ``faust_app`` the worker transport (before it starts or creates its consumer)."""
    faust_app.transport = WorkerTransport(
        faust_app.conf.broker_consumer, faust_app, fetch_max_wait_ms=fetch_max_wait_ms
    )

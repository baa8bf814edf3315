"""Prometheus metrics of the deploy side: the gateway, the bundle store, the rollout controller.

Each aiohttp application gets a registry of its own (``attach_metrics``), so several
gateways or stores in one process (tests, the loopback fleet) never share counts. A
middleware counts every response by status class (``2xx`` ... ``5xx``) and the bytes it
served; collectors read the part's own counters at scrape time, so nothing is counted twice
and the request paths pay nothing extra. ``GET /metrics`` answers the Prometheus text
format; a client that asks for ``application/json`` still gets the part's JSON counters
(the loopback fleet and deploy benchmark read those).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from walle.deploy.gateway import Gateway
    from walle.deploy.rollout import RolloutWatcher

REGISTRY = web.AppKey("prometheus_registry", CollectorRegistry)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpMetrics:
    """Responses by status class and bytes served by one aiohttp application."""

    def __init__(self, part: str, registry: CollectorRegistry):
        self.responses = Counter(
            f"walle_{part}_http_responses",
            "HTTP responses sent, by status class (2xx, 3xx, 4xx, 5xx).",
            ["status_class"],
            registry=registry,
        )
        self.bytes_served = Counter(
            f"walle_{part}_http_response_bytes", "Response body bytes sent.", registry=registry
        )

    def count(self, status: int, size: int) -> None:
        """One response of ``status`` with ``size`` body bytes."""
        self.responses.labels(status_class=f"{status // 100}xx").inc()
        if size:
            self.bytes_served.inc(size)


def _body_size(response: web.StreamResponse) -> int:
    body = getattr(response, "body", None)
    if isinstance(body, bytes | bytearray):
        return len(body)
    return response.body_length


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _middleware(http: HttpMetrics, registry: CollectorRegistry) -> Any:
    @web.middleware
    async def metrics_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if request.path == "/metrics" and not _wants_json(request):
            body = generate_latest(registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            http.count(exc.status, len(exc.text or ""))
            raise
        except Exception:
            http.count(500, 0)
            raise
        http.count(response.status, _body_size(response))
        return response

    return metrics_middleware


def attach_metrics(
    app: web.Application, part: str, collectors: Iterable[Collector] = ()
) -> CollectorRegistry:
    """Count ``app``'s responses and serve ``/metrics`` from a registry of its own.

    ``app`` must already route ``GET /metrics`` (its JSON counters); the middleware answers
    that path with the Prometheus text unless the client asks for JSON.
    """
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    app.middlewares.append(_middleware(HttpMetrics(part, registry), registry))
    app[REGISTRY] = registry
    return registry


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


#: The gateway's own counters (``Gateway.counters`` key -> metric name, help).
_GATEWAY_COUNTERS = {
    "pushed": ("notifications_pushed", "Notifications written to agents' streams."),
    "reports": ("status_reports", "Agents' status reports written to the status topic."),
    "report_errors": ("status_report_errors", "Status reports the status topic refused."),
    "bad_records": ("bad_records", "Unreadable records skipped on the releases topic."),
    "dropped_records": ("dropped_records", "Releases-topic records that failed verification."),
    "stale_records": ("stale_records", "Releases-topic records older than one already held."),
    "unauthenticated_reports": ("unauthenticated_reports", "Status reports refused (auth)."),
}
#: The store's request counters (``store.METRICS`` key -> metric name, help).
_STORE_COUNTERS = {
    "gets": ("bundle_gets", "Bundle GET/HEAD requests."),
    "range_gets": ("bundle_range_gets", "Bundle requests with a Range (resumed downloads)."),
    "puts": ("bundle_puts", "Bundle uploads."),
    "bytes_sent": ("bundle_bytes_served", "Bundle body bytes sent."),
}


class GatewayCollector(Collector):
    """The gateway's connected agents, notifications fanned out and status reports."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    def collect(self) -> Iterator[Any]:
        """Read the gateway's counters now."""
        counts, gateway = self.gateway.counters, self.gateway
        yield _gauge(
            "walle_gateway_connected_agents", "Agents holding an SSE stream.", counts["connected"]
        )
        yield _gauge("walle_gateway_tasks", "Tasks with a release in force.", len(gateway.latest))
        for key, (name, doc) in _GATEWAY_COUNTERS.items():
            yield _counter(f"walle_gateway_{name}", doc, counts.get(key, 0))
        restarts = gateway.reader.restarts
        yield _counter("walle_gateway_reader_restarts", "Reader passes that failed.", restarts)


class StoreCollector(Collector):
    """The bundle store's request counters (``store.METRICS``) as Prometheus counters."""

    def __init__(self, counts: dict[str, int]):
        self.counts = counts

    def collect(self) -> Iterator[Any]:
        """Read the store's counters now."""
        for key, (name, doc) in _STORE_COUNTERS.items():
            yield _counter(f"walle_store_{name}", doc, self.counts.get(key, 0))


class RolloutCollector(Collector):
    """A rollout watcher's view per task: stage, installed and failed devices, halts.

    The counts are the controller's own ``tally`` (what it decides on), not a second count.
    """

    def __init__(self, watcher: RolloutWatcher):
        self.watcher = watcher

    def collect(self) -> Iterator[Any]:
        """Read the controller now (a copy of its view: the follower thread may be folding)."""
        stage = GaugeMetricFamily(
            "walle_rollout_stage", "Stage (0-based) of the release in force.", labels=["task"]
        )
        percent = GaugeMetricFamily(
            "walle_rollout_stage_percent", "Share of the fleet admitted now.", labels=["task"]
        )
        devices = GaugeMetricFamily(
            "walle_rollout_devices",
            "Devices whose last report on the release in force is installed or failed.",
            labels=["task", "state"],
        )
        paused = GaugeMetricFamily(
            "walle_rollout_paused", "1 when the release in force is paused.", labels=["task"]
        )
        controller = self.watcher.controller
        for task, note in sorted(dict(controller.current).items()):
            tally = controller.tally(task)
            stage.add_metric([task], note.policy.stage)
            percent.add_metric([task], note.policy.effective_percentage)
            devices.add_metric([task, "installed"], tally.installed)
            devices.add_metric([task, "failed"], tally.failed)
            paused.add_metric([task], float(note.paused))
        yield from (stage, percent, devices, paused)
        applied = list(self.watcher.applied)
        steps = CounterMetricFamily(
            "walle_rollout_steps", "Advances and halts published.", labels=["decision"]
        )
        steps.add_metric(["advance"], sum(not n.paused for n in applied))
        steps.add_metric(["halt"], sum(n.paused for n in applied))
        yield steps
        errors = self.watcher.errors
        yield _counter("walle_rollout_publish_errors", "Steps that failed to publish.", errors)


def serve_registry(registry: CollectorRegistry, port: int, host: str = "127.0.0.1") -> Any:
    """Serve ``registry`` on ``http://host:port/metrics`` in a daemon thread; returns the server."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, host, registry=registry)
    return server


def rollout_registry(watcher: RolloutWatcher) -> CollectorRegistry:
    """A registry holding ``watcher``'s metrics (for ``walle deploy rollout --metrics-port``)."""
    registry = CollectorRegistry()
    registry.register(RolloutCollector(watcher))
    return registry

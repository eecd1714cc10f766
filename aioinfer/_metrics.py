"""Prometheus metrics of one app, in a registry of its own (several apps can live in one process),
every series labelled by the ``model`` it is about (``""`` for routes about the whole server), but
those of the event loop serving them all: its lag, read from the loop's monitor when scraped."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import _monitor
from ._stats import Latency

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
STAGE_BUCKETS = (0.00025, 0.0005, *LATENCY_BUCKETS)  # a task's pre- and post-processing can take < 1 ms
CONTENT_TYPE = CONTENT_TYPE_LATEST
QUANTILES = ("0.5", "0.95", "0.99")  # of each stage's latency: Latency's p50, p95, p99
# /v2/models/NAME[/versions/V][/ready|/infer]: counted under its template, NAME as the model label
_V2_MODEL = re.compile(r"^/v2/models/([^/]+)(/versions/[^/]+)?(/ready|/infer)?$")


class Metrics:
    """Requests by model, route and status, their latency, HTTP requests in flight, calls waiting
    for each model, the sizes of the batches run, the latency of each stage of each model's recent
    work (percentiles), each stage of a task's predictions (a histogram: :meth:`stage_observer`),
    and the event loop's lag. :meth:`add_model` before serving a model."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.models: list[str] = []
        self.stages: dict[str, Callable[[], Mapping[str, Latency]]] = {}
        self.registry.register(_Scraped(self.stages))
        self.requests = Counter(
            "aioinfer_requests",
            "HTTP requests answered, by model, route and status code",
            ["model", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "aioinfer_request_duration_seconds",
            "Time to answer an HTTP request, by model and route",
            ["model", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "aioinfer_requests_in_flight", "HTTP requests being answered", ["model"], registry=self.registry
        )
        self.queue_depth = Gauge(
            "aioinfer_queue_depth",
            "Inference calls waiting for the model (batcher and request queue)",
            ["model"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "aioinfer_batch_size",
            "Rows per inference run by the batcher",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "aioinfer_stage_seconds",
            "Time each stage of a task's predictions took (pre_process, forward, post_process and the "
            "task's own), by model and stage",
            ["model", "stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )

    def add_model(
        self, name: str, queue_depth: Callable[[], float], stages: Callable[[], Mapping[str, Latency]]
    ) -> Callable[[float], None]:
        """Serve the series of model ``name`` (its queue depth read from ``queue_depth``, the latency
        of its stages from ``stages``, both when scraped); returns what observes the size of each
        of its batches."""
        self.models.append(name)
        self.stages[name] = stages
        self.queue_depth.labels(name).set_function(queue_depth)
        return self.batch_size.labels(name).observe

    def stage_observer(self, model: str) -> Callable[[str, float], None]:
        """What observes, in ``aioinfer_stage_seconds``, each stage of the predictions of model
        ``model``'s task: for :meth:`aioinfer.tasks.Task.observe_stages`."""
        labels = self.stage_seconds.labels

        def observe(stage: str, seconds: float) -> None:
            labels(model, stage).observe(seconds)

        return observe

    def labels(self, path: str, routes: frozenset[str]) -> tuple[str, str]:
        """The model and route labels of a request for ``path``: ``/v1/*`` is about the first model,
        ``/v2/models/NAME/...`` about NAME (``""`` if unknown: clients cannot add series), any
        other route about the server; a path that is not one of ``routes`` is ``other``."""
        match = _V2_MODEL.match(path)
        if match:
            name, version, action = match.groups()
            route = "/v2/models/{name}" + ("/versions/{version}" if version else "") + (action or "")
            return (name if name in self.models else ""), route
        if path not in routes:
            return "", "other"
        return (self.models[0] if path.startswith("/v1/") and self.models else ""), path

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class _Scraped:
    """The series computed when scraped (on the event loop): the loop's lag, from the monitor
    watching it (none without one), and the latency percentiles of each model's stages."""

    def __init__(self, stages: Mapping[str, Callable[[], Mapping[str, Latency]]]) -> None:
        self.stages = stages

    def collect(self) -> Iterator[Metric]:
        monitor = _monitor.running()
        if monitor is not None:
            buckets, lag_sum = monitor.histogram()
            yield HistogramMetricFamily(
                "aioinfer_loop_lag_seconds",
                "How late the event loop's heartbeat woke up: its lag (high when something blocks it)",
                buckets=[(_bound(le), count) for le, count in buckets],
                sum_value=lag_sum,
            )
            yield CounterMetricFamily(
                "aioinfer_loop_slow_events",
                "Heartbeats at least slow_threshold late: times something blocked the event loop",
                value=monitor.stats().slow,
            )
        family = GaugeMetricFamily(
            "aioinfer_stage_latency_seconds",
            "Latency quantiles of each stage of a model's most recent work (device, await; a task's "
            "pre_process, forward, post_process and its own)",
            labels=["model", "stage", "quantile"],
        )
        for model, stages in self.stages.items():
            for stage, latency in stages().items():
                for quantile, ms in zip(QUANTILES, (latency.p50, latency.p95, latency.p99), strict=True):
                    if ms is not None:
                        family.add_metric([model, stage, quantile], ms / 1e3)
        yield family


def _bound(le: float) -> str:
    return "+Inf" if le == float("inf") else repr(le)


class MetricsMiddleware:
    """ASGI middleware counting every HTTP request by route (one of ``routes``, else ``other``) and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Collection[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        model, route = self.metrics.labels(scope["path"], self.routes)
        status = 500  # unless the app answers

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = time.perf_counter()
        in_flight = self.metrics.in_flight.labels(model)
        in_flight.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            in_flight.dec()
            self.metrics.requests.labels(model, route, str(status)).inc()
            self.metrics.latency.labels(model, route).observe(time.perf_counter() - start)

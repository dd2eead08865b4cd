"""``/metrics``: the server's Prometheus metrics, one registry per app (no process globals).

With ``PROMETHEUS_MULTIPROC_DIR`` set (``driftloop serve --workers N`` sets it), every worker
writes its values to files there and ``/metrics`` merges all workers' files, so any worker's
answer covers the whole server.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from driftloop.insights.client import InsightsStats

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROCESS_ENV))


class ServingMetrics:
    """The server's metrics on their own :class:`CollectorRegistry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._add_http_metrics(self.registry)
        self._add_model_metrics(self.registry)
        self._add_insights_metrics(self.registry)
        self._insights_counted: dict[str, int] = {}
        self._versions: dict[str, tuple[str, str]] = {}
        self._collectors: list[Collector] = []

    def _add_http_metrics(self, r: CollectorRegistry) -> None:
        """Requests and their latency, by route."""
        self.requests = Counter(
            "driftloop_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "driftloop_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def _add_model_metrics(self, r: CollectorRegistry) -> None:
        """Batch sizes, predictions, confidence, the version served and hot swaps."""
        self.batch_size = Histogram(
            "driftloop_batch_size",
            "Texts per predictor call (micro-batch size).",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "driftloop_predictions",
            "Texts classified, by model and version.",
            ["model", "version"],
            registry=r,
        )
        self.confidence = Histogram(
            "driftloop_model_confidence",
            "Confidence (top-class probability) of each prediction, by model and version; "
            "alert on sum/count (the mean) as in deploy/rules/driftloop.yml.",
            ["model", "version"],
            buckets=CONFIDENCE_BUCKETS,
            registry=r,
        )
        self.model_version = Gauge(
            "driftloop_model_version_info",
            "1 for the model version being served, with its content hash.",
            ["model", "version", "content_hash"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.model_swaps = Counter(
            "driftloop_model_swaps", "Hot swaps to another loaded version.", ["model"], registry=r
        )

    def _add_insights_metrics(self, r: CollectorRegistry) -> None:
        """The insights client: its queue, its outbox and its points by outcome."""
        self.insights_queue_depth = Gauge(
            "driftloop_insights_queue_depth",
            "Insight reports waiting in memory.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.insights_outbox_pending = Gauge(
            "driftloop_insights_outbox_pending_points",
            "Insight points waiting in the on-disk outbox.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.insights_points = Counter(
            "driftloop_insights_points",
            "Insight points by outcome (reported, published, spooled, replayed, dropped).",
            ["outcome"],
            registry=r,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def set_model_version(self, model: str, version: int, content_hash: str) -> None:
        previous = self._versions.get(model)
        if previous is not None:
            self.model_version.labels(model, *previous).set(0)
            self.model_version.remove(model, *previous)
            self.model_swaps.labels(model).inc()
        self._versions[model] = (str(version), content_hash)
        self.model_version.labels(model, str(version), content_hash).set(1)

    def set_insights(self, stats: InsightsStats) -> None:
        self.insights_queue_depth.set(stats.queue_depth)
        self.insights_outbox_pending.set(stats.outbox_pending)
        counts: Mapping[str, int] = {
            "reported": stats.reported,
            "published": stats.published,
            "spooled": stats.spooled,
            "replayed": stats.replayed,
            "dropped": stats.dropped,
        }
        for outcome, count in counts.items():
            # the client's totals only grow, unless a new client took over: count from zero
            counted = self._insights_counted.get(outcome, 0)
            added = count - counted if count >= counted else count
            if added:
                self.insights_points.labels(outcome).inc(added)
            else:
                self.insights_points.labels(outcome)  # the series exists from the start
            self._insights_counted[outcome] = count

    def add_collector(self, collector: Collector) -> None:
        """Expose ``collector``'s metrics too (read at each scrape, in the scraped process;
        with several workers, once, not summed)."""
        self._collectors.append(collector)
        self.registry.register(collector)

    def exposition(self) -> bytes:
        """The text exposition format, merged over all workers in multiprocess mode."""
        if multiprocess_mode():
            merged = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            for collector in self._collectors:
                merged.register(collector)
            return generate_latest(merged)
        return generate_latest(self.registry)


AnswerObserver = Callable[[str, int], None]
"""Told of every answer: the request's path and the status (such as
:class:`~driftloop.serving.error_insights.PredictErrorReporter`)."""


class PrometheusMiddleware:
    """Counts every HTTP request by route template (not raw path), method and status, and tells
    the ``observers``."""

    def __init__(
        self, app: ASGIApp, metrics: ServingMetrics, observers: Sequence[AnswerObserver] = ()
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.observers = list(observers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe_request(
                route, scope["method"], status, time.perf_counter() - start
            )
            for observe in self.observers:
                observe(scope["path"], status)

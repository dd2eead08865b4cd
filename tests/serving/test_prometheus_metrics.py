"""ServingMetrics: insight outcomes are Prometheus counters (``rate()`` works), counted from the
client's growing totals, and extra collectors join the exposition."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from driftloop.insights.client import InsightsStats
from driftloop.serving.prometheus import ServingMetrics


def stats(reported: int, published: int) -> InsightsStats:
    return InsightsStats(
        reported=reported,
        published=published,
        spooled=0,
        replayed=0,
        dropped=0,
        queue_depth=0,
        outbox_pending=0,
        transport_healthy=True,
    )


def samples(metrics: ServingMetrics) -> dict[str, float]:
    text = metrics.exposition().decode()
    return {
        f"{s.name}{sorted(s.labels.values())}": s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_insight_outcomes_are_counters_of_the_clients_totals() -> None:
    metrics = ServingMetrics()
    metrics.set_insights(stats(10, 8))
    metrics.set_insights(stats(10, 8))  # a scrape with nothing new adds nothing
    metrics.set_insights(stats(25, 20))
    values = samples(metrics)
    assert values["driftloop_insights_points_total['reported']"] == 25
    assert values["driftloop_insights_points_total['published']"] == 20
    assert values["driftloop_insights_points_total['dropped']"] == 0
    text = metrics.exposition().decode()
    assert "# TYPE driftloop_insights_points_total counter" in text
    metrics.set_insights(stats(4, 4))  # a new client took over: its points count on top
    assert samples(metrics)["driftloop_insights_points_total['reported']"] == 29


class Answer(Collector):
    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("driftloop_test_answer", "a test gauge")
        family.add_metric([], 42)
        yield family


def test_an_added_collector_is_exposed() -> None:
    metrics = ServingMetrics()
    metrics.add_collector(Answer())
    assert samples(metrics)["driftloop_test_answer[]"] == 42

"""How a model is served, read from the metric store: traffic, latency, error rate, confidence
per version on one chart, and the predicted-class mix.

Every panel is drawn from the insights the server reports (:mod:`driftloop.serving.app`):
``model_confidence`` once per served text (tagged ``model``, ``version``, ``class``),
``latency_ms`` once per answered predict request, ``predict_error`` once per predict request
answered with an error (tagged ``status_class`` ``4xx`` or ``5xx``,
:mod:`driftloop.serving.error_insights`). A shadow version's insights
(``shadow=true``) are left out of traffic, latency, errors and the class mix, and drawn dashed
beside the served versions on the confidence chart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from driftloop.dashboard.data import ClassShare, PanelSeries, ServingPanel
from driftloop.metrics.points import SHADOW_TAG, MetricStore, SeriesPoint, TagFilter
from driftloop.serving.error_insights import PREDICT_ERROR_METRIC, STATUS_CLASS_TAG

PANEL_BUCKETS = 240
"""Buckets per serving panel at most: rates per second over a handful of requests per bucket
would be noise."""
CONFIDENCE_METRIC = "model_confidence"
LATENCY_METRIC = "latency_ms"
CLASS_TAG = "class"


def panel_step(start: float, end: float, max_points: int) -> float:
    """Whole seconds per bucket: at most ``min(max_points, PANEL_BUCKETS)`` buckets."""
    buckets = max(1, min(max_points, PANEL_BUCKETS))
    return float(max(1, math.ceil((end - start) / buckets)))


class _Grid:
    """The buckets ``start + k * step`` of a range, and series placed on them."""

    def __init__(self, start: float, end: float, step: float) -> None:
        self.start = start
        self.step = step
        self.size = max(1, math.ceil((end - start) / step))
        self.timestamps = [start + k * step for k in range(self.size)]

    def place(self, points: list[SeriesPoint], value: str) -> list[float | None]:
        """``value`` (``avg``, ``max``, ``count``) of each bucket, ``None`` where none."""
        placed: list[float | None] = [None] * self.size
        for point in points:
            index = round((point.timestamp - self.start) / self.step)
            if 0 <= index < self.size:
                placed[index] = float(getattr(point, value))
        return placed

    def rates(self, counts: list[float | None]) -> list[float | None]:
        """Counts per bucket as counts per second (an empty bucket is 0/s)."""
        return [(count or 0.0) / self.step for count in counts]


def _served(model: str) -> TagFilter:
    return {"model": model, SHADOW_TAG: None}


def serving_panels(
    store: MetricStore, model: str, start: float, end: float, *, max_points: int
) -> list[ServingPanel]:
    """Traffic, latency, error rate and confidence per version of ``model`` over the range."""
    grid = _Grid(start, end, panel_step(start, end, max_points))
    answered = store.series(LATENCY_METRIC, start, end, grid.step, filter=_served(model))
    texts = store.series(CONFIDENCE_METRIC, start, end, grid.step, filter=_served(model))
    return [
        ServingPanel(
            "traffic",
            "Traffic",
            "per second",
            grid.step,
            grid.timestamps,
            [
                PanelSeries("texts/s", grid.rates(grid.place(texts, "count"))),
                PanelSeries("requests/s", grid.rates(grid.place(answered, "count"))),
            ],
            summary={
                "requests": float(sum(p.count for p in answered)),
                "texts": float(sum(p.count for p in texts)),
            },
        ),
        _latency_panel(store, model, start, end, grid, answered),
        _error_panel(store, model, start, end, grid, answered),
        _versions_panel(store, model, start, end, grid),
    ]


def _latency_panel(
    store: MetricStore,
    model: str,
    start: float,
    end: float,
    grid: _Grid,
    answered: list[SeriesPoint],
) -> ServingPanel:
    summary: dict[str, float | None] = {}
    for aggregation in ("p50", "p99"):
        found = store.query(LATENCY_METRIC, aggregation, start, end, filter=_served(model))
        summary[aggregation] = found[0].value if found else None
    return ServingPanel(
        "latency",
        "Latency of predict requests",
        "ms",
        grid.step,
        grid.timestamps,
        [
            PanelSeries("avg", grid.place(answered, "avg")),
            PanelSeries("max", grid.place(answered, "max")),
        ],
        summary=summary,
    )


def _error_panel(
    store: MetricStore,
    model: str,
    start: float,
    end: float,
    grid: _Grid,
    answered: list[SeriesPoint],
) -> ServingPanel:
    """The share of predict requests answered with a 4xx or a 5xx error, per bucket (%)."""
    ok = grid.place(answered, "count")
    errors = {
        status: grid.place(
            store.series(
                PREDICT_ERROR_METRIC,
                start,
                end,
                grid.step,
                filter={"model": model, STATUS_CLASS_TAG: status},
            ),
            "count",
        )
        for status in ("4xx", "5xx")
    }
    totals = [
        (ok[k] or 0.0) + sum(counts[k] or 0.0 for counts in errors.values())
        for k in range(grid.size)
    ]

    def percent(counts: list[float | None]) -> list[float | None]:
        return [
            None if not total else 100.0 * (count or 0.0) / total
            for count, total in zip(counts, totals, strict=True)
        ]

    failed = sum(count or 0.0 for counts in errors.values() for count in counts)
    overall = sum(totals)
    return ServingPanel(
        "errors",
        "Error rate of predict requests",
        "%",
        grid.step,
        grid.timestamps,
        [PanelSeries(f"{status} errors", percent(counts)) for status, counts in errors.items()],
        summary={"rate": 100.0 * failed / overall if overall else None, "errors": failed},
    )


def version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isascii() and version.isdigit() else (-1, version)


def _versions_panel(
    store: MetricStore, model: str, start: float, end: float, grid: _Grid
) -> ServingPanel:
    """Mean confidence of each version on one chart: the versions that answered, and (with
    ``shadow`` in their label) those that scored the same traffic in shadow."""
    series = []
    for shadow in (False, True):
        read: dict[str, str | None] = {"model": model, SHADOW_TAG: "true" if shadow else None}
        found = store.query(
            CONFIDENCE_METRIC, "count", start, end, filter=read, group_by=["version"]
        )
        versions = sorted(
            (r.group["version"] for r in found if r.count and "version" in r.group),
            key=version_order,
        )
        for version in versions:
            points = store.series(
                CONFIDENCE_METRIC, start, end, grid.step, filter={**read, "version": version}
            )
            label = f"v{version} shadow" if shadow else f"v{version}"
            series.append(PanelSeries(label, grid.place(points, "avg"), version=version))
    return ServingPanel(
        "versions", "Confidence per version", "mean confidence", grid.step, grid.timestamps, series
    )


def class_mix(
    store: MetricStore, model: str, start: float, end: float, reference: Mapping[str, float] | None
) -> list[ClassShare]:
    """The share of each predicted class among the served texts of the range, largest first,
    beside its share in ``reference`` (the production version's validation class mix)."""
    found = store.query(
        CONFIDENCE_METRIC, "count", start, end, filter=_served(model), group_by=[CLASS_TAG]
    )
    counts = {r.group[CLASS_TAG]: r.count for r in found if r.count and CLASS_TAG in r.group}
    for label in reference or {}:
        counts.setdefault(label, 0)
    total = sum(counts.values())
    shares = [
        ClassShare(
            label=label,
            count=count,
            share=count / total if total else 0.0,
            reference_share=None if reference is None else float(reference.get(label, 0)),
        )
        for label, count in counts.items()
    ]
    return sorted(shares, key=lambda s: (-s.count, -(s.reference_share or 0.0), s.label))

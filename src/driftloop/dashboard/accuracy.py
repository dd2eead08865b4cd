"""Each served version's accuracy on live traffic for the dashboard: the label-free estimate
(and whether it holds, :mod:`driftloop.drift.estimated_accuracy`) beside the accuracy realized
from feedback labels and the version's held-out accuracy."""

from __future__ import annotations

from driftloop.dashboard.data import VersionAccuracy
from driftloop.dashboard.panels import version_order
from driftloop.drift.estimated_accuracy import (
    ESTIMATED_ACCURACY_METRIC,
    reasons_estimate_may_not_hold,
    reference_signals,
)
from driftloop.errors import NotFoundError
from driftloop.metrics.points import MetricStore
from driftloop.monitors.thresholds import REALIZED_ACCURACY_METRIC
from driftloop.predictors import ReferenceProfile
from driftloop.registry import ModelRegistry

ESTIMATE_WINDOW = 300.0
"""Seconds of predictions behind a version's estimated accuracy on the dashboard (the default
confidence monitor's window)."""
REALIZED_WINDOW = 3_600.0
"""Seconds of feedback labels behind its realized accuracy (the default accuracy monitor's)."""
HOLDS_SAMPLE = 1_000
"""Newest values per signal the "may not hold" tests read (the last 15 s, 1 min or 5 min,
the first span that holds this many), so a busy server's dashboard reads little."""


class LiveAccuracyReader:
    """Reads :class:`VersionAccuracy` from the metric store, with the registry's references."""

    def __init__(self, metric_store: MetricStore, registry: ModelRegistry | None) -> None:
        self.metric_store = metric_store
        self.registry = registry

    def accuracy(self, model: str, end: float) -> list[VersionAccuracy]:
        estimated = self._per_version(ESTIMATED_ACCURACY_METRIC, model, end - ESTIMATE_WINDOW, end)
        realized = self._per_version(REALIZED_ACCURACY_METRIC, model, end - REALIZED_WINDOW, end)
        found = []
        for version in sorted(set(estimated) | set(realized), key=version_order, reverse=True):
            reference = self._version_reference(model, version)
            estimate, estimated_n = estimated.get(version, (None, 0))
            labels, realized_n = realized.get(version, (None, 0))
            judged = estimate is not None and reference is not None
            reasons = (
                []
                if not judged or reference is None
                else list(
                    reasons_estimate_may_not_hold(
                        reference,
                        {
                            name: self._recent_values(name, model, version, end)
                            for name in reference_signals(reference)
                        },
                    )
                )
            )
            found.append(
                VersionAccuracy(
                    version=version,
                    reference_accuracy=None
                    if reference is None
                    else reference.metrics.get("accuracy"),
                    estimated=estimate,
                    estimated_n=estimated_n,
                    estimate_holds=not reasons if judged else None,
                    may_not_hold_because=reasons,
                    realized=labels,
                    realized_n=realized_n,
                    estimate_window=ESTIMATE_WINDOW,
                    realized_window=REALIZED_WINDOW,
                )
            )
        return found

    def _per_version(
        self, metric: str, model: str, start: float, end: float
    ) -> dict[str, tuple[float | None, int]]:
        """The ``avg`` of ``metric`` over the served answers of ``model`` (a shadow's left out)
        in the range, and its number of points, by version."""
        results = self.metric_store.query(
            metric, "avg", start, end, filter={"model": model, "shadow": None}, group_by=["version"]
        )
        return {r.group["version"]: (r.value, r.count) for r in results if r.count}

    def _recent_values(self, metric: str, model: str, version: str, end: float) -> list[float]:
        """At least ``HOLDS_SAMPLE`` of the newest raw values of a served version's metric if
        the estimate window has them (fewer at low traffic): what the KS tests compare."""
        read: dict[str, str | None] = {"model": model, "version": version, "shadow": None}
        values: list[float] = []
        for span in (15.0, 60.0, ESTIMATE_WINDOW):
            values = [
                p.value for p in self.metric_store.points(metric, end - span, end, filter=read)
            ]
            if len(values) >= HOLDS_SAMPLE:
                break
        return values

    def _version_reference(self, model: str, version: str) -> ReferenceProfile | None:
        if self.registry is None or not (version.isascii() and version.isdigit()):
            return None
        try:
            return self.registry.get_version(model, int(version)).reference
        except NotFoundError:
            return None

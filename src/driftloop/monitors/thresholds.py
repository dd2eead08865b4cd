"""From an aggregate value to OK / WARN / ALERT, with hysteresis.

For ``below`` a level is breached when the value is strictly below its threshold (``above``:
strictly above). A monitor in ALERT stays there until the value no longer breaches
``critical_recovery`` (default: ``critical``); a monitor in WARN or ALERT stays at least in WARN
until it no longer breaches ``warning_recovery`` (default: ``warning``). Relative thresholds
(``reference - 0.05``) resolve against the reference value of the model's validation split; a
level whose threshold cannot be resolved yet is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from driftloop.config import MonitorConfig, Threshold, Thresholds
from driftloop.drift.estimated_accuracy import ESTIMATED_ACCURACY_METRIC
from driftloop.monitors.events import MonitorState
from driftloop.predictors import ReferenceProfile

_PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0}

REALIZED_ACCURACY_METRIC = "prediction_correct"
"""The insight feedback labels become (1 right, 0 wrong): its ``avg`` is realized accuracy, and
a relative threshold on it resolves against the version's validation accuracy."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The state a value puts a monitor in, and the threshold that decided it."""

    state: MonitorState
    threshold: float | None


@dataclass(frozen=True, slots=True)
class ResolvedThresholds:
    """A monitor's thresholds made absolute for one reference value."""

    below: bool
    warning: float | None
    critical: float | None
    warning_recovery: float | None
    critical_recovery: float | None

    @property
    def usable(self) -> bool:
        return self.warning is not None or self.critical is not None


def reference_value(
    profile: ReferenceProfile | None, metric: str, aggregation: str
) -> float | None:
    """The value a relative threshold is relative to: ``profile.metrics[metric]`` when the
    profile records that metric; for the ``avg`` of ``prediction_correct`` (realized accuracy)
    or of ``estimated_accuracy`` (the label-free estimate, whose held-out ``avg`` is the
    held-out accuracy by construction) the validation accuracy; else, for a confidence metric,
    the aggregation applied to the validation split's confidences (``avg`` → their mean,
    ``p90`` → their 90th percentile ...)."""
    if profile is None:
        return None
    if metric in profile.metrics:
        return float(profile.metrics[metric])
    if (
        metric in (REALIZED_ACCURACY_METRIC, ESTIMATED_ACCURACY_METRIC)
        and aggregation == "avg"
        and "accuracy" in profile.metrics
    ):
        return float(profile.metrics["accuracy"])
    if "confidence" not in metric or not profile.confidences:
        return None
    if aggregation == "avg":
        return float(profile.mean_confidence)
    values = np.asarray(profile.confidences, dtype=np.float64)
    if aggregation == "min":
        return float(values.min())
    if aggregation == "max":
        return float(values.max())
    if aggregation in _PERCENTILES:
        return float(np.percentile(values, _PERCENTILES[aggregation]))
    return None


def _resolve(threshold: Threshold | None, reference: float | None) -> float | None:
    return None if threshold is None else threshold.resolve(reference)


def resolve_thresholds(monitor: MonitorConfig, reference: float | None) -> ResolvedThresholds:
    thresholds: Thresholds | None = monitor.below or monitor.above
    if thresholds is None:
        return ResolvedThresholds(monitor.below is not None, None, None, None, None)
    warning = _resolve(thresholds.warning, reference)
    critical = _resolve(thresholds.critical, reference)
    warning_recovery = _resolve(thresholds.warning_recovery, reference)
    critical_recovery = _resolve(thresholds.critical_recovery, reference)
    return ResolvedThresholds(
        below=monitor.below is not None,
        warning=warning,
        critical=critical,
        warning_recovery=warning if warning_recovery is None else warning_recovery,
        critical_recovery=critical if critical_recovery is None else critical_recovery,
    )


def judge(current: MonitorState, value: float, thresholds: ResolvedThresholds) -> Verdict:
    """The next state from the current one and a new value."""

    def breaches(limit: float | None) -> bool:
        if limit is None:
            return False
        return value < limit if thresholds.below else value > limit

    if current == MonitorState.ALERT and thresholds.critical is not None:
        if breaches(thresholds.critical_recovery):
            return Verdict(MonitorState.ALERT, thresholds.critical)
    elif breaches(thresholds.critical):
        return Verdict(MonitorState.ALERT, thresholds.critical)
    in_warning = current in {MonitorState.WARN, MonitorState.ALERT}
    limit = thresholds.warning_recovery if in_warning else thresholds.warning
    if breaches(limit):
        return Verdict(MonitorState.WARN, thresholds.warning)
    if current == MonitorState.ALERT:
        return Verdict(MonitorState.OK, thresholds.critical_recovery)
    if current == MonitorState.WARN:
        return Verdict(MonitorState.OK, thresholds.warning_recovery)
    return Verdict(
        MonitorState.OK,
        thresholds.warning if thresholds.warning is not None else thresholds.critical,
    )

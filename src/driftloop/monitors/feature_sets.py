"""Drift monitors that cover every feature of a model (``metric: feature.*``): which metrics
they read, how a point reaches its feature's detector, and what they report.

The features are those the model's reference profile has samples of (its declared input
schema's numbers, booleans and categories, see :func:`driftloop.drift.factory.feature_metrics_of`);
the detector and its false-alarm split are in :mod:`driftloop.drift.feature_set`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from driftloop.config import MonitorConfig
from driftloop.drift.factory import feature_metrics_of
from driftloop.drift.feature_set import FEATURE_SET_METRIC, FeatureSetDetector
from driftloop.errors import ConfigError
from driftloop.metrics.points import MetricPoint, MetricStore, TagFilter
from driftloop.monitors.detectors import DriftDetector
from driftloop.predictors import ReferenceProfile


def is_feature_set(monitor: MonitorConfig) -> bool:
    return monitor.type == "drift" and monitor.metric == FEATURE_SET_METRIC


def monitored_model(monitor: MonitorConfig) -> dict[str, str]:
    """The group whose reference names a feature-set monitor's features: its filter's model."""
    return {"model": monitor.filter["model"]} if "model" in monitor.filter else {}


def drift_metrics(
    monitor: MonitorConfig, reference: Callable[[], ReferenceProfile | None]
) -> list[str]:
    """The metrics a drift monitor reads: its ``metric``, or for ``feature.*`` every feature of
    its model's reference profile (``reference()``)."""
    if not is_feature_set(monitor):
        return [monitor.metric]
    profile = reference()
    if profile is None:
        raise ConfigError(
            f"monitor {monitor.name!r} covers every feature of model "
            f"{monitor.filter.get('model')!r}, which has no reference profile with a sample "
            "per feature (register its version with --reference)"
        )
    numeric, categories = feature_metrics_of(profile)
    if not numeric and not categories:
        raise ConfigError(
            f"monitor {monitor.name!r} covers the features of a record model, but model "
            f"{monitor.filter.get('model')!r} has no features in its reference profile "
            "(a text model has none)"
        )
    return [*numeric, *categories]


def drift_points(
    store: MetricStore, metrics: Sequence[str], start: float, end: float, filter: TagFilter
) -> list[MetricPoint]:
    """The raw points of ``metrics`` in ``[start, end)``, oldest first."""
    if len(metrics) == 1:
        return store.points(metrics[0], start, end, filter=filter)
    merged = [p for metric in metrics for p in store.points(metric, start, end, filter=filter)]
    merged.sort(key=lambda point: point.timestamp)
    return merged


def feed(detector: DriftDetector, point: MetricPoint) -> None:
    """One point into its detector (a feature set routes it to the point's feature)."""
    if isinstance(detector, FeatureSetDetector):
        detector.update_feature(point.name, point.value)
    else:
        detector.update(point.value)


def drifted_features(detector: DriftDetector) -> list[str] | None:
    """The features a feature-set detector saw drift, by name (``tenure``, not
    ``feature.tenure``); None for any other detector."""
    if not isinstance(detector, FeatureSetDetector):
        return None
    return [metric.removeprefix("feature.") for metric in detector.drifted_features]

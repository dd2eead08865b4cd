"""Feeding records to a ``feature.*`` drift detector, as the monitors do, one feature value at
a time."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from driftloop.drift.feature_set import FeatureSetDetector
from driftloop.predictors import InputSchema
from driftloop.predictors.schema import feature_metrics


def alarms(
    detector: FeatureSetDetector, schema: InputSchema, records: Iterable[Mapping[str, Any]]
) -> int:
    """How many of the updates that ``records`` make detected a drift."""
    count = 0
    for record in records:
        for metric, value in feature_metrics(schema, record).items():
            detector.update_feature(metric, value)
            count += detector.drift_detected
    return count

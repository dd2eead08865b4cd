"""Threshold judgement with hysteresis, below and above, and reference values."""

from __future__ import annotations

import numpy as np
import pytest

from driftloop.config import MonitorConfig
from driftloop.monitors.events import MonitorState
from driftloop.monitors.thresholds import judge, reference_value, resolve_thresholds
from driftloop.predictors import ReferenceProfile

OK, WARN, ALERT = MonitorState.OK, MonitorState.WARN, MonitorState.ALERT

BELOW = MonitorConfig.model_validate(
    {
        "name": "confidence",
        "below": {
            "warning": 0.8,
            "critical": 0.7,
            "warning_recovery": 0.85,
            "critical_recovery": 0.75,
        },
    }
)
ABOVE = MonitorConfig.model_validate(
    {"name": "latency", "metric": "latency_ms", "above": {"warning": 200, "critical": 500}}
)


@pytest.mark.parametrize(
    ("current", "value", "expected"),
    [
        (OK, 0.9, OK),
        (OK, 0.8, OK),
        (OK, 0.79, WARN),
        (OK, 0.69, ALERT),
        (WARN, 0.82, WARN),  # above warning, below warning_recovery: stays
        (WARN, 0.85, OK),  # at warning_recovery: recovered
        (WARN, 0.65, ALERT),
        (ALERT, 0.72, ALERT),  # above critical, below critical_recovery: stays
        (ALERT, 0.76, WARN),  # past critical_recovery, below warning_recovery
        (ALERT, 0.9, OK),
        (MonitorState.NO_DATA, 0.79, WARN),
    ],
)
def test_below_with_recovery_thresholds(
    current: MonitorState, value: float, expected: MonitorState
) -> None:
    assert judge(current, value, resolve_thresholds(BELOW, None)).state == expected


@pytest.mark.parametrize(
    ("current", "value", "expected", "threshold"),
    [
        (OK, 200.0, OK, 200.0),
        (OK, 201.0, WARN, 200.0),
        (OK, 501.0, ALERT, 500.0),
        (ALERT, 499.0, WARN, 200.0),
        (WARN, 150.0, OK, 200.0),
    ],
)
def test_above_without_recovery_thresholds(
    current: MonitorState, value: float, expected: MonitorState, threshold: float
) -> None:
    verdict = judge(current, value, resolve_thresholds(ABOVE, None))
    assert (verdict.state, verdict.threshold) == (expected, threshold)


def test_relative_thresholds_resolve_against_the_reference() -> None:
    monitor = MonitorConfig.model_validate(
        {"name": "m", "below": {"warning": "reference - 0.05", "critical": 0.5}}
    )
    unresolved = resolve_thresholds(monitor, None)
    assert (unresolved.warning, unresolved.critical) == (None, 0.5)
    resolved = resolve_thresholds(monitor, 0.9)
    assert resolved.warning == pytest.approx(0.85)
    assert judge(OK, 0.84, resolved).state == WARN
    assert judge(OK, 0.84, unresolved).state == OK  # warning ignored until a reference exists


def test_reference_value_per_metric_and_aggregation() -> None:
    confidences = list(np.linspace(0.5, 1.0, 101))
    profile = ReferenceProfile(
        confidences=confidences,
        text_lengths=[10],
        class_mix={"a": 1.0},
        mean_confidence=0.75,
        metrics={"accuracy": 0.91},
    )
    assert reference_value(profile, "model_confidence", "avg") == 0.75
    assert reference_value(profile, "model_confidence", "p90") == pytest.approx(0.95)
    assert reference_value(profile, "model_confidence", "min") == 0.5
    assert reference_value(profile, "accuracy", "avg") == 0.91
    # realized accuracy (feedback labels) is judged against the validation accuracy
    assert reference_value(profile, "prediction_correct", "avg") == 0.91
    assert reference_value(profile, "prediction_correct", "p50") is None
    assert reference_value(profile, "model_confidence", "count") is None
    assert reference_value(profile, "latency_ms", "avg") is None
    assert reference_value(None, "model_confidence", "avg") is None

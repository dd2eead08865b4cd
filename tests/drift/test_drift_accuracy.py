"""CBPE-style expected accuracy and realised accuracy from feedback labels."""

from __future__ import annotations

import numpy as np
import pytest

from driftloop.drift import (
    ConfidenceAccuracyEstimator,
    RealizedAccuracyEstimator,
    expected_accuracy,
    wilson_interval,
)
from driftloop.drift.synthetic import CALIBRATED_CLASSIFIER
from driftloop.errors import ConfigError, InvalidInputError


def calibrated_predictions(
    n: int, rng: np.random.Generator, drop: float = 0.0
) -> tuple[list[float], list[bool]]:
    """A calibrated classifier: a prediction made with confidence c is right with chance c."""
    mixture = CALIBRATED_CLASSIFIER.with_mean_drop(drop) if drop else CALIBRATED_CLASSIFIER
    confidence = mixture.sample(n, rng)
    right = rng.random(n) < confidence
    return confidence.tolist(), right.tolist()


def test_cbpe_tracks_the_true_accuracy_of_a_calibrated_classifier() -> None:
    rng = np.random.default_rng(0)
    estimator = ConfidenceAccuracyEstimator(window=500)
    covered, windows, estimates, truths = 0, 0, [], []
    for drop in (0.0, 0.0, 0.05, 0.10, 0.15):
        for _ in range(20):
            confidence, right = calibrated_predictions(500, rng, drop)
            for c in confidence:
                estimator.update(c)
            estimate = estimator.estimate()
            truth = float(np.mean(right))
            covered += estimate.contains(truth)
            windows += 1
            estimates.append(estimate.accuracy)
            truths.append(truth)
            assert estimate.n == 500
    assert covered / windows >= 0.88  # a 95% interval
    assert np.corrcoef(estimates, truths)[0, 1] > 0.95
    assert abs(float(np.mean(estimates)) - float(np.mean(truths))) < 0.01


def test_cbpe_interval_width_and_calibration_error() -> None:
    estimate = expected_accuracy([0.5] * 100)
    assert estimate.accuracy == 0.5
    assert estimate.high - estimate.low == pytest.approx(2 * 1.959964 * 0.05, rel=1e-4)
    widened = expected_accuracy([0.5] * 100, calibration_error=0.03)
    assert widened.low == pytest.approx(estimate.low - 0.03)
    assert expected_accuracy([1.0] * 10).low == 1.0


def test_cbpe_window_forgets_old_confidences() -> None:
    estimator = ConfidenceAccuracyEstimator(window=10)
    for _ in range(10):
        estimator.update(0.9)
    for _ in range(10):
        estimator.update(0.6)
    assert estimator.estimate().accuracy == pytest.approx(0.6)
    estimator.reset()
    assert estimator.n_seen == 0
    with pytest.raises(InvalidInputError, match="no confidences"):
        estimator.estimate()


def test_wilson_interval_known_values() -> None:
    estimate = wilson_interval(8, 10)
    assert (estimate.low, estimate.high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 20).low == 0.0
    assert wilson_interval(20, 20).high == 1.0


def test_realized_accuracy_from_feedback_pairs() -> None:
    rng = np.random.default_rng(1)
    tracker = RealizedAccuracyEstimator(window=1_000)
    _confidence, right = calibrated_predictions(3_000, rng)
    for ok in right:
        tracker.update("a", "a" if ok else "b")
    estimate = tracker.estimate()
    assert estimate.n == 1_000
    assert estimate.accuracy == pytest.approx(float(np.mean(right[-1_000:])))
    assert estimate.contains(CALIBRATED_CLASSIFIER.mean)
    tracker.update_many([("x", "y")] * 1_000)
    assert tracker.estimate().accuracy == 0.0
    tracker.reset()
    with pytest.raises(InvalidInputError, match="no labelled predictions"):
        tracker.estimate()
    unbounded = RealizedAccuracyEstimator()
    unbounded.update_many([(1, 1), (2, 2), (3, 1)])
    assert unbounded.estimate().accuracy == pytest.approx(2 / 3)


def test_accuracy_estimators_reject_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="lie in"):
        expected_accuracy([0.5, 1.2])
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        ConfidenceAccuracyEstimator().update(-0.1)
    with pytest.raises(ConfigError, match="confidence level"):
        ConfidenceAccuracyEstimator(level=1.5)
    with pytest.raises(ConfigError, match="window"):
        RealizedAccuracyEstimator(window=0)
    with pytest.raises(InvalidInputError):
        wilson_interval(5, 3)

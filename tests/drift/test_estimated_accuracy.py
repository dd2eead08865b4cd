"""The label-free accuracy estimate (average thresholded confidence) and when it may not hold."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from driftloop.drift.estimated_accuracy import (
    ESTIMATED_ACCURACY_METRIC,
    accuracy_threshold,
    estimate_window,
    reasons_estimate_may_not_hold,
    thresholded_accuracy,
)
from driftloop.errors import ConfigError, InvalidInputError
from driftloop.monitors.thresholds import reference_value
from driftloop.predictors import ReferenceProfile


def _profile(seed: int = 0, accuracy: float = 0.8, n: int = 2_000) -> ReferenceProfile:
    rng = np.random.default_rng(seed)
    confidences = rng.beta(6, 2, n)
    lengths = rng.integers(20, 400, n)
    return ReferenceProfile(
        confidences=confidences.tolist(),
        text_lengths=lengths.tolist(),
        class_mix={"a": 0.5, "b": 0.5},
        mean_confidence=float(confidences.mean()),
        metrics={"accuracy": accuracy},
        inputs={"oov_rate": rng.beta(1, 9, n).tolist()},
    )


def test_the_threshold_puts_the_held_out_accuracy_above_it() -> None:
    profile = _profile(accuracy=0.8)
    threshold = accuracy_threshold(profile)
    assert threshold is not None
    assert thresholded_accuracy(profile.confidences, threshold) == pytest.approx(0.8, abs=1e-3)
    assert reference_value(profile, ESTIMATED_ACCURACY_METRIC, "avg") == 0.8


def test_the_estimate_falls_with_the_share_of_low_confidence_predictions() -> None:
    profile = _profile()
    threshold = accuracy_threshold(profile)
    assert threshold is not None
    low = np.full(250, threshold / 2)
    high = np.full(250, (1 + threshold) / 2)
    assert thresholded_accuracy(np.concatenate([low, high]), threshold) == 0.5


def test_no_threshold_without_an_accuracy_or_confidences() -> None:
    profile = _profile()
    assert accuracy_threshold(None) is None
    assert accuracy_threshold(ReferenceProfile([], [], {}, 0.0, {"accuracy": 0.8})) is None
    no_accuracy = ReferenceProfile(profile.confidences, profile.text_lengths, {}, 0.8)
    assert accuracy_threshold(no_accuracy) is None
    with pytest.raises(InvalidInputError, match="no accuracy or confidences"):
        estimate_window(no_accuracy, {"model_confidence": [0.9] * 50})
    with pytest.raises(InvalidInputError, match=r"lies in \[0, 1\]"):
        accuracy_threshold(ReferenceProfile([0.9], [3], {}, 0.9, {"accuracy": 1.5}))


def test_unchanged_traffic_is_rarely_flagged() -> None:
    profile = _profile(seed=0)
    live = _profile(seed=1, n=500 * 200)
    flagged = 0
    for start in range(0, 500 * 200, 500):
        window: dict[str, Sequence[float]] = {
            "model_confidence": live.confidences[start : start + 500],
            "text_length": live.text_lengths[start : start + 500],
            "oov_rate": live.inputs["oov_rate"][start : start + 500],
        }
        estimate = estimate_window(profile, window)
        flagged += not estimate.holds
        assert estimate.n == 500
    assert flagged <= 200 * 0.01 * 3  # alpha = 0.01 per window, with room for chance


@pytest.mark.parametrize("signal", ["model_confidence", "text_length", "oov_rate"])
def test_a_window_off_the_reference_may_not_hold(signal: str) -> None:
    profile = _profile(seed=0)
    live = _profile(seed=1, n=500)
    window: dict[str, list[float]] = {
        "model_confidence": list(live.confidences),
        "text_length": list(live.text_lengths),
        "oov_rate": list(live.inputs["oov_rate"]),
    }
    window[signal] = [v * 1.5 if signal != "model_confidence" else v * 0.8 for v in window[signal]]
    estimate = estimate_window(profile, window)
    assert not estimate.holds
    [reason] = estimate.reasons
    assert reason.startswith(f"{signal} differs from the reference")
    assert estimate.to_dict()["holds"] is False


def test_too_few_values_are_not_tested_and_alpha_is_checked() -> None:
    profile = _profile()
    assert reasons_estimate_may_not_hold(profile, {"text_length": [10_000.0] * 5}) == ()
    with pytest.raises(ConfigError, match="alpha"):
        reasons_estimate_may_not_hold(profile, {}, alpha=1.0)
    with pytest.raises(InvalidInputError, match="no confidences"):
        thresholded_accuracy([], 0.5)

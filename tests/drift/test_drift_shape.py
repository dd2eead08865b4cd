"""The shape CUSUM (mass moving into the tails of the reference) and the combined mean + shape
detector: false alarms within the budget, shape-only changes found, the budget split, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from driftloop.config import DetectorConfig
from driftloop.drift import (
    CombinedDetector,
    CusumDetector,
    DriftDetector,
    ShapeCusumDetector,
    build_detector,
    mean_and_shape_detector,
)
from driftloop.drift.shape import TailScore
from driftloop.drift.synthetic import CALIBRATED_CLASSIFIER, confidence_scenarios
from driftloop.errors import ConfigError, InvalidInputError
from driftloop.predictors import ReferenceProfile

SCENARIOS = {s.name: s for s in confidence_scenarios()}


@pytest.fixture(scope="module")
def reference() -> NDArray[np.float64]:
    return CALIBRATED_CLASSIFIER.sample(2_000, np.random.default_rng(21))


def first_alarm(detector: DriftDetector, values: NDArray[np.float64], start: int = 0) -> float:
    """Values after ``start`` until the first alarm at or after it (inf: none)."""
    for i, x in enumerate(values.tolist()):
        detector.update(x)
        if detector.drift_detected and i >= start:
            return float(i - start + 1)
    return math.inf


def drifted(detector: DriftDetector) -> bool:
    """Read the flag through a call, so that type checkers do not keep an earlier narrowing."""
    return detector.drift_detected


def count_alarms(detector: DriftDetector, values: NDArray[np.float64]) -> int:
    found = 0
    for x in values.tolist():
        detector.update(x)
        found += detector.drift_detected
    return found


def test_tail_score_is_exponential_on_the_reference_and_bounded(
    reference: NDArray[np.float64],
) -> None:
    score = TailScore(reference)
    own = score.scores(reference)
    assert own.mean() == pytest.approx(1.0, abs=0.01)
    assert own.std() == pytest.approx(1.0, abs=0.02)
    fresh = score.scores(CALIBRATED_CLASSIFIER.sample(20_000, np.random.default_rng(1)))
    assert fresh.mean() == pytest.approx(1.0, abs=0.05)
    bound = math.log(len(reference) + 1)
    assert score(-1e9) == pytest.approx(bound)
    assert score(1e9) == pytest.approx(bound)
    assert score(float(np.median(reference))) < 0.01


def test_ties_share_one_score() -> None:
    values = np.r_[np.full(300, 1.0), np.linspace(0.2, 0.99, 300)]
    score = TailScore(values)
    assert score(1.0) == pytest.approx(-math.log(2 * (1 - 450.5 / 601)))  # mid-rank 450.5
    assert len({score(1.0) for _ in range(3)}) == 1


@pytest.mark.parametrize("make", ["shape", "combined"])
def test_false_alarm_rate_within_the_budget_on_no_change_streams(make: str) -> None:
    """Fresh references and fresh streams from the same law: the reference's own sampling
    error is part of what the budget must absorb (the benchmark measures 1e-4 on 500,000
    values per detector; here 1e-3, so that few values show it)."""
    rate, n = 1e-3, 60_000
    found = 0
    for seed in range(3):
        rng = np.random.default_rng(100 + seed)
        ref = CALIBRATED_CLASSIFIER.sample(2_000, rng)
        detector: DriftDetector = (
            ShapeCusumDetector(ref, false_alarm_rate=rate)
            if make == "shape"
            else mean_and_shape_detector(ref, false_alarm_rate=rate)
        )
        found += count_alarms(detector, CALIBRATED_CLASSIFIER.sample(n, rng))
    expected = rate * 3 * n
    assert found <= expected + 3 * math.sqrt(expected)
    assert found >= expected / 10  # calibrated, not uselessly conservative


def test_shape_change_with_the_same_mean_is_found(reference: NDArray[np.float64]) -> None:
    """The mean CUSUM misses most of these streams; the shape CUSUM and the combined detector
    find every one, quickly."""
    scenario = SCENARIOS["shape change"]
    assert scenario.after.mean == pytest.approx(scenario.before.mean, abs=1e-9)
    rng = np.random.default_rng(5)
    streams = [scenario.generate(1_000, 1_500, rng) for _ in range(12)]
    rate = 1e-4
    mean_only = [
        first_alarm(CusumDetector(reference, false_alarm_rate=rate), s, 1_000) for s in streams
    ]
    shape = [
        first_alarm(ShapeCusumDetector(reference, false_alarm_rate=rate), s, 1_000) for s in streams
    ]
    combined = [
        first_alarm(mean_and_shape_detector(reference, false_alarm_rate=rate), s, 1_000)
        for s in streams
    ]
    assert sum(math.isfinite(d) for d in mean_only) <= 8
    assert all(math.isfinite(d) for d in shape + combined)
    assert float(np.median(shape)) < 100
    assert float(np.median(combined)) < 150


def test_the_combined_detector_still_finds_mean_drops(reference: NDArray[np.float64]) -> None:
    rng = np.random.default_rng(6)
    stream = SCENARIOS["abrupt severe drop"].generate(1_000, 500, rng)
    detector = mean_and_shape_detector(reference, false_alarm_rate=1e-4)
    assert first_alarm(detector, stream, 1_000) < 100
    assert "mean" in detector.fired


def test_the_budget_is_split_between_the_parts(reference: NDArray[np.float64]) -> None:
    detector = mean_and_shape_detector(reference, false_alarm_rate=1e-6, shape_share=0.2)
    mean, shape = detector.parts["mean"], detector.parts["shape"]
    assert isinstance(mean, CusumDetector)
    assert isinstance(shape, ShapeCusumDetector)
    assert mean.false_alarm_rate + shape.false_alarm_rate == pytest.approx(1e-6)
    assert shape.false_alarm_rate == pytest.approx(2e-7)
    assert detector.threshold == 1.0
    assert detector.statistic == 0.0


def test_every_part_restarts_after_a_detection(reference: NDArray[np.float64]) -> None:
    detector = mean_and_shape_detector(reference, false_alarm_rate=1e-3)
    for _ in range(200):
        detector.update(0.05)  # far below the reference: both parts climb
        if detector.drift_detected:
            break
    assert drifted(detector)
    assert detector.fired
    detector.update(float(np.median(reference)))
    assert not drifted(detector)
    assert detector.fired == ()
    assert all(part.statistic == 0.0 for part in detector.parts.values())


def test_extreme_targets_calibrate(reference: NDArray[np.float64]) -> None:
    """The init default is 1e-9 per value: far beyond what simulation can check, reached by
    the same extrapolation as the mean CUSUM's."""
    loose = ShapeCusumDetector(reference, false_alarm_rate=1e-4)
    strict = ShapeCusumDetector(reference, false_alarm_rate=1e-9)
    assert loose.threshold < strict.threshold < 20 * loose.threshold
    calibration = strict.calibration  # the threshold meets both guarantees, the tighter exactly
    arls = (calibration.predicted_arl(strict.threshold), calibration.averaged_arl(strict.threshold))
    assert min(arls) == pytest.approx(1e9, rel=1e-3)


@pytest.mark.parametrize(
    ("algorithm", "kind"), [("shape", ShapeCusumDetector), ("cusum_shape", CombinedDetector)]
)
def test_built_from_the_config(reference: NDArray[np.float64], algorithm: str, kind: type) -> None:
    profile = ReferenceProfile(
        confidences=reference.tolist(),
        text_lengths=[10] * 50,
        class_mix={"a": 1.0},
        mean_confidence=float(reference.mean()),
    )
    config = DetectorConfig.model_validate({"algorithm": algorithm, "false_alarm_rate": 1e-6})
    assert isinstance(build_detector(config, profile), kind)


def test_clear_errors(reference: NDArray[np.float64]) -> None:
    with pytest.raises(ConfigError, match="shape_share must lie in"):
        mean_and_shape_detector(reference, shape_share=1.0)
    with pytest.raises(ConfigError, match="false_alarm_rate must lie in"):
        mean_and_shape_detector(reference, false_alarm_rate=2.0)
    with pytest.raises(ConfigError, match="allowance must be positive"):
        ShapeCusumDetector(reference, allowance=0.0)
    with pytest.raises(InvalidInputError, match="at least 30 reference values"):
        ShapeCusumDetector(reference[:10])
    with pytest.raises(InvalidInputError, match="all equal"):
        ShapeCusumDetector(np.full(100, 0.9))
    with pytest.raises(InvalidInputError, match="not finite"):
        ShapeCusumDetector(np.r_[reference, np.nan])
    with pytest.raises(ConfigError, match="distinct names"):
        CombinedDetector(
            [("a", ShapeCusumDetector(reference)), ("a", ShapeCusumDetector(reference))]
        )
    with pytest.raises(ConfigError, match="at least one part"):
        CombinedDetector([])
    with pytest.raises(InvalidInputError, match="takes a number"):
        ShapeCusumDetector(reference).update("0.5")  # type: ignore[arg-type]


def test_a_small_reference_is_calibrated_on_the_scores_new_values_take() -> None:
    """A new value falls into each of the n + 1 gaps around the reference's sorted values with
    probability 1 / (n + 1), the two beyond its extremes included (score ln(n + 1)); the
    reference's own scores lack those, which under-stated the scores' mean and spread, several-
    fold the false-alarm rate for a ~230-value reference (the tabular demo's v2)."""
    n, fresh = 230, []
    for seed in range(200):
        rng = np.random.default_rng(300 + seed)
        # confidences without ties: 1 - Beta(1.2, 6) / 2, skewed towards 1
        reference, new = (1.0 - 0.5 * rng.beta(1.2, 6.0, size) for size in (n, 1_000))
        fresh.append(TailScore(reference).scores(new))
    scores = np.concatenate(fresh)
    null = TailScore(reference).null_scores()
    assert null.mean() == pytest.approx(scores.mean(), abs=0.012)
    assert null.std() == pytest.approx(scores.std(), abs=0.02)
    assert scores.max() == null.max() == pytest.approx(math.log(n + 1))
    assert np.isclose(scores, math.log(n + 1)).mean() == pytest.approx(2 / (n + 1), rel=0.15)
    detector = ShapeCusumDetector(reference, false_alarm_rate=1e-4)
    assert detector.calibration.n_reference == n + 1  # calibrated on the null scores
    assert -detector.calibration.mean == pytest.approx(null.mean())


def test_small_references_keep_the_false_alarm_budget_on_fresh_values() -> None:
    """A 230-value reference (the tabular demo's v2 gets about that many), fresh in-control
    values from the same law (not the reference's own): over 20 references the shape CUSUM
    stays within its budget. Calibrated on the reference's own scores with a one-standard-error
    margin it raised 3.3 times its budget here; on the null scores with the margin alone, 1.5."""
    rate, n, per_reference = 1e-4, 230, 25_000
    found = 0
    for seed in range(20):
        rng = np.random.default_rng(500 + seed)
        reference, fresh = (1.0 - 0.5 * rng.beta(1.2, 6.0, size) for size in (n, per_reference))
        found += count_alarms(ShapeCusumDetector(reference, false_alarm_rate=rate), fresh)
    expected = rate * 20 * per_reference
    assert found <= expected + 3 * math.sqrt(expected)
    assert found >= expected / 10  # calibrated, not uselessly conservative

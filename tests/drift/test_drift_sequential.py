"""CUSUM and Page-Hinkley: calibration, false-alarm rate, detection, reset."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from driftloop.drift import CusumDetector, PageHinkleyDetector, calibrate_sequential
from driftloop.drift.calibration import (
    adjustment_coefficient,
    siegmund_arl,
    simulate_arl,
    threshold_for_arl,
)
from driftloop.drift.synthetic import CALIBRATED_CLASSIFIER, confidence_scenarios
from driftloop.errors import ConfigError, InvalidInputError

SCENARIOS = {s.name: s for s in confidence_scenarios()}


@pytest.fixture(scope="module")
def reference() -> NDArray[np.float64]:
    return CALIBRATED_CLASSIFIER.sample(2_000, np.random.default_rng(11))


def alarms(detector: CusumDetector | PageHinkleyDetector, values: list[float]) -> list[int]:
    found = []
    for i, x in enumerate(values):
        detector.update(x)
        if detector.drift_detected:
            found.append(i)
    return found


def drifted(detector: CusumDetector) -> bool:
    """Read the flag through a call, so that type checkers do not keep an earlier narrowing."""
    return detector.drift_detected


def test_adjustment_coefficient_is_2k_for_gaussian_increments() -> None:
    k = 0.25
    y = np.random.default_rng(0).normal(-k, 1.0, 400_000)
    assert adjustment_coefficient(y) == pytest.approx(2 * k, rel=0.03)


def test_threshold_for_arl_inverts_siegmund() -> None:
    h = threshold_for_arl(1e5, 0.4, -0.2, 1.166)
    assert siegmund_arl(h, 0.4, -0.2, 1.166) == pytest.approx(1e5, rel=1e-4)


def test_bootstrap_simulation_agrees_with_the_fitted_curve(reference: NDArray[np.float64]) -> None:
    calibration = calibrate_sequential(reference, false_alarm_rate=1e-4, min_shift=0.05)
    for point in calibration.simulated:
        assert calibration.predicted_arl(point.threshold) == pytest.approx(point.arl, rel=0.15)
    assert calibration.warning_threshold < calibration.threshold
    assert calibration.predicted_arl(calibration.threshold) == pytest.approx(1e4, rel=1e-3)


def test_extrapolated_threshold_verified_by_direct_simulation(
    reference: NDArray[np.float64],
) -> None:
    """The ladder stops at an ARL of 1,000; simulate the 1e-4 threshold itself."""
    calibration = calibrate_sequential(reference, false_alarm_rate=1e-4, min_shift=0.05)
    increments = (calibration.mean - reference) / calibration.std - calibration.allowance
    (point,) = simulate_arl(
        increments + calibration.margin,
        np.array([calibration.threshold]),
        np.random.default_rng(4),
        chains=500,
        steps=40_000,
    )
    assert point.arl == pytest.approx(1e4, rel=0.2)


@pytest.mark.parametrize("rate", [1e-3, 1e-4])
def test_false_alarm_rate_on_a_long_no_change_stream(
    reference: NDArray[np.float64], rate: float
) -> None:
    n = 300_000
    stream = CALIBRATED_CLASSIFIER.sample(n, np.random.default_rng(12)).tolist()
    found = len(alarms(CusumDetector(reference, false_alarm_rate=rate), stream))
    expected = rate * n
    # Poisson margin of 3 standard deviations above the target ...
    assert found <= expected + 3 * math.sqrt(expected)
    # ... and not uselessly conservative either.
    assert found >= expected / 10


def test_empirical_calibration_holds_where_a_gaussian_threshold_does_not(
    reference: NDArray[np.float64],
) -> None:
    """Confidences are skewed: Siegmund's Gaussian threshold under-protects against alarms.
    Run both thresholds directly (no extrapolation) on resampled reference values."""
    rate = 1e-3
    calibration = CusumDetector(reference, false_alarm_rate=rate).calibration
    k, margin = calibration.allowance, calibration.margin
    gaussian_h = threshold_for_arl(1 / rate, 2 * (k - margin), -(k - margin), 1.166)
    increments = (calibration.mean - reference) / calibration.std - k + margin
    gaussian, ours = simulate_arl(
        increments,
        np.array([gaussian_h, calibration.threshold]),
        np.random.default_rng(3),
        steps=10_000,
    )
    assert ours.arl == pytest.approx(1 / rate, rel=0.1)
    assert gaussian.arl < 0.8 / rate


@pytest.mark.parametrize(
    ("scenario", "median_bound", "worst_bound"),
    [
        ("abrupt moderate drop", 250, 800),
        ("abrupt severe drop", 60, 120),
        ("gradual slide", 1_100, 1_700),
    ],
)
def test_detects_each_drop_within_a_bound(
    reference: NDArray[np.float64], scenario: str, median_bound: int, worst_bound: int
) -> None:
    rng = np.random.default_rng(14)
    delays = []
    for _ in range(20):
        values = SCENARIOS[scenario].generate(2_000, 3_000, rng).tolist()
        after = [
            i for i in alarms(CusumDetector(reference, false_alarm_rate=1e-4), values) if i >= 2_000
        ]
        assert after, f"{scenario} not detected"
        delays.append(after[0] - 2_000 + 1)
    assert float(np.median(delays)) <= median_bound
    assert max(delays) <= worst_bound


def test_warning_comes_before_drift(reference: NDArray[np.float64]) -> None:
    values = SCENARIOS["abrupt moderate drop"].generate(2_000, 3_000, np.random.default_rng(15))
    detector = CusumDetector(reference, false_alarm_rate=1e-5)
    first_warning = first_drift = None
    for i, x in enumerate(values.tolist()):
        detector.update(x)
        if i >= 2_000 and detector.warning_detected and first_warning is None:
            first_warning = i
        if i >= 2_000 and detector.drift_detected:
            first_drift = i
            assert detector.warning_detected
            break
    assert first_warning is not None
    assert first_drift is not None
    assert first_warning < first_drift


def test_page_hinkley_matches_cusum_and_dates_the_change(reference: NDArray[np.float64]) -> None:
    values = SCENARIOS["abrupt severe drop"].generate(3_000, 1_000, np.random.default_rng(16))
    cusum = CusumDetector(reference, false_alarm_rate=1e-4)
    ph = PageHinkleyDetector(reference, false_alarm_rate=1e-4)
    assert ph.threshold == cusum.threshold
    found_cusum: list[int] = []
    for i, x in enumerate(values.tolist()):
        cusum.update(x)
        ph.update(x)
        assert ph.statistic == pytest.approx(cusum.statistic, abs=1e-6)
        assert ph.drift_detected == cusum.drift_detected
        if ph.drift_detected:
            found_cusum.append(i)
            if i >= 3_000:
                assert ph.since_change == cusum.since_change
                assert abs(i - ph.since_change + 1 - 3_000) <= 40
                break
    assert found_cusum
    assert found_cusum[-1] >= 3_000


def test_statistic_restarts_after_a_detection_and_on_reset(reference: NDArray[np.float64]) -> None:
    detector = CusumDetector(reference, false_alarm_rate=1e-3)
    while not detector.drift_detected:
        detector.update(0.2)
    assert detector.statistic > detector.threshold
    detector.update(float(detector.calibration.mean))
    assert not drifted(detector)
    assert detector.statistic < 1.0
    for _ in range(5):
        detector.update(0.2)
    assert detector.statistic > 0
    seen = detector.n_seen
    assert seen > 5
    detector.reset()
    assert (detector.n_seen, detector.statistic) == (0, 0.0)
    assert not drifted(detector)
    assert not detector.warning_detected


def test_rejects_bad_values_and_references(reference: NDArray[np.float64]) -> None:
    detector = CusumDetector(reference)
    for bad in (float("nan"), float("inf"), "0.9", None, True):
        with pytest.raises(InvalidInputError):
            detector.update(bad)  # type: ignore[arg-type]
    assert detector.n_seen == 0
    detector.update(np.float32(0.9))  # type: ignore[arg-type]
    assert detector.n_seen == 1
    with pytest.raises(InvalidInputError, match="at least 30"):
        CusumDetector([0.9] * 10)
    with pytest.raises(InvalidInputError, match="all equal"):
        CusumDetector([0.9] * 100)
    with pytest.raises(ConfigError, match=r"min_shift=0\.001 is too small"):
        CusumDetector(reference, min_shift=0.001)
    with pytest.raises(ConfigError, match="false_alarm_rate"):
        PageHinkleyDetector(reference, false_alarm_rate=0)


def test_a_small_reference_at_a_tiny_rate_looks_for_larger_drops(
    reference: NDArray[np.float64], caplog: pytest.LogCaptureFixture
) -> None:
    """No threshold holds 1e-9 on average over 230-value references for a 0.05 drop (those
    whose mean is off by more than the allowance drift upwards): the allowance is raised, and
    the warning says so; a 2,000-value reference keeps the requested one."""
    small = np.random.default_rng(21).choice(reference, 230, replace=False)
    with caplog.at_level("WARNING", logger="driftloop.drift.calibration"):
        calibration = CusumDetector(small, false_alarm_rate=1e-9).calibration
    requested = 0.05 / (2 * calibration.std)
    assert calibration.allowance > requested
    assert "230-value reference cannot tell drops" in caplog.text
    arls = (
        calibration.predicted_arl(calibration.threshold),
        calibration.averaged_arl(calibration.threshold),
    )
    assert min(arls) == pytest.approx(1e9, rel=1e-3)
    large = CusumDetector(reference, false_alarm_rate=1e-5).calibration
    assert large.allowance == pytest.approx(0.05 / (2 * large.std))
    assert large.averaged_arl(large.threshold) >= 1e5 * (1 - 1e-3)

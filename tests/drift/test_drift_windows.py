"""Two-sample window tests (KS, chi-square, PSI) on known distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from driftloop.drift import (
    ChiSquareWindowDetector,
    KSWindowDetector,
    PSIWindowDetector,
    WindowTestDetector,
    population_stability_index,
)
from driftloop.drift.chi_square import chi_square_two_sample
from driftloop.drift.ks import ks_p_value, ks_statistic
from driftloop.drift.synthetic import CALIBRATED_CLASSIFIER, confidence_scenarios
from driftloop.errors import ConfigError, InvalidInputError

MIX = {"billing": 0.5, "shipping": 0.3, "returns": 0.2}


def count_alarms(detector: WindowTestDetector, values: list[float]) -> int:
    found = 0
    for x in values:
        detector.update(x)
        found += detector.drift_detected
    return found


def first_alarm(detector: WindowTestDetector, values: list[float]) -> int | None:
    for i, x in enumerate(values):
        detector.update(x)
        if detector.drift_detected:
            return i
    return None


def test_ks_statistic_and_p_value_match_scipy() -> None:
    rng = np.random.default_rng(0)
    reference, sample = rng.normal(0, 1, 2_000), rng.normal(0.1, 1, 500)
    expected = stats.ks_2samp(reference, sample, method="asymp")
    d = ks_statistic(np.sort(reference), sample)
    assert d == pytest.approx(expected.statistic)
    assert ks_p_value(d, 2_000, 500) == pytest.approx(expected.pvalue, rel=0.05)


def test_chi_square_matches_scipy_contingency() -> None:
    reference = np.array([500.0, 300.0, 200.0, 0.0])
    sample = np.array([40.0, 45.0, 15.0, 0.0])
    statistic, p_value = chi_square_two_sample(reference, sample)
    expected = stats.chi2_contingency(np.vstack([reference[:3], sample[:3]]), correction=False)
    assert statistic == pytest.approx(expected.statistic)
    assert p_value == pytest.approx(expected.pvalue)


def test_population_stability_index_formula() -> None:
    p = np.array([50.0, 30.0, 20.0])
    q = np.array([30.0, 30.0, 40.0])
    ps, qs = (p + 0.5) / 101.5, (q + 0.5) / 101.5
    assert population_stability_index(p, q) == pytest.approx(
        float(np.sum((qs - ps) * np.log(qs / ps)))
    )
    assert population_stability_index(p, p) == 0.0


@pytest.mark.parametrize("kind", ["ks", "psi"])
def test_numeric_window_tests_hold_their_false_alarm_budget(kind: str) -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(0.0, 1.0, 2_000)
    rate, n = 1e-3, 40_000
    make = KSWindowDetector if kind == "ks" else PSIWindowDetector
    detector = make(reference, window=200, step=50, false_alarm_rate=rate)
    assert detector.alpha == pytest.approx(rate * 50)
    found = count_alarms(detector, rng.normal(0.0, 1.0, n).tolist())
    assert found <= rate * n + 3 * math.sqrt(rate * n)


@pytest.mark.parametrize("kind", ["ks", "psi"])
def test_numeric_window_tests_detect_a_shift_within_a_window(kind: str) -> None:
    rng = np.random.default_rng(2)
    reference = rng.normal(0.0, 1.0, 2_000)
    make = KSWindowDetector if kind == "ks" else PSIWindowDetector
    detector = make(reference, window=200, step=20, false_alarm_rate=1e-5)
    in_control = rng.normal(0.0, 1.0, 2_000).tolist()
    shifted = rng.normal(0.0, 2.0, 1_000).tolist()  # same mean, wider: a shape change
    at = first_alarm(detector, in_control + shifted)
    assert at is not None
    assert 2_000 <= at < 2_200
    assert detector.last_result is not None
    assert detector.last_result.p_value < detector.alpha


def test_ks_on_text_lengths_with_ties() -> None:
    rng = np.random.default_rng(3)
    reference = rng.poisson(80, 2_000).astype(float)
    detector = KSWindowDetector(reference, window=300, false_alarm_rate=1e-4)
    assert count_alarms(detector, rng.poisson(80, 6_000).astype(float).tolist()) == 0
    assert first_alarm(detector, rng.poisson(120, 600).astype(float).tolist()) is not None


def test_tests_run_every_step_once_the_window_is_full() -> None:
    rng = np.random.default_rng(5)
    reference = rng.normal(0, 1, 1_000)
    detector = KSWindowDetector(reference, window=100, step=25, false_alarm_rate=1e-9)
    results = []
    for x in rng.normal(0, 1, 200).tolist():
        detector.update(x)
        results.append(detector.last_result)
    assert all(r is None for r in results[:99])
    changes = [i for i in range(1, 200) if results[i] is not results[i - 1]]
    assert changes == [99, 124, 149, 174, 199]
    assert len(detector.window_values()) == 100


def test_tumbling_windows_do_not_overlap() -> None:
    rng = np.random.default_rng(10)
    values = rng.normal(0, 1, 300)
    detector = KSWindowDetector(rng.normal(0, 1, 1_000), window=100, step=100)
    assert detector.alpha == pytest.approx(1e-5 * 100)
    tested = []
    for i, x in enumerate(values.tolist()):
        detector.update(x)
        if (i + 1) % 100 == 0:
            tested.append(detector.window_values())
    for block, window in enumerate(tested):
        assert window.tolist() == values[block * 100 : (block + 1) * 100].tolist()


def test_restart_after_detection_waits_for_a_new_window() -> None:
    reference = np.random.default_rng(6).normal(0, 1, 1_000)
    detector = KSWindowDetector(reference, window=50, step=10, false_alarm_rate=1e-6)
    at = first_alarm(detector, [5.0] * 100)
    assert at == 49
    detector.update(0.0)
    assert not detector.drift_detected
    assert len(detector.window_values()) == 1
    detector.reset()
    assert detector.n_seen == 0
    assert detector.last_result is None


def test_chi_square_detects_a_new_class_mix_and_accepts_labels_and_indices() -> None:
    rng = np.random.default_rng(7)
    labels = list(MIX)
    detector = ChiSquareWindowDetector(MIX, 2_000, window=300, false_alarm_rate=1e-4)
    same = rng.choice(3, size=6_000, p=list(MIX.values()))
    found = 0
    for i, index in enumerate(same.tolist()):
        detector.update(labels[index] if i % 2 else float(index))
        found += detector.drift_detected
    expected = 1e-4 * 6_000
    assert found <= expected + 3 * math.sqrt(expected)
    shifted = rng.choice(3, size=600, p=[0.3, 0.3, 0.4])
    assert first_alarm(detector, [float(v) for v in shifted]) is not None


def test_chi_square_flags_a_label_the_reference_never_saw() -> None:
    detector = ChiSquareWindowDetector(MIX, 2_000, window=100, false_alarm_rate=1e-5)
    rng = np.random.default_rng(8)
    seen = rng.choice(list(MIX), size=100, p=list(MIX.values())).tolist()
    unseen = ["refunds"] * 20
    mixed = seen[:80] + unseen
    detected = False
    for label in mixed:
        detector.update(label)
        detected = detected or detector.drift_detected
    assert detected


def test_bad_input_and_configuration() -> None:
    reference = np.random.default_rng(9).normal(0, 1, 200)
    with pytest.raises(ConfigError, match="window"):
        KSWindowDetector(reference, window=5)
    with pytest.raises(ConfigError, match="step"):
        KSWindowDetector(reference, window=50, step=60)
    with pytest.raises(InvalidInputError, match="at least 30"):
        PSIWindowDetector([1.0, 2.0])
    with pytest.raises(InvalidInputError, match="all equal"):
        PSIWindowDetector([1.0] * 100)
    detector = ChiSquareWindowDetector(MIX, 100)
    for bad in (3.0, -1.0, 0.5, float("nan"), True):
        with pytest.raises(InvalidInputError, match="class label or an index"):
            detector.update(bad)
    assert detector.n_seen == 0
    with pytest.raises(InvalidInputError):
        ChiSquareWindowDetector({}, 100)
    with pytest.raises(InvalidInputError):
        ChiSquareWindowDetector({"a": -1.0, "b": 2.0}, 100)


def test_ks_detects_the_confidence_shape_change_that_leaves_the_mean_alone() -> None:
    shape = next(s for s in confidence_scenarios() if s.name == "shape change")
    assert shape.after.mean == pytest.approx(shape.before.mean)
    rng = np.random.default_rng(11)
    reference = CALIBRATED_CLASSIFIER.sample(2_000, rng)
    delays = []
    for _ in range(10):
        detector = KSWindowDetector(reference, window=500, false_alarm_rate=1e-4)
        at = first_alarm(detector, shape.generate(2_000, 2_000, rng).tolist())
        assert at is not None
        assert at >= 2_000
        delays.append(at - 2_000 + 1)
    assert max(delays) <= 500

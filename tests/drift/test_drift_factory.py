"""build_detector: config + reference profile → a working detector; the public API."""

from __future__ import annotations

import types

import numpy as np
import pytest

import driftloop.drift
from driftloop.config import DetectorConfig
from driftloop.drift import (
    ChiSquareWindowDetector,
    CusumDetector,
    KSWindowDetector,
    PageHinkleyDetector,
    PSIWindowDetector,
    SelfReferencedDetector,
    build_detector,
)
from driftloop.drift.factory import REFERENCE_WARMUP
from driftloop.drift.synthetic import CALIBRATED_CLASSIFIER
from driftloop.errors import ConfigError
from driftloop.predictors import ReferenceProfile


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    rng = np.random.default_rng(0)
    confidences = CALIBRATED_CLASSIFIER.sample(2_000, rng)
    return ReferenceProfile(
        confidences=confidences.tolist(),
        text_lengths=rng.poisson(120, 2_000).tolist(),
        class_mix={"billing": 0.5, "shipping": 0.3, "returns": 0.2},
        mean_confidence=float(confidences.mean()),
    )


@pytest.mark.parametrize(
    ("algorithm", "kind"),
    [
        ("cusum", CusumDetector),
        ("page_hinkley", PageHinkleyDetector),
        ("ks", KSWindowDetector),
        ("psi", PSIWindowDetector),
    ],
)
def test_numeric_algorithms(profile: ReferenceProfile, algorithm: str, kind: type) -> None:
    config = DetectorConfig.model_validate(
        {"algorithm": algorithm, "false_alarm_rate": 1e-4, "window": 200}
    )
    detector = build_detector(config, profile)
    assert isinstance(detector, kind)
    if isinstance(detector, CusumDetector | PageHinkleyDetector):
        assert detector.false_alarm_rate == 1e-4
        assert detector.calibration.mean == pytest.approx(profile.mean_confidence)
    else:
        assert isinstance(detector, KSWindowDetector | PSIWindowDetector)
        assert detector.window == 200
    for x in [0.3] * 400:
        detector.update(x)
        if detector.drift_detected:
            break
    assert detector.drift_detected


def test_text_length_metric_uses_the_text_length_reference(profile: ReferenceProfile) -> None:
    detector = build_detector(
        DetectorConfig(algorithm="ks", window=100), profile, metric="text_length"
    )
    for x in np.random.default_rng(1).poisson(120, 1_000).tolist():
        detector.update(float(x))
        assert not detector.drift_detected
    detected = []
    for _ in range(100):
        detector.update(400.0)
        detected.append(detector.drift_detected)
    assert any(detected)


def test_chi_square_on_predicted_classes(profile: ReferenceProfile) -> None:
    detector = build_detector(
        DetectorConfig(algorithm="chi_square", window=100), profile, metric="predicted_class"
    )
    assert isinstance(detector, ChiSquareWindowDetector)
    assert detector.labels == ("billing", "shipping", "returns")
    detected = []
    for _ in range(100):
        detector.update("returns")
        detected.append(detector.drift_detected)
    assert any(detected)


def test_wrong_metric_for_an_algorithm(profile: ReferenceProfile) -> None:
    with pytest.raises(ConfigError, match="chi_square detector tests predicted classes"):
        build_detector(DetectorConfig(algorithm="chi_square"), profile)
    with pytest.raises(ConfigError, match="no reference sample for metric 'latency_ms'"):
        build_detector(DetectorConfig(), profile, metric="latency_ms")


def learning(detector: SelfReferencedDetector) -> bool:
    """Read the flag through a call, so that type checkers do not keep an earlier narrowing."""
    return detector.learning


def test_without_a_reference_the_stream_becomes_the_reference() -> None:
    detector = build_detector(DetectorConfig(algorithm="cusum", false_alarm_rate=1e-4), None)
    assert isinstance(detector, SelfReferencedDetector)
    rng = np.random.default_rng(2)
    for x in CALIBRATED_CLASSIFIER.sample(REFERENCE_WARMUP, rng).tolist():
        detector.update(x)
        assert not detector.drift_detected
    assert not detector.learning
    assert isinstance(detector.inner, CusumDetector)
    for _ in range(200):
        detector.update(0.3)
        if detector.drift_detected:
            break
    assert detector.drift_detected
    assert detector.warning_detected
    assert detector.statistic > detector.threshold
    detector.reset()
    assert learning(detector)
    assert detector.n_seen == 0


def test_self_referenced_chi_square() -> None:
    detector = build_detector(
        DetectorConfig(algorithm="chi_square", window=100), None, metric="predicted_class"
    )
    rng = np.random.default_rng(3)
    for x in rng.choice(3, size=REFERENCE_WARMUP, p=[0.6, 0.3, 0.1]).tolist():
        detector.update(float(x))
    assert isinstance(detector, SelfReferencedDetector)
    assert isinstance(detector.inner, ChiSquareWindowDetector)
    detected = []
    for _ in range(100):
        detector.update(2.0)
        detected.append(detector.drift_detected)
    assert any(detected)


def test_public_api_is_sorted_and_complete() -> None:
    names = driftloop.drift.__all__
    assert names == sorted(names, key=lambda n: (n[0].islower(), n))
    plumbing = {"annotations", "TYPE_CHECKING", "lazy_exports"}
    public = {
        name
        for name in dir(driftloop.drift)
        if not name.startswith("_")
        and name not in plumbing
        and not isinstance(getattr(driftloop.drift, name), types.ModuleType)
    }
    assert public == set(names)  # every lazy name resolves, and none is left out of __all__

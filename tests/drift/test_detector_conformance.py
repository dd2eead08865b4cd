"""Every built-in drift detector passes driftloop.testing's detector suite: each algorithm as a
monitor builds it (build_detector with a reference profile), and one that learns its reference
from the stream."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from driftloop.config import DetectorConfig
from driftloop.drift import (
    CusumDetector,
    DriftDetector,
    KSWindowDetector,
    SelfReferencedDetector,
    build_detector,
)
from driftloop.drift.synthetic import CALIBRATED_CLASSIFIER
from driftloop.predictors import ReferenceProfile
from driftloop.testing.checks import ConformanceError, DetectorSubject, check_detector

RATE = 1e-3
DROPPED = CALIBRATED_CLASSIFIER.with_mean_drop(0.08)
CLASS_MIX = {"0": 0.5, "1": 0.3, "2": 0.2}
SHIFTED_MIX = (0.3, 0.3, 0.4)


def confidences(rng: np.random.Generator, n: int) -> Sequence[float]:
    return [float(v) for v in CALIBRATED_CLASSIFIER.sample(n, rng)]


def dropped(rng: np.random.Generator, n: int) -> Sequence[float]:
    return [float(v) for v in DROPPED.sample(n, rng)]


def classes(rng: np.random.Generator, n: int) -> Sequence[float]:
    return [float(v) for v in rng.choice(3, size=n, p=list(CLASS_MIX.values()))]


def shifted_classes(rng: np.random.Generator, n: int) -> Sequence[float]:
    return [float(v) for v in rng.choice(3, size=n, p=SHIFTED_MIX)]


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    sample = CALIBRATED_CLASSIFIER.sample(2_000, np.random.default_rng(0))
    return ReferenceProfile(
        confidences=sample.tolist(),
        text_lengths=[100] * 2_000,
        class_mix=CLASS_MIX,
        mean_confidence=float(sample.mean()),
    )


@pytest.mark.parametrize(
    "algorithm", ["cusum", "page_hinkley", "shape", "cusum_shape", "ks", "psi"]
)
def test_numeric_detector(algorithm: str, profile: ReferenceProfile) -> None:
    config = DetectorConfig(algorithm=algorithm, false_alarm_rate=RATE, window=200)
    check_detector(
        DetectorSubject(lambda: build_detector(config, profile), confidences, dropped, RATE)
    )


def test_chi_square_detector(profile: ReferenceProfile) -> None:
    config = DetectorConfig(algorithm="chi_square", false_alarm_rate=RATE, window=200)
    check_detector(
        DetectorSubject(
            lambda: build_detector(config, profile, metric="predicted_class"),
            classes,
            shifted_classes,
            RATE,
        )
    )


def test_self_referenced_detector() -> None:
    def make() -> DriftDetector:
        return SelfReferencedDetector(
            lambda values: KSWindowDetector(values, window=200, false_alarm_rate=RATE), warmup=500
        )

    check_detector(DetectorSubject(make, confidences, dropped, RATE, lead_in=500))


class ForgetfulResetDetector(CusumDetector):
    """Keeps its statistic across reset(): what the suite is there to catch."""

    def reset(self) -> None:
        statistic = self._s
        super().reset()
        self._s = statistic


def test_the_suite_catches_a_reset_that_keeps_state(profile: ReferenceProfile) -> None:
    with pytest.raises(ConformanceError, match=r"reset_forgets_everything"):
        check_detector(
            DetectorSubject(
                lambda: ForgetfulResetDetector(profile.confidences, false_alarm_rate=RATE),
                confidences,
                dropped,
                RATE,
            )
        )

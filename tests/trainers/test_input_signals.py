"""Input signals: the out-of-vocabulary rate of each text, measured by the trained model,
kept on its reference profile, and tested by a drift detector against that reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftloop.config import DetectorConfig
from driftloop.drift import KSWindowDetector, build_detector
from driftloop.errors import ConfigError
from driftloop.objectstore import bundled_reviews_path
from driftloop.predictors import ReferenceProfile, load_predictor
from driftloop.predictors.inputs import OOV_RATE, VocabularyProfile
from driftloop.trainers.base import TrainedModel, TrainingData
from driftloop.trainers.sklearn import SklearnParams, SklearnTrainer


def test_oov_rate_is_the_share_of_unknown_words() -> None:
    vocabulary = VocabularyProfile(["soup", "cold", "the"])
    rates = vocabulary.oov_rates(["The soup was COLD", "Lukewarm broth", "", "a ! ?", "soup"])
    # "was" unknown (1 of 4); both unknown; no words (one-letter tokens are not words): 0
    np.testing.assert_allclose(rates, [0.25, 1.0, 0.0, 0.0, 0.0])
    cased = VocabularyProfile(["Soup"], token_pattern=r"\w+", lowercase=False)
    np.testing.assert_allclose(cased.oov_rates(["Soup soup a"]), [2 / 3])


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    reviews = pd.read_csv(bundled_reviews_path(), dtype=str, keep_default_na=False)
    sample = reviews.groupby("label", group_keys=False).sample(60, random_state=0)
    return SklearnTrainer(SklearnParams(c_grid=[4.0])).fit(
        TrainingData(sample.reset_index(drop=True))
    )


def test_the_sklearn_model_measures_unknown_words_and_keeps_them_after_loading(
    trained: TrainedModel, tmp_path: Path
) -> None:
    texts = ["the product was great", "zqxv blorft wuggle", "the blorft"]
    rates = trained.predictor.input_signals(texts)[OOV_RATE]
    np.testing.assert_allclose(rates, [0.0, 1.0, 0.5])
    trained.predictor.save(tmp_path / "model")
    loaded = load_predictor(tmp_path / "model")
    np.testing.assert_array_equal(loaded.input_signals(texts)[OOV_RATE], rates)


def test_the_reference_profile_keeps_the_rates_on_the_validation_reference(
    trained: TrainedModel,
) -> None:
    reference = trained.reference
    assert reference is not None
    values = reference.inputs[OOV_RATE]
    assert len(values) == len(reference.confidences)
    assert 0.0 < float(np.mean(values)) < 0.5  # held-out texts: a few words never trained on
    assert ReferenceProfile.from_dict(reference.to_dict()) == reference
    older = {k: v for k, v in reference.to_dict().items() if k != "inputs"}
    assert ReferenceProfile.from_dict(older).inputs == {}  # profiles saved before still load


def test_a_drift_monitor_on_oov_rate_tests_against_that_reference(trained: TrainedModel) -> None:
    reference = trained.reference
    assert reference is not None
    config = DetectorConfig(algorithm="ks", window=50, false_alarm_rate=1e-4)
    detector = build_detector(config, reference, metric=OOV_RATE)
    assert isinstance(detector, KSWindowDetector)
    rng = np.random.default_rng(0)
    for value in rng.choice(reference.inputs[OOV_RATE], 500):
        detector.update(float(value))
        assert not detector.drift_detected
    unfamiliar = trained.predictor.input_signals(["zqxv blorft wuggle the"] * 100)[OOV_RATE]
    found = []
    for value in unfamiliar:
        detector.update(float(value))
        found.append(detector.drift_detected)
    assert any(found)


def test_a_metric_without_a_reference_sample_names_the_known_ones(trained: TrainedModel) -> None:
    assert trained.reference is not None
    with pytest.raises(
        ConfigError,
        match=r"no reference sample for metric 'latency_ms'.*"
        r"'oov_rate'",
    ):
        build_detector(DetectorConfig(algorithm="ks"), trained.reference, metric="latency_ms")

"""``embedding_typicality``, the input-drift signal ``driftloop init`` monitors: a window of
texts unlike the training data fires the init default's detector, a window like it does not,
and after a retrain onto the new data (which holds the new kind of text as a minority) the new
version's monitor stays quiet on that traffic (the test is one-sided and insensitive to the
mix: a topic with few training rows is as typical as a frequent one)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray

from driftloop.config import DetectorConfig, parse_config
from driftloop.drift import build_detector
from driftloop.objectstore import bundled_reviews_path
from driftloop.predictors import ReferenceProfile, load_predictor
from driftloop.predictors.embedding import EMBEDDING_TYPICALITY, EmbeddingTypicality
from driftloop.project import default_config_text
from driftloop.trainers.base import TrainedModel, TrainingData
from driftloop.trainers.sklearn import SklearnParams, SklearnPredictor, SklearnTrainer

DIMENSIONS = 16


def init_default_detector() -> DetectorConfig:
    """The detector of the input-drift monitor ``driftloop init`` writes."""
    config = parse_config(default_config_text(), source="driftloop init", environ={})
    [monitor] = [m for m in config.monitors if m.metric == EMBEDDING_TYPICALITY]
    assert monitor.type == "drift"
    assert monitor.detector is not None
    assert "@retrain" in monitor.message
    return monitor.detector


def clusters(rng: np.random.Generator, counts: dict[int, int]) -> NDArray[np.float64]:
    """Embeddings around fixed topic centres (topic → how many)."""
    centres = np.random.default_rng(42).normal(size=(8, DIMENSIONS))
    return np.vstack(
        [centres[topic] + 0.35 * rng.normal(size=(n, DIMENSIONS)) for topic, n in counts.items()]
    )


class Version:
    """A model version's typicality and its reference profile, from its training topics."""

    def __init__(self, counts: dict[int, int], rng: np.random.Generator) -> None:
        train, held_out = (
            clusters(rng, counts),
            clusters(rng, {t: n // 4 for t, n in counts.items()}),
        )
        self.typicality = EmbeddingTypicality.fit(train, held_out)
        values = self.typicality.typicality(held_out).tolist()
        self.reference = ReferenceProfile(
            confidences=[0.9],
            text_lengths=[10],
            class_mix={},
            mean_confidence=0.9,
            inputs={EMBEDDING_TYPICALITY: values},
        )

    def alarms(self, traffic: NDArray[np.float64], config: DetectorConfig) -> int:
        detector = build_detector(config, self.reference, metric=EMBEDDING_TYPICALITY)
        fired = 0
        for value in self.typicality.typicality(traffic).tolist():
            detector.update(value)
            fired += detector.drift_detected
        return fired


@pytest.fixture(scope="module")
def v1() -> Version:
    return Version({0: 1500, 1: 1500}, np.random.default_rng(0))


def test_input_drift_fires_on_an_unseen_topic_and_not_on_the_same_distribution(v1: Version) -> None:
    rng = np.random.default_rng(1)
    config = init_default_detector()
    same = clusters(rng, {0: 2000, 1: 2000})
    assert 0.45 < v1.typicality.typicality(same).mean() < 0.55  # uniform ranks: mean 0.5
    assert v1.alarms(same, config) == 0
    unseen = rng.permutation(clusters(rng, {0: 300, 1: 300, 2: 400}))  # 40%: a new topic
    assert v1.typicality.typicality(clusters(rng, {2: 500})).mean() < 0.1
    detector = build_detector(config, v1.reference, metric=EMBEDDING_TYPICALITY)
    seen = 0
    for value in v1.typicality.typicality(unseen).tolist():
        seen += 1
        detector.update(value)
        if detector.drift_detected:
            break
    assert detector.drift_detected
    assert seen < 500


def test_after_a_retrain_onto_the_new_topic_input_drift_recovers(v1: Version) -> None:
    rng = np.random.default_rng(2)
    config = init_default_detector()
    new_topic = clusters(rng, {2: 2500})
    assert v1.alarms(new_topic, config) >= 1
    # v2's data holds the new topic as a minority (a cumulative snapshot): 10% of its rows
    v2 = Version({0: 1500, 1: 1500, 2: 330}, np.random.default_rng(3))
    assert v2.typicality.typicality(new_topic).mean() > 0.4
    assert v2.alarms(new_topic, config) == 0
    assert v2.alarms(clusters(rng, {0: 1500, 1: 1500}), config) == 0  # and on the old mix


def test_the_novelty_score_is_scikit_learns_local_outlier_factor() -> None:
    from sklearn.neighbors import LocalOutlierFactor

    rng = np.random.default_rng(4)
    train = clusters(rng, {0: 400, 1: 400})
    typicality = EmbeddingTypicality.fit(train, clusters(rng, {0: 50, 1: 50}))
    oracle = LocalOutlierFactor(n_neighbors=typicality.n_neighbors, novelty=True)
    oracle.fit(typicality.sample)
    new = clusters(rng, {0: 50, 2: 50})
    unit = new / np.linalg.norm(new, axis=1, keepdims=True)
    np.testing.assert_allclose(
        typicality.novelty(new), oracle.score_samples(unit.astype(np.float32)), rtol=1e-4
    )


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    frame = pd.read_csv(bundled_reviews_path())
    frame = frame.sample(1200, random_state=0)[["text", "label"]].reset_index(drop=True)
    return SklearnTrainer(SklearnParams(c_grid=[4.0])).fit(
        TrainingData(frame, "text", "label", "reviews", "test")
    )


def test_the_sklearn_model_reports_it_and_keeps_it_when_saved(
    trained: TrainedModel, tmp_path: Path
) -> None:
    assert trained.reference is not None
    reference = np.asarray(trained.reference.inputs[EMBEDDING_TYPICALITY])
    assert abs(reference.mean() - 0.5) < 0.02
    assert reference.min() >= 0
    assert reference.max() <= 1
    texts = ["Great coffee, fresh and smooth.", "Le film était trop long.", ""]  # "": no words
    before = trained.predictor.input_signals(texts)[EMBEDDING_TYPICALITY]
    trained.predictor.save(tmp_path)
    after = load_predictor(tmp_path).input_signals(texts)[EMBEDDING_TYPICALITY]
    np.testing.assert_allclose(before, after)
    assert after.shape == (3,)
    assert ((after >= 0) & (after <= 1)).all()


def test_a_prediction_shares_its_tfidf_rows_with_the_signals_of_the_same_texts(
    trained: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's batcher asks for a batch's input signals right after its prediction: the
    sklearn model transforms the texts once for both."""
    predictor = trained.predictor
    assert isinstance(predictor, SklearnPredictor)
    texts = ["Great coffee, fresh and smooth.", "The plot dragged on.", "Runs small."]
    expected = predictor.input_signals(list(texts))
    union = predictor.pipeline.named_steps["features"]
    transforms: list[int] = []
    real = union.transform

    def counted(batch: Any) -> Any:
        transforms.append(len(batch))
        return real(batch)

    monkeypatch.setattr(union, "transform", counted)
    predictor.predict(texts)
    signals = predictor.input_signals(texts)
    assert transforms == [3]
    for name, values in expected.items():
        np.testing.assert_allclose(signals[name], values)
    predictor.input_signals(["other texts"])  # other texts: transformed for themselves
    assert transforms == [3, 1]


def test_projecting_a_text_copies_none_of_the_projection_weights(trained: TrainedModel) -> None:
    """scipy's sparse product took the float32 transpose of the 20,000 x 64 components as a
    fresh float64 copy on every call (~4 ms per request)."""
    predictor = trained.predictor
    assert isinstance(predictor, SklearnPredictor)
    assert predictor.typicality is not None
    projection = predictor.typicality.projection
    features = predictor.pipeline.named_steps["features"].transform(["a fine sweater"])
    expected = features[:, projection.columns] @ projection.components.T.astype(np.float64)
    projection.transform(features)
    tracemalloc.start()
    try:
        projected = projection.transform(features)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(projected, expected)
    assert peak < projection.components.nbytes / 4

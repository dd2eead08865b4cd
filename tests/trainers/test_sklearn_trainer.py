"""SklearnTrainer / SklearnPredictor: calibrated TF-IDF + logistic regression."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftloop.config import ModelConfig
from driftloop.errors import ConfigError, IntegrityError
from driftloop.objectstore import bundled_reviews_path
from driftloop.predictors import MANIFEST, Evaluation, load_predictor
from driftloop.registry import hash_directory
from driftloop.trainers.base import TrainingData
from driftloop.trainers.sklearn import SklearnParams, SklearnPredictor, SklearnTrainer

TEXTS = ["the sweater pilled after one wash", "a moving, beautifully shot film", "stale chips"]


def review_sample(rows_per_class: int, seed: int = 0) -> pd.DataFrame:
    reviews = pd.read_csv(bundled_reviews_path(), dtype=str, keep_default_na=False)
    return (
        reviews.groupby("label", group_keys=False)
        .sample(rows_per_class, random_state=seed)
        .reset_index(drop=True)
    )


def test_fit_reports_held_out_quality_and_calibration() -> None:
    trained = SklearnTrainer().fit(TrainingData(review_sample(80)))
    evaluation = trained.evaluation
    assert isinstance(evaluation, Evaluation)
    labels = sorted(review_sample(1)["label"])
    assert trained.predictor.labels == tuple(labels)
    assert sorted(evaluation.per_class_f1) == labels
    assert evaluation.n == 96  # 20 % of 480 rows held out
    assert evaluation.accuracy > 0.45  # six classes: chance is 0.17
    assert 0 < evaluation.macro_f1 <= 1
    assert 0 <= evaluation.ece <= 1
    assert 0 <= evaluation.ece_before_calibration <= 1
    assert trained.params["C"] in trained.params["c_grid"]
    assert trained.params["rows"] == {"train": 307, "validation": 77, "held_out": 96}
    assert trained.predictor.temperature == trained.params["temperature"]
    assert trained.predictor.temperature != 1.0
    assert len(trained.reference.confidences) == 96
    assert sum(trained.reference.class_mix.values()) == pytest.approx(1.0)
    probabilities = trained.predictor.predict_proba(TEXTS)
    assert probabilities.shape == (3, 6)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_save_and_load_give_identical_outputs(tmp_path: Path) -> None:
    trained = SklearnTrainer(SklearnParams(c_grid=[2.0], char_ngrams=True)).fit(
        TrainingData(review_sample(30))
    )
    trained.predictor.save(tmp_path / "model")
    manifest = json.loads((tmp_path / "model" / MANIFEST).read_text())
    assert manifest["format"] == "sklearn"
    assert manifest["temperature"] == trained.predictor.temperature
    assert [f["name"] for f in manifest["features"]] == ["word", "char"]
    assert sorted(p.suffix for p in (tmp_path / "model").iterdir()) == [
        ".json",
        ".json",
        ".json",
        *[".npy"] * 8,  # 4 of them the input-drift embedding's
    ]
    loaded = load_predictor(tmp_path / "model")
    assert isinstance(loaded, SklearnPredictor)
    np.testing.assert_array_equal(loaded.logits(TEXTS), trained.predictor.logits(TEXTS))
    np.testing.assert_array_equal(
        loaded.predict_proba(TEXTS), trained.predictor.predict_proba(TEXTS)
    )
    assert loaded.logits([]).shape == (0, 6)


def test_same_data_same_artifact_hash(tmp_path: Path) -> None:
    data = TrainingData(review_sample(20))
    for name in ("a", "b"):
        SklearnTrainer(SklearnParams(c_grid=[4.0])).fit(data).predictor.save(tmp_path / name)
    assert hash_directory(tmp_path / "a") == hash_directory(tmp_path / "b")


def test_binary_classification() -> None:
    rows = review_sample(40)
    rows = rows[rows["label"].isin(["Movies-Positive", "Movies-Negative"])]
    trained = SklearnTrainer(SklearnParams(c_grid=[4.0])).fit(TrainingData(rows))
    assert trained.predictor.labels == ("Movies-Negative", "Movies-Positive")
    probabilities = trained.predictor.predict_proba(["a wonderful, moving film"])
    assert probabilities.shape == (1, 2)
    assert probabilities[0, 1] > probabilities[0, 0]


def test_other_column_names(tmp_path: Path) -> None:
    rows = review_sample(10).rename(columns={"text": "review", "label": "category"})
    trained = SklearnTrainer(SklearnParams(c_grid=[1.0])).fit(
        TrainingData(rows, text_column="review", label_column="category")
    )
    assert len(trained.predictor.labels) == 6


def test_params_come_from_the_model_config() -> None:
    trainer = SklearnTrainer.from_model_config(
        ModelConfig(params={"c_grid": [0.5, 2], "char_ngrams": True}, labels=["a", "b"])
    )
    assert isinstance(trainer, SklearnTrainer)
    assert trainer.params.c_grid == [0.5, 2.0]
    assert trainer.params.char_ngrams
    assert trainer.labels == ("a", "b")
    with pytest.raises(ConfigError, match="c_grid"):
        SklearnTrainer.from_model_config(ModelConfig(params={"c_grid": [-1]}))
    with pytest.raises(ConfigError, match="learning_rate"):
        SklearnTrainer.from_model_config(ModelConfig(params={"learning_rate": 0.1}))


def test_corrupt_files_are_integrity_errors(tmp_path: Path) -> None:
    trained = SklearnTrainer(SklearnParams(c_grid=[1.0])).fit(TrainingData(review_sample(10)))
    directory = tmp_path / "model"
    trained.predictor.save(directory)
    (directory / "word_vocabulary.json").write_text("[not json")
    with pytest.raises(IntegrityError, match=r"word_vocabulary\.json is corrupt"):
        load_predictor(directory)
    trained.predictor.save(directory)
    (directory / "intercept.npy").unlink()
    with pytest.raises(IntegrityError, match=r"intercept\.npy is missing"):
        load_predictor(directory)


@pytest.mark.slow
def test_trains_on_the_whole_bundled_dataset_in_seconds() -> None:
    reviews = pd.read_csv(bundled_reviews_path(), dtype=str, keep_default_na=False)
    started = time.perf_counter()
    trained = SklearnTrainer().fit(TrainingData(reviews))
    seconds = time.perf_counter() - started
    evaluation = trained.evaluation
    assert isinstance(evaluation, Evaluation)
    assert seconds < 60
    assert evaluation.accuracy > 0.75
    assert evaluation.macro_f1 > 0.75
    assert evaluation.ece < 0.05
    assert evaluation.ece < evaluation.ece_before_calibration

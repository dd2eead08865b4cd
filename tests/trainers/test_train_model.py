"""train_model / register_external: snapshot → trainer → registered version, all or nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from driftloop.config import Config, load_config
from driftloop.errors import ConfigError, InvalidInputError, NotFoundError, TrainingError
from driftloop.objectstore import DatasetStore, bundled_reviews_path
from driftloop.registry import ModelRegistry
from driftloop.trainers.training import register_external, train_model

CONFIG = """\
store: sqlite:///.driftloop/driftloop.db
storage: file://.driftloop/storage
models:
  tiny: {trainer: sklearn, data: small, params: {c_grid: [4.0]}}
  labelled: {trainer: sklearn, data: small, labels: [Food-Positive, Food-Negative]}
  missing-trainer: {trainer: xgboost, data: reviews}
  one-class: {trainer: sklearn, data: oneclass}
  notebook: {trainer: notebook, data: small, notebook: raises.ipynb}
"""


def review_sample(rows_per_class: int, seed: int = 0) -> pd.DataFrame:
    reviews = pd.read_csv(bundled_reviews_path(), dtype=str, keep_default_na=False)
    return (
        reviews.groupby("label", group_keys=False)
        .sample(rows_per_class, random_state=seed)
        .reset_index(drop=True)
    )


@pytest.fixture
def config(tmp_path: Path) -> Config:
    (tmp_path / "driftloop.yaml").write_text(CONFIG)
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": "raises",
                "metadata": {},
                "outputs": [],
                "source": "raise RuntimeError('cell exploded')",
            }
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (tmp_path / "raises.ipynb").write_text(json.dumps(notebook))
    loaded = load_config(tmp_path / "driftloop.yaml")
    store = DatasetStore.from_config(loaded)
    store.push(review_sample(15), "small")
    store.push(review_sample(15).assign(label="Food-Positive"), "oneclass")
    return loaded


def nothing_registered(config: Config) -> bool:
    registry = ModelRegistry.from_config(config)
    return registry.list_models() == [] and registry.storage.list("models") == []


def test_first_version_goes_to_production_later_ones_wait(config: Config) -> None:
    store = DatasetStore.from_config(config)
    first = train_model(config, "tiny")
    assert first.version == 1
    assert first.deployed_at is not None
    assert first.snapshot_id == store.newest("small").snapshot_id
    assert first.trigger == "manual"
    assert first.evaluation is not None
    assert first.reference is not None
    newer = store.push(review_sample(15, seed=1), "small")
    second = train_model(config, "tiny", trigger="incident:17")
    registry = ModelRegistry.from_config(config)
    assert second.version == 2
    assert second.parent_version == 1
    # the default retrain data policy (cumulative): the newer rows and the older ones, stored
    # as a snapshot of their own
    union = store.newest("small")
    assert second.snapshot_id == union.snapshot_id != newer.snapshot_id
    assert union.row_count > newer.row_count
    assert second.trigger == "incident:17"
    assert second.deployed_at is None
    assert registry.aliases("tiny") == {"production": 1}
    older = train_model(config, "tiny", snapshot_id=first.snapshot_id)
    assert older.snapshot_id == first.snapshot_id


def test_progress_is_reported(config: Config) -> None:
    stages: list[tuple[str, float]] = []
    train_model(config, "tiny", progress=lambda stage, done: stages.append((stage, done)))
    assert stages[0] == ("vectorizing", 0.0)
    assert stages[-1] == ("done", 1.0)
    assert [done for _stage, done in stages] == sorted(done for _stage, done in stages)


def test_unknown_trainer_touches_nothing(config: Config) -> None:
    with pytest.raises(ConfigError, match="unknown trainer name 'xgboost'; known: command"):
        train_model(config, "missing-trainer")
    assert "reviews" not in DatasetStore.from_config(config).datasets()
    assert nothing_registered(config)


def test_single_class_and_unknown_labels_register_nothing(config: Config) -> None:
    with pytest.raises(InvalidInputError, match="single class"):
        train_model(config, "one-class")
    with pytest.raises(InvalidInputError, match="outside the model's label set"):
        train_model(config, "labelled")
    assert nothing_registered(config)


def test_raising_notebook_registers_nothing(config: Config) -> None:
    with pytest.raises(TrainingError, match="RuntimeError: cell exploded"):
        train_model(config, "notebook")
    assert nothing_registered(config)


def test_unknown_names(config: Config) -> None:
    with pytest.raises(NotFoundError, match=r"no model 'nope' in the config.*'tiny'"):
        train_model(config, "nope")
    with pytest.raises(NotFoundError, match="no snapshot 'missing'"):
        train_model(config, "tiny", snapshot_id="missing")
    with pytest.raises(InvalidInputError, match="invalid trigger"):
        train_model(config, "tiny", trigger="on a whim")
    assert nothing_registered(config)


def test_register_external_model_from_ci(config: Config, tmp_path: Path) -> None:
    trained_here = train_model(config, "tiny")
    registry = ModelRegistry.from_config(config)
    predictor = registry.load_predictor(trained_here)
    directory = tmp_path / "ci-model"
    predictor.save(directory)
    assert trained_here.evaluation is not None
    evaluation_file = tmp_path / "evaluation.json"
    evaluation_file.write_text(json.dumps({"evaluation": trained_here.evaluation.to_dict()}))
    snapshot = DatasetStore.from_config(config).newest("small")
    version = register_external(
        config,
        "tiny",
        directory,
        trigger="ci:981",
        trainer="notebook",
        snapshot_id=snapshot.snapshot_id,
        evaluation_file=evaluation_file,
    )
    assert version.version == 2
    assert version.trigger == "ci:981"
    assert version.trainer == "notebook"
    assert version.parent_version == 1
    assert version.snapshot_hash == snapshot.content_hash
    assert version.evaluation == trained_here.evaluation
    assert version.content_hash == trained_here.content_hash
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"accuracy": 0.9}))
    with pytest.raises(InvalidInputError, match=r"has no field 'ece'; a classification model"):
        register_external(config, "tiny", directory, evaluation_file=bad)
    assert len(registry.list_versions("tiny")) == 2

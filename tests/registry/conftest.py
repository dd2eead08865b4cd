"""Fixtures for the registry tests: a small trained model and a registry in a temp dir."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from driftloop.database.core import Database
from driftloop.objectstore import bundled_reviews_path, open_storage
from driftloop.registry import ModelRegistry
from driftloop.trainers.base import TrainedModel, TrainingData
from driftloop.trainers.sklearn import SklearnParams, SklearnTrainer


def review_sample(rows_per_class: int, seed: int = 0) -> pd.DataFrame:
    reviews = pd.read_csv(bundled_reviews_path(), dtype=str, keep_default_na=False)
    return (
        reviews.groupby("label", group_keys=False)
        .sample(rows_per_class, random_state=seed)
        .reset_index(drop=True)
    )


@pytest.fixture(scope="session")
def trained() -> TrainedModel:
    trainer = SklearnTrainer(SklearnParams(c_grid=[4.0]))
    return trainer.fit(TrainingData(review_sample(40), snapshot_id="s1", snapshot_hash="h1"))


@pytest.fixture
def model_dir(trained: TrainedModel, tmp_path: Path) -> Path:
    directory = tmp_path / "saved-model"
    trained.predictor.save(directory)
    return directory


def make_registry(root: Path, cache: str = "cache") -> ModelRegistry:
    database = Database(f"sqlite:///{root / 'registry.db'}")
    database.migrate()
    return ModelRegistry(database, open_storage(f"file://{root / 'storage'}"), root / cache)


RegistryFactory = Callable[..., ModelRegistry]


@pytest.fixture
def registry_factory(tmp_path: Path) -> RegistryFactory:
    """Opens the test's registry again, like another process would (optionally another cache)."""

    def factory(cache: str = "cache") -> ModelRegistry:
        return make_registry(tmp_path, cache)

    return factory


@pytest.fixture
def registry(registry_factory: RegistryFactory) -> ModelRegistry:
    return registry_factory()

"""The registry on the at-scale backends: PostgreSQL for metadata, S3 for artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from driftloop.database.core import Database
from driftloop.errors import IntegrityError
from driftloop.objectstore import DatasetStore, open_storage
from driftloop.registry import ModelRegistry
from driftloop.trainers.base import TrainedModel

TEXTS = ["comfortable jeans", "a dull, lifeless sequel"]


@pytest.mark.postgres
def test_registry_on_postgresql(
    fresh_postgres_url: str, tmp_path: Path, trained: TrainedModel
) -> None:
    database = Database(fresh_postgres_url)
    database.migrate()
    storage = open_storage(f"file://{tmp_path / 'storage'}")
    registry = ModelRegistry(database, storage, tmp_path / "cache")
    try:
        for trigger in ("manual", "incident:7", "ci:9"):
            registry.register_trained(
                "review-classifier", trained, trainer="sklearn", trigger=trigger
            )
        for version in (1, 2, 3):
            registry.set_alias("review-classifier", "production", version, actor="pg")
        assert registry.rollback("review-classifier", actor="pg").version == 2
        resolved = registry.resolve("review-classifier")
        assert resolved.deployed_at is not None
        assert resolved.evaluation == trained.evaluation
        assert resolved.trigger == "incident:7"
        assert [c.action for c in registry.alias_history("review-classifier")] == [
            "set",
            "set",
            "set",
            "rollback",
        ]
        np.testing.assert_allclose(
            registry.load_predictor(resolved).predict_proba(TEXTS),
            trained.predictor.predict_proba(TEXTS),
        )
    finally:
        database.dispose()


@pytest.mark.s3
def test_artifacts_and_snapshots_on_s3(
    s3_endpoint: Any, s3_bucket: str, tmp_path: Path, trained: TrainedModel
) -> None:
    storage = open_storage(f"s3://{s3_bucket}/driftloop?endpoint_url={s3_endpoint.url}")
    database = Database(f"sqlite:///{tmp_path / 'registry.db'}")
    database.migrate()
    registry = ModelRegistry(database, storage, tmp_path / "cache")
    version = registry.register_trained("review-classifier", trained, trainer="sklearn")
    assert version.artifact_uri.startswith(f"s3://{s3_bucket}/driftloop/models/")
    loaded = ModelRegistry(database, storage, tmp_path / "cache-2").load_predictor(version)
    np.testing.assert_allclose(loaded.predict_proba(TEXTS), trained.predictor.predict_proba(TEXTS))
    key = storage.key_of(version.artifact_uri)
    storage.put_bytes(f"{key}/coef.npy", b"tampered")
    with pytest.raises(IntegrityError, match=r"coef\.npy"):
        ModelRegistry(database, storage, tmp_path / "cache-3").load_predictor(version)

    datasets = DatasetStore(storage)
    snapshot = datasets.push(trained_frame(), "reviews")
    assert datasets.newest("reviews") == snapshot
    assert datasets.load(snapshot).equals(trained_frame())
    assert not [k for k in storage.list() if ".tmp-" in k]


def trained_frame() -> pd.DataFrame:
    return pd.DataFrame({"text": ["good", "bad"], "label": ["p", "n"]})

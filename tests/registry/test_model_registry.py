"""ModelRegistry: immutable hashed versions, verified loading, aliases and rollback."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from driftloop.errors import (
    BackendUnavailableError,
    ConflictError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
)
from driftloop.objectstore import Snapshot
from driftloop.predictors import MANIFEST, Evaluation
from driftloop.registry import ModelRegistry, hash_directory
from driftloop.trainers.base import TrainedModel

Factory = Callable[..., ModelRegistry]
TEXTS = ["the dress fits perfectly", "awful film, I walked out", "stale crackers"]


def register(registry: ModelRegistry, directory: Path, **kwargs: Any) -> Any:
    return registry.register("review-classifier", directory, trainer="sklearn", **kwargs)


def test_register_records_an_immutable_hashed_version(
    registry: ModelRegistry, model_dir: Path
) -> None:
    version = register(
        registry,
        model_dir,
        params={"C": 4.0},
        snapshot_id="s1",
        snapshot_hash="h1",
        trigger="ci:1234",
    )
    digest = hash_directory(model_dir)
    assert version.version == 1
    assert version.content_hash == digest.content_hash
    assert version.trigger == "ci:1234"
    assert version.params == {"C": 4.0}
    assert version.snapshot_id == "s1"
    assert version.deployed_at is None
    assert version.created_at.tzinfo is not None
    key = f"models/review-classifier/{digest.content_hash}"
    assert version.artifact_uri == registry.storage.uri(key)
    assert registry.storage.list(key) == sorted(f"{key}/{name}" for name in digest.files)
    assert registry.get_version("review-classifier", 1) == version
    assert registry.list_versions("review-classifier") == [version]
    assert registry.list_models() == ["review-classifier"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        version.version = 2


def test_versions_count_up_and_share_identical_artifacts(
    registry: ModelRegistry, model_dir: Path, registry_factory: Factory
) -> None:
    first = register(registry, model_dir)
    second = register(registry, model_dir, parent_version=1)
    assert (first.version, second.version) == (1, 2)
    assert second.parent_version == 1
    assert first.content_hash == second.content_hash
    assert len(registry.storage.list("models")) == len(hash_directory(model_dir).files)
    other = registry_factory(cache="other-cache")
    assert register(other, model_dir).version == 3


def test_register_trained_keeps_evaluation_reference_and_snapshot(
    registry: ModelRegistry, trained: TrainedModel
) -> None:
    snapshot = Snapshot(
        "reviews",
        "snap-1",
        datetime.now().astimezone(),
        240,
        "f" * 64,
        ("text", "label"),
        "datasets/reviews/snap-1/data.csv.gz",
    )
    version = registry.register_trained(
        "review-classifier", trained, trainer="sklearn", snapshot=snapshot, trigger="incident:42"
    )
    assert version.evaluation == trained.evaluation
    assert version.reference == trained.reference
    assert version.params == json.loads(json.dumps(trained.params))
    assert (version.snapshot_id, version.snapshot_hash) == ("snap-1", "f" * 64)
    assert version.trigger == "incident:42"
    assert isinstance(trained.evaluation, Evaluation)
    assert version.to_dict()["evaluation"]["macro_f1"] == trained.evaluation.macro_f1


def test_loaded_predictor_gives_the_same_outputs(
    registry: ModelRegistry, trained: TrainedModel, registry_factory: Factory
) -> None:
    version = registry.register_trained("review-classifier", trained, trainer="sklearn")
    fresh = registry_factory(cache="fresh-cache")
    loaded = fresh.load_predictor(version)
    assert loaded.labels == trained.predictor.labels
    assert loaded.temperature == trained.predictor.temperature
    np.testing.assert_allclose(loaded.predict_proba(TEXTS), trained.predictor.predict_proba(TEXTS))
    assert fresh.load_predictor(version) is loaded  # cached by content hash
    assert (fresh.cache_dir / "review-classifier" / "1" / MANIFEST).is_file()


def test_tampered_artifact_fails_with_an_integrity_error_naming_the_file(
    registry: ModelRegistry, model_dir: Path, registry_factory: Factory
) -> None:
    version = register(registry, model_dir)
    key = registry.storage.key_of(version.artifact_uri)
    assert key is not None
    registry.storage.put_bytes(f"{key}/coef.npy", b"\x93NUMPY forged weights")
    with pytest.raises(IntegrityError, match=r"file coef\.npy changed after registration"):
        registry_factory(cache="cache-2").load_predictor(version)
    registry.storage.delete(f"{key}/intercept.npy")
    with pytest.raises(IntegrityError, match=r"file (coef|intercept)\.npy"):
        registry_factory(cache="cache-3").load_predictor(version)
    registry.storage.delete(key)
    with pytest.raises(IntegrityError, match="missing from storage"):
        registry_factory(cache="cache-4").load_predictor(version)


def test_extra_file_in_storage_is_an_integrity_error(
    registry: ModelRegistry, model_dir: Path, registry_factory: Factory
) -> None:
    version = register(registry, model_dir)
    key = registry.storage.key_of(version.artifact_uri)
    registry.storage.put_bytes(f"{key}/backdoor.py", b"print('hi')")
    with pytest.raises(IntegrityError, match=r"unexpected file backdoor\.py"):
        registry_factory(cache="cache-2").load_predictor(version)


def test_damaged_cache_is_fetched_again(
    registry: ModelRegistry, model_dir: Path, registry_factory: Factory
) -> None:
    version = register(registry, model_dir)
    registry.load_predictor(version)
    cached = registry.cache_dir / "review-classifier" / "1" / "coef.npy"
    original = cached.read_bytes()
    cached.write_bytes(b"garbage")
    reloaded = registry_factory().load_predictor(version)  # same cache dir, new process
    assert cached.read_bytes() == original
    assert reloaded.predict_proba(TEXTS).shape == (3, 6)


def test_registering_a_broken_directory_registers_nothing(
    registry: ModelRegistry, model_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError, match="no such model directory"):
        register(registry, tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidInputError, match="not a loadable model"):
        register(registry, empty)
    (model_dir / "coef.npy").write_bytes(b"truncated")
    with pytest.raises(InvalidInputError, match=r"coef\.npy is corrupt"):
        register(registry, model_dir)
    manifest = json.loads((model_dir / MANIFEST).read_text())
    (model_dir / MANIFEST).write_text(json.dumps({**manifest, "format": "mystery"}))
    with pytest.raises(
        InvalidInputError,
        match=(
            r"not a loadable model: unknown predictor format 'mystery' .*known: .*sklearn.*"
            r"entry point group 'driftloop.predictors'"
        ),
    ):
        register(registry, model_dir)
    assert registry.list_models() == []
    assert registry.storage.list() == []


def test_bad_arguments_register_nothing(registry: ModelRegistry, model_dir: Path) -> None:
    with pytest.raises(InvalidInputError, match="invalid trigger"):
        register(registry, model_dir, trigger="because")
    with pytest.raises(InvalidInputError, match="model name"):
        registry.register("Bad Name", model_dir, trainer="sklearn")
    with pytest.raises(NotFoundError, match="no version 7"):
        register(registry, model_dir, parent_version=7)
    assert registry.list_models() == []
    assert registry.storage.list() == []


def test_a_failed_insert_removes_the_upload(registry: ModelRegistry, model_dir: Path) -> None:
    def refuse_inserts(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("INSERT INTO registry_model_versions"):
            raise sqlite3.OperationalError("disk I/O error")

    engine = registry.database.engine
    sa.event.listen(engine, "before_cursor_execute", refuse_inserts)
    try:
        with pytest.raises(BackendUnavailableError, match="disk I/O error"):
            register(registry, model_dir)
    finally:
        sa.event.remove(engine, "before_cursor_execute", refuse_inserts)
    assert registry.list_versions("review-classifier") == []
    assert registry.storage.list() == []
    assert register(registry, model_dir).version == 1


def test_aliases_resolve_and_production_records_deployment(
    registry: ModelRegistry, model_dir: Path
) -> None:
    register(registry, model_dir)
    register(registry, model_dir)
    with pytest.raises(NotFoundError, match="no alias 'production'"):
        registry.resolve("review-classifier")
    with pytest.raises(NotFoundError, match="no model named 'unknown'"):
        registry.resolve("unknown")
    registry.set_alias("review-classifier", "candidate", 2, actor="test")
    assert registry.get_version("review-classifier", 2).deployed_at is None
    registry.set_alias("review-classifier", "production", 1, actor="test")
    assert registry.aliases("review-classifier") == {"candidate": 2, "production": 1}
    resolved = registry.resolve("review-classifier")
    assert resolved.version == 1
    assert resolved.deployed_at is not None
    assert registry.resolve("review-classifier", "candidate").version == 2
    with pytest.raises(NotFoundError, match="no version 9"):
        registry.set_alias("review-classifier", "production", 9, actor="test")
    with pytest.raises(InvalidInputError, match="alias"):
        registry.set_alias("review-classifier", "Not OK", 1, actor="test")


def test_rollback_walks_back_through_deployments(registry: ModelRegistry, model_dir: Path) -> None:
    for _ in range(3):
        register(registry, model_dir)
    name = "review-classifier"
    with pytest.raises(NotFoundError, match="never been deployed"):
        registry.rollback(name, actor="ops")
    for version in (1, 2, 3):
        registry.set_alias(name, "production", version, actor="deployer")
    registry.set_alias(name, "production", 3, actor="deployer")  # no change, no history row
    first_deployed = registry.get_version(name, 1).deployed_at

    assert registry.rollback(name, actor="ops").version == 2
    assert registry.rollback(name, actor="ops").version == 1
    assert registry.resolve(name).version == 1
    with pytest.raises(ConflictError, match="no earlier production version"):
        registry.rollback(name, actor="ops")
    assert registry.get_version(name, 1).deployed_at == first_deployed

    registry.set_alias(name, "production", 3, actor="deployer")
    assert registry.rollback(name, actor="ops").version == 1

    history = [
        (c.action, c.previous_version, c.version, c.actor) for c in registry.alias_history(name)
    ]
    assert history == [
        ("set", None, 1, "deployer"),
        ("set", 1, 2, "deployer"),
        ("set", 2, 3, "deployer"),
        ("rollback", 3, 2, "ops"),
        ("rollback", 2, 1, "ops"),
        ("set", 1, 3, "deployer"),
        ("rollback", 3, 1, "ops"),
    ]


def test_registered_rows_do_not_change_when_artifacts_are_reused(
    registry: ModelRegistry, model_dir: Path, tmp_path: Path
) -> None:
    first = register(registry, model_dir)
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    register(registry, copy)
    assert registry.get_version("review-classifier", 1) == first

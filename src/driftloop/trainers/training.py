"""``train_model``: newest (or a chosen) snapshot → trainer → evaluation → registered version.

Used by ``driftloop train`` and by the retrain pipeline. The first version of a model becomes
its ``production`` version; later ones are registered with the current production version as
their parent and left for the gate (or ``driftloop models promote``) to deploy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftloop.config import Config, ModelConfig
from driftloop.errors import NotFoundError
from driftloop.objectstore.datasets import DatasetStore, Snapshot, ensure_dataset, training_rows
from driftloop.predictors import Predictor, load_predictor
from driftloop.registry.model_registry import ModelRegistry
from driftloop.registry.versions import (
    PRODUCTION,
    ModelVersion,
    check_trigger,
    read_evaluation_file,
)
from driftloop.trainers.base import ProgressCallback, Trainer, TrainingData
from driftloop.trainers.importing import importable_directory, read_reference
from driftloop.trainers.registry import get_trainer

TRAIN_ACTOR = "driftloop train"


@dataclass(frozen=True)
class TrainingPlan:
    """What :func:`train_model` is about to do, resolved before any work starts."""

    model_name: str
    model_config: ModelConfig
    trainer: Trainer
    snapshot: Snapshot


def model_config_of(config: Config, model_name: str) -> ModelConfig:
    model_config = config.models.get(model_name)
    if model_config is None:
        raise NotFoundError(
            f"no model {model_name!r} in the config; configured models: "
            f"{sorted(config.models) or 'none'} (add it under 'models:' in driftloop.yaml)"
        )
    return model_config


def plan_training(
    config: Config, model_name: str, *, snapshot_id: str | None = None
) -> TrainingPlan:
    """Resolve the model's config, its trainer and the snapshot to train on."""
    model_config = model_config_of(config, model_name)
    trainer = get_trainer(model_config.trainer, model_config, base_dir=config.base_dir)
    if snapshot_id is None:
        snapshot = ensure_dataset(config, model_config.data)
    else:
        snapshot = DatasetStore.from_config(config).get(model_config.data, snapshot_id)
    return TrainingPlan(model_name, model_config, trainer, snapshot)


def train_model(
    config: Config,
    model_name: str,
    *,
    snapshot_id: str | None = None,
    trigger: str = "manual",
    progress: ProgressCallback | None = None,
) -> ModelVersion:
    """Train ``model_name`` on its newest snapshot under its retrain data policy
    (``models.<name>.retrain_data``), or on ``snapshot_id`` alone, and register it."""
    check_trigger(trigger)
    plan = plan_training(config, model_name, snapshot_id=snapshot_id)
    registry = ModelRegistry.from_config(config)
    rows = training_rows(
        DatasetStore.from_config(config),
        plan.model_config.data,
        policy="newest" if snapshot_id is not None else plan.model_config.retrain_data,
        text_column=plan.model_config.text_column,
        snapshot=plan.snapshot,
    )
    data = TrainingData(
        rows.frame,
        text_column=plan.model_config.text_column,
        label_column=plan.model_config.label_column,
        snapshot_id=rows.snapshot.snapshot_id,
        snapshot_hash=rows.snapshot.content_hash,
    )
    trained = plan.trainer.fit(data, progress=progress)
    aliases = registry.aliases(model_name)
    version = registry.register_trained(
        model_name,
        trained,
        trainer=plan.model_config.trainer,
        snapshot=rows.snapshot,
        trigger=trigger,
        parent_version=aliases.get(PRODUCTION),
    )
    if PRODUCTION not in aliases:
        registry.set_alias(model_name, PRODUCTION, version.version, actor=TRAIN_ACTOR)
        version = registry.get_version(model_name, version.version)
    return version


NO_REFERENCE = "learned from the first live values"
"""What a registered version's ``params.reference`` says when it came with no reference."""


def register_external(
    config: Config,
    model_name: str,
    directory: Path,
    *,
    trigger: str = "manual",
    trainer: str = "external",
    snapshot_id: str | None = None,
    dataset: str | None = None,
    evaluation_file: Path | None = None,
    params: dict[str, Any] | None = None,
    reference_file: Path | None = None,
) -> ModelVersion:
    """Register a predictor trained elsewhere (``driftloop models register``, a CI job):
    a driftloop model directory or a Hugging Face sequence-classification checkpoint
    (:mod:`driftloop.trainers.importing`).

    ``snapshot_id`` is looked up in ``dataset`` (default: the model's configured dataset); the
    parent is the current production version; the first version becomes production. The
    evaluation file is read for the predictor's output kind (a classifier's or a regression
    model's fields). The version's params record its predictor, input schema and output kind,
    and where its reference profile came from: ``reference_file`` (profiled by the predictor
    itself), the evaluation file, or nothing (the monitors learn it from the first live values).
    """
    check_trigger(trigger)
    snapshot = _snapshot_of(config, model_name, snapshot_id, dataset)
    registry = ModelRegistry.from_config(config)
    aliases = registry.aliases(model_name)
    with importable_directory(directory) as model_directory:
        predictor = load_predictor(model_directory, registry.predictors.get(model_name))
        evaluation, reference = (
            read_evaluation_file(evaluation_file, predictor.output)
            if evaluation_file is not None
            else (None, None)
        )
        recorded = _described(predictor)
        if reference_file is not None:
            items, recorded["reference"] = read_reference(reference_file, predictor.inputs)
            reference = predictor.reference_profile(items)
        elif reference is None:
            recorded["reference"] = NO_REFERENCE
        version = registry.register(
            model_name,
            model_directory,
            trainer=trainer,
            params={**(params or {}), **recorded},
            snapshot_id=None if snapshot is None else snapshot.snapshot_id,
            snapshot_hash=None if snapshot is None else snapshot.content_hash,
            evaluation=evaluation,
            reference=reference,
            parent_version=aliases.get(PRODUCTION),
            trigger=trigger,
        )
    if PRODUCTION not in aliases:
        registry.set_alias(model_name, PRODUCTION, version.version, actor=f"register:{trigger}")
        version = registry.get_version(model_name, version.version)
    return version


def _snapshot_of(
    config: Config, model_name: str, snapshot_id: str | None, dataset: str | None
) -> Snapshot | None:
    """The snapshot ``snapshot_id`` of ``dataset`` (default: the model's dataset), if given."""
    if snapshot_id is None:
        return None
    dataset_name = dataset if dataset is not None else model_config_of(config, model_name).data
    return DatasetStore.from_config(config).get(dataset_name, snapshot_id)


def _described(predictor: Predictor) -> dict[str, Any]:
    """What a registered version's params record of its predictor."""
    return {
        "predictor": _predictor_name(predictor),
        "inputs": predictor.inputs.to_dict(),
        "output": predictor.output,
    }


def _predictor_name(predictor: Predictor) -> str:
    """The predictor's format, or its class (``module:Class``) when it has none."""
    kind = type(predictor)
    return kind.format or f"{kind.__module__}:{kind.__qualname__}"

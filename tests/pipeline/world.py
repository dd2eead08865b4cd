"""A small, real retrain world for the pipeline tests: a project directory with a SQLite store
and file storage, snapshots drawn from the bundled reviews, a production model trained by the real
SklearnTrainer, and a DriftloopSystem over it all. Small samples keep each training to about a
second."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from driftloop.config import Config, load_config
from driftloop.objectstore import Snapshot, bundled_reviews_path
from driftloop.pipeline.queue import Job, JobState
from driftloop.pipeline.runner import HealthProbe, PipelineHooks, RetrainPipeline
from driftloop.pipeline.verification import PairedEvidence
from driftloop.registry import ModelVersion
from driftloop.system import DriftloopSystem, SystemOptions
from driftloop.testing.clock import ManualClock
from driftloop.trainers.base import TrainingData
from driftloop.trainers.sklearn import SklearnParams, SklearnTrainer

MODEL = "review-classifier"
DATASET = "reviews"
DRIFTING = "imdb_user_review"
"""Long IMDB user reviews: a subtopic the production model never sees (as in the demo)."""
SKLEARN_PARAMS: dict[str, Any] = {"c_grid": [4.0], "min_df": 1}
START = float(int(time.time()))
"""Tests run on a manual clock that starts at the real time (the metric store keeps recent
points only)."""


@functools.cache
def _reviews() -> pd.DataFrame:
    return pd.read_csv(bundled_reviews_path(), dtype=str, keep_default_na=False)


def reviews() -> pd.DataFrame:
    return _reviews().copy()


@dataclass(frozen=True)
class Snapshots:
    """What production trained on, and the newer snapshot where the drifted subtopic lands."""

    known: pd.DataFrame
    drifted: pd.DataFrame


def make_snapshots(known_rows: int = 300, new_rows: int = 300, seed: int = 3) -> Snapshots:
    """``known``: rows without the drifting subtopic; ``drifted``: ``known`` plus ``new_rows``
    of new data, mostly of the drifting subtopic (the labels production handles worst)."""
    data = reviews()
    is_drifting = data["subtopic"] == DRIFTING
    known_pool = data[~is_drifting].sample(frac=1.0, random_state=seed)
    drifting_pool = data[is_drifting].sample(frac=1.0, random_state=seed)
    known = known_pool.iloc[:known_rows]
    extra_known = known_pool.iloc[known_rows : known_rows + new_rows // 4]
    new = pd.concat([drifting_pool.iloc[: new_rows - len(extra_known)], extra_known])
    drifted = pd.concat([known, new]).sample(frac=1.0, random_state=seed)
    return Snapshots(known.reset_index(drop=True), drifted.reset_index(drop=True))


def write_config(
    directory: Path,
    *,
    pipeline: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """A driftloop.yaml in ``directory`` for one sklearn model; returns its path."""
    settings: dict[str, Any] = {
        "cooldown": "10m",
        "verify_deadline": "60s",
        "verify_interval": "5s",
        "verify_min_predictions": 10,
        "min_fresh_rows": 30,
        "holdout_fraction": 0.3,
        **(pipeline or {}),
    }
    document: dict[str, Any] = {
        "store": "sqlite:///.driftloop/driftloop.db",
        "storage": "file://.driftloop/storage",
        "transport": "local://",
        "models": {
            MODEL: {
                "trainer": "sklearn",
                "data": DATASET,
                "params": SKLEARN_PARAMS,
                **(model or {}),
            }
        },
        "monitors": [
            {
                "name": "confidence",
                "metric": "model_confidence",
                "aggregation": "avg",
                "window": "60s",
                "group_by": ["model"],
                "min_count": 5,
                "below": {"warning": 0.5, "critical": 0.4},
                "message": (
                    "confidence of {{model}} is {{value}} {{#is_alert}}@retrain{{/is_alert}}"
                ),
            }
        ],
        "pipeline": settings,
        **(extra or {}),
    }
    path = directory / "driftloop.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@dataclass
class ScriptedHealthProbe(HealthProbe):
    """The live model as verification sees it, scripted by the test: monitors turn OK at
    ``ok_from`` (never when None) and each version serves ``confidence[version]`` with
    ``count`` predictions. Shadow pairs: ``count`` of them (or ``pair_rate`` per second since
    the deploy), each version's confidence on the pair ``confidence[version]`` plus normal
    noise of ``noise`` (centred, so the pairs' mean is the scripted difference); ``labelled``
    of them carry a feedback label, each version right on it with probability
    ``accuracy[version]``."""

    clock: ManualClock
    ok_from: float | None = None
    confidence: dict[int, float] = field(default_factory=dict)
    count: int = 100
    pair_rate: float | None = None
    noise: float = 0.05
    accuracy: dict[int, float] = field(default_factory=dict)
    labelled: int = 0
    reference_of: Callable[[int], float] | None = None
    """When set, ``confidence[version]`` is read relative to the version's reference (its
    validation mean confidence, as this returns it)."""
    asked: list[str] = field(default_factory=list)

    def _confidence(self, version: int) -> float:
        offset = 0.0 if self.reference_of is None else self.reference_of(version)
        return self.confidence[version] + offset

    def monitors_ok(self, model: str) -> bool:
        self.asked.append(f"monitors_ok {model}")
        return self.ok_from is not None and self.clock.now >= self.ok_from

    def live_confidence(
        self, model: str, version: int, start: float, end: float
    ) -> tuple[float | None, int]:
        self.asked.append(f"live_confidence {model} v{version}")
        if version not in self.confidence:
            return None, 0
        return self._confidence(version), self.count

    def shadow_pairs(
        self, model: str, *, shadow_version: int, served_version: int, start: float, end: float
    ) -> PairedEvidence:
        self.asked.append(f"shadow_pairs {model} v{shadow_version} vs v{served_version}")
        if shadow_version not in self.confidence or served_version not in self.confidence:
            return PairedEvidence()
        n = self.count if self.pair_rate is None else int(max(0.0, end - start) * self.pair_rate)
        rng = np.random.default_rng(0)
        noise = rng.normal(0.0, self.noise, n)
        noise -= noise.mean() if n else 0.0  # the pairs' mean is exactly the scripted gap
        gap = self._confidence(shadow_version) - self._confidence(served_version) + noise
        agreement = (rng.random(n) < 0.8).astype(np.float64)
        labelled = min(n, self.labelled)
        correct_gap = np.zeros(0, dtype=np.float64)
        if labelled and self.accuracy:
            right_shadow = rng.random(labelled) < self.accuracy[shadow_version]
            right_served = rng.random(labelled) < self.accuracy[served_version]
            correct_gap = right_shadow.astype(np.float64) - right_served.astype(np.float64)
        return PairedEvidence(gap, correct_gap, agreement)


@dataclass
class PipelineWorld:
    """A project with a production model and a newer, drifted snapshot."""

    directory: Path
    config: Config
    system: DriftloopSystem
    clock: ManualClock
    snapshots: Snapshots
    states: list[JobState] = field(default_factory=list)
    notices: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        directory: Path,
        *,
        pipeline: Mapping[str, Any] | None = None,
        model: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
        snapshots: Snapshots | None = None,
    ) -> PipelineWorld:
        config = load_config(
            write_config(directory, pipeline=pipeline, model=model, extra=extra), environ={}
        )
        clock = ManualClock(START)
        return cls(
            directory,
            config,
            DriftloopSystem(config, SystemOptions(clock=clock)),
            clock,
            snapshots or make_snapshots(),
        )

    def push(self, frame: pd.DataFrame) -> Snapshot:
        return self.system.datasets.push(frame, DATASET)

    def train_production(self, frame: pd.DataFrame | None = None) -> ModelVersion:
        """Push ``frame`` (default: the known rows), train on it and deploy it (v1)."""
        snapshot = self.push(self.snapshots.known if frame is None else frame)
        data = self.system.datasets.load(snapshot)
        trained = SklearnTrainer(SklearnParams(**SKLEARN_PARAMS)).fit(
            TrainingData(data, "text", "label", snapshot.snapshot_id, snapshot.content_hash)
        )
        version = self.system.registry.register_trained(
            MODEL, trained, trainer="sklearn", snapshot=snapshot, trigger="manual"
        )
        self.system.registry.set_alias(MODEL, "production", version.version, actor="test")
        return version

    def pipeline(
        self, health: HealthProbe | None = None, *, on_state: Callable[[Job], None] | None = None
    ) -> RetrainPipeline:
        """A pipeline over the system's components with the manual clock and sleep."""

        def record(job: Job) -> None:
            self.states.append(job.state)
            if on_state is not None:
                on_state(job)

        def notice(kind: str, message: str, data: Mapping[str, Any]) -> None:
            self.notices.append((kind, message, dict(data)))

        return RetrainPipeline(
            self.config,
            self.system.queue,
            self.system.registry,
            self.system.datasets,
            health=health,
            incidents=self.system.engine,
            hooks=PipelineHooks(on_state=record, on_notice=notice),
            clock=self.clock,
            sleep=self.clock.sleep,
            feedback=self.system.feedback.labeled_samples,
        )

    def reference_confidence(self, version: int) -> float:
        """A registered version's mean confidence on its validation split."""
        reference = self.system.registry.get_version(MODEL, version).reference
        assert reference is not None
        return reference.mean_confidence

    def open_incident(self, title: str = "confidence of review-classifier is low") -> str:
        return self.system.engine.open_external_incident(
            "datadog", MODEL, title, {"labels": {"model": MODEL}}
        )

    def timeline(self, incident_id: str) -> list[tuple[str, str]]:
        incident = self.system.engine.get_incident(incident_id)
        return [(entry.kind, entry.message) for entry in incident.timeline]

    def production(self) -> int:
        return self.system.registry.resolve(MODEL, "production").version

    def aliases(self) -> dict[str, int]:
        return self.system.registry.aliases(MODEL)

"""A small, real driftloop installation for the dashboard tests: a SQLite store with metric
points, the monitor engine and notification router, a registry, a retrain job queue and API keys."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from driftloop.config import Config, parse_config
from driftloop.dashboard import StoreDashboardData
from driftloop.database import Database
from driftloop.metrics.points import MetricPoint
from driftloop.metrics.sql import SqlMetricStore
from driftloop.monitors.engine import MonitorEngine
from driftloop.monitors.events import Event
from driftloop.notify.router import NotificationRouter
from driftloop.objectstore import open_storage
from driftloop.pipeline.queue import JobQueue, JobState
from driftloop.predictors import Evaluation, ReferenceProfile
from driftloop.registry import PRODUCTION, ModelRegistry, ModelVersion
from driftloop.serving.keys import ApiKeyStore
from driftloop.testing.predictors import review_keyword_predictor

MODEL = "review-classifier"
_RNG = np.random.default_rng(3)
REFERENCE = ReferenceProfile(
    confidences=_RNG.beta(6, 2, 1_000).tolist(),
    text_lengths=_RNG.integers(20, 400, 1_000).tolist(),
    class_mix={"Food - Positive": 1.0},
    mean_confidence=0.75,
    metrics={"accuracy": 0.8},
)
"""A held-out reference: confidences Beta(6, 2), texts of 20-400 characters, accuracy 0.8."""
MONITOR = "review-classifier confidence"

CONFIG = f"""
store: sqlite:///driftloop.db
storage: file://storage
models:
  {MODEL}: {{trainer: sklearn}}
monitors:
  - name: {MONITOR}
    metric: model_confidence
    aggregation: avg
    window: 30s
    group_by: [model]
    below: {{warning: 0.8, critical: 0.6}}
    message: "{{{{monitor}}}} on {{{{model}}}} is {{{{state}}}} @log"
"""


@dataclass
class DashboardWorld:
    """The real components, wired as ``driftloop up`` wires them."""

    root: Path
    config: Config
    database: Database
    metric_store: SqlMetricStore
    engine: MonitorEngine
    router: NotificationRouter
    registry: ModelRegistry
    jobs: JobQueue
    api_keys: ApiKeyStore
    data: StoreDashboardData
    events: list[Event] = field(default_factory=list)
    _serial: int = 0

    def write_confidence(
        self, values: list[float], *, end: float, spacing: float = 1.0, model: str = MODEL
    ) -> None:
        """Points ending just before ``end``, ``spacing`` seconds apart."""
        points = []
        for index, value in enumerate(values):
            self._serial += 1
            timestamp = end - (len(values) - index) * spacing
            points.append(
                MetricPoint(
                    "model_confidence",
                    value,
                    timestamp,
                    {"model": model},
                    point_id=f"p{self._serial}",
                )
            )
        self.metric_store.write(points)

    def evaluate(self, now: float | None = None) -> list[Event]:
        found = self.engine.evaluate(now)
        self.events.extend(found)
        return found

    def register_version(
        self, *, extra_classes: bool, accuracy: float, trigger: str = "manual"
    ) -> ModelVersion:
        directory = self.root / f"model-{extra_classes}"
        review_keyword_predictor(extra_classes=extra_classes).save(directory)
        evaluation = Evaluation(
            accuracy=accuracy,
            macro_f1=accuracy - 0.02,
            per_class_f1={},
            ece=0.03,
            ece_before_calibration=0.08,
            mean_confidence=0.9,
            n=200,
        )
        return self.registry.register(
            MODEL, directory, trainer="keyword", evaluation=evaluation, trigger=trigger
        )

    def register_with_reference(self) -> ModelVersion:
        directory = self.root / "model-with-reference"
        review_keyword_predictor().save(directory)
        return self.registry.register(MODEL, directory, trainer="keyword", reference=REFERENCE)

    def write_predictions(
        self,
        end: float,
        confidences: list[float],
        lengths: list[float],
        *,
        version: str = "1",
        shadow: bool = False,
    ) -> None:
        """What the server reports for each prediction, 0.1 s apart from ``end - 200``."""
        tags = {"model": MODEL, "version": version, **({"shadow": "true"} if shadow else {})}
        threshold = float(np.quantile(REFERENCE.confidences, 0.2))
        points = []
        for index, (confidence, length) in enumerate(zip(confidences, lengths, strict=True)):
            self._serial += 1
            at = end - 200 + index * 0.1
            for name, value in (
                ("model_confidence", confidence),
                ("text_length", length),
                ("estimated_accuracy", float(confidence > threshold)),
            ):
                points.append(MetricPoint(name, value, at, tags, point_id=f"w{self._serial}{name}"))
        self.metric_store.write(points)

    def run_retrain_job(self, incident_id: str | None) -> str:
        """A retrain job that went through its steps (as the pipeline worker records them)."""
        job = self.jobs.enqueue(
            MODEL, incident_id=incident_id, reason="confidence alert", trigger="monitor"
        ).job
        self.jobs.claim("worker-1")
        for step, state, log in (
            ("fetch_data", JobState.FETCHING_DATA, "snapshot reviews@2 (1200 rows)"),
            ("train", JobState.TRAINING, "epoch 1/1 done\nloss 0.41"),
            ("evaluate", JobState.EVALUATING, "macro_f1 0.91 vs production 0.74"),
        ):
            self.jobs.set_state(job.job_id, state)
            step_id = self.jobs.start_step(job.job_id, step)
            self.jobs.finish_step(step_id, "ok", log)
        version = self.register_version(
            extra_classes=True, accuracy=0.93, trigger=f"job:{job.job_id}"
        )
        self.registry.set_alias(MODEL, PRODUCTION, version.version, actor="retrain-job")
        self.jobs.set_state(job.job_id, JobState.SUCCEEDED, candidate_version=version.version)
        return job.job_id

    def write_serving(
        self,
        end: float,
        seconds: int,
        *,
        version: str = "1",
        classes: tuple[str, ...] = ("Food - Positive", "Food - Negative"),
        errors: dict[str, int] | None = None,
        shadow: bool = False,
    ) -> None:
        """What the server reports over the ``seconds`` before ``end``: each second a request
        of two texts (``model_confidence`` tagged with the predicted class, ``latency_ms``),
        and ``errors`` predict requests answered with an error per status class."""
        tags = {"model": MODEL, "version": version, **({"shadow": "true"} if shadow else {})}
        points = []
        for second in range(seconds):
            at = end - seconds + second
            for index in range(2):
                self._serial += 1
                label = classes[(second + index) % len(classes)]
                points.append(
                    MetricPoint(
                        "model_confidence",
                        0.9 - 0.1 * index,
                        at,
                        {**tags, "class": label},
                        point_id=f"s{self._serial}",
                    )
                )
            self._serial += 1
            points.append(
                MetricPoint("latency_ms", 20.0 + second % 5, at, tags, point_id=f"s{self._serial}")
            )
        for status_class, count in (errors or {}).items():
            for index in range(count):
                self._serial += 1
                at = end - seconds + index * seconds / count
                points.append(
                    MetricPoint(
                        "predict_error",
                        1.0,
                        at,
                        {"model": MODEL, "status_class": status_class},
                        point_id=f"s{self._serial}",
                    )
                )
        self.metric_store.write(points)

    def run_rolled_back_job(self, incident_id: str | None) -> str:
        """A retrain job whose candidate v2 passed the gate, was deployed, failed its
        verification and was rolled back (as the pipeline worker records it)."""
        job = self.jobs.enqueue(
            MODEL, incident_id=incident_id, reason="confidence alert", trigger="monitor"
        ).job
        self.jobs.claim("worker-1")
        previous = self.registry.aliases(MODEL)[PRODUCTION]
        for step, state, log in (
            ("fetch_data", JobState.FETCHING_DATA, "snapshot reviews@2 (1200 rows)"),
            ("train", JobState.TRAINING, "epoch 1/1 done"),
            ("evaluate", JobState.EVALUATING, "macro_f1 0.91 vs production 0.74"),
        ):
            self.jobs.set_state(job.job_id, state)
            self.jobs.finish_step(self.jobs.start_step(job.job_id, step), "ok", log)
        version = self.register_version(
            extra_classes=True, accuracy=0.93, trigger=f"incident:{incident_id}"
        )
        self.registry.set_alias(MODEL, PRODUCTION, version.version, actor=f"job:{job.job_id}")
        self.jobs.set_state(
            job.job_id,
            JobState.VERIFYING,
            candidate_version=version.version,
            previous_version=previous,
        )
        self.registry.set_alias(MODEL, PRODUCTION, previous, actor=f"job:{job.job_id} rollback")
        message = (
            f"verification failed, rolled back {MODEL} to v{previous}: v{version.version} "
            f"answered 0.41 below v{previous} on the same 400 live requests"
        )
        self.jobs.finish_step(self.jobs.start_step(job.job_id, "verify"), "failed", message)
        self.jobs.set_state(job.job_id, JobState.ROLLED_BACK, error=message)
        return job.job_id


@contextmanager
def open_world(root: Path, config_text: str = CONFIG) -> Iterator[DashboardWorld]:
    """A fresh installation in ``root``, closed on exit."""
    config = parse_config(config_text, base_dir=root, environ={})
    database = Database(config.store, base_dir=root)
    database.migrate()
    metric_store = SqlMetricStore.from_config(database, config.metrics)
    router = NotificationRouter(config, database, require_routes=False, sleep=lambda _s: None)

    def notify(event: Event) -> None:
        router.dispatch(event)

    engine = MonitorEngine(config, database, metric_store, listeners=[notify])
    registry = ModelRegistry(database, open_storage(config.storage, base_dir=root), root / "cache")
    jobs = JobQueue(database, cooldown=0.0)
    data = StoreDashboardData(
        database=database,
        metric_store=metric_store,
        monitors=config.monitors,
        registry=registry,
        jobs=jobs,
        models=sorted(config.models),
    )
    built = DashboardWorld(
        root,
        config,
        database,
        metric_store,
        engine,
        router,
        registry,
        jobs,
        ApiKeyStore(database),
        data,
    )
    try:
        yield built
    finally:
        router.close()
        database.dispose()

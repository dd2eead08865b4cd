"""The retrain job: newest data → train → evaluate → gate → deploy → verify, or roll back.

Every step is recorded (start, end, outcome, log) and the job's state is written before the
step's effects, so a worker killed at any point leaves a state another worker resumes from:
steps before the deploy rerun from the data (nothing was published yet), a deploy reruns
(alias moves are idempotent), and verification continues against the original deadline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from driftloop.config import Config, ModelConfig
from driftloop.errors import DriftloopError, NotFoundError, TrainingError
from driftloop.pipeline.gate import GateDecision, decide, evaluate_on_holdout, split_for_gate
from driftloop.pipeline.queue import Job, JobQueue, JobState
from driftloop.registry import ModelRegistry, ModelVersion
from driftloop.storage import DatasetStore
from driftloop.trainers.base import Predictor, ProgressCallback, TrainingData
from driftloop.trainers.registry import get_trainer

logger = logging.getLogger("driftloop.pipeline")


class IncidentLog(Protocol):
    """Where the job writes its part of the incident's timeline."""

    def add_timeline_entry(
        self, incident_id: str, kind: str, message: str, data: Mapping[str, Any] | None = None
    ) -> object: ...


class HealthProbe(Protocol):
    """What verification asks about the live model."""

    def monitors_ok(self, model: str) -> bool:
        """True when every monitor of the model is OK (not WARN, ALERT or NO_DATA)."""
        ...

    def live_confidence(
        self, model: str, version: int, start: float, end: float
    ) -> tuple[float | None, int]:
        """Mean served confidence of one version over a time range, and the count."""
        ...


class JobCancelled(DriftloopError):
    status_code = 409


@dataclass
class PipelineHooks:
    """Optional observers: the demo's live view and the notification of a rollback."""

    on_state: Callable[[Job], None] | None = None
    on_notice: Callable[[str, str, Mapping[str, Any]], None] | None = None
    progress: ProgressCallback | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class RetrainPipeline:
    def __init__(
        self,
        config: Config,
        queue: JobQueue,
        registry: ModelRegistry,
        datasets: DatasetStore,
        *,
        health: HealthProbe | None = None,
        incidents: IncidentLog | None = None,
        hooks: PipelineHooks | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.queue = queue
        self.registry = registry
        self.datasets = datasets
        self.health = health
        self.incidents = incidents
        self.hooks = hooks or PipelineHooks()
        self.clock = clock
        self.sleep = sleep

    # ----------------------------------------------------------------------------- running
    def run(self, job: Job, worker: str) -> Job:
        """Run (or resume) a claimed job to a finished state; never raises for job failures."""
        try:
            if job.state in {JobState.VERIFYING} and job.candidate_version is not None:
                return self._verify(job, worker)
            if job.state in {JobState.GATED, JobState.DEPLOYING} and job.candidate_version:
                return self._deploy_and_verify(job, worker)
            if job.state != JobState.QUEUED:
                self._note(job, "resumed", f"resuming after an interrupted {job.state.value} step")
            return self._train_and_gate(job, worker)
        except JobCancelled:
            return self._finish(job.job_id, JobState.CANCELLED, error="cancelled on request")
        except DriftloopError as exc:
            logger.warning("retrain job %s failed: %s", job.job_id, exc.message)
            return self._finish(job.job_id, JobState.FAILED, error=exc.message)
        except Exception as exc:  # a trainer's own bug must not kill the worker
            logger.exception("retrain job %s crashed", job.job_id)
            return self._finish(job.job_id, JobState.FAILED, error=f"{type(exc).__name__}: {exc}")

    def _train_and_gate(self, job: Job, worker: str) -> Job:
        model_config = self.config.models.get(job.model)
        if model_config is None:
            raise NotFoundError(f"model {job.model!r} is not configured in driftloop.yaml")
        try:
            production: ModelVersion | None = self.registry.resolve(job.model, "production")
        except NotFoundError:
            production = None

        with self._step(job, JobState.FETCHING_DATA, worker) as log:
            snapshot = self.datasets.newest(model_config.data)
            frame = self.datasets.load(snapshot)
            log.append(f"snapshot {snapshot.snapshot_id} ({snapshot.row_count} rows, "
                       f"hash {snapshot.content_hash[:12]})")
            split = split_for_gate(
                frame, model_config.text_column, model_config.label_column,
                self._seen_texts(production, model_config.data, model_config.text_column),
                fraction=self.config.pipeline.holdout_fraction,
                min_fresh_rows=self.config.pipeline.min_fresh_rows, seed=self.config.pipeline.seed,
            )
            train, holdout = split.train, split.holdout
            log.append(f"{split.fresh_rows} rows new since the production model's data; "
                       f"held out {len(holdout)} "
                       f"{'new rows' if split.fresh else 'random rows'} for the gate")
            self.queue.set_state(job.job_id, JobState.FETCHING_DATA,
                                 snapshot_id=snapshot.snapshot_id,
                                 previous_version=production.version if production else None)
        self._note(job, "data", f"newest snapshot {snapshot.snapshot_id}: {len(frame)} rows, "
                   f"{split.fresh_rows} new", snapshot_id=snapshot.snapshot_id)

        with self._step(job, JobState.TRAINING, worker) as log:
            trainer = get_trainer(model_config.trainer, model_config)
            trained = trainer.fit(
                TrainingData(train, model_config.text_column, model_config.label_column,
                             snapshot.snapshot_id, snapshot.content_hash),
                progress=self.hooks.progress,
            )
            log.append(f"trained with {model_config.trainer} on {len(train)} rows: "
                       f"validation macro-F1 {trained.evaluation.macro_f1:.3f}, "
                       f"ECE {trained.evaluation.ece:.3f}")

        with self._step(job, JobState.EVALUATING, worker) as log:
            decision = self._evaluate(trained.predictor, production, holdout, model_config,
                                      fresh=split.fresh)
            log.extend(decision.reasons)

        if not decision.accepted:
            self._step_record(job, JobState.GATED, "rejected", decision.reasons)
            self._note(job, "gate", "candidate rejected by the gate: " + "; ".join(
                decision.reasons), decision=decision.to_dict())
            return self._finish(job.job_id, JobState.REJECTED, result={"gate": decision.to_dict()},
                                error="rejected by the quality gate")

        version = self.registry.register_trained(
            job.model, trained, trainer=model_config.trainer, snapshot=snapshot,
            trigger=f"incident:{job.incident_id}" if job.incident_id else f"job:{job.job_id}",
            parent_version=production.version if production else None,
        )
        self.registry.set_alias(job.model, "candidate", version.version, actor=f"job:{job.job_id}")
        job = self.queue.set_state(job.job_id, JobState.GATED, candidate_version=version.version,
                                   result={"gate": decision.to_dict()})
        self._step_record(job, JobState.GATED, "accepted", decision.reasons)
        self._note(job, "gate", f"v{version.version} passed the gate: " + "; ".join(
            decision.reasons), version=version.version)
        self._emit(job)
        return self._deploy_and_verify(job, worker)

    def _seen_texts(self, production: ModelVersion | None, dataset: str, column: str) -> set[str]:
        """The texts of the snapshot the production model trained on (empty if unknown)."""
        if production is None or not production.snapshot_id:
            return set()
        try:
            seen = self.datasets.load(self.datasets.get(dataset, production.snapshot_id))
        except NotFoundError:
            return set()
        return set(seen[column].astype(str)) if column in seen else set()

    def _evaluate(
        self, candidate: Predictor, production: ModelVersion | None, holdout: pd.DataFrame,
        model_config: ModelConfig, *, fresh: bool,
    ) -> GateDecision:
        production_predictor = (
            None if production is None else self.registry.load_predictor(production)
        )
        labels = sorted(
            set(holdout[model_config.label_column].astype(str)) | set(candidate.labels)
            | set(production_predictor.labels if production_predictor else ())
        )
        columns = (model_config.text_column, model_config.label_column)
        candidate_eval = evaluate_on_holdout(candidate, holdout, *columns, labels)
        production_eval = None if production_predictor is None else evaluate_on_holdout(
            production_predictor, holdout, *columns, labels)
        return decide(candidate_eval, production_eval, self.config.pipeline.gate,
                      holdout_rows=len(holdout), fresh_holdout=fresh)

    def _deploy_and_verify(self, job: Job, worker: str) -> Job:
        assert job.candidate_version is not None
        with self._step(job, JobState.DEPLOYING, worker) as log:
            self.registry.set_alias(job.model, "production", job.candidate_version,
                                    actor=f"job:{job.job_id}")
            log.append(f"production → v{job.candidate_version}")
        job = self.queue.set_state(job.job_id, JobState.VERIFYING, deployed_at=self.clock())
        self._note(job, "deploy", f"v{job.candidate_version} deployed to production",
                   version=job.candidate_version, previous_version=job.previous_version)
        self._emit(job)
        return self._verify(job, worker)

    def _verify(self, job: Job, worker: str) -> Job:
        assert job.candidate_version is not None
        deployed_at = job.deployed_at or self.clock()
        deadline = deployed_at + self.config.pipeline.verify_deadline
        settings = self.config.pipeline
        step_id = self.queue.start_step(job.job_id, JobState.VERIFYING.value)
        log: list[str] = []
        if self.health is None:
            log.append("no health probe configured: verification skipped")
            self.queue.finish_step(step_id, "skipped", "\n".join(log))
            return self._finish(job.job_id, JobState.SUCCEEDED, result=self._result(job, log))
        while True:
            self._check_cancel(job.job_id)
            self.queue.heartbeat(job.job_id, worker)
            now = self.clock()
            new_conf, new_count = self.health.live_confidence(
                job.model, job.candidate_version, deployed_at, now)
            old_conf: float | None = None
            if job.previous_version is not None:
                old_conf, _ = self.health.live_confidence(
                    job.model, job.previous_version, deployed_at - settings.verify_baseline,
                    deployed_at)
            enough = new_count >= settings.verify_min_predictions
            not_worse = (old_conf is None or new_conf is None
                         or new_conf >= old_conf - settings.verify_confidence_tolerance)
            if enough and not not_worse:
                log.append(f"live confidence of v{job.candidate_version} {new_conf:.3f} is worse "
                           f"than v{job.previous_version}'s {old_conf:.3f}")
                break
            if enough and self.health.monitors_ok(job.model):
                log.append(f"monitors OK; live confidence v{job.candidate_version} "
                           f"{_fmt(new_conf)} over {new_count} predictions "
                           f"(v{job.previous_version} before deploy: {_fmt(old_conf)})")
                self.queue.finish_step(step_id, "ok", "\n".join(log))
                self._note(job, "recovered", log[-1], version=job.candidate_version,
                           live_confidence=new_conf)
                return self._finish(job.job_id, JobState.SUCCEEDED, result=self._result(job, log))
            if now >= deadline:
                log.append(f"monitors not back to OK within {settings.verify_deadline:g}s "
                           f"({new_count} predictions on v{job.candidate_version})")
                break
            self.sleep(settings.verify_interval)
        self.queue.finish_step(step_id, "failed", "\n".join(log))
        return self._roll_back(job, log)

    def _roll_back(self, job: Job, log: list[str]) -> Job:
        if job.previous_version is not None:
            self.registry.set_alias(job.model, "production", job.previous_version,
                                    actor=f"job:{job.job_id} rollback")
            message = (f"verification failed, rolled back {job.model} to "
                       f"v{job.previous_version}: {log[-1]}")
        else:
            message = f"verification failed and {job.model} has no previous version: {log[-1]}"
        self._note(job, "rollback", message, version=job.previous_version)
        if self.hooks.on_notice is not None:
            self.hooks.on_notice("rollback", message, {"job_id": job.job_id, "model": job.model})
        return self._finish(job.job_id, JobState.ROLLED_BACK, result=self._result(job, log),
                            error=message)

    # ----------------------------------------------------------------------------- records
    @contextmanager
    def _step(self, job: Job, state: JobState, worker: str) -> Iterator[list[str]]:
        self._check_cancel(job.job_id)
        self.queue.set_state(job.job_id, state, worker=worker)
        self._emit(self.queue.get(job.job_id))
        step_id = self.queue.start_step(job.job_id, state.value)
        log: list[str] = []
        try:
            yield log
        except Exception as exc:
            log.append(f"{type(exc).__name__}: {exc}")
            self.queue.finish_step(step_id, "failed", "\n".join(log))
            if isinstance(exc, DriftloopError):
                raise
            if state == JobState.TRAINING:
                raise TrainingError(f"training failed: {exc}") from exc
            raise
        self.queue.finish_step(step_id, "ok", "\n".join(log))

    def _step_record(self, job: Job, state: JobState, outcome: str, log: list[str]) -> None:
        step_id = self.queue.start_step(job.job_id, state.value)
        self.queue.finish_step(step_id, outcome, "\n".join(log))

    def _check_cancel(self, job_id: str) -> None:
        if self.queue.get(job_id).cancel_requested:
            raise JobCancelled(f"job {job_id} was cancelled")

    def _finish(self, job_id: str, state: JobState, **values: Any) -> Job:
        job = self.queue.set_state(job_id, state, **values)
        self._note(job, "job", f"retrain job {state.value}" + (
            f": {job.error}" if job.error else ""), state=state.value)
        self._emit(job)
        return job

    def _note(self, job: Job, kind: str, message: str, **data: Any) -> None:
        logger.info("job %s %s: %s", job.job_id[:8], kind, message)
        if self.incidents is not None and job.incident_id is not None:
            self.incidents.add_timeline_entry(job.incident_id, kind, message,
                                              {"job_id": job.job_id, **data})

    def _emit(self, job: Job) -> None:
        if self.hooks.on_state is not None:
            self.hooks.on_state(job)

    def _result(self, job: Job, log: list[str]) -> dict[str, Any]:
        result = dict(self.queue.get(job.job_id).result or {})
        result["verification"] = log
        return result


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"

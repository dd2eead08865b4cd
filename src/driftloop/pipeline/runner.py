"""The retrain job: newest data → train → evaluate → gate → deploy → verify, or roll back.

The deploy and verification steps live in :mod:`driftloop.pipeline.deploy`, what every step
shares (records, heartbeat, hooks) in :mod:`driftloop.pipeline.steps`.

Every step is recorded (start, end, outcome, log) and the job's state is written before the
step's effects, so a worker killed at any point leaves a state another worker resumes from:
steps before the deploy rerun from the data (nothing was published yet), a deploy reruns
(alias moves are idempotent), and verification continues against the original deadline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from driftloop.config import ModelConfig
from driftloop.errors import ConfigError, DriftloopError, NotFoundError, TrainingError
from driftloop.objectstore import Snapshot
from driftloop.objectstore.datasets import TrainingRows, training_rows
from driftloop.pipeline.deploy import SHADOW_ALIAS, DeployAndVerify, rollout_mode
from driftloop.pipeline.feedback import merge_feedback
from driftloop.pipeline.gate import (
    GateDecision,
    GateSplit,
    decide,
    evaluate_on_holdout,
    seen_keys,
    split_for_gate,
    split_for_remote,
)
from driftloop.pipeline.queue import Job, JobState
from driftloop.pipeline.steps import (
    FeedbackSource,
    HealthProbe,
    IncidentLog,
    JobCancelledError,
    PipelineHooks,
)
from driftloop.predictors import Predictor
from driftloop.registry import ModelVersion
from driftloop.trainers.base import TrainedModel, TrainingData
from driftloop.trainers.evaluation import describe_evaluation
from driftloop.trainers.registry import get_remote_trainer, get_trainer, is_remote_trainer
from driftloop.trainers.remote import RemoteRun

if TYPE_CHECKING:  # frames arrive built; this module never makes one
    import pandas as pd

logger = logging.getLogger("driftloop.pipeline")

__all__ = [
    "SHADOW_ALIAS",
    "FeedbackSource",
    "HealthProbe",
    "IncidentLog",
    "JobCancelledError",
    "PipelineHooks",
    "RetrainPipeline",
]


class RetrainPipeline(DeployAndVerify):
    # ----------------------------------------------------------------------------- running
    def run(self, job: Job, worker: str) -> Job:
        """Run (or resume) a claimed job to a finished state; never raises for job failures."""
        try:
            if job.state != JobState.QUEUED:  # a resumed job: its dead worker's step ended there
                self.queue.close_open_steps(job.job_id)
                self._note(job, "resumed", f"resuming after an interrupted {job.state.value} step")
            if job.state in {JobState.VERIFYING} and job.candidate_version is not None:
                return self._verify(job, worker)
            if job.state in {JobState.GATED, JobState.DEPLOYING} and job.candidate_version:
                return self._deploy_and_verify(job, worker)
            return self._train_and_gate(job, worker)
        except JobCancelledError:
            self.queue.close_open_steps(job.job_id, "cancelled")  # e.g. a verification
            error = "cancelled on request" + self._end_watch_on_cancel(job.job_id)
            return self._finish(job.job_id, JobState.CANCELLED, error=error)
        except DriftloopError as exc:
            logger.warning("retrain job %s failed: %s", job.job_id, exc.message)
            return self._fail(job.job_id, exc.message)
        except Exception as exc:  # a trainer's own bug must not kill the worker
            logger.exception("retrain job %s crashed", job.job_id)
            return self._fail(job.job_id, f"{type(exc).__name__}: {exc}")

    def _end_watch_on_cancel(self, job_id: str) -> str:
        """A cancelled verification stops the watch, not the deploy: production keeps the
        deployed version, and the shadow (or canary) that only served the watch ends."""
        job = self.queue.get(job_id)
        if job.state != JobState.VERIFYING:
            return ""
        alias = rollout_mode(job) or SHADOW_ALIAS
        try:
            removed = self.registry.remove_alias(
                job.model, alias, actor=f"job:{job.job_id} cancelled"
            )
        except DriftloopError as exc:
            return f"; ending the {alias} failed: {exc.message}"
        return f"; the {alias} ended, production stays as it is" if removed else ""

    def _fail(self, job_id: str, error: str) -> Job:
        """Fail the job; a version deployed but not verified is rolled back first, so a
        failure never leaves an unverified model serving."""
        self.queue.close_open_steps(job_id, "failed")
        job = self.queue.get(job_id)
        deployed = job.state in {JobState.DEPLOYING, JobState.VERIFYING}
        recorded_mode = job.result.deploy_mode
        mode = recorded_mode or (self.config.pipeline.deploy_mode if deployed else None)
        if mode in {"canary", "shadow"}:
            try:
                if self.registry.remove_alias(job.model, mode, actor=f"job:{job.job_id} rollback"):
                    error += f"; ended the {mode} of v{job.candidate_version}"
            except DriftloopError as exc:
                error += f"; removing the {mode} alias failed too: {exc.message}"
        if deployed and mode == "direct" and job.previous_version is not None:
            try:
                self._end_verification_shadow(job)
            except DriftloopError as exc:
                error += f"; ending the verification shadow failed too: {exc.message}"
        if deployed and job.previous_version is not None and job.candidate_version is not None:
            try:
                if self.registry.resolve(job.model, "production").version == job.candidate_version:
                    self._roll_back_production(job, job.previous_version)
                    error += f"; rolled back {job.model} to v{job.previous_version}"
                    self._note(
                        job,
                        "rollback",
                        f"job failed after deploy: {error}",
                        version=job.previous_version,
                    )
            except DriftloopError as exc:
                error += f"; rollback failed too: {exc.message}"
        return self._finish(job_id, JobState.FAILED, error=error)

    def _train_and_gate(self, job: Job, worker: str) -> Job:
        model_config = self.config.models.get(job.model)
        if model_config is None:
            raise NotFoundError(f"model {job.model!r} is not configured in driftloop.yaml")
        try:
            production: ModelVersion | None = self.registry.resolve(job.model, "production")
        except NotFoundError:
            production = None
        source = _CandidateSource(self._uploaded_version(job), _recorded_run(job), model_config)
        data = self._fetch_data(job, worker, source, production)
        candidate = self._train_candidate(job, worker, source, data)
        with self._step(job, JobState.EVALUATING, worker) as log:
            decision = self._evaluate(
                candidate.predictor,
                production,
                data.split.holdout,
                model_config,
                fresh=data.split.fresh,
            )
            log.extend(decision.reasons)
        if not decision.accepted:
            return self._reject(job, decision, candidate.registered)
        return self._accept(job, worker, decision, candidate, data.snapshot, production)

    def _fetch_data(
        self, job: Job, worker: str, source: _CandidateSource, production: ModelVersion | None
    ) -> _GateData:
        """The FETCHING_DATA step: the newest rows (or the snapshot a remote or uploaded
        candidate trained on), feedback merged in, and the gate's held-out split."""
        model_config = source.model_config
        with self._step(job, JobState.FETCHING_DATA, worker) as log:
            pinned = source.pinned_snapshot
            if pinned:
                # a resumed remote job gates on the snapshot its remote run was given, an
                # uploaded candidate on the snapshot it trained on
                rows = training_rows(
                    self.datasets,
                    model_config.data,
                    policy="newest",
                    text_column=model_config.text_column,
                    snapshot=self.datasets.get(model_config.data, pinned),
                )
            else:
                rows = training_rows(
                    self.datasets,
                    model_config.data,
                    policy=model_config.retrain_data,
                    text_column=model_config.text_column,
                )
            snapshot, frame = rows.snapshot, rows.frame
            log.append(rows.describe())
            if model_config.merge_feedback and source.starts_training:
                snapshot, frame = self._merge_feedback(
                    job, model_config, snapshot, frame, log, rows=rows
                )
            split = (split_for_remote if source.remote else split_for_gate)(
                frame,
                model_config.text_column,
                model_config.label_column,
                self._seen_texts(production, model_config),
                fraction=self.config.pipeline.holdout_fraction,
                min_fresh_rows=self.config.pipeline.min_fresh_rows,
                seed=self.config.pipeline.seed,
                output=model_config.output,
            )
            log.append(
                f"{split.fresh_rows} rows new since the production model's data; "
                f"held out {len(split.holdout)} "
                f"{'new rows' if split.fresh else 'random rows'} for the gate"
            )
            self.queue.set_state(
                job.job_id,
                JobState.FETCHING_DATA,
                snapshot_id=snapshot.snapshot_id,
                previous_version=production.version if production else None,
            )
        self._note(
            job,
            "data",
            f"newest snapshot {snapshot.snapshot_id}: {len(frame)} rows, {split.fresh_rows} new",
            snapshot_id=snapshot.snapshot_id,
        )
        return _GateData(snapshot, frame, split)

    def _train_candidate(
        self, job: Job, worker: str, source: _CandidateSource, data: _GateData
    ) -> _Candidate:
        """The TRAINING step: the uploaded candidate as it is, a remote run, or a local fit."""
        model_config = source.model_config
        with self._step(job, JobState.TRAINING, worker) as log:
            if source.uploaded is not None:
                uploaded = source.uploaded
                log.append(
                    f"v{uploaded.version} was uploaded (trigger {uploaded.trigger}, "
                    f"snapshot {uploaded.snapshot_id or 'unknown'}): gated as it is"
                )
                return _Candidate(self.registry.load_predictor(uploaded), uploaded, None)
            if source.remote:
                registered = self._train_remotely(job, worker, model_config, data.snapshot, log)
                return _Candidate(self.registry.load_predictor(registered), registered, None)
            trainer = get_trainer(model_config.trainer, model_config)
            trained = trainer.fit(
                TrainingData(
                    data.split.train,
                    model_config.text_column,
                    model_config.label_column,
                    data.snapshot.snapshot_id,
                    data.snapshot.content_hash,
                ),
                progress=self.hooks.progress,
            )
            log.append(
                f"trained with {model_config.trainer} on {len(data.split.train)} rows: "
                f"validation {describe_evaluation(trained.evaluation)}"
            )
            return _Candidate(trained.predictor, None, trained)

    def _reject(self, job: Job, decision: GateDecision, registered: ModelVersion | None) -> Job:
        recorded = self.queue.get(job.job_id).result.with_changes(gate=decision.to_dict())
        if registered is not None:  # a remote version stays registered, without an alias
            recorded = recorded.with_changes(rejected_version=registered.version)
        rejected, _ = self.queue.enter_step(
            job.job_id,
            JobState.REJECTED,
            step=JobState.GATED,
            outcome="rejected",
            log="\n".join(decision.reasons),
            result=recorded,
            error="rejected by the quality gate",
        )
        self._note(
            job,
            "gate",
            "candidate rejected by the gate: " + "; ".join(decision.reasons),
            decision=decision.to_dict(),
        )
        return self._finished(rejected)

    def _accept(
        self,
        job: Job,
        worker: str,
        decision: GateDecision,
        candidate: _Candidate,
        snapshot: Snapshot,
        production: ModelVersion | None,
    ) -> Job:
        recorded = self.queue.get(job.job_id).result.with_changes(gate=decision.to_dict())
        if candidate.registered is not None:
            version = candidate.registered
        else:
            assert candidate.trained is not None
            version = self.registry.register_trained(
                job.model,
                candidate.trained,
                trainer=self.config.models[job.model].trainer,
                snapshot=snapshot,
                trigger=f"incident:{job.incident_id}" if job.incident_id else f"job:{job.job_id}",
                parent_version=production.version if production else None,
            )
        self.registry.set_alias(job.model, "candidate", version.version, actor=f"job:{job.job_id}")
        job, _ = self.queue.enter_step(
            job.job_id,
            JobState.GATED,
            outcome="accepted",
            log="\n".join(decision.reasons),
            candidate_version=version.version,
            result=recorded,
        )
        self._note(
            job,
            "gate",
            f"v{version.version} passed the gate: " + "; ".join(decision.reasons),
            version=version.version,
        )
        self._emit(job)
        return self._deploy_and_verify(job, worker)

    def _uploaded_version(self, job: Job) -> ModelVersion | None:
        """The candidate uploaded for this job (``POST /v1/models/{name}/versions``), if any."""
        number = job.result.uploaded_version
        return None if number is None else self.registry.get_version(job.model, number)

    def _train_remotely(
        self, job: Job, worker: str, model_config: ModelConfig, snapshot: Snapshot, log: list[str]
    ) -> ModelVersion:
        """Hand the training to the remote trainer and wait for the version it registers.

        The remote run is recorded in the job's ``result`` before the wait, so a worker that
        resumes the job waits for the same run (with its original deadline) instead of
        starting another.
        """
        remote = get_remote_trainer(
            model_config.trainer, model_config, self.registry, clock=self.clock, sleep=self.sleep
        )

        def on_wait(waited: float) -> None:
            del waited
            self.queue.heartbeat(job.job_id, worker)
            self._check_cancel(job.job_id)

        run = _recorded_run(self.queue.get(job.job_id))
        if run is None:
            run = remote.start(
                job.model,
                incident_id=job.incident_id,
                snapshot=snapshot,
                callback_url=self.config.public_url,
            )
            result = self.queue.get(job.job_id).result.with_changes(remote_run=run.to_dict())
            self.queue.set_state(job.job_id, JobState.TRAINING, result=result)
            log.append(run.summary)
        else:
            log.append(f"waiting again for the remote run ({run.summary}); not started twice")
        version = remote.wait(run, on_wait=on_wait)
        if version.snapshot_id and version.snapshot_id != snapshot.snapshot_id:
            # the held-out rows come from our snapshot: the candidate may have trained on them
            raise TrainingError(
                f"{model_config.trainer} registered v{version.version} trained on snapshot "
                f"{version.snapshot_id}, not the dispatched {snapshot.snapshot_id}: the gate "
                "cannot hold out rows it never saw, so it is not deployed"
            )
        log.append(
            f"{model_config.trainer} registered v{version.version} "
            f"(trigger {version.trigger}, snapshot {version.snapshot_id or 'unknown'})"
        )
        return version

    def _merge_feedback(
        self,
        job: Job,
        model_config: ModelConfig,
        snapshot: Snapshot,
        frame: pd.DataFrame,
        log: list[str],
        *,
        rows: TrainingRows,
    ) -> tuple[Snapshot, pd.DataFrame]:
        """The snapshot to train on: ``snapshot``, or a new one of the same dataset with the
        model's feedback-labeled production samples merged in (feedback newer than the
        snapshot a row's label came from overturns it: ``rows`` says when that was)."""
        if self.feedback is None:
            raise ConfigError(
                f"models.{job.model}.merge_feedback is on, but this pipeline was "
                "built without a feedback source"
            )
        text_column, label_column = model_config.text_column, model_config.label_column
        if text_column not in frame or label_column not in frame:
            return snapshot, frame  # the trainer names the missing column
        labels = model_config.labels or set(frame[label_column].astype(str))
        merge = merge_feedback(
            frame,
            self.feedback(job.model),
            text_column=text_column,
            label_column=label_column,
            labels=labels,
            snapshot_time=rows.labels_as_of,
            label_times=rows.label_times,
        )
        if merge.unknown_labels:
            log.append(
                "feedback left out, label not among the model's classes: "
                + ", ".join(
                    f"{label!r} x{count}" for label, count in sorted(merge.unknown_labels.items())
                )
            )
        if not merge.changed:
            log.append("feedback: no labeled sample that the snapshot lacks")
            return snapshot, frame
        merged = self.datasets.push(merge.frame, model_config.data)
        log.append(
            f"feedback: {merge.added} production samples added and {merge.relabelled} "
            f"relabelled -> snapshot {merged.snapshot_id} ({merged.row_count} rows, "
            f"hash {merged.content_hash[:12]})"
        )
        return merged, self.datasets.load(merged)  # train on exactly what is stored

    def _seen_texts(self, production: ModelVersion | None, model_config: ModelConfig) -> set[str]:
        """The rows (texts, or a record model's feature values: ``row_keys``) of the snapshot
        the production model trained on (empty if unknown)."""
        if production is None or not production.snapshot_id:
            return set()
        try:
            seen = self.datasets.load(self.datasets.get(model_config.data, production.snapshot_id))
        except NotFoundError:
            return set()
        return seen_keys(seen, model_config.text_column, model_config.label_column)

    def _evaluate(
        self,
        candidate: Predictor,
        production: ModelVersion | None,
        holdout: pd.DataFrame,
        model_config: ModelConfig,
        *,
        fresh: bool,
    ) -> GateDecision:
        production_predictor = (
            None if production is None else self.registry.load_predictor(production)
        )
        labels = sorted(
            set(holdout[model_config.label_column].astype(str))
            | set(candidate.labels)
            | set(production_predictor.labels if production_predictor else ())
        )
        columns = (model_config.text_column, model_config.label_column)
        candidate_eval = evaluate_on_holdout(candidate, holdout, *columns, labels)
        production_eval = (
            None
            if production_predictor is None
            else evaluate_on_holdout(production_predictor, holdout, *columns, labels)
        )
        return decide(
            candidate_eval,
            production_eval,
            model_config.gate or self.config.pipeline.gate,
            holdout_rows=len(holdout),
            fresh_holdout=fresh,
        )


def _recorded_run(job: Job) -> RemoteRun | None:
    """The remote run an earlier try of this job recorded, if any."""
    recorded = job.result.remote_run
    return RemoteRun.from_dict(recorded) if recorded else None


@dataclass(frozen=True)
class _CandidateSource:
    """Where this job's candidate comes from: an upload, a remote run (resumed or new), or a
    local fit."""

    uploaded: ModelVersion | None
    dispatched: RemoteRun | None
    model_config: ModelConfig

    @property
    def remote(self) -> bool:
        return self.uploaded is not None or is_remote_trainer(self.model_config.trainer)

    @property
    def pinned_snapshot(self) -> str | None:
        """The snapshot the candidate trained on, when it trained elsewhere already."""
        if self.uploaded is not None:
            return self.uploaded.snapshot_id
        return self.dispatched.snapshot_id if self.dispatched is not None else None

    @property
    def starts_training(self) -> bool:
        """Training starts in this try (feedback can still join its data)."""
        return self.uploaded is None and self.dispatched is None


@dataclass(frozen=True)
class _GateData:
    snapshot: Snapshot
    frame: pd.DataFrame
    split: GateSplit


@dataclass(frozen=True)
class _Candidate:
    predictor: Predictor
    registered: ModelVersion | None  # uploaded or trained remotely: registered already
    trained: TrainedModel | None  # fitted here: registered only if the gate accepts it

"""The retrain job: newest data → train → evaluate → gate → deploy → verify, or roll back.

Every step is recorded (start, end, outcome, log) and the job's state is written before the
step's effects, so a worker killed at any point leaves a state another worker resumes from:
steps before the deploy rerun from the data (nothing was published yet), a deploy reruns
(alias moves are idempotent), and verification continues against the original deadline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from driftloop.config import Config, ModelConfig
from driftloop.errors import ConfigError, DriftloopError, NotFoundError, TrainingError
from driftloop.pipeline.feedback import LabeledSample, merge_feedback
from driftloop.pipeline.gate import (
    GateDecision,
    GateSplit,
    decide,
    evaluate_on_holdout,
    split_for_gate,
)
from driftloop.pipeline.queue import Job, JobQueue, JobState
from driftloop.pipeline.verification import (
    Decision,
    PairedEvidence,
    Verdict,
    VerificationRule,
    decide_verification,
)
from driftloop.registry import ModelRegistry, ModelVersion
from driftloop.storage import DatasetStore, Snapshot
from driftloop.storage.datasets import TrainingRows, training_rows
from driftloop.trainers.base import Predictor, ProgressCallback, TrainedModel, TrainingData
from driftloop.trainers.evaluation import split_holdout
from driftloop.trainers.github_dispatch import GithubDispatchTrainer, WorkflowDispatch
from driftloop.trainers.registry import get_trainer
from driftloop.trainers.remote import get_remote_trainer, is_remote_trainer

logger = logging.getLogger("driftloop.pipeline")

SHADOW_ALIAS = "shadow"
"""The alias of the version that scores the live requests in the background: the previous
version while a direct deploy is verified, the candidate in a shadow rollout."""


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

    def shadow_pairs(
        self, model: str, *, shadow_version: int, served_version: int, start: float, end: float
    ) -> PairedEvidence:
        """What ``shadow_version`` made of the requests ``served_version`` answered over a
        time range, as shadow minus served per request."""
        ...


class JobCancelledError(DriftloopError):
    status_code = 409


@dataclass
class PipelineHooks:
    """Optional observers: the demo's live view and the notification of a rollback."""

    on_state: Callable[[Job], None] | None = None
    on_notice: Callable[[str, str, Mapping[str, Any]], None] | None = None
    progress: ProgressCallback | None = None
    extra: dict[str, Any] = field(default_factory=dict)


FeedbackSource = Callable[[str], Sequence[LabeledSample]]
"""For a model name, the labeled samples production feedback sent, oldest first."""


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
        heartbeat_interval: float = 10.0,
        feedback: FeedbackSource | None = None,
    ) -> None:
        self.config = config
        self.feedback = feedback
        """Where ``merge_feedback`` models find their labeled production samples."""
        self.queue = queue
        self.registry = registry
        self.datasets = datasets
        self.health = health
        self.incidents = incidents
        self.hooks = hooks or PipelineHooks()
        self.clock = clock
        self.sleep = sleep
        self.heartbeat_interval = heartbeat_interval
        """Seconds between heartbeats during a step; keep it well under the workers'
        ``stale_after`` (60 s by default)."""

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
        alias = _rollout_mode(job) or SHADOW_ALIAS
        try:
            removed = self.registry.remove_alias(job.model, alias,
                                                 actor=f"job:{job.job_id} cancelled")
        except DriftloopError as exc:
            return f"; ending the {alias} failed: {exc.message}"
        return f"; the {alias} ended, production stays as it is" if removed else ""

    def _fail(self, job_id: str, error: str) -> Job:
        """Fail the job; a version deployed but not verified is rolled back first, so a
        failure never leaves an unverified model serving."""
        self.queue.close_open_steps(job_id, "failed")
        job = self.queue.get(job_id)
        deployed = job.state in {JobState.DEPLOYING, JobState.VERIFYING}
        recorded_mode = (job.result or {}).get("deploy_mode")
        mode = recorded_mode or (self.config.pipeline.deploy_mode if deployed else None)
        if mode in {"canary", "shadow"}:
            try:
                if self.registry.remove_alias(job.model, mode,
                                              actor=f"job:{job.job_id} rollback"):
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
                if self.registry.resolve(job.model, "production").version == \
                        job.candidate_version:
                    self.registry.set_alias(job.model, "production", job.previous_version,
                                            actor=f"job:{job.job_id} rollback")
                    error += f"; rolled back {job.model} to v{job.previous_version}"
                    self._note(job, "rollback", f"job failed after deploy: {error}",
                               version=job.previous_version)
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

        remote = is_remote_trainer(model_config.trainer)
        dispatched = _recorded_dispatch(job)
        with self._step(job, JobState.FETCHING_DATA, worker) as log:
            if dispatched is not None and dispatched.inputs.get("dataset_snapshot"):
                # a resumed remote job gates on the snapshot its workflow was given
                snapshot = self.datasets.get(model_config.data,
                                             dispatched.inputs["dataset_snapshot"])
                rows = training_rows(self.datasets, model_config.data, policy="newest",
                                     text_column=model_config.text_column, snapshot=snapshot)
            else:
                rows = training_rows(self.datasets, model_config.data,
                                     policy=model_config.retrain_data,
                                     text_column=model_config.text_column)
            snapshot, frame = rows.snapshot, rows.frame
            log.append(rows.describe())
            if model_config.merge_feedback and dispatched is None:
                snapshot, frame = self._merge_feedback(job, model_config, snapshot, frame, log,
                                                       rows=rows)
            seen = self._seen_texts(production, model_config.data, model_config.text_column)
            split = (self._remote_split(frame, model_config, seen) if remote else split_for_gate(
                frame, model_config.text_column, model_config.label_column, seen,
                fraction=self.config.pipeline.holdout_fraction,
                min_fresh_rows=self.config.pipeline.min_fresh_rows, seed=self.config.pipeline.seed,
            ))
            train, holdout = split.train, split.holdout
            log.append(f"{split.fresh_rows} rows new since the production model's data; "
                       f"held out {len(holdout)} "
                       f"{'new rows' if split.fresh else 'random rows'} for the gate")
            self.queue.set_state(job.job_id, JobState.FETCHING_DATA,
                                 snapshot_id=snapshot.snapshot_id,
                                 previous_version=production.version if production else None)
        self._note(job, "data", f"newest snapshot {snapshot.snapshot_id}: {len(frame)} rows, "
                   f"{split.fresh_rows} new", snapshot_id=snapshot.snapshot_id)

        registered: ModelVersion | None = None
        trained: TrainedModel | None = None
        with self._step(job, JobState.TRAINING, worker) as log:
            if remote:
                registered = self._train_remotely(job, worker, model_config, snapshot, log)
                candidate = self.registry.load_predictor(registered)
            else:
                trainer = get_trainer(model_config.trainer, model_config)
                trained = trainer.fit(
                    TrainingData(train, model_config.text_column, model_config.label_column,
                                 snapshot.snapshot_id, snapshot.content_hash),
                    progress=self.hooks.progress,
                )
                candidate = trained.predictor
                log.append(f"trained with {model_config.trainer} on {len(train)} rows: "
                           f"validation macro-F1 {trained.evaluation.macro_f1:.3f}, "
                           f"ECE {trained.evaluation.ece:.3f}")

        with self._step(job, JobState.EVALUATING, worker) as log:
            decision = self._evaluate(candidate, production, holdout, model_config,
                                      fresh=split.fresh)
            log.extend(decision.reasons)

        recorded = dict(self.queue.get(job.job_id).result or {})
        if not decision.accepted:
            if registered is not None:  # a remote version stays registered, without an alias
                recorded["rejected_version"] = registered.version
            rejected, _ = self.queue.enter_step(
                job.job_id, JobState.REJECTED, step=JobState.GATED, outcome="rejected",
                log="\n".join(decision.reasons), result={**recorded, "gate": decision.to_dict()},
                error="rejected by the quality gate")
            self._note(job, "gate", "candidate rejected by the gate: " + "; ".join(
                decision.reasons), decision=decision.to_dict())
            return self._finished(rejected)

        if registered is not None:
            version = registered
        else:
            assert trained is not None
            version = self.registry.register_trained(
                job.model, trained, trainer=model_config.trainer, snapshot=snapshot,
                trigger=f"incident:{job.incident_id}" if job.incident_id else f"job:{job.job_id}",
                parent_version=production.version if production else None,
            )
        self.registry.set_alias(job.model, "candidate", version.version, actor=f"job:{job.job_id}")
        job, _ = self.queue.enter_step(job.job_id, JobState.GATED, outcome="accepted",
                                       log="\n".join(decision.reasons),
                                       candidate_version=version.version,
                                       result={**recorded, "gate": decision.to_dict()})
        self._note(job, "gate", f"v{version.version} passed the gate: " + "; ".join(
            decision.reasons), version=version.version)
        self._emit(job)
        return self._deploy_and_verify(job, worker)

    def _remote_split(
        self, frame: pd.DataFrame, model_config: ModelConfig, seen: set[str]
    ) -> GateSplit:
        """The gate's rows for a remotely trained candidate: the rows the training workflow
        leaves out (``split_holdout`` with the same fraction and seed, as the training-repo
        template's ``fetch_training_data.py`` does), restricted to those production never saw
        when enough of them are new."""
        settings = self.config.pipeline
        train, held_out = split_holdout(frame, model_config.label_column,
                                        settings.holdout_fraction, settings.seed)
        new = ~held_out[model_config.text_column].astype(str).isin(seen)
        fresh_rows = int((~frame[model_config.text_column].astype(str).isin(seen)).sum())
        fresh = int(new.sum()) >= settings.min_fresh_rows
        holdout = held_out[new].reset_index(drop=True) if fresh else held_out
        return GateSplit(train, holdout, fresh, fresh_rows)

    def _train_remotely(
        self, job: Job, worker: str, model_config: ModelConfig, snapshot: Snapshot,
        log: list[str],
    ) -> ModelVersion:
        """Hand the training to the remote trainer and wait for the version it registers.

        The dispatch is recorded in the job's ``result`` before the wait, so a worker that
        resumes the job waits for the same run (with its original deadline) instead of
        dispatching the workflow again.
        """
        remote = get_remote_trainer(model_config.trainer, model_config, self.registry,
                                    clock=self.clock, sleep=self.sleep)

        def on_wait(waited: float) -> None:
            del waited
            self.queue.heartbeat(job.job_id, worker)
            self._check_cancel(job.job_id)

        if not isinstance(remote, GithubDispatchTrainer):
            version = remote.train_remote(
                job.model, incident_id=job.incident_id, snapshot=snapshot,
                callback_url=self.config.public_url, on_wait=on_wait,
            )
        else:
            dispatch = _recorded_dispatch(self.queue.get(job.job_id))
            if dispatch is None:
                dispatch = remote.dispatch(job.model, incident_id=job.incident_id,
                                           snapshot=snapshot, callback_url=self.config.public_url)
                result = dict(self.queue.get(job.job_id).result or {})
                self.queue.set_state(job.job_id, JobState.TRAINING,
                                     result={**result, "dispatch": dispatch.to_dict()})
                log.append(f"dispatched {dispatch.workflow} on {dispatch.repo}@{dispatch.ref} "
                           f"(id {dispatch.correlation_id})")
            else:
                log.append(f"waiting again for the {dispatch.workflow} run dispatched with id "
                           f"{dispatch.correlation_id} (not dispatched twice)")
            version = remote.wait_for_version(dispatch, on_wait=on_wait)
        if version.snapshot_id and version.snapshot_id != snapshot.snapshot_id:
            # the held-out rows come from our snapshot: the candidate may have trained on them
            raise TrainingError(
                f"{model_config.trainer} registered v{version.version} trained on snapshot "
                f"{version.snapshot_id}, not the dispatched {snapshot.snapshot_id}: the gate "
                "cannot hold out rows it never saw, so it is not deployed"
            )
        log.append(f"{model_config.trainer} registered v{version.version} "
                   f"(trigger {version.trigger}, snapshot {version.snapshot_id or 'unknown'})")
        return version

    def _merge_feedback(
        self, job: Job, model_config: ModelConfig, snapshot: Snapshot, frame: pd.DataFrame,
        log: list[str], *, rows: TrainingRows,
    ) -> tuple[Snapshot, pd.DataFrame]:
        """The snapshot to train on: ``snapshot``, or a new one of the same dataset with the
        model's feedback-labeled production samples merged in (feedback newer than the
        snapshot a row's label came from overturns it: ``rows`` says when that was)."""
        if self.feedback is None:
            raise ConfigError(f"models.{job.model}.merge_feedback is on, but this pipeline was "
                              "built without a feedback source")
        text_column, label_column = model_config.text_column, model_config.label_column
        if text_column not in frame or label_column not in frame:
            return snapshot, frame  # the trainer names the missing column
        labels = model_config.labels or set(frame[label_column].astype(str))
        merge = merge_feedback(frame, self.feedback(job.model), text_column=text_column,
                               label_column=label_column, labels=labels,
                               snapshot_time=rows.labels_as_of, label_times=rows.label_times)
        if merge.unknown_labels:
            log.append("feedback left out, label not among the model's classes: " + ", ".join(
                f"{label!r} x{count}" for label, count in sorted(merge.unknown_labels.items())))
        if not merge.changed:
            log.append("feedback: no labeled sample that the snapshot lacks")
            return snapshot, frame
        merged = self.datasets.push(merge.frame, model_config.data)
        log.append(f"feedback: {merge.added} production samples added and {merge.relabelled} "
                   f"relabelled -> snapshot {merged.snapshot_id} ({merged.row_count} rows, "
                   f"hash {merged.content_hash[:12]})")
        return merged, self.datasets.load(merged)  # train on exactly what is stored

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
        mode = self.config.pipeline.deploy_mode
        if mode != "direct" and job.previous_version is not None:
            return self._deploy_rollout(job, worker, mode)
        with self._step(job, JobState.DEPLOYING, worker) as log:
            self.registry.set_alias(job.model, "production", job.candidate_version,
                                    actor=f"job:{job.job_id}")
            log.append(f"production → v{job.candidate_version}")
            if self._shadows_previous(job):
                self._start_verification_shadow(job, log)
        recorded = {**(self.queue.get(job.job_id).result or {}), "deploy_mode": "direct"}
        # The timeline entry goes first: a crash between the two writes then resumes the job
        # at its deploy (which it redoes and notes again), never at verification without one.
        self._note(job, "deploy", f"v{job.candidate_version} deployed to production",
                   version=job.candidate_version, previous_version=job.previous_version)
        job, step_id = self.queue.enter_step(job.job_id, JobState.VERIFYING,
                                             deployed_at=self.clock(), result=recorded)
        self._emit(job)
        return self._verify(job, worker, step_id)

    def _shadows_previous(self, job: Job) -> bool:
        """A direct deploy with a previous version and a probe to read the pairs: the previous
        version scores the live requests in shadow while the new one is verified."""
        return (job.previous_version is not None and self.health is not None
                and _rollout_mode(job) is None)

    def _start_verification_shadow(self, job: Job, log: list[str]) -> None:
        assert job.previous_version is not None
        self.registry.set_alias(job.model, SHADOW_ALIAS, job.previous_version,
                                actor=f"job:{job.job_id} verification")
        log.append(f"shadow → v{job.previous_version}: it scores "
                   f"{self.config.pipeline.shadow_fraction:.0%} of the live requests beside "
                   f"v{job.candidate_version}, for verification (its answers reach no client)")

    def _end_verification_shadow(self, job: Job) -> None:
        """Stop the previous version's shadow (idempotent)."""
        self.registry.remove_alias(job.model, SHADOW_ALIAS,
                                   actor=f"job:{job.job_id} verification ended")

    def _deploy_rollout(self, job: Job, worker: str, mode: str) -> Job:
        """Canary or shadow: the candidate serves beside production under the ``canary`` or
        ``shadow`` alias; production moves only when verification promotes it."""
        assert job.candidate_version is not None
        with self._step(job, JobState.DEPLOYING, worker) as log:
            self.registry.set_alias(job.model, mode, job.candidate_version,
                                    actor=f"job:{job.job_id}")
            share = (f"{self.config.pipeline.canary_fraction:.0%} of the traffic"
                     if mode == "canary" else
                     f"{self.config.pipeline.shadow_fraction:.0%} of the requests in the "
                     "background")
            log.append(f"{mode} → v{job.candidate_version} ({share}); production stays "
                       f"v{job.previous_version}")
        result = {**(self.queue.get(job.job_id).result or {}), "deploy_mode": mode}
        self._note(job, "deploy", f"v{job.candidate_version} deployed as {mode} beside "
                   f"production v{job.previous_version}", version=job.candidate_version,
                   previous_version=job.previous_version, mode=mode)  # first, as above
        job, step_id = self.queue.enter_step(job.job_id, JobState.VERIFYING,
                                             deployed_at=self.clock(), result=result)
        self._emit(job)
        return self._verify(job, worker, step_id)

    def _reference_confidence(self, model: str, version: int) -> float | None:
        reference = self.registry.get_version(model, version).reference
        return None if reference is None else float(reference.mean_confidence)

    def _verify_canary(self, job: Job, worker: str, step_id: int) -> Job:
        """A canary answers a random share of the requests, so it and production see the same
        traffic: compare their live confidence, each relative to its own reference; enough
        predictions and not worse by more than ``verify_tolerance`` promotes it; worse, or the
        deadline, ends the canary with production untouched."""
        assert job.candidate_version is not None
        assert job.previous_version is not None
        settings = self.config.pipeline
        deployed_at = job.deployed_at or self.clock()
        deadline = deployed_at + settings.verify_deadline
        shift = _shift(self._reference_confidence(job.model, job.candidate_version),
                       self._reference_confidence(job.model, job.previous_version))
        log: list[str] = []
        assert self.health is not None
        while True:
            self._check_cancel(job.job_id)
            self.queue.heartbeat(job.job_id, worker)
            now = self.clock()
            new_conf, new_count = self.health.live_confidence(
                job.model, job.candidate_version, deployed_at, now)
            old_conf, old_count = self.health.live_confidence(
                job.model, job.previous_version, deployed_at, now)
            enough = new_count >= settings.verify_min_predictions
            compared = (f"canary v{job.candidate_version} live confidence {_fmt(new_conf)} over "
                        f"{new_count} predictions, production v{job.previous_version} "
                        f"{_fmt(old_conf)} over {old_count} (references differ by {shift:+.3f})")
            worse = (old_conf is not None and new_conf is not None
                     and new_conf - shift < old_conf - settings.verify_tolerance)
            if enough and worse:
                log.append(f"{compared}: worse")
                break
            if enough:
                log.append(f"{compared}: promoted")
                self.registry.set_alias(job.model, "production", job.candidate_version,
                                        actor=f"job:{job.job_id} promote")
                self.registry.remove_alias(job.model, "canary",
                                           actor=f"job:{job.job_id} promote")
                self.queue.finish_step(step_id, "ok", "\n".join(log))
                self._note(job, "verified", log[-1], version=job.candidate_version,
                           live_confidence=new_conf, mode="canary")
                return self._finish(job.job_id, JobState.SUCCEEDED, result=self._result(job, log))
            if now >= deadline:
                log.append(f"canary v{job.candidate_version} had {new_count} of "
                           f"{settings.verify_min_predictions} predictions within "
                           f"{settings.verify_deadline:g}s")
                break
            self.sleep(settings.verify_interval)
        self.queue.finish_step(step_id, "failed", "\n".join(log))
        self.registry.remove_alias(job.model, "canary", actor=f"job:{job.job_id} rollback")
        message = (f"canary of v{job.candidate_version} rejected, production stays "
                   f"v{job.previous_version}: {log[-1]}")
        return self._rolled_back(job, message, log, version=job.previous_version, mode="canary")

    def _verify(self, job: Job, worker: str, step_id: int | None = None) -> Job:
        """Verify a deployed candidate in the verifying step ``step_id`` (opened with the state
        change; a resumed job opens a new one): the new and the previous version compared on
        the same live requests (:mod:`driftloop.pipeline.verification`)."""
        assert job.candidate_version is not None
        if step_id is None:
            step_id = self.queue.start_step(job.job_id, JobState.VERIFYING.value)
        mode = _rollout_mode(job)
        if mode == "canary" and self.health is not None:
            return self._verify_canary(job, worker, step_id)
        log: list[str] = []
        if self.health is None or job.previous_version is None:
            log.append("no health probe configured: verification skipped"
                       if self.health is None else
                       f"{job.model} had no previous version to compare with: kept")
            if mode is not None:  # nothing can judge the rollout: promote it as a direct deploy
                self.registry.set_alias(job.model, "production", job.candidate_version,
                                        actor=f"job:{job.job_id} promote")
                self.registry.remove_alias(job.model, mode, actor=f"job:{job.job_id} promote")
                log.append(f"{mode} v{job.candidate_version} promoted to production unverified")
            self.queue.finish_step(step_id, "skipped", "\n".join(log))
            return self._finish(job.job_id, JobState.SUCCEEDED, result=self._result(job, log))
        if mode is None:  # a resumed job: its shadow may never have been set
            self.registry.set_alias(job.model, SHADOW_ALIAS, job.previous_version,
                                    actor=f"job:{job.job_id} verification")
        decision = self._compare_on_live_traffic(job, worker, mode, log)
        new, old = job.candidate_version, job.previous_version
        if decision.verdict == Verdict.KEEP:
            if mode == "shadow":
                self.registry.set_alias(job.model, "production", new,
                                        actor=f"job:{job.job_id} promote")
                log.append(f"shadow v{new} promoted to production")
            elif self.registry.resolve(job.model, "production").version != new:
                # resumed after a crash in the middle of a rollback: the deploy is redone
                self.registry.set_alias(job.model, "production", new,
                                        actor=f"job:{job.job_id} verified")
                log.append(f"production → v{new} again (a rollback was interrupted)")
            self.registry.remove_alias(job.model, SHADOW_ALIAS,
                                       actor=f"job:{job.job_id} verification ended")
            if self.health.monitors_ok(job.model):
                log.append(f"monitors OK on v{new}")
            else:
                log.append(f"v{new} kept, but its monitors are not all OK yet: the incident "
                           "stays open and may retry (pipeline.retry_backoff)")
            self.queue.finish_step(step_id, "ok", "\n".join(log))
            self._note(job, "verified", f"v{new} kept: {decision.message}", version=new,
                       decision=decision.to_dict())
            return self._finish(job.job_id, JobState.SUCCEEDED, result={
                **self._result(job, log), "verification_decision": decision.to_dict()})
        self.queue.finish_step(step_id, "failed", "\n".join(log))
        if mode == "shadow":
            self.registry.remove_alias(job.model, SHADOW_ALIAS, actor=f"job:{job.job_id} rollback")
            message = (f"shadow of v{new} rejected, production stays v{old}: "
                       f"{decision.message}")
            return self._rolled_back(job, message, log, decision, version=old, mode=mode)
        self.registry.set_alias(job.model, "production", old, actor=f"job:{job.job_id} rollback")
        self._end_verification_shadow(job)
        message = f"verification failed, rolled back {job.model} to v{old}: {decision.message}"
        return self._rolled_back(job, message, log, decision, version=old)

    def _compare_on_live_traffic(
        self, job: Job, worker: str, mode: str | None, log: list[str]
    ) -> Decision:
        """Look at the shadow pairs every ``verify_interval`` until the sequential test
        decides or the deadline passes."""
        assert job.candidate_version is not None
        assert job.previous_version is not None
        assert self.health is not None
        settings = self.config.pipeline
        rule = VerificationRule(tolerance=settings.verify_tolerance,
                                error_rate=settings.verify_error_rate,
                                min_pairs=settings.verify_min_predictions,
                                min_labels=settings.verify_min_labels)
        new, old = job.candidate_version, job.previous_version
        # the shadow is the new version in a shadow rollout, the previous one after a deploy
        shadow, served = (new, old) if mode == "shadow" else (old, new)
        shift = _shift(self._reference_confidence(job.model, new),
                       self._reference_confidence(job.model, old))
        deployed_at = job.deployed_at or self.clock()
        deadline = deployed_at + settings.verify_deadline
        looks = 0
        while True:
            self._check_cancel(job.job_id)
            self.queue.heartbeat(job.job_id, worker)
            now = self.clock()
            pairs = self.health.shadow_pairs(job.model, shadow_version=shadow,
                                             served_version=served, start=deployed_at, end=now)
            evidence = pairs if shadow == new else pairs.reversed()
            if (evidence.pairs >= rule.min_pairs
                    or evidence.correct_gap.size >= rule.min_labels):
                looks += 1
            decision = decide_verification(evidence, rule, reference_shift=shift,
                                           look=max(1, looks), at_deadline=now >= deadline)
            if decision.verdict != Verdict.WAIT:
                log.append(f"v{new} against v{old} on the same live requests "
                           f"({decision.rule}): {decision.message}")
                return decision
            self.sleep(settings.verify_interval)

    def _rolled_back(self, job: Job, message: str, log: list[str],
                     decision: Decision | None = None, **data: Any) -> Job:
        result = self._result(job, log)
        if decision is not None:
            result["verification_decision"] = data["decision"] = decision.to_dict()
        self._note(job, "rollback", message, **data)
        if self.hooks.on_notice is not None:
            self.hooks.on_notice("rollback", message, {"job_id": job.job_id, "model": job.model})
        return self._finish(job.job_id, JobState.ROLLED_BACK, result=result, error=message)

    # ----------------------------------------------------------------------------- records
    @contextmanager
    def _step(self, job: Job, state: JobState, worker: str) -> Iterator[list[str]]:
        self._check_cancel(job.job_id)
        entered, step_id = self.queue.enter_step(job.job_id, state, worker=worker)
        self._emit(entered)
        log: list[str] = []
        try:
            with self._beating(job.job_id, worker):
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

    @contextmanager
    def _beating(self, job_id: str, worker: str) -> Iterator[None]:
        """Heartbeat while a step runs (a training can take hours), so that no other worker
        takes the job for one whose worker died."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat_interval):
                try:
                    self.queue.heartbeat(job_id, worker)
                except Exception:  # a store blip must not end the step; the next beat retries
                    logger.warning("heartbeat of job %s failed", job_id[:8], exc_info=True)

        thread = threading.Thread(target=beat, name=f"driftloop-heartbeat-{job_id[:8]}",
                                  daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _check_cancel(self, job_id: str) -> None:
        if self.queue.get(job_id).cancel_requested:
            raise JobCancelledError(f"job {job_id} was cancelled")

    def _finish(self, job_id: str, state: JobState, **values: Any) -> Job:
        return self._finished(self.queue.set_state(job_id, state, **values))

    def _finished(self, job: Job) -> Job:
        """Tell the incident and the hooks that ``job`` reached its final state."""
        self._note(job, "job", f"retrain job {job.state.value}" + (
            f": {job.error}" if job.error else ""), state=job.state.value)
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


def _recorded_dispatch(job: Job) -> WorkflowDispatch | None:
    """The remote dispatch an earlier run of this job recorded, if any."""
    recorded = (job.result or {}).get("dispatch")
    return WorkflowDispatch.from_dict(recorded) if isinstance(recorded, dict) else None


def _rollout_mode(job: Job) -> str | None:
    """``canary`` or ``shadow`` when the job deployed its candidate as a rollout."""
    mode = (job.result or {}).get("deploy_mode")
    return mode if mode in {"canary", "shadow"} else None


def _shift(new_reference: float | None, old_reference: float | None) -> float:
    """How much higher the new version's reference confidence is than the old one's (0 when
    either is unknown: then raw confidences are compared)."""
    if new_reference is None or old_reference is None:
        return 0.0
    return new_reference - old_reference


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"

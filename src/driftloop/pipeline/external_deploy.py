"""Deploying a model that is served elsewhere: the deploy hook in a retrain job, and the
reported insights.

A model with ``models.<name>.deploy`` runs behind the user's own serving stack. The pipeline's
deploy step calls the hook (:mod:`driftloop.registry.deploy_hook`: a webhook or a command)
before it moves the registry's ``production`` alias, so a hook that fails leaves production as
it was; a rollback calls it again with ``"action": "rollback"``. Verification reads the insights
that server reports (``POST /v1/insights``, ``report_insights``, logged predictions and their
feedback), tagged with the model and version:
:func:`~driftloop.pipeline.verification.decide_against_before` compares the new version after
the deploy with the previous one before it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from driftloop.pipeline.queue import Job
from driftloop.pipeline.steps import JobSteps
from driftloop.pipeline.verification import (
    Decision,
    ReportedEvidence,
    Verdict,
    VerificationRule,
    decide_against_before,
)
from driftloop.registry.deploy_hook import DeployAction, DeployHook, deploy_hook, deploy_payload

CONFIDENCE_METRIC = "model_confidence"
CORRECT_METRIC = "prediction_correct"


@runtime_checkable
class ReportedInsights(Protocol):
    """Where verification reads what a model served elsewhere reported."""

    def reported_values(
        self, model: str, version: int, metric: str, start: float, end: float
    ) -> NDArray[np.float64]:
        """The values of ``metric`` tagged with the model and version (not a shadow's) over
        a time range."""
        ...


class ExternalDeployment(JobSteps):
    """The deploy hook and the reported-insights comparison of a retrain job."""

    def _deploy_hook(self, model: str) -> DeployHook | None:
        return deploy_hook(self.config, model, clock=self.clock, sleep=self.sleep)

    def _reported_insights(self) -> ReportedInsights | None:
        """The health probe, when it also reads reported insights (the system's does)."""
        health: object = self.health
        return health if isinstance(health, ReportedInsights) else None

    def _call_deploy_hook(
        self, hook: DeployHook, job: Job, action: DeployAction, version: int, previous: int | None
    ) -> str:
        payload = deploy_payload(
            action,
            job.job_id,
            self.registry.get_version(job.model, version),
            previous,
            timestamp=self.clock(),
            actor=f"job:{job.job_id}",
        )
        return hook.call(payload)

    def _roll_back_production(self, job: Job, previous: int) -> str:
        """Point ``production`` back at ``previous``; for a model served elsewhere through its
        deploy hook first: a hook that fails raises, and ``production`` keeps naming the
        version that server still runs."""
        hook = self._deploy_hook(job.model)
        called = ""
        if hook is not None:
            called = self._call_deploy_hook(hook, job, "rollback", previous, job.candidate_version)
        self.registry.set_alias(
            job.model, "production", previous, actor=f"job:{job.job_id} rollback"
        )
        return called

    def _compare_on_reported_insights(
        self, job: Job, worker: str, reader: ReportedInsights, shift: float
    ) -> Decision:
        """Look at the reported insights every ``verify_interval`` until the test decides or
        the deadline passes: the new version from the deploy on, the previous one over the
        ``verify_deadline`` before it (its labels may still arrive)."""
        assert job.candidate_version is not None
        assert job.previous_version is not None
        settings = self.config.pipeline
        rule = VerificationRule(
            tolerance=settings.verify_tolerance,
            error_rate=settings.verify_error_rate,
            min_pairs=settings.verify_min_predictions,
            min_labels=settings.verify_min_labels,
        )
        deployed_at = job.deployed_at or self.clock()
        before = deployed_at - settings.verify_deadline
        deadline = deployed_at + settings.verify_deadline
        looks = 0
        while True:
            self._check_cancel(job.job_id)
            self.queue.heartbeat(job.job_id, worker)
            now = self.clock()

            def values(version: int, metric: str, start: float, end: float) -> NDArray[Any]:
                return reader.reported_values(job.model, version, metric, start, end)

            new, old = job.candidate_version, job.previous_version
            evidence = ReportedEvidence(
                new_confidence=values(new, CONFIDENCE_METRIC, deployed_at, now),
                old_confidence=values(old, CONFIDENCE_METRIC, before, deployed_at),
                new_correct=values(new, CORRECT_METRIC, deployed_at, now),
                old_correct=values(old, CORRECT_METRIC, before, now),
            )
            enough = (
                min(evidence.new_confidence.size, evidence.old_confidence.size) >= rule.min_pairs
            )
            labelled = min(evidence.new_correct.size, evidence.old_correct.size)
            if enough or labelled >= rule.min_labels:
                looks += 1
            decision = decide_against_before(
                evidence,
                rule,
                reference_shift=shift,
                look=max(1, looks),
                at_deadline=now >= deadline,
            )
            if decision.verdict != Verdict.WAIT:
                return decision
            self.sleep(settings.verify_interval)

"""Deploy and verify: the new version goes live, the previous one scores the same live
requests in shadow, and the sequential test of :mod:`driftloop.pipeline.verification` keeps the
new version or rolls back; canary and shadow rollouts promote or end the candidate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from driftloop.messages import format_value
from driftloop.pipeline.external_deploy import ExternalDeployment, ReportedInsights
from driftloop.pipeline.queue import Job, JobState
from driftloop.pipeline.verification import Decision, Verdict, VerificationRule, decide_verification

SHADOW_ALIAS = "shadow"
"""The alias of the version that scores the live requests in the background: the previous
version while a direct deploy is verified, the candidate in a shadow rollout."""


@dataclass(frozen=True)
class _CanaryCheck:
    """One look at a canary: the comparison in words, whether it has enough predictions, and
    whether it is worse than production beyond the tolerance."""

    compared: str
    enough: bool
    worse: bool
    new_confidence: float | None
    new_count: int


class DeployAndVerify(ExternalDeployment):
    """The deploy and verification steps of a retrain job."""

    def _deploy_and_verify(self, job: Job, worker: str) -> Job:
        assert job.candidate_version is not None
        mode = self.config.pipeline.deploy_mode
        hook = self._deploy_hook(job.model)
        if mode != "direct" and job.previous_version is not None and hook is None:
            return self._deploy_rollout(job, worker, mode)
        with self._step(job, JobState.DEPLOYING, worker) as log:
            if hook is not None:  # first: a failing hook leaves production as it was
                log.append(
                    self._call_deploy_hook(
                        hook, job, "deploy", job.candidate_version, job.previous_version
                    )
                )
            self.registry.set_alias(
                job.model, "production", job.candidate_version, actor=f"job:{job.job_id}"
            )
            log.append(f"production → v{job.candidate_version}")
            if hook is None and self._shadows_previous(job):
                self._start_verification_shadow(job, log)
        recorded = self.queue.get(job.job_id).result.with_changes(deploy_mode="direct")
        # The timeline entry goes first: a crash between the two writes then resumes the job
        # at its deploy (which it redoes and notes again), never at verification without one.
        self._note(
            job,
            "deploy",
            f"v{job.candidate_version} deployed to production",
            version=job.candidate_version,
            previous_version=job.previous_version,
        )
        job, step_id = self.queue.enter_step(
            job.job_id, JobState.VERIFYING, deployed_at=self.clock(), result=recorded
        )
        self._emit(job)
        return self._verify(job, worker, step_id)

    def _shadows_previous(self, job: Job) -> bool:
        """A direct deploy with a previous version and a probe to read the pairs: the previous
        version scores the live requests in shadow while the new one is verified."""
        return (
            job.previous_version is not None
            and self.health is not None
            and rollout_mode(job) is None
        )

    def _start_verification_shadow(self, job: Job, log: list[str]) -> None:
        assert job.previous_version is not None
        self.registry.set_alias(
            job.model, SHADOW_ALIAS, job.previous_version, actor=f"job:{job.job_id} verification"
        )
        log.append(
            f"shadow → v{job.previous_version}: it scores "
            f"{self.config.pipeline.shadow_fraction:.0%} of the live requests beside "
            f"v{job.candidate_version}, for verification (its answers reach no client)"
        )

    def _end_verification_shadow(self, job: Job) -> None:
        """Stop the previous version's shadow (idempotent)."""
        self.registry.remove_alias(
            job.model, SHADOW_ALIAS, actor=f"job:{job.job_id} verification ended"
        )

    def _deploy_rollout(self, job: Job, worker: str, mode: str) -> Job:
        """Canary or shadow: the candidate serves beside production under the ``canary`` or
        ``shadow`` alias; production moves only when verification promotes it."""
        assert job.candidate_version is not None
        with self._step(job, JobState.DEPLOYING, worker) as log:
            self.registry.set_alias(
                job.model, mode, job.candidate_version, actor=f"job:{job.job_id}"
            )
            share = (
                f"{self.config.pipeline.canary_fraction:.0%} of the traffic"
                if mode == "canary"
                else f"{self.config.pipeline.shadow_fraction:.0%} of the requests in the background"
            )
            log.append(
                f"{mode} → v{job.candidate_version} ({share}); production stays "
                f"v{job.previous_version}"
            )
        result = self.queue.get(job.job_id).result.with_changes(deploy_mode=mode)
        self._note(
            job,
            "deploy",
            f"v{job.candidate_version} deployed as {mode} beside "
            f"production v{job.previous_version}",
            version=job.candidate_version,
            previous_version=job.previous_version,
            mode=mode,
        )  # first, as above
        job, step_id = self.queue.enter_step(
            job.job_id, JobState.VERIFYING, deployed_at=self.clock(), result=result
        )
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
        shift = _shift(
            self._reference_confidence(job.model, job.candidate_version),
            self._reference_confidence(job.model, job.previous_version),
        )
        log: list[str] = []
        while True:
            self._check_cancel(job.job_id)
            self.queue.heartbeat(job.job_id, worker)
            now = self.clock()
            check = self._compare_canary(job, deployed_at, now, shift)
            if check.enough and check.worse:
                log.append(f"{check.compared}: worse")
                break
            if check.enough:
                log.append(f"{check.compared}: promoted")
                return self._promote_canary(job, step_id, log, check.new_confidence)
            if now >= deadline:
                log.append(
                    f"canary v{job.candidate_version} had {check.new_count} of "
                    f"{settings.verify_min_predictions} predictions within "
                    f"{settings.verify_deadline:g}s"
                )
                break
            self.sleep(settings.verify_interval)
        self.queue.finish_step(step_id, "failed", "\n".join(log))
        self.registry.remove_alias(job.model, "canary", actor=f"job:{job.job_id} rollback")
        message = (
            f"canary of v{job.candidate_version} rejected, production stays "
            f"v{job.previous_version}: {log[-1]}"
        )
        return self._rolled_back(job, message, log, version=job.previous_version, mode="canary")

    def _compare_canary(
        self, job: Job, deployed_at: float, now: float, shift: float
    ) -> _CanaryCheck:
        """The canary's and production's live confidence since ``deployed_at``, the canary's
        corrected by ``shift`` (the difference of their references)."""
        assert job.candidate_version is not None
        assert job.previous_version is not None
        assert self.health is not None
        settings = self.config.pipeline
        new_conf, new_count = self.health.live_confidence(
            job.model, job.candidate_version, deployed_at, now
        )
        old_conf, old_count = self.health.live_confidence(
            job.model, job.previous_version, deployed_at, now
        )
        compared = (
            f"canary v{job.candidate_version} live confidence "
            f"{format_value(new_conf)} over {new_count} predictions, production "
            f"v{job.previous_version} {format_value(old_conf)} over {old_count} "
            f"(references differ by {shift:+.3f})"
        )
        worse = (
            old_conf is not None
            and new_conf is not None
            and new_conf - shift < old_conf - settings.verify_tolerance
        )
        return _CanaryCheck(
            compared=compared,
            enough=new_count >= settings.verify_min_predictions,
            worse=worse,
            new_confidence=new_conf,
            new_count=new_count,
        )

    def _promote_canary(
        self, job: Job, step_id: int, log: list[str], live_confidence: float | None
    ) -> Job:
        """The canary becomes production and the job succeeds."""
        assert job.candidate_version is not None
        self.registry.set_alias(
            job.model,
            "production",
            job.candidate_version,
            actor=f"job:{job.job_id} promote",
        )
        self.registry.remove_alias(job.model, "canary", actor=f"job:{job.job_id} promote")
        self.queue.finish_step(step_id, "ok", "\n".join(log))
        self._note(
            job,
            "verified",
            log[-1],
            version=job.candidate_version,
            live_confidence=live_confidence,
            mode="canary",
        )
        return self._finish(job.job_id, JobState.SUCCEEDED, result=self._result(job, log))

    def _verify(self, job: Job, worker: str, step_id: int | None = None) -> Job:
        """Verify a deployed candidate in the verifying step ``step_id`` (opened with the state
        change; a resumed job opens a new one): the new and the previous version compared on
        the same live requests (:mod:`driftloop.pipeline.verification`)."""
        assert job.candidate_version is not None
        if step_id is None:
            step_id = self.queue.start_step(job.job_id, JobState.VERIFYING.value)
        mode = rollout_mode(job)
        if mode == "canary" and self.health is not None:
            return self._verify_canary(job, worker, step_id)
        reader = self._reported_insights()
        if self._deploy_hook(job.model) and job.previous_version is not None and reader is not None:
            return self._verify_external(job, worker, step_id, reader)
        if self.health is None or job.previous_version is None:
            return self._skip_verification(job, step_id, mode)
        log: list[str] = []
        if mode is None:  # a resumed job: its shadow may never have been set
            self.registry.set_alias(
                job.model,
                SHADOW_ALIAS,
                job.previous_version,
                actor=f"job:{job.job_id} verification",
            )
        decision = self._compare_on_live_traffic(job, worker, mode, log)
        if decision.verdict == Verdict.KEEP:
            return self._keep_verified(job, step_id, mode, decision, log)
        return self._reject_verified(job, step_id, mode, decision, log)

    def _skip_verification(self, job: Job, step_id: int, mode: str | None) -> Job:
        """No health probe or no previous version: nothing can judge the candidate, so it is
        kept (a rollout promoted as a direct deploy) and the step is skipped."""
        assert job.candidate_version is not None
        log = [
            "no health probe configured: verification skipped"
            if self.health is None
            else f"{job.model} had no previous version to compare with: kept"
        ]
        if mode is not None:  # nothing can judge the rollout: promote it as a direct deploy
            self.registry.set_alias(
                job.model,
                "production",
                job.candidate_version,
                actor=f"job:{job.job_id} promote",
            )
            self.registry.remove_alias(job.model, mode, actor=f"job:{job.job_id} promote")
            log.append(f"{mode} v{job.candidate_version} promoted to production unverified")
        self.queue.finish_step(step_id, "skipped", "\n".join(log))
        return self._finish(job.job_id, JobState.SUCCEEDED, result=self._result(job, log))

    def _keep_verified(
        self, job: Job, step_id: int, mode: str | None, decision: Decision, log: list[str]
    ) -> Job:
        """The candidate passed on live traffic: a shadow is promoted, an interrupted rollback
        redone, the verification shadow ended, and the job succeeds."""
        assert self.health is not None
        new = job.candidate_version
        assert new is not None
        if mode == "shadow":
            self.registry.set_alias(job.model, "production", new, actor=f"job:{job.job_id} promote")
            log.append(f"shadow v{new} promoted to production")
        elif self.registry.resolve(job.model, "production").version != new:
            # resumed after a crash in the middle of a rollback: the deploy is redone
            self.registry.set_alias(
                job.model, "production", new, actor=f"job:{job.job_id} verified"
            )
            log.append(f"production → v{new} again (a rollback was interrupted)")
        self.registry.remove_alias(
            job.model, SHADOW_ALIAS, actor=f"job:{job.job_id} verification ended"
        )
        if self.health.monitors_ok(job.model):
            log.append(f"monitors OK on v{new}")
        else:
            log.append(
                f"v{new} kept, but its monitors are not all OK yet: the incident "
                "stays open and may retry (pipeline.retry_backoff)"
            )
        self.queue.finish_step(step_id, "ok", "\n".join(log))
        self._note(
            job,
            "verified",
            f"v{new} kept: {decision.message}",
            version=new,
            decision=decision.to_dict(),
        )
        return self._finish(
            job.job_id,
            JobState.SUCCEEDED,
            result=self._result(job, log).with_changes(verification_decision=decision.to_dict()),
        )

    def _reject_verified(
        self, job: Job, step_id: int, mode: str | None, decision: Decision, log: list[str]
    ) -> Job:
        """The candidate failed on live traffic: a shadow is ended, a direct deploy rolled back
        to the previous version."""
        new, old = job.candidate_version, job.previous_version
        assert old is not None
        self.queue.finish_step(step_id, "failed", "\n".join(log))
        if mode == "shadow":
            self.registry.remove_alias(job.model, SHADOW_ALIAS, actor=f"job:{job.job_id} rollback")
            message = f"shadow of v{new} rejected, production stays v{old}: {decision.message}"
            return self._rolled_back(job, message, log, decision, version=old, mode=mode)
        self.registry.set_alias(job.model, "production", old, actor=f"job:{job.job_id} rollback")
        self._end_verification_shadow(job)
        message = f"verification failed, rolled back {job.model} to v{old}: {decision.message}"
        return self._rolled_back(job, message, log, decision, version=old)

    def _verify_external(
        self, job: Job, worker: str, step_id: int, reader: ReportedInsights
    ) -> Job:
        """A model served elsewhere: its reported insights after the deploy against the
        previous version's before it; a rollback goes through the deploy hook first."""
        assert job.candidate_version is not None
        assert job.previous_version is not None
        new, old = job.candidate_version, job.previous_version
        shift = _shift(
            self._reference_confidence(job.model, new), self._reference_confidence(job.model, old)
        )
        decision = self._compare_on_reported_insights(job, worker, reader, shift)
        log = [f"v{new} after the deploy against v{old} before it ({decision.rule})"]
        log.append(decision.message)
        if decision.verdict == Verdict.KEEP:
            self.queue.finish_step(step_id, "ok", "\n".join(log))
            self._note(
                job,
                "verified",
                f"v{new} kept: {decision.message}",
                version=new,
                decision=decision.to_dict(),
            )
            result = self._result(job, log).with_changes(verification_decision=decision.to_dict())
            return self._finish(job.job_id, JobState.SUCCEEDED, result=result)
        self.queue.finish_step(step_id, "failed", "\n".join(log))
        log.append(self._roll_back_production(job, old))
        message = (
            f"verification failed, rolled back {job.model} to v{old} through its deploy hook: "
            f"{decision.message}"
        )
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
        rule = VerificationRule(
            tolerance=settings.verify_tolerance,
            error_rate=settings.verify_error_rate,
            min_pairs=settings.verify_min_predictions,
            min_labels=settings.verify_min_labels,
        )
        new, old = job.candidate_version, job.previous_version
        # the shadow is the new version in a shadow rollout, the previous one after a deploy
        shadow, served = (new, old) if mode == "shadow" else (old, new)
        shift = _shift(
            self._reference_confidence(job.model, new), self._reference_confidence(job.model, old)
        )
        deployed_at = job.deployed_at or self.clock()
        deadline = deployed_at + settings.verify_deadline
        looks = 0
        while True:
            self._check_cancel(job.job_id)
            self.queue.heartbeat(job.job_id, worker)
            now = self.clock()
            pairs = self.health.shadow_pairs(
                job.model, shadow_version=shadow, served_version=served, start=deployed_at, end=now
            )
            evidence = pairs if shadow == new else pairs.reversed()
            if evidence.pairs >= rule.min_pairs or evidence.correct_gap.size >= rule.min_labels:
                looks += 1
            decision = decide_verification(
                evidence,
                rule,
                reference_shift=shift,
                look=max(1, looks),
                at_deadline=now >= deadline,
            )
            if decision.verdict != Verdict.WAIT:
                log.append(
                    f"v{new} against v{old} on the same live requests "
                    f"({decision.rule}): {decision.message}"
                )
                return decision
            self.sleep(settings.verify_interval)

    def _rolled_back(
        self, job: Job, message: str, log: list[str], decision: Decision | None = None, **data: Any
    ) -> Job:
        result = self._result(job, log)
        if decision is not None:
            data["decision"] = decision.to_dict()
            result = result.with_changes(verification_decision=data["decision"])
        self._note(job, "rollback", message, **data)
        if self.hooks.on_notice is not None:
            self.hooks.on_notice("rollback", message, {"job_id": job.job_id, "model": job.model})
        return self._finish(job.job_id, JobState.ROLLED_BACK, result=result, error=message)


def rollout_mode(job: Job) -> str | None:
    """``canary`` or ``shadow`` when the job deployed its candidate as a rollout."""
    mode = job.result.deploy_mode
    return mode if mode in {"canary", "shadow"} else None


def _shift(new_reference: float | None, old_reference: float | None) -> float:
    """How much higher the new version's reference confidence is than the old one's (0 when
    either is unknown: then raw confidences are compared)."""
    if new_reference is None or old_reference is None:
        return 0.0
    return new_reference - old_reference

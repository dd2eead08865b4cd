"""Deploying a model that is served elsewhere: the deploy hook and the reported insights.

A model with ``models.<name>.deploy`` runs behind the user's own serving stack. The pipeline's
deploy step calls the hook (a webhook or a command) with :func:`deploy_payload` before it moves
the registry's ``production`` alias, so a hook that fails leaves production as it was; a
rollback calls it again with ``"action": "rollback"``. Verification reads the insights that
server reports (``POST /v1/insights``, ``report_insights``, logged predictions and their
feedback), tagged with the model and version:
:func:`~driftloop.pipeline.verification.decide_against_before` compares the new version after
the deploy with the previous one before it.

The webhook is signed like driftloop's other outgoing webhooks (Standard Webhooks,
:mod:`driftloop.notify.signatures`), with one message id per job, action and version so that a
retried call can be recognised; it is retried after a 5xx answer or a connection error
(``retries``, waits from ``backoff`` doubling). Any other non-2xx answer, or a command's non-zero
exit, fails at once. A command gets the payload as JSON on its standard input and as
``DRIFTLOOP_DEPLOY_*`` environment variables.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol, runtime_checkable

import httpx
import numpy as np
from numpy.typing import NDArray

from driftloop._version import __version__
from driftloop.config import DeployHookConfig
from driftloop.errors import BackendUnavailableError
from driftloop.notify.signatures import StandardSigner
from driftloop.pipeline.queue import Job
from driftloop.pipeline.steps import JobSteps
from driftloop.pipeline.verification import (
    Decision,
    ReportedEvidence,
    Verdict,
    VerificationRule,
    decide_against_before,
)
from driftloop.registry import ModelVersion
from driftloop.timestamps import iso_utc

DeployAction = Literal["deploy", "rollback"]
PAYLOAD_TYPE = "driftloop.deploy"
CONFIDENCE_METRIC = "model_confidence"
CORRECT_METRIC = "prediction_correct"
_OUTPUT_CHARS = 500


def deploy_payload(
    action: DeployAction,
    job_id: str,
    version: ModelVersion,
    previous_version: int | None,
    *,
    timestamp: float,
) -> dict[str, Any]:
    """The JSON body of a deploy hook call (documented in docs/pipeline.md)."""
    return {
        "type": PAYLOAD_TYPE,
        "action": action,
        "model": version.name,
        "version": version.version,
        "previous_version": previous_version,
        "artifact_uri": version.artifact_uri,
        "sha256": version.content_hash,
        "job_id": job_id,
        "timestamp": iso_utc(timestamp),
    }


class DeployHook:
    """Calls one model's deploy hook; :meth:`call` returns what happened or raises
    :class:`BackendUnavailableError` saying why the hook failed."""

    def __init__(
        self,
        config: DeployHookConfig,
        *,
        model: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.model = model
        self.clock = clock
        self.sleep = sleep
        webhook = config.webhook
        self._signer = (
            StandardSigner(webhook.secret, where=f"models.{model}.deploy.webhook.secret")
            if webhook is not None and webhook.secret
            else None
        )

    def call(self, payload: Mapping[str, Any]) -> str:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        if self.config.command is not None:
            return self._run_command(self.config.command, payload, body)
        return self._post(payload, body)

    def _post(self, payload: Mapping[str, Any], body: bytes) -> str:
        webhook = self.config.webhook
        assert webhook is not None
        message_id = f"{payload['job_id']}-{payload['action']}-v{payload['version']}"
        what = f"the deploy webhook of {self.model} ({payload['action']} v{payload['version']})"
        attempts = self.config.retries + 1
        where = _origin(webhook.url)
        failure = ""
        with httpx.Client(timeout=self.config.timeout) as client:
            for attempt in range(1, attempts + 1):
                if attempt > 1:
                    self.sleep(self.config.backoff * 2 ** (attempt - 2))
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": f"driftloop/{__version__}",
                    **webhook.headers,
                }
                if self._signer is not None:
                    headers.update(self._signer.headers(message_id, body, timestamp=self.clock()))
                try:
                    response = client.post(webhook.url, content=body, headers=headers)
                except httpx.TransportError as exc:
                    failure = f"cannot reach {where}: {type(exc).__name__}: {exc}"
                    continue
                if 200 <= response.status_code < 300:
                    return f"{what}: {response.status_code} after {attempt} attempt(s)"
                failure = (
                    f"{where} answered {response.status_code}: "
                    f"{response.text.strip()[:_OUTPUT_CHARS] or '(empty body)'}"
                )
                if response.status_code < 500:
                    raise BackendUnavailableError(f"{what} failed: {failure} (not retried)")
        raise BackendUnavailableError(f"{what} failed after {attempts} attempt(s): {failure}")

    def _run_command(self, command: list[str], payload: Mapping[str, Any], body: bytes) -> str:
        what = f"the deploy command of {self.model} ({payload['action']} v{payload['version']})"
        environment = {
            **os.environ,
            **{
                f"DRIFTLOOP_DEPLOY_{key.upper()}": "" if value is None else str(value)
                for key, value in payload.items()
            },
        }
        try:
            finished = subprocess.run(  # the administrator's configured command
                command,
                input=body,
                env=environment,
                capture_output=True,
                timeout=self.config.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendUnavailableError(f"{what} failed: {type(exc).__name__}: {exc}") from None
        output = (finished.stderr or finished.stdout).decode(errors="replace").strip()
        if finished.returncode != 0:
            raise BackendUnavailableError(
                f"{what} exited with {finished.returncode}: "
                f"{output[-_OUTPUT_CHARS:] or '(no output)'}"
            )
        return f"{what}: exit 0"


def _origin(url: str) -> str:
    """Scheme, host and port of ``url``: its path and query may hold a token (as a Slack
    webhook's does), so messages and job errors name only where the call went."""
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


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
        model_config = self.config.models.get(model)
        if model_config is None or model_config.deploy is None:
            return None
        return DeployHook(model_config.deploy, model=model, clock=self.clock, sleep=self.sleep)

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

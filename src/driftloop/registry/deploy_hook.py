"""The deploy hook of a model served elsewhere, and the rule that guards its ``production`` alias.

A model with ``models.<name>.deploy`` runs behind the user's own serving stack. ``production``
must keep naming the version that server runs, so **every** change of it, by the retrain
pipeline (:mod:`driftloop.pipeline.external_deploy`) or by hand (``driftloop models promote``
and ``rollback``, the admin API's deploy and rollback), calls the hook first and moves the alias
only when the hook succeeded: a hook that fails leaves production as it was.

The webhook is signed like driftloop's other outgoing webhooks (Standard Webhooks,
:mod:`driftloop.notify.signatures`), with one message id per change, so that a retried call can
be recognised; it is retried after a 5xx answer or a connection error (``retries``, waits from
``backoff`` doubling). Any other non-2xx answer, or a command's non-zero exit, fails at once. A
command gets the payload as JSON on its standard input and as ``DRIFTLOOP_DEPLOY_*``
environment variables.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from driftloop._version import __version__
from driftloop.errors import BackendUnavailableError
from driftloop.registry.versions import PRODUCTION, ModelVersion
from driftloop.timestamps import iso_utc

if TYPE_CHECKING:
    from driftloop.config import Config, DeployHookConfig
    from driftloop.registry.model_registry import ModelRegistry

DeployAction = Literal["deploy", "rollback"]
PAYLOAD_TYPE = "driftloop.deploy"
_OUTPUT_CHARS = 500


def deploy_payload(
    action: DeployAction,
    job_id: str | None,
    version: ModelVersion,
    previous_version: int | None,
    *,
    timestamp: float,
    actor: str,
) -> dict[str, Any]:
    """The JSON body of a deploy hook call (documented in docs/pipeline.md); ``job_id`` is
    None for a change made by hand."""
    return {
        "type": PAYLOAD_TYPE,
        "action": action,
        "model": version.name,
        "version": version.version,
        "previous_version": previous_version,
        "artifact_uri": version.artifact_uri,
        "sha256": version.content_hash,
        "job_id": job_id,
        "actor": actor,
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
        from driftloop.notify.signatures import StandardSigner

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

    def call(self, payload: Mapping[str, Any], *, message_id: str | None = None) -> str:
        """Call the hook with ``payload``; ``message_id`` (the webhook's ``webhook-id``)
        defaults to ``<job id>-<action>-v<version>``."""
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        if self.config.command is not None:
            return self._run_command(self.config.command, payload, body)
        message_id = message_id or f"{payload['job_id']}-{payload['action']}-v{payload['version']}"
        return self._post(payload, body, message_id)

    def _post(self, payload: Mapping[str, Any], body: bytes, message_id: str) -> str:
        import httpx

        webhook = self.config.webhook
        assert webhook is not None
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
    from urllib.parse import urlsplit

    parsed = urlsplit(url)
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{parsed.hostname}{port}"


def deploy_hook(
    config: Config,
    model: str,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> DeployHook | None:
    """The model's deploy hook; None for a model that driftloop serves itself."""
    model_config = config.models.get(model)
    if model_config is None or model_config.deploy is None:
        return None
    return DeployHook(model_config.deploy, model=model, clock=clock, sleep=sleep)


def tell_deploy_hook(
    config: Config,
    registry: ModelRegistry,
    model: str,
    action: DeployAction,
    version: int,
    *,
    actor: str,
) -> str | None:
    """Before a change of ``production`` made by hand: call the model's deploy hook (raises
    :class:`BackendUnavailableError` when it fails, and the caller then moves nothing).
    Returns what the hook answered; None for a model without a hook."""
    hook = deploy_hook(config, model)
    if hook is None:
        return None
    previous = registry.aliases(model).get(PRODUCTION)
    payload = deploy_payload(
        action,
        None,
        registry.get_version(model, version),
        previous,
        timestamp=time.time(),
        actor=actor,
    )
    return hook.call(payload, message_id=f"manual-{uuid.uuid4().hex}-{action}-v{version}")

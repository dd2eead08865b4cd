"""``trainer: github_dispatch``: train in a GitHub Actions workflow (a GPU runner, say).

1. :meth:`GithubDispatchTrainer.dispatch` (the remote trainer's ``start``) starts the workflow::

       POST {api_url}/repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches
       Accept: application/vnd.github+json
       Authorization: Bearer <token>
       X-GitHub-Api-Version: 2022-11-28

       {"ref": "<ref>", "inputs": {"incident_id": "...", "dataset_snapshot": "...",
                                  "callback_url": "...", "model": "..."}}

   GitHub answers ``204 No Content``; any other answer (``404`` for an unknown repository or
   workflow, ``422`` for inputs the workflow does not declare, a missing ref or a workflow
   without a ``workflow_dispatch`` trigger ...) is a :class:`TrainingError` quoting GitHub's
   ``message`` and ``documentation_url``.
2. :meth:`GithubDispatchTrainer.wait_for_version` (its ``wait``) polls the registry until the
   workflow has registered a version of the model (``driftloop models register ... --trigger
   incident:<incident_id>``) that is newer than the latest version at dispatch time and whose
   trigger mentions the dispatch's correlation id; it returns that version, or raises a
   :class:`TrainingError` when ``timeout`` passes first.

The correlation id is the incident id; a dispatch without an incident gets a fresh
``dispatch-<hex>`` id, sent in the ``incident_id`` input (the template workflow then registers
with the trigger ``dispatch:<id>``). Settings come from ``models.<name>.params`` (see
:class:`GithubDispatchParams`); the token is never logged nor shown in errors.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import Field, SecretStr, ValidationError

from driftloop._version import __version__
from driftloop.config import Duration, ModelConfig, StrictModel
from driftloop.errors import BackendUnavailableError, ConfigError, InvalidInputError, TrainingError
from driftloop.objectstore.datasets import Snapshot
from driftloop.registry.model_registry import ModelRegistry
from driftloop.registry.versions import ModelVersion
from driftloop.trainers.remote import RemoteRun, RemoteTrainer, WaitCallback

logger = logging.getLogger("driftloop.trainers.github_dispatch")

GITHUB_API_VERSION = "2022-11-28"
DEFAULT_WORKFLOW = "driftloop-train.yml"
DISPATCH_PREFIX = "dispatch-"
WORKFLOW_INPUTS = ("incident_id", "dataset_snapshot", "callback_url", "model")
_CORRELATION_ID = re.compile(r"^\S{1,200}$")

_HINTS: dict[int, str] = {
    401: "the token is invalid or expired (models.<name>.params.token)",
    403: "the token may not dispatch workflows in this repository (it needs the 'actions: "
    "write' permission), or the API rate limit is exhausted",
    404: "check models.<name>.params.repo and .workflow (the workflow's file name or id), and "
    "that the token can see the repository",
    422: "check that the workflow at that ref has a workflow_dispatch trigger declaring the "
    f"inputs {', '.join(WORKFLOW_INPUTS)}, and that the ref exists",
}


class GithubDispatchParams(StrictModel):
    """``models.<name>.params`` of the ``github_dispatch`` trainer."""

    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", description="owner/name")
    workflow: str = Field(DEFAULT_WORKFLOW, min_length=1, description="file name or id")
    ref: str = Field("main", min_length=1, description="branch or tag to run the workflow on")
    token: SecretStr = Field(description="a token allowed to dispatch workflows")
    timeout: Duration = Field(7200.0, gt=0, description="how long to wait for the new version")
    poll_interval: Duration = Field(15.0, gt=0, description="how often to look for it")
    request_timeout: Duration = Field(30.0, gt=0, description="timeout of the HTTP request")
    api_url: str = Field("https://api.github.com", description="GitHub (Enterprise) API base")


@dataclass(frozen=True)
class WorkflowDispatch:
    """A dispatched workflow run that driftloop waits on; JSON-ready (:meth:`to_dict`) so a
    pipeline can record it and, after a restart, wait again without dispatching twice."""

    model_name: str
    correlation_id: str
    incident_id: str | None
    inputs: dict[str, str]
    baseline_version: int
    dispatched_at: float
    repo: str
    workflow: str
    ref: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkflowDispatch:
        return cls(
            model_name=str(data["model_name"]),
            correlation_id=str(data["correlation_id"]),
            incident_id=None if data.get("incident_id") is None else str(data["incident_id"]),
            inputs={str(k): str(v) for k, v in dict(data["inputs"]).items()},
            baseline_version=int(data["baseline_version"]),
            dispatched_at=float(data["dispatched_at"]),
            repo=str(data["repo"]),
            workflow=str(data["workflow"]),
            ref=str(data["ref"]),
        )


def trigger_mentions(trigger: str, token: str) -> bool:
    """True when ``token`` appears in ``trigger`` as a whole id (``incident:abc-1`` mentions
    ``abc-1`` but not ``abc``)."""
    pattern = rf"(?<![A-Za-z0-9_.-]){re.escape(token)}(?![A-Za-z0-9_.-])"
    return re.search(pattern, trigger) is not None


def workflow_page(api_url: str, repo: str, workflow: str) -> str | None:
    """The workflow's page on the GitHub website, for messages (None for unknown hosts)."""
    parts = urlsplit(api_url)
    if parts.hostname == "api.github.com":
        web = "https://github.com"
    elif parts.path.rstrip("/").endswith("/api/v3"):  # GitHub Enterprise Server
        web = f"{parts.scheme}://{parts.netloc}"
    else:
        return None
    return f"{web}/{repo}/actions/workflows/{quote(workflow, safe='')}"


def describe_github_error(response: httpx.Response) -> str:
    """GitHub's error body (``{"message": ..., "documentation_url": ...}``) in one line."""
    try:
        body: Any = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:300] if text else "(empty body)"
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        message: str = body["message"]
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            message += " (" + "; ".join(str(e) for e in errors)[:300] + ")"
        documentation = body.get("documentation_url")
        if isinstance(documentation, str):
            message += f"; see {documentation}"
        return message
    return response.text.strip()[:300]


class GithubDispatchTrainer(RemoteTrainer):
    """Runs the training in a GitHub Actions workflow and waits for the version it registers."""

    name: ClassVar[str] = "github_dispatch"

    def __init__(
        self,
        params: GithubDispatchParams,
        registry: ModelRegistry,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not params.token.get_secret_value().strip():
            raise ConfigError(
                "the github_dispatch trainer's token is empty: set models.<name>.params.token "
                "(e.g. token: ${GITHUB_TOKEN}) and the variable it names"
            )
        self.params = params
        self.registry = registry
        self.clock = clock
        self.sleep = sleep
        self.url = (
            f"{params.api_url.rstrip('/')}/repos/{params.repo}/actions/workflows/"
            f"{quote(params.workflow, safe='')}/dispatches"
        )

    @classmethod
    def from_model_config(
        cls,
        model_config: ModelConfig,
        registry: ModelRegistry,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> GithubDispatchTrainer:
        try:
            params = GithubDispatchParams.model_validate(model_config.params)
        except ValidationError as exc:
            problems = "; ".join(
                f"params.{'.'.join(str(p) for p in e['loc']) or ''}: "
                f"{'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
                for e in exc.errors()
            )
            raise ConfigError(f"github_dispatch trainer: {problems}") from None
        return cls(params, registry, clock=clock, sleep=sleep)

    # the two phases of a remote trainer ----------------------------------------------------

    def start(
        self,
        model_name: str,
        *,
        incident_id: str | None,
        snapshot: Snapshot | None,
        callback_url: str | None,
    ) -> RemoteRun:
        dispatch = self.dispatch(
            model_name, incident_id=incident_id, snapshot=snapshot, callback_url=callback_url
        )
        return RemoteRun(
            trainer=self.name,
            snapshot_id=dispatch.inputs["dataset_snapshot"] or None,
            summary=f"dispatched {dispatch.workflow} on {dispatch.repo}@{dispatch.ref} "
            f"(id {dispatch.correlation_id})",
            state=dispatch.to_dict(),
        )

    def wait(self, run: RemoteRun, *, on_wait: WaitCallback | None = None) -> ModelVersion:
        return self.wait_for_version(WorkflowDispatch.from_dict(run.state), on_wait=on_wait)

    # step 1: dispatch ------------------------------------------------------------------------

    def dispatch(
        self,
        model_name: str,
        *,
        incident_id: str | None,
        snapshot: Snapshot | None,
        callback_url: str | None,
    ) -> WorkflowDispatch:
        """Start the workflow; raises :class:`TrainingError` unless GitHub answers 204."""
        if incident_id is not None and not _CORRELATION_ID.match(incident_id):
            raise InvalidInputError(
                f"incident id {incident_id!r} cannot be a workflow input: it must be 1 to 200 "
                "characters without spaces"
            )
        correlation_id = incident_id or f"{DISPATCH_PREFIX}{uuid.uuid4().hex[:16]}"
        versions = self.registry.list_versions(model_name)
        baseline = versions[-1].version if versions else 0
        inputs = {
            "incident_id": correlation_id,
            "dataset_snapshot": "" if snapshot is None else snapshot.snapshot_id,
            "callback_url": callback_url or "",
            "model": model_name,
        }
        dispatched_at = self.clock()
        self._post({"ref": self.params.ref, "inputs": inputs})
        logger.info(
            "dispatched %s on %s@%s for %s (id %s, latest version v%d)",
            self.params.workflow,
            self.params.repo,
            self.params.ref,
            model_name,
            correlation_id,
            baseline,
        )
        return WorkflowDispatch(
            model_name=model_name,
            correlation_id=correlation_id,
            incident_id=incident_id,
            inputs=inputs,
            baseline_version=baseline,
            dispatched_at=dispatched_at,
            repo=self.params.repo,
            workflow=self.params.workflow,
            ref=self.params.ref,
        )

    def _post(self, payload: dict[str, Any]) -> None:
        headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self.params.token.get_secret_value()}",
            "X-GitHub-Api-Version": GITHUB_API_VERSION,
            "User-Agent": f"driftloop/{__version__}",
        }
        what = f"workflow {self.params.workflow!r} of {self.params.repo}@{self.params.ref}"
        try:
            with httpx.Client(timeout=self.params.request_timeout) as client:
                response = client.post(self.url, json=payload, headers=headers)
        except httpx.TimeoutException:
            raise BackendUnavailableError(
                f"GitHub did not answer within {self.params.request_timeout:g}s when "
                f"dispatching {what}"
            ) from None
        except httpx.TransportError as exc:
            raise BackendUnavailableError(
                f"cannot reach GitHub at {self.params.api_url} to dispatch {what}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if response.status_code == 204:
            return
        detail = describe_github_error(response)
        message = f"GitHub refused to dispatch {what}: {response.status_code}: {detail}"
        hint = _HINTS.get(response.status_code)
        if hint:
            message += f" ({hint})"
        if response.status_code >= 500:
            raise BackendUnavailableError(message)
        raise TrainingError(message)

    # step 2: wait ----------------------------------------------------------------------------

    def find_version(self, dispatch: WorkflowDispatch) -> ModelVersion | None:
        """The newest version registered for ``dispatch`` so far, if any."""
        matches = [
            version
            for version in self.registry.list_versions(dispatch.model_name)
            if version.version > dispatch.baseline_version
            and trigger_mentions(version.trigger, dispatch.correlation_id)
        ]
        return matches[-1] if matches else None

    def wait_for_version(
        self, dispatch: WorkflowDispatch, *, on_wait: WaitCallback | None = None
    ) -> ModelVersion:
        """Poll the registry until the workflow registers the version; the deadline is
        ``dispatched_at + timeout``, so waiting again after a restart keeps it."""
        deadline = dispatch.dispatched_at + self.params.timeout
        while True:
            try:
                found = self.find_version(dispatch)
            except BackendUnavailableError as exc:  # a store blip must not end a long wait
                logger.warning("looking for %s's new version: %s", dispatch.model_name, exc)
                found = None
            if found is not None:
                logger.info(
                    "workflow %s registered %s v%d", dispatch.workflow, found.name, found.version
                )
                return found
            now = self.clock()
            if now >= deadline:
                raise TrainingError(self._timeout_message(dispatch))
            if on_wait is not None:
                on_wait(now - dispatch.dispatched_at)
            self.sleep(min(self.params.poll_interval, deadline - now))

    def _timeout_message(self, dispatch: WorkflowDispatch) -> str:
        page = workflow_page(self.params.api_url, dispatch.repo, dispatch.workflow)
        return (
            f"workflow {dispatch.workflow!r} of {dispatch.repo}@{dispatch.ref} registered no "
            f"new version of {dispatch.model_name!r} with a trigger mentioning "
            f"{dispatch.correlation_id} within {self.params.timeout:g}s (newer than "
            f"v{dispatch.baseline_version}); "
            + (f"see its runs at {page}" if page else "check the workflow's runs")
        )

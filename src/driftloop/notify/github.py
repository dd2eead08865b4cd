"""GitHub Actions ``workflow_dispatch``: start a workflow (a retrain on a GPU runner, say) with
the incident id among its inputs.

``POST {api_url}/repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches`` with
``{"ref": ..., "inputs": {...}}``; GitHub answers 204 No Content.
"""

from __future__ import annotations

from urllib.parse import quote

from driftloop.config import GithubDispatchNotifierConfig
from driftloop.notify.base import DeliveryResult, Notification, Notifier
from driftloop.notify.http_requests import HttpSender
from driftloop.notify.variables import notification_variables, render_text

GITHUB_API_VERSION = "2022-11-28"


class GithubDispatchNotifier(Notifier):
    def __init__(
        self,
        config: GithubDispatchNotifierConfig,
        *,
        name: str = "github_dispatch",
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.config = config
        self.url = (
            f"{config.api_url.rstrip('/')}/repos/{config.repo}/actions/workflows/"
            f"{quote(config.workflow, safe='')}/dispatches"
        )
        self._headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {config.token}",
            "X-GitHub-Api-Version": GITHUB_API_VERSION,
        }
        self._http = HttpSender(timeout=timeout, service="GitHub")

    def inputs(self, notification: Notification) -> dict[str, str]:
        """The workflow inputs: the configured ones rendered, plus ``incident_id``."""
        variables = notification_variables(notification)
        rendered = {key: render_text(value, variables) for key, value in self.config.inputs.items()}
        rendered.setdefault("incident_id", notification.incident_id or notification.event_id)
        return rendered

    def send(self, notification: Notification) -> DeliveryResult:
        payload = {"ref": self.config.ref, "inputs": self.inputs(notification)}
        response = self._http.request("POST", self.url, json=payload, headers=self._headers)
        if isinstance(response, DeliveryResult):
            return response
        if response.status_code in {200, 204}:
            return DeliveryResult.delivered(
                http_status=response.status_code,
                detail=f"dispatched {self.config.workflow} on {self.config.repo}@{self.config.ref}",
            )
        return self._http.failure(response, f"dispatching {self.config.workflow}")

    def close(self) -> None:
        self._http.close()

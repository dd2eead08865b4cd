"""Jira (REST API v2 or v3): one issue per incident.

The first notification of an incident creates the issue (project, issue type, summary,
description with the incident timeline, labels); later ones, and the outcome of its retrain job
(rejected, failed, rolled back, succeeded), comment on it; a recovery comments
and, when ``resolve_transition`` is set, moves the issue through that transition. The incident →
issue link lives in the ``notify_jira_issues`` table, so it survives restarts.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as SqlIntegrityError

from driftloop.config import JiraNotifierConfig
from driftloop.database.core import Database
from driftloop.messages import format_value
from driftloop.monitors.events import MonitorState
from driftloop.notify.base import DeliveryResult, Notification, Notifier, format_time
from driftloop.notify.http_requests import HttpSender
from driftloop.notify.tables import notify_jira_issues

SUMMARY_LIMIT = 255


@dataclass(frozen=True)
class JiraIssueLink:
    incident_key: str
    issue_id: str
    issue_key: str
    issue_url: str
    resolved_at: float | None


def _text(text: str, *marks: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "text", "text": text or " "}
    if marks:
        node["marks"] = list(marks)
    return node


def _paragraph(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"type": "paragraph", "content": list(nodes)}


def timeline_lines(notification: Notification) -> list[str]:
    return [
        f"{format_time(e.timestamp)}  {e.previous} → {e.state}  value {format_value(e.value)}"
        + (f"  {e.message.splitlines()[0]}" if e.message else "")
        for e in notification.timeline
    ]


def facts(notification: Notification) -> list[tuple[str, str]]:
    event = notification.event
    return [
        ("Monitor", event.monitor),
        ("Model", event.model or "-"),
        ("State", f"{event.previous} → {event.state}"),
        ("Value", notification.value_text),
        ("Thresholds", notification.thresholds.describe()),
        ("Incident", event.incident_id or "-"),
    ]


def wiki_description(notification: Notification) -> str:
    """Jira wiki markup for API v2."""
    lines = [notification.text or notification.title, ""]
    lines += [f"*{name}:* {value}" for name, value in facts(notification)]
    lines += [f"*Dashboard:* [{notification.dashboard_url}]", "", "h3. Incident timeline"]
    lines += [f"* {line}" for line in timeline_lines(notification)]
    return "\n".join(lines)


def adf_description(notification: Notification) -> dict[str, Any]:
    """An Atlassian Document Format document for API v3."""
    content: list[dict[str, Any]] = [
        _paragraph(_text(line)) for line in (notification.text or notification.title).splitlines()
    ]
    for name, value in facts(notification):
        content.append(_paragraph(_text(f"{name}: ", {"type": "strong"}), _text(value)))
    content.append(
        _paragraph(
            _text(
                "Open the dashboard",
                {"type": "link", "attrs": {"href": notification.dashboard_url}},
            )
        )
    )
    content.append(
        {"type": "heading", "attrs": {"level": 3}, "content": [_text("Incident timeline")]}
    )
    content.append(
        {
            "type": "bulletList",
            "content": [
                {"type": "listItem", "content": [_paragraph(_text(line))]}
                for line in timeline_lines(notification)
            ],
        }
    )
    return {"type": "doc", "version": 1, "content": content}


def comment_text(notification: Notification) -> str:
    event = notification.event
    head = (
        f"{notification.title}: {event.previous} → {event.state} at "
        f"{format_time(event.timestamp)}, value {notification.value_text}"
    )
    if notification.retrain_outcome is not None:
        head = f"{notification.title} at {format_time(event.timestamp)}"
    return f"{head}\n{notification.text}" if notification.text else head


class JiraNotifier(Notifier):
    def __init__(
        self,
        config: JiraNotifierConfig,
        *,
        name: str = "jira",
        database: Database,
        clock: Callable[[], float] = time.time,
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.config = config
        self._database_engine = database.engine
        self._clock = clock
        self._api = f"{config.url.rstrip('/')}/rest/api/{config.api_version}"
        if config.email:
            pair = f"{config.email}:{config.token}".encode()
            authorization = "Basic " + base64.b64encode(pair).decode("ascii")
        else:
            authorization = f"Bearer {config.token}"
        self._headers = {
            "Authorization": authorization,
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        self._http = HttpSender(timeout=timeout, service="Jira")

    # -- the incident → issue link -------------------------------------------------------

    def issue_for(self, incident_key: str) -> JiraIssueLink | None:
        table = notify_jira_issues
        with self._database_engine.connect() as connection:
            row = (
                connection.execute(
                    sa.select(table).where(
                        table.c.notifier == self.name, table.c.incident_key == incident_key
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        return JiraIssueLink(
            row["incident_key"],
            row["issue_id"],
            row["issue_key"],
            row["issue_url"],
            row["resolved_at"],
        )

    def _remember(self, incident_key: str, issue: dict[str, Any]) -> None:
        try:
            with self._database_engine.begin() as connection:
                connection.execute(
                    notify_jira_issues.insert().values(
                        notifier=self.name,
                        incident_key=incident_key,
                        issue_id=str(issue["id"]),
                        issue_key=str(issue["key"]),
                        issue_url=str(issue.get("self", "")),
                        created_at=self._clock(),
                        resolved_at=None,
                    )
                )
        except SqlIntegrityError:
            pass

    def _mark_resolved(self, incident_key: str) -> None:
        table = notify_jira_issues
        with self._database_engine.begin() as connection:
            connection.execute(
                table.update()
                .where(table.c.notifier == self.name, table.c.incident_key == incident_key)
                .values(resolved_at=self._clock())
            )

    # -- sending ---------------------------------------------------------------------------

    def send(self, notification: Notification) -> DeliveryResult:
        key = notification.incident_id or f"event:{notification.event_id}"
        link = self.issue_for(key)
        if link is None:
            if notification.retrain_outcome is not None:
                return DeliveryResult(
                    "skipped",
                    detail="retrain outcome of an incident "
                    "without a Jira issue: nothing to comment on",
                )
            if notification.state == MonitorState.OK:
                return DeliveryResult(
                    "skipped",
                    detail="recovery of an incident without a Jira issue: nothing to update",
                )
            return self._create(notification, key)
        if (
            notification.event.is_recovery
            and self.config.resolve_transition
            and link.resolved_at is None
        ):
            moved = self._transition(link, self.config.resolve_transition)
            if moved is not None:
                return moved
            self._mark_resolved(key)
        return self._comment(link, notification)

    def _create(self, notification: Notification, key: str) -> DeliveryResult:
        summary = " ".join(notification.title.split())[:SUMMARY_LIMIT]
        description: Any = (
            adf_description(notification)
            if self.config.api_version == 3
            else wiki_description(notification)
        )
        fields = {
            "project": {"key": self.config.project},
            "issuetype": {"name": self.config.issue_type},
            "summary": summary,
            "description": description,
            "labels": ["-".join(label.split()) for label in self.config.labels],
        }
        response = self._http.request(
            "POST", f"{self._api}/issue", json={"fields": fields}, headers=self._headers
        )
        if isinstance(response, DeliveryResult):
            return response
        if response.status_code != 201:
            return self._http.failure(response, "creating the Jira issue")
        issue = _json_object(response)
        if not {"id", "key"} <= issue.keys():
            return DeliveryResult.failed(
                "Jira created the issue but answered without id/key", http_status=201
            )
        self._remember(key, issue)
        return DeliveryResult.delivered(http_status=201, detail=f"created {issue['key']}")

    def _comment(self, link: JiraIssueLink, notification: Notification) -> DeliveryResult:
        text = comment_text(notification)
        body: Any = (
            {
                "type": "doc",
                "version": 1,
                "content": [_paragraph(_text(line)) for line in text.splitlines()],
            }
            if self.config.api_version == 3
            else text
        )
        response = self._http.request(
            "POST",
            f"{self._api}/issue/{link.issue_key}/comment",
            json={"body": body},
            headers=self._headers,
        )
        if isinstance(response, DeliveryResult):
            return response
        if response.status_code != 201:
            return self._http.failure(response, f"commenting on {link.issue_key}")
        resolved = (
            " and resolved"
            if (notification.event.is_recovery and self.config.resolve_transition)
            else ""
        )
        return DeliveryResult.delivered(
            http_status=201, detail=f"commented on {link.issue_key}{resolved}"
        )

    def _transition(self, link: JiraIssueLink, wanted: str) -> DeliveryResult | None:
        """Apply the transition; ``None`` when done, else why not."""
        url = f"{self._api}/issue/{link.issue_key}/transitions"
        listed = self._http.request("GET", url, headers=self._headers)
        if isinstance(listed, DeliveryResult):
            return listed
        if listed.status_code != 200:
            return self._http.failure(listed, f"listing transitions of {link.issue_key}")
        transitions = _json_object(listed).get("transitions", [])
        chosen = None
        for transition in transitions if isinstance(transitions, list) else []:
            target = transition.get("to", {}) if isinstance(transition, dict) else {}
            names = {
                str(transition.get("id", "")),
                str(transition.get("name", "")).lower(),
                str(target.get("name", "")).lower() if isinstance(target, dict) else "",
            }
            if wanted.lower() in names or wanted in names:
                chosen = transition
                break
        if chosen is None:
            available = sorted(str(t.get("name")) for t in transitions if isinstance(t, dict))
            return DeliveryResult.failed(
                f"{link.issue_key} has no transition {wanted!r}; available: {available}",
                http_status=200,
            )
        moved = self._http.request(
            "POST", url, json={"transition": {"id": str(chosen["id"])}}, headers=self._headers
        )
        if isinstance(moved, DeliveryResult):
            return moved
        if moved.status_code != 204:
            return self._http.failure(moved, f"transitioning {link.issue_key}")
        return None

    def close(self) -> None:
        self._http.close()


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}

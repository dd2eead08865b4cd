"""``{{variable}}`` substitution for webhook payloads and GitHub dispatch inputs.

The variables are those of monitor messages (``{{monitor}}``, ``{{model}}``, ``{{value}}`` ...)
plus every tag of the event's group. Values are inserted literally: nothing is evaluated, and a
JSON string that is exactly one placeholder takes the variable's JSON type (number, bool, null).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from driftloop.monitors.outcomes import GATE_METRICS, gate_metric_values
from driftloop.notify.base import Notification, format_time

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")
_WHOLE = re.compile(r"^\s*\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}\s*$")

Scalar = str | int | float | bool | None

VARIABLES: dict[str, str] = {
    "monitor": "monitor name",
    "model": "model of the group (empty when the monitor is not grouped by model)",
    "state": "new state: OK, WARN, ALERT or NO_DATA",
    "previous_state": "state before this transition",
    "previous": "old name of previous_state",
    "value": "the aggregated value (number, or null without data)",
    "threshold": "the threshold that was crossed (number or null)",
    "warning": "the warning threshold (number or null)",
    "critical": "the critical threshold (number or null)",
    "incident_id": "incident the event belongs to (empty when none)",
    "event_id": "unique id of the event",
    "timestamp": "time of the event, ISO 8601 UTC",
    "title": "one-line summary, e.g. [ALERT] confidence on review-classifier",
    "message": "the rendered monitor message without @mentions",
    "dashboard_url": "link to the driftloop dashboard",
    "group": "the group as tag:value pairs joined by commas",
    "is_alert": "true when the new state is ALERT",
    "is_warning": "true when the new state is WARN",
    "is_no_data": "true when the new state is NO_DATA",
    "is_ok": "true when the new state is OK",
    "is_recovery": "true when the monitor went back to OK from WARN or ALERT",
    "is_alert_recovery": "true when the monitor went from ALERT to OK",
    "is_warning_recovery": "true when the monitor went from WARN to OK",
    "is_no_data_recovery": "true when data came back after NO_DATA",
    "is_renotify": "true for a renotification of an unchanged state",
    "is_retired": "true for the OK that closes the group of a version no longer served",
    "renotification": "old name of is_renotify",
    "test": "true for 'driftloop notify test'",
    "retrain_outcome": "how the incident's retrain job ended: rejected, failed, rolled_back, "
    "succeeded (empty for a transition)",
    "job_id": "the retrain job (retrain outcomes)",
    "job_url": "link to the retrain job, /v1/jobs/<id> (retrain outcomes)",
    "candidate_version": "the version the job trained (retrain outcomes; null when none)",
    "previous_version": "the production version before the job (retrain outcomes)",
    "gate": "the quality gate's decision: candidate and production evaluations, reasons, "
    "held-out rows, as JSON (retrain outcomes)",
    "error": "why the job failed or rolled back (retrain outcomes)",
    **{
        f"{side}_{metric}": f"the {side}'s {metric} on the gate's held-out rows (retrain "
        "outcomes; null when the gate has none, e.g. mae for a classifier)"
        for metric in GATE_METRICS
        for side in ("candidate", "production")
    },
}
"""Every fixed variable and what it holds; the group's tags come on top."""


def notification_variables(notification: Notification) -> dict[str, Scalar]:
    event = notification.event
    variables: dict[str, Scalar] = {str(k): str(v) for k, v in event.group.items()}
    variables.update(
        {
            "monitor": event.monitor,
            "model": event.model or "",
            "state": str(event.state),
            "previous_state": str(event.previous),
            "previous": str(event.previous),
            "value": event.value,
            "threshold": event.threshold,
            "warning": notification.thresholds.warning,
            "critical": notification.thresholds.critical,
            "incident_id": event.incident_id or "",
            "event_id": event.event_id,
            "timestamp": format_time(event.timestamp),
            "title": notification.title,
            "message": notification.text,
            "dashboard_url": notification.dashboard_url,
            "group": ",".join(f"{k}:{v}" for k, v in sorted(event.group.items())),
            **event.flags,
            "renotification": event.renotification,
            "test": notification.test,
        }
    )
    details = event.details
    variables.update(
        {
            "retrain_outcome": notification.retrain_outcome or "",
            "job_id": str(details.get("job_id") or ""),
            "job_url": str(details.get("job_url") or ""),
            "candidate_version": _integer(details.get("candidate_version")),
            "previous_version": _integer(details.get("previous_version")),
            "gate": json.dumps(details["gate"], sort_keys=True) if details.get("gate") else "",
            "error": str(details.get("error") or ""),
            **gate_metric_values(details.get("gate") or {}),
        }
    )
    return variables


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_text(value: Scalar) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def render_text(template: str, variables: Mapping[str, Scalar]) -> str:
    """Replace each ``{{name}}``; unknown names become empty, as in monitor messages."""
    return _PLACEHOLDER.sub(lambda m: as_text(variables.get(m.group(1))), template)


def render_payload(template: Any, variables: Mapping[str, Scalar]) -> Any:
    """Render every string (keys included) of a JSON-like template."""
    if isinstance(template, str):
        whole = _WHOLE.match(template)
        if whole:
            return variables.get(whole.group(1))
        return render_text(template, variables)
    if isinstance(template, Mapping):
        return {
            render_text(str(k), variables): render_payload(v, variables)
            for k, v in template.items()
        }
    if isinstance(template, list | tuple):
        return [render_payload(item, variables) for item in template]
    return template


def template_names(template: Any) -> set[str]:
    """The variable names a template uses."""
    if isinstance(template, str):
        return set(_PLACEHOLDER.findall(template))
    if isinstance(template, Mapping):
        names: set[str] = set()
        for key, value in template.items():
            names |= template_names(str(key)) | template_names(value)
        return names
    if isinstance(template, list | tuple):
        return set().union(*(template_names(item) for item in template))
    return set()


def unknown_names(template: Any, tags: Iterable[str]) -> list[str]:
    """Names used by a template that are neither fixed variables nor group tags."""
    known = set(VARIABLES) | set(tags)
    return sorted(template_names(template) - known)

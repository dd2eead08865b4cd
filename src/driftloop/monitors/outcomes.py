"""Retrain outcomes as monitor events: a gate rejection, a failed training, a rollback and a
success are routed like transitions, through the handles of the monitor whose incident started
the job (``@retrain`` excepted: an outcome never starts another job).

The handles are those the monitor's message mentions for the incident's state (its
``{{#is_alert}}`` sections for an ALERT incident, say) or for the outcome's own sections. The
text is the message rendered with the outcome's flags alone (the state's sections left out) and
its variables: ``{{#is_rejected}}Rejected: macro-F1 {{candidate_macro_f1}} vs
{{production_macro_f1}} ({{job_url}}){{/is_rejected}}`` (a regression model's gate gives
``{{candidate_rmse}}``, ``{{candidate_mae}}`` ... instead); where the message has no section for
this outcome, a sentence says what happened instead. An incident that no monitor opened (an
inbound alert) has no handles: its outcomes go to the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from driftloop.messages import MessageTemplate
from driftloop.monitors.events import Event, MonitorState
from driftloop.monitors.incidents import Incident, IncidentStatus

Outcome = Literal["rejected", "failed", "rolled_back", "succeeded"]

OUTCOME_FLAGS: dict[Outcome, str] = {
    "rejected": "is_rejected",
    "failed": "is_failed",
    "rolled_back": "is_rolled_back",
    "succeeded": "is_retrained",
}
"""The section flag of each outcome; ``is_retrain_outcome`` is set for all of them."""

GATE_METRICS: tuple[str, ...] = ("macro_f1", "accuracy", "mae", "rmse", "r2")
"""The gate's numbers an outcome names as ``candidate_<metric>`` and ``production_<metric>``: a
classifier's macro-F1 and accuracy, a regression model's MAE, RMSE and R² (empty for the other
kind)."""


def gate_metric_values(gate: Mapping[str, Any]) -> dict[str, float | None]:
    """``candidate_<metric>`` and ``production_<metric>`` of each of :data:`GATE_METRICS` from
    a gate decision (``GateDecision.to_dict()``); None where the evaluation lacks it."""
    values: dict[str, float | None] = {}
    for side in ("candidate", "production"):
        evaluation = gate.get(side) or {}
        for metric in GATE_METRICS:
            value = evaluation.get(metric)
            if isinstance(value, bool) or not isinstance(value, int | float):
                value = None
            values[f"{side}_{metric}"] = None if value is None else float(value)
    return values


OUTCOME_VARIABLES: tuple[str, ...] = (
    "outcome",
    "job_id",
    "job_url",
    "candidate_version",
    "previous_version",
    *(f"{side}_{metric}" for metric in GATE_METRICS for side in ("candidate", "production")),
    "holdout_rows",
    "gate_reasons",
    "error",
)
"""The variables an outcome adds to the monitor message's."""

RETRAIN_OUTCOME = "retrain_outcome"
"""The ``details`` key of an outcome event (its value: the outcome)."""

_LABELS: dict[Outcome, str] = {
    "rejected": "candidate rejected by the gate",
    "failed": "retrain failed",
    "rolled_back": "rolled back",
    "succeeded": "retrained and deployed",
}


def _number(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else ""


@dataclass(frozen=True)
class RetrainOutcome:
    """How one retrain job ended, with the gate's numbers."""

    outcome: Outcome
    job_id: str
    model: str
    incident_id: str
    job_url: str
    candidate_version: int | None = None
    previous_version: int | None = None
    error: str | None = None
    gate: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return _LABELS[self.outcome]

    def variables(self) -> dict[str, str]:
        return {
            "outcome": self.outcome,
            "job_id": self.job_id,
            "job_url": self.job_url,
            "candidate_version": ""
            if self.candidate_version is None
            else str(self.candidate_version),
            "previous_version": "" if self.previous_version is None else str(self.previous_version),
            **{name: _number(value) for name, value in gate_metric_values(self.gate).items()},
            "holdout_rows": str(self.gate.get("holdout_rows", "")),
            "gate_reasons": "; ".join(str(r) for r in self.gate.get("reasons", ())),
            "error": self.error or "",
        }

    def sentence(self) -> str:
        """What happened, in one sentence with the link to the job."""
        values = self.variables()
        text = f"Retrain of {self.model}: {self.label}"
        if self.outcome == "rejected" and (headline := _headline(values)):
            text += f" ({headline} on {values['holdout_rows']} held-out rows)"
        elif self.outcome == "succeeded" and self.candidate_version is not None:
            text += f": v{self.candidate_version} serves"
        elif self.outcome == "rolled_back" and self.previous_version is not None:
            text += f" to v{self.previous_version}"
        if self.error and self.outcome in {"failed", "rolled_back"}:
            text += f": {self.error}"
        return f"{text}. Job {self.job_id[:8]}: {self.job_url}"

    def details(self) -> dict[str, Any]:
        return {
            RETRAIN_OUTCOME: self.outcome,
            "job_id": self.job_id,
            "job_url": self.job_url,
            "candidate_version": self.candidate_version,
            "previous_version": self.previous_version,
            "error": self.error,
            "gate": dict(self.gate),
        }


def _headline(values: Mapping[str, str]) -> str:
    """The gate's main numbers: macro-F1 for a classifier, RMSE and MAE for a regression model;
    empty when the gate recorded none."""
    names = {"macro_f1": "macro-F1", "rmse": "RMSE", "mae": "MAE"}
    shown = ("rmse", "mae") if values["candidate_rmse"] else ("macro_f1",)
    parts = []
    for metric in shown:
        if values[f"candidate_{metric}"]:
            part = f"{names[metric]} {values[f'candidate_{metric}']}"
            if values[f"production_{metric}"]:
                part += f" vs production {values[f'production_{metric}']}"
            parts.append(part)
    return ", ".join(parts)


def outcome_event(
    outcome: RetrainOutcome,
    incident: Incident,
    template: MessageTemplate | None,
    *,
    now: float,
    excluded_handles: Collection[str] = ("retrain",),
) -> Event:
    """The event that tells the incident's handles how its retrain job ended."""
    known = {member.value for member in MonitorState}
    state = (
        MonitorState(incident.severity)
        if incident.status == IncidentStatus.OPEN and incident.severity in known
        else MonitorState.OK
    )
    handles: tuple[str, ...] = ()
    message = outcome.sentence()
    if template is not None:
        flags = {"is_retrain_outcome": True, OUTCOME_FLAGS[outcome.outcome]: True}
        state_flags = {
            "is_alert": state == MonitorState.ALERT,
            "is_warning": state == MonitorState.WARN,
            "is_ok": state == MonitorState.OK,
        }
        variables = {
            **incident.group,
            "monitor": incident.monitor or "",
            "model": outcome.model,
            "state": str(state),
            "incident_id": incident.incident_id,
            **outcome.variables(),
        }
        # routed where the incident's state routes; worded by the outcome's own sections
        routed = template.render(variables, {**state_flags, **flags})
        handles = tuple(h for h in routed.handles if h not in excluded_handles)
        if any(flag in template.source for flag in flags):  # a section for this outcome
            message = template.render(variables, flags).text or message
    digest = hashlib.sha256(f"{outcome.job_id}\n{outcome.outcome}".encode()).hexdigest()[:24]
    return Event(
        event_id=f"evt-retrain-{digest}",
        monitor=incident.monitor or f"{incident.source} alert",
        group=dict(incident.group) or {"model": outcome.model},
        previous=state,
        state=state,
        value=None,
        threshold=None,
        timestamp=now,
        incident_id=incident.incident_id,
        message=message,
        handles=handles,
        details=outcome.details(),
    )


__all__ = [
    "GATE_METRICS",
    "OUTCOME_FLAGS",
    "OUTCOME_VARIABLES",
    "RETRAIN_OUTCOME",
    "Outcome",
    "RetrainOutcome",
    "gate_metric_values",
    "outcome_event",
]

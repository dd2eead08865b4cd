"""What the dashboard and the report show, as typed records, and the :class:`DashboardData`
protocol that supplies them.

The router and the report generator depend only on this protocol; :class:`StoreDashboardData`
(in :mod:`driftloop.dashboard.sources`) implements it on the real components (metric store,
monitor tables, registry, retrain job queue, notification log).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from driftloop.monitors.timeline import TimelineEntry as TimelineEntry  # the one timeline type
from driftloop.timestamps import iso_utc

ActivityKind = Literal[
    "state_change",
    "notification",
    "incident_opened",
    "incident_resolved",
    "incident_entry",
    "job",
    "job_step",
    "deploy",
]

MarkKind = Literal["incident", "recovery", "deploy", "state"]


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """A model the dashboard knows, with what serves it now and its worst monitor state."""

    name: str
    production_version: int | None
    aliases: dict[str, int]
    worst_state: str
    """``OK``, ``WARN``, ``ALERT`` or ``NO_DATA`` (``NO_DATA`` too when nothing monitors it)."""
    open_incidents: int


@dataclass(frozen=True, slots=True)
class MonitorStatus:
    """The current state of one monitor for one group (``model=review-classifier``)."""

    monitor: str
    group: dict[str, str]
    state: str
    since: float
    value: float | None
    threshold: float | None
    last_evaluated: float | None
    incident_id: str | None

    @property
    def model(self) -> str | None:
        return self.group.get("model")


@dataclass(frozen=True, slots=True)
class ChartPoint:
    """One bucket of a chart: the average and the minimum of the metric in it."""

    timestamp: float
    avg: float
    min: float
    max: float
    count: int


@dataclass(frozen=True, slots=True)
class ChartMark:
    """A vertical mark on a chart's time axis (an incident opened, a deploy ...)."""

    timestamp: float
    kind: MarkKind
    label: str


@dataclass(frozen=True, slots=True)
class MetricChart:
    """A monitored metric of one model over a time range, with the monitor's thresholds."""

    monitor: str
    metric: str
    aggregation: str
    direction: Literal["below", "above", "none"]
    warning: float | None
    critical: float | None
    state: str
    step: float
    points: list[ChartPoint]
    marks: list[ChartMark]


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """An incident with its full timeline, oldest entry first."""

    incident_id: str
    model: str | None
    monitor: str | None
    title: str
    status: str
    severity: str
    opened_at: float
    resolved_at: float | None
    timeline: list[TimelineEntry]
    heading: str = ""
    """What the page shows as its name: the monitor and group of a monitor's incident (its
    stored title names the state it opened with, which an escalation leaves behind), else the
    title."""
    opened_as: str | None = None
    """The state a monitor's incident opened with (``WARN``), when it differs from
    :attr:`severity`, the worst it reached since (``ALERT``)."""
    job_ids: list[str] = field(default_factory=list)
    """The retrain jobs this incident asked for, newest first."""


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """A registered model version with its held-out metrics and the aliases pointing at it."""

    version: int
    content_hash: str
    trainer: str
    trigger: str
    created_at: float
    deployed_at: float | None
    accuracy: float | None
    macro_f1: float | None
    ece: float | None
    aliases: list[str]
    status: str = "registered"
    """``production``, ``rolled back``, ``rejected`` (by the retrain gate), ``retired`` (served
    production once, replaced since) or ``registered`` (never served)."""
    status_at: float | None = None
    """When it was rolled back, rejected or replaced."""
    status_reason: str | None = None
    """Why it was rolled back or rejected (the retrain job's error)."""
    job_id: str | None = None
    """The retrain job that trained it."""
    training_code: str = ""
    """The training code that made it (:attr:`ModelVersion.training_code`), if recorded."""


@dataclass(frozen=True, slots=True)
class JobStepRecord:
    step: str
    started_at: float
    finished_at: float | None
    outcome: str | None
    log: str


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A retrain job and its steps with their logs."""

    job_id: str
    model: str
    state: str
    incident_id: str | None
    trigger: str
    reason: str
    candidate_version: int | None
    error: str | None
    created_at: float
    finished_at: float | None
    steps: list[JobStepRecord]


@dataclass(frozen=True, slots=True)
class ActivityEvent:
    """Anything that happened, for the report's ``events.json`` and the charts' marks."""

    timestamp: float
    kind: ActivityKind
    model: str | None
    title: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VersionAccuracy:
    """One version's accuracy on live traffic: the label-free estimate over the last
    ``estimate_window`` seconds, whether it holds (see
    :mod:`driftloop.drift.estimated_accuracy`), and the realized accuracy from feedback labels
    over the last ``realized_window`` seconds, beside its held-out accuracy."""

    version: str
    reference_accuracy: float | None
    estimated: float | None
    estimated_n: int
    estimate_holds: bool | None
    """None when there is nothing to judge (no estimate, or no reference profile)."""
    may_not_hold_because: list[str]
    realized: float | None
    realized_n: int
    estimate_window: float
    realized_window: float


@dataclass(frozen=True, slots=True)
class PanelSeries:
    """One line of a panel: a value per bucket of the panel's time grid (``None``: no data)."""

    label: str
    values: list[float | None]
    version: str | None = None


@dataclass(frozen=True, slots=True)
class ServingPanel:
    """A chart of how the model is served (traffic, latency, errors, confidence per version):
    several series on one time grid, ``start + k * step``."""

    panel: Literal["traffic", "latency", "errors", "versions"]
    title: str
    unit: str
    step: float
    timestamps: list[float]
    series: list[PanelSeries]
    summary: dict[str, float | None] = field(default_factory=dict)
    """Figures over the whole range (``p50``, ``p99`` latency, error ``rate`` ...)."""


@dataclass(frozen=True, slots=True)
class ClassShare:
    """One predicted class's share of the served predictions in the range, beside its share
    in the production version's validation reference."""

    label: str
    count: int
    share: float
    reference_share: float | None


@dataclass(frozen=True, slots=True)
class ModelSnapshot:
    """Everything the dashboard shows for one model over ``[start, end)``."""

    model: str
    start: float
    end: float
    generated_at: float
    summary: ModelSummary
    monitors: list[MonitorStatus]
    charts: list[MetricChart]
    incidents: list[IncidentRecord]
    versions: list[VersionRecord]
    jobs: list[JobRecord]
    accuracy: list[VersionAccuracy] = field(default_factory=list)
    panels: list[ServingPanel] = field(default_factory=list)
    class_mix: list[ClassShare] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The snapshot as the dashboard's JSON: every moment ISO 8601 UTC."""
        converted = iso_moments(asdict(self))
        assert isinstance(converted, dict)
        return converted


class DashboardData(Protocol):
    """Where the dashboard's data comes from."""

    def now(self) -> float:
        """The current unix time (the data source's clock)."""

    def models(self) -> list[ModelSummary]:
        """Every known model, by name."""

    def monitor_states(self, model: str | None = None) -> list[MonitorStatus]:
        """Current states, of every (monitor, group) or of those about ``model``."""

    def charts(self, model: str, start: float, end: float, *, max_points: int) -> list[MetricChart]:
        """One chart per monitor that watches ``model``, at most ``max_points`` buckets each."""

    def incidents(
        self, model: str | None = None, *, since: float | None = None
    ) -> list[IncidentRecord]:
        """Incidents (newest first) still open or opened at or after ``since``."""

    def versions(self, model: str) -> list[VersionRecord]:
        """Registered versions of ``model``, newest first."""

    def jobs(self, model: str | None = None) -> list[JobRecord]:
        """Retrain jobs, newest first, with their steps."""

    def activity(self, model: str | None, start: float, end: float) -> list[ActivityEvent]:
        """Every state change, notification, incident entry, job step and deploy in the range,
        oldest first."""

    def first_activity(self, model: str | None = None) -> float | None:
        """The time of the oldest thing known about ``model`` (points, events, versions)."""

    def accuracy(self, model: str, end: float) -> list[VersionAccuracy]:
        """Estimated and realized accuracy of each version that served ``model`` lately
        (up to ``end``), newest version first."""

    def panels(
        self, model: str, start: float, end: float, *, max_points: int
    ) -> list[ServingPanel]:
        """Traffic, latency, error rate and confidence per version over the range."""

    def class_mix(self, model: str, start: float, end: float) -> list[ClassShare]:
        """The predicted classes' shares in the range, largest first."""


MOMENT_FIELDS = frozenset(
    {
        "now",
        "start",
        "end",
        "generated_at",
        "since",
        "last_evaluated",
        "timestamp",
        "opened_at",
        "resolved_at",
        "created_at",
        "deployed_at",
        "status_at",
        "started_at",
        "finished_at",
    }
)
"""The fields of the records above that hold a moment (seconds since the epoch in Python)."""
_PAYLOADS = frozenset({"data", "details"})
"""Free-form payloads (a timeline entry's data, an activity's details): sent as stored, as the
``/v1`` API sends them."""


def iso_moments(value: Any) -> Any:
    """``value`` (records as :func:`dataclasses.asdict` gives them) with every moment, the
    :data:`MOMENT_FIELDS` and the ``timestamps`` of a panel's grid, as ISO 8601 UTC: the one
    timestamp format of driftloop's JSON (:mod:`driftloop.timestamps`)."""
    if isinstance(value, list):
        return [iso_moments(item) for item in value]
    if not isinstance(value, dict):
        return value
    converted: dict[str, Any] = {}
    for key, item in value.items():
        if key in MOMENT_FIELDS and isinstance(item, int | float) and not isinstance(item, bool):
            converted[key] = iso_utc(item)
        elif key == "timestamps" and isinstance(item, list):
            converted[key] = [iso_utc(moment) for moment in item]
        elif key in _PAYLOADS:
            converted[key] = item
        else:
            converted[key] = iso_moments(item)
    return converted


STATE_ORDER = {"OK": 0, "NO_DATA": 1, "WARN": 2, "ALERT": 3}


def worst_state(states: list[str]) -> str:
    """The most severe of some monitor states; ``NO_DATA`` for none."""
    if not states:
        return "NO_DATA"
    return max(states, key=lambda state: STATE_ORDER.get(state, 0))


def snapshot(
    data: DashboardData, model: str, start: float, end: float, *, max_points: int = 1000
) -> ModelSnapshot:
    """Everything about one model for the page and the report."""
    summaries = {summary.name: summary for summary in data.models()}
    summary = summaries.get(model) or ModelSummary(model, None, {}, "NO_DATA", 0)
    return ModelSnapshot(
        model=model,
        start=start,
        end=end,
        generated_at=data.now(),
        summary=summary,
        monitors=data.monitor_states(model),
        charts=data.charts(model, start, end, max_points=max_points),
        incidents=data.incidents(model, since=start),
        versions=data.versions(model),
        jobs=data.jobs(model),
        accuracy=data.accuracy(model, end),
        panels=data.panels(model, start, end, max_points=max_points),
        class_mix=data.class_mix(model, start, end),
    )

"""What the client sends and what the server answers, as frozen dataclasses (never bare
dicts): a prediction and its result, feedback, model and monitor status, insight points,
predictions logged from elsewhere and uploaded versions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Prediction:
    """One answer of :meth:`Client.predict`: a classifier's ``label``, ``confidence`` and
    ``probabilities``, or a regression model's ``value`` (and ``interval`` when it gives one)."""

    id: str
    """The prediction id, for :meth:`Client.feedback`."""
    label: str | None
    """The most probable class (``"class"`` in the JSON answer); None from a regression model."""
    confidence: float | None
    """The most probable class's probability; None from a regression model."""
    probabilities: dict[str, float]
    """Each class's probability; empty from a regression model."""
    value: float | None = None
    """A regression model's prediction; None from a classifier."""
    interval: tuple[float, float] | None = None
    """A regression model's interval around ``value``, when the model gives one."""


@dataclass(frozen=True)
class PredictResult:
    model: str
    version: int
    predictions: list[Prediction]


@dataclass(frozen=True)
class FeedbackResult:
    accepted: int
    matched: int
    """Labels whose prediction the server found (they count towards realized accuracy)."""
    relabelled: int = 0
    """Labels for predictions labelled before: they replace the stored label."""


@dataclass(frozen=True)
class ModelStatus:
    name: str
    ready: bool
    version: int | None
    content_hash: str | None
    labels: list[str]
    error: str | None
    extra: dict[str, Any] = field(default_factory=dict)
    """Every other field the server sent (load and deploy times, ...)."""


@dataclass(frozen=True)
class MonitorStatus:
    name: str
    type: str
    metric: str
    state: str | None
    """The worst state over the monitor's groups (``OK``, ``WARN``, ``ALERT``, ``NO_DATA``)."""
    error: str | None
    groups: list[dict[str, Any]]


@dataclass(frozen=True)
class InsightPoint:
    """One point for :meth:`Client.report_insights`; ``timestamp`` in unix seconds (default:
    when the server receives it)."""

    name: str
    value: float
    tags: Mapping[str, str] = field(default_factory=dict)
    timestamp: float | None = None
    point_id: str | None = None


@dataclass(frozen=True)
class LoggedPrediction:
    """A prediction made elsewhere, for :meth:`Client.log_predictions`: the client's own
    ``id`` (feedback names it; not 32 lowercase hex digits, the shape of the server's ids), the
    ``input`` it scored (a text, or a record of features) and its output: ``label`` with
    ``confidence`` and/or ``probabilities`` (classification), or ``value`` (regression).
    ``timestamp`` in unix seconds (default: when the server receives it)."""

    id: str
    input: str | Mapping[str, Any] | None = None
    label: str | None = None
    confidence: float | None = None
    probabilities: Mapping[str, float] | None = None
    value: float | None = None
    timestamp: float | None = None


@dataclass(frozen=True)
class LoggedResult:
    accepted: int
    """Predictions logged now."""
    duplicates: int
    """Ids logged before for this model (kept as first logged: a retry is harmless)."""


@dataclass(frozen=True)
class UploadedVersion:
    """A model uploaded with :meth:`Client.upload_version`: the version it was registered as
    and the retrain job that gates, deploys and verifies it."""

    model: str
    version: int
    job_id: str
    attached: bool
    """True: a retrain job waiting for its remote run took it; False: a new job was opened."""

"""The report's PNG plots (matplotlib, Agg): a metric chart as on the dashboard, and the incident
timeline."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from driftloop.dashboard.data import ActivityEvent, IncidentRecord, MetricChart

STATE_COLORS = {"OK": "#2e7d32", "WARN": "#f2a900", "ALERT": "#d62728", "NO_DATA": "#8a8a8a"}
MARK_COLORS = {
    "incident": "#d62728",
    "recovery": "#2e7d32",
    "deploy": "#6a3d9a",
    "state": "#555555",
}
AVG_COLOR = "#1f77b4"
MIN_COLOR = "#7fb3dc"
_lock = threading.Lock()


_DAY = 86400.0


def _when(timestamp: float) -> float:
    """A unix time as a matplotlib date (days since 1970-01-01, matplotlib's default epoch)."""
    return timestamp / _DAY


def plot_chart(chart: MetricChart, path: Path, *, model: str, start: float, end: float) -> Path:
    """A PNG of ``chart``: avg and min per bucket, thresholds dashed, events as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    with _lock:
        figure = Figure(figsize=(10, 3.8), dpi=110)
        axes = figure.add_subplot()
        _draw_series(axes, chart)
        _draw_thresholds(axes, chart)
        _draw_marks(axes, chart)
        _set_time_axis(axes, start, end)
        axes.set_title(
            f"{model} · {chart.monitor} ({chart.aggregation} of {chart.metric}, now {chart.state})",
            fontsize=10,
            loc="left",
        )
        axes.set_xlabel("time (UTC)", fontsize=8)
        axes.grid(alpha=0.25)
        if axes.get_legend_handles_labels()[0]:  # nothing labelled on an empty chart
            axes.legend(loc="lower left", fontsize=7, ncol=4, framealpha=0.8)
        _save(figure, path)
    return path


def _draw_series(axes: Any, chart: MetricChart) -> None:
    """The avg and min lines per bucket, or a note when the range holds no data."""
    times = [_when(p.timestamp) for p in chart.points]
    if chart.points:
        axes.plot(
            times,
            [p.avg for p in chart.points],
            color=AVG_COLOR,
            linewidth=1.8,
            label=f"{chart.metric} avg",
        )
        axes.plot(
            times,
            [p.min for p in chart.points],
            color=MIN_COLOR,
            linewidth=1.0,
            label=f"{chart.metric} min",
        )
    else:
        axes.text(
            0.5,
            0.5,
            "no data in this range",
            transform=axes.transAxes,
            ha="center",
            va="center",
            color="#5f6b76",
        )


def _draw_thresholds(axes: Any, chart: MetricChart) -> None:
    """The warning and critical thresholds as dashed horizontal lines."""
    for level, value in (("warning", chart.warning), ("critical", chart.critical)):
        if value is not None:
            color = STATE_COLORS["WARN" if level == "warning" else "ALERT"]
            axes.axhline(
                value,
                color=color,
                linestyle="--",
                linewidth=1.3,
                label=f"{level} ({value:.3g})",
            )


def _draw_marks(axes: Any, chart: MetricChart) -> None:
    """Incidents, recoveries, deploys and state changes as labelled vertical lines."""
    for mark in chart.marks:
        axes.axvline(
            _when(mark.timestamp),
            color=MARK_COLORS.get(mark.kind, "#555555"),
            linestyle=":" if mark.kind == "deploy" else "-",
            linewidth=1.0,
            alpha=0.8,
        )
        axes.annotate(
            mark.label,
            (_when(mark.timestamp), 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -10),
            textcoords="offset points",
            fontsize=7,
            color=MARK_COLORS.get(mark.kind, "#555555"),
        )


def _set_time_axis(axes: Any, start: float, end: float) -> None:
    """The x axis from ``start`` to ``end`` with concise date labels."""
    import matplotlib.dates as mdates

    axes.set_xlim(_when(start), _when(end))
    locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(
        mdates.ConciseDateFormatter(locator)  # type: ignore[no-untyped-call]
    )


def _save(figure: Any, path: Path) -> None:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")


_LANES = ("state change", "incident", "notification", "retrain job", "deploy")
_LANE_OF = {
    "state_change": "state change",
    "notification": "notification",
    "incident_opened": "incident",
    "incident_resolved": "incident",
    "incident_entry": "incident",
    "job": "retrain job",
    "job_step": "retrain job",
    "deploy": "deploy",
}


def _severity_color(severity: str) -> str:
    """Incidents carry the monitor state (``WARN``/``ALERT``) or a word (``critical``)."""
    named = {"critical": "ALERT", "error": "ALERT", "warning": "WARN"}
    return STATE_COLORS.get(named.get(severity.lower(), severity.upper()), STATE_COLORS["WARN"])


def _event_color(event: ActivityEvent) -> str:
    if event.kind == "state_change":
        return STATE_COLORS.get(str(event.details.get("state")), "#555555")
    if event.kind == "deploy":
        return MARK_COLORS["deploy"]
    if event.kind == "notification":
        return (
            "#1f77b4"
            if event.details.get("status") in {"delivered", "skipped", "duplicate"}
            else "#8c564b"
        )
    if event.kind == "incident_resolved":
        return MARK_COLORS["recovery"]
    return "#444444"


def plot_timeline(
    incidents: Sequence[IncidentRecord],
    events: Sequence[ActivityEvent],
    path: Path,
    *,
    title: str,
    start: float,
    end: float,
) -> Path:
    """A PNG: incidents as bars from opened to resolved, and every event on its lane."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    with _lock:
        figure = Figure(figsize=(10, 3.6), dpi=110)
        axes = figure.add_subplot()
        lane_y = {lane: len(_LANES) - i for i, lane in enumerate(_LANES)}
        _draw_incident_bars(axes, incidents, lane_y["incident"], start, end)
        _draw_events(axes, events, lane_y)
        axes.set_yticks([lane_y[lane] for lane in _LANES], list(_LANES), fontsize=8)
        axes.set_ylim(0.3, len(_LANES) + 0.8)
        _set_time_axis(axes, start, end)
        axes.set_title(title, fontsize=10, loc="left")
        axes.set_xlabel("time (UTC)", fontsize=8)
        axes.grid(axis="x", alpha=0.25)
        _save(figure, path)
    return path


def _draw_incident_bars(
    axes: Any, incidents: Sequence[IncidentRecord], y: float, start: float, end: float
) -> None:
    """Each incident as a bar at height ``y`` from opened (or ``start``) to resolved (or
    ``end``), coloured by severity, with its title."""
    for incident in incidents:
        opened = max(incident.opened_at, start)
        closed = incident.resolved_at if incident.resolved_at is not None else end
        color = _severity_color(incident.severity)
        axes.barh(
            y,
            _when(closed) - _when(opened),
            left=_when(opened),
            height=0.5,
            color=color,
            alpha=0.35,
            edgecolor=color,
        )
        axes.annotate(
            incident.title[:48],
            (_when(opened), y + 0.3),
            fontsize=7,
            color="#1d232a",
        )


def _draw_events(axes: Any, events: Sequence[ActivityEvent], lane_y: dict[str, int]) -> None:
    """Each event as a dot on its lane; state changes and deploys labelled."""
    for event in events:
        lane = _LANE_OF.get(event.kind)
        if lane is None:
            continue
        axes.scatter(
            [_when(event.timestamp)],
            [lane_y[lane]],
            s=28,
            color=_event_color(event),
            zorder=3,
            marker="|" if event.kind == "job_step" else "o",
        )
        if event.kind in {"state_change", "deploy"}:
            label = (
                str(event.details.get("state"))
                if event.kind == "state_change"
                else f"v{event.details.get('version')}"
            )
            axes.annotate(
                label,
                (_when(event.timestamp), lane_y[lane]),
                xytext=(2, 5),
                textcoords="offset points",
                fontsize=6,
            )

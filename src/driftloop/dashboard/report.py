"""The static report: what a person attaches to a ticket.

:func:`generate_report` writes, into one directory, ``index.html`` (self-contained: inline CSS,
images referenced by relative path), one PNG per monitored metric and model (the dashboard's
chart: avg and min per window, thresholds, incident and deploy marks), one PNG incident timeline
per model, and ``events.json`` with every state change, notification, incident entry, retrain
job step and deploy in the range, with its time (ISO 8601 UTC, as in every JSON driftloop writes).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from driftloop._version import __version__
from driftloop.config import parse_duration
from driftloop.dashboard.data import (
    ActivityEvent,
    DashboardData,
    IncidentRecord,
    JobRecord,
    ModelSnapshot,
    MonitorStatus,
    VersionAccuracy,
    VersionRecord,
    iso_moments,
    snapshot,
)
from driftloop.dashboard.plots import plot_chart, plot_timeline
from driftloop.errors import InvalidInputError, NotFoundError
from driftloop.messages import format_value
from driftloop.timestamps import iso_utc

DEFAULT_SPAN = 86400.0
EMPTY = "-"
REPORT_POINTS = 600
_SLUG = re.compile(r"[^a-z0-9]+")

ReportProgress = Callable[[str, float], None]
"""Called as ``progress(what, fraction_done)``."""


@dataclass(frozen=True, slots=True)
class ReportPaths:
    """The files a report consists of."""

    directory: Path
    index_html: Path
    events_json: Path
    images: list[Path] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0
    events: int = 0


def _slug(text: str) -> str:
    return _SLUG.sub("-", text.lower()).strip("-") or "chart"


def _iso(timestamp: float | None) -> str:
    if timestamp is None:
        return EMPTY
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _num(value: float | None) -> str:
    return format_value(value)


def _since_timestamp(since: float | datetime | None) -> float | None:
    if since is None or isinstance(since, float | int):
        return None if since is None else float(since)
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return since.timestamp()


def parse_since(text: str, *, now: float) -> float:
    """``--since``: a duration back from ``now`` (``30m``, ``2h``, ``7d``) or an ISO 8601 time
    (``2025-03-01T12:00``; UTC when it names no zone)."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInputError(
            f"--since {text!r}: expected a duration such as 30m, 2h, 7d or an ISO 8601 time "
            "such as 2025-03-01T12:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _escape(value: object) -> str:
    return html.escape(str(value), quote=True)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-size:14px;
color:#1d232a;background:#f5f7f9;margin:0;padding:16px 24px 40px;max-width:1200px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid
#dde3e8;padding-bottom:4px}h3{font-size:14px;margin:16px 0 6px;color:#5f6b76;text-transform:
uppercase;letter-spacing:.04em}.muted{color:#5f6b76}img{max-width:100%;border:1px solid #dde3e8;
background:#fff;margin:6px 0}table{border-collapse:collapse;width:100%;background:#fff;border:1px
solid #dde3e8}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #dde3e8;vertical-align:
top;font-variant-numeric:tabular-nums}th{color:#5f6b76;font-size:12px}.badge{display:inline-block;
min-width:54px;text-align:center;border-radius:3px;padding:1px 6px;color:#fff;font-weight:600;
font-size:12px}.OK{background:#2e7d32}.WARN{background:#f2a900;color:#1d232a}.ALERT{background:
#d62728}.NO_DATA{background:#8a8a8a}pre{background:#0f1419;color:#d6dde4;padding:8px;
border-radius:4px;white-space:pre-wrap;font-size:12px;max-height:300px;overflow:auto}
ol{padding-left:20px}li{margin:2px 0}.alias{background:#e8eef4;border-radius:3px;padding:0 5px;
margin-right:4px;font-size:12px}
"""


def _badge(state: str) -> str:
    return f'<span class="badge {_escape(state)}">{_escape(state)}</span>'


def _monitors_html(monitors: list[MonitorStatus]) -> str:
    if not monitors:
        return '<p class="muted">No monitor state recorded.</p>'
    rows = "".join(
        f"<tr><td>{_escape(m.monitor)}</td>"
        f"<td>{_escape(', '.join(f'{k}={v}' for k, v in m.group.items()) or EMPTY)}</td>"
        f"<td>{_badge(m.state)}</td><td>{_num(m.value)}</td><td>{_num(m.threshold)}</td>"
        f"<td>{_iso(m.since)}</td></tr>"
        for m in monitors
    )
    return (
        "<table><tr><th>monitor</th><th>group</th><th>state</th><th>value</th>"
        f"<th>threshold</th><th>since</th></tr>{rows}</table>"
    )


def _incidents_html(incidents: list[IncidentRecord]) -> str:
    if not incidents:
        return '<p class="muted">No incidents in this range.</p>'
    parts = []
    for incident in incidents:
        entries = "".join(
            f"<li><span class='muted'>{_iso(e.timestamp)}</span> <b>{_escape(e.kind)}</b> "
            f"{_escape(e.message)}</li>"
            for e in incident.timeline
        )
        resolved = (
            "ongoing" if incident.resolved_at is None else f"resolved {_iso(incident.resolved_at)}"
        )
        escalated = (
            "" if incident.opened_as is None else f" (opened as {_escape(incident.opened_as)})"
        )
        jobs = "".join(
            f" · retrain job <code>{_escape(job_id[:12])}</code>" for job_id in incident.job_ids
        )
        parts.append(
            f"<p><b>{_escape(incident.heading or incident.title)}</b> · "
            f"{_escape(incident.severity)}{escalated} · {_escape(incident.status)} · "
            f"opened {_iso(incident.opened_at)} · {resolved}{jobs} "
            f"<span class='muted'>({_escape(incident.incident_id)})</span></p><ol>{entries}</ol>"
        )
    return "".join(parts)


def _versions_html(versions: list[VersionRecord]) -> str:
    if not versions:
        return '<p class="muted">No registered versions.</p>'

    def status(v: VersionRecord) -> str:
        when = "" if v.status_at is None else f" {_iso(v.status_at)}"
        reason = "" if not v.status_reason else f": {_escape(v.status_reason)}"
        return f"{_escape(v.status)}{when}{reason}"

    rows = "".join(
        f"<tr><td>v{v.version}</td><td>{status(v)}</td>"
        f"<td>{''.join(f'<span class=alias>{_escape(a)}</span>' for a in v.aliases)}</td>"
        f"<td>{_num(v.accuracy)}</td><td>{_num(v.macro_f1)}</td><td>{_num(v.ece)}</td>"
        f"<td>{_escape(v.trigger)}{_code(v.training_code)}</td>"
        f"<td>{_iso(v.created_at)}</td><td>{_iso(v.deployed_at)}</td>"
        f"<td><code>{_escape(v.content_hash[:12])}</code></td></tr>"
        for v in versions
    )
    return (
        "<table><tr><th>version</th><th>status</th><th>aliases</th><th>accuracy</th>"
        "<th>macro F1</th>"
        "<th>ECE</th><th>trigger</th><th>created</th><th>deployed</th><th>hash</th></tr>"
        f"{rows}</table>"
    )


def _code(training_code: str) -> str:
    """A version's training code under its trigger (repository, commit and run)."""
    return f"<br><small>{_escape(training_code)}</small>" if training_code else ""


def _accuracy_html(rows: list[VersionAccuracy]) -> str:
    if not rows:
        return (
            '<p class="muted">No estimated accuracy or feedback labels at the end of the range.</p>'
        )

    def holds(row: VersionAccuracy) -> str:
        if row.estimate_holds is None:
            return EMPTY
        if row.estimate_holds:
            return "holds"
        return f"<b>may not hold</b>: {_escape('; '.join(row.may_not_hold_because))}"

    body = "".join(
        f"<tr><td>v{_escape(r.version)}</td><td>{_num(r.reference_accuracy)}</td>"
        f"<td>{_num(r.estimated)}</td><td>{r.estimated_n}</td><td>{holds(r)}</td>"
        f"<td>{_num(r.realized)}</td><td>{r.realized_n}</td></tr>"
        for r in rows
    )
    return (
        "<table><tr><th>version</th><th>held-out accuracy</th>"
        "<th>estimated (last 5 min)</th><th>predictions</th><th>estimate</th>"
        f"<th>realized (last hour)</th><th>labels</th></tr>{body}</table>"
    )


def _jobs_html(jobs: list[JobRecord]) -> str:
    if not jobs:
        return '<p class="muted">No retrain jobs.</p>'
    parts = []
    for job in jobs:
        steps = "".join(
            f"<tr><td>{_escape(s.step)}</td><td>{_escape(s.outcome or 'running')}</td>"
            f"<td>{_iso(s.started_at)}</td><td>{_iso(s.finished_at)}</td>"
            f"<td>{f'<pre>{_escape(s.log)}</pre>' if s.log else EMPTY}</td></tr>"
            for s in job.steps
        )
        candidate = (
            "" if job.candidate_version is None else f" · candidate v{job.candidate_version}"
        )
        error = "" if not job.error else f"<p>error: {_escape(job.error)}</p>"
        parts.append(
            f"<p><b>{_escape(job.state)}</b> · <code>{_escape(job.job_id)}</code> · "
            f"{_escape(job.trigger)}{candidate} · created {_iso(job.created_at)}</p>{error}"
            "<table><tr><th>step</th><th>outcome</th><th>started</th><th>finished</th>"
            f"<th>log</th></tr>{steps}</table>"
        )
    return "".join(parts)


def _events_html(events: list[ActivityEvent]) -> str:
    if not events:
        return '<p class="muted">Nothing happened in this range.</p>'
    rows = "".join(
        f"<tr><td>{_iso(e.timestamp)}</td><td>{_escape(e.kind)}</td>"
        f"<td>{_escape(e.model or EMPTY)}</td><td>{_escape(e.title)}</td></tr>"
        for e in events
    )
    return f"<table><tr><th>time</th><th>kind</th><th>model</th><th>what</th></tr>{rows}</table>"


def _model_section(snap: ModelSnapshot, chart_files: list[str], timeline_file: str) -> str:
    summary = snap.summary
    aliases = ", ".join(f"{a}=v{v}" for a, v in summary.aliases.items()) or "none"
    production = "none" if summary.production_version is None else f"v{summary.production_version}"
    images = (
        "".join(
            f'<img src="{_escape(name)}" alt="{_escape(chart.monitor)} chart">'
            for name, chart in zip(chart_files, snap.charts, strict=True)
        )
        or '<p class="muted">No monitor watches this model.</p>'
    )
    return (
        f'<section id="model-{_escape(_slug(snap.model))}"><h2>{_escape(snap.model)} '
        f"{_badge(summary.worst_state)}</h2>"
        f"<p>production: <b>{production}</b> · aliases: {_escape(aliases)} · "
        f"open incidents: {summary.open_incidents}</p>"
        f"<h3>Monitors</h3>{_monitors_html(snap.monitors)}"
        f"<h3>Accuracy on live traffic</h3>{_accuracy_html(snap.accuracy)}"
        f"<h3>Metrics</h3>{images}"
        "<h3>Incident timeline</h3>"
        f'<img src="{_escape(timeline_file)}" alt="incident timeline">'
        f"{_incidents_html(snap.incidents)}"
        f"<h3>Versions</h3>{_versions_html(snap.versions)}"
        f"<h3>Retrain jobs</h3>{_jobs_html(snap.jobs)}"
        "</section>"
    )


def generate_report(
    data: DashboardData,
    out_dir: Path,
    *,
    model: str | None = None,
    since: float | datetime | None = None,
    progress: ReportProgress | None = None,
) -> ReportPaths:
    """Write the report for ``model`` (default: every model) from ``since`` (unix time or
    datetime; default: the first recorded activity, at most a day back) until now."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidInputError(f"{out_dir} exists and is not a directory")
    models = _models_to_report(data, model)
    end = data.now()
    start = _report_start(data, model, since, end)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = progress or (lambda _what, _fraction: None)

    images: list[Path] = []
    sections: list[str] = []
    for index, name in enumerate(models):
        report(f"charts of {name}", index / max(len(models), 1))
        sections.append(_write_model_section(data, name, out_dir, start, end, images))

    report("events", 0.95)
    all_events = data.activity(model, start, end)
    events_json = _write_events_json(out_dir, models, all_events, start, end)
    index_html = _write_index_html(out_dir, models, sections, all_events, start, end)
    report("done", 1.0)
    return ReportPaths(
        directory=out_dir,
        index_html=index_html,
        events_json=events_json,
        images=images,
        models=models,
        start=start,
        end=end,
        events=len(all_events),
    )


def _models_to_report(data: DashboardData, model: str | None) -> list[str]:
    """``[model]`` if it is known, every known model if ``model`` is None."""
    known = [summary.name for summary in data.models()]
    if model is not None and model not in known:
        raise NotFoundError(
            f"no model {model!r} to report on; known models: {', '.join(known) or 'none'}"
        )
    return [model] if model is not None else known


def _report_start(
    data: DashboardData, model: str | None, since: float | datetime | None, end: float
) -> float:
    """The report's first moment: ``since``, or the first recorded activity (at most a day
    back, at least a minute before ``end``); it must lie before ``end``."""
    start = _since_timestamp(since)
    if start is None:
        first = data.first_activity(model)
        start = max(first - 1.0, end - DEFAULT_SPAN) if first is not None else end - DEFAULT_SPAN
        start = min(start, end - 60.0)
    if not start < end:
        raise InvalidInputError(f"--since ({_iso(start)}) must be in the past (now {_iso(end)})")
    return start


def _write_model_section(
    data: DashboardData, name: str, out_dir: Path, start: float, end: float, images: list[Path]
) -> str:
    """Plot one model's metric charts and incident timeline into ``out_dir`` (appending the
    files to ``images``) and return its HTML section."""
    snap = snapshot(data, name, start, end, max_points=REPORT_POINTS)
    chart_files = []
    for chart in snap.charts:
        file = out_dir / f"{_slug(name)}--{_slug(chart.monitor)}.png"
        images.append(plot_chart(chart, file, model=name, start=start, end=end))
        chart_files.append(file.name)
    events = data.activity(name, start, end)
    timeline = out_dir / f"{_slug(name)}--incident-timeline.png"
    images.append(
        plot_timeline(
            snap.incidents,
            events,
            timeline,
            title=f"{name} · incidents, alerts, jobs and deploys",
            start=start,
            end=end,
        )
    )
    return _model_section(snap, chart_files, timeline.name)


def _write_events_json(
    out_dir: Path, models: list[str], events: list[ActivityEvent], start: float, end: float
) -> Path:
    """Write ``events.json``: the window, the models and every event, moments in ISO 8601."""
    events_json = out_dir / "events.json"
    events_json.write_text(
        json.dumps(
            {
                "generated_at": iso_utc(end),
                "generated_by": f"driftloop {__version__}",
                "start": iso_utc(start),
                "end": iso_utc(end),
                "models": models,
                "events": [_event_dict(event) for event in events],
            },
            indent=2,
            default=str,
        )
        + "\n",
        encoding="utf-8",
    )
    return events_json


def _write_index_html(
    out_dir: Path,
    models: list[str],
    sections: list[str],
    events: list[ActivityEvent],
    start: float,
    end: float,
) -> Path:
    """Write ``index.html``: the header, one section per model and the event table."""
    index_html = out_dir / "index.html"
    index_html.write_text(
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>driftloop report · {_escape(', '.join(models) or 'no models')}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>driftloop report</h1><p class=muted>{_escape(', '.join(models) or 'no models')} · "
        f"{_iso(start)} → {_iso(end)} · generated by driftloop {__version__} · "
        '<a href="events.json">events.json</a></p>'
        + "".join(sections)
        + f"<h2>Events</h2>{_events_html(events)}</body></html>\n",
        encoding="utf-8",
    )
    return index_html


def _event_dict(event: ActivityEvent) -> dict[str, Any]:
    """An event for ``events.json``: its moment, and those in its details, ISO 8601 UTC."""
    data = asdict(event)
    data["timestamp"] = iso_utc(event.timestamp)
    data["details"] = iso_moments(event.details)
    return data

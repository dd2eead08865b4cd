"""The demo's outcome: whether the loop closed, the summary it measured, the report and the
summary table it prints."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from driftloop.dashboard.data import TimelineEntry
from driftloop.dashboard.report import generate_report
from driftloop.dashboard.sources import StoreDashboardData
from driftloop.demo.config import (
    DemoOptions,
    ScenarioNames,
    confidence_levels,
    confidence_monitor,
    monitors_note,
)
from driftloop.demo.receiver import NotificationReceiver
from driftloop.demo.traffic import TrafficGenerator, TrafficStats
from driftloop.demo.view import DemoView, reference_confidence
from driftloop.messages import MISSING_VALUE, format_value
from driftloop.monitors.events import MonitorState
from driftloop.pipeline.queue import Job, JobState
from driftloop.system import DriftloopSystem
from driftloop.timestamps import iso_utc


@dataclass
class DemoResult:
    closed: bool
    reasons: list[str]
    summary: dict[str, Any]
    report_dir: Path
    timeline: list[TimelineEntry] = field(default_factory=list)


@dataclass(frozen=True)
class DemoRun:
    """What the demo ran, handed to :func:`finish` once it stops."""

    options: DemoOptions
    system: DriftloopSystem
    view: DemoView
    traffic: TrafficGenerator
    receiver: NotificationReceiver
    phase2_at: float | None
    project: Path


def _reasons(
    alert_at: float | None,
    jobs: list[Job],
    final_version: int,
    ok_now: bool,
    stats: TrafficStats,
) -> list[str]:
    """Why the loop did not close (empty: it did)."""
    # Whichever @retrain monitor shows the drift first closes the loop (the init defaults'
    # rule): the confidence threshold need not reach ALERT, or pass through WARN, when the drift
    # detector or the feature monitor has already brought the retrained version.
    reasons = []
    if alert_at is None:
        reasons.append("no monitor went ALERT")
    if not any(job.state == JobState.SUCCEEDED for job in jobs):
        reasons.append(
            "no retrain job succeeded: "
            + ", ".join(f"{job.state.value} ({job.error})" for job in jobs)
            if jobs
            else "no retrain job ran"
        )
    if final_version < 2:
        reasons.append("v2 was never deployed")
    if not ok_now:
        reasons.append("the monitors were not OK at the end")
    if stats.failed:
        reasons.append(f"{stats.failed} requests failed: {stats.failures[:3]}")
    return reasons


def summarize(run: DemoRun) -> dict[str, Any]:
    """The demo's measures, as ``summary.json`` holds them."""
    system, view, stats = run.system, run.view, run.traffic.stats

    def since_phase2(at: float | None) -> float | None:
        return None if at is None or run.phase2_at is None else round(at - run.phase2_at, 1)

    names = run.options.names
    warn_at = view.first(MonitorState.WARN.value, names.confidence_monitor + ":")
    alert_at = view.first(MonitorState.ALERT.value, names.confidence_monitor + ":")
    jobs = system.queue.list(model=names.model, limit=5)
    final_version = system.registry.resolve(names.model).version
    ok_now = system.monitors_ok(names.model)
    first_alerts = [
        at
        for at in (
            alert_at,
            view.first(MonitorState.ALERT.value, names.drift_monitor),
            view.first(MonitorState.ALERT.value, f"{names.feature_monitor}:"),
        )
        if at is not None
    ]
    reasons = _reasons(min(first_alerts, default=None), jobs, final_version, ok_now, stats)
    return {
        "closed": not reasons,
        "scenario": run.options.scenario,
        "model": names.model,
        "trainer": system.config.models[names.model].trainer,
        "speed": run.options.speed,
        "window_seconds": run.options.window,
        "drifting_subtopics": list(run.options.drifting),
        "thresholds": _thresholds_summary(system, stats.versions, names),
        "monitors_note": monitors_note(system.config, view.v1_reference, names.confidence_monitor),
        "seconds_total": round(time.time() - view.started, 1),
        "seconds_to_train_v1": None if view.training_v1 is None else round(view.training_v1, 1),
        "seconds_retrain_job_to_deploy": _job_to_deploy(jobs),
        "requests": stats.requests,
        "texts": stats.texts,
        "failed_requests": stats.failed,
        "shed_requests": stats.shed,
        "versions_served": dict(stats.versions),
        "final_production_version": final_version,
        "seconds_to_drift_detector": since_phase2(
            view.first(MonitorState.ALERT.value, names.drift_monitor)
        ),
        "seconds_to_feature_drift": since_phase2(
            view.first(MonitorState.ALERT.value, f"{names.feature_monitor}:")
        ),
        "drifted_features": list(view.drifted_features),
        "seconds_to_warn": since_phase2(warn_at),
        "seconds_to_alert": since_phase2(alert_at),
        "seconds_to_deploy": since_phase2(view.first("job", "verifying")),
        "seconds_to_recover": since_phase2(view.first("closed", "")),
        "accuracy_pre_drift": stats.accuracy("known", "1"),
        "accuracy_after_retrain": stats.accuracy("drifted", str(final_version)),
        "accuracy_drifted_traffic": {
            version: stats.accuracy("drifted", version) for version in sorted(stats.versions)
        },
        "accuracy_known_traffic": {
            version: stats.accuracy("known", version) for version in sorted(stats.versions)
        },
        "notifications_received": [r.to_dict() for r in run.receiver.received()],
        "jobs": [job.to_dict() for job in jobs],
        "reasons": reasons,
        "project": str(run.project),
    }


def finish(run: DemoRun, console: Console) -> DemoResult:
    """Write the report, ``summary.json`` and ``timeline.json``, print the summary."""
    summary = summarize(run)
    system, view = run.system, run.view
    out = run.options.out
    out.mkdir(parents=True, exist_ok=True)
    data = StoreDashboardData(
        database=system.database,
        metric_store=system.metric_store,
        monitors=list(system.config.monitors),
        registry=system.registry,
        jobs=system.queue,
        models=[run.options.names.model],
    )
    paths = generate_report(data, out / "report", model=run.options.names.model, since=view.started)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "timeline.json").write_text(
        json.dumps(
            [
                {"at": iso_utc(e.timestamp), "kind": e.kind, "message": e.message}
                for e in view.timeline
            ],
            indent=2,
        )
    )
    print_summary(console, summary, run.receiver, paths.index_html, paths.events_json)
    reasons: list[str] = summary["reasons"]
    return DemoResult(not reasons, reasons, summary, out, view.timeline)


def _thresholds_summary(
    system: DriftloopSystem, versions: Iterable[str], names: ScenarioNames
) -> dict[str, Any]:
    """The confidence monitor's levels as configured and, per served version, resolved against
    its reference."""
    monitor = confidence_monitor(system.config, names.confidence_monitor)
    assert monitor.below is not None
    resolved: dict[str, dict[str, float | None]] = {}
    for version in sorted(versions, key=int):
        reference = reference_confidence(system.registry.get_version(names.model, int(version)))
        warning, critical = confidence_levels(system.config, reference, names.confidence_monitor)
        resolved[version] = {"reference": reference, "warning": warning, "critical": critical}
    return {
        "warning": str(monitor.below.warning),
        "critical": str(monitor.below.critical),
        "per_version": resolved,
    }


def _job_to_deploy(jobs: list[Job]) -> float | None:
    """Seconds from the retrain job's creation to its deploy (fetch, train, gate)."""
    for job in jobs:
        if job.deployed_at is not None:
            return round(job.deployed_at - job.created_at, 1)
    return None


def _fmt(value: Any) -> str:
    return format_value(value) if value is None or isinstance(value, float) else str(value)


def _seconds(value: Any) -> str:
    return MISSING_VALUE if value is None else f"{value:.1f}"


def _summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title="driftloop demo summary")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for label, key in [
        ("seconds to drift detector ALERT", "seconds_to_drift_detector"),
        ("seconds to WARN", "seconds_to_warn"),
        ("seconds to ALERT", "seconds_to_alert"),
        ("seconds to deploy of the new version", "seconds_to_deploy"),
        ("seconds to recovery (monitors OK)", "seconds_to_recover"),
        ("requests / texts", None),
        ("failed requests", "failed_requests"),
        ("production version at the end", "final_production_version"),
    ]:
        if key is None:
            table.add_row(label, f"{summary['requests']} / {summary['texts']}")
        else:
            table.add_row(label, (_seconds if key.startswith("seconds") else _fmt)(summary[key]))
    for version, accuracy in summary["accuracy_drifted_traffic"].items():
        table.add_row(f"accuracy of v{version} on drifted traffic", _fmt(accuracy))
    for version, levels in summary["thresholds"]["per_version"].items():
        table.add_row(
            f"v{version} reference / warn / alert levels",
            " / ".join(_fmt(levels[key]) for key in ("reference", "warning", "critical")),
        )
    for label, key in [
        ("seconds to train v1", "seconds_to_train_v1"),
        ("seconds from retrain job to deploy", "seconds_retrain_job_to_deploy"),
        ("seconds in all", "seconds_total"),
    ]:
        table.add_row(label, _seconds(summary[key]))
    return table


def print_summary(
    console: Console,
    summary: dict[str, Any],
    receiver: NotificationReceiver,
    index: Path,
    events: Path,
) -> None:
    received = receiver.received()
    for request in received[:6]:
        body = json.dumps(request.body)[:300]
        console.print(
            f"[bold]{request.service}[/] received {request.method} {request.path}: {body}",
            highlight=False,
        )
    if len(received) > 6:
        console.print(f"... and {len(received) - 6} more notification requests")
    console.print(_summary_table(summary))
    console.print(f"report: {index}\nevents: {events}")
    if summary["closed"]:
        console.print("[bold green]the loop closed[/]")
    else:
        console.print("[bold red]the loop did not close:[/] " + "; ".join(summary["reasons"]))

"""``driftloop demo``: the whole loop, for real, in a fresh temporary project.

Same code paths as production: the serving app on a loopback port behind an API key, real HTTP
traffic from concurrent clients, insights through the local transport into the SQLite metric
store, the monitor engine, the notification router (Slack and a GitHub dispatch webhook, both
pointed at a local receiver), the retrain job with its gate, the hot swap and the verification.
"""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
import webbrowser
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from driftloop.config import CONFIG_FILENAME, Config, load_config
from driftloop.dashboard.report import generate_report
from driftloop.dashboard.sources import StoreDashboardData
from driftloop.demo.config import (
    CONFIDENCE_MONITOR,
    DATASET,
    DRIFT_MONITOR,
    MODEL,
    DemoOptions,
    confidence_levels,
    confidence_monitor,
    demo_config,
    format_level,
    monitors_note,
    tuning_for,
)
from driftloop.demo.receiver import NotificationReceiver
from driftloop.demo.scenario import DRIFTING_SUBTOPICS, DemoScenario, build_scenario
from driftloop.demo.traffic import TrafficGenerator
from driftloop.errors import ConfigError, NotFoundError
from driftloop.metrics.points import SHADOW_TAG
from driftloop.monitors.events import Event, MonitorState
from driftloop.monitors.thresholds import reference_value
from driftloop.pipeline.queue import Job, JobState
from driftloop.pipeline.retry import REQUEST_KINDS
from driftloop.pipeline.runner import PipelineHooks
from driftloop.registry import ModelVersion
from driftloop.serving.keys import Scope
from driftloop.serving.limits import uvicorn_options
from driftloop.storage import DatasetStore
from driftloop.system import DriftloopSystem, SystemOptions
from driftloop.trainers.training import train_model

STATE_STYLE = {"OK": "green", "WARN": "yellow", "ALERT": "bold red", "NO_DATA": "dim"}


@dataclass
class TimelineEntry:
    at: float
    kind: str
    message: str


@dataclass
class DemoResult:
    closed: bool
    reasons: list[str]
    summary: dict[str, Any]
    report_dir: Path
    timeline: list[TimelineEntry] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port



class DemoView:
    """The live terminal view: phase, traffic, confidence vs thresholds, states, events."""

    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.phase = "setting up"
        self.started = time.time()
        self.timeline: list[TimelineEntry] = []
        self.confidence: float | None = None
        self.reference: float | None = None
        self.training_v1: float | None = None
        self.v1_reference: float | None = None
        self.states: dict[str, str] = {}
        self.production: int | None = None
        self.job: str = "none"
        self.traffic: TrafficGenerator | None = None
        self.config: Config | None = None
        self._lock = threading.Lock()

    def log(self, kind: str, message: str) -> None:
        with self._lock:
            self.timeline.append(TimelineEntry(time.time(), kind, message))

    def render(self) -> Panel:
        now = time.time()
        head = Table.grid(padding=(0, 2))
        head.add_column(style="bold")
        head.add_column()
        head.add_row("phase", self.phase)
        head.add_row("elapsed", f"{now - self.started:5.1f}s")
        if self.traffic is not None:
            stats = self.traffic.stats
            head.add_row("traffic", f"{stats.requests_per_second(now):5.1f} req/s, "
                                    f"{stats.texts} texts, failed {stats.failed}")
        confidence = "n/a" if self.confidence is None else f"{self.confidence:.3f}"
        warning, critical = (None, None) if self.config is None else confidence_levels(
            self.config, self.reference)
        levels = (f"warn < {format_level(warning)}, alert < {format_level(critical)}, "
                  f"window {self.options.window:g}s")
        head.add_row("avg confidence", f"{confidence}  ({levels})")
        head.add_row("production", "n/a" if self.production is None else f"v{self.production}")
        head.add_row("retrain job", self.job)
        for name, state in sorted(self.states.items()):
            head.add_row(name, f"[{STATE_STYLE.get(state, '')}]{state}[/]")
        events = Table("t", "event", box=None, show_header=False)
        with self._lock:
            recent = self.timeline[-12:]
        for entry in recent:
            events.add_row(f"{entry.at - self.started:6.1f}s", f"[bold]{entry.kind}[/] "
                           f"{escape(entry.message)}")
        # as wide as its text: a console that is not a terminal does not wrap (cli.app)
        return Panel(Group(head, events), title="driftloop demo: the closed loop", expand=False)



def run_demo(options: DemoOptions, console: Console | None = None) -> DemoResult:
    console = console or Console()
    if options.speed <= 0:
        raise ConfigError("--speed must be positive")
    tuning_for(options.trainer)
    project = options.project_dir or Path(tempfile.mkdtemp(prefix="driftloop-demo-"))
    project.mkdir(parents=True, exist_ok=True)
    receiver = NotificationReceiver()
    receiver.start()
    view = DemoView(options)
    try:
        return _run(options, console, project, receiver, view)
    finally:
        receiver.stop()


def _train_with_progress(
    console: Console, config: Config, label: str, trigger: str
) -> ModelVersion:
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task(label, total=1.0)

        def report(stage: str, fraction: float) -> None:
            progress.update(task, completed=fraction, description=f"{label}: {stage}")

        version = train_model(config, MODEL, trigger=trigger, progress=report)
        progress.update(task, completed=1.0, description=f"{label}: done")
    return version


def _run(
    options: DemoOptions, console: Console, project: Path, receiver: NotificationReceiver,
    view: DemoView,
) -> DemoResult:
    port = _free_port()
    (project / CONFIG_FILENAME).write_text(
        "# written by 'driftloop demo'\n"
        + yaml.safe_dump(demo_config(options, receiver, port), sort_keys=False)
    )
    config = load_config(project / CONFIG_FILENAME)
    console.print(f"[bold]driftloop demo[/] in {project} (speed x{options.speed:g}: "
                  f"a {options.window:g}s window stands for 5 minutes)")

    tuning = tuning_for(options.trainer)
    view.config = config
    scenario = build_scenario(drifting=options.drifting)
    datasets = DatasetStore.from_config(config)
    first = datasets.push(scenario.snapshot_1, DATASET)
    console.print(f"snapshot 1: {first.row_count} labeled reviews without the subtopics "
                  f"{', '.join(DRIFTING_SUBTOPICS)}")
    training_started = time.time()
    v1 = _train_with_progress(console, config, f"training v1 ({options.trainer})", "manual")
    view.training_v1 = time.time() - training_started
    view.log("train", f"v1 trained on snapshot {first.snapshot_id} in {view.training_v1:.0f}s "
                      "and set as production")
    reference = _reference_confidence(v1)
    view.reference = view.v1_reference = reference
    console.print(monitors_note(config, reference), style="dim")

    phase2_at: list[float] = []
    system = DriftloopSystem(config, SystemOptions(
        monitor_interval=max(0.5, options.window / 15),
        worker_poll_interval=0.5,
        event_listeners=[lambda event: _on_event(view, event)],
        pipeline_hooks=PipelineHooks(on_state=lambda job: _on_job(view, job)),
    ))
    key = system.api_keys.create(Scope.ADMIN, name="demo").key
    app = system.create_app()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on", **uvicorn_options(config.serving)))
    server_thread = threading.Thread(target=server.run, name="demo-server", daemon=True)
    server_thread.start()
    deadline = time.time() + 60
    while not server.started:
        if time.time() > deadline or not server_thread.is_alive():
            raise ConfigError(f"the demo server did not start on 127.0.0.1:{port}")
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    console.print(f"serving v{v1.version} at {url} — dashboard {url}/ (log in with key {key})")
    if options.open_browser:
        webbrowser.open(f"{url}/login")
    system.start_background()
    traffic = TrafficGenerator(url, MODEL, key, clients=options.clients, batch=tuning.batch,
                               pause=tuning.pause)
    view.traffic = traffic
    traffic.set_phase("known", scenario.known_traffic)
    traffic.start()
    view.log("traffic", f"phase 1: {options.clients} clients send reviews from known subtopics")
    loop_closed_at: float | None = None
    try:
        with Live(view.render(), console=console, refresh_per_second=4) as live:
            view.phase = "1: known traffic"
            started = time.time()
            phase1_end = started + max(10.0, options.window * 1.3)
            hard_deadline = started + options.timeout
            while time.time() < hard_deadline:
                now = time.time()
                _refresh(view, system)
                if not phase2_at and now >= phase1_end:
                    phase2_at.append(now)
                    _start_phase_2(view, traffic, scenario, datasets)
                    view.phase = "2: drifted traffic"
                if phase2_at and loop_closed_at is None and _loop_closed(system, view):
                    loop_closed_at = now
                    view.phase = "closed: monitors OK on the new version"
                    view.log("closed", "the loop closed: new version serving, monitors OK")
                if loop_closed_at is not None and now >= loop_closed_at + 3.0:
                    break
                if phase2_at and loop_closed_at is None and _settled(system, options.window):
                    view.phase = "settled: nothing more is due, the monitors still fire"
                    view.log("settled", "the loop did not close: no job runs or is due (the "
                                        "open incidents' retries are used up or wait for new "
                                        "labeled data)")
                    break
                live.update(view.render())
                time.sleep(0.25)
            live.update(view.render())
    finally:
        traffic.stop()
        system.stop_background()
        server.should_exit = True
        server_thread.join(timeout=30)
    return _finish(options, console, system, view, traffic, receiver, scenario,
                   phase2_at[0] if phase2_at else None, project)


def _start_phase_2(view: DemoView, traffic: TrafficGenerator, scenario: DemoScenario,
                   datasets: DatasetStore) -> None:
    traffic.set_phase("drifted", scenario.drifted_traffic)
    view.log("drift", f"phase 2: traffic shifts to unseen subtopics "
                      f"({', '.join(DRIFTING_SUBTOPICS)})")
    second = datasets.push(scenario.new_rows, DATASET)
    view.log("data", f"snapshot 2 lands in storage: {second.row_count} newly labeled rows, "
                     f"most of them of the new subtopics")


def _on_event(view: DemoView, event: Event) -> None:
    value = "n/a" if event.value is None else f"{event.value:.3f}"
    kind = "renotify" if event.renotification else event.state.value
    view.log(kind, f"{event.monitor}: {event.previous.value} → {event.state.value} ({value})"
             + (f" → {', '.join('@' + h for h in event.handles)}" if event.handles else ""))


def _on_job(view: DemoView, job: Job) -> None:
    view.job = f"{job.job_id[:8]} {job.state.value}"
    if job.state in {JobState.GATED, JobState.VERIFYING, JobState.SUCCEEDED,
                     JobState.REJECTED, JobState.ROLLED_BACK, JobState.FAILED,
                     JobState.FETCHING_DATA, JobState.TRAINING}:
        extra = ""
        if job.state == JobState.GATED and job.candidate_version:
            extra = f": v{job.candidate_version} passed the gate"
        if job.state == JobState.VERIFYING:
            extra = (f": v{job.candidate_version} deployed, v{job.previous_version} scores the "
                     "same requests in shadow for verification")
        if job.error:
            extra = f": {job.error}"
        view.log("job", f"retrain {job.state.value}{extra}")


def _refresh(view: DemoView, system: DriftloopSystem) -> None:
    now = time.time()
    results = system.metric_store.query("model_confidence", "avg", now - view.options.window,
                                        now, filter={"model": MODEL, SHADOW_TAG: None})
    view.confidence = results[0].value if results else None
    try:
        production = system.registry.resolve(MODEL)
    except NotFoundError:
        view.production = None
    else:
        view.production = production.version
        view.reference = _reference_confidence(production)
    serving = None if view.production is None else str(view.production)
    for status in system.engine.status():
        # groups split by version count for the serving version only (as in monitors_ok):
        # the previous version's groups are retired once v2 is verified
        states = [group.state for group in status.groups
                  if group.group.get("version", serving) == serving]
        worst = max(states, key=_SEVERITY.index) if states else None
        view.states[status.name] = "NO_DATA" if worst is None else worst.value


_SEVERITY = [MonitorState.OK, MonitorState.NO_DATA, MonitorState.WARN, MonitorState.ALERT]


def _reference_confidence(version: ModelVersion) -> float | None:
    """What relative thresholds of the confidence monitor resolve against for ``version``."""
    return reference_value(version.reference, "model_confidence", "avg")


def _loop_closed(system: DriftloopSystem, view: DemoView) -> bool:
    jobs = system.queue.list(model=MODEL, limit=5)
    succeeded = any(job.state == JobState.SUCCEEDED for job in jobs)
    return succeeded and system.monitors_ok(MODEL) and (view.production or 0) >= 2


def _settled(system: DriftloopSystem, window: float) -> bool:
    """Nothing more will happen by itself: no job has run for a window, every monitor group of
    the serving version that is not OK has an ALERT incident that asked for a retrain, and
    every such incident has used up its retries or waits for new labeled data."""
    jobs = system.queue.list(model=MODEL, limit=1)
    if system.queue.active(MODEL) is not None or not jobs:
        return False
    finished_at = jobs[0].finished_at
    if finished_at is None or time.time() < finished_at + window:
        return False
    waiting = 0
    for summary in system.engine.list_incidents(status="open", model=MODEL):
        kinds = {entry.kind for entry in system.engine.get_incident(summary.incident_id).timeline}
        if not kinds & REQUEST_KINDS:
            return False  # a WARN, or an ALERT whose @retrain is still on its way
        if not kinds & SETTLED_KINDS:
            return False
        waiting += 1
    return waiting > 0


SETTLED_KINDS = frozenset({"retries_exhausted", "retry_waiting"})


def _first(view: DemoView, kind: str, text: str) -> float | None:
    for entry in view.timeline:
        if entry.kind == kind and text in entry.message:
            return entry.at
    return None


def _finish(
    options: DemoOptions, console: Console, system: DriftloopSystem, view: DemoView,
    traffic: TrafficGenerator, receiver: NotificationReceiver, scenario: DemoScenario,
    phase2_at: float | None, project: Path,
) -> DemoResult:
    stats = traffic.stats
    warn_at = _first(view, MonitorState.WARN.value, CONFIDENCE_MONITOR + ":")
    alert_at = _first(view, MonitorState.ALERT.value, CONFIDENCE_MONITOR + ":")
    drift_at = _first(view, MonitorState.ALERT.value, DRIFT_MONITOR)
    deployed_at = _first(view, "job", "verifying")
    jobs = system.queue.list(model=MODEL, limit=5)
    final_version = system.registry.resolve(MODEL).version
    ok_now = system.monitors_ok(MODEL)
    reasons = []
    if warn_at is None:
        reasons.append("the confidence monitor never went WARN")
    if alert_at is None:
        reasons.append("the confidence monitor never went ALERT")
    if not any(job.state == JobState.SUCCEEDED for job in jobs):
        reasons.append("no retrain job succeeded: " + ", ".join(
            f"{job.state.value} ({job.error})" for job in jobs) if jobs else "no retrain job ran")
    if final_version < 2:
        reasons.append("v2 was never deployed")
    if not ok_now:
        reasons.append("the monitors were not OK at the end")
    if stats.failed:
        reasons.append(f"{stats.failed} requests failed: {stats.failures[:3]}")

    def since_phase2(at: float | None) -> float | None:
        return None if at is None or phase2_at is None else round(at - phase2_at, 1)

    recovered_at = _first(view, "closed", "")
    summary: dict[str, Any] = {
        "closed": not reasons,
        "trainer": options.trainer,
        "speed": options.speed,
        "window_seconds": options.window,
        "drifting_subtopics": list(options.drifting),
        "thresholds": _thresholds_summary(system, stats.versions),
        "monitors_note": monitors_note(system.config, view.v1_reference),
        "seconds_total": round(time.time() - view.started, 1),
        "seconds_to_train_v1": None if view.training_v1 is None else round(view.training_v1, 1),
        "seconds_retrain_job_to_deploy": _job_to_deploy(jobs),
        "requests": stats.requests,
        "texts": stats.texts,
        "failed_requests": stats.failed,
        "versions_served": dict(stats.versions),
        "final_production_version": final_version,
        "seconds_to_drift_detector": since_phase2(drift_at),
        "seconds_to_warn": since_phase2(warn_at),
        "seconds_to_alert": since_phase2(alert_at),
        "seconds_to_deploy": since_phase2(deployed_at),
        "seconds_to_recover": since_phase2(recovered_at),
        "accuracy_pre_drift": stats.accuracy("known", "1"),
        "accuracy_after_retrain": stats.accuracy("drifted", str(final_version)),
        "accuracy_drifted_traffic": {
            version: stats.accuracy("drifted", version) for version in sorted(stats.versions)
        },
        "accuracy_known_traffic": {
            version: stats.accuracy("known", version) for version in sorted(stats.versions)
        },
        "notifications_received": [r.to_dict() for r in receiver.received()],
        "jobs": [job.to_dict() for job in jobs],
        "reasons": reasons,
        "project": str(project),
    }
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    data = StoreDashboardData(
        database=system.database, metric_store=system.metric_store,
        monitors=list(system.config.monitors), registry=system.registry, jobs=system.queue,
        models=[MODEL],
    )
    paths = generate_report(data, out / "report", model=MODEL, since=view.started)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "timeline.json").write_text(json.dumps(
        [{"at": e.at, "kind": e.kind, "message": e.message} for e in view.timeline], indent=2))
    _print_summary(console, summary, receiver, paths.index_html, paths.events_json)
    return DemoResult(not reasons, reasons, summary, out, view.timeline)


def _thresholds_summary(system: DriftloopSystem, versions: Iterable[str]) -> dict[str, Any]:
    """The confidence monitor's levels as configured and, per served version, resolved against
    its reference."""
    monitor = confidence_monitor(system.config)
    assert monitor.below is not None
    resolved: dict[str, dict[str, float | None]] = {}
    for version in sorted(versions, key=int):
        reference = _reference_confidence(system.registry.get_version(MODEL, int(version)))
        warning, critical = confidence_levels(system.config, reference)
        resolved[version] = {"reference": reference, "warning": warning, "critical": critical}
    return {"warning": str(monitor.below.warning), "critical": str(monitor.below.critical),
            "per_version": resolved}


def _job_to_deploy(jobs: list[Job]) -> float | None:
    """Seconds from the retrain job's creation to its deploy (fetch, train, gate)."""
    for job in jobs:
        if job.deployed_at is not None:
            return round(job.deployed_at - job.created_at, 1)
    return None


def _print_summary(console: Console, summary: dict[str, Any], receiver: NotificationReceiver,
                   index: Path, events: Path) -> None:
    received = receiver.received()
    for request in received[:6]:
        body = json.dumps(request.body)[:300]
        console.print(f"[bold]{request.service}[/] received {request.method} {request.path}: "
                      f"{body}", highlight=False)
    if len(received) > 6:
        console.print(f"... and {len(received) - 6} more notification requests")
    table = Table(title="driftloop demo summary")
    table.add_column("measure")
    table.add_column("value", justify="right")

    def fmt(value: Any) -> str:
        if value is None:
            return "n/a"
        if isinstance(value, float):
            return f"{value:.3f}"
        return str(value)

    def seconds(value: Any) -> str:
        return "n/a" if value is None else f"{value:.1f}"

    for label, key in [("seconds to drift detector ALERT", "seconds_to_drift_detector"),
                       ("seconds to WARN", "seconds_to_warn"),
                       ("seconds to ALERT", "seconds_to_alert"),
                       ("seconds to deploy of the new version", "seconds_to_deploy"),
                       ("seconds to recovery (monitors OK)", "seconds_to_recover"),
                       ("requests / texts", None), ("failed requests", "failed_requests"),
                       ("production version at the end", "final_production_version")]:
        if key is None:
            table.add_row(label, f"{summary['requests']} / {summary['texts']}")
        else:
            table.add_row(label, (seconds if key.startswith("seconds") else fmt)(summary[key]))
    for version, accuracy in summary["accuracy_drifted_traffic"].items():
        table.add_row(f"accuracy of v{version} on drifted traffic", fmt(accuracy))
    for version, levels in summary["thresholds"]["per_version"].items():
        table.add_row(f"v{version} reference / warn / alert levels",
                      " / ".join(fmt(levels[key]) for key in ("reference", "warning", "critical")))
    for label, key in [("seconds to train v1", "seconds_to_train_v1"),
                       ("seconds from retrain job to deploy", "seconds_retrain_job_to_deploy"),
                       ("seconds in all", "seconds_total")]:
        table.add_row(label, seconds(summary[key]))
    console.print(table)
    console.print(f"report: {index}\nevents: {events}")
    if summary["closed"]:
        console.print("[bold green]the loop closed[/]")
    else:
        console.print("[bold red]the loop did not close:[/] " + "; ".join(summary["reasons"]))


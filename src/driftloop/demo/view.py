"""The demo's live terminal view: phase, traffic, confidence against its thresholds, monitor
states and the latest events, fed by the system's event and job hooks."""

from __future__ import annotations

import threading
import time

from rich.console import Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from driftloop.config import Config
from driftloop.dashboard.data import TimelineEntry
from driftloop.demo.config import DemoOptions, confidence_levels
from driftloop.demo.traffic import TrafficGenerator
from driftloop.errors import NotFoundError
from driftloop.messages import MISSING_VALUE, format_value
from driftloop.metrics.points import SHADOW_TAG
from driftloop.monitors.events import Event, MonitorState
from driftloop.monitors.thresholds import reference_value
from driftloop.pipeline.queue import Job, JobState
from driftloop.registry import ModelVersion
from driftloop.system import DriftloopSystem

STATE_STYLE = {"OK": "green", "WARN": "yellow", "ALERT": "bold red", "NO_DATA": "dim"}
_SEVERITY = [MonitorState.OK, MonitorState.NO_DATA, MonitorState.WARN, MonitorState.ALERT]
_LOGGED_JOB_STATES = frozenset(
    {
        JobState.GATED,
        JobState.VERIFYING,
        JobState.SUCCEEDED,
        JobState.REJECTED,
        JobState.ROLLED_BACK,
        JobState.FAILED,
        JobState.FETCHING_DATA,
        JobState.TRAINING,
    }
)


def reference_confidence(version: ModelVersion) -> float | None:
    """What relative thresholds of the confidence monitor resolve against for ``version``."""
    return reference_value(version.reference, "model_confidence", "avg")


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
        self.drifted_features: list[str] = []
        """The features a ``feature.*`` monitor found drifted, in the order it found them."""
        self.production: int | None = None
        self.job: str = "none"
        self.traffic: TrafficGenerator | None = None
        self.config: Config | None = None
        self._lock = threading.Lock()

    def log(self, kind: str, message: str) -> None:
        with self._lock:
            self.timeline.append(TimelineEntry(time.time(), kind, message))

    def first(self, kind: str, text: str) -> float | None:
        """When the first entry of ``kind`` whose message holds ``text`` was logged."""
        for entry in self.timeline:
            if entry.kind == kind and text in entry.message:
                return entry.timestamp
        return None

    def render(self) -> Panel:
        now = time.time()
        head = Table.grid(padding=(0, 2))
        head.add_column(style="bold")
        head.add_column()
        head.add_row("phase", self.phase)
        head.add_row("elapsed", f"{now - self.started:5.1f}s")
        if self.traffic is not None:
            stats = self.traffic.stats
            head.add_row(
                "traffic",
                f"{stats.requests_per_second(now):5.1f} req/s, "
                f"{stats.texts} texts, failed {stats.failed}",
            )
        confidence = format_value(self.confidence)
        warning, critical = (
            (None, None)
            if self.config is None
            else confidence_levels(
                self.config, self.reference, self.options.names.confidence_monitor
            )
        )
        levels = (
            f"warn < {format_value(warning)}, alert < {format_value(critical)}, "
            f"window {self.options.window:g}s"
        )
        head.add_row("avg confidence", f"{confidence}  ({levels})")
        production = MISSING_VALUE if self.production is None else f"v{self.production}"
        head.add_row("production", production)
        head.add_row("retrain job", self.job)
        for name, state in sorted(self.states.items()):
            head.add_row(name, f"[{STATE_STYLE.get(state, '')}]{state}[/]")
        events = Table("t", "event", box=None, show_header=False)
        with self._lock:
            recent = self.timeline[-12:]
        for entry in recent:
            events.add_row(
                f"{entry.timestamp - self.started:6.1f}s",
                f"[bold]{entry.kind}[/] {escape(entry.message)}",
            )
        # as wide as its text: a console that is not a terminal does not wrap (cli.app)
        return Panel(Group(head, events), title="driftloop demo: the closed loop", expand=False)

    def on_event(self, event: Event) -> None:
        """The system's event listener: every monitor transition goes on the timeline."""
        value = format_value(event.value)
        kind = "renotify" if event.renotification else event.state.value
        for feature in event.details.get("drifted_features") or ():
            if feature not in self.drifted_features:
                self.drifted_features.append(str(feature))
        self.log(
            kind,
            f"{event.monitor}: {event.previous.value} → {event.state.value} ({value})"
            + (f" → {', '.join('@' + h for h in event.handles)}" if event.handles else ""),
        )

    def on_job(self, job: Job) -> None:
        """The pipeline's state hook: the retrain job's progress."""
        self.job = f"{job.job_id[:8]} {job.state.value}"
        if job.state not in _LOGGED_JOB_STATES:
            return
        extra = ""
        if job.state == JobState.GATED and job.candidate_version:
            extra = f": v{job.candidate_version} passed the gate"
        if job.state == JobState.VERIFYING:
            extra = (
                f": v{job.candidate_version} deployed, v{job.previous_version} scores the "
                "same requests in shadow for verification"
            )
        if job.error:
            extra = f": {job.error}"
        self.log("job", f"retrain {job.state.value}{extra}")

    def refresh(self, system: DriftloopSystem) -> None:
        """Read the confidence, the production version and the monitor states anew."""
        now = time.time()
        results = system.metric_store.query(
            "model_confidence",
            "avg",
            now - self.options.window,
            now,
            filter={"model": self.options.names.model, SHADOW_TAG: None},
        )
        self.confidence = results[0].value if results else None
        try:
            production = system.registry.resolve(self.options.names.model)
        except NotFoundError:
            self.production = None
        else:
            self.production = production.version
            self.reference = reference_confidence(production)
        serving = None if self.production is None else str(self.production)
        for status in system.monitor_engine.status():
            # groups split by version count for the serving version only (as in monitors_ok):
            # the previous version's groups are retired once v2 is verified
            states = [
                group.state
                for group in status.groups
                if group.group.get("version", serving) == serving
            ]
            worst = max(states, key=_SEVERITY.index) if states else None
            self.states[status.name] = "NO_DATA" if worst is None else worst.value

"""The monitor engine: every monitor and group → OK | WARN | ALERT | NO_DATA, transitions as
events, events grouped into incidents, all of it persisted so a restart carries on.

Threshold monitors aggregate their metric over ``[now - evaluation_delay - window,
now - evaluation_delay)`` and judge the value (see :mod:`driftloop.monitors.thresholds`).
Drift monitors feed the raw points that arrived since the last evaluation, per group and in
timestamp order, into a streaming detector built for the group's reference; a drift on any of
those updates puts the group in ALERT until the reference changes (a new model version is
deployed: the detector is reset and the group returns to OK); otherwise the group is WARN while
the detector's latest update warns, and OK again once it no longer does.

Groups are discovered from the tags seen in the window, plus the groups that already have a
state, so that a group whose data stops goes to NO_DATA once the window has been empty for
``no_data.after``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from driftloop.background import BackgroundLoop
from driftloop.config import Config, MonitorConfig
from driftloop.database import Database
from driftloop.errors import (
    BackendUnavailableError,
    ConfigError,
    DriftloopError,
    InvalidInputError,
)
from driftloop.messages import MessageTemplate
from driftloop.metrics.points import AggregateResult, MetricPoint, MetricStore
from driftloop.monitors.detectors import DetectorFactory, DriftDetector
from driftloop.monitors.evaluation_run import (
    EvaluationRun,
    ReferenceKeys,
    ReferenceProvider,
    ServedVersions,
)
from driftloop.monitors.events import RETIRED_REASON, Event, MonitorState, transition_flags
from driftloop.monitors.feature_sets import (
    drift_metrics,
    drift_points,
    drifted_features,
    feed,
    monitored_model,
)
from driftloop.monitors.history import GroupState, MonitorStateStore, group_key
from driftloop.monitors.history import MonitorStatus as MonitorStatus  # its old home: re-exported
from driftloop.monitors.incidents import Incident, IncidentStatus, IncidentStore
from driftloop.monitors.series import group_points, series_filter
from driftloop.monitors.status import monitor_statuses
from driftloop.monitors.thresholds import judge, reference_value, resolve_thresholds
from driftloop.monitors.timeline import TimelineEntry
from driftloop.monitors.transitions import (
    BAD_STATES,
    event_id,
    incident_ops,
    message_variables,
    open_incident,
)
from driftloop.predictors import ReferenceProfile

logger = logging.getLogger(__name__)

EventListener = Callable[[Event], None]
PersistHook = Callable[[Connection, Sequence[Event]], None]
"""Runs first in the transaction that stores an evaluation, with its events: the control plane's
fence (a refusal rolls the evaluation back) and the router's record of what it must send."""
ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(monitors_done, monitors_total)``."""


class MonitorEngine:
    """Evaluates ``config.monitors`` against a metric store, on demand or on a schedule."""

    def __init__(
        self,
        config: Config,
        database: Database,
        metric_store: MetricStore,
        *,
        clock: Callable[[], float] = time.time,
        listeners: Sequence[EventListener] = (),
        reference_provider: ReferenceProvider | None = None,
        detector_factory: DetectorFactory | None = None,
        served_versions: ServedVersions | None = None,
        on_persist: PersistHook | None = None,
    ) -> None:
        self.config = config
        self.database = database
        self.metric_store = metric_store
        self.clock = clock
        self.listeners = list(listeners)
        self.reference_provider = reference_provider
        self.detector_factory = detector_factory
        self.served_versions = served_versions
        self.on_persist = on_persist
        """Which versions each model serves: groups of the others (a ``version`` tag no alias
        serves any more) are retired; None: never."""
        self.state_store = MonitorStateStore(database)
        self.incidents = IncidentStore(database, clock=clock)
        self.monitors: dict[str, MonitorConfig] = {m.name: m for m in config.monitors}
        self.templates = {
            m.name: MessageTemplate(m.message, name=f"monitor {m.name!r}: message")
            for m in config.monitors
        }
        self.errors: dict[str, str] = {}
        """The last evaluation's error of each monitor that failed (the others went on)."""
        self._detectors: dict[tuple[str, str], tuple[DriftDetector, str | None]] = {}
        self._reference_keys = ReferenceKeys()
        self._evaluate_lock = threading.Lock()
        self._loop: BackgroundLoop | None = None

    # ------------------------------------------------------------------ evaluation

    def evaluate(
        self, now: float | None = None, *, progress: ProgressCallback | None = None
    ) -> list[Event]:
        """Evaluate every monitor for every group at ``now`` (default: the clock); returns the
        events (transitions and renotifications), already stored and handed to the listeners."""
        with self._evaluate_lock:
            run = EvaluationRun(self.clock() if now is None else float(now))
            states = self.state_store.load_states()
            by_monitor: dict[str, dict[str, GroupState]] = {}
            for (name, key), state in states.items():
                by_monitor.setdefault(name, {})[key] = state
            total = len(self.monitors)
            for done, monitor in enumerate(self.monitors.values(), start=1):
                own = by_monitor.get(monitor.name, {})
                try:
                    if monitor.type == "drift":
                        self._evaluate_drift(monitor, own, run)
                    else:
                        self._evaluate_threshold(monitor, own, run)
                    self.errors.pop(monitor.name, None)
                except BackendUnavailableError:
                    raise
                except DriftloopError as exc:
                    self.errors[monitor.name] = exc.message
                    logger.warning("monitor %r not evaluated: %s", monitor.name, exc.message)
                if progress is not None:
                    progress(done, total)
            self._persist(run)
        for event in run.events:
            logger.info(
                "monitor %s %s -> %s for %s (model %s): value %s, threshold %s; "
                "event %s, incident %s%s",
                event.monitor,
                event.previous,
                event.state,
                dict(event.group),
                event.model,
                event.value,
                event.threshold,
                event.event_id,
                event.incident_id,
                " (renotification)" if event.renotification else "",
            )
            for listener in self.listeners:
                try:
                    listener(event)
                except Exception:
                    logger.exception("event listener failed on %s", event.event_id)
        return run.events

    def _persist(self, run: EvaluationRun) -> None:
        try:
            with self.database.engine.begin() as connection:
                if self.on_persist is not None:
                    self.on_persist(connection, run.events)
                for op in run.incident_ops:
                    op(connection)
                self.state_store.delete_states(connection, run.retired)
                self.state_store.save_states(connection, run.touched)
                self.state_store.save_events(connection, run.events)
        except OperationalError as exc:
            raise BackendUnavailableError(
                f"monitor store {self.database.safe_url}: {exc.orig}"
            ) from exc

    def _retire_unserved(
        self,
        monitor: MonitorConfig,
        key: str,
        group: Mapping[str, str],
        states: dict[str, GroupState],
        run: EvaluationRun,
    ) -> bool:
        """Whether ``group`` belongs to a registry version (a ``version`` tag of digits) that
        its model no longer serves: a deploy replaced it, or a rolled-back candidate. Its state,
        if any, is retired: a group in WARN or ALERT, or with an open incident, goes to OK with
        an event that says why (so notifiers close their tickets) and its incident is resolved;
        then the group's row is deleted. Late points of that version are ignored; a version
        served again starts afresh."""
        model, version = group.get("model"), group.get("version")
        if (
            self.served_versions is None
            or model is None
            or version is None
            or not version.isdigit()
        ):
            return False
        served = run.served_by(model, self.served_versions)
        if served is None or version in served:
            return False
        state = states.pop(key, None)
        self._detectors.pop((monitor.name, key), None)
        if state is None:
            return True
        serving = sorted(served, key=lambda v: (len(v), v))
        if state.incident_id is not None or state.state in BAD_STATES:
            if state.incident_id is not None:
                incident_id, now = state.incident_id, run.now
                message = (
                    f"{monitor.name}: version {version} of {model} is no longer served "
                    f"(serving {', '.join(serving)}); it was {state.state}"
                )
                run.incident_ops.append(
                    lambda c: self.incidents.add_timeline_entry(
                        incident_id,
                        "retired",
                        message,
                        {"version": version, "serving": serving},
                        timestamp=now,
                        connection=c,
                    )
                )
            state.value = None
            self._emit(
                monitor,
                state,
                MonitorState.OK,
                run,
                details={"reason": RETIRED_REASON, "serving": serving},
            )
        if state.stored:
            run.retired.append(state)
        return True

    def _reference(self, group: Mapping[str, str], run: EvaluationRun) -> ReferenceProfile | None:
        return run.reference(group, self.reference_provider)

    def _reference_key(self, profile: ReferenceProfile | None) -> str | None:
        return self._reference_keys.key(profile)

    def _evaluate_threshold(
        self, monitor: MonitorConfig, states: dict[str, GroupState], run: EvaluationRun
    ) -> None:
        end = run.now - monitor.evaluation_delay
        start = end - monitor.window
        results = run.aggregate(self.metric_store, monitor, start, end)
        found = {group_key(r.group): r for r in results if r.count > 0 and r.value is not None}
        for key in sorted(set(found) | set(states)):
            result = found.get(key)
            group = result.group if result is not None else states[key].group
            if self._retire_unserved(monitor, key, group, states, run):
                continue
            state = run.group_state(monitor, key, group, states)
            if result is None or result.value is None:
                self._no_data(monitor, state, end, run)
                continue
            state.last_data_at = end
            state.value = result.value
            if monitor.require_full_window and not self._full_window_seen(
                monitor, state, start, end
            ):
                continue
            if result.count >= monitor.min_count:
                self._judge_threshold(monitor, state, result, start, end, run)

    def _full_window_seen(
        self, monitor: MonitorConfig, state: GroupState, start: float, end: float
    ) -> bool:
        """Whether the group's first point (looked up once) lies at or before ``start``."""
        if state.first_seen is None:
            state.first_seen = self.metric_store.earliest(
                monitor.metric,
                start - monitor.window,
                end,
                filter={**series_filter(monitor), **state.group},
            )
        return state.first_seen is not None and state.first_seen <= start

    def _judge_threshold(
        self,
        monitor: MonitorConfig,
        state: GroupState,
        result: AggregateResult,
        start: float,
        end: float,
        run: EvaluationRun,
    ) -> None:
        """Judge the window's value against the thresholds (resolved on the reference) and
        emit the new state, or renotify an unchanged one."""
        assert result.value is not None
        profile = self._reference(state.group, run)
        thresholds = resolve_thresholds(
            monitor, reference_value(profile, monitor.metric, monitor.aggregation)
        )
        if not thresholds.usable:
            return
        current = MonitorState.OK if state.state == MonitorState.NO_DATA else state.state
        verdict = judge(current, result.value, thresholds)
        state.threshold = verdict.threshold
        details = {"count": result.count, "window_start": start, "window_end": end}
        if verdict.state != state.state:
            self._emit(monitor, state, verdict.state, run, details=details)
        else:
            self._maybe_renotify(monitor, state, run, details)

    def _evaluate_drift(
        self, monitor: MonitorConfig, states: dict[str, GroupState], run: EvaluationRun
    ) -> None:
        if self.detector_factory is None:
            raise ConfigError(
                f"monitor {monitor.name!r} is a drift monitor, but this engine has no "
                "detector_factory"
            )
        end = run.now - monitor.evaluation_delay
        default_cursor = end - monitor.window
        cursors = [s.cursor for s in states.values() if s.cursor is not None]
        fetch_start = min([default_cursor, *cursors])
        by_group: dict[str, list[MetricPoint]] = {}
        groups: dict[str, dict[str, str]] = {}
        if fetch_start < end:
            metrics = drift_metrics(monitor, lambda: self._reference(monitored_model(monitor), run))
            points = drift_points(
                self.metric_store, metrics, fetch_start, end, series_filter(monitor)
            )
            by_group, groups = group_points(points, monitor.group_by)
        for key in sorted(set(by_group) | set(states)):
            group = groups.get(key) or states[key].group
            if self._retire_unserved(monitor, key, group, states, run):
                continue
            state = run.group_state(monitor, key, group, states)
            if state.cursor is None:
                state.cursor = default_cursor
            profile = self._reference(state.group, run)
            reference_key = self._reference_key(profile)
            detector = self._detector(monitor, key, profile, reference_key)
            self._follow_reference(monitor, state, detector, reference_key, run)
            fresh = [p for p in by_group.get(key, []) if p.timestamp >= state.cursor]
            state.cursor = max(state.cursor, end)
            if not fresh:
                self._no_data(monitor, state, end, run)
                continue
            state.last_data_at = end
            self._judge_drift(monitor, state, detector, fresh, reference_key, run)

    def _follow_reference(
        self,
        monitor: MonitorConfig,
        state: GroupState,
        detector: DriftDetector,
        reference_key: str | None,
        run: EvaluationRun,
    ) -> None:
        """A stored group whose reference changed (a new version deployed) starts over: its
        detector is reset and a WARN or ALERT returns to OK."""
        if state.stored and state.reference_key != reference_key:
            detector.reset()
            if state.state in BAD_STATES:
                state.value = None
                self._emit(
                    monitor,
                    state,
                    MonitorState.OK,
                    run,
                    details={"reason": "reference changed", "reference": reference_key},
                )
        state.reference_key = reference_key

    def _judge_drift(
        self,
        monitor: MonitorConfig,
        state: GroupState,
        detector: DriftDetector,
        fresh: list[MetricPoint],
        reference_key: str | None,
        run: EvaluationRun,
    ) -> None:
        """Feed the fresh points to the detector: a drift on any of them is ALERT (which stays
        until the reference changes), a warning on the last WARN, otherwise OK."""
        drift = False
        for point in fresh:
            feed(detector, point)
            drift = drift or detector.drift_detected
        warning = detector.warning_detected
        state.value = float(np.mean([p.value for p in fresh]))
        state.threshold = None
        if drift or state.state == MonitorState.ALERT:
            target = MonitorState.ALERT
        elif warning:
            target = MonitorState.WARN
        else:
            target = MonitorState.OK
        details: dict[str, object] = {
            "points": len(fresh),
            "drift_detected": drift,
            "warning_detected": warning,
            "reference": reference_key,
        }
        state.drifted_features = drifted_features(detector)
        if state.drifted_features is not None:  # feature.*: value = features drifted
            details["drifted_features"] = state.drifted_features
            state.value = float(len(state.drifted_features))
        if target != state.state:
            self._emit(monitor, state, target, run, details=details)
        else:
            self._maybe_renotify(monitor, state, run, details)

    def _detector(
        self,
        monitor: MonitorConfig,
        key: str,
        profile: ReferenceProfile | None,
        reference_key: str | None,
    ) -> DriftDetector:
        assert self.detector_factory is not None
        entry = self._detectors.get((monitor.name, key))
        if entry is None or entry[1] != reference_key:
            entry = (self.detector_factory(monitor, profile), reference_key)
            self._detectors[(monitor.name, key)] = entry
        return entry[0]

    def _no_data(
        self, monitor: MonitorConfig, state: GroupState, end: float, run: EvaluationRun
    ) -> None:
        if state.state == MonitorState.NO_DATA:
            if monitor.no_data.notify:
                self._maybe_renotify(monitor, state, run, {})
            return
        last = state.last_data_at if state.last_data_at is not None else state.since
        if end - last >= monitor.no_data.after:
            state.value = None
            state.first_seen = None
            self._emit(
                monitor,
                state,
                MonitorState.NO_DATA,
                run,
                details={"last_data_at": state.last_data_at, "after": monitor.no_data.after},
            )

    def _maybe_renotify(
        self,
        monitor: MonitorConfig,
        state: GroupState,
        run: EvaluationRun,
        details: Mapping[str, Any],
    ) -> None:
        if monitor.renotify is None or state.state == MonitorState.OK:
            return
        last = state.last_notified if state.last_notified is not None else state.since
        if run.now - last >= monitor.renotify:
            self._emit(monitor, state, state.state, run, details=details, renotification=True)

    def _emit(
        self,
        monitor: MonitorConfig,
        state: GroupState,
        new: MonitorState,
        run: EvaluationRun,
        *,
        details: Mapping[str, Any],
        renotification: bool = False,
    ) -> Event:
        """Record ``state`` moving to ``new`` (or, for a renotification, staying there): the
        event with its rendered message, and the incident operations that go with it."""
        previous, now, incident_id = state.state, run.now, state.incident_id
        if new in BAD_STATES and incident_id is None:
            incident_id, open_op = open_incident(self.incidents, monitor, state, new, now)
            run.incident_ops.append(open_op)
        flags = transition_flags(
            previous,
            new,
            renotification=renotification,
            retired=details.get("reason") == RETIRED_REASON,
        )
        rendered = self.templates[monitor.name].render(
            message_variables(monitor, state, new, incident_id), flags
        )
        quiet_no_data = new == MonitorState.NO_DATA or (
            previous == MonitorState.NO_DATA and incident_id is None
        )
        event = Event(
            event_id=event_id(
                monitor.name, state.group_key, str(previous), str(new), now, renotification
            ),
            monitor=monitor.name,
            group=dict(state.group),
            previous=previous,
            state=new,
            value=state.value,
            threshold=state.threshold,
            timestamp=now,
            incident_id=incident_id,
            message=rendered.text,
            handles=() if quiet_no_data and not monitor.no_data.notify else rendered.handles,
            renotification=renotification,
            details={
                **details,
                "metric": monitor.metric,
                "aggregation": monitor.aggregation,
                "type": monitor.type,
            },
        )
        run.events.append(event)
        run.incident_ops.extend(incident_ops(self.incidents, monitor, event))
        state.incident_id = None if new == MonitorState.OK else incident_id
        if not renotification:
            state.state = new
            state.since = now
        state.last_notified = now if new != MonitorState.OK else None
        return event

    # ------------------------------------------------------------------ reading

    def status(self, monitor: str | None = None) -> list[MonitorStatus]:
        """The stored state of every configured monitor (or one), without evaluating."""
        return monitor_statuses(self.monitors, self.state_store, self.errors, monitor)

    def history(
        self,
        *,
        monitor: str | None = None,
        model: str | None = None,
        incident_id: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[Event]:
        """Stored events, newest first."""
        if limit < 1:
            raise InvalidInputError(f"limit must be at least 1, got {limit}")
        return self.state_store.list_events(
            monitor=monitor, model=model, incident_id=incident_id, since=since, limit=limit
        )

    def list_incidents(
        self,
        status: IncidentStatus | str | None = None,
        model: str | None = None,
        *,
        limit: int = 100,
    ) -> list[Incident]:
        return self.incidents.list_incidents(status, model, limit=limit)

    def get_incident(self, incident_id: str) -> Incident:
        return self.incidents.get_incident(incident_id)

    def add_timeline_entry(
        self, incident_id: str, kind: str, message: str, data: Mapping[str, Any] | None = None
    ) -> TimelineEntry:
        return self.incidents.add_timeline_entry(incident_id, kind, message, data)

    def open_external_incident(
        self, source: str, model: str | None, title: str, details: Mapping[str, Any] | None = None
    ) -> str:
        return self.incidents.open_external_incident(source, model, title, details)

    # ------------------------------------------------------------------ schedule

    def start(self, interval: float = 10.0) -> None:
        """Evaluate every ``interval`` seconds in a background thread until :meth:`stop`."""
        if interval <= 0:
            raise InvalidInputError(f"evaluation interval must be positive, got {interval}")
        if self.running:
            return
        self._loop = BackgroundLoop(
            self._evaluate_in_background,
            interval,
            name="driftloop-monitors",
            logger=logger,
            failure="monitor evaluation failed",
        )
        self._loop.start()

    def _evaluate_in_background(self) -> None:
        self.evaluate()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the background evaluation (after the evaluation in progress)."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.stop(timeout)

    @property
    def running(self) -> bool:
        return self._loop is not None and self._loop.running

    def forget_detectors(self) -> None:
        """Drop the drift detectors built in memory (a process that leads again after another
        did must not resume from what it saw before): they are rebuilt from the stored cursors."""
        with self._evaluate_lock:
            self._detectors.clear()

"""The monitor engine end to end on a real store: every state transition, recovery thresholds,
relative thresholds, require_full_window, min_count, no-data, renotify, evaluation_delay,
incidents, restart persistence, listeners and the background schedule."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import pytest

from driftloop.config import Config, MonitorConfig
from driftloop.database import Database
from driftloop.metrics.points import MetricPoint
from driftloop.metrics.sql import SqlMetricStore
from driftloop.monitors.engine import MonitorEngine
from driftloop.monitors.events import Event, MonitorState
from driftloop.monitors.incidents import IncidentStatus
from driftloop.predictors import ReferenceProfile
from driftloop.testing.clock import ManualClock
from driftloop.testing.configs import make_config

T0 = 1_699_999_980.0
OK, WARN, ALERT, NO_DATA = (
    MonitorState.OK,
    MonitorState.WARN,
    MonitorState.ALERT,
    MonitorState.NO_DATA,
)
MESSAGE = (
    "Confidence of {{model}} is {{value}} (threshold {{threshold}}).\n"
    "{{#is_warning}}Warning @slack-confidence{{/is_warning}}"
    "{{#is_alert}}Alert @slack-confidence @jira-mlops{{/is_alert}}"
    "{{#is_recovery}}Recovered @slack-confidence{{/is_recovery}}"
    "{{#is_no_data}}No data @pager{{/is_no_data}}"
    "{{#is_renotify}} (still){{/is_renotify}}"
)


def engine_config(*monitors: dict[str, Any]) -> Config:
    """Monitors named ``confidence`` with the message above, and its handles as log notifiers."""
    return make_config(
        monitors=[{"name": "confidence", "message": MESSAGE, **m} for m in monitors],
        notifiers={name: {"type": "log"} for name in ("slack-confidence", "jira-mlops", "pager")},
    )


BELOW = {"warning": 0.8, "critical": 0.7, "warning_recovery": 0.85}


def feed(
    store: SqlMetricStore,
    start: float,
    end: float,
    value: float,
    *,
    model: str = "a",
    every: float = 10.0,
    metric: str = "model_confidence",
) -> None:
    count = int((end - start) // every)
    store.write(
        [MetricPoint(metric, value, start + i * every, {"model": model}) for i in range(count)]
    )


def make_engine(
    database: Database, config: Config, clock: ManualClock, **kwargs: Any
) -> tuple[MonitorEngine, SqlMetricStore]:
    store = SqlMetricStore(database, raw_retention=86400.0, rollup_retention=30 * 86400.0)
    return MonitorEngine(config, database, store, clock=clock, **kwargs), store


def states(engine: MonitorEngine, monitor: str = "confidence") -> dict[str, MonitorState]:
    [status] = engine.status(monitor)
    return {g.group.get("model", ""): g.state for g in status.groups}


def test_lifecycle_ok_warn_alert_warn_ok_with_one_incident(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="driftloop")
    clock = ManualClock(T0)
    seen: list[Event] = []
    engine, store = make_engine(
        database, engine_config({"below": BELOW}), clock, listeners=[seen.append]
    )
    feed(store, T0 - 300, T0, 0.9, model="a")
    feed(store, T0 - 300, T0 + 1500, 0.95, model="b")
    assert engine.evaluate() == []  # new groups start OK silently
    assert states(engine) == {"a": OK, "b": OK}

    steps = [(0.75, WARN), (0.65, ALERT), (0.82, WARN), (0.83, None), (0.9, OK)]
    events: list[Event] = []
    for i, (value, expected) in enumerate(steps, start=1):
        feed(store, T0 + 300 * (i - 1), T0 + 300 * i, value, model="a")
        clock.now = T0 + 300 * i
        produced = engine.evaluate()
        if expected is None:  # 0.83 is above warning but below warning_recovery: stays WARN
            assert produced == []
            continue
        [event] = produced
        assert (event.previous, event.state, event.group) == (
            events[-1].state if events else OK,
            expected,
            {"model": "a"},
        )
        assert event.value == pytest.approx(value)
        events.append(event)
    assert seen == events
    warn, alert, back_to_warn, recovery = events
    # each transition is one log line with its ids (#21 part 1)
    logged = [r.getMessage() for r in caplog.records if r.name == "driftloop.monitors.engine"]
    assert logged[1] == (
        f"monitor confidence WARN -> ALERT for {{'model': 'a'}} (model a): "
        f"value {alert.value}, threshold {alert.threshold}; event "
        f"{alert.event_id}, incident {alert.incident_id}"
    )
    assert len(logged) == len(events)
    assert warn.message == ("Confidence of a is 0.75 (threshold 0.8).\nWarning @slack-confidence")
    assert warn.handles == ("slack-confidence",)
    assert alert.handles == ("slack-confidence", "jira-mlops")
    assert alert.threshold == 0.7
    assert back_to_warn.state == WARN
    assert back_to_warn.previous == ALERT
    assert recovery.is_recovery
    assert recovery.threshold == 0.85
    assert recovery.message.endswith("Recovered @slack-confidence")
    assert len({e.event_id for e in events}) == 4
    assert len({e.incident_id for e in events}) == 1
    assert warn.incident_id is not None

    incident = engine.get_incident(warn.incident_id)
    assert incident.status == IncidentStatus.RESOLVED
    assert incident.resolved_at == T0 + 1500
    assert (incident.monitor, incident.model, incident.severity) == ("confidence", "a", "WARN")
    assert [e.kind for e in incident.timeline] == ["opened"] + ["state_change"] * 4 + ["resolved"]
    assert [e.data.get("event_id") for e in incident.timeline[1:5]] == [e.event_id for e in events]
    assert engine.list_incidents(status="open") == []
    assert [i.incident_id for i in engine.list_incidents(model="a")] == [warn.incident_id]
    assert engine.list_incidents(model="b") == []
    assert [e.event_id for e in engine.history(monitor="confidence")] == [
        e.event_id for e in reversed(events)
    ]


def test_relative_thresholds_per_model_reference(database: Database) -> None:
    clock = ManualClock(T0)
    references = {
        "a": ReferenceProfile([0.95], [10], {"x": 1.0}, mean_confidence=0.95),
        "b": ReferenceProfile([0.80], [10], {"x": 1.0}, mean_confidence=0.80),
    }

    def provider(group: Mapping[str, str]) -> ReferenceProfile | None:
        return references.get(group.get("model", ""))

    config = engine_config({"below": {"warning": "reference - 0.05"}})
    engine, store = make_engine(database, config, clock, reference_provider=provider)
    feed(store, T0 - 300, T0, 0.88, model="a")  # below 0.95 - 0.05
    feed(store, T0 - 300, T0, 0.78, model="b")  # above 0.80 - 0.05
    feed(store, T0 - 300, T0, 0.10, model="c")  # no reference yet: no verdict
    [event] = engine.evaluate()
    assert (dict(event.group), event.state) == ({"model": "a"}, WARN)
    assert event.threshold == pytest.approx(0.90)
    assert states(engine) == {"a": WARN, "b": OK, "c": OK}


def test_require_full_window_waits_for_a_whole_window_of_data(database: Database) -> None:
    clock = ManualClock(T0 + 300)
    config = engine_config({"below": BELOW, "window": 300, "require_full_window": True})
    engine, store = make_engine(database, config, clock)
    feed(store, T0 + 100, T0 + 600, 0.5)  # data starts 200 s into the first window
    assert engine.evaluate() == []
    clock.now = T0 + 450  # window [T0+150, T0+450): data started before it
    [event] = engine.evaluate()
    assert event.state == ALERT

    plain, _plain_store = make_engine(
        database, engine_config({"name": "plain", "below": BELOW}), ManualClock(T0 + 300)
    )
    assert [e.state for e in plain.evaluate()] == [ALERT]  # without the option: at once


def test_min_count(database: Database) -> None:
    clock = ManualClock(T0)
    engine, store = make_engine(database, engine_config({"below": BELOW, "min_count": 5}), clock)
    feed(store, T0 - 40, T0, 0.5)  # 4 points
    assert engine.evaluate() == []
    feed(store, T0, T0 + 10, 0.5)
    clock.now = T0 + 10
    assert [e.state for e in engine.evaluate()] == [ALERT]


def test_no_data_after_and_back(database: Database) -> None:
    clock = ManualClock(T0)
    config = engine_config(
        {"below": BELOW, "no_data": {"after": 600, "notify": True}},
        {"name": "quiet", "below": BELOW, "no_data": {"after": 600, "notify": False}},
    )
    engine, store = make_engine(database, config, clock)
    feed(store, T0 - 300, T0, 0.9)
    assert engine.evaluate() == []
    for now in (T0 + 300, T0 + 599):  # the last window with data ended at T0; < 600 s ago
        clock.now = now
        assert engine.evaluate() == []
    clock.now = T0 + 600
    loud, quiet = engine.evaluate()
    assert (loud.monitor, loud.previous, loud.state, loud.value) == (
        "confidence",
        OK,
        NO_DATA,
        None,
    )
    assert loud.handles == ("pager",)
    assert "No data @pager" in loud.message
    assert (quiet.monitor, quiet.state, quiet.handles) == ("quiet", NO_DATA, ())
    assert loud.incident_id is None  # no data opens no incident
    feed(store, clock.now - 60, clock.now, 0.9)
    back = engine.evaluate()
    assert [(e.previous, e.state) for e in back] == [(NO_DATA, OK), (NO_DATA, OK)]
    assert back[1].handles == ()


def test_renotify_while_alerting(database: Database) -> None:
    clock = ManualClock(T0)
    engine, store = make_engine(database, engine_config({"below": BELOW, "renotify": "10m"}), clock)
    feed(store, T0 - 300, T0 + 1500, 0.5)
    [first] = engine.evaluate()
    assert first.state == ALERT
    assert not first.renotification
    produced: list[Event] = []
    for minutes in (5, 10, 15, 20):
        clock.now = T0 + 60 * minutes
        produced += engine.evaluate()
    assert [e.timestamp for e in produced] == [T0 + 600, T0 + 1200]
    assert all(e.renotification and e.previous == e.state == ALERT for e in produced)
    assert produced[0].message.endswith("(still)")
    assert produced[0].handles == ("slack-confidence", "jira-mlops")
    assert {e.incident_id for e in produced} == {first.incident_id}
    assert first.incident_id is not None
    kinds = [e.kind for e in engine.get_incident(first.incident_id).timeline]
    assert kinds == ["opened", "state_change", "renotified", "renotified"]


def test_evaluation_delay_ignores_the_latest_data(database: Database) -> None:
    clock = ManualClock(T0)
    config = engine_config({"below": BELOW, "window": 300, "evaluation_delay": 120})
    engine, store = make_engine(database, config, clock)
    feed(store, T0 - 600, T0 - 120, 0.9)
    feed(store, T0 - 120, T0, 0.1)
    assert engine.evaluate() == []  # window [T0-420, T0-120) holds only good values
    clock.now = T0 + 300  # window [T0-120, T0+180)
    [event] = engine.evaluate()
    assert event.state == ALERT
    assert event.value == pytest.approx(0.1)
    assert event.details["window_end"] == T0 + 180


def test_state_survives_a_restart(database: Database) -> None:
    clock = ManualClock(T0)
    config = engine_config({"below": BELOW})
    first, store = make_engine(database, config, clock)
    feed(store, T0 - 300, T0 + 300, 0.5)
    [alert] = first.evaluate()
    assert alert.incident_id is not None

    clock.now = T0 + 60
    second, _ = make_engine(database, config, clock)  # a new process on the same database
    assert states(second) == {"a": ALERT}
    assert second.evaluate() == []  # still ALERT: nothing new to say
    feed(store, T0 + 300, T0 + 600, 0.95)
    clock.now = T0 + 600
    [recovery] = second.evaluate()
    assert (recovery.previous, recovery.state) == (ALERT, OK)
    assert recovery.incident_id == alert.incident_id
    assert second.get_incident(alert.incident_id).status == IncidentStatus.RESOLVED


def test_event_ids_are_stable_and_listener_failures_are_contained(tmp_path: Any) -> None:
    ids: list[list[str]] = []
    for name in ("one", "two"):
        database = Database(f"sqlite:///{tmp_path / name}.db")
        database.migrate()
        received: list[Event] = []

        def broken(event: Event) -> None:
            raise RuntimeError("listener bug")

        engine, store = make_engine(
            database,
            engine_config({"below": BELOW}),
            ManualClock(T0),
            listeners=[broken, received.append],
        )
        feed(store, T0 - 300, T0, 0.75)
        events = engine.evaluate()
        assert received == events
        assert len(events) == 1
        ids.append([e.event_id for e in events])
        database.dispose()
    assert ids[0] == ids[1]


def is_running(engine: MonitorEngine) -> bool:
    return engine.running


def test_background_schedule_evaluates_until_stopped(database: Database) -> None:
    clock = ManualClock(T0)
    fired = threading.Event()
    engine, store = make_engine(
        database, engine_config({"below": BELOW}), clock, listeners=[lambda event: fired.set()]
    )
    feed(store, T0 - 300, T0, 0.5)
    engine.start(interval=0.01)
    try:
        assert fired.wait(timeout=30)
        assert is_running(engine)
    finally:
        engine.stop()
    assert not is_running(engine)
    assert states(engine) == {"a": ALERT}


def test_groups_are_per_model_and_a_silent_group_goes_no_data(database: Database) -> None:
    clock = ManualClock(T0)
    config = engine_config({"below": BELOW, "no_data": {"after": 300}})
    engine, store = make_engine(database, config, clock)
    feed(store, T0 - 300, T0, 0.9, model="a")
    feed(store, T0 - 300, T0 + 900, 0.9, model="b")
    engine.evaluate()
    clock.now = T0 + 900
    [event] = engine.evaluate()
    assert (event.group, event.state) == ({"model": "a"}, NO_DATA)
    assert states(engine) == {"a": NO_DATA, "b": OK}


def test_a_shadow_versions_insights_count_only_where_a_monitor_asks_for_them(
    database: Database,
) -> None:
    """During a shadow rollout the candidate scores production's traffic too: its insights
    (tagged ``shadow=true``) must neither lift production's monitor out of ALERT nor double
    its count; a monitor that filters on the tag watches the shadow alone."""
    clock = ManualClock(T0)
    config = engine_config(
        {"below": BELOW},
        {"name": "shadow-confidence", "below": BELOW, "filter": {"shadow": "true"}},
    )
    engine, store = make_engine(database, config, clock)
    feed(store, T0 - 300, T0, 0.5)  # production: low
    store.write(
        [
            MetricPoint(
                "model_confidence", 0.99, T0 - 300 + i * 5, {"model": "a", "shadow": "true"}
            )
            for i in range(60)
        ]
    )
    events = engine.evaluate()
    by_monitor = {(e.monitor, e.state) for e in events}
    assert ("confidence", ALERT) in by_monitor
    assert states(engine) == {"a": ALERT}
    assert states(engine, "shadow-confidence") == {"a": OK}
    [production] = engine.status("confidence")[0].groups
    assert production.value == pytest.approx(0.5)


def test_groups_of_a_version_no_longer_served_are_retired_and_their_incident_resolved(
    database: Database,
) -> None:
    """After a deploy replaces v1, v1's groups get no more points: without retirement they
    would keep their last state (and an open incident) forever. A version served again (a
    rollback) starts afresh."""
    clock = ManualClock(T0)
    served = {"m": {"1"}}
    config = engine_config(
        {
            "below": BELOW,
            "group_by": ["model", "version"],
            "message": "{{#is_retired}}v{{version}} retired{{/is_retired}}"
            "{{^is_retired}}{{state}}{{/is_retired}}",
        }
    )
    engine, store = make_engine(
        database, config, clock, served_versions=lambda model: served.get(model)
    )

    def traffic(version: str, value: float, end: float) -> None:
        store.write(
            [
                MetricPoint(
                    "model_confidence",
                    value,
                    end - 300 + i * 10,
                    {"model": "m", "version": version},
                )
                for i in range(30)
            ]
        )

    def groups() -> dict[str, MonitorState]:
        [status] = engine.status("confidence")
        return {g.group["version"]: g.state for g in status.groups}

    traffic("1", 0.5, T0)
    [alert] = engine.evaluate()
    assert (alert.group, alert.state) == ({"model": "m", "version": "1"}, ALERT)
    assert alert.incident_id is not None

    served["m"] = {"2"}  # a deploy: production -> v2; v1 still has points in the window
    clock.now = T0 + 60
    traffic("2", 0.95, T0 + 60)
    # one event closes v1's group (so that notifiers close their tickets), none for v2 (OK)
    [closed] = engine.evaluate()
    assert (closed.group, closed.previous, closed.state) == (
        {"model": "m", "version": "1"},
        ALERT,
        OK,
    )
    assert closed.details["reason"] == "version no longer served"
    assert (alert.message, closed.message) == ("ALERT", "v1 retired")
    assert closed.details["serving"] == ["2"]
    assert closed.incident_id == alert.incident_id
    assert groups() == {"2": OK}
    incident = engine.get_incident(alert.incident_id)
    assert incident.status == IncidentStatus.RESOLVED
    retired = [e for e in incident.timeline if e.kind == "retired"]
    assert [e.message for e in retired] == [
        "confidence: version 1 of m is no longer served (serving 2); it was ALERT"
    ]

    clock.now = T0 + 120
    traffic("1", 0.5, T0 + 120)  # a server still on v1 for a moment
    assert engine.evaluate() == []
    assert groups() == {"2": OK}

    served["m"] = {"1"}  # a rollback: v1 again, judged afresh
    clock.now = T0 + 180
    traffic("1", 0.5, T0 + 180)
    [again] = engine.evaluate()
    assert (again.group, again.previous, again.state) == ({"model": "m", "version": "1"}, OK, ALERT)
    assert again.incident_id not in {None, alert.incident_id}
    assert groups() == {"1": ALERT}


def test_only_registry_versions_are_retired(database: Database) -> None:
    """A ``version`` tag that is not a registry version number (an external reporter's "v2")
    is never taken for a version the registry stopped serving."""
    clock = ManualClock(T0)
    config = engine_config({"below": BELOW, "group_by": ["model", "version"]})
    engine, store = make_engine(database, config, clock, served_versions=lambda model: {"2"})
    store.write(
        [
            MetricPoint("model_confidence", 0.5, T0 - 300 + i * 10, {"model": "m", "version": "v2"})
            for i in range(30)
        ]
    )
    [event] = engine.evaluate()
    assert (event.group, event.state) == ({"model": "m", "version": "v2"}, ALERT)


class DropDetector:
    """A one-sided CUSUM on drops of the mean below the reference (river-style flags)."""

    def __init__(self, reference_mean: float, warning: float = 1.0, drift: float = 3.0) -> None:
        self.reference_mean = reference_mean
        self.warning_level, self.drift_level = warning, drift
        self.total = 0.0
        self.seen: list[float] = []
        self._drift = self._warning = False

    def update(self, x: float) -> None:
        if self._drift:
            self.total = 0.0
        self.seen.append(x)
        self.total = max(0.0, self.total + self.reference_mean - x)
        self._drift = self.total > self.drift_level
        self._warning = self.total > self.warning_level

    @property
    def drift_detected(self) -> bool:
        return self._drift

    @property
    def warning_detected(self) -> bool:
        return self._warning

    def reset(self) -> None:
        self.total, self._drift, self._warning = 0.0, False, False


def test_drift_monitor_feeds_new_points_and_resets_on_a_new_reference(database: Database) -> None:
    clock = ManualClock(T0)
    version = {"a": ReferenceProfile([0.9], [1], {"x": 1.0}, mean_confidence=0.9)}
    built: list[tuple[str, DropDetector]] = []

    def factory(monitor: MonitorConfig, reference: ReferenceProfile | None) -> DropDetector:
        assert reference is not None
        detector = DropDetector(reference.mean_confidence)
        built.append((monitor.name, detector))
        return detector

    config = engine_config(
        {"name": "drift", "type": "drift", "detector": {"algorithm": "cusum"}, "renotify": None}
    )
    engine, store = make_engine(
        database,
        config,
        clock,
        detector_factory=factory,
        reference_provider=lambda group: version.get(group.get("model", "")),
    )
    written: list[float] = []

    def step(values: list[float]) -> list[Event]:
        start = clock.now
        store.write(
            [
                MetricPoint("model_confidence", v, start + i, {"model": "a"})
                for i, v in enumerate(values)
            ]
        )
        written.extend(values)
        clock.now = start + 60
        return engine.evaluate()

    clock.now = T0 - 60
    assert step([0.9] * 10) == []
    [warn] = step([0.7] * 6)  # CUSUM 1.2 > 1.0
    assert (warn.state, warn.details["warning_detected"]) == (WARN, True)
    [ok] = step([1.0] * 3)  # CUSUM 0.9: warning over
    assert (ok.previous, ok.state) == (WARN, OK)
    [alert] = step([0.7] * 20)  # CUSUM past 3.0
    assert alert.state == ALERT
    assert alert.details["drift_detected"] is True
    assert step([0.9] * 10) == []  # a drift stays ALERT until the reference changes
    [detector_name, detector] = built[0]
    assert detector_name == "drift"
    assert detector.seen == written
    assert len(built) == 1

    version["a"] = ReferenceProfile([0.7], [1], {"x": 1.0}, mean_confidence=0.7)  # v2 deployed
    [reset] = step([0.7] * 10)
    assert (reset.previous, reset.state) == (ALERT, OK)
    assert reset.details["reason"] == "reference changed"
    assert alert.incident_id is not None
    assert reset.incident_id == alert.incident_id
    assert engine.get_incident(alert.incident_id).status == IncidentStatus.RESOLVED
    assert len(built) == 2
    assert built[1][1].reference_mean == 0.7
    assert built[1][1].seen == [0.7] * 10


def test_a_failing_monitor_does_not_stop_the_others(database: Database) -> None:
    clock = ManualClock(T0)
    config = engine_config(
        {"name": "drift", "type": "drift", "detector": {}}, {"name": "plain", "below": BELOW}
    )
    engine, store = make_engine(database, config, clock)  # no detector factory
    feed(store, T0 - 300, T0, 0.5)
    [event] = engine.evaluate()
    assert event.monitor == "plain"
    assert "no detector_factory" in engine.errors["drift"]
    assert {s.name: s.error for s in engine.status()}["drift"] == engine.errors["drift"]

"""The main job: the demo closes the whole loop on embedded defaults, for real."""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import pytest
import yaml
from rich.console import Console

from driftloop.config import parse_config
from driftloop.demo.config import (
    CONFIDENCE_MONITOR,
    TUNINGS,
    DemoOptions,
    demo_config,
    monitors_note,
    tuning_for,
)
from driftloop.demo.receiver import NotificationReceiver
from driftloop.demo.runner import run_demo
from driftloop.demo.scenario import DRIFTING_SUBTOPICS, build_scenario
from driftloop.errors import ConfigError
from driftloop.monitors.events import MonitorState
from driftloop.monitors.thresholds import judge, resolve_thresholds
from driftloop.project import default_config_text
from timeformat import iso_times


def test_scenario_keeps_traffic_out_of_every_snapshot() -> None:
    scenario = build_scenario()
    trained = set(scenario.snapshot_2["text"])
    assert set(scenario.snapshot_1["text"]) <= trained
    assert not set(scenario.known_traffic["text"]) & trained
    assert not set(scenario.drifted_traffic["text"]) & trained
    assert not scenario.snapshot_1["subtopic"].isin(DRIFTING_SUBTOPICS).any()
    assert scenario.drifted_traffic["subtopic"].isin(DRIFTING_SUBTOPICS).all()
    assert set(scenario.snapshot_1["label"]) == set(scenario.snapshot_2["label"])


def test_newest_window_scenario_holds_only_the_newest_rows() -> None:
    cumulative = build_scenario()
    window = build_scenario(newest_window=0.25)
    first, second = set(window.snapshot_1["text"]), set(window.snapshot_2["text"])
    assert not first & second
    assert first | (
        second
        - set(window.snapshot_2.loc[window.snapshot_2["subtopic"].isin(DRIFTING_SUBTOPICS), "text"])
    ) == set(cumulative.snapshot_1["text"])
    assert set(window.snapshot_2["text"]) > set(cumulative.snapshot_2["text"]) - set(
        cumulative.snapshot_1["text"]
    )
    drifting_share = window.snapshot_2["subtopic"].isin(DRIFTING_SUBTOPICS).mean()
    assert 0.4 < drifting_share < 0.5
    assert set(window.snapshot_1["label"]) == set(window.snapshot_2["label"])
    assert not set(window.drifted_traffic["text"]) & (first | second)
    assert not set(window.known_traffic["text"]) & (first | second)
    with pytest.raises(ConfigError, match="newest_window"):
        build_scenario(newest_window=1.0)


@pytest.mark.parametrize("trainer", sorted(TUNINGS))
def test_demo_config_runs_the_init_defaults_with_time_compressed(
    trainer: str, tmp_path: Path
) -> None:
    """The demo decides nothing of its own: its monitors, verification and retry settings are
    the ones 'driftloop init' writes, with windows compressed by --speed and notifications
    routed to its local receivers too."""
    receiver = NotificationReceiver()
    receiver.start()
    try:
        raw = demo_config(DemoOptions(trainer=trainer, speed=15.0), receiver, 8123)
    finally:
        receiver.stop()
    config = parse_config(yaml.safe_dump(raw), base_dir=tmp_path)
    defaults = parse_config(default_config_text(), environ={})
    assert config.models["review-classifier"].params == tuning_for(trainer).params
    assert [m.name for m in config.monitors] == [m.name for m in defaults.monitors]
    for demo, default in zip(config.monitors, defaults.monitors, strict=True):
        assert demo.window == pytest.approx(default.window / 15.0)
        assert demo.min_count == max(1, math.ceil(default.min_count / 15.0))
        for key in ("metric", "aggregation", "group_by", "below", "detector"):
            assert getattr(demo, key) == getattr(default, key), (demo.name, key)
        assert "@retrain" in demo.message or "@retrain" not in default.message
    assert (
        config.pipeline.verify_tolerance,
        config.pipeline.verify_error_rate,
        config.pipeline.max_attempts,
    ) == (
        defaults.pipeline.verify_tolerance,
        defaults.pipeline.verify_error_rate,
        defaults.pipeline.max_attempts,
    )
    # the confidence monitor judges v1's known traffic OK and its drifted traffic ALERT, as
    # measured (v1's reference 0.789, 0.644 on the unseen IMDB reviews)
    monitors = {monitor.name: monitor for monitor in config.monitors}
    resolved = resolve_thresholds(monitors[CONFIDENCE_MONITOR], 0.789)
    assert judge(MonitorState.OK, 0.78, resolved).state == MonitorState.OK
    assert judge(MonitorState.OK, 0.644, resolved).state == MonitorState.ALERT
    note = monitors_note(config, 0.789)
    assert "reference - 0.05" in note
    assert "alert below 0.739" in note


def test_the_receivers_record_says_when_in_iso_8601_utc() -> None:
    """summary.json lists what the receiver got; its times are ISO 8601 UTC (#21 part 5)."""
    receiver = NotificationReceiver()
    receiver.start()
    try:
        answer = httpx.post(receiver.slack_webhook_url, json={"text": "hi"}, timeout=10)
        assert answer.status_code == 200
        (received,) = receiver.received("slack")
    finally:
        receiver.stop()
    assert iso_times(received.to_dict()) == ["$.received_at"]


def test_a_drift_that_leaves_a_class_without_rows_is_refused() -> None:
    with pytest.raises(ConfigError, match="Movies"):
        build_scenario(drifting=("imdb_user_review", "critic_snippet"))
    with pytest.raises(ConfigError, match="must be some of"):
        build_scenario(drifting=("no_such_subtopic",))


def test_an_unknown_trainer_is_refused(tmp_path: Path) -> None:
    with (
        (tmp_path / "console.txt").open("w") as console_file,
        pytest.raises(ConfigError, match="--trainer must be one of sklearn, transformers"),
    ):
        run_demo(
            DemoOptions(trainer="xgboost", out=tmp_path, open_browser=False),
            Console(file=console_file),
        )


@pytest.mark.slow
def test_demo_closes_the_loop(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with (tmp_path / "console.txt").open("w") as console_file:
        result = run_demo(
            DemoOptions(
                speed=30.0,
                out=out,
                open_browser=False,
                project_dir=tmp_path / "project",
                timeout=300.0,
            ),
            Console(file=console_file, width=100),
        )
    assert result.closed, result.reasons

    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed_requests"] == 0
    assert summary["final_production_version"] == 2
    # the confidence threshold may skip WARN (a fast drop between two evaluations) or stay short
    # of ALERT when the drift detector brings v2 first
    alert, warn = summary["seconds_to_alert"], summary["seconds_to_warn"]
    if alert is not None and warn is not None:
        assert warn < alert
    assert summary["seconds_to_drift_detector"] is not None
    assert alert is None or summary["seconds_to_drift_detector"] <= alert
    accuracy = summary["accuracy_drifted_traffic"]
    assert accuracy["2"] > accuracy["1"] + 0.05
    services = {request["service"] for request in summary["notifications_received"]}
    assert services == {"slack", "github"}
    # one timestamp format, ISO 8601 UTC, in every JSON the demo writes (#21 part 5)
    assert iso_times(summary)
    timeline = json.loads((out / "timeline.json").read_text())
    assert timeline
    assert all(iso_times({"timestamp": entry["at"]}) for entry in timeline)

    events = json.loads((out / "report" / "events.json").read_text())["events"]
    transitions = [
        (e["details"]["previous"], e["details"]["state"])
        for e in events
        if e["kind"] == "state_change" and e["details"]["monitor"] == CONFIDENCE_MONITOR
    ]
    assert transitions, transitions  # the confidence threshold saw the drift (WARN or ALERT)
    assert transitions[-1][1] == "OK"
    deployed = [
        e["details"]["version"]
        for e in events
        if e["kind"] == "deploy" and e["details"]["alias"] == "production"
    ]
    assert deployed[-1] == 2
    steps = {e["details"].get("step") for e in events if e["kind"] == "job_step"}
    assert {"fetching_data", "training", "evaluating", "deploying", "verifying"} <= steps
    assert any(e["kind"] == "notification" for e in events)
    # every incident is closed at the end, the drift detector's on v1 too: v1 is no longer
    # served, so its groups are retired
    opened = {e["details"]["incident_id"] for e in events if e["kind"] == "incident_opened"}
    resolved = {e["details"]["incident_id"] for e in events if e["kind"] == "incident_resolved"}
    assert len(opened) >= 2  # the confidence monitor's and the drift detector's
    assert opened <= resolved, (opened, resolved)
    assert (out / "report" / "index.html").is_file()
    assert list((out / "report").glob("*confidence.png"))

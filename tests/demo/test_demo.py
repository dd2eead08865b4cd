"""The main job: the demo closes the whole loop on embedded defaults, for real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from driftloop.config import parse_config
from driftloop.demo.receiver import NotificationReceiver
from driftloop.demo.runner import (
    CONFIDENCE_MONITOR,
    DRIFT_MONITOR,
    TUNINGS,
    DemoOptions,
    DemoThresholds,
    demo_config,
    run_demo,
    threshold_note,
    tuning_for,
)
from driftloop.demo.scenario import DRIFTING_SUBTOPICS, build_scenario
from driftloop.errors import ConfigError
from driftloop.monitors.events import MonitorState
from driftloop.monitors.thresholds import judge, resolve_thresholds


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
    assert first | (second - set(window.snapshot_2.loc[
        window.snapshot_2["subtopic"].isin(DRIFTING_SUBTOPICS), "text"])) == set(
        cumulative.snapshot_1["text"])
    assert set(window.snapshot_2["text"]) > set(cumulative.snapshot_2["text"]) - set(
        cumulative.snapshot_1["text"])
    drifting_share = window.snapshot_2["subtopic"].isin(DRIFTING_SUBTOPICS).mean()
    assert 0.4 < drifting_share < 0.5
    assert set(window.snapshot_1["label"]) == set(window.snapshot_2["label"])
    assert not set(window.drifted_traffic["text"]) & (first | second)
    assert not set(window.known_traffic["text"]) & (first | second)
    with pytest.raises(ConfigError, match="newest_window"):
        build_scenario(newest_window=1.0)


def test_relative_thresholds_follow_each_versions_reference() -> None:
    levels = DemoThresholds(warning=-0.08, critical=-0.15, relative=True)
    assert levels.below() == {"warning": "reference - 0.08", "critical": "reference - 0.15",
                              "warning_recovery": "reference - 0.07",
                              "critical_recovery": "reference - 0.14"}
    assert levels.resolve(None) == (None, None)
    warning, critical = levels.resolve(0.76)
    assert warning == pytest.approx(0.68)
    assert critical == pytest.approx(0.61)
    absolute = DemoThresholds(warning=0.75, critical=0.70)
    assert absolute.below()["warning_recovery"] == 0.76
    assert absolute.resolve(None) == (0.75, 0.70)


@pytest.mark.parametrize("trainer", sorted(TUNINGS))
def test_demo_config_is_a_valid_project_whose_monitor_judges_the_scenario(
    trainer: str, tmp_path: Path
) -> None:
    receiver = NotificationReceiver()
    receiver.start()
    try:
        raw = demo_config(DemoOptions(trainer=trainer), receiver, 8123)
    finally:
        receiver.stop()
    config = parse_config(yaml.safe_dump(raw), base_dir=tmp_path)
    tuning = tuning_for(trainer)
    assert config.models["review-classifier"].params == tuning.params
    monitors = {monitor.name: monitor for monitor in config.monitors}
    detector = monitors[DRIFT_MONITOR].detector
    assert detector is not None
    assert detector.min_shift == tuning.drift_min_shift
    # the levels the monitor engine resolves, with the confidences measured on the scenario
    # (see TrainerTuning.rationale): v1 serves the known subtopics at its reference (OK) and
    # the unseen one far under it (ALERT); once in ALERT, v2 on the unseen subtopic brings the
    # monitor back to OK; a middling drop is a WARN
    reference, v1_drifted, v2_drifted, middling = {
        "sklearn": (0.79, 0.64, 0.79, 0.73),
        "transformers": (0.77, 0.77 - 0.27, 0.77 - 0.04, 0.77 - 0.10),
    }[trainer]
    resolved = resolve_thresholds(monitors[CONFIDENCE_MONITOR], reference)
    assert judge(MonitorState.OK, reference, resolved).state == MonitorState.OK
    assert judge(MonitorState.OK, v1_drifted, resolved).state == MonitorState.ALERT
    assert judge(MonitorState.ALERT, v2_drifted, resolved).state == MonitorState.OK
    assert judge(MonitorState.OK, middling, resolved).state == MonitorState.WARN
    note = threshold_note(tuning, reference)
    assert f"{reference:.3f}" in note
    if tuning.thresholds.relative:
        assert "warn below 0.690, alert below 0.620" in note


def test_an_unknown_trainer_is_refused(tmp_path: Path) -> None:
    with (tmp_path / "console.txt").open("w") as console_file, pytest.raises(
        ConfigError, match="--trainer must be one of sklearn, transformers"
    ):
        run_demo(DemoOptions(trainer="xgboost", out=tmp_path, open_browser=False),
                 Console(file=console_file))


@pytest.mark.slow
def test_demo_closes_the_loop(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with (tmp_path / "console.txt").open("w") as console_file:
        result = run_demo(
            DemoOptions(speed=30.0, out=out, open_browser=False,
                        project_dir=tmp_path / "project", timeout=300.0),
            Console(file=console_file, width=100),
        )
    assert result.closed, result.reasons

    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed_requests"] == 0
    assert summary["final_production_version"] == 2
    assert summary["seconds_to_warn"] < summary["seconds_to_alert"]
    assert summary["seconds_to_drift_detector"] <= summary["seconds_to_alert"]
    accuracy = summary["accuracy_drifted_traffic"]
    assert accuracy["2"] > accuracy["1"] + 0.05
    services = {request["service"] for request in summary["notifications_received"]}
    assert services == {"slack", "github"}

    events = json.loads((out / "report" / "events.json").read_text())["events"]
    transitions = [
        (e["details"]["previous"], e["details"]["state"])
        for e in events
        if e["kind"] == "state_change" and e["details"]["monitor"] == CONFIDENCE_MONITOR
    ]
    assert ("OK", "WARN") in transitions
    assert ("WARN", "ALERT") in transitions
    assert transitions[-1][1] == "OK"
    deployed = [e["details"]["version"] for e in events
                if e["kind"] == "deploy" and e["details"]["alias"] == "production"]
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

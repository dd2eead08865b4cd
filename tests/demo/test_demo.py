"""The main job: the demo closes the whole loop on embedded defaults, for real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from driftloop.demo.runner import (
    CONFIDENCE_MONITOR,
    DemoOptions,
    run_demo,
)
from driftloop.demo.scenario import DRIFTING_SUBTOPICS, build_scenario


def test_scenario_keeps_traffic_out_of_every_snapshot() -> None:
    scenario = build_scenario()
    trained = set(scenario.snapshot_2["text"])
    assert set(scenario.snapshot_1["text"]) <= trained
    assert not set(scenario.known_traffic["text"]) & trained
    assert not set(scenario.drifted_traffic["text"]) & trained
    assert not scenario.snapshot_1["subtopic"].isin(DRIFTING_SUBTOPICS).any()
    assert scenario.drifted_traffic["subtopic"].isin(DRIFTING_SUBTOPICS).all()
    assert set(scenario.snapshot_1["label"]) == set(scenario.snapshot_2["label"])


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
    assert any(e["kind"] == "incident_resolved" for e in events)
    assert (out / "report" / "index.html").is_file()
    assert list((out / "report").glob("*confidence.png"))

"""Job.result is typed, and reads what older driftloops stored."""

from __future__ import annotations

from driftloop.pipeline.results import JobResult

DISPATCH = {
    "model_name": "review-classifier",
    "correlation_id": "inc-1",
    "incident_id": "inc-1",
    "inputs": {
        "model": "review-classifier",
        "incident_id": "inc-1",
        "dataset_snapshot": "snap-7",
        "callback_url": "",
    },
    "baseline_version": 1,
    "dispatched_at": 1_700_000_000.0,
    "repo": "acme/training",
    "workflow": "train.yml",
    "ref": "main",
}


def test_an_empty_result_reads_as_a_result_with_nothing_recorded() -> None:
    assert JobResult.from_json(None) == JobResult() == JobResult.from_json({})
    assert JobResult().to_json() == {}


def test_fields_round_trip_and_unknown_keys_are_kept() -> None:
    stored = {
        "gate": {"accepted": True},
        "deploy_mode": "canary",
        "verification": ["line"],
        "from_a_newer_driftloop": [1, 2],
    }

    result = JobResult.from_json(stored)

    assert result.gate == {"accepted": True}
    assert result.deploy_mode == "canary"
    assert result.verification == ["line"]
    assert result.to_json() == stored
    assert result.with_changes(deploy_mode="direct").to_json()["deploy_mode"] == "direct"


def test_an_old_dispatch_record_reads_as_the_github_dispatch_run() -> None:
    result = JobResult.from_json({"dispatch": DISPATCH, "gate": None})

    assert result.remote_run == {
        "trainer": "github_dispatch",
        "snapshot_id": "snap-7",
        "summary": "dispatched train.yml on acme/training@main (id inc-1)",
        "state": DISPATCH,
    }
    assert "dispatch" not in result.to_json()  # written back in today's shape


def test_a_remote_run_recorded_today_wins_over_an_old_dispatch_record() -> None:
    run: dict[str, object] = {
        "trainer": "github_dispatch",
        "snapshot_id": None,
        "summary": "s",
        "state": {},
    }

    assert JobResult.from_json({"dispatch": DISPATCH, "remote_run": run}).remote_run == run

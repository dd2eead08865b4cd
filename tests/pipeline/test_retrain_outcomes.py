"""Retrain outcomes are notified like transitions: a gate rejection, a failure, a rollback and a
success reach the incident monitor's handles (Slack, a comment on the Jira issue, a signed
webhook), never ``@retrain``; an ``@retrain`` in the cooldown is logged and on the incident."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from driftloop.monitors.events import Event, MonitorState
from driftloop.pipeline.queue import JobState
from driftloop.pipeline.runner import RetrainPipeline
from notify.fake_services import (
    JIRA_TOKEN,
    SLACK_WEBHOOK_PATH,
    FakeApiServer,
    JiraFake,
    Reply,
    SlackFake,
    running_server,
)
from pipeline.world import MODEL, PipelineWorld, ScriptedHealthProbe

HOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MESSAGE = (
    "{{#is_alert}}confidence of {{model}} is {{value}} @slack-ops @jira-ops @ops-hook "
    "@retrain{{/is_alert}}\n"
    "{{#is_rejected}}Rejected: macro-F1 {{candidate_macro_f1}} vs production "
    "{{production_macro_f1}} on {{holdout_rows}} rows, job {{job_url}}{{/is_rejected}}"
)


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with running_server() as fake:
        yield fake


def outcome_world(tmp_path: Path, server: FakeApiServer, **pipeline: object) -> PipelineWorld:
    server.route("POST", "/hook", lambda _request: Reply(204, {}))
    world = PipelineWorld.create(
        tmp_path,
        pipeline=pipeline,
        extra={
            "public_url": "https://driftloop.example.com",
            "notifiers": {
                "slack-ops": {"type": "slack", "webhook_url": server.url + SLACK_WEBHOOK_PATH},
                "jira-ops": {
                    "type": "jira",
                    "url": server.url,
                    "project": "MLOPS",
                    "token": JIRA_TOKEN,
                },
                "ops-hook": {
                    "type": "webhook",
                    "url": server.url + "/hook",
                    "hmac_secret": HOOK_SECRET,
                    "payload": {
                        "outcome": "{{retrain_outcome}}",
                        "job": "{{job_url}}",
                        "gate": "{{gate}}",
                        "title": "{{title}}",
                        "error": "{{error}}",
                    },
                },
            },
            "monitors": [
                {
                    "name": "confidence",
                    "metric": "model_confidence",
                    "aggregation": "avg",
                    "window": "60s",
                    "group_by": ["model"],
                    "min_count": 5,
                    "below": {"warning": 0.5, "critical": 0.4},
                    "message": MESSAGE,
                }
            ],
        },
    )
    world.train_production()
    world.push(world.snapshots.drifted)
    return world


def alert_incident(world: PipelineWorld) -> str:
    """An ALERT incident of the monitor, already notified (its Jira issue exists)."""
    system = world.system
    now = world.clock()
    incident = system.engine.incidents.open_monitor_incident(
        "confidence",
        {"model": MODEL},
        json.dumps({"model": MODEL}),
        title="confidence of review-classifier is ALERT",
        severity="ALERT",
        timestamp=now,
    )
    system.router.dispatch(
        Event(
            event_id="evt-alert",
            monitor="confidence",
            group={"model": MODEL},
            previous=MonitorState.WARN,
            state=MonitorState.ALERT,
            value=0.31,
            threshold=0.4,
            timestamp=now,
            incident_id=incident,
            message="confidence is 0.31",
            handles=("jira-ops",),
        )
    )
    return incident


def run_next(world: PipelineWorld) -> JobState:
    system = world.system
    claimed = system.queue.claim("w")
    assert claimed is not None
    pipeline = RetrainPipeline(
        world.config,
        system.queue,
        system.registry,
        system.datasets,
        health=ScriptedHealthProbe(world.clock, ok_from=world.clock.now),
        incidents=system.engine,
        clock=world.clock,
        sleep=world.clock.sleep,
        on_finished=system.notify_retrain_outcome,
    )
    return pipeline.run(claimed, "w").state


def test_a_gate_rejection_reaches_slack_jira_and_the_webhook_with_the_gates_numbers(
    tmp_path: Path, server: FakeApiServer
) -> None:
    SlackFake(server)
    jira = JiraFake(server)
    world = outcome_world(tmp_path, server, gate={"min_macro_f1_gain": 1.0})
    incident = alert_incident(world)
    job_id = world.system.enqueue_retrain(MODEL, incident, "confidence alert")

    assert run_next(world) == JobState.REJECTED

    job = world.system.queue.get(job_id)
    assert job.result is not None
    gate = job.result.gate
    candidate_f1 = f"{gate['candidate']['macro_f1']:.3f}"
    production_f1 = f"{gate['production']['macro_f1']:.3f}"
    job_url = f"https://driftloop.example.com/v1/jobs/{job_id}"
    expected = (
        f"Rejected: macro-F1 {candidate_f1} vs production {production_f1} on "
        f"{gate['holdout_rows']} rows, job {job_url}"
    )

    [slack] = server.to(SLACK_WEBHOOK_PATH)
    assert expected in json.dumps(slack.json())
    assert "[Retrain rejected] confidence on review-classifier" in json.dumps(slack.json())

    [comment] = jira.comments["MLOPS-1"]
    assert comment.startswith("[Retrain rejected] confidence on review-classifier at ")
    assert expected in comment
    assert len(jira.issues) == 1  # a comment on the incident's ticket, no new issue

    [hook] = server.to("/hook")
    payload = Webhook(HOOK_SECRET).verify(hook.body, dict(hook.headers))
    assert payload["outcome"] == "rejected"
    assert payload["job"] == job_url
    assert json.loads(payload["gate"])["accepted"] is False
    assert payload["title"] == "[Retrain rejected] confidence on review-classifier"

    assert [j.job_id for j in world.system.queue.list(model=MODEL)] == [job_id]  # no @retrain
    delivered = {
        (d.notifier, d.status)
        for d in world.system.router.deliveries()
        if d.event_id != "evt-alert"
    }
    assert delivered == {
        ("slack-ops", "delivered"),
        ("jira-ops", "delivered"),
        ("ops-hook", "delivered"),
    }


@pytest.mark.parametrize(
    ("state", "error", "title", "sentence"),
    [
        (
            JobState.FAILED,
            "training failed: out of memory",
            "[Retrain failed]",
            "Retrain of review-classifier: retrain failed: training failed: out of memory.",
        ),
        (
            JobState.ROLLED_BACK,
            "verification failed: worse",
            "[Retrain rolled back]",
            "Retrain of review-classifier: rolled back to v1: verification failed: worse.",
        ),
        (
            JobState.SUCCEEDED,
            None,
            "[Retrain succeeded]",
            "Retrain of review-classifier: retrained and deployed: v2 serves.",
        ),
    ],
)
def test_failures_rollbacks_and_successes_are_notified_too(
    tmp_path: Path,
    server: FakeApiServer,
    state: JobState,
    error: str | None,
    title: str,
    sentence: str,
) -> None:
    SlackFake(server)
    jira = JiraFake(server)
    world = outcome_world(tmp_path, server)
    incident = alert_incident(world)
    system = world.system
    job_id = system.enqueue_retrain(MODEL, incident, "confidence alert")
    job = system.queue.set_state(
        job_id, state, error=error, previous_version=1, candidate_version=2
    )

    system.notify_retrain_outcome(job)
    system.notify_retrain_outcome(job)  # told twice (a resumed worker): delivered once

    [hook] = server.to("/hook")
    payload = Webhook(HOOK_SECRET).verify(hook.body, dict(hook.headers))
    assert payload["title"] == f"{title} confidence on review-classifier"
    assert payload["error"] == (error or "")
    [comment] = jira.comments["MLOPS-1"]
    assert sentence in comment
    assert f"/v1/jobs/{job_id}" in comment
    [slack] = server.to(SLACK_WEBHOOK_PATH)
    assert title in json.dumps(slack.json())


def test_a_cancelled_job_or_one_without_an_incident_is_not_notified(
    tmp_path: Path, server: FakeApiServer
) -> None:
    world = outcome_world(tmp_path, server)
    system = world.system
    cancelled = system.queue.set_state(
        system.enqueue_retrain(MODEL, alert_incident(world), "alert"), JobState.CANCELLED
    )
    system.notify_retrain_outcome(cancelled)
    manual = system.queue.set_state(
        system.enqueue_retrain_manual(MODEL, "by hand"), JobState.SUCCEEDED
    )
    system.notify_retrain_outcome(manual)
    assert server.to("/hook") == []


def test_a_retrain_during_the_cooldown_is_logged_and_on_the_incident(
    tmp_path: Path, server: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    world = outcome_world(tmp_path, server)
    system = world.system
    first = system.enqueue_retrain(MODEL, world.open_incident("first"), "alert")
    finished = system.queue.set_state(first, JobState.SUCCEEDED, finished_at=world.clock())
    world.clock.now += 60
    second = world.open_incident("second")

    with caplog.at_level(logging.WARNING, logger="driftloop"):
        attached = system.enqueue_retrain(MODEL, second, "alert")

    assert attached == first
    assert system.queue.active(MODEL) is None  # nothing started
    [entry] = [e for e in system.engine.get_incident(second).timeline if e.kind == "retrain"]
    assert entry.data["cooldown_ends_at"] == pytest.approx((finished.finished_at or 0) + 600)
    assert "the cooldown ends at 20" in entry.message
    assert f"retrain job {first[:8]} finished (succeeded)" in entry.message
    assert any("not started" in r.getMessage() and second in r.getMessage() for r in caplog.records)

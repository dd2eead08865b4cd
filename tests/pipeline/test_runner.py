"""The retrain pipeline on real components: every state and step recorded, the gate's accept and
reject paths, deploy, verification and rollback, cancellation, and the remote (GitHub Actions)
trainer against a local server that answers like GitHub."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from driftloop.errors import BackendUnavailableError
from driftloop.metrics.points import MetricPoint
from driftloop.monitors.events import MonitorState
from driftloop.objectstore import DatasetStore
from driftloop.pipeline.queue import Job, JobState
from driftloop.pipeline.tables import job_steps, retrain_jobs
from driftloop.pipeline.verification import PairedEvidence
from driftloop.registry import ModelRegistry
from driftloop.trainers.base import TrainingData
from driftloop.trainers.evaluation import split_holdout
from driftloop.trainers.github_dispatch import GITHUB_API_VERSION
from driftloop.trainers.sklearn import SklearnParams, SklearnTrainer
from pipeline.world import (
    DATASET,
    MODEL,
    SKLEARN_PARAMS,
    PipelineWorld,
    ScriptedHealthProbe,
    make_snapshots,
)

STEPS_OF_A_DEPLOY = ["fetching_data", "training", "evaluating", "gated", "deploying", "verifying"]


def run_job(
    world: PipelineWorld, health: ScriptedHealthProbe | None, incident_id: str | None = None
) -> Job:
    """Queue a job the way an alert does, claim it like a worker and run it."""
    if incident_id is None:
        job_id = world.system.queue.enqueue(MODEL, reason="test").job.job_id
    else:
        job_id = world.system.enqueue_retrain(MODEL, incident_id, "confidence alert")
    claimed = world.system.queue.claim("test-worker")
    assert claimed is not None
    assert claimed.job_id == job_id
    return world.pipeline(health).run(claimed, "test-worker")


@pytest.fixture
def world(tmp_path: Path) -> PipelineWorld:
    """Production v1 trained on known rows; a newer snapshot brings the drifted subtopic."""
    world = PipelineWorld.create(tmp_path)
    world.train_production()
    world.push(world.snapshots.drifted)
    return world


# --------------------------------------------------------------------------- accept path


def test_accepted_candidate_is_deployed_verified_and_every_step_recorded(
    world: PipelineWorld, caplog: pytest.LogCaptureFixture
) -> None:
    incident = world.open_incident()
    newest = world.system.datasets.newest(DATASET)
    health = ScriptedHealthProbe(
        world.clock, ok_from=world.clock.now + 5, confidence={1: 0.55, 2: 0.8}, pair_rate=4.0
    )

    with caplog.at_level(logging.INFO, logger="driftloop"):
        job = run_job(world, health, incident)

    # every step is one log line with the job, model and incident (#21 part 1)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("driftloop")]
    job_line = f"job {job.job_id[:8]} (model {MODEL}, incident {incident})"
    assert any(
        line.startswith(f"retrain of {MODEL}: ") and job.job_id[:8] in line and incident in line
        for line in lines
    ), lines
    for logged in (
        "data: newest snapshot",
        "gate: v2 passed the gate: macro-F1",
        "deploy: v2 deployed",
        "verified: v2 kept",
        "job: retrain job succeeded",
    ):
        assert any(line.startswith(f"{job_line} {logged}") for line in lines), (logged, lines)

    assert job.state == JobState.SUCCEEDED, job.error
    assert job.error is None
    assert (job.previous_version, job.candidate_version) == (1, 2)
    assert job.snapshot_id == newest.snapshot_id
    assert job.finished_at is not None
    assert job.started_at is not None
    assert job.deployed_at is not None
    # every state transition, in order, as the pipeline reported it
    assert world.states == [
        JobState.FETCHING_DATA,
        JobState.TRAINING,
        JobState.EVALUATING,
        JobState.GATED,
        JobState.DEPLOYING,
        JobState.VERIFYING,
        JobState.SUCCEEDED,
    ]
    steps = world.system.queue.steps(job.job_id)
    assert [s.step for s in steps] == STEPS_OF_A_DEPLOY
    assert [s.outcome for s in steps] == ["ok", "ok", "ok", "accepted", "ok", "ok"]
    for step in steps:
        assert step.finished_at is not None
        assert step.finished_at >= step.started_at
        assert step.log.strip(), step.step
    assert newest.snapshot_id in steps[0].log
    assert "held out" in steps[0].log
    assert "new rows" in steps[0].log
    assert "production → v2" in steps[4].log
    assert "shadow → v1" in steps[4].log
    assert "not worse on the same traffic" in steps[5].log
    assert "monitors OK on v2" in steps[5].log
    # verification waited for the minimum of 10 shadow pairs: one interval of 5 s (20 pairs)
    assert world.clock.sleeps == [5.0]
    assert "shadow_pairs review-classifier v1 vs v2" in health.asked

    # the gate's decision is in the result, made on fresh rows
    assert job.result is not None
    gate = job.result.gate
    assert gate["accepted"] is True
    assert gate["fresh_holdout"] is True
    assert gate["candidate"]["macro_f1"] > gate["production"]["macro_f1"]
    assert gate["holdout_rows"] >= 30
    json.dumps(job.result.to_json())  # stored as JSON, and readable back as JSON
    decision = job.result.verification_decision
    assert (decision["verdict"], decision["signal"], decision["rule"], decision["pairs"]) == (
        "keep",
        "confidence vs reference",
        "sequential test",
        20,
    )

    # the registry: v2 is production and candidate, with its data and lineage
    assert world.aliases() == {"production": 2, "candidate": 2}
    v2 = world.system.registry.get_version(MODEL, 2)
    assert v2.snapshot_id == newest.snapshot_id
    assert v2.snapshot_hash == newest.content_hash
    assert v2.parent_version == 1
    assert v2.trigger == f"incident:{incident}"
    history = world.system.registry.alias_history(MODEL)
    assert [(h.alias, h.version, h.action) for h in history][-4:] == [
        ("candidate", 2, "set"),
        ("production", 2, "set"),
        ("shadow", 1, "set"),
        ("shadow", 1, "remove"),
    ]  # v1 scored the traffic in shadow while v2 was verified
    assert all(h.actor.startswith(f"job:{job.job_id}") for h in history[-4:])

    # the incident's timeline tells the story
    kinds = [kind for kind, _ in world.timeline(incident)]
    assert kinds[:2] == ["opened", "retrain"]
    for kind in ("data", "gate", "deploy", "verified", "job"):
        assert kind in kinds
    assert kinds.index("gate") < kinds.index("deploy") < kinds.index("verified")
    messages = dict(world.timeline(incident))
    assert "v2 passed the gate" in messages["gate"]
    assert messages["job"] == "retrain job succeeded"


Transaction = list[tuple[str, Any]]
"""The statements of one committed transaction, with their parameters."""


@contextmanager
def committed_transactions(world: PipelineWorld) -> Iterator[list[Transaction]]:
    """Every transaction committed on the system's database while the block runs."""
    committed: list[Transaction] = []
    pending: dict[int, Transaction] = {}

    def record(
        connection: sa.Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        pending.setdefault(id(connection), []).append((statement, parameters))

    def commit(connection: sa.Connection) -> None:
        committed.append(pending.pop(id(connection), []))

    engine = world.system.database.engine
    sa.event.listen(engine, "before_cursor_execute", record)
    sa.event.listen(engine, "commit", commit)
    try:
        yield committed
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
        sa.event.remove(engine, "commit", commit)


def _opens(statement: str, parameters: Any, *values: str) -> bool:
    return statement.startswith(f"INSERT INTO {job_steps.name} ") and all(
        value in tuple(parameters) for value in values
    )


def _enters(statement: str, parameters: Any, state: str) -> bool:
    return statement.startswith(f"UPDATE {retrain_jobs.name} ") and state in tuple(parameters)


def test_each_state_change_opens_its_step_in_the_same_transaction(world: PipelineWorld) -> None:
    """A worker killed between a state change and the opening of its step would leave a job in
    ``training`` with no training step to close as interrupted: both go in one commit."""
    health = ScriptedHealthProbe(
        world.clock, ok_from=world.clock.now + 10, confidence={1: 0.55, 2: 0.8}
    )
    with committed_transactions(world) as committed:
        job = run_job(world, health)
    assert job.state == JobState.SUCCEEDED, job.error

    for step in STEPS_OF_A_DEPLOY:
        [transaction] = [t for t in committed if any(_opens(*s, step) for s in t)]
        assert any(_enters(*s, step) for s in transaction), (step, transaction)
    # the gate's decision is recorded finished, with the state change that follows from it
    [gated] = [t for t in committed if any(_opens(*s, "gated", "accepted") for s in t)]
    assert any(_enters(*s, "gated") for s in gated)


def test_a_rejection_ends_the_job_in_the_transaction_that_records_it(tmp_path: Path) -> None:
    """A worker killed after the gate's ``rejected`` step but before the job's end would leave
    a job that looks unfinished with a verdict already recorded: both go in one commit."""
    world = PipelineWorld.create(tmp_path, pipeline={"gate": {"min_macro_f1_gain": 1.0}})
    world.train_production()
    world.push(world.snapshots.drifted)
    with committed_transactions(world) as committed:
        job = run_job(world, ScriptedHealthProbe(world.clock, ok_from=world.clock.now))
    assert job.state == JobState.REJECTED

    [transaction] = [t for t in committed if any(_opens(*s, "gated") for s in t)]
    assert any(_opens(*s, "gated", "rejected") for s in transaction), transaction
    assert any(_enters(*s, "rejected") for s in transaction), transaction


def test_served_versions_keep_a_running_jobs_rollback_target(world: PipelineWorld) -> None:
    """While a job deploys and verifies v2, v1 is what a rollback restores: its monitor groups
    (and an open incident on them) must not be retired until the job ends."""
    system = world.system
    assert system.served_versions(MODEL) == {"1"}
    assert system.served_versions("never-registered") is None
    job_id = system.queue.enqueue(MODEL, reason="test").job.job_id
    claimed = system.queue.claim("w")
    assert claimed is not None
    system.queue.set_state(job_id, JobState.DEPLOYING, previous_version=1)
    world.train_production(world.snapshots.drifted)  # v2 becomes production
    assert system.served_versions(MODEL) == {"2", "1"}
    system.queue.set_state(job_id, JobState.SUCCEEDED)
    assert system.served_versions(MODEL) == {"2"}


def test_monitors_ok_asks_about_production_traffic_only(tmp_path: Path) -> None:
    """A monitor that watches a shadow version goes without data once the rollout ends; it
    must not fail every later verification."""
    world = PipelineWorld.create(
        tmp_path,
        extra={
            "monitors": [
                {"name": "confidence", "below": {"warning": 0.5, "critical": 0.4}},
                {
                    "name": "shadow confidence",
                    "below": {"warning": 0.5, "critical": 0.4},
                    "filter": {"shadow": "true"},
                    "no_data": {"after": 60},
                },
            ]
        },
    )
    world.train_production()
    system, clock = world.system, world.clock
    system.metric_store.write(
        [
            MetricPoint(
                "model_confidence",
                0.9,
                clock.now - 30 + i,
                {"model": MODEL, "version": "2", "shadow": "true"},
            )
            for i in range(30)
        ]
    )
    system.engine.evaluate(clock.now)  # during the rollout
    clock.now += 600  # the rollout ended; production traffic only
    system.metric_store.write(
        [
            MetricPoint(
                "model_confidence", 0.9, clock.now - 30 + i, {"model": MODEL, "version": "1"}
            )
            for i in range(30)
        ]
    )
    system.engine.evaluate(clock.now)
    states = {s.name: s.worst for s in system.engine.status()}
    assert states == {"confidence": MonitorState.OK, "shadow confidence": MonitorState.NO_DATA}
    assert system.monitors_ok(MODEL)


def test_the_real_system_answers_verification(world: PipelineWorld) -> None:
    """The DriftloopSystem is the health probe: the shadow pairs the server reports into the
    SQL metric store (here written as the server writes them), the monitor engine's states."""
    system = world.system
    clock = world.clock
    low = [
        MetricPoint("model_confidence", 0.3, clock.now - 30 + i, {"model": MODEL, "version": "1"})
        for i in range(30)
    ]
    system.metric_store.write(low)
    system.engine.evaluate(clock.now)
    assert not system.monitors_ok(MODEL)
    [status] = system.engine.status()
    assert status.worst == MonitorState.ALERT
    rng = np.random.default_rng(5)

    def traffic_on_v2(now: float) -> None:
        """While verification waits, v2 serves at 0.8 and v1, in shadow, scores the same
        requests at about 0.3 (0.5 less confident than v2 on every one)."""
        assert world.aliases().get("shadow") == 1
        pair = {"model": MODEL, "version": "1", "shadow": "true", "served": "2"}
        stamps = [now - 4.5 + i * 0.4 for i in range(10)]
        system.metric_store.write(
            [
                MetricPoint("model_confidence", 0.8, t, {"model": MODEL, "version": "2"})
                for t in stamps
            ]
            + [
                MetricPoint("shadow_confidence_gap", -0.5 + rng.normal(0, 0.05), t, pair)
                for t in stamps
            ]
            + [MetricPoint("shadow_agreement", 1.0, t, pair) for t in stamps]
        )
        system.engine.evaluate(now)

    clock.on_sleep = traffic_on_v2
    job_id = system.queue.enqueue(MODEL, reason="test").job.job_id
    claimed = system.queue.claim("w")
    assert claimed is not None
    pipeline = world.pipeline()
    pipeline.health = system
    job = pipeline.run(claimed, "w")

    assert job.job_id == job_id
    assert job.state == JobState.SUCCEEDED, job.error
    assert world.production() == 2
    assert "shadow" not in world.aliases()
    verification = world.system.queue.steps(job_id)[-1]
    assert verification.outcome == "ok"
    assert "not worse on the same traffic" in verification.log
    # the window still holds v1's low confidence: the kept version's monitors are not OK yet
    assert "monitors are not all OK yet" in verification.log
    assert job.result is not None
    decision = job.result.verification_decision
    assert decision["signal"] == "confidence vs reference"
    assert decision["agreement"] == 1.0
    # the references of v1 and v2 shift the raw gap of +0.5 (new minus old)
    shift = (
        system.registry.get_version(MODEL, 2).reference.mean_confidence  # type: ignore[union-attr]
        - system.registry.get_version(MODEL, 1).reference.mean_confidence  # type: ignore[union-attr]
    )
    assert decision["mean"] == pytest.approx(0.5 - shift, abs=0.05)
    assert len(clock.sleeps) == 1  # 10 pairs (the minimum) after one interval


# --------------------------------------------------------------------------- reject paths


def test_an_impossible_margin_rejects_and_leaves_production_alone(tmp_path: Path) -> None:
    world = PipelineWorld.create(tmp_path, pipeline={"gate": {"min_macro_f1_gain": 1.0}})
    world.train_production()
    world.push(world.snapshots.drifted)
    incident = world.open_incident()
    health = ScriptedHealthProbe(world.clock, ok_from=world.clock.now)

    job = run_job(world, health, incident)

    assert job.state == JobState.REJECTED
    assert job.error == "rejected by the quality gate"
    assert job.candidate_version is None
    assert job.result is not None
    assert job.result.gate["accepted"] is False
    assert any("needs >= +1.000" in r and r.endswith("fail") for r in job.result.gate["reasons"])
    steps = world.system.queue.steps(job.job_id)
    assert [(s.step, s.outcome) for s in steps] == [
        ("fetching_data", "ok"),
        ("training", "ok"),
        ("evaluating", "ok"),
        ("gated", "rejected"),
    ]
    assert world.states[-1] == JobState.REJECTED
    # nothing published: no new version, aliases untouched, nobody asked about health
    assert [v.version for v in world.system.registry.list_versions(MODEL)] == [1]
    assert world.aliases() == {"production": 1}
    assert health.asked == []
    notes = world.timeline(incident)
    gate_notes = [message for kind, message in notes if kind == "gate"]
    assert len(gate_notes) == 1
    assert "rejected by the gate" in gate_notes[0]
    assert ("job", "retrain job rejected: rejected by the quality gate") in notes


def test_a_candidate_trained_on_worse_data_is_rejected(tmp_path: Path) -> None:
    """The newest snapshot's known rows were relabelled at random (a broken labelling job);
    its new rows are fine, and the gate judges on those: the candidate is worse."""
    world = PipelineWorld.create(tmp_path)
    world.train_production()
    snapshots = world.snapshots
    garbled = snapshots.known.copy()
    rng = np.random.default_rng(0)
    garbled["label"] = rng.permutation(garbled["label"].to_numpy())
    fresh = make_snapshots(known_rows=600, new_rows=0).known.iloc[300:400]
    fresh = fresh[~fresh["text"].isin(snapshots.known["text"])]
    world.push(pd.concat([garbled, fresh], ignore_index=True))

    job = run_job(world, ScriptedHealthProbe(world.clock, ok_from=world.clock.now))

    assert job.state == JobState.REJECTED, job.result
    assert job.result is not None
    gate = job.result.gate
    assert gate["fresh_holdout"] is True
    assert gate["candidate"]["macro_f1"] < gate["production"]["macro_f1"]
    assert world.aliases() == {"production": 1}
    assert len(world.system.registry.list_versions(MODEL)) == 1


# --------------------------------------------------------------------------- rollback


def test_a_worse_version_on_the_same_traffic_is_rolled_back(world: PipelineWorld) -> None:
    """v2 passed the gate but, on the live requests both versions score, it is clearly less
    sure of itself than v1 (relative to each one's reference): rolled back, v1 restored, the
    shadow ended, the decision recorded with its numbers."""
    incident = world.open_incident()
    health = ScriptedHealthProbe(world.clock, ok_from=None, confidence={1: 0.8, 2: 0.5})

    job = run_job(world, health, incident)

    assert job.state == JobState.ROLLED_BACK
    assert job.deployed_at is not None
    assert world.clock.sleeps == []  # 100 pairs decide at the first look
    assert world.production() == 1
    assert world.aliases() == {"production": 1, "candidate": 2}
    changes = [
        (h.alias, h.version, h.action, h.actor) for h in world.system.registry.alias_history(MODEL)
    ]
    assert ("production", 1, "set", f"job:{job.job_id} rollback") in changes
    assert changes[-1][:3] == ("shadow", 1, "remove")
    [(kind, message, data)] = world.notices
    assert kind == "rollback"
    assert "rolled back review-classifier to v1" in message
    assert "worse on the same traffic" in message
    assert data == {"job_id": job.job_id, "model": MODEL}
    assert job.error == message
    assert job.result is not None
    decision = job.result.verification_decision
    assert (decision["verdict"], decision["rule"]) == ("roll_back", "sequential test")
    assert decision["bound"] < -0.02
    verifying = world.system.queue.steps(job.job_id)[-1]
    assert (verifying.step, verifying.outcome) == ("verifying", "failed")
    assert ("rollback", message) in world.timeline(incident)
    assert world.states[-1] == JobState.ROLLED_BACK


def test_a_better_version_less_confident_than_the_old_one_was_before_the_drift_is_kept(
    world: PipelineWorld,
) -> None:
    """The issue's case: after the drift v1 fell from its reference (about 0.8) to 0.55 on the
    new traffic; v2 serves the same traffic at 0.70, below v1's pre-drift level, but better
    than v1 on the very same requests. The monitors stay unhappy throughout: v2 is kept."""
    health = ScriptedHealthProbe(
        world.clock, ok_from=None, confidence={1: 0.55, 2: 0.70}, pair_rate=2.0
    )

    job = run_job(world, health)

    assert job.state == JobState.SUCCEEDED, job.error
    assert world.production() == 2
    assert "shadow" not in world.aliases()
    assert job.result is not None
    assert job.result.verification_decision["verdict"] == "keep"
    assert "monitors are not all OK yet" in job.result.verification[-1]


def test_labels_decide_over_confidence_when_enough_arrive(world: PipelineWorld) -> None:
    """v2 is more confident on the shadowed requests, but the feedback labels of those same
    requests show it is wrong more often: realized accuracy decides, and it rolls back."""
    health = ScriptedHealthProbe(
        world.clock,
        ok_from=world.clock.now,
        confidence={1: 0.6, 2: 0.8},
        count=400,
        accuracy={1: 0.8, 2: 0.5},
        labelled=200,
    )

    job = run_job(world, health)

    assert job.state == JobState.ROLLED_BACK
    assert job.result is not None
    decision = job.result.verification_decision
    assert decision["signal"] == "realized accuracy"
    assert decision["mean"] == pytest.approx(-0.3, abs=0.1)
    assert world.production() == 1


@pytest.mark.parametrize(
    ("pair_rate", "new_relative", "expected", "rule"),
    [
        (None, -0.005, JobState.SUCCEEDED, "deadline: point estimate"),
        (None, -0.03, JobState.ROLLED_BACK, "deadline: point estimate"),
        (0.1, -0.3, JobState.SUCCEEDED, "deadline: too few pairs"),
    ],
    ids=["undecided-but-not-worse", "undecided-and-worse", "too-few-pairs"],
)
def test_the_deadline_decides_with_what_it_has(
    tmp_path: Path, pair_rate: float | None, new_relative: float, expected: JobState, rule: str
) -> None:
    """Noisy pairs near the tolerance never settle the sequential test: at the deadline the
    point estimate decides; with fewer pairs than the minimum, the gate's verdict stands."""
    world = PipelineWorld.create(tmp_path, pipeline={"verify_tolerance": 0.02})
    world.train_production()
    world.push(world.snapshots.drifted)
    health = ScriptedHealthProbe(
        world.clock,
        ok_from=world.clock.now,
        noise=0.5,
        count=12,
        pair_rate=pair_rate,
        confidence={1: 0.0, 2: new_relative},
        reference_of=world.reference_confidence,
    )
    job = run_job(world, health)

    assert job.state == expected, job.result
    assert job.result is not None
    assert job.result.verification_decision["rule"] == rule
    assert sum(world.clock.sleeps) >= 60  # it waited for the deadline


# --------------------------------------------------------------------------- cancellation


def test_a_running_job_is_cancelled_at_its_next_step(world: PipelineWorld) -> None:
    queue = world.system.queue
    cancelled: list[bool] = []

    def cancel_while_training(job: Job) -> None:
        if job.state == JobState.TRAINING:
            cancelled.append(queue.request_cancel(job.job_id).cancel_requested)

    job_id = queue.enqueue(MODEL, reason="test").job.job_id
    claimed = queue.claim("w")
    assert claimed is not None
    job = world.pipeline(
        ScriptedHealthProbe(world.clock, ok_from=world.clock.now), on_state=cancel_while_training
    ).run(claimed, "w")

    assert cancelled == [True]
    assert job.job_id == job_id
    assert job.state == JobState.CANCELLED
    assert job.error == "cancelled on request"
    # training finished (a step is not interrupted), evaluation never started
    assert [(s.step, s.outcome) for s in queue.steps(job_id)] == [
        ("fetching_data", "ok"),
        ("training", "ok"),
    ]
    assert world.aliases() == {"production": 1}
    assert len(world.system.registry.list_versions(MODEL)) == 1
    assert queue.enqueue(MODEL, reason="again", force=True).created  # the model is free


def test_a_cancelled_verification_stops_polling(world: PipelineWorld) -> None:
    queue = world.system.queue
    health = ScriptedHealthProbe(
        world.clock, ok_from=None, confidence={1: 0.5, 2: 0.6}, pair_rate=0.0
    )
    job_id = queue.enqueue(MODEL).job.job_id

    def cancel_on_second_wait(now: float) -> None:
        if len(world.clock.sleeps) == 2:
            queue.request_cancel(job_id)

    world.clock.on_sleep = cancel_on_second_wait
    claimed = queue.claim("w")
    assert claimed is not None
    job = world.pipeline(health).run(claimed, "w")
    assert job.state == JobState.CANCELLED
    assert world.clock.sleeps == [5.0, 5.0]
    # production keeps the deployed version: cancelling stops the watch, not the deploy; the
    # previous version's shadow, which only served the watch, ends
    assert world.production() == 2
    assert world.aliases() == {"production": 2, "candidate": 2}
    assert "the shadow ended" in (job.error or "")
    verifying = world.system.queue.steps(job_id)[-1]
    assert (verifying.step, verifying.outcome) == ("verifying", "cancelled")
    assert verifying.finished_at is not None


# --------------------------------------------------------------------------- remote trainer

REPO = "acme/review-training"
WORKFLOW = "driftloop-train.yml"
TOKEN = "ghp_pipeline-test-token"


@dataclass
class FakeGithub:
    """``POST /repos/{repo}/actions/workflows/{workflow}/dispatches`` as GitHub answers it:
    401 for a wrong token, 404 for another path, 422 for undeclared inputs, else 204."""

    url: str = ""
    dispatches: list[dict[str, Any]] = field(default_factory=list)

    def answer(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        if headers.get("authorization") != f"Bearer {TOKEN}":
            return 401, {"message": "Bad credentials", "status": "401"}
        if path != f"/repos/{REPO}/actions/workflows/{WORKFLOW}/dispatches":
            return 404, {"message": "Not Found", "status": "404"}
        assert headers.get("accept") == "application/vnd.github+json"
        assert headers.get("x-github-api-version") == GITHUB_API_VERSION
        body = json.loads(raw)
        declared = {"incident_id", "dataset_snapshot", "callback_url", "model"}
        if set(body["inputs"]) - declared:
            return 422, {"message": "Unexpected inputs provided", "status": "422"}
        self.dispatches.append(body)
        return 204, None


@pytest.fixture
def github() -> Iterator[FakeGithub]:
    fake = FakeGithub()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, body = fake.answer(
                self.path, {k.lower(): v for k, v in self.headers.items()}, raw
            )
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def remote_world(tmp_path: Path, github: FakeGithub, **pipeline: Any) -> PipelineWorld:
    world = PipelineWorld.create(
        tmp_path,
        pipeline=pipeline,
        model={
            "trainer": "github_dispatch",
            "params": {
                "repo": REPO,
                "workflow": WORKFLOW,
                "token": TOKEN,
                "api_url": github.url,
                "poll_interval": "10s",
                "timeout": "5m",
            },
        },
        extra={"public_url": "https://driftloop.example.com"},
    )
    world.train_production()
    world.push(world.snapshots.drifted)
    return world


class WorkflowRun:
    """What the training repository's workflow does once dispatched: fetch the snapshot's
    training rows (leaving out the gate's rows, like scripts/fetch_training_data.py), train,
    and register the model with the dispatch's trigger (``driftloop models register``)."""

    def __init__(
        self,
        world: PipelineWorld,
        github: FakeGithub,
        *,
        after_sleeps: int = 1,
        snapshot_id: str | None = None,
    ) -> None:
        self.world = world
        self.github = github
        self.after_sleeps = after_sleeps
        self.snapshot_id = snapshot_id
        self.registered: list[int] = []

    def __call__(self, now: float) -> None:
        if self.registered or len(self.world.clock.sleeps) < self.after_sleeps:
            return
        inputs = self.github.dispatches[-1]["inputs"]
        config = self.world.config  # CI has its own processes and connections
        datasets = DatasetStore.from_config(config)
        snapshot = datasets.get(DATASET, self.snapshot_id or inputs["dataset_snapshot"])
        train, _ = split_holdout(
            datasets.load(snapshot), "label", config.pipeline.holdout_fraction, config.pipeline.seed
        )
        trained = SklearnTrainer(SklearnParams(**SKLEARN_PARAMS)).fit(TrainingData(train))
        version = ModelRegistry.from_config(config).register_trained(
            inputs["model"],
            trained,
            trainer="github-actions",
            snapshot=snapshot,
            trigger=f"incident:{inputs['incident_id']}",
        )
        self.registered.append(version.version)


def test_remote_training_is_dispatched_once_then_gated_and_deployed(
    tmp_path: Path, github: FakeGithub
) -> None:
    world = remote_world(tmp_path, github)
    workflow = WorkflowRun(world, github, after_sleeps=2)
    world.clock.on_sleep = workflow
    incident = world.open_incident()
    newest = world.system.datasets.newest(DATASET)

    job = run_job(
        world,
        ScriptedHealthProbe(world.clock, ok_from=world.clock.now, confidence={1: 0.6, 2: 0.8}),
        incident,
    )

    assert job.state == JobState.SUCCEEDED, job.error
    [dispatch] = github.dispatches
    assert dispatch == {
        "ref": "main",
        "inputs": {
            "incident_id": incident,
            "dataset_snapshot": newest.snapshot_id,
            "callback_url": "https://driftloop.example.com",
            "model": MODEL,
        },
    }
    assert workflow.registered == [2]
    assert world.clock.sleeps == [10.0, 10.0]  # the wait, polled every poll_interval
    assert world.aliases() == {"production": 2, "candidate": 2}
    assert job.result is not None
    assert job.result.remote_run["trainer"] == "github_dispatch"
    assert job.result.remote_run["snapshot_id"] == newest.snapshot_id
    assert job.result.remote_run["state"]["correlation_id"] == incident
    assert job.result.gate["accepted"] is True
    assert job.result.gate["fresh_holdout"] is True
    training = world.system.queue.steps(job.job_id)[1]
    assert f"dispatched {WORKFLOW} on {REPO}@main (id {incident})" in training.log
    assert "github_dispatch registered v2" in training.log
    assert world.system.registry.get_version(MODEL, 2).trainer == "github-actions"


def _as_an_older_driftloop_recorded_it(world: PipelineWorld, job_id: str) -> None:
    """Rewrite the job's result in the shape driftloop wrote before remote trainers had two
    phases: the GitHub workflow dispatch under ``"dispatch"``, no ``"remote_run"``."""
    recorded = world.system.queue.get(job_id).result
    assert recorded.remote_run
    with world.system.database.engine.begin() as connection:
        connection.execute(
            retrain_jobs.update()
            .where(retrain_jobs.c.job_id == job_id)
            .values(result={"dispatch": recorded.remote_run["state"]})
        )
    assert world.system.queue.get(job_id).result.remote_run == recorded.remote_run


@pytest.mark.parametrize("recorded_by", ["this driftloop", "an older driftloop"])
def test_a_resumed_remote_job_waits_for_the_same_run(
    tmp_path: Path, github: FakeGithub, recorded_by: str
) -> None:
    world = remote_world(tmp_path, github)
    dispatched = world.system.datasets.newest(DATASET)

    class WorkerKilled(BaseException):
        """The worker process dies while it waits (nothing of it runs afterwards)."""

    def die(now: float) -> None:
        raise WorkerKilled

    world.clock.on_sleep = die
    queue = world.system.queue
    job_id = queue.enqueue(MODEL).job.job_id
    claimed = queue.claim("w1")
    assert claimed is not None
    with pytest.raises(WorkerKilled):
        world.pipeline().run(claimed, "w1")
    assert queue.get(job_id).state == JobState.TRAINING
    assert len(github.dispatches) == 1
    if recorded_by == "an older driftloop":  # then driftloop was upgraded
        _as_an_older_driftloop_recorded_it(world, job_id)
    world.push(make_snapshots(known_rows=50, new_rows=0, seed=9).known)  # newer data meanwhile

    world.clock.now += 120  # w1 stopped beating
    workflow = WorkflowRun(world, github)
    world.clock.on_sleep = workflow
    resumed = queue.claim("w2", stale_after=60)
    assert resumed is not None
    assert resumed.state == JobState.TRAINING
    health = ScriptedHealthProbe(world.clock, ok_from=world.clock.now, confidence={1: 0.6, 2: 0.8})
    job = world.pipeline(health).run(resumed, "w2")

    assert job.state == JobState.SUCCEEDED, job.error
    assert len(github.dispatches) == 1  # never dispatched twice
    assert job.snapshot_id == dispatched.snapshot_id  # gated on the data the run trained on
    steps = queue.steps(job_id)
    assert steps[1].step == "training"
    assert steps[1].outcome == "interrupted"
    last_training = [s for s in steps if s.step == "training"][-1]
    assert "not started twice" in last_training.log
    assert last_training.outcome == "ok"
    assert world.production() == 2


def test_a_remote_candidate_is_gated_and_may_be_rejected(
    tmp_path: Path, github: FakeGithub
) -> None:
    world = remote_world(tmp_path, github, gate={"min_macro_f1_gain": 1.0})
    world.clock.on_sleep = WorkflowRun(world, github)

    job = run_job(world, ScriptedHealthProbe(world.clock, ok_from=world.clock.now))

    assert job.state == JobState.REJECTED
    assert job.result is not None
    assert job.result.rejected_version == 2
    assert world.aliases() == {"production": 1}  # registered, never deployed
    assert len(world.system.registry.list_versions(MODEL)) == 2


def test_a_remote_version_trained_on_other_data_is_not_deployed(
    tmp_path: Path, github: FakeGithub
) -> None:
    world = remote_world(tmp_path, github)
    production_snapshot = world.system.datasets.list(DATASET)[0]
    world.clock.on_sleep = WorkflowRun(world, github, snapshot_id=production_snapshot.snapshot_id)

    job = run_job(world, ScriptedHealthProbe(world.clock, ok_from=world.clock.now))

    assert job.state == JobState.FAILED
    assert "not the dispatched" in (job.error or "")
    assert world.aliases() == {"production": 1}


def test_an_error_while_verifying_rolls_back_before_failing(world: PipelineWorld) -> None:
    class BrokenStoreProbe(ScriptedHealthProbe):
        def shadow_pairs(
            self, model: str, *, shadow_version: int, served_version: int, start: float, end: float
        ) -> PairedEvidence:
            raise BackendUnavailableError("cannot reach the store: database is locked")

    job = run_job(world, BrokenStoreProbe(world.clock))

    assert job.state == JobState.FAILED
    assert world.production() == 1
    assert "rolled back review-classifier to v1" in (job.error or "")
    assert "database is locked" in (job.error or "")
    assert "shadow" not in world.aliases()  # the verification shadow ended too


# --------------------------------------------------------------------------- retrain data


@pytest.mark.parametrize("policy", ["cumulative", "newest"])
def test_the_retrain_data_policy_decides_what_the_candidate_learns_from(
    tmp_path: Path, policy: str
) -> None:
    """Only the newly labeled rows land as the newest snapshot: cumulative learns them with
    every older row (stored as a new snapshot the version records), newest from them alone."""
    world = PipelineWorld.create(tmp_path, model={"retrain_data": policy})
    world.train_production()
    known, drifted = world.snapshots.known, world.snapshots.drifted
    new_rows = drifted[~drifted["text"].isin(known["text"])]
    world.push(new_rows)

    job = run_job(
        world,
        ScriptedHealthProbe(world.clock, ok_from=world.clock.now, confidence={1: 0.5, 2: 0.8}),
    )

    assert job.snapshot_id is not None
    trained_on = world.system.datasets.get(DATASET, job.snapshot_id)
    fetching = world.system.queue.steps(job.job_id)[0]
    if policy == "cumulative":
        assert trained_on.row_count == len(known) + len(new_rows)
        assert f"cumulative: {len(known)} rows of 1 older snapshot(s)" in fetching.log
    else:
        assert trained_on.row_count == len(new_rows)
        assert "cumulative" not in fetching.log
    if job.candidate_version is not None:
        version = world.system.registry.get_version(MODEL, job.candidate_version)
        assert version.snapshot_id == trained_on.snapshot_id

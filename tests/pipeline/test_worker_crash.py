"""Crash recovery: a worker process killed with SIGKILL in the middle of a job leaves a state
another worker resumes from, and the registry and its aliases are never half-changed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from driftloop.pipeline.queue import JobState
from driftloop.pipeline.worker import RetrainWorker
from driftloop.registry.model_registry import MODELS_PREFIX
from pipeline.world import MODEL, PipelineWorld, ScriptedHealthProbe
from waiting import wait_for

DOOMED = "doomed-worker"

# The worker process under test: the real DriftloopSystem and RetrainWorker from the project's
# config. "block STATE" makes training wait (the test kills the process from outside);
# "die STATE" kills the process itself with SIGKILL as soon as the job enters STATE.
WORKER_SCRIPT = """
import os, signal, sys, time
from pathlib import Path
from driftloop.config import load_config
from driftloop.pipeline.runner import PipelineHooks
from driftloop.system import DriftloopSystem, SystemOptions

config_path, how, state, marker = sys.argv[1:5]

def progress(stage, fraction):
    if how == "block":
        Path(marker).write_text(stage)
        time.sleep(300)

def on_state(job):
    if how == "die" and job.state.value == state:
        os.kill(os.getpid(), signal.SIGKILL)

hooks = PipelineHooks(on_state=on_state, progress=progress)
system = DriftloopSystem(load_config(config_path), SystemOptions(pipeline_hooks=hooks))
system.worker.name = "doomed-worker"
system.worker.run_once()
"""


@pytest.fixture
def world(tmp_path: Path) -> PipelineWorld:
    world = PipelineWorld.create(tmp_path)
    world.train_production()
    world.push(world.snapshots.drifted)
    return world


def start_worker(
    world: PipelineWorld, how: str, state: str
) -> tuple[subprocess.Popen[bytes], Path]:
    marker = world.directory / "training-started"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WORKER_SCRIPT,
            str(world.directory / "driftloop.yaml"),
            how,
            state,
            str(marker),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")},
    )
    return process, marker


def assert_registry_consistent(world: PipelineWorld) -> None:
    """Every registered version loads from storage, every alias names one of them, and storage
    holds no artifact that no version refers to."""
    registry = world.system.registry
    versions = registry.list_versions(MODEL)
    for version in versions:
        assert registry.load_predictor(version).predict_proba(["a fine product"]).shape[0] == 1
    numbers = {version.version for version in versions}
    assert set(registry.aliases(MODEL).values()) <= numbers
    stored = {key.split("/")[2] for key in registry.storage.list(f"{MODELS_PREFIX}/{MODEL}")}
    assert stored == {version.content_hash for version in versions}


def resume(world: PipelineWorld, health: ScriptedHealthProbe) -> RetrainWorker:
    pipeline = world.pipeline(health)
    return RetrainWorker(world.system.queue, pipeline, name="rescuer", stale_after=60)


def test_a_worker_killed_mid_training_is_resumed_by_another(world: PipelineWorld) -> None:
    queue = world.system.queue
    incident = world.open_incident()
    job_id = world.system.enqueue_retrain(MODEL, incident, "confidence alert")
    process, marker = start_worker(world, "block", "training")
    deadline = time.monotonic() + 90
    while not marker.exists():  # the worker process is inside the trainer's fit
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(
                "the worker never started training:\n" + process.communicate()[1].decode()[-2000:]
            )
        time.sleep(0.1)
    assert queue.get(job_id).state == JobState.TRAINING
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    process.communicate()

    # what the dead worker left: a job in training, an open step, nothing published
    dead = queue.get(job_id)
    assert (dead.state, dead.worker, dead.finished_at) == (JobState.TRAINING, DOOMED, None)
    assert [(s.step, s.outcome) for s in queue.steps(job_id)] == [
        ("fetching_data", "ok"),
        ("training", None),
    ]
    assert world.aliases() == {"production": 1}
    assert_registry_consistent(world)
    assert not queue.enqueue(MODEL, reason="another alert").created  # still the one job

    clock = world.clock
    clock.now = time.time() + 10
    health = ScriptedHealthProbe(clock, ok_from=clock.now, confidence={1: 0.6, 2: 0.8})
    rescuer = resume(world, health)
    assert rescuer.run_once() is None  # the dead worker's heartbeat is still recent
    clock.now += 60
    job = rescuer.run_once()

    assert job is not None
    assert job.job_id == job_id
    assert job.state == JobState.SUCCEEDED, job.error
    assert job.worker == "rescuer"
    steps = [(s.step, s.outcome) for s in queue.steps(job_id)]
    assert steps == [
        ("fetching_data", "ok"),
        ("training", "interrupted"),
        ("fetching_data", "ok"),
        ("training", "ok"),
        ("evaluating", "ok"),
        ("gated", "accepted"),
        ("deploying", "ok"),
        ("verifying", "ok"),
    ]
    assert all(s.finished_at is not None for s in queue.steps(job_id))
    assert [v.version for v in world.system.registry.list_versions(MODEL)] == [1, 2]
    assert world.aliases() == {"production": 2, "candidate": 2}
    assert_registry_consistent(world)
    kinds = [kind for kind, _ in world.timeline(incident)]
    assert "resumed" in kinds
    assert kinds[-1] == "job"
    assert rescuer.run_once() is None  # nothing left


@pytest.mark.parametrize(
    ("state", "recovers", "expected", "production"),
    [
        ("deploying", True, JobState.SUCCEEDED, 2),
        ("verifying", True, JobState.SUCCEEDED, 2),
        ("verifying", False, JobState.ROLLED_BACK, 1),
    ],
    ids=["deploying", "verifying-recovers", "verifying-worse"],
)
def test_a_worker_killed_after_the_gate_resumes_the_deploy(
    world: PipelineWorld, state: str, recovers: bool, expected: JobState, production: int
) -> None:
    queue = world.system.queue
    job_id = queue.enqueue(MODEL, reason="test").job.job_id
    process, _ = start_worker(world, "die", state)
    assert process.wait(timeout=120) == -signal.SIGKILL, process.communicate()[1].decode()
    process.communicate()

    dead = queue.get(job_id)
    assert dead.state == JobState(state)
    assert dead.candidate_version == 2
    assert world.system.registry.aliases(MODEL)["candidate"] == 2
    # deploying: killed before the swap; verifying: after it (and the deploy time is recorded)
    assert world.production() == (1 if state == "deploying" else 2)
    assert (dead.deployed_at is not None) == (state == "verifying")
    assert_registry_consistent(world)

    clock = world.clock
    clock.now = time.time() + 120  # the verification deadline (60 s) of that deploy is past
    # recovers: v2 does better than v1 on the requests both score; else clearly worse
    health = ScriptedHealthProbe(
        clock,
        ok_from=clock.now if recovers else None,
        confidence={1: 0.6, 2: 0.8} if recovers else {1: 0.8, 2: 0.5},
    )
    job = resume(world, health).run_once()

    assert job is not None
    assert job.job_id == job_id
    assert job.state == expected, job.error
    assert world.production() == production
    assert clock.sleeps == []  # no new training, and the original deadline holds
    assert [v.version for v in world.system.registry.list_versions(MODEL)] == [1, 2]
    records = queue.steps(job_id)
    assert all(s.finished_at is not None for s in records)
    steps = [(s.step, s.outcome) for s in records]
    # killed as the job entered ``state`` (its step opened with it): the dead worker's step is
    # closed as interrupted and the step runs again, every earlier one ran once
    done = [
        ("fetching_data", "ok"),
        ("training", "ok"),
        ("evaluating", "ok"),
        ("gated", "accepted"),
    ]
    last = "ok" if expected == JobState.SUCCEEDED else "failed"
    if state == "deploying":
        assert steps == [
            *done,
            ("deploying", "interrupted"),
            ("deploying", "ok"),
            ("verifying", last),
        ]
    else:
        assert steps == [
            *done,
            ("deploying", "ok"),
            ("verifying", "interrupted"),
            ("verifying", last),
        ]
    assert_registry_consistent(world)
    assert "shadow" not in world.aliases()  # the previous version's shadow ended with the job
    if expected == JobState.ROLLED_BACK:
        assert "worse on the same traffic" in (job.error or "")
        if state == "verifying":
            assert job.deployed_at == dead.deployed_at


def test_a_claimed_job_is_not_claimed_twice(world: PipelineWorld) -> None:
    queue = world.system.queue
    job_id = queue.enqueue(MODEL).job.job_id
    first = queue.claim("w1")
    assert first is not None
    assert first.job_id == job_id
    assert first.state == JobState.QUEUED  # claimed, first step not started yet
    assert queue.claim("w2") is None
    world.clock.now += 61
    second = queue.claim("w2", stale_after=60)  # w1 died before its first step
    assert second is not None
    assert second.worker == "w2"


def test_cancelling_a_claimed_job_stops_it_at_its_first_step(world: PipelineWorld) -> None:
    queue = world.system.queue
    job_id = queue.enqueue(MODEL).job.job_id
    claimed = queue.claim("w1")
    assert claimed is not None
    requested = queue.request_cancel(job_id)
    assert requested.cancel_requested
    assert requested.state == JobState.QUEUED  # the worker owns it: it stops it
    assert not queue.enqueue(MODEL, force=True).created  # still the model's one job
    job = world.pipeline().run(claimed, "w1")
    assert job.state == JobState.CANCELLED
    assert queue.steps(job_id) == []
    assert world.aliases() == {"production": 1}


def test_a_long_training_keeps_its_job_claimed(world: PipelineWorld) -> None:
    """The worker heartbeats while its trainer runs: a training longer than ``stale_after``
    does not make the job look abandoned to other workers."""
    queue = world.system.queue
    job_id = queue.enqueue(MODEL).job.job_id
    claimed = queue.claim("w1")
    assert claimed is not None
    pipeline = world.pipeline(
        ScriptedHealthProbe(world.clock, ok_from=world.clock.now, confidence={1: 0.6, 2: 0.8})
    )
    pipeline.heartbeat_interval = 0.02
    other_claims: list[object] = []

    def ten_minutes_of_training(stage: str, fraction: float) -> None:
        if other_claims:
            return
        world.clock.now += 600
        wait_for(
            lambda: queue.get(job_id).heartbeat_at == world.clock.now,
            30,
            "a heartbeat during training",
            interval=0.01,
        )
        other_claims.append(queue.claim("w2", stale_after=60))

    pipeline.hooks.progress = ten_minutes_of_training
    job = pipeline.run(claimed, "w1")

    assert other_claims == [None]
    assert job.state == JobState.SUCCEEDED, job.error
    assert job.worker == "w1"

"""The retry policy: after a job ends without curing its incident, a new job is queued after
the backoff, up to the cap per incident; every step is on the incident's timeline."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from driftloop.monitors.incidents import IncidentStatus
from driftloop.pipeline.queue import JobState
from pipeline.world import MODEL, PipelineWorld, ScriptedHealthProbe, reviews

BACKOFF = 120.0


def rejecting_world(tmp_path: Path, **pipeline: object) -> PipelineWorld:
    """A gate no candidate can pass: every job ends rejected."""
    world = PipelineWorld.create(
        tmp_path,
        pipeline={
            "gate": {"min_macro_f1_gain": 1.0},
            "retry_backoff": f"{BACKOFF:g}s",
            "max_attempts": 2,
            **pipeline,
        },
    )
    world.train_production()
    world.push(world.snapshots.drifted)
    return world


def newer_rows(world: PipelineWorld) -> pd.DataFrame:
    """A newer snapshot: the drifted one with a few more labeled rows."""
    extra = reviews().iloc[-20:]
    return pd.concat([world.snapshots.drifted, extra], ignore_index=True)


def run_next(world: PipelineWorld) -> JobState:
    claimed = world.system.queue.claim("w")
    assert claimed is not None
    return (
        world.pipeline(ScriptedHealthProbe(world.clock, ok_from=world.clock.now))
        .run(claimed, "w")
        .state
    )


def kinds(world: PipelineWorld, incident: str) -> list[str]:
    return [kind for kind, _ in world.timeline(incident)]


def test_a_rejected_candidate_leads_to_a_later_retry_up_to_the_cap(tmp_path: Path) -> None:
    world = rejecting_world(tmp_path)
    system, clock = world.system, world.clock
    incident = world.open_incident()
    first = system.enqueue_retrain(MODEL, incident, "confidence alert")
    assert run_next(world) == JobState.REJECTED

    # the job has just ended: the retry is scheduled, and said so once
    [scheduled] = system.retries.run_once()
    assert scheduled.kind == "retry_scheduled"
    assert "rejected (rejected by the quality gate)" in scheduled.message
    assert "retry 2 of 2 at" in scheduled.message
    assert system.retries.run_once() == []
    assert system.queue.active(MODEL) is None

    clock.now += BACKOFF
    # the job learned from every labeled row there is: the same rows would make the same model
    [waiting] = system.retries.run_once()
    assert waiting.kind == "retry_waiting"
    assert "waits for newer labeled data" in waiting.message
    assert system.retries.run_once() == []
    assert system.queue.active(MODEL) is None

    world.push(newer_rows(world))  # new labels land
    [retry] = system.retries.run_once()
    assert retry.kind == "retry"
    assert retry.job_id is not None
    assert retry.job_id != first
    job = system.queue.get(retry.job_id)
    assert (job.incident_id, job.attempt, job.state) == (incident, 2, JobState.QUEUED)
    assert job.trigger == f"retry:{incident}"
    assert "retry 2 of 2" in job.reason
    assert system.retries.run_once() == []  # a queued job is not retried again

    assert run_next(world) == JobState.REJECTED
    [exhausted] = system.retries.run_once()
    assert exhausted.kind == "retries_exhausted"
    assert "2 of 2 retrain jobs ran" in exhausted.message
    clock.now += 10 * BACKOFF
    assert system.retries.run_once() == []  # said once; no third job
    assert [j.attempt for j in system.queue.list(model=MODEL)] == [2, 1]

    timeline = kinds(world, incident)
    assert timeline.count("retry_scheduled") == 1
    assert timeline.count("retry_waiting") == 1
    assert timeline.count("retry") == 1
    assert timeline.count("retries_exhausted") == 1
    assert (
        timeline.index("retry_scheduled")
        < timeline.index("retry_waiting")
        < timeline.index("retry")
        < timeline.index("retries_exhausted")
    )


def test_the_worker_queues_due_retries_between_jobs(tmp_path: Path) -> None:
    world = rejecting_world(tmp_path, max_attempts=3)
    system, clock = world.system, world.clock
    incident = world.open_incident()
    system.enqueue_retrain(MODEL, incident, "confidence alert")
    assert run_next(world) == JobState.REJECTED
    world.push(newer_rows(world))
    clock.now += BACKOFF

    ran = system.worker.run_once()  # queues the retry, then claims and runs it

    assert ran is not None
    assert (ran.incident_id, ran.attempt, ran.state) == (incident, 2, JobState.REJECTED)


def test_no_retry_once_the_incident_closes_or_a_person_cancelled(tmp_path: Path) -> None:
    world = rejecting_world(tmp_path)
    system, clock = world.system, world.clock
    closed = world.open_incident("closes")
    system.enqueue_retrain(MODEL, closed, "alert")
    assert run_next(world) == JobState.REJECTED
    system.engine.incidents.resolve_incident(closed, "monitors recovered")
    assert system.engine.get_incident(closed).status == IncidentStatus.RESOLVED

    clock.now += 3600  # past the cooldown: the next alert gets a job of its own
    cancelled = world.open_incident("cancelled")
    job_id = system.enqueue_retrain(MODEL, cancelled, "alert")
    system.queue.request_cancel(job_id)
    clock.now += 10 * BACKOFF

    assert system.retries.run_once() == []
    assert system.queue.active(MODEL) is None


def test_an_alert_attached_to_a_finished_job_in_the_cooldown_is_retried(tmp_path: Path) -> None:
    """The second incident's @retrain landed in the cooldown and attached to the first
    incident's finished job: the policy still retries it once the backoff passes."""
    world = rejecting_world(tmp_path, cooldown="1h")
    system, clock = world.system, world.clock
    first = world.open_incident("first")
    system.enqueue_retrain(MODEL, first, "alert")
    assert run_next(world) == JobState.REJECTED
    system.engine.incidents.resolve_incident(first, "gone")
    second = world.open_incident("second")
    attached = system.enqueue_retrain(MODEL, second, "alert")
    assert system.queue.get(attached).incident_id == first  # the cooldown attached it
    world.push(newer_rows(world))
    clock.now += BACKOFF

    [retry] = system.retries.run_once()

    assert (retry.incident_id, retry.kind) == (second, "retry")
    assert retry.job_id is not None
    assert system.queue.get(retry.job_id).incident_id == second


def test_a_failed_job_is_retried_without_new_data_and_a_warn_is_not(tmp_path: Path) -> None:
    """A failure (a broken store or trainer) may pass: retried on the same data; a monitor
    back under its alert level asks for no retrain."""
    world = rejecting_world(tmp_path)
    system, clock = world.system, world.clock
    incident = world.open_incident()
    job_id = system.enqueue_retrain(MODEL, incident, "alert")
    claimed = system.queue.claim("w")
    assert claimed is not None
    system.queue.set_state(job_id, JobState.FAILED, error="storage unreachable")
    clock.now += BACKOFF

    [retry] = system.retries.run_once()
    assert retry.kind == "retry"
    assert retry.job_id is not None
    system.queue.set_state(retry.job_id, JobState.FAILED, error="storage unreachable")
    system.engine.incidents.update_severity(incident, "WARN")
    clock.now += BACKOFF
    assert system.retries.run_once() == []

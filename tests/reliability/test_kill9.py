"""kill -9 of ``driftloop up`` (server, monitors, ingest and retrain worker in one process)
during the demo's scenario, on a real project: once while it serves traffic, once in the middle
of a retrain job triggered by an incident. After each restart the registry, its aliases, the job
and the incident are consistent, and the loop still closes: the interrupted retrain is resumed,
v2 is deployed under traffic and verified, and the incident's timeline tells the story."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from driftloop.pipeline.queue import JobQueue, JobState
from driftloop.pipeline.tables import retrain_jobs
from driftloop.registry.model_registry import MODELS_PREFIX
from driftloop.system import DriftloopSystem
from pipeline.world import make_snapshots
from reliability.project import MODEL, LoopProcess, ReliabilityProject, free_port

STALE_AFTER = 60.0
"""The worker's ``stale_after``: a job whose worker has not beaten for this long is resumed."""
LAST_RUN: dict[str, object] = {}


@dataclass
class Traffic:
    """Clients that keep predicting, counting answers by status (connection errors: -1)."""

    loop: LoopProcess
    statuses: dict[int, int] = field(default_factory=dict)
    versions: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _run(self, number: int) -> None:
        texts = make_snapshots().drifted["text"].tolist()[number::4][:50]
        with httpx.Client(base_url=self.loop.url, timeout=10) as http:
            index = 0
            while not self._stop.is_set():
                try:
                    response = http.post(
                        f"/v1/models/{MODEL}/predict",
                        json={"texts": texts[index % len(texts) :][:4]},
                        headers=self.loop.project.headers(),
                    )
                    status = response.status_code
                    if status == 200:
                        version = int(response.json()["version"])
                        self.versions[version] = self.versions.get(version, 0) + 1
                except httpx.TransportError:
                    status = -1
                    time.sleep(0.05)
                self.statuses[status] = self.statuses.get(status, 0) + 1
                index += 1

    def __enter__(self) -> Traffic:
        for number in range(4):
            thread = threading.Thread(target=self._run, args=(number,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[LoopProcess]:
    project = ReliabilityProject.create(tmp_path / "project")
    project.push(make_snapshots().drifted)  # the newer labeled snapshot the retrain will use
    process = LoopProcess(project, free_port(), tmp_path / "driftloop-up.log")
    try:
        yield process
    finally:
        process.stop()


def assert_consistent(system: DriftloopSystem) -> None:
    """Every version loads and verifies; every alias names one; no artifact is orphaned; every
    job is either finished or has at most one step still open (the one its worker was in)."""
    registry = system.registry
    versions = registry.list_versions(MODEL)
    for version in versions:
        assert registry.load_predictor(version).predict_proba(["fine"]).shape[0] == 1
    numbers = {v.version for v in versions}
    assert set(registry.aliases(MODEL).values()) <= numbers
    assert numbers == set(range(1, len(versions) + 1))
    stored = {key.split("/")[2] for key in registry.storage.list(f"{MODELS_PREFIX}/{MODEL}")}
    assert stored == {v.content_hash for v in versions}
    for job in system.queue.list(model=MODEL, limit=100):
        steps = system.queue.steps(job.job_id)
        open_steps = [s for s in steps if s.finished_at is None]
        if job.state.finished:
            assert open_steps == [], job
            assert job.finished_at is not None
        else:
            assert len(open_steps) <= 1, steps
        if job.candidate_version is not None:
            assert job.candidate_version in numbers
    for incident in system.engine.list_incidents(None, MODEL, limit=100):
        assert incident.status in {"open", "resolved"}
        assert (incident.resolved_at is None) == (incident.status == "open")


def age_heartbeat(system: DriftloopSystem, job_id: str) -> None:
    """Stand in for the ``STALE_AFTER`` seconds a restarted worker waits before it takes over a
    dead worker's job (instead of sleeping them)."""
    with system.database.engine.begin() as connection:
        connection.execute(
            retrain_jobs.update()
            .where(retrain_jobs.c.job_id == job_id)
            .values(heartbeat_at=retrain_jobs.c.heartbeat_at - (STALE_AFTER + 5))
        )


def timeline_after_the_job(system: DriftloopSystem, incident_id: str) -> list[str]:
    """The incident's timeline kinds once the job's end is in it: the job's final state commits
    before the worker writes that entry, so a look right after the state can come too early."""
    deadline = time.monotonic() + 10.0
    while True:
        timeline = [entry.kind for entry in system.engine.get_incident(incident_id).timeline]
        if "job" in timeline or time.monotonic() > deadline:
            return timeline
        time.sleep(0.1)


def wait_state(
    queue: JobQueue, job_id: str, states: set[JobState], timeout: float, loop: LoopProcess
) -> JobState:
    deadline = time.monotonic() + timeout
    while True:
        state = queue.get(job_id).state
        if state in states:
            return state
        assert time.monotonic() < deadline, (
            f"job stuck in {state}; log:\n{loop.log.read_text()[-3000:]}"
        )
        time.sleep(0.01)


ORDER = list(JobState)


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "target", [JobState.TRAINING, JobState.VERIFYING], ids=["in-training", "in-verification"]
)
def test_kill_9_during_traffic_and_during_a_retrain_then_the_loop_closes(
    loop: LoopProcess, target: JobState
) -> None:
    system = DriftloopSystem(loop.project.config)  # the test's view of the same store
    queue = system.queue
    started = time.monotonic()

    # 1. kill -9 while it serves traffic
    loop.start()
    with Traffic(loop) as first:
        time.sleep(2.0)
        loop.kill()
        time.sleep(0.3)
    assert first.statuses.get(200, 0) > 0
    assert set(first.statuses) <= {200, -1}  # answered, or refused once the process is gone
    assert_consistent(system)
    assert system.registry.aliases(MODEL) == {"production": 1}

    # 2. an incident triggers a retrain; kill -9 as soon as the job reaches ``target`` (or the
    # first state after it, when a step is quicker than one look at the queue)
    loop.start()
    incident_id = system.engine.open_external_incident(
        "datadog", MODEL, "confidence of review-classifier is low", {"labels": {"model": MODEL}}
    )
    job_id = system.enqueue_retrain(MODEL, incident_id, "confidence alert")
    with Traffic(loop) as second:
        seen = wait_state(queue, job_id, set(ORDER[ORDER.index(target) :]), 60, loop)
        loop.kill()
    # where the worker died is what the store says now (a step can end between the look at the
    # queue and the kill)
    dead = queue.get(job_id)
    killed_in = dead.state
    assert killed_in in {target, ORDER[ORDER.index(target) + 1]}, (seen, killed_in)
    assert not dead.state.finished, dead
    # the step the worker was in, if any (a kill between two steps, e.g. while the accepted
    # candidate is being registered, leaves none open)
    open_steps = [s.step for s in queue.steps(job_id) if s.finished_at is None]
    assert len(open_steps) <= 1, open_steps
    assert dead.finished_at is None
    assert_consistent(system)
    assert system.registry.aliases(MODEL)["production"] == 1 or killed_in == JobState.VERIFYING
    assert not queue.enqueue(MODEL, reason="another alert").created  # still its one job

    # 3. restart: the worker resumes the job, v2 is deployed under traffic and verified
    age_heartbeat(system, job_id)
    loop.start()
    with Traffic(loop) as third:
        final = wait_state(queue, job_id, {s for s in JobState if s.finished}, 120, loop)
    job = queue.get(job_id)
    assert final == JobState.SUCCEEDED, (job.error, loop.log.read_text()[-3000:])
    assert system.registry.aliases(MODEL)["production"] == 2
    assert third.statuses.get(200, 0) > 0
    assert set(third.statuses) == {200}, third.statuses  # no failed request across the deploy
    assert third.versions.get(2, 0) > 0
    steps = [(s.step, s.outcome) for s in queue.steps(job_id)]
    assert steps[-1] == ("verifying", "ok"), steps
    assert all(s.finished_at is not None for s in queue.steps(job_id))
    assert_consistent(system)
    # a state and its step open in one commit: the dead worker's step is there, closed as
    # interrupted, and the resumed worker ran the step again
    outcomes = [outcome for _, outcome in steps]
    if open_steps:
        assert open_steps == [killed_in.value], (open_steps, killed_in)
        killed_step = [outcome for step, outcome in steps if step == killed_in.value]
        assert killed_step == ["interrupted", "ok"], steps
        assert outcomes.count("interrupted") == 1, steps
    else:
        assert "interrupted" not in outcomes, steps
    timeline = timeline_after_the_job(system, incident_id)
    if killed_in in {JobState.FETCHING_DATA, JobState.TRAINING, JobState.EVALUATING}:
        # (a job resumed at its deploy or verification adds no "resumed" entry)
        assert "resumed" in timeline, timeline
    assert timeline.count("deploy") == 1, timeline
    # the job's end is its last entry; the incident (still open at its source) may then hear
    # from the retry policy
    assert [kind for kind in timeline if not kind.startswith("retr")][-1] == "job", timeline
    assert set(timeline[timeline.index("job") :]) <= {"job", "retry_scheduled", "retry_waiting"}
    LAST_RUN[target.value] = dict(
        killed_in=killed_in.value,
        steps=steps,
        restarts=loop.starts - 1,
        seconds=round(time.monotonic() - started, 1),
        requests={"first": first.statuses, "second": second.statuses, "third": third.statuses},
    )
    print(f"kill -9: {LAST_RUN[target.value]}")

"""Storm control through the system's joint, the jobs API behind the admin key, and the CLI:
``driftloop retrain MODEL --wait``, ``driftloop jobs ls|show|cancel``."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from driftloop.cli import app
from driftloop.metrics.points import MetricPoint
from driftloop.pipeline.queue import JobState
from driftloop.serving.keys import Scope
from pipeline.world import MODEL, PipelineWorld, ScriptedHealthProbe
from timeformat import iso_times

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_driftloop_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("DRIFTLOOP_")]:
        monkeypatch.delenv(name)  # DRIFTLOOP_* variables would override the config under test


@pytest.fixture
def world(tmp_path: Path) -> PipelineWorld:
    world = PipelineWorld.create(tmp_path)
    world.train_production()
    world.push(world.snapshots.drifted)
    return world


# --------------------------------------------------------------------------- storm control


def test_a_burst_of_100_alerts_makes_exactly_one_job(world: PipelineWorld) -> None:
    system = world.system
    incidents = [world.open_incident(f"alert {i}") for i in range(5)]

    def alert(i: int) -> str:  # what the notification router's @retrain does
        return system.enqueue_retrain(MODEL, incidents[i % 5], f"monitor alert {i}")

    with ThreadPoolExecutor(max_workers=16) as pool:
        job_ids = set(pool.map(alert, range(100)))

    assert len(job_ids) == 1
    [job] = system.queue.list()
    assert job.job_id in job_ids
    assert job.attached_alerts == 100
    assert job.state == JobState.QUEUED
    retrain_notes = [
        message
        for incident in incidents
        for kind, message in world.timeline(incident)
        if kind == "retrain"
    ]
    assert len(retrain_notes) == 100  # every alert's incident says where its retrain went
    assert Counter(note.split()[0] for note in retrain_notes) == {"queued": 1, "attached": 99}

    # the job runs; an alert within the cooldown after it attaches to it, later ones do not
    claimed = system.queue.claim("w")
    assert claimed is not None
    finished = world.pipeline(
        ScriptedHealthProbe(world.clock, ok_from=world.clock.now, confidence={1: 0.6, 2: 0.8})
    ).run(claimed, "w")
    assert finished.state == JobState.SUCCEEDED
    late = world.open_incident("late alert")
    assert system.enqueue_retrain(MODEL, late, "still alerting") == job.job_id
    world.clock.now += 601  # pipeline.cooldown: 10m
    after = world.open_incident("new alert")
    assert system.enqueue_retrain(MODEL, after, "alerting again") != job.job_id
    assert len(system.queue.list()) == 2


# --------------------------------------------------------------------------- the API


async def test_jobs_api_requires_an_admin_key_and_lists_shows_cancels(world: PipelineWorld) -> None:
    system = world.system
    admin = {"Authorization": f"Bearer {system.api_keys.create(Scope.ADMIN).key}"}
    predict = {"Authorization": f"Bearer {system.api_keys.create(Scope.PREDICT).key}"}
    application = system.create_app(poll=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application), base_url="http://driftloop"
    ) as http:
        for method, path in [
            ("GET", "/v1/jobs"),
            ("GET", "/v1/jobs/abc"),
            ("POST", "/v1/jobs/abc/cancel"),
            ("POST", f"/v1/models/{MODEL}/retrain"),
        ]:
            assert (await http.request(method, path, json={})).status_code == 401, path
            forbidden = await http.request(method, path, json={}, headers=predict)
            assert forbidden.status_code == 403, path
        assert system.queue.list() == []  # nothing was queued without the admin key

        queued = await http.post(
            f"/v1/models/{MODEL}/retrain", json={"reason": "by hand"}, headers=admin
        )
        assert queued.status_code == 202
        job_id = queued.json()["job_id"]
        again = await http.post(f"/v1/models/{MODEL}/retrain", json={}, headers=admin)
        assert again.json() == {"job_id": job_id}  # one active job per model
        unknown = await http.post("/v1/models/nope/retrain", json={}, headers=admin)
        assert unknown.status_code == 404
        bad = await http.post(f"/v1/models/{MODEL}/retrain", json={"reasons": "x"}, headers=admin)
        assert bad.status_code == 422

        listed = (await http.get("/v1/jobs", headers=admin)).json()
        assert [(j["job_id"], j["state"], j["reason"], j["trigger"]) for j in listed] == [
            (job_id, "queued", "by hand", "manual")
        ]
        assert (await http.get("/v1/jobs?model=other", headers=admin)).json() == []

        claimed = system.queue.claim("w")
        assert claimed is not None
        health = ScriptedHealthProbe(
            world.clock, ok_from=world.clock.now, confidence={1: 0.6, 2: 0.8}
        )
        assert world.pipeline(health).run(claimed, "w").state == JobState.SUCCEEDED

        detail = (await http.get(f"/v1/jobs/{job_id[:8]}", headers=admin)).json()
        assert detail["job_id"] == job_id
        assert detail["state"] == "succeeded"
        assert detail["candidate_version"] == 2
        assert detail["result"]["gate"]["accepted"] is True
        assert [s["step"] for s in detail["steps"]] == [
            "fetching_data",
            "training",
            "evaluating",
            "gated",
            "deploying",
            "verifying",
        ]
        assert all(s["outcome"] and s["finished_at"] for s in detail["steps"])
        assert (await http.get("/v1/jobs/ffffffff", headers=admin)).status_code == 404
        # one timestamp format, ISO 8601 UTC, in every body (#21 part 5)
        moments = iso_times(detail)
        assert {"$.created_at", "$.finished_at", "$.steps[0].started_at"} <= set(moments)
        for path in ("/v1/jobs", "/v1/incidents", "/v1/monitors", f"/v1/models/{MODEL}"):
            answer = await http.get(path, headers=admin)
            assert answer.status_code == 200, (path, answer.text)
            iso_times(answer.json(), path)

        finished = await http.post(f"/v1/jobs/{job_id}/cancel", headers=admin)
        assert finished.status_code == 409
        world.clock.now += 3600
        second = (await http.post(f"/v1/models/{MODEL}/retrain", json={}, headers=admin)).json()[
            "job_id"
        ]
        cancelled = await http.post(f"/v1/jobs/{second}/cancel", headers=admin)
        assert cancelled.status_code == 200
        assert cancelled.json()["state"] == "cancelled"
        assert system.queue.get(second).error == "cancelled before it started"


# --------------------------------------------------------------------------- the CLI


def invoke(config: Path, *args: str) -> Any:
    result = CliRunner().invoke(app, [*args, "--config", str(config)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def cli_world(tmp_path: Path) -> PipelineWorld:
    """Verification on the real clock, short enough for a test."""
    world = PipelineWorld.create(
        tmp_path,
        pipeline={"verify_deadline": "20s", "verify_interval": 0.1, "verify_min_predictions": 10},
    )
    world.train_production()
    world.push(world.snapshots.drifted)
    return world


@pytest.fixture
def live_traffic(cli_world: PipelineWorld) -> Iterator[None]:
    """Once v2 is in production, it serves predictions (metric points tagged with its version)
    and the monitor engine evaluates them, as ``driftloop up`` would."""
    system = cli_world.system
    stop = threading.Event()

    def serve() -> None:
        while not stop.wait(0.05):
            aliases = system.registry.aliases(MODEL)
            if aliases.get("production") != 2:
                continue
            now = time.time()
            system.metric_store.write(
                [MetricPoint("model_confidence", 0.8, now, {"model": MODEL, "version": "2"})] * 5
            )
            system.engine.evaluate(now)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


@pytest.mark.usefixtures("live_traffic")
def test_retrain_wait_runs_the_job_with_the_real_system(cli_world: PipelineWorld) -> None:
    config = cli_world.directory / "driftloop.yaml"
    detail = invoke(config, "retrain", MODEL, "--reason", "from the CLI", "--wait", "--json")

    assert detail["state"] == "succeeded", detail
    assert detail["reason"] == "from the CLI"
    assert detail["candidate_version"] == 2
    assert [s["step"] for s in detail["steps"]][-1] == "verifying"
    assert "monitors OK" in detail["steps"][-1]["log"]
    assert cli_world.production() == 2

    [listed] = invoke(config, "jobs", "ls", "--json")
    assert listed["job_id"] == detail["job_id"]
    assert listed["state"] == "succeeded"
    shown = invoke(config, "jobs", "show", detail["job_id"][:10], "--json")
    assert shown == detail
    assert "$.steps[0].finished_at" in iso_times(detail)  # ISO 8601 UTC (#21 part 5)
    for command in (["status"], ["monitors", "status"], ["keys", "ls"]):
        iso_times(invoke(config, *command, "--json"), " ".join(command))
    text = CliRunner().invoke(app, ["jobs", "show", detail["job_id"], "--config", str(config)])
    assert text.exit_code == 0, text.output
    assert "verifying" in text.output
    refused = CliRunner().invoke(app, ["jobs", "cancel", detail["job_id"], "--config", str(config)])
    assert refused.exit_code == 1
    assert "already succeeded" in refused.output

    queued_by_hand = invoke(config, "retrain", MODEL, "--json")  # for a worker; no cooldown
    [queued, _] = invoke(config, "jobs", "ls", "--json", "--model", MODEL)
    assert queued["state"] == "queued"
    assert queued["job_id"] == queued_by_hand["job_id"]
    assert queued_by_hand["steps"] == []
    cancelled = invoke(config, "jobs", "cancel", queued["job_id"], "--json")
    assert cancelled["state"] == "cancelled"
    status = invoke(config, "status", "--json")
    assert status["active_jobs"] == []
    assert status["models"] == [{"model": MODEL, "aliases": {"production": 2, "candidate": 2}}]


def test_cli_errors_are_clear(cli_world: PipelineWorld) -> None:
    config = str(cli_world.directory / "driftloop.yaml")
    unknown = CliRunner().invoke(app, ["retrain", "nope", "--config", config])
    assert unknown.exit_code == 1
    assert "model 'nope' is not configured" in unknown.output
    missing = CliRunner().invoke(app, ["jobs", "show", "ffff", "--config", config])
    assert missing.exit_code == 1
    assert "no retrain job 'ffff'" in missing.output

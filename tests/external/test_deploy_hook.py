"""The pipeline drives a model served elsewhere (#19 part 4): a separate process on loopback
with its own model receives the signed deploy hook, swaps its model and reports its insights to
driftloop over HTTP; verification reads those insights; a rollback and a failing hook go
through the same hook."""

from __future__ import annotations

import base64
import json
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from driftloop.cli import app
from driftloop.config import Config, DeployHookConfig, load_config, parse_config
from driftloop.errors import BackendUnavailableError, ConfigError
from driftloop.pipeline.queue import Job, JobState
from driftloop.pipeline.runner import PipelineHooks, RetrainPipeline
from driftloop.pipeline.verification import (
    ReportedEvidence,
    Verdict,
    VerificationRule,
    decide_against_before,
)
from driftloop.registry import ModelVersion
from driftloop.registry.deploy_hook import DeployHook, deploy_payload
from driftloop.serving import Scope
from driftloop.system import DriftloopSystem, SystemOptions
from driftloop.testing.clock import ManualClock
from pipeline.world import MODEL, START, PipelineWorld, Snapshots, make_snapshots, write_config
from reliability.project import free_port
from serving.live import live_server
from timeformat import iso_times

SERVICE = Path(__file__).with_name("model_service.py")
URL_TOKEN = "t0ken-in-the-url"
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class ExternalWorld:
    """driftloop over HTTP with production v1, and the model service's port."""

    world: PipelineWorld
    url: str
    hook_port: int
    key: str

    @property
    def system(self) -> DriftloopSystem:
        return self.world.system


def external_config(directory: Path, hook_url: str, **deploy: Any) -> Config:
    path = write_config(
        directory,
        pipeline={
            "verify_deadline": "20s",
            "verify_interval": "0.3s",
            "verify_min_predictions": 30,
        },
        model={
            "deploy": {
                "webhook": {"url": hook_url, "secret": "${DEPLOY_HOOK_SECRET}"},
                "retries": 2,
                "backoff": "0.05s",
                "timeout": "5s",
                **deploy,
            }
        },
    )
    return load_config(path, environ={"DEPLOY_HOOK_SECRET": SECRET})


@dataclass(frozen=True)
class TrainedProject:
    """A project's ``.driftloop`` folder with production v1 and the drifted snapshot pushed,
    made once per module: each test copies it rather than training v1 again."""

    state: Path
    snapshots: Snapshots


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory: pytest.TempPathFactory) -> TrainedProject:
    directory = tmp_path_factory.mktemp("external-template")
    snapshots = make_snapshots(known_rows=150, new_rows=150)
    config = external_config(directory, "http://127.0.0.1:9/deploy")
    system = DriftloopSystem(config, SystemOptions())
    world = PipelineWorld(directory, config, system, ManualClock(START), snapshots)
    world.train_production()
    world.push(snapshots.drifted)
    system.database.engine.dispose()  # SQLite's WAL is checkpointed: the files are whole
    return TrainedProject(directory / ".driftloop", snapshots)


@pytest.fixture
def external(tmp_path: Path, trained_project: TrainedProject) -> Iterator[ExternalWorld]:
    shutil.copytree(trained_project.state, tmp_path / ".driftloop")
    hook_port = free_port()
    url = f"http://127.0.0.1:{hook_port}/deploy?token={URL_TOKEN}"  # a token in the URL
    config = external_config(tmp_path, url)
    system = DriftloopSystem(config, SystemOptions())
    world = PipelineWorld(tmp_path, config, system, ManualClock(START), trained_project.snapshots)
    key = system.api_keys.create(Scope.INSIGHTS, name="model-service").key
    with live_server(system.create_app(poll=False)) as url:
        yield ExternalWorld(world, url, hook_port, key)


@contextmanager
def model_service(external: ExternalWorld, confidence: dict[int, float]) -> Iterator[str]:
    """The model service in its own process, serving v1; yields its base URL."""
    arguments = [f"{version}={value}" for version, value in confidence.items()]
    command = [sys.executable, str(SERVICE), str(external.hook_port), external.url, MODEL, "1"]
    process = subprocess.Popen(
        [*command, "--confidence", *arguments],
        stdout=subprocess.PIPE,
        text=True,
        env={"DEPLOY_HOOK_SECRET": SECRET, "DRIFTLOOP_KEY": external.key, "PATH": ""},
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        yield f"http://127.0.0.1:{external.hook_port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def run_job(external: ExternalWorld) -> Job:
    system = external.system
    job_id = system.queue.enqueue(MODEL, reason="test", force=True).job.job_id
    claimed = system.queue.claim("w")
    assert claimed is not None
    assert claimed.job_id == job_id
    pipeline = RetrainPipeline(
        system.config,
        system.queue,
        system.registry,
        system.datasets,
        health=system,
        incidents=system.engine,
        hooks=PipelineHooks(),
        feedback=system.feedback.labeled_samples,
    )
    return pipeline.run(claimed, "w")


def wait_for_reports(external: ExternalWorld, version: int, count: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = time.time()
        if (
            external.system.reported_values(MODEL, version, "model_confidence", now - 60, now).size
            >= count
        ):
            return
        time.sleep(0.1)
    raise AssertionError(f"v{version} reported fewer than {count} points")


def hook_calls(service: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = httpx.get(f"{service}/state").json()["calls"]
    return calls


def test_the_pipeline_deploys_through_the_hook_and_keeps_what_the_reports_confirm(
    external: ExternalWorld,
) -> None:
    reference = external.world.reference_confidence(1)
    # v2 reports a confidence above any version's reference: not worse than v1 at its own
    with model_service(external, {1: reference, 2: 0.995}) as service:
        wait_for_reports(external, 1, 40)
        job = run_job(external)
        state = httpx.get(f"{service}/state").json()
    assert job.state == JobState.SUCCEEDED, job.error
    assert external.world.production() == 2
    [call] = state["calls"]
    version = external.system.registry.get_version(MODEL, 2)
    assert {k: call[k] for k in ("type", "action", "model", "version", "previous_version")} == {
        "type": "driftloop.deploy",
        "action": "deploy",
        "model": MODEL,
        "version": 2,
        "previous_version": 1,
    }
    assert (call["artifact_uri"], call["sha256"], call["job_id"]) == (
        version.artifact_uri,
        version.content_hash,
        job.job_id,
    )
    assert state["version"] == 2
    steps = {step.step: step for step in external.system.queue.steps(job.job_id)}
    assert "the deploy webhook of review-classifier (deploy v2): 200" in steps["deploying"].log
    assert "not worse than before the deploy" in steps["verifying"].log
    assert job.result.verification_decision["signal"] == "confidence vs reference"


def test_a_version_that_reports_worse_is_rolled_back_through_the_hook(
    external: ExternalWorld,
) -> None:
    with model_service(external, {1: external.world.reference_confidence(1), 2: 0.3}) as service:
        wait_for_reports(external, 1, 40)
        job = run_job(external)
        state = httpx.get(f"{service}/state").json()
    assert job.state == JobState.ROLLED_BACK, job.error
    assert "rolled back review-classifier to v1 through its deploy hook" in (job.error or "")
    assert external.world.production() == 1
    assert [(c["action"], c["version"], c["previous_version"]) for c in state["calls"]] == [
        ("deploy", 2, 1),
        ("rollback", 1, 2),
    ]
    assert state["version"] == 1  # the service swapped back
    assert job.result.verification_decision["verdict"] == "roll_back"


def test_a_failing_hook_fails_the_job_and_leaves_production_unchanged(
    external: ExternalWorld,
) -> None:
    reference = external.world.reference_confidence(1)
    with model_service(external, {1: reference, 2: 0.3, 3: 0.3}) as service:
        httpx.post(f"{service}/fail", json={"actions": ["deploy"]})
        job = run_job(external)
        calls = hook_calls(service)
        assert job.state == JobState.FAILED
        assert "answered 500: " in (job.error or "")
        assert "after 3 attempt(s)" in (job.error or "")
        assert "down for maintenance" in (job.error or "")
        assert URL_TOKEN not in (job.error or "")  # the error names the origin only
        assert external.world.production() == 1
        assert [c["action"] for c in calls] == ["deploy"] * 3  # retried
        assert len({c["webhook-id"] for c in calls}) == 1  # one message, resent
        deploying = [s for s in external.system.queue.steps(job.job_id) if s.step == "deploying"]
        assert deploying[-1].outcome == "failed"

        # v3 deploys but reports worse, and its rollback fails: production keeps naming v3,
        # the version the service still runs, and the job says so
        httpx.post(f"{service}/fail", json={"actions": ["rollback"]})
        wait_for_reports(external, 1, 40)
        job = run_job(external)
        state = httpx.get(f"{service}/state").json()
    assert job.state == JobState.FAILED
    assert job.candidate_version == 3
    assert "(rollback v1) failed after 3 attempt(s)" in (job.error or "")
    assert "rollback failed too" in (job.error or "")
    assert (external.world.production(), state["version"]) == (3, 3)
    actions = [c["action"] for c in state["calls"]][3:]
    assert actions == ["deploy"] + ["rollback"] * 6  # the verification's, then the failure's

    # the service is gone: the connection is refused, retried, then reported
    hook = DeployHook(external.system.config.models[MODEL].deploy, model=MODEL)  # type: ignore[arg-type]
    payload = {"action": "deploy", "version": 2, "job_id": "j", "model": MODEL}
    with pytest.raises(BackendUnavailableError, match=r"after 3 attempt\(s\): cannot reach http"):
        hook.call(payload)


def test_a_deploy_or_rollback_by_hand_calls_the_hook_before_production_moves(
    external: ExternalWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The admin API's deploy and rollback and ``driftloop models promote|rollback``: production
    of a model served elsewhere keeps naming the version that server runs."""
    admin = external.system.api_keys.create(Scope.ADMIN, name="ops").key
    headers = {"Authorization": f"Bearer {admin}"}
    models = f"{external.url}/v1/models/{MODEL}"
    with model_service(external, {1: external.world.reference_confidence(1), 2: 0.995}) as service:
        wait_for_reports(external, 1, 40)
        assert run_job(external).state == JobState.SUCCEEDED
        assert external.world.production() == 2

        answer = httpx.post(f"{models}/rollback", headers=headers)
        assert answer.status_code == 200, answer.text
        state = httpx.get(f"{service}/state").json()
        call = state["calls"][-1]
        assert (call["action"], call["version"], call["previous_version"], call["job_id"]) == (
            "rollback",
            1,
            2,
            None,
        )
        assert call["actor"].startswith("api-key:")
        assert call["webhook-id"].startswith("manual-")
        assert (state["version"], external.world.production()) == (1, 1)

        # a hook that fails: the deploy is refused and nothing moves, here or there
        httpx.post(f"{service}/fail", json={"actions": ["deploy"]})
        answer = httpx.post(f"{models}/deploy", json={"version": 2}, headers=headers)
        assert answer.status_code == 503, answer.text
        assert "the deploy webhook of review-classifier (deploy v2) failed" in answer.text
        assert external.world.production() == 1
        assert httpx.get(models, headers=headers).json()["version"] == 1
        assert httpx.get(f"{service}/state").json()["version"] == 1

        # the CLI, the same way
        httpx.post(f"{service}/fail", json={"actions": []})
        monkeypatch.setenv("DEPLOY_HOOK_SECRET", SECRET)
        config = ["--config", str(tmp_path / "driftloop.yaml")]
        promoted = CliRunner().invoke(app, ["models", "promote", MODEL, "2", *config])
        assert promoted.exit_code == 0, promoted.output
        assert httpx.get(f"{service}/state").json()["version"] == 2
        assert external.world.production() == 2
        httpx.post(f"{service}/fail", json={"actions": ["rollback"]})
        refused = CliRunner().invoke(app, ["models", "rollback", MODEL, *config])
        assert refused.exit_code != 0
        assert "(rollback v1) failed" in refused.output
        assert external.world.production() == 2
        calls = hook_calls(service)
    assert [(c["action"], c["version"]) for c in calls[-4:]] == [
        ("deploy", 2),
        ("rollback", 1),
        ("rollback", 1),
        ("rollback", 1),
    ]


def test_before_against_after_uses_the_two_sample_error_and_the_reference_shift() -> None:
    rng = np.random.default_rng(1)
    rule = VerificationRule(tolerance=0.02, min_pairs=30, min_labels=30)

    def evidence(new: float, old: float) -> ReportedEvidence:
        empty = np.zeros(0)
        return ReportedEvidence(
            rng.normal(new, 0.05, 200), rng.normal(old, 0.05, 200), empty, empty
        )

    # 0.1 lower than before, but its reference is 0.1 lower too: not worse
    kept = decide_against_before(
        evidence(0.7, 0.8), rule, reference_shift=-0.1, look=1, at_deadline=False
    )
    assert kept.verdict == Verdict.KEEP, kept.message
    worse = decide_against_before(
        evidence(0.7, 0.8), rule, reference_shift=0.0, look=1, at_deadline=False
    )
    assert worse.verdict == Verdict.ROLL_BACK
    assert "than before the deploy" in worse.message
    few = ReportedEvidence(np.full(5, 0.9), np.full(100, 0.9), np.zeros(0), np.zeros(0))
    assert (
        decide_against_before(few, rule, reference_shift=0, look=1, at_deadline=False).verdict
        == Verdict.WAIT
    )
    # labels on both sides win over confidence; all right against all wrong is decisive
    labelled = ReportedEvidence(np.full(100, 0.9), np.full(100, 0.5), np.zeros(40), np.ones(40))
    decision = decide_against_before(labelled, rule, reference_shift=0, look=1, at_deadline=False)
    assert (decision.signal, decision.verdict) == ("realized accuracy", Verdict.ROLL_BACK)


def test_the_payload_says_when_in_iso_8601_utc() -> None:
    """One timestamp format in every JSON driftloop sends (#21 part 5), the hook's included."""
    version = ModelVersion(
        name=MODEL,
        version=2,
        content_hash="6f1c",
        artifact_uri="s3://models/models/m/6f1c",
        trainer="sklearn",
        params={},
        snapshot_id=None,
        snapshot_hash=None,
        evaluation=None,
        reference=None,
        parent_version=1,
        trigger="manual",
        created_at=datetime.now(UTC),
        deployed_at=None,
    )
    payload = deploy_payload(
        "deploy", "job-1", version, 1, timestamp=1764625380.2, actor="job:job-1"
    )
    assert payload["timestamp"] == "2025-12-01T21:43:00.200000+00:00"
    assert iso_times(payload) == ["$.timestamp"]


def test_a_deploy_command_gets_the_payload_and_its_failure_is_reported(tmp_path: Path) -> None:
    received = tmp_path / "received.json"
    script = (
        "import json, os, sys; body = json.load(sys.stdin); "
        f"open({str(received)!r}, 'w').write("
        "json.dumps([body, os.environ['DRIFTLOOP_DEPLOY_VERSION']])); "
        "sys.exit(0 if body['action'] == 'deploy' else 3)"
    )
    hook = DeployHook(DeployHookConfig(command=[sys.executable, "-c", script]), model=MODEL)
    payload = {"action": "deploy", "version": 2, "job_id": "j", "model": MODEL}
    assert hook.call(payload).endswith("exit 0")
    assert json.loads(received.read_text()) == [payload, "2"]
    with pytest.raises(BackendUnavailableError, match=r"\(rollback v2\) exited with 3"):
        hook.call({**payload, "action": "rollback"})


@pytest.mark.parametrize(
    ("deploy", "message"),
    [
        ({}, "deploy takes exactly one of webhook or command"),
        (
            {"webhook": {"url": "http://x/"}, "command": ["./deploy.sh"]},
            "deploy takes exactly one of webhook or command",
        ),
        ({"webhook": {"url": "ftp://x/"}}, "models.m.deploy.webhook.url"),
        ({"webhook": {"url": "http://x/", "secret": "hunter2"}}, "whsec_"),
        ({"command": []}, "models.m.deploy.command"),
        ({"command": ["./deploy.sh"], "retries": -1}, "models.m.deploy.retries"),
    ],
)
def test_a_bad_deploy_section_is_refused_naming_the_key(
    deploy: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(yaml.safe_dump({"models": {"m": {"deploy": deploy}}}), environ={})

"""``POST /v1/models/{name}/versions``: the one door back from a training workflow, over a real
socket to the real app. An upload attaches to the retrain job waiting for its GitHub workflow
(then gate, deploy, verify), or opens a job of its own; bad uploads register nothing."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from typer.testing import CliRunner

from driftloop.cli import app as cli
from driftloop.client import AsyncClient, Client, UploadedVersion, pack_model
from driftloop.dashboard.sources import StoreDashboardData
from driftloop.errors import ForbiddenError, NotFoundError
from driftloop.objectstore import DatasetStore
from driftloop.pipeline.queue import JobState
from driftloop.pipeline.results import JobResult
from driftloop.serving.keys import Scope
from driftloop.trainers.base import TrainingData
from driftloop.trainers.evaluation import split_holdout
from driftloop.trainers.sklearn import SklearnParams, SklearnTrainer
from pipeline.test_runner import FakeGithub, github, remote_world  # noqa: F401 (a fixture)
from pipeline.world import DATASET, MODEL, SKLEARN_PARAMS, PipelineWorld, ScriptedHealthProbe
from serving.live import live_server

SOURCE = {
    "repo": "acme/review-training",
    "commit": "3f2a9c1d0b8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a",
    "run_id": "4242-1",
}


@pytest.fixture
def small_world(tmp_path: Path) -> PipelineWorld:
    """A project without a production model whose uploads may be 4 KiB at most."""
    world = PipelineWorld.create(tmp_path, extra={"serving": {"max_upload_bytes": 4096}})
    world.push(world.snapshots.known)
    return world


@pytest.fixture
def served(small_world: PipelineWorld) -> Iterator[str]:
    with live_server(small_world.system.create_app(poll=False)) as url:
        yield url


def archive_of(files: dict[str, bytes], *, link: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link is not None:
            info = tarfile.TarInfo("model/link")
            info.type, info.linkname = tarfile.SYMTYPE, link
            tar.addfile(info)
    return buffer.getvalue()


def post(
    url: str,
    key: str,
    body: bytes,
    *,
    model: str = MODEL,
    sha256: str | None = None,
    snapshot: str = "s",
) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/models/{model}/versions",
        content=body,
        headers={
            "Authorization": f"Bearer {key}",
            "X-Driftloop-Snapshot": snapshot,
            "X-Driftloop-Sha256": sha256 or hashlib.sha256(body).hexdigest(),
        },
        timeout=30,
    )


def test_bad_uploads_are_refused_and_register_nothing(
    small_world: PipelineWorld, served: str, tmp_path: Path
) -> None:
    system = small_world.system
    key = system.api_keys.create(Scope.REGISTER).key
    snapshot = system.datasets.newest(DATASET).snapshot_id
    small = archive_of({"model/weights.txt": b"w"})

    wrong_hash = post(served, key, small, sha256="0" * 64, snapshot=snapshot)
    assert wrong_hash.status_code == 422
    assert "SHA-256 is" in wrong_hash.json()["error"]["message"]

    declared = post(served, key, os.urandom(5000), snapshot=snapshot)
    assert declared.status_code == 413
    assert declared.json()["error"]["limit"] == "serving.max_upload_bytes"
    streamed = httpx.post(  # no Content-Length: the route counts as it reads
        f"{served}/v1/models/{MODEL}/versions",
        content=iter([b"x" * 3000, b"y" * 3000]),
        headers={
            "Authorization": f"Bearer {key}",
            "X-Driftloop-Snapshot": snapshot,
            "X-Driftloop-Sha256": "1" * 64,
        },
        timeout=30,
    )
    assert streamed.status_code == 413
    assert streamed.json()["error"]["limit"] == "serving.max_upload_bytes"

    escape = archive_of({"model/ok.txt": b"ok", "../escaped.txt": b"owned"})
    climbing = post(served, key, escape, snapshot=snapshot)
    assert climbing.status_code == 422
    assert "'../escaped.txt' leaves the archive's folder" in climbing.json()["error"]["message"]
    linked = post(
        served, key, archive_of({"model/ok.txt": b"ok"}, link="/etc/passwd"), snapshot=snapshot
    )
    assert linked.status_code == 422
    assert "'model/link' is a link" in linked.json()["error"]["message"]
    no_model = post(served, key, archive_of({"weights.txt": b"w"}), snapshot=snapshot)
    assert no_model.status_code == 422
    assert "no model/ folder" in no_model.json()["error"]["message"]
    unknown_snapshot = post(served, key, small, snapshot="20990101T000000Z-ffff")
    assert unknown_snapshot.status_code == 404

    tiny = tmp_path / "tiny-model"
    tiny.mkdir()
    (tiny / "weights.txt").write_text("w")
    with (
        Client(served, system.api_keys.create(Scope.PREDICT).key) as predict_client,
        pytest.raises(ForbiddenError, match="scope 'predict'"),
    ):
        predict_client.upload_version(MODEL, tiny, snapshot_id=snapshot)
    with Client(served, key) as client, pytest.raises(NotFoundError, match="'nope'"):
        client.upload_version("nope", tiny, snapshot_id=snapshot)

    async def the_async_client() -> tuple[str, str]:  # the same two calls as coroutines
        async with AsyncClient(served, key) as client:
            with pytest.raises(NotFoundError, match="'nope'"):
                await client.upload_version("nope", tiny, snapshot_id=snapshot)
            return await client.training_data(MODEL, tmp_path / "rows.csv", snapshot)

    assert anyio.run(the_async_client) == (DATASET, snapshot)
    assert (tmp_path / "rows.csv").read_text().startswith("text,label")

    assert system.registry.list_versions(MODEL) == []
    assert system.queue.list() == []
    assert not list(tmp_path.parent.rglob("escaped.txt"))


def train_on_the_snapshot(world: PipelineWorld, snapshot_id: str, into: Path) -> Path:
    """What the training workflow does: train on the snapshot without the gate's rows."""
    datasets = DatasetStore.from_config(world.config)
    train, _ = split_holdout(
        datasets.load(datasets.get(DATASET, snapshot_id)),
        "label",
        world.config.pipeline.holdout_fraction,
        world.config.pipeline.seed,
    )
    trained = SklearnTrainer(SklearnParams(**SKLEARN_PARAMS)).fit(TrainingData(train))
    trained.predictor.save(into)
    return into


def test_an_upload_attaches_to_the_job_waiting_for_its_workflow(
    tmp_path: Path,
    github: FakeGithub,  # noqa: F811
) -> None:
    world = remote_world(tmp_path, github)
    key = world.system.api_keys.create(Scope.REGISTER).key
    incident = world.open_incident()
    uploads: list[UploadedVersion] = []
    with live_server(world.system.create_app(poll=False)) as url:

        def workflow(now: float) -> None:  # runs while the job waits for its workflow
            if uploads:
                return
            inputs = github.dispatches[-1]["inputs"]
            model_dir = train_on_the_snapshot(
                world, inputs["dataset_snapshot"], tmp_path / "output" / "model"
            )
            with Client(url, key) as client:
                uploads.append(
                    client.upload_version(
                        MODEL,
                        model_dir,
                        snapshot_id=inputs["dataset_snapshot"],
                        run_id=inputs["incident_id"],
                        trainer="github-actions",
                        source=SOURCE,
                    )
                )

        world.clock.on_sleep = workflow
        job_id = world.system.enqueue_retrain(MODEL, incident, "confidence alert")
        claimed = world.system.queue.claim("test-worker")
        assert claimed is not None
        job = world.pipeline(
            ScriptedHealthProbe(world.clock, ok_from=world.clock.now, confidence={1: 0.6, 2: 0.8})
        ).run(claimed, "test-worker")

    assert job.state == JobState.SUCCEEDED, job.error
    assert uploads == [UploadedVersion(MODEL, 2, job_id, attached=True)]
    assert len(github.dispatches) == 1
    assert world.aliases() == {"production": 2, "candidate": 2}
    version = world.system.registry.get_version(MODEL, 2)
    assert version.trigger == f"incident:{incident}"
    assert version.trainer == "github-actions"
    assert version.params["training_code"] == SOURCE
    # the registry records the training code: models show and the dashboard's versions table
    code = "acme/review-training@3f2a9c1d0b8e run 4242-1"
    shown = CliRunner().invoke(
        cli, ["models", "show", MODEL, "-v", "2", "-c", str(world.directory / "driftloop.yaml")]
    )
    assert shown.exit_code == 0, shown.output
    assert "training code" in shown.stdout
    assert code in shown.stdout
    dashboard = StoreDashboardData(
        database=world.system.database,
        metric_store=world.system.metric_store,
        monitors=[],
        registry=world.system.registry,
        jobs=world.system.queue,
        models=[MODEL],
    )
    assert [v.training_code for v in dashboard.versions(MODEL)] == [code, ""]
    assert [step.step for step in world.system.queue.steps(job_id)] == [
        "fetching_data",
        "training",
        "evaluating",
        "gated",
        "deploying",
        "verifying",
    ]


def test_an_upload_with_no_job_waiting_opens_one_that_gates_it(
    tmp_path: Path,
    github: FakeGithub,  # noqa: F811
) -> None:
    world = remote_world(tmp_path, github)
    key = world.system.api_keys.create(Scope.REGISTER).key
    snapshot = world.system.datasets.newest(DATASET).snapshot_id
    model_dir = train_on_the_snapshot(world, snapshot, tmp_path / "output" / "model")
    archive = tmp_path / "model.tar.gz"
    sha256 = pack_model(model_dir, archive)
    with live_server(world.system.create_app(poll=False)) as url:
        answer = post(url, key, archive.read_bytes(), sha256=sha256, snapshot=snapshot)
        assert answer.status_code == 201, answer.text
        busy = post(url, key, archive.read_bytes(), sha256=sha256, snapshot=snapshot)
        assert busy.status_code == 409  # its job is queued, not waiting for an upload

    opened = answer.json()
    assert opened["version"] == 2
    assert opened["attached"] is False
    queued = world.system.queue.get(opened["job_id"])
    assert queued.trigger == "upload"
    assert queued.result.uploaded_version == 2
    assert world.aliases() == {"production": 1}  # nothing served before the gate
    claimed = world.system.queue.claim("test-worker")
    assert claimed is not None
    job = world.pipeline(
        ScriptedHealthProbe(world.clock, ok_from=world.clock.now, confidence={1: 0.6, 2: 0.8})
    ).run(claimed, "test-worker")

    assert job.state == JobState.SUCCEEDED, job.error
    assert github.dispatches == []  # gated as uploaded, never trained again
    assert job.candidate_version == 2
    assert world.aliases() == {"production": 2, "candidate": 2}
    assert job.result.gate["accepted"] is True
    training = world.system.queue.steps(job.job_id)[1]
    assert "v2 was uploaded" in training.log


def test_an_upload_whose_waiting_job_ends_meanwhile_gets_a_job_of_its_own(
    tmp_path: Path,
    github: FakeGithub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The job waiting for its workflow is cancelled between the upload's check and the
    version's registration: the version gets a new job that gates it, instead of staying
    registered with none."""
    world = remote_world(tmp_path, github)
    queue = world.system.queue
    incident = world.open_incident()
    job_id = world.system.enqueue_retrain(MODEL, incident, "confidence alert")
    assert queue.claim("test-worker") is not None
    remote_run = {"state": {"correlation_id": incident}}
    queue.set_state(job_id, JobState.TRAINING, result=JobResult(remote_run=remote_run))
    registry = world.system.registry
    register = registry.register

    def register_while_the_job_is_cancelled(*args: Any, **kwargs: Any) -> Any:
        queue.set_state(job_id, JobState.CANCELLED)
        return register(*args, **kwargs)

    monkeypatch.setattr(registry, "register", register_while_the_job_is_cancelled)
    snapshot = world.system.datasets.newest(DATASET).snapshot_id
    model_dir = train_on_the_snapshot(world, snapshot, tmp_path / "output" / "model")
    key = world.system.api_keys.create(Scope.REGISTER).key
    with live_server(world.system.create_app(poll=False)) as url, Client(url, key) as client:
        uploaded = client.upload_version(MODEL, model_dir, snapshot_id=snapshot, run_id=incident)

    assert uploaded.attached is False
    assert uploaded.job_id != job_id
    opened = queue.get(uploaded.job_id)
    assert opened.state == JobState.QUEUED
    assert opened.result.uploaded_version == uploaded.version == 2
    assert f"after job {job_id[:8]} ended cancelled" in opened.reason

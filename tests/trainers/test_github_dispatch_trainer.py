"""The github_dispatch remote trainer against a local server that answers like GitHub's
``workflow_dispatch`` endpoint, with the workflow simulated by registering a version in a real
registry (SQLite store + file storage), as ``driftloop models register`` does from CI."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from driftloop.cli import app
from driftloop.config import Config, parse_config
from driftloop.errors import BackendUnavailableError, ConfigError, InvalidInputError, TrainingError
from driftloop.objectstore import DatasetStore, Snapshot, bundled_reviews_path
from driftloop.registry import ModelRegistry, ModelVersion
from driftloop.scaffold import WORKFLOW_PATH, TrainingRepoOptions, render_training_repo
from driftloop.testing.clock import ManualClock
from driftloop.trainers.base import TrainingData
from driftloop.trainers.github_dispatch import (
    GITHUB_API_VERSION,
    GithubDispatchTrainer,
    WorkflowDispatch,
    trigger_mentions,
    workflow_page,
)
from driftloop.trainers.registry import get_remote_trainer, is_remote_trainer
from driftloop.trainers.remote import RemoteRun
from driftloop.trainers.sklearn import SklearnParams, SklearnTrainer
from driftloop.trainers.training import register_external

MODEL = "review-classifier"
REPO = "acme/training"
WORKFLOW = "driftloop-train.yml"
TOKEN = "ghp_test-token-not-for-logs"
DOCS = "https://docs.github.com/rest/actions/workflows#create-a-workflow-dispatch-event"


def template_inputs() -> dict[str, dict[str, Any]]:
    """The workflow_dispatch inputs the scaffolded workflow declares."""
    workflow = yaml.safe_load(render_training_repo(TrainingRepoOptions())[WORKFLOW_PATH])
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    inputs: dict[str, dict[str, Any]] = on["workflow_dispatch"]["inputs"]
    return inputs


@dataclass
class Dispatch:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeGithub:
    """Answers ``POST /repos/{repo}/actions/workflows/{workflow}/dispatches`` like GitHub:
    401 for a wrong token, 404 for an unknown repository or workflow, 422 for inputs the
    workflow does not declare or an unknown ref, else 204 and ``on_dispatch`` runs."""

    url: str = ""
    declared_inputs: dict[str, dict[str, Any]] = field(default_factory=template_inputs)
    refs: tuple[str, ...] = ("main",)
    reply_status: int | None = None
    dispatches: list[Dispatch] = field(default_factory=list)
    on_dispatch: Callable[[dict[str, Any]], None] | None = None

    def answer(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        if self.reply_status is not None:
            return self.reply_status, {"message": "Server Error"}
        if headers.get("authorization") != f"Bearer {TOKEN}":
            return 401, {
                "message": "Bad credentials",
                "documentation_url": "https://docs.github.com/rest",
                "status": "401",
            }
        if path != f"/repos/{REPO}/actions/workflows/{WORKFLOW}/dispatches":
            return 404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}
        assert headers.get("accept") == "application/vnd.github+json"
        assert headers.get("x-github-api-version") == GITHUB_API_VERSION
        assert headers.get("content-type") == "application/json"
        body = json.loads(raw)
        unexpected = sorted(set(body.get("inputs", {})) - set(self.declared_inputs))
        if unexpected:
            return 422, {
                "message": f"Unexpected inputs provided: {json.dumps(unexpected)}",
                "documentation_url": DOCS,
                "status": "422",
            }
        if body.get("ref") not in self.refs:
            return 422, {
                "message": f"No ref found for: {body.get('ref')}",
                "documentation_url": DOCS,
                "status": "422",
            }
        assert all(isinstance(v, str) for v in body["inputs"].values())
        self.dispatches.append(Dispatch(path, headers, body))
        return 204, None


@pytest.fixture
def github() -> Iterator[FakeGithub]:
    fake = FakeGithub()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, body = fake.answer(self.path, headers, raw)
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            if status == 204 and fake.on_dispatch is not None:
                inputs = fake.dispatches[-1].body["inputs"]
                threading.Thread(target=fake.on_dispatch, args=(inputs,), daemon=True).start()

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


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved predictor, as the workflow's notebook writes it."""
    reviews = pd.read_csv(bundled_reviews_path(), dtype=str, keep_default_na=False)
    sample = reviews.groupby("label", group_keys=False).sample(25, random_state=0)
    trained = SklearnTrainer(SklearnParams(c_grid=[4.0])).fit(TrainingData(sample))
    directory = tmp_path_factory.mktemp("ci-output") / "model"
    trained.predictor.save(directory)
    return directory


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return parse_config(
        f"store: sqlite:///{tmp_path / 'driftloop.db'}\n"
        f"storage: file://{tmp_path / 'storage'}\n"
        f"models:\n  {MODEL}:\n    trainer: sklearn\n    data: reviews\n",
        base_dir=tmp_path,
        environ={},
    )


@pytest.fixture
def registry(config: Config) -> ModelRegistry:
    return ModelRegistry.from_config(config)


@pytest.fixture
def snapshot(config: Config) -> Snapshot:
    reviews = pd.read_csv(bundled_reviews_path(), dtype=str, keep_default_na=False)
    return DatasetStore.from_config(config).push(reviews.head(60), "reviews")


def make_trainer(
    github: FakeGithub, registry: ModelRegistry, *, clock: ManualClock | None = None, **params: Any
) -> GithubDispatchTrainer:
    settings: dict[str, Any] = {
        "repo": REPO,
        "workflow": WORKFLOW,
        "token": TOKEN,
        "api_url": github.url,
        "poll_interval": "10s",
        "timeout": "5m",
        **params,
    }
    config_text = yaml.safe_dump(
        {"models": {MODEL: {"trainer": "github_dispatch", "params": settings}}}
    )
    model_config = parse_config(config_text, environ={}).models[MODEL]
    if clock is None:
        return GithubDispatchTrainer.from_model_config(model_config, registry)
    return GithubDispatchTrainer.from_model_config(
        model_config, registry, clock=clock, sleep=clock.sleep
    )


def test_dispatches_the_documented_request_and_returns_the_registered_version(
    github: FakeGithub, registry: ModelRegistry, config: Config, snapshot: Snapshot, model_dir: Path
) -> None:
    registered: list[ModelVersion] = []
    workflow_done = threading.Event()

    def workflow(inputs: dict[str, Any]) -> None:  # what the CI job does, a little later
        registered.append(
            register_external(
                config,
                inputs["model"],
                model_dir,
                trigger=f"incident:{inputs['incident_id']}",
                trainer="github-actions",
                snapshot_id=inputs["dataset_snapshot"],
            )
        )
        workflow_done.set()

    github.on_dispatch = workflow
    trainer = make_trainer(github, registry, poll_interval=0.05, timeout=60)
    waited: list[float] = []
    version = trainer.train_remote(
        MODEL,
        incident_id="inc-7f3a",
        snapshot=snapshot,
        callback_url="https://driftloop.example.com",
        on_wait=waited.append,
    )
    assert workflow_done.wait(30)  # the version can be seen before the workflow returns

    [dispatch] = github.dispatches
    assert dispatch.path == f"/repos/{REPO}/actions/workflows/{WORKFLOW}/dispatches"
    assert dispatch.headers["authorization"] == f"Bearer {TOKEN}"
    assert dispatch.body == {
        "ref": "main",
        "inputs": {
            "incident_id": "inc-7f3a",
            "dataset_snapshot": snapshot.snapshot_id,
            "callback_url": "https://driftloop.example.com",
            "model": MODEL,
        },
    }
    assert [v.version for v in registered] == [version.version]  # its alias may come later
    assert version.version == 1
    assert version.trigger == "incident:inc-7f3a"
    assert version.snapshot_id == snapshot.snapshot_id
    assert version.trainer == "github-actions"


def test_waits_past_versions_that_belong_to_something_else(
    github: FakeGithub, registry: ModelRegistry, model_dir: Path
) -> None:
    registry.register(MODEL, model_dir, trainer="sklearn", trigger="incident:inc-1")  # v1: old
    plan = ["incident:inc-10", "manual", "ci:run-9", "incident:inc-1"]  # v2 .. v5

    def workflow(now: float) -> None:
        sleeps = len(clock.sleeps)
        if sleeps <= len(plan):
            registry.register(MODEL, model_dir, trainer="github-actions", trigger=plan[sleeps - 1])

    clock = ManualClock(on_sleep=workflow)
    trainer = make_trainer(github, registry, clock=clock)
    version = trainer.train_remote(MODEL, incident_id="inc-1", snapshot=None, callback_url=None)

    assert version.version == 5
    assert version.trigger == "incident:inc-1"
    assert clock.sleeps == [10.0] * 4
    assert github.dispatches[0].body["inputs"]["dataset_snapshot"] == ""
    assert github.dispatches[0].body["inputs"]["callback_url"] == ""


def test_a_dispatch_without_incident_is_matched_by_its_own_id(
    github: FakeGithub, registry: ModelRegistry, model_dir: Path
) -> None:
    def workflow(now: float) -> None:
        sent = github.dispatches[0].body["inputs"]["incident_id"]
        registry.register(MODEL, model_dir, trainer="github-actions", trigger=f"dispatch:{sent}")

    trainer = make_trainer(github, registry, clock=ManualClock(on_sleep=workflow))
    version = trainer.train_remote(MODEL, incident_id=None, snapshot=None, callback_url=None)

    sent = github.dispatches[0].body["inputs"]["incident_id"]
    assert sent.startswith("dispatch-")
    assert len(sent) > len("dispatch-") + 8
    assert version.trigger == f"dispatch:{sent}"


def test_registration_with_the_cli_from_ci_is_found(
    github: FakeGithub, registry: ModelRegistry, config: Config, model_dir: Path, tmp_path: Path
) -> None:
    config_file = tmp_path / "driftloop.yaml"
    config_file.write_text(
        f"store: sqlite:///{tmp_path / 'driftloop.db'}\nstorage: file://{tmp_path / 'storage'}\n"
    )
    results: list[int] = []

    def workflow(now: float) -> None:
        if len(clock.sleeps) == 2:  # the CI job finishes while driftloop waits
            result = CliRunner().invoke(
                app,
                [
                    "models",
                    "register",
                    MODEL,
                    str(model_dir),
                    "--trigger",
                    "incident:inc-cli",
                    "--trainer",
                    "github-actions",
                    "--config",
                    str(config_file),
                    "--json",
                ],
            )
            results.append(result.exit_code)
            assert result.exit_code == 0, result.output

    clock = ManualClock(on_sleep=workflow)
    trainer = make_trainer(github, registry, clock=clock)
    version = trainer.train_remote(MODEL, incident_id="inc-cli", snapshot=None, callback_url=None)
    assert results == [0]
    assert version.trigger == "incident:inc-cli"
    assert version.version == 1


def test_timeout_is_a_training_error_naming_the_dispatch(
    github: FakeGithub, registry: ModelRegistry
) -> None:
    clock = ManualClock()
    trainer = make_trainer(github, registry, clock=clock, timeout="1m", poll_interval="25s")
    waited: list[float] = []
    with pytest.raises(TrainingError) as caught:
        trainer.train_remote(
            MODEL, incident_id="inc-slow", snapshot=None, callback_url=None, on_wait=waited.append
        )
    message = caught.value.message
    assert "inc-slow" in message
    assert "60s" in message
    assert WORKFLOW in message
    assert clock.sleeps == [25.0, 25.0, 10.0]
    assert waited == [0.0, 25.0, 50.0]
    assert TOKEN not in message
    assert registry.list_versions(MODEL) == []


def test_waiting_again_after_a_restart_keeps_the_deadline(
    github: FakeGithub, registry: ModelRegistry, model_dir: Path
) -> None:
    clock = ManualClock()
    trainer = make_trainer(github, registry, clock=clock, timeout="100s", poll_interval="30s")
    run = trainer.start(MODEL, incident_id="inc-r", snapshot=None, callback_url=None)
    assert run.trainer == "github_dispatch"
    assert run.snapshot_id is None
    assert run.summary == "dispatched driftloop-train.yml on acme/training@main (id inc-r)"
    restored = RemoteRun.from_dict(json.loads(json.dumps(run.to_dict())))  # a new process
    assert restored == run
    assert WorkflowDispatch.from_dict(restored.state).correlation_id == "inc-r"

    clock.now += 90  # the worker was down for 90 s
    with pytest.raises(TrainingError):
        trainer.wait(restored)
    assert clock.sleeps == [10.0]  # only what was left of the 100 s

    registry.register(MODEL, model_dir, trainer="github-actions", trigger="incident:inc-r")
    assert trainer.wait(restored).trigger == "incident:inc-r"
    assert len(github.dispatches) == 1


def test_a_cancelled_wait_stops_at_once(github: FakeGithub, registry: ModelRegistry) -> None:
    class CancelledError(Exception):
        pass

    def on_wait(seconds: float) -> None:
        if seconds >= 20:
            raise CancelledError

    clock = ManualClock()
    trainer = make_trainer(github, registry, clock=clock)
    with pytest.raises(CancelledError):
        trainer.train_remote(
            MODEL, incident_id="inc-c", snapshot=None, callback_url=None, on_wait=on_wait
        )
    assert clock.sleeps == [10.0, 10.0]


def test_unknown_workflow_404_is_a_clear_training_error(
    github: FakeGithub, registry: ModelRegistry
) -> None:
    trainer = make_trainer(github, registry, workflow="deploy.yml")
    with pytest.raises(TrainingError) as caught:
        trainer.train_remote(MODEL, incident_id="inc-1", snapshot=None, callback_url=None)
    message = caught.value.message
    assert "404" in message
    assert "Not Found" in message
    assert DOCS in message
    assert "deploy.yml" in message
    assert REPO in message
    assert "params.repo" in message
    assert TOKEN not in message
    assert github.dispatches == []


def test_undeclared_inputs_422_is_a_clear_training_error(
    github: FakeGithub, registry: ModelRegistry
) -> None:
    github.declared_inputs = {"incident_id": {}}  # an older workflow
    trainer = make_trainer(github, registry)
    with pytest.raises(TrainingError) as caught:
        trainer.train_remote(MODEL, incident_id="inc-1", snapshot=None, callback_url=None)
    message = caught.value.message
    assert "422" in message
    assert "Unexpected inputs provided" in message
    assert DOCS in message
    assert "workflow_dispatch" in message


def test_unknown_ref_422_and_bad_token_401(github: FakeGithub, registry: ModelRegistry) -> None:
    with pytest.raises(TrainingError, match="No ref found for: release"):
        make_trainer(github, registry, ref="release").train_remote(
            MODEL, incident_id="i", snapshot=None, callback_url=None
        )
    with pytest.raises(TrainingError, match="401: Bad credentials") as caught:
        make_trainer(github, registry, token="wrong").train_remote(
            MODEL, incident_id="i", snapshot=None, callback_url=None
        )
    assert "wrong" not in caught.value.message.replace("Bad credentials", "")


def test_server_errors_and_unreachable_github_are_backend_unavailable(
    github: FakeGithub, registry: ModelRegistry
) -> None:
    github.reply_status = 502
    with pytest.raises(BackendUnavailableError, match="502"):
        make_trainer(github, registry).train_remote(
            MODEL, incident_id="i", snapshot=None, callback_url=None
        )
    with pytest.raises(BackendUnavailableError, match="cannot reach GitHub"):
        make_trainer(github, registry, api_url="http://127.0.0.1:9").train_remote(
            MODEL, incident_id="i", snapshot=None, callback_url=None
        )


def test_an_incident_id_that_cannot_be_an_input_is_refused_before_dispatching(
    github: FakeGithub, registry: ModelRegistry
) -> None:
    with pytest.raises(InvalidInputError, match="without spaces"):
        make_trainer(github, registry).train_remote(
            MODEL, incident_id="two words", snapshot=None, callback_url=None
        )
    assert github.dispatches == []


def test_params_come_from_the_model_config_with_the_token_from_the_environment(
    registry: ModelRegistry,
) -> None:
    text = (
        "models:\n  m:\n    trainer: github_dispatch\n    params:\n"
        "      repo: acme/training\n      token: ${GITHUB_TOKEN}\n      timeout: 2h\n"
    )
    model_config = parse_config(text, environ={"GITHUB_TOKEN": TOKEN}).models["m"]
    assert is_remote_trainer(model_config.trainer)
    assert not is_remote_trainer("sklearn")
    trainer = get_remote_trainer(model_config.trainer, model_config, registry)
    assert isinstance(trainer, GithubDispatchTrainer)
    assert trainer.params.timeout == 7200.0
    assert trainer.params.workflow == "driftloop-train.yml"
    assert trainer.params.ref == "main"
    assert trainer.url == (
        "https://api.github.com/repos/acme/training/actions/workflows/driftloop-train.yml"
        "/dispatches"
    )
    assert TOKEN not in repr(trainer.params)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"token": "t"}, "params.repo: Field required"),
        ({"repo": "not-a-repo", "token": "t"}, "params.repo"),
        ({"repo": "a/b", "token": "t", "workflows": "x"}, "params.workflows: unknown key"),
        ({"repo": "a/b", "token": "t", "timeout": "soon"}, "params.timeout"),
        ({"repo": "a/b", "token": ""}, "token is empty"),
    ],
)
def test_bad_params_are_config_errors(
    registry: ModelRegistry, params: dict[str, Any], expected: str
) -> None:
    text = yaml.safe_dump({"models": {"m": {"trainer": "github_dispatch", "params": params}}})
    model_config = parse_config(text, environ={}).models["m"]
    with pytest.raises(ConfigError, match=expected):
        get_remote_trainer("github_dispatch", model_config, registry)


def test_a_local_or_unknown_trainer_is_no_remote_trainer(registry: ModelRegistry) -> None:
    model_config = parse_config("models: {m: {trainer: sklearn}}", environ={}).models["m"]
    with pytest.raises(ConfigError, match="'sklearn' trainer trains locally"):
        get_remote_trainer("sklearn", model_config, registry)
    with pytest.raises(ConfigError, match=r"known: command, github_dispatch, notebook, sklearn"):
        get_remote_trainer("gitlab_pipeline", model_config, registry)


def test_trigger_mentions_whole_ids_only() -> None:
    assert trigger_mentions("incident:abc-1", "abc-1")
    assert trigger_mentions("ci:run-7/incident=abc-1", "abc-1")
    assert not trigger_mentions("incident:abc-10", "abc-1")
    assert not trigger_mentions("incident:xabc-1", "abc-1")
    assert not trigger_mentions("manual", "abc-1")


def test_workflow_page_for_github_and_enterprise() -> None:
    assert workflow_page("https://api.github.com", "a/b", "t.yml") == (
        "https://github.com/a/b/actions/workflows/t.yml"
    )
    assert workflow_page("https://ghe.example.com/api/v3", "a/b", "t.yml") == (
        "https://ghe.example.com/a/b/actions/workflows/t.yml"
    )
    assert workflow_page("http://127.0.0.1:5000", "a/b", "t.yml") is None

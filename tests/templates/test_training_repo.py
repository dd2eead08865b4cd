"""``driftloop init --template training-repo``: the files it writes, a workflow that GitHub
accepts and whose commands exist, and (slow) the workflow's steps run on this machine: fetch
the data from driftloop's API, run the notebook with papermill, upload the model to the real
app, whose retrain pipeline gates, deploys and verifies it."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import nbformat
import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from driftloop.cli import app
from driftloop.config import load_config, parse_config
from driftloop.errors import ConflictError, InvalidInputError
from driftloop.objectstore import bundled_reviews_path
from driftloop.pipeline.queue import JobState
from driftloop.predictors import Evaluation, check_predictor, load_predictor
from driftloop.predictors.loading import USER_MODULE_PREFIX
from driftloop.registry import ModelRegistry
from driftloop.scaffold import (
    TRAINING_REPO_TEMPLATE,
    WORKFLOW_PATH,
    TrainingRepoOptions,
    render_template_text,
    render_training_repo,
    scaffold,
    training_repo_files,
)
from driftloop.serving.keys import Scope
from driftloop.system import DriftloopSystem
from driftloop.trainers.base import TrainingData
from driftloop.trainers.evaluation import split_holdout
from driftloop.trainers.github_dispatch import WORKFLOW_INPUTS, GithubDispatchTrainer
from driftloop.trainers.notebook import NotebookTrainer
from driftloop.trainers.registry import get_remote_trainer
from serving.live import live_server
from templates.workflow_checks import (
    WORKFLOW_STRUCTURE_SCHEMA,
    evaluate,
    expressions,
    github_workflow_schema,
    load_workflow,
    render_value,
)

runner = CliRunner()
MODEL = "review-classifier"
EXPECTED_FILES = [
    ".github/workflows/driftloop-train.yml",
    ".gitignore",
    "README.md",
    "driftloop.yaml",
    "notebooks/train.ipynb",
    "predictor.py",
    "requirements.txt",
    "scripts/fetch_training_data.py",
    "scripts/upload_model.py",
]
VENV_BIN = Path(sys.executable).parent


def workflow(options: TrainingRepoOptions | None = None) -> dict[str, Any]:
    return load_workflow(render_training_repo(options or TrainingRepoOptions())[WORKFLOW_PATH])


def steps(flow: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = flow["jobs"]["train"]["steps"]
    return found


def step(flow: dict[str, Any], name_start: str) -> dict[str, Any]:
    [found] = [s for s in steps(flow) if s.get("name", "").startswith(name_start)]
    return found


def run_scripts(flow: dict[str, Any]) -> list[str]:
    return [s["run"] for s in steps(flow) if "run" in s]


def shell_commands(script: str) -> list[list[str]]:
    """The script's commands as words (continuations joined, redirections dropped)."""
    joined = script.replace("\\\n", " ")
    commands: list[list[str]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "case ")) or line.endswith(";;") or line == "esac":
            continue
        words = shlex.split(line)
        redirections = [i for i, word in enumerate(words) if word.startswith(">")]
        if redirections:
            words = words[: redirections[0]]
        if words and not re.match(r"^[A-Z_]+=", words[0]):
            commands.append(words)
    return commands


# ----------------------------------------------------------------------------------- files


def test_init_writes_the_training_repository(tmp_path: Path) -> None:
    target = tmp_path / "training"
    result = runner.invoke(app, ["init", "--template", "training-repo", str(target)])
    assert result.exit_code == 0, result.output
    written = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert written == EXPECTED_FILES
    for path in written:
        assert "{{driftloop." not in (target / path).read_text(), path
    assert "set the secrets" in result.output


def test_every_template_file_is_rendered_and_dot_names_become_hidden() -> None:
    sources = training_repo_files()
    assert sorted(sources) == EXPECTED_FILES
    assert all("dot-" not in path for path in sources)
    rendered = render_training_repo(TrainingRepoOptions())
    assert not any("{{driftloop." in text for text in rendered.values())


def test_an_unknown_template_variable_is_an_error() -> None:
    with pytest.raises(InvalidInputError, match="unknown variable 'gpu'"):
        render_template_text("runs-on: {{driftloop.gpu}}", {"model": "m"}, source="x.yml")


def test_init_keeps_existing_files_unless_forced(tmp_path: Path) -> None:
    scaffold(TRAINING_REPO_TEMPLATE, tmp_path)
    (tmp_path / "README.md").write_text("ours")
    result = runner.invoke(app, ["init", "--template", "training-repo", str(tmp_path)])
    assert result.exit_code == 1
    assert "already exist" in result.output
    assert (tmp_path / "README.md").read_text() == "ours"
    with pytest.raises(ConflictError):
        scaffold(TRAINING_REPO_TEMPLATE, tmp_path)
    result = runner.invoke(app, ["init", "-t", "training-repo", "--force", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "README.md").read_text().startswith("# Training repository")


def test_init_options_reach_the_files(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "init",
            "--template",
            "training-repo",
            "--runs-on",
            "self-hosted, gpu",
            "--model",
            "ticket-router",
            "--repo",
            "acme/ticket-training",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    flow = load_workflow((tmp_path / WORKFLOW_PATH).read_text())
    assert flow["jobs"]["train"]["runs-on"] == ["self-hosted", "gpu"]
    assert flow["on"]["workflow_dispatch"]["inputs"]["model"]["default"] == "ticket-router"
    config = load_config(tmp_path / "driftloop.yaml", environ={})
    assert config.models["ticket-router"].params["repo"] == "acme/ticket-training"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--template", "helm-chart"],
            "unknown template 'helm-chart'; known templates: project, training-repo",
        ),
        (["--template", "training-repo", "--runs-on", "gpu runner"], "runner labels"),
        (["--template", "training-repo", "--model", "Bad Name"], "model name 'Bad Name'"),
        (["--template", "training-repo", "--repo", "no-owner"], "must be OWNER/NAME"),
        (["--runs-on", "gpu"], "only apply to --template training-repo"),
    ],
)
def test_init_rejects_bad_options(tmp_path: Path, args: list[str], expected: str) -> None:
    result = runner.invoke(app, ["init", *args, str(tmp_path / "repo")])
    assert result.exit_code == 1
    assert expected in " ".join(result.output.split())
    assert not (tmp_path / "repo" / WORKFLOW_PATH).exists()


def test_the_default_template_is_still_the_project_config(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["driftloop.yaml"]


# -------------------------------------------------------------------------------- workflow


@pytest.mark.parametrize("runs_on", [("ubuntu-latest",), ("self-hosted", "gpu")])
def test_workflow_validates_against_githubs_schema(runs_on: tuple[str, ...]) -> None:
    flow = workflow(TrainingRepoOptions(runs_on=runs_on))
    schema = github_workflow_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    # as declared (draft 7, what check-jsonschema does), and with 2019-09 semantics, under
    # which the keywords beside a "$ref" apply too (the schema's workflow_dispatch inputs are
    # defined that way, and draft 7 would ignore them)
    for validator in (jsonschema.Draft7Validator, jsonschema.Draft201909Validator):
        errors = [e.message for e in validator(schema).iter_errors(flow)]
        assert errors == [], validator.__name__
    jsonschema.validate(flow, WORKFLOW_STRUCTURE_SCHEMA)
    expected_runner: str | list[str] = runs_on[0] if len(runs_on) == 1 else list(runs_on)
    assert flow["jobs"]["train"]["runs-on"] == expected_runner


def test_githubs_schema_catches_what_github_rejects() -> None:
    """The schema check is not vacuous: GitHub's own mistakes fail it."""
    validator = jsonschema.Draft201909Validator(github_workflow_schema())
    flow = workflow()
    broken_on = {
        **flow,
        "on": {
            **flow["on"],
            "workflow_dispatch": {"inputs": {"incident_id": {"description": "x", "type": "text"}}},
        },
    }
    assert list(validator.iter_errors(broken_on))
    assert list(validator.iter_errors({**flow, "trigger": "push"}))
    no_runner = {**flow, "jobs": {"train": {"steps": steps(flow)}}}
    assert list(validator.iter_errors(no_runner))
    both = {
        **flow,
        "jobs": {"train": {**flow["jobs"]["train"], "steps": [{"uses": "a/b@v1", "run": "echo"}]}},
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(both, WORKFLOW_STRUCTURE_SCHEMA)


def test_workflow_triggers_inputs_and_actions() -> None:
    flow = workflow()
    assert flow["on"]["push"]["branches"] == ["main"]
    inputs = flow["on"]["workflow_dispatch"]["inputs"]
    assert tuple(inputs) == WORKFLOW_INPUTS  # exactly what GithubDispatchTrainer sends
    for spec in inputs.values():
        assert spec["type"] == "string"
        assert spec["required"] is False
    uses = [s["uses"] for s in steps(flow) if "uses" in s]
    assert uses[:2] == ["actions/checkout@v4", "actions/setup-python@v5"]
    assert step(flow, "Set up Python")["with"]["python-version"] == "3.11"
    assert flow["jobs"]["train"]["runs-on"] == "ubuntu-latest"
    assert set(flow["jobs"]["train"]["env"]) == {"MODEL", "INCIDENT_ID", "DATASET_SNAPSHOT"}
    for name in ("Fetch the training rows", "Upload the model"):
        api_env = step(flow, name)["env"]
        assert api_env["API_URL"] == "${{ inputs.callback_url || secrets.DRIFTLOOP_API_URL }}"
        assert api_env["API_KEY"] == "${{ secrets.DRIFTLOOP_API_KEY }}"
    assert not any("/deploy" in script for script in run_scripts(flow))  # never deploys


def test_the_runner_needs_only_the_api_key() -> None:
    """No database or storage credentials: the key of the register scope and the API's URL."""
    secrets = {
        reference
        for expression in expressions(workflow())
        for reference in re.findall(r"secrets\.(\w+)", expression)
    }
    assert secrets == {"DRIFTLOOP_API_URL", "DRIFTLOOP_API_KEY"}


def test_driftloop_variables_do_not_reach_the_driftloop_commands() -> None:
    """DRIFTLOOP_* variables override driftloop.yaml keys: none is set where driftloop runs
    (the API's URL and key reach the scripts as API_URL and API_KEY)."""
    flow = workflow()
    assert not {k for k in flow["jobs"]["train"]["env"] if k.startswith("DRIFTLOOP_")}
    for item in steps(flow):
        if "driftloop" in item.get("run", "") or "scripts/" in item.get("run", ""):
            assert not any(k.startswith("DRIFTLOOP_") for k in item.get("env", {}))


def test_run_scripts_read_inputs_only_through_the_environment() -> None:
    for script in run_scripts(workflow()):
        assert "${{" not in script, script


def test_run_scripts_are_valid_bash() -> None:
    for script in run_scripts(workflow()):
        result = subprocess.run(
            ["bash", "-n", "-c", script], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, (script, result.stderr)


def test_expressions_name_declared_inputs_and_step_outputs() -> None:
    flow = workflow()
    inputs = set(flow["on"]["workflow_dispatch"]["inputs"])
    ids = {s["id"]: s for s in steps(flow) if "id" in s}
    contexts = {"inputs", "secrets", "vars", "github", "steps"}
    seen = expressions(flow)
    assert seen
    for expression in seen:
        for reference in re.findall(r"[A-Za-z_][\w-]*(?:\.[\w-]+)+", expression):
            context, *path = reference.split(".")
            assert context in contexts, expression
            if context == "inputs":
                assert path[0] in inputs, expression
            if context == "steps":
                step_id, kind, output = path
                assert kind == "outputs"
                assert f"{output}=" in ids[step_id].get("run", "") + _script_outputs(
                    ids[step_id]
                ), expression


def _script_outputs(item: dict[str, Any]) -> str:
    """Outputs a step's script writes through a helper script (scripts/fetch_training_data)."""
    run = item.get("run", "")
    match = re.search(r"python (scripts/\S+\.py)", run)
    if not match:
        return ""
    return render_training_repo(TrainingRepoOptions())[match.group(1)]


def test_every_driftloop_command_in_the_workflow_exists() -> None:
    root = typer.main.get_command(app)
    used = [
        words
        for script in run_scripts(workflow())
        for words in shell_commands(script)
        if words[0] == "driftloop"
    ]  # today none: the scripts talk to the API
    for words in used:
        command: Any = root
        rest = words[1:]
        while hasattr(command, "commands"):  # a group (typer ships its own click classes)
            sub = command.commands.get(rest[0])
            assert sub is not None, f"no command {' '.join(words[: len(words) - len(rest) + 1])}"
            command, rest = sub, rest[1:]
        options = {opt for param in command.params for opt in param.opts}
        for word in rest:
            if word.startswith("-"):
                assert word in options, f"{' '.join(words)}: {word} is not an option"


def test_every_file_the_workflow_uses_is_in_the_template() -> None:
    rendered = render_training_repo(TrainingRepoOptions())
    commands = [w for script in run_scripts(workflow()) for w in shell_commands(script)]
    programs = {words[0] for words in commands}
    assert {"python", "papermill"} <= programs
    assert not {"driftloop", "curl"} & programs  # the scripts talk to the API
    for words in commands:
        for word in words[1:]:
            if re.match(r"^(scripts|notebooks)/", word) or word == "requirements.txt":
                assert word in rendered, word
    papermill = next(w for w in commands if w[0] == "papermill")
    parameters = [papermill[i + 1] for i, w in enumerate(papermill) if w == "-p"]
    source = notebook_parameters(json.loads(rendered["notebooks/train.ipynb"]))
    for name in parameters:
        assert re.search(rf"^{name} = ", source, re.MULTILINE), name


# ----------------------------------------------------------------------- notebook and config


def cell_source(cell: dict[str, Any]) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def notebook_parameters(document: dict[str, Any]) -> str:
    [cell] = [c for c in document["cells"] if "parameters" in c["metadata"].get("tags", [])]
    return cell_source(cell)


def test_notebook_is_valid_with_a_parameters_cell() -> None:
    document = json.loads(render_training_repo(TrainingRepoOptions())["notebooks/train.ipynb"])
    nbformat.validate(document)
    assert document["nbformat"] == 4
    assert document["metadata"]["kernelspec"]["name"] == "python3"
    source = notebook_parameters(document)
    assert 'data_path = "data/train.csv"' in source
    assert 'output_dir = "output"' in source
    code = "\n".join(cell_source(c) for c in document["cells"] if c["cell_type"] == "code")
    assert "SklearnTrainer" in code
    assert "load_predictor" in code


def notebook_as_script(notebook: Path, **parameters: object) -> str:
    """The notebook's code cells as one script, ``parameters`` set after its parameters cell
    (where papermill injects them)."""
    document = json.loads(notebook.read_text())
    parts: list[str] = []
    for cell in document["cells"]:
        if cell["cell_type"] == "code":
            parts.append(cell_source(cell))
            if "parameters" in cell["metadata"].get("tags", []):
                parts += [f"{name} = {value!r}" for name, value in parameters.items()]
    return "\n\n".join(parts)


def test_the_notebooks_model_is_served_through_the_templates_own_predictor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#18 part 5: the notebook writes its model with the template's ``predictor.py`` beside it,
    named in the manifest; the directory loads through the plug-in path (the module file in the
    model directory) as the registry and the server load it, and cleans texts as it answers.
    The notebook's code runs in this process (its libraries are imported already); the slow
    test below runs it with papermill."""
    scaffold(TRAINING_REPO_TEMPLATE, tmp_path)
    reviews = pd.read_csv(bundled_reviews_path(), dtype=str, keep_default_na=False)
    reviews.groupby("label", group_keys=False).sample(30, random_state=2).to_csv(
        tmp_path / "train.csv", index=False
    )
    script = notebook_as_script(
        tmp_path / "notebooks" / "train.ipynb",
        data_path="train.csv",
        output_dir="output",
        c_grid=[4.0],
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the notebook adds the repository
    try:
        exec(compile(script, "train.ipynb", "exec"), {"__name__": "notebook"})  # noqa: S102
    finally:
        sys.modules.pop("predictor", None)  # what the notebook imported from the repository

    model_dir = tmp_path / "output" / "model"
    manifest = json.loads((model_dir / "driftloop-model.json").read_text())
    assert manifest["predictor"] == "predictor.py:ReviewPredictor"
    assert (model_dir / "predictor.py").read_text() == (tmp_path / "predictor.py").read_text()
    loaded = load_predictor(model_dir)
    assert type(loaded).__name__ == "ReviewPredictor"
    assert type(loaded).__module__.startswith(USER_MODULE_PREFIX)  # the directory's own file
    check_predictor(loaded, "the template's model")  # what registration checks
    assert sorted(loaded.labels) == sorted(reviews["label"].unique())
    text = "Great battery, the screen is sharp and bright"
    marked_up = np.asarray(loaded.predict([f"<p>{text}<br /></p>"]))
    assert np.allclose(marked_up, np.asarray(loaded.predict([text])))


def test_serving_config_uses_the_github_dispatch_trainer(tmp_path: Path) -> None:
    text = render_training_repo(TrainingRepoOptions(repo="acme/training"))["driftloop.yaml"]
    config = parse_config(text, base_dir=tmp_path, environ={})
    model_config = config.models[MODEL]
    assert model_config.trainer == "github_dispatch"
    assert model_config.notebook == "notebooks/train.ipynb"
    assert config.store == "sqlite:///.driftloop/driftloop.db"

    with_token = parse_config(
        text,
        base_dir=tmp_path,
        environ={"GITHUB_TOKEN": "ghp_x", "DRIFTLOOP_STORE": f"sqlite:///{tmp_path / 'x.db'}"},
    )
    registry = ModelRegistry.from_config(with_token)
    trainer = get_remote_trainer("github_dispatch", with_token.models[MODEL], registry)
    assert isinstance(trainer, GithubDispatchTrainer)
    assert trainer.params.repo == "acme/training"
    assert trainer.params.workflow == Path(WORKFLOW_PATH).name
    assert trainer.params.timeout == 3 * 3600


def test_requirements_pin_driftloop_with_the_notebook_extra() -> None:
    text = render_training_repo(TrainingRepoOptions(driftloop_version="9.8.7"))["requirements.txt"]
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == ["driftloop[server,notebook]>=9.8.7"]


# ------------------------------------------------------------------- the workflow, run here


class LocalRunner:
    """Runs the workflow's ``run`` steps with bash in the scaffolded repository, the way the
    Actions runner does: job env + step env (expressions evaluated), $GITHUB_OUTPUT per step."""

    def __init__(self, repo: Path, flow: dict[str, Any], contexts: dict[str, Any]) -> None:
        self.repo = repo
        self.flow = flow
        self.contexts = contexts
        self.contexts.setdefault("steps", {})
        self.summary = repo.parent / "summary.md"

    def run(self, name_start: str) -> subprocess.CompletedProcess[str] | None:
        item = step(self.flow, name_start)
        condition = item.get("if")
        if condition is not None and not evaluate(
            str(condition).strip().removeprefix("${{").removesuffix("}}"), self.contexts
        ):
            return None
        output = self.repo.parent / f"output-{item.get('id', 'step')}.txt"
        output.write_text("")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")}
        env.update(
            {
                "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
                "GITHUB_ACTIONS": "true",
                "GITHUB_RUN_ID": "4242",
                "GITHUB_RUN_ATTEMPT": "1",
                "GITHUB_REPOSITORY": "acme/review-training",
                "GITHUB_SHA": COMMIT,
                "GITHUB_OUTPUT": str(output),
                "GITHUB_STEP_SUMMARY": str(self.summary),
            }
        )
        for scope in (self.flow["jobs"]["train"].get("env", {}), item.get("env", {})):
            env.update({k: render_value(str(v), self.contexts) for k, v in scope.items()})
        result = subprocess.run(
            ["bash", "-e", "-c", item["run"]],
            cwd=self.repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        if "id" in item:
            pairs = [line.split("=", 1) for line in output.read_text().splitlines() if line]
            self.contexts["steps"][item["id"]] = {"outputs": dict(pairs)}
        return result


COMMIT = "9fceb02d0ae598e95dc970b74767f19372d61af8"


@dataclass
class TrainingRepo:
    """A scaffolded repository and the driftloop its driftloop.yaml describes, served on a
    real socket, with a small snapshot of the bundled reviews and a key of the register
    scope."""

    repo: Path
    system: DriftloopSystem
    url: str
    key: str


@pytest.fixture
def training_repo(tmp_path: Path) -> Iterator[TrainingRepo]:
    repo = tmp_path / "training-repo"
    scaffold(TRAINING_REPO_TEMPLATE, repo)
    (tmp_path / "server").mkdir()
    config = load_config(
        repo / "driftloop.yaml",
        environ={
            "DRIFTLOOP_STORE": f"sqlite:///{tmp_path / 'server' / 'driftloop.db'}",
            "DRIFTLOOP_STORAGE": f"file://{tmp_path / 'server' / 'storage'}",
            "GITHUB_TOKEN": "ghp_unused",
        },
    )
    system = DriftloopSystem(config)
    reviews = pd.read_csv(bundled_reviews_path(), dtype=str, keep_default_na=False)
    sample = reviews.groupby("label", group_keys=False).sample(40, random_state=1)
    system.datasets.push(sample, "reviews")
    key = system.api_keys.create(Scope.REGISTER, name="training-repo").key
    with live_server(system.create_app(poll=False)) as url:
        yield TrainingRepo(repo, system, url, key)


@pytest.mark.slow
def test_the_workflow_trains_and_uploads_for_driftloop_to_gate(training_repo: TrainingRepo) -> None:
    repo, system = training_repo.repo, training_repo.system
    config = system.config
    [snapshot] = system.datasets.list("reviews")
    flow = load_workflow((repo / WORKFLOW_PATH).read_text())
    contexts: dict[str, Any] = {
        "inputs": {
            "incident_id": "inc-42",
            "dataset_snapshot": snapshot.snapshot_id,
            "callback_url": training_repo.url,
            "model": MODEL,
        },
        "secrets": {
            "DRIFTLOOP_API_URL": "http://127.0.0.1:9/unused",
            "DRIFTLOOP_API_KEY": training_repo.key,
        },
        "vars": {},
        "github": {"event_name": "workflow_dispatch"},
    }
    local = LocalRunner(repo, flow, contexts)

    fetched = local.run("Fetch the training rows")
    assert fetched is not None
    assert fetched.returncode == 0, fetched.stderr
    assert contexts["steps"]["data"]["outputs"] == {
        "dataset": "reviews",
        "snapshot_id": snapshot.snapshot_id,
    }
    rows = pd.read_csv(repo / "data" / "train.csv", dtype=str, keep_default_na=False)
    frame = system.datasets.load(snapshot)
    _, held_out = split_holdout(
        frame, "label", config.pipeline.holdout_fraction, seed=config.pipeline.seed
    )
    assert len(rows) == len(frame) - len(held_out)
    assert not set(rows["text"]) & set(held_out["text"])  # the gate's rows stay unseen

    trained = local.run("Run the training notebook")
    assert trained is not None
    assert trained.returncode == 0, trained.stderr[-3000:]
    predictor = load_predictor(repo / "output" / "model")
    assert sorted(predictor.labels) == sorted(frame["label"].unique())
    metrics = json.loads((repo / "output" / "metrics.json").read_text())
    assert 0.0 < metrics["macro_f1"] <= 1.0

    uploaded = local.run("Upload the model")
    assert uploaded is not None
    assert uploaded.returncode == 0, uploaded.stderr
    outputs = contexts["steps"]["upload"]["outputs"]
    assert outputs["version"] == "1"
    [version] = system.registry.list_versions(MODEL)
    assert version.trigger == "incident:inc-42"
    assert version.trainer == "github-actions"
    assert (version.snapshot_id, version.snapshot_hash) == (
        snapshot.snapshot_id,
        snapshot.content_hash,
    )
    assert isinstance(version.evaluation, Evaluation)
    assert version.evaluation.macro_f1 == pytest.approx(metrics["macro_f1"])
    assert version.reference is not None
    assert version.params["training_code"] == {
        "repo": "acme/review-training",
        "commit": COMMIT,
        "run_id": "4242-1",
    }
    # no job waited for this run: driftloop opened one, which gates it before any deploy
    job = system.queue.get(outputs["job_id"])
    assert (job.state, job.trigger, job.result.uploaded_version) == (JobState.QUEUED, "upload", 1)
    assert system.registry.aliases(MODEL) == {}
    assert "Uploaded review-classifier" in (repo.parent / "summary.md").read_text()

    contexts["secrets"]["DRIFTLOOP_API_KEY"] = "dl_00000000_" + "x" * 40  # a wrong key
    refused = local.run("Upload the model")
    assert refused is not None
    assert refused.returncode != 0
    assert "unknown API key" in refused.stderr
    assert len(system.registry.list_versions(MODEL)) == 1


@pytest.mark.slow
def test_the_same_notebook_runs_as_a_notebook_trainer(tmp_path: Path) -> None:
    scaffold(TRAINING_REPO_TEMPLATE, tmp_path)
    reviews = pd.read_csv(bundled_reviews_path(), dtype=str, keep_default_na=False)
    sample = reviews.groupby("label", group_keys=False).sample(40, random_state=2)
    trainer = NotebookTrainer(tmp_path / "notebooks" / "train.ipynb", cwd=tmp_path, timeout=240)
    trained = trainer.fit(TrainingData(sample.reset_index(drop=True)))
    assert sorted(trained.predictor.labels) == sorted(sample["label"].unique())
    assert trained.params["reported_metrics"]["train_rows"] > 0
    assert isinstance(trained.evaluation, Evaluation)
    assert 0.0 < trained.evaluation.macro_f1 <= 1.0
    assert type(trained.predictor).__name__ == "ReviewPredictor"  # the template's own code
    assert trained.model_dir is not None  # registered as the notebook wrote it
    assert (trained.model_dir / "predictor.py").is_file()


def test_missing_secrets_in_actions_are_named(tmp_path: Path) -> None:
    scaffold(TRAINING_REPO_TEMPLATE, tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLOOP_", "API_"))}
    env.update({"GITHUB_ACTIONS": "true", "API_URL": "http://127.0.0.1:9"})
    for script in (
        ["scripts/fetch_training_data.py", MODEL],
        ["scripts/upload_model.py", MODEL, "output", "--snapshot", "s"],
    ):
        result = subprocess.run(
            [sys.executable, *script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2
        assert (
            "set API_KEY (in GitHub Actions: the repository secrets DRIFTLOOP_API_URL and "
            "DRIFTLOOP_API_KEY, a key with the register scope)" in result.stderr
        )


# ------------------------------------------------------- --trainer transformers (GPU runner)


def test_the_transformers_training_repo_targets_a_gpu_runner(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["init", "--template", "training-repo", "--trainer", "transformers", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    flow = load_workflow((tmp_path / WORKFLOW_PATH).read_text())
    assert flow["jobs"]["train"]["runs-on"] == ["self-hosted", "gpu"]
    requirements = [
        line
        for line in (tmp_path / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert requirements[0].startswith("driftloop[server,notebook,transformers]>=")
    assert "torch>=2.4,<3" in requirements  # a range: the runner's CUDA build is kept
    assert "transformers>=4.44" in requirements
    guide = (tmp_path / "RUNNER.md").read_text()
    assert "--labels gpu" in guide
    assert "runs-on: [self-hosted, gpu]" in guide
    document = json.loads((tmp_path / "notebooks" / "train.ipynb").read_text())
    nbformat.validate(document)
    source = notebook_parameters(document)
    assert 'base_model = ""' in source
    assert 'predictor_file = "predictor.py"' in source
    code = "".join(cell_source(c) for c in document["cells"])
    assert "TransformersTrainer" in code
    # #18 part 5: like the sklearn notebook, it trains on the texts predictor.py's clean gives
    # and saves its model to be served through the template's own ReviewPredictor
    sklearn_code = "".join(
        cell_source(c)
        for c in json.loads(render_training_repo(TrainingRepoOptions())["notebooks/train.ipynb"])[
            "cells"
        ]
    )
    for step in (
        "from predictor import clean",
        "rows[text_column] = rows[text_column].map(clean)",
        'shutil.copy(predictor_file, model_dir / "predictor.py")',
        'manifest["predictor"] = "predictor.py:ReviewPredictor"',
        'assert type(loaded).__name__ == "ReviewPredictor"',
    ):
        assert step in code, step
        assert step in sklearn_code, step
    assert (tmp_path / "predictor.py").is_file()
    with pytest.raises(InvalidInputError, match="unknown trainer 'xgboost'"):
        TrainingRepoOptions(trainer="xgboost")


@pytest.mark.long  # two minutes (torch in the test and in the kernel): make bench
@pytest.mark.parametrize(("mode", "trained_as"), [("full", "full"), ("auto", "head")])
def test_the_transformers_notebook_fine_tunes_on_a_cpu(
    tmp_path: Path, mode: str, trained_as: str
) -> None:
    """The workflow's papermill call with a tiny local checkpoint (nothing downloaded): every
    layer trained (the GPU's mode, without mixed precision on a CPU), or the CPU's own mode
    (``auto`` on a CPU: a head, then the top ``train_layers`` tuned with ``head_epochs``)."""
    repo = tmp_path / "repo"
    scaffold(TRAINING_REPO_TEMPLATE, repo, options=TrainingRepoOptions(trainer="transformers"))
    reviews = pd.read_csv(bundled_reviews_path(), dtype=str, keep_default_na=False)
    sample = reviews.groupby("label", group_keys=False).sample(20, random_state=3)
    (repo / "data").mkdir()
    (repo / "output").mkdir()  # the workflow's mkdir -p output
    sample.to_csv(repo / "data" / "train.csv", index=False)
    from trainers.tiny_encoders import write_tiny_encoder  # imports torch: only when it runs

    checkpoint = write_tiny_encoder(tmp_path / "tiny-bert", sample["text"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")}
    env.update({"HF_HUB_OFFLINE": "1", "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"})
    result = subprocess.run(
        [
            "papermill",
            "notebooks/train.ipynb",
            "output/train.ipynb",
            "-p",
            "data_path",
            str(repo / "data" / "train.csv"),
            "-p",
            "output_dir",
            str(repo / "output"),
            "-p",
            "base_model",
            str(checkpoint),
            "-p",
            "mode",
            mode,
            "-p",
            "epochs",
            "1",
            "-p",
            "head_epochs",
            "1",
            "-p",
            "max_length",
            "32",
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((repo / "output" / "metrics.json").read_text())
    assert metrics["device"] == "cpu"
    assert metrics["params"]["mode"] == trained_as
    if trained_as == "head":
        assert metrics["params"]["train_layers"] == 2
        assert metrics["params"]["epochs"] == 1
    assert 0.0 <= metrics["macro_f1"] <= 1.0
    predictor = load_predictor(repo / "output" / "model")
    assert type(predictor).__name__ == "ReviewPredictor"  # the template's own predictor.py
    assert type(predictor.model).__name__ == "TransformersPredictor"  # type: ignore[attr-defined]
    assert sorted(predictor.labels) == sorted(sample["label"].unique())
    evaluation = json.loads((repo / "output" / "evaluation.json").read_text())
    assert set(evaluation) == {"evaluation", "reference"}

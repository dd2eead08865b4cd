"""Writing a template that ships with driftloop into a directory: ``driftloop init --template``.

Templates:

* ``project`` (the default): a commented ``driftloop.yaml`` that works as is
  (:func:`driftloop.project.init_project`);
* ``training-repo``: a training repository as teams keep one: a GitHub Actions workflow that
  trains, registers and deploys (``.github/workflows/driftloop-train.yml``), the training
  notebook papermill runs, the script that fetches the training rows, the serving-side
  ``driftloop.yaml``, ``requirements.txt`` and a README (files under
  ``driftloop/templates/training_repo/``).

In template files ``{{driftloop.NAME}}`` stands for a variable of :class:`TrainingRepoOptions`
(rendered by :func:`render_template_text`), and a leading ``dot-`` in a file or folder name
becomes ``.`` (``dot-github/`` → ``.github/``), so no packaging tool drops a hidden file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from driftloop._version import __version__
from driftloop.config import NAME_PATTERN
from driftloop.errors import ConflictError, InvalidInputError
from driftloop.project import init_project

PROJECT_TEMPLATE = "project"
TRAINING_REPO_TEMPLATE = "training-repo"
TEMPLATES: dict[str, str] = {
    PROJECT_TEMPLATE: "a driftloop.yaml that works as is",
    TRAINING_REPO_TEMPLATE: "a training repository: GitHub Actions workflow, papermill notebook, "
    "serving-side driftloop.yaml",
}
TRAINING_REPO_PACKAGE_DIR = "training_repo"
TRAINERS = ("sklearn", "transformers")
"""The training-repo template's notebooks: ``sklearn`` (TF-IDF, CPU) or ``transformers`` (a
Hugging Face checkpoint fine-tuned on a GPU runner, files of ``training_repo_transformers/``
over the common ones)."""
GPU_RUNS_ON = ("self-hosted", "gpu")
"""The runner labels of ``--trainer transformers`` when ``--runs-on`` is not given."""
WORKFLOW_PATH = ".github/workflows/driftloop-train.yml"
DOT_PREFIX = "dot-"
_PLACEHOLDER = re.compile(r"\{\{driftloop\.([a-z_]+)\}\}")
_RUNNER_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_PYTHON_VERSION = re.compile(r"^3\.\d{1,2}$")


@dataclass(frozen=True)
class TrainingRepoOptions:
    """The variables of the ``training-repo`` template."""

    model: str = "review-classifier"
    dataset: str = "reviews"
    runs_on: tuple[str, ...] = ("ubuntu-latest",)
    repo: str = "owner/training-repo"
    python_version: str = "3.11"
    driftloop_version: str = field(default=__version__)
    trainer: str = "sklearn"

    def __post_init__(self) -> None:
        if self.trainer not in TRAINERS:
            raise InvalidInputError(
                f"unknown trainer {self.trainer!r} for the training repo; "
                f"known: {', '.join(TRAINERS)}"
            )
        for what, value in (("model name", self.model), ("dataset name", self.dataset)):
            if not re.match(NAME_PATTERN, value):
                raise InvalidInputError(
                    f"{what} {value!r} must match {NAME_PATTERN} (lower case, digits, . _ -)"
                )
        if not self.runs_on:
            raise InvalidInputError("runs-on needs at least one runner label")
        bad = [label for label in self.runs_on if not _RUNNER_LABEL.match(label)]
        if bad:
            raise InvalidInputError(
                f"runner labels {bad} are not valid: use letters, digits, '.', '_', '-' "
                "(e.g. ubuntu-latest, or self-hosted,gpu)"
            )
        if not _REPO.match(self.repo):
            raise InvalidInputError(f"repository {self.repo!r} must be OWNER/NAME")
        if not _PYTHON_VERSION.match(self.python_version):
            raise InvalidInputError(f"python version {self.python_version!r}: expected 3.X")

    @classmethod
    def parse_runs_on(cls, text: str) -> tuple[str, ...]:
        """``"self-hosted,gpu"`` → ``("self-hosted", "gpu")``."""
        return tuple(part.strip() for part in text.split(",") if part.strip())

    def variables(self) -> dict[str, str]:
        """Placeholder name → the text it becomes (YAML-ready where it lands in YAML)."""
        runs_on = self.runs_on[0] if len(self.runs_on) == 1 else "[" + ", ".join(self.runs_on) + "]"
        return {
            "model": self.model,
            "dataset": self.dataset,
            "runs_on": runs_on,
            "repo": self.repo,
            "python_version": self.python_version,
            "driftloop_version": self.driftloop_version,
            "trainer": self.trainer,
        }


def known_templates() -> list[str]:
    return sorted(TEMPLATES)


def render_template_text(text: str, variables: dict[str, str], *, source: str) -> str:
    """Replace every ``{{driftloop.NAME}}``; an unknown name is an error naming the file."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            raise InvalidInputError(
                f"template file {source} uses unknown variable {name!r}; known: {sorted(variables)}"
            )
        return variables[name]

    return _PLACEHOLDER.sub(replace, text)


def target_name(name: str) -> str:
    """A template file or folder name as written (``dot-github`` → ``.github``)."""
    return "." + name[len(DOT_PREFIX) :] if name.startswith(DOT_PREFIX) else name


def training_repo_files(trainer: str = "sklearn") -> dict[str, Traversable]:
    """Target relative path (``.github/workflows/...``) → the template file, sorted; for a
    trainer other than ``sklearn`` its own files (``training_repo_<trainer>/``) replace or
    join the common ones."""
    templates = resources.files("driftloop.templates")
    found: dict[str, Traversable] = {}

    def walk(node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            if child.name == "__pycache__" or child.name.endswith(".pyc"):
                continue
            path = f"{prefix}{target_name(child.name)}"
            if child.is_dir():
                walk(child, path + "/")
            else:
                found[path] = child

    walk(templates.joinpath(TRAINING_REPO_PACKAGE_DIR), "")
    if trainer != "sklearn":
        walk(templates.joinpath(f"{TRAINING_REPO_PACKAGE_DIR}_{trainer}"), "")
    return dict(sorted(found.items()))


def render_training_repo(options: TrainingRepoOptions) -> dict[str, str]:
    """Every file of the training-repo template, rendered: relative path → text."""
    variables = options.variables()
    return {
        path: render_template_text(source.read_text(encoding="utf-8"), variables, source=path)
        for path, source in training_repo_files(options.trainer).items()
    }


def write_training_repo(
    directory: Path, options: TrainingRepoOptions | None = None, *, force: bool = False
) -> list[Path]:
    """Write the training-repo template into ``directory``; existing files are kept unless
    ``force`` (then nothing is written at all). Returns the written files."""
    rendered = render_training_repo(options or TrainingRepoOptions())
    targets = {directory / path: text for path, text in rendered.items()}
    existing = sorted(str(path) for path in targets if path.exists())
    if existing and not force:
        raise ConflictError(
            f"{len(existing)} file(s) already exist, e.g. {existing[0]}; pass --force to "
            "overwrite them"
        )
    for path, text in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return sorted(targets)


def scaffold(
    template: str,
    directory: Path,
    *,
    options: TrainingRepoOptions | None = None,
    force: bool = False,
) -> list[Path]:
    """Write ``template`` into ``directory``; returns the files written."""
    if template == PROJECT_TEMPLATE:
        if options is not None:
            raise InvalidInputError(
                "--model, --runs-on, --repo and --trainer only apply to --template training-repo"
            )
        return [init_project(directory, force=force)]
    if template == TRAINING_REPO_TEMPLATE:
        return write_training_repo(directory, options, force=force)
    raise InvalidInputError(
        f"unknown template {template!r}; known templates: {', '.join(known_templates())}"
    )

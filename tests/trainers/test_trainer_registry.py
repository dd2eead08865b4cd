"""Trainers by name: known names, lazy imports, construction from the model config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from driftloop.backends import BackendEntry
from driftloop.config import ModelConfig
from driftloop.errors import ConfigError, MissingExtraError
from driftloop.trainers.command import CommandTrainer
from driftloop.trainers.notebook import NotebookTrainer
from driftloop.trainers.registry import (
    TRAINERS,
    get_trainer,
    is_remote_trainer,
    known_trainers,
    trainer_class,
)
from driftloop.trainers.sklearn import SklearnTrainer


def test_known_trainers() -> None:
    assert known_trainers() == ["command", "github_dispatch", "notebook", "sklearn", "transformers"]
    assert TRAINERS.entries["transformers"].target == (
        "driftloop.trainers.transformers:TransformersTrainer"
    )


def test_unknown_trainer_lists_the_known_ones() -> None:
    with pytest.raises(
        ConfigError,
        match=(
            r"unknown trainer name 'xgboost'; known: command, github_dispatch, notebook, sklearn, "
            r"transformers; install a package that provides it \(pip install PACKAGE; it declares "
            r"the entry point group 'driftloop.trainers'\)"
        ),
    ):
        get_trainer("xgboost", ModelConfig(trainer="xgboost"))


def test_heavy_trainers_are_imported_only_when_used() -> None:
    code = (
        "import sys, driftloop.trainers.registry as r; r.get_trainer('sklearn', "
        "__import__('driftloop.config').config.ModelConfig()); "
        "print(sorted(m for m in ('torch', 'transformers', 'papermill', "
        "'driftloop.trainers.transformers') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_builds_each_trainer_from_its_model_config(tmp_path: Path) -> None:
    assert isinstance(get_trainer("sklearn", ModelConfig()), SklearnTrainer)
    notebook = tmp_path / "train.ipynb"
    notebook.write_text("{}")
    built = get_trainer(
        "notebook", ModelConfig(trainer="notebook", notebook="train.ipynb"), base_dir=tmp_path
    )
    assert isinstance(built, NotebookTrainer)
    assert built.notebook == notebook
    command = get_trainer(
        "command", ModelConfig(trainer="command", command=["true"]), base_dir=tmp_path
    )
    assert isinstance(command, CommandTrainer)
    assert command.cwd == tmp_path
    assert trainer_class("sklearn") is SklearnTrainer


def test_external_trainers_need_their_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"needs models\.<name>\.notebook"):
        get_trainer("notebook", ModelConfig(trainer="notebook"), base_dir=tmp_path)
    with pytest.raises(ConfigError, match="no such notebook"):
        get_trainer(
            "notebook", ModelConfig(trainer="notebook", notebook="missing.ipynb"), base_dir=tmp_path
        )
    with pytest.raises(ConfigError, match=r"needs models\.<name>\.command"):
        get_trainer("command", ModelConfig(trainer="command"), base_dir=tmp_path)


def test_a_trainer_without_its_extra_is_not_remote_and_building_it_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pipeline asks is_remote_trainer before its steps; the missing extra is reported when
    the training step builds the trainer, as for any local trainer."""
    monkeypatch.setitem(
        TRAINERS.entries,
        "gpu",
        BackendEntry("driftloop.trainers.sklearn:SklearnTrainer", ("no_such_module_xyz",), "gpu"),
    )
    assert not is_remote_trainer("gpu")
    assert is_remote_trainer("github_dispatch")
    with pytest.raises(MissingExtraError, match=r"pip install 'driftloop\[gpu\]'"):
        get_trainer("gpu", ModelConfig(trainer="gpu"))

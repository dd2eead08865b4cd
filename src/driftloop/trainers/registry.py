"""Trainers by name (``models.<name>.trainer``), imported only when used.

A trainer class is built from its model's config: with the classmethod
``from_model_config(model_config, base_dir=...)`` when it has one (relative notebook paths and
commands resolve against ``base_dir``, the project directory), else as ``cls(model_config)``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from driftloop.config import ModelConfig
from driftloop.errors import ConfigError, MissingExtraError
from driftloop.trainers.base import Trainer

# trainer name → ("module:Class", extra that provides its dependencies)
TRAINERS: dict[str, tuple[str, str | None]] = {
    "sklearn": ("driftloop.trainers.sklearn:SklearnTrainer", None),
    "transformers": ("driftloop.trainers.transformers:TransformersTrainer", "transformers"),
    "notebook": ("driftloop.trainers.notebook:NotebookTrainer", "notebook"),
    "command": ("driftloop.trainers.command:CommandTrainer", None),
}


def known_trainers() -> list[str]:
    return sorted(TRAINERS)


def trainer_class(name: str) -> type[Trainer]:
    """The class registered under ``name``; an unknown name lists the known ones."""
    entry = TRAINERS.get(name)
    if entry is None:
        raise ConfigError(
            f"unknown trainer {name!r}; known trainers: {', '.join(known_trainers())}"
        )
    target, extra = entry
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if extra is None:
            raise
        raise MissingExtraError(
            f"the {name!r} trainer needs {exc.name or 'an optional package'}: "
            f"pip install 'driftloop[{extra}]'"
        ) from exc
    found = getattr(module, class_name)
    if not (isinstance(found, type) and issubclass(found, Trainer)):
        raise ConfigError(f"{target} is not a Trainer")
    return found


def get_trainer(
    name: str, model_config: ModelConfig, *, base_dir: Path | None = None
) -> Trainer:
    """A ready trainer for ``model_config`` (``name`` is usually ``model_config.trainer``)."""
    cls = trainer_class(name)
    factory = getattr(cls, "from_model_config", None)
    if factory is not None:
        trainer = factory(model_config, base_dir=base_dir or Path.cwd())
    else:
        trainer = cls(model_config)  # type: ignore[call-arg]
    if not isinstance(trainer, Trainer):
        raise ConfigError(f"the {name!r} trainer factory returned {type(trainer).__name__}")
    return trainer

"""Trainers by name (``models.<name>.trainer``), local and remote, imported only when used.

:data:`TRAINERS` is the trainer family of the plug-in registry (:mod:`driftloop.backends`): the
built-ins below, and any class an installed package declares in the entry-point group
``driftloop.trainers``. A name resolves to a :class:`~driftloop.trainers.base.Trainer`
subclass (fits in this process) or a :class:`~driftloop.trainers.remote.RemoteTrainer` subclass
(starts a job elsewhere and waits for the version it registers).

A local trainer class is built from its model's config: with the classmethod
``from_model_config(model_config, base_dir=...)`` when it has one (relative notebook paths and
commands resolve against ``base_dir``, the project directory), else as ``cls(model_config)``.
A remote one with ``from_model_config(model_config, registry, clock=..., sleep=...)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from driftloop.backends import PluginFamily
from driftloop.config import ModelConfig
from driftloop.errors import ConfigError, MissingExtraError
from driftloop.registry.model_registry import ModelRegistry
from driftloop.trainers.base import Trainer
from driftloop.trainers.remote import RemoteTrainer

TrainerClass = type[Trainer] | type[RemoteTrainer]

TRAINERS: PluginFamily[TrainerClass] = PluginFamily("trainer")
TRAINERS.register("sklearn", "driftloop.trainers.sklearn:SklearnTrainer")
TRAINERS.register(
    "transformers", "driftloop.trainers.transformers:TransformersTrainer", extra="transformers"
)
TRAINERS.register("notebook", "driftloop.trainers.notebook:NotebookTrainer", extra="notebook")
TRAINERS.register("command", "driftloop.trainers.command:CommandTrainer")
TRAINERS.register("github_dispatch", "driftloop.trainers.github_dispatch:GithubDispatchTrainer")


def known_trainers() -> list[str]:
    """Every trainer name, local and remote, built in and installed."""
    return TRAINERS.known_names()


def trainer_class(name: str) -> TrainerClass:
    """The class registered under ``name``; an unknown name lists the known ones."""
    found: object = TRAINERS.load(name)
    if not (isinstance(found, type) and issubclass(found, Trainer | RemoteTrainer)):
        raise ConfigError(
            f"the trainer {name!r} is {found!r}, not a Trainer or RemoteTrainer subclass"
        )
    return found


def is_remote_trainer(name: str) -> bool:
    """True when ``name`` (``models.<name>.trainer``) is a remote trainer (``github_dispatch``);
    False for a trainer whose optional extra is missing (building it says so)."""
    try:
        return issubclass(trainer_class(name), RemoteTrainer)
    except MissingExtraError:
        return False


def get_trainer(name: str, model_config: ModelConfig, *, base_dir: Path | None = None) -> Trainer:
    """A ready trainer for ``model_config`` (``name`` is usually ``model_config.trainer``)."""
    cls = trainer_class(name)
    if issubclass(cls, RemoteTrainer):
        raise ConfigError(
            f"the {name!r} trainer trains remotely: it registers the version "
            "itself and has no local fit"
        )
    factory = getattr(cls, "from_model_config", None)
    if factory is not None:
        trainer = factory(model_config, base_dir=base_dir or Path.cwd())
    else:
        trainer = cls(model_config)  # type: ignore[call-arg]
    if not isinstance(trainer, Trainer):
        raise ConfigError(f"the {name!r} trainer factory returned {type(trainer).__name__}")
    return trainer


def get_remote_trainer(
    name: str,
    model_config: ModelConfig,
    registry: ModelRegistry,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> RemoteTrainer:
    """A ready remote trainer built from ``model_config.params``; it watches ``registry`` for
    the version the remote job registers. ``clock``/``sleep`` pace the wait (tests inject
    them)."""
    cls = trainer_class(name)
    if not issubclass(cls, RemoteTrainer):
        raise ConfigError(f"the {name!r} trainer trains locally: it is not a remote trainer")
    trainer = cls.from_model_config(model_config, registry, clock=clock, sleep=sleep)
    if not isinstance(trainer, RemoteTrainer):
        raise ConfigError(f"the {name!r} trainer factory returned {type(trainer).__name__}")
    return trainer

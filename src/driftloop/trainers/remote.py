"""Remote trainers: the training runs somewhere else (a CI workflow on a GPU runner) and the
result comes back as a version registered by that job, not as a :class:`TrainedModel`.

A :class:`RemoteTrainer` is therefore not a :class:`~driftloop.trainers.base.Trainer`: its one
method, :meth:`RemoteTrainer.train_remote`, starts the remote job and waits until the job has
registered a new version of the model (``driftloop models register`` from CI), then returns that
:class:`~driftloop.registry.versions.ModelVersion`. The retrain pipeline uses it in place of
``fit`` + ``register_trained`` when ``models.<name>.trainer`` names a remote trainer
(:func:`is_remote_trainer`), and gates the returned version like any other candidate.
"""

from __future__ import annotations

import importlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from driftloop.config import ModelConfig
from driftloop.errors import ConfigError
from driftloop.registry.model_registry import ModelRegistry
from driftloop.registry.versions import ModelVersion
from driftloop.storage.datasets import Snapshot

WaitCallback = Callable[[float], None]
"""Called as ``on_wait(seconds_waited)`` before each pause while a remote job runs; the caller
may heartbeat there, or raise to stop waiting (a cancelled job)."""

# remote trainer name → "module:Class"
REMOTE_TRAINERS: dict[str, str] = {
    "github_dispatch": "driftloop.trainers.github_dispatch:GithubDispatchTrainer",
}


class RemoteTrainer(ABC):
    """Hands a training job to another system and returns the version that job registers."""

    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def from_model_config(
        cls,
        model_config: ModelConfig,
        registry: ModelRegistry,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> RemoteTrainer:
        """Build the trainer from ``models.<name>.params``; bad params are a ConfigError."""

    @abstractmethod
    def train_remote(
        self,
        model_name: str,
        *,
        incident_id: str | None,
        snapshot: Snapshot | None,
        callback_url: str | None,
        on_wait: WaitCallback | None = None,
    ) -> ModelVersion:
        """Start the remote job and wait for the version it registers.

        ``incident_id`` ties the job (and the registered version's trigger) to an incident;
        ``snapshot`` is the dataset snapshot to train on (``None``: the job uses the newest);
        ``callback_url`` is the base URL of this driftloop's API, for the job to talk back to.
        Raises :class:`~driftloop.errors.TrainingError` when the job cannot start or registers
        nothing in time.
        """


def is_remote_trainer(name: str) -> bool:
    """True when ``models.<name>.trainer`` names a remote trainer (``github_dispatch``)."""
    return name in REMOTE_TRAINERS


def known_remote_trainers() -> list[str]:
    return sorted(REMOTE_TRAINERS)


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
    target = REMOTE_TRAINERS.get(name)
    if target is None:
        raise ConfigError(
            f"unknown remote trainer {name!r}; known remote trainers: "
            f"{', '.join(known_remote_trainers())}"
        )
    module_name, _, class_name = target.partition(":")
    found = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(found, type) and issubclass(found, RemoteTrainer)):
        raise ConfigError(f"{target} is not a RemoteTrainer")
    trainer = found.from_model_config(model_config, registry, clock=clock, sleep=sleep)
    if not isinstance(trainer, RemoteTrainer):
        raise ConfigError(f"the {name!r} trainer factory returned {type(trainer).__name__}")
    return trainer

"""Remote trainers: the training runs somewhere else (a CI workflow on a GPU runner) and the
result comes back as a version registered by that job, not as a :class:`TrainedModel`.

A :class:`RemoteTrainer` is therefore not a :class:`~driftloop.trainers.base.Trainer`. It works
in two phases: :meth:`RemoteTrainer.start` starts the remote job and returns a
:class:`RemoteRun`, JSON-ready so the caller can record it; :meth:`RemoteTrainer.wait` waits,
from that record (in a later process too), until the job has registered a new version of the
model (the workflow's upload, ``POST /v1/models/{name}/versions``) and returns that
:class:`~driftloop.registry.versions.ModelVersion`. The retrain pipeline records the run in the
job before waiting, so a resumed job waits for the same run instead of starting another, and
gates the returned version like any other candidate. Remote trainers are registered with the
local ones, in :data:`driftloop.trainers.registry.TRAINERS`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from driftloop.config import ModelConfig
from driftloop.objectstore.datasets import Snapshot
from driftloop.registry.model_registry import ModelRegistry
from driftloop.registry.versions import ModelVersion

WaitCallback = Callable[[float], None]
"""Called as ``on_wait(seconds_waited)`` before each pause while a remote job runs; the caller
may heartbeat there, or raise to stop waiting (a cancelled job)."""


@dataclass(frozen=True)
class RemoteRun:
    """A started remote job: what :meth:`RemoteTrainer.wait` needs to wait for it again.

    ``snapshot_id`` is the dataset snapshot the job was given (``None``: it takes the newest),
    ``summary`` one line for the job's log, ``state`` the trainer's own JSON-ready record."""

    trainer: str
    snapshot_id: str | None
    summary: str
    state: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RemoteRun:
        snapshot = data.get("snapshot_id")
        return cls(
            trainer=str(data["trainer"]),
            snapshot_id=None if snapshot is None else str(snapshot),
            summary=str(data.get("summary", "")),
            state=dict(data.get("state", {})),
        )


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
    def start(
        self,
        model_name: str,
        *,
        incident_id: str | None,
        snapshot: Snapshot | None,
        callback_url: str | None,
    ) -> RemoteRun:
        """Start the remote job; the returned run is all :meth:`wait` needs.

        ``incident_id`` ties the job (and the registered version's trigger) to an incident;
        ``snapshot`` is the dataset snapshot to train on (``None``: the job uses the newest);
        ``callback_url`` is the base URL of this driftloop's API, for the job to talk back to.
        Raises :class:`~driftloop.errors.TrainingError` when the job cannot start.
        """

    @abstractmethod
    def wait(self, run: RemoteRun, *, on_wait: WaitCallback | None = None) -> ModelVersion:
        """Wait for the version ``run`` registers (its deadline counts from its start, so
        waiting again after a restart keeps it); :class:`~driftloop.errors.TrainingError`
        when it registers nothing in time."""

    def train_remote(
        self,
        model_name: str,
        *,
        incident_id: str | None,
        snapshot: Snapshot | None,
        callback_url: str | None,
        on_wait: WaitCallback | None = None,
    ) -> ModelVersion:
        """Both phases at once: start the remote job and wait for the version it registers."""
        run = self.start(
            model_name, incident_id=incident_id, snapshot=snapshot, callback_url=callback_url
        )
        return self.wait(run, on_wait=on_wait)

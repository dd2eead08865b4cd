"""A real driftloop project for the reliability tests: a directory with ``driftloop.yaml``
(SQLite store, file storage, local transport, one sklearn model, one confidence monitor), the
bundled reviews pushed as snapshots, production v1 trained by the real SklearnTrainer, an
optional v2, API keys, and helpers to run the app with uvicorn on a loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml
from fastapi import FastAPI

from driftloop.config import Config, ServingConfig, load_config
from driftloop.database import open_database
from driftloop.objectstore import DatasetStore, Snapshot
from driftloop.registry import ModelRegistry, ModelVersion
from driftloop.serving import ApiKeyStore, Scope
from driftloop.serving.limits import uvicorn_options
from driftloop.trainers.base import TrainingData
from driftloop.trainers.sklearn import SklearnParams, SklearnTrainer
from pipeline.world import DATASET, MODEL, SKLEARN_PARAMS, make_snapshots

__all__ = ["DATASET", "MODEL", "ReliabilityProject", "UvicornThread", "free_port"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class ReliabilityProject:
    """A project directory with a production model; :meth:`create` trains v1 (and v2)."""

    directory: Path
    config: Config
    predict_key: str
    admin_key: str
    versions: list[ModelVersion]

    @classmethod
    def create(
        cls,
        directory: Path,
        *,
        second_version: bool = False,
        port: int = 0,
        pipeline: Mapping[str, Any] | None = None,
        serving: Mapping[str, Any] | None = None,
        store: str = "sqlite:///.driftloop/driftloop.db",
        storage: str = "file://.driftloop/storage",
        transport: str = "local://",
        extra: Mapping[str, Any] | None = None,
    ) -> ReliabilityProject:
        directory.mkdir(parents=True, exist_ok=True)
        document: dict[str, Any] = {
            "store": store,
            "storage": storage,
            "transport": transport,
            "serving": {"port": port, "registry_poll_interval": "1s", **(serving or {})},
            "insights": {"flush_interval": 0.05},
            "models": {MODEL: {"trainer": "sklearn", "data": DATASET, "params": SKLEARN_PARAMS}},
            "monitors": [
                {
                    "name": "confidence",
                    "metric": "model_confidence",
                    "aggregation": "avg",
                    "window": "30s",
                    "group_by": ["model"],
                    "min_count": 3,
                    "below": {"warning": 0.05, "critical": 0.02},
                    "message": "confidence of {{model}} is {{value}} "
                    "{{#is_alert}}@retrain{{/is_alert}}",
                }
            ],
            "pipeline": {
                "cooldown": "1s",
                "verify_deadline": "40s",
                "verify_interval": "1s",
                "verify_min_predictions": 3,
                "verify_tolerance": 1.0,
                "min_fresh_rows": 30,
                "holdout_fraction": 0.3,
                **(pipeline or {}),
            },
        }
        document.update(extra or {})
        path = directory / "driftloop.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        config = load_config(path, environ={})
        keys = ApiKeyStore(open_database(config.store, base_dir=config.base_dir))
        project = cls(
            directory,
            config,
            keys.create(Scope.PREDICT, name="client").key,
            keys.create(Scope.ADMIN, name="operator").key,
            [],
        )
        snapshots = make_snapshots()
        project.versions.append(project.train(project.push(snapshots.known)))
        project.registry.set_alias(MODEL, "production", 1, actor="test")
        if second_version:
            project.versions.append(project.train(project.push(snapshots.drifted)))
        return project

    @property
    def registry(self) -> ModelRegistry:
        return ModelRegistry.from_config(self.config)

    @property
    def datasets(self) -> DatasetStore:
        return DatasetStore.from_config(self.config)

    def push(self, frame: Any) -> Snapshot:
        return self.datasets.push(frame, DATASET)

    def train(self, snapshot: Snapshot) -> ModelVersion:
        data = self.datasets.load(snapshot)
        trained = SklearnTrainer(SklearnParams(**SKLEARN_PARAMS)).fit(
            TrainingData(data, "text", "label", snapshot.snapshot_id, snapshot.content_hash)
        )
        return self.registry.register_trained(
            MODEL, trained, trainer="sklearn", snapshot=snapshot, trigger="manual"
        )

    def headers(self, *, admin: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key if admin else self.predict_key}"}


class UvicornThread:
    """An app served by uvicorn on 127.0.0.1 in a thread (a real socket, a real server)."""

    def __init__(
        self, app: FastAPI, port: int | None = None, serving: ServingConfig | None = None
    ) -> None:
        self.port = port or free_port()
        # the serving.* connection limits, as every driftloop command starts uvicorn with them
        limits = uvicorn_options(serving if serving is not None else ServingConfig())
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", **limits
            )
        )
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @contextlib.contextmanager
    def running(self, timeout: float = 30.0) -> Iterator[str]:
        self.thread.start()
        deadline = time.monotonic() + timeout
        try:
            while not self.server.started:
                if not self.thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("uvicorn did not start")
                time.sleep(0.02)
            wait_ready(self.url, deadline - time.monotonic())
            yield self.url
        finally:
            self.server.should_exit = True
            self.thread.join(30)


def wait_ready(url: str, timeout: float) -> None:
    """Wait until ``/readyz`` answers 200 (every served model loaded)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/readyz", timeout=2.0)
            if response.status_code == 200:
                return
            last = response.text
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise RuntimeError(f"{url} never became ready: {last}")


DRIFTLOOP = str(Path(sys.executable).parent / "driftloop")


@dataclass
class LoopProcess:
    """``driftloop up`` (or another long-running command) as a child process."""

    project: ReliabilityProject
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *arguments: str) -> None:
        """``driftloop up`` (or, with ``arguments``, that command) with the project's config."""
        self.starts += 1
        environ = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")}
        command = list(arguments) or ["up", "--port", str(self.port), "--monitor-interval", "1"]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [DRIFTLOOP, *command, "--config", str(self.project.directory / "driftloop.yaml")],
                cwd=self.project.directory,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environ,
            )
        if arguments:
            return
        try:
            wait_ready(self.url, 120)
        except RuntimeError:
            self.kill()
            raise AssertionError(self.log.read_text()[-3000:]) from None

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no flush, no cleanup runs."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        assert self.process.wait(timeout=30) == -signal.SIGKILL

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

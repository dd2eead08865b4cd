"""Running the app under uvicorn: ``driftloop serve``.

One worker runs the app object in this process. Several workers (``--workers N``) each build
their own app from the import-string factory :func:`~driftloop.serving.app.app_from_environment`
(the config path travels in ``$DRIFTLOOP_CONFIG``); ``PROMETHEUS_MULTIPROC_DIR`` is set (to
``.driftloop/prometheus`` unless already set) so ``/metrics`` merges all workers.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from driftloop.config import Config, find_config
from driftloop.errors import ConfigError
from driftloop.serving.limits import uvicorn_options
from driftloop.serving.prometheus import MULTIPROCESS_ENV

FACTORY = "driftloop.serving.app:app_from_environment"
PROMETHEUS_DIR = ".driftloop/prometheus"


@dataclass(frozen=True)
class ServerPlan:
    """How ``driftloop serve`` will run: shown before it starts."""

    host: str
    port: int
    workers: int
    config_path: Path | None
    multiprocess_dir: Path | None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def plan_server(
    config: Config,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int = 1,
    config_path: Path | None = None,
) -> ServerPlan:
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    path = config_path or find_config()
    if workers > 1 and path is None:
        raise ConfigError("several workers need a driftloop.yaml file to read (pass --config)")
    multiprocess_dir = None
    if workers > 1:
        existing = os.environ.get(MULTIPROCESS_ENV)
        multiprocess_dir = Path(existing) if existing else config.path(PROMETHEUS_DIR)
    return ServerPlan(
        host=host or config.serving.host,
        port=config.serving.port if port is None else port,
        workers=workers,
        config_path=None if path is None else path.resolve(),
        multiprocess_dir=multiprocess_dir,
    )


def run_server(config: Config, plan: ServerPlan) -> None:
    """Serve until interrupted."""
    if plan.workers == 1:
        from driftloop.serving.app import create_app

        uvicorn.run(
            create_app(config),
            host=plan.host,
            port=plan.port,
            log_level="info",
            **uvicorn_options(config.serving),
        )
        return
    if plan.config_path is None or plan.multiprocess_dir is None:
        raise ConfigError("several workers need a config file and a metrics directory")
    if not os.environ.get(MULTIPROCESS_ENV):
        # a fresh directory: files left by an earlier run would be counted again
        shutil.rmtree(plan.multiprocess_dir, ignore_errors=True)
    plan.multiprocess_dir.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROCESS_ENV] = str(plan.multiprocess_dir)
    os.environ["DRIFTLOOP_CONFIG"] = str(plan.config_path)
    # each worker loads the config from the file: the log options of the command line travel
    # as config overrides, and the worker's factory sets logging up from them
    os.environ["DRIFTLOOP_LOGGING__LEVEL"] = config.logging.level
    os.environ["DRIFTLOOP_LOGGING__FORMAT"] = config.logging.format
    # a worker busy loading its models does not answer the supervisor's pings: uvicorn's
    # default 5 s restarted workers over and over on a loaded 2-core machine
    uvicorn.run(
        FACTORY,
        factory=True,
        host=plan.host,
        port=plan.port,
        workers=plan.workers,
        log_level="info",
        timeout_worker_healthcheck=max(1, math.ceil(config.serving.worker_healthcheck_timeout)),
        **uvicorn_options(config.serving),
    )

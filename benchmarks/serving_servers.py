"""The serving benchmark's servers (``benchmarks/serving.py``): how each is started (driftloop,
its variants, the plain FastAPI endpoint, BentoML) and the load run against it."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from fastapi import Response
from pydantic import BaseModel
from rich.console import Console

from environment import (
    LoadResult,
    ServerProcess,
    free_port,
    run_load,
)
from serving_project import MODEL, REPO, Project, bodies, load_cells
from serving_variants import (
    CUSTOM_MODEL,
    INIT_MODEL,
    InitProject,
    make_init_project,
)

SERVING_SCRIPT = Path(__file__).resolve().with_name("serving.py")
"""The benchmark's script: ``serving.py serve-plain`` runs the plain FastAPI endpoint."""

BENTOML_SERVICE = """
import os
from pathlib import Path

import bentoml

from driftloop.predictors import load_predictor


@bentoml.service(workers=1, traffic={"timeout": 60})
class ReviewClassifier:
    def __init__(self) -> None:
        self.predictor = load_predictor(Path(os.environ["BENCH_MODEL_DIR"]))

    @bentoml.api(batchable=True, max_batch_size=64,
                 max_latency_ms=int(os.environ["BENCH_MAX_LATENCY_MS"]))
    def predict(self, texts: list[str]) -> list[dict]:
        probabilities = self.predictor.predict_proba(texts)
        labels = self.predictor.labels
        return [{"class": labels[int(row.argmax())], "confidence": float(row.max())}
                for row in probabilities]
"""


# --- the plain FastAPI endpoint ----------------------------------------------------------


class Texts(BaseModel):
    """The plain endpoint's body (at module level, where FastAPI can resolve it, as it must
    ``Response``)."""

    texts: list[str]


def serve_plain(model_dir: Path, port: int) -> None:
    """What a user writes: load the model once, predict per request."""
    import uvicorn
    from fastapi import FastAPI

    from driftloop.predictors import load_predictor

    predictor = load_predictor(model_dir)
    app = FastAPI()

    @app.post("/predict")
    def predict(body: Texts, response: Response) -> dict[str, Any]:
        started = time.perf_counter()
        probabilities = predictor.predict_proba(body.texts)
        # the one line added to what a user writes: the model's time, as driftloop reports it
        response.headers["Server-Timing"] = (
            f"model;dur={(time.perf_counter() - started) * 1000:.3f}"
        )
        labels = predictor.labels
        return {
            "predictions": [
                {"class": labels[int(row.argmax())], "confidence": float(row.max())}
                for row in probabilities
            ]
        }

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port)


# --- the servers -------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSpec:
    name: str
    command: list[str]
    ready_path: str
    predict_path: str
    headers: dict[str, str]
    env: dict[str, str] | None = None
    cwd: Path | None = None


def bentoml_python(requested: str | None) -> str | None:
    if requested:
        return requested if Path(requested).exists() else None
    if importlib.util.find_spec("bentoml") is not None:
        return sys.executable
    candidate = REPO / ".venv-bentoml" / "bin" / "python"
    return str(candidate) if candidate.exists() else None


def server_specs(project: Project, args: argparse.Namespace, work: Path) -> list[ServerSpec]:
    """Every server of the run, in the order they run: driftloop (and its workers and
    batch-wait variants), plain FastAPI, the variant rows, BentoML."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")}
    specs = [driftloop_spec("driftloop", project, environ)]
    for workers in args.driftloop_workers:
        specs.append(
            driftloop_spec(
                f"driftloop ({workers} workers)", project, environ, ["--workers", str(workers)]
            )
        )
    for wait in args.driftloop_batch_wait_ms:
        document = yaml.safe_load(project.config_path.read_text())
        document["serving"]["max_batch_wait_ms"] = wait
        variant = project.directory / f"driftloop-wait-{wait:g}.yaml"
        variant.write_text(yaml.safe_dump(document))
        specs.append(
            driftloop_spec(
                f"driftloop (max_batch_wait_ms {wait:g})", project, environ, config=variant
            )
        )
    specs.append(plain_spec("plain FastAPI", project.model_dir, environ))
    specs += variant_specs(project, args, work, environ)
    bento = None if args.no_bentoml else bentoml_python(args.bentoml_python)
    if bento is not None:
        specs += bentoml_specs(bento, project, args.bentoml_latency_ms, work, environ)
    return specs


def driftloop_spec(
    name: str,
    project: Project,
    environ: dict[str, str],
    options: list[str] | None = None,
    config: Path | None = None,
) -> ServerSpec:
    """``driftloop serve`` with ``options`` on the project's config (or ``config``)."""
    driftloop = str(Path(sys.executable).parent / "driftloop")
    config_path = config if config is not None else project.config_path
    return ServerSpec(
        name,
        [driftloop, "serve", "--port", "{port}", *(options or []), "--config", str(config_path)],
        "/readyz",
        f"/v1/models/{MODEL}/predict",
        {"Authorization": f"Bearer {project.key}"},
        environ,
        project.directory,
    )


def bentoml_specs(
    bento: str, project: Project, latencies: list[int], work: Path, environ: dict[str, str]
) -> list[ServerSpec]:
    """The model in a BentoML service run by the interpreter ``bento``, one server per
    ``max_latency_ms`` value."""
    service_dir = work / "bentoml"
    service_dir.mkdir(exist_ok=True)
    (service_dir / "service.py").write_text(textwrap.dedent(BENTOML_SERVICE))
    specs = []
    for latency in latencies:
        env = {
            **environ,
            "BENCH_MODEL_DIR": str(project.model_dir),
            "BENCH_MAX_LATENCY_MS": str(latency),
            "BENTOML_HOME": str(work / "bentoml-home"),
            "BENTOML_DO_NOT_TRACK": "true",
        }
        specs.append(
            ServerSpec(
                f"BentoML ({latency} ms window)",
                [
                    bento,
                    "-m",
                    "bentoml",
                    "serve",
                    "service:ReviewClassifier",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "{port}",
                ],
                "/readyz",
                "/predict",
                {},
                env,
                service_dir,
            )
        )
    return specs


def plain_spec(name: str, model_dir: Path, environ: dict[str, str]) -> ServerSpec:
    command = [sys.executable, str(SERVING_SCRIPT), "serve-plain", "--model-dir"]
    return ServerSpec(
        name, [*command, str(model_dir), "--port", "{port}"], "/healthz", "/predict", {}, environ
    )


def variant_specs(
    project: Project, args: argparse.Namespace, work: Path, environ: dict[str, str]
) -> list[ServerSpec]:
    """The custom-predictor row (driftloop and plain FastAPI) and the init project's
    ``driftloop up`` (and its baseline)."""
    driftloop = str(Path(sys.executable).parent / "driftloop")
    specs = []
    if project.custom_model_dir is not None and project.custom_config is not None:
        specs += [
            ServerSpec(
                CUSTOM_DRIFTLOOP,
                [driftloop, "serve", "--port", "{port}", "--config", str(project.custom_config)],
                "/readyz",
                f"/v1/models/{CUSTOM_MODEL}/predict",
                {"Authorization": f"Bearer {project.key}"},
                environ,
                project.directory,
            ),
            plain_spec(CUSTOM_PLAIN, project.custom_model_dir, environ),
        ]
    if not args.init_project:
        return specs
    made = [(INIT_UP, make_init_project(work / "init" / "project"))]
    if args.baseline_src is not None:
        made.append(
            (INIT_BASELINE, make_init_project(work / "baseline" / "project", args.baseline_src))
        )
    for name, init in made:
        specs.append(init_spec(name, init, driftloop))
    return specs


def init_spec(name: str, init: InitProject, driftloop: str) -> ServerSpec:
    return ServerSpec(
        name,
        [driftloop, "up", "--port", "{port}"],
        "/readyz",
        f"/v1/models/{INIT_MODEL}/predict",
        {"Authorization": f"Bearer {init.key}"},
        init.environ,
        init.directory,
    )


CUSTOM_DRIFTLOOP = "driftloop (custom predictor)"
CUSTOM_PLAIN = "plain FastAPI (custom predictor)"
INIT_UP = "driftloop up (init project)"
INIT_BASELINE = "driftloop up (init project, baseline)"


@dataclass(frozen=True)
class Cell:
    server: str
    load: LoadResult


def run_server(
    spec: ServerSpec, project: Project, args: argparse.Namespace, work: Path, console: Console
) -> list[Cell]:
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in spec.command]
    cells = []
    log = work / f"{spec.name.split()[0].lower()}-{port}.log"
    with ServerProcess(
        spec.name, command, port, spec.ready_path, cwd=spec.cwd, env=spec.env, log=log
    ):
        run_load(
            port,
            spec.predict_path,
            bodies(project.texts, 1, None),
            clients=8,
            texts_per_request=1,
            duration=min(1.0, args.seconds),
            max_requests=2_000,
            headers=spec.headers,
        )  # warm-up
        for clients, texts in load_cells(project.kind):
            payloads = bodies(project.texts, texts, None)
            load = run_load(
                port,
                spec.predict_path,
                payloads,
                clients=clients,
                texts_per_request=texts,
                duration=args.seconds,
                max_requests=args.max_requests,
                headers=spec.headers,
            )
            console.print(
                f"  {spec.name}: {clients:>2} clients x {texts:>2} texts: "
                f"{load.ok_per_second:8.1f} req/s, p50 {load.p50:7.2f} ms, "
                f"p99 {load.p99:7.2f} ms, failed {load.failed}"
            )
            cells.append(Cell(spec.name, load))
    return cells

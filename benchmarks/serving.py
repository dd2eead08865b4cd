"""Serving throughput and latency, side by side in one run, for one model (``--model``): the
sklearn model (TF-IDF + logistic regression, trained by driftloop's SklearnTrainer on the bundled
reviews) or the transformers model (the packaged all-MiniLM-L6-v2 with a trained head, CPU):

* **raw**: the model's ``predict_proba`` called in this process on the same batches (1 and 64
  texts): the ceiling;
* **driftloop**: ``driftloop serve`` (uvicorn, one process): API key check, micro-batching,
  insights reported for every prediction into the SQLite store, Prometheus metrics; with the
  default config (``serving.max_batch_wait_ms: 2``) and, as a variant, with no batching wait;
* **plain FastAPI**: the endpoint a user would write: a pydantic body, ``predict_proba`` per
  request in a sync ``def`` (FastAPI's thread pool), uvicorn, one process;
* **driftloop, custom predictor** (``--custom-predictor``) and **driftloop up, init project**
  (``--init-project``, ``--baseline-src``): see ``benchmarks/serving_variants.py``;
* **BentoML** (when available): the same model in a ``@bentoml.service`` with adaptive batching
  (``batchable=True, max_batch_size=64``, ``max_latency_ms`` as given), one worker; rejected
  requests (503) are counted.

Each server runs alone as a child process; a closed-loop load generator in this process keeps 1,
8 or 64 connections busy (HTTP/1.1 keep-alive) with requests of 1 or 64 texts, for
``--seconds`` per cell or ``--max-requests``, whichever comes first. It only ever connects to
127.0.0.1.

    .venv/bin/python benchmarks/serving.py                 # about 2 minutes
    .venv/bin/python benchmarks/serving.py --markdown      # tables for docs/benchmarks.md
    .venv/bin/python benchmarks/serving.py --seconds 1 --no-bentoml   # smoke run
    .venv/bin/python benchmarks/serving.py --model transformers       # about 5 minutes
    .venv/bin/python benchmarks/serving.py --no-bentoml --custom-predictor --init-project \
        --baseline-src /tmp/driftloop-before/src   # `git archive HEAD | tar -x -C ...`

BentoML is not a driftloop dependency. The benchmark uses it when this interpreter can import
it, else the interpreter named by ``--bentoml-python`` (default ``.venv-bentoml/bin/python``,
made with ``python3 -m venv .venv-bentoml && .venv-bentoml/bin/pip install bentoml -e .``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from fastapi import Response
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from environment import (
    LoadResult,
    MachineDescription,
    ServerProcess,
    describe_machine,
    free_port,
    run_load,
)
from serving_variants import (
    CUSTOM_MODEL,
    INIT_MODEL,
    InitProject,
    make_init_project,
    register_custom,
)

MODEL = "reviews"
REPO = Path(__file__).resolve().parent.parent
CLIENTS = (1, 8, 64)
TEXTS = (1, 64)
MODEL_KINDS = ("sklearn", "transformers")
TRANSFORMERS_TRAIN_ROWS = 600
"""The MiniLM head trains on this many rows (embedding them on CPU is most of the set-up)."""


def load_cells(kind: str) -> list[tuple[int, int]]:
    """(clients, texts per request) cells. The MiniLM model scores ~100 texts/s on one core, so
    a closed loop of 64 clients x 64 texts would hold 4,096 texts in flight (40 s per round):
    only one-text requests at every concurrency, and 64-text requests from one client."""
    if kind == "transformers":
        return [(1, 1), (8, 1), (64, 1), (1, 64)]
    return [(clients, texts) for texts in TEXTS for clients in CLIENTS]


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


# --- the model and the project -----------------------------------------------------------


@dataclass(frozen=True)
class Project:
    directory: Path
    config_path: Path
    model_dir: Path
    key: str
    texts: list[str]
    train_seconds: float
    kind: str = "sklearn"
    description: str = ""
    custom_model_dir: Path | None = None
    """The same model behind a user's predictor class (``--custom-predictor``)."""
    custom_config: Path | None = None


MODEL_SPECS: dict[str, dict[str, Any]] = {
    "sklearn": {"trainer": "sklearn", "data": "reviews", "params": {"c_grid": [4.0]}},
    # The packaged all-MiniLM-L6-v2 encoder with a trained head, one torch thread (the
    # trainer's CPU default: more threads on 2 busy cores ran slower).
    "transformers": {
        "trainer": "transformers",
        "data": "reviews",
        "params": {"mode": "head", "max_train_rows": TRANSFORMERS_TRAIN_ROWS, "torch_threads": 1},
    },
}


def build_project(directory: Path, console: Console, kind: str = "sklearn") -> Project:
    """A driftloop project serving the ``kind`` model trained on the bundled reviews."""
    from driftloop.config import load_config
    from driftloop.database import open_database
    from driftloop.objectstore import DatasetStore, bundled_reviews_path
    from driftloop.registry import ModelRegistry
    from driftloop.serving import ApiKeyStore, Scope
    from driftloop.trainers.base import TrainingData
    from driftloop.trainers.registry import get_trainer

    document = {
        "store": "sqlite:///.driftloop/driftloop.db",
        "storage": "file://.driftloop/storage",
        "transport": "local://",
        "serving": {"port": 0, "registry_poll_interval": "5s"},
        "models": {MODEL: MODEL_SPECS[kind]},
    }
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "driftloop.yaml"
    config_path.write_text(yaml.safe_dump(document))
    config = load_config(config_path, environ={})
    frame = pd.read_csv(bundled_reviews_path(), dtype=str, keep_default_na=False)
    datasets = DatasetStore.from_config(config)
    snapshot = datasets.push(frame, "reviews")
    rows = len(frame) if kind == "sklearn" else TRANSFORMERS_TRAIN_ROWS
    console.print(f"training the {kind} model on {rows:,} bundled reviews ...")
    started = time.perf_counter()
    trainer = get_trainer(kind, config.models[MODEL], base_dir=directory)
    trained = trainer.fit(
        TrainingData(
            datasets.load(snapshot), "text", "label", snapshot.snapshot_id, snapshot.content_hash
        )
    )
    took = time.perf_counter() - started
    description = (
        f"sklearn TF-IDF + logistic regression, trained in {took:.1f} s on the {rows:,} "
        "bundled reviews"
        if kind == "sklearn"
        else f"all-MiniLM-L6-v2 (packaged) with a trained head, max_length 128, one torch thread, "
        f"trained in {took:.1f} s on {rows:,} of the bundled reviews"
    )
    registry = ModelRegistry.from_config(config)
    version = registry.register_trained(MODEL, trained, trainer=kind, snapshot=snapshot)
    registry.set_alias(MODEL, "production", version.version, actor="benchmark")
    model_dir = directory / "model"
    trained.predictor.save(model_dir)
    key = (
        ApiKeyStore(open_database(config.store, base_dir=config.base_dir))
        .create(Scope.PREDICT, name="benchmark")
        .key
    )
    texts = frame["text"].sample(n=min(len(frame), 6_400), random_state=0).tolist()
    return Project(directory, config_path, model_dir, key, texts, took, kind, description)


def with_custom_predictor(project: Project, work: Path) -> Project:
    custom_dir, custom_config = register_custom(project.config_path, project.model_dir, work)
    return replace(project, custom_model_dir=custom_dir, custom_config=custom_config)


def bodies(texts: list[str], per_request: int, key: str | None) -> list[bytes]:
    count = max(1, min(len(texts) // per_request, 200))
    chunks = [texts[i * per_request : (i + 1) * per_request] for i in range(count)]
    return [json.dumps({"texts": chunk}).encode() for chunk in chunks]


# --- the raw model -----------------------------------------------------------------------


@dataclass(frozen=True)
class RawResult:
    batch: int
    texts_per_second: float
    median_ms: float
    per_body_ms: tuple[float, ...] = ()
    """Median call time of each request body, in the order the load sends them (batch 1)."""
    label: str = "built-in"

    def overhead_ms(self, load: LoadResult) -> float:
        """Median over a one-client run of (its latency - the raw call on the same text): the
        pair cancels the text-to-text spread (long texts cost a transformer far more)."""
        bodies = len(self.per_body_ms)
        return statistics.median(
            latency - self.per_body_ms[i % bodies] for i, latency in enumerate(load.latencies_ms)
        )


def measure_raw(
    model_dir: Path, texts: list[str], seconds: float, label: str = "built-in"
) -> list[RawResult]:
    from driftloop.predictors import load_predictor

    predictor = load_predictor(model_dir)
    results = []
    for batch in TEXTS:
        batches = [texts[i : i + batch] for i in range(0, len(texts) - batch + 1, batch)]
        timings: list[float] = []
        deadline = time.perf_counter() + seconds
        index = 0
        # one-text calls cycle over exactly the texts the one-client cells send (their bodies,
        # in order), each at least once, so every request's latency pairs with the raw call on
        # its own text (RawResult.overhead_ms)
        minimum = len(bodies(texts, 1, None)) if batch == 1 else 5
        if batch == 1:
            batches = batches[:minimum]
        while time.perf_counter() < deadline or len(timings) < minimum:
            chunk = batches[index % len(batches)]
            started = time.perf_counter()
            predictor.predict_proba(chunk)
            timings.append(time.perf_counter() - started)
            index += 1
        per_body = (
            tuple(statistics.median(timings[i::minimum]) * 1000 for i in range(minimum))
            if batch == 1
            else ()
        )
        results.append(
            RawResult(
                batch,
                batch * len(timings) / sum(timings),
                statistics.median(timings) * 1000,
                per_body,
                label,
            )
        )
    return results


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
    python = sys.executable
    driftloop = str(Path(python).parent / "driftloop")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")}
    specs = [
        ServerSpec(
            "driftloop",
            [driftloop, "serve", "--port", "{port}", "--config", str(project.config_path)],
            "/readyz",
            f"/v1/models/{MODEL}/predict",
            {"Authorization": f"Bearer {project.key}"},
            environ,
            project.directory,
        )
    ]
    for workers in args.driftloop_workers:
        specs.append(
            ServerSpec(
                f"driftloop ({workers} workers)",
                [
                    driftloop,
                    "serve",
                    "--port",
                    "{port}",
                    "--workers",
                    str(workers),
                    "--config",
                    str(project.config_path),
                ],
                "/readyz",
                f"/v1/models/{MODEL}/predict",
                {"Authorization": f"Bearer {project.key}"},
                environ,
                project.directory,
            )
        )
    for wait in args.driftloop_batch_wait_ms:
        document = yaml.safe_load(project.config_path.read_text())
        document["serving"]["max_batch_wait_ms"] = wait
        variant = project.directory / f"driftloop-wait-{wait:g}.yaml"
        variant.write_text(yaml.safe_dump(document))
        specs.append(
            ServerSpec(
                f"driftloop (max_batch_wait_ms {wait:g})",
                [driftloop, "serve", "--port", "{port}", "--config", str(variant)],
                "/readyz",
                f"/v1/models/{MODEL}/predict",
                {"Authorization": f"Bearer {project.key}"},
                environ,
                project.directory,
            )
        )
    specs.append(plain_spec("plain FastAPI", project.model_dir, environ))
    specs += variant_specs(project, args, work, environ)
    bento = None if args.no_bentoml else bentoml_python(args.bentoml_python)
    if bento is not None:
        service_dir = work / "bentoml"
        service_dir.mkdir(exist_ok=True)
        (service_dir / "service.py").write_text(textwrap.dedent(BENTOML_SERVICE))
        for latency in args.bentoml_latency_ms:
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
    command = [sys.executable, str(Path(__file__).resolve()), "serve-plain", "--model-dir"]
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


# --- report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    name: str
    measured: str
    target: str
    met: bool | None


def find(cells: list[Cell], server: str, clients: int, texts: int) -> LoadResult | None:
    for cell in cells:
        if (
            cell.server == server
            and cell.load.clients == clients
            and cell.load.texts_per_request == texts
        ):
            return cell.load
    return None


def goals(cells: list[Cell], raw: list[RawResult], kind: str) -> list[Goal]:
    """The issue's goals for this model (sklearn: vs plain FastAPI, 64-text requests;
    transformers: batching keeps up with the raw batch-64 throughput)."""
    found: list[Goal] = []
    ours = find(cells, "driftloop", 64, 1)
    plain = find(cells, "plain FastAPI", 64, 1)
    raw64 = next(r for r in raw if r.batch == 64)
    if kind == "transformers" and ours is not None:
        share = ours.texts_per_second / raw64.texts_per_second
        found.append(
            Goal(
                "texts/s at 64 clients (1 text each) vs raw batch 64",
                f"{share:.0%} ({ours.texts_per_second:,.1f} vs {raw64.texts_per_second:,.1f})",
                ">= 90%",
                share >= 0.9,
            )
        )
    if ours and plain and plain.ok_per_second:
        ratio = ours.ok_per_second / plain.ok_per_second
        found.append(
            Goal(
                "req/s at 64 clients vs plain FastAPI (1 text)",
                f"{ratio:.2f}x ({ours.ok_per_second:,.0f} vs {plain.ok_per_second:,.0f})",
                ">= 3x" if kind == "sklearn" else "(goal set for sklearn only)",
                ratio >= 3 if kind == "sklearn" else None,
            )
        )
    if kind == "sklearn":
        best64 = max(
            (c.load for c in cells if c.server == "driftloop" and c.load.texts_per_request == 64),
            key=lambda x: x.texts_per_second,
        )
        share = best64.texts_per_second / raw64.texts_per_second
        found.append(
            Goal(
                f"texts/s with 64-text requests ({best64.clients} clients) vs raw batch 64",
                f"{share:.0%} ({best64.texts_per_second:,.0f} vs {raw64.texts_per_second:,.0f})",
                ">= 50%",
                share >= 0.5,
            )
        )
    for cell in cells:
        if (
            not cell.server.startswith("BentoML")
            or cell.load.clients != 64
            or cell.load.texts_per_request != 1
        ):
            continue
        assert ours is not None
        bento = cell.load
        ratio = ours.ok_per_second / bento.ok_per_second if bento.ok_per_second else float("inf")
        found.append(
            Goal(
                f"successful req/s at 64 clients vs {cell.server}",
                f"{ratio:.2f}x ({ours.ok_per_second:,.0f} vs {bento.ok_per_second:,.0f}; "
                f"BentoML rejected {bento.rejected:,} of {bento.requests:,})",
                ">= 2x",
                ratio >= 2,
            )
        )
    all_ours = [c.load for c in cells if c.server == "driftloop"]
    failed = sum(c.failed for c in all_ours)
    found.append(
        Goal(
            "driftloop failed or rejected requests (all cells)",
            f"{failed:,} of {sum(c.requests for c in all_ours):,}",
            "0",
            failed == 0,
        )
    )
    one = find(cells, "driftloop", 1, 1)
    raw1 = next(r for r in raw if r.batch == 1)
    if one is not None:
        plain1 = find(cells, "plain FastAPI", 1, 1)
        in_request = one.in_request_overhead_ms()
        plain_in_request = None if plain1 is None else plain1.in_request_overhead_ms()
        if in_request is not None:
            versus = (
                "" if plain_in_request is None else f"; plain FastAPI {plain_in_request:.2f} ms"
            )
            found.append(
                Goal(
                    "overhead per request at 1 client (median of latency - the model time the "
                    "server reports for the same request, Server-Timing)",
                    f"{in_request:.2f} ms (p50 {one.p50:.2f} ms{versus})",
                    "< 1 ms",
                    in_request < 1.0,
                )
            )
        overhead = raw1.overhead_ms(one)
        versus = "" if plain1 is None else f"; plain FastAPI {raw1.overhead_ms(plain1):.2f} ms"
        found.append(
            Goal(
                "latency at 1 client minus the raw call on the same text, in process (median; "
                "includes the model's run-to-run spread)",
                f"{overhead:.2f} ms (raw median {raw1.median_ms:.2f} ms{versus})",
                "(context)",
                None,
            )
        )
    return found


def comparisons(cells: list[Cell], raw: list[RawResult]) -> list[tuple[str, list[str]]]:
    """Side-by-side tables of the variant rows, per cell: (title, markdown rows)."""
    tables = []
    pairs = [
        ("driftloop", "plain FastAPI", "built-in"),
        (CUSTOM_DRIFTLOOP, CUSTOM_PLAIN, "custom"),
    ]
    if any(c.server == CUSTOM_DRIFTLOOP for c in cells):
        rows = [
            "| clients x texts | built-in: driftloop / plain FastAPI | custom predictor: "
            "driftloop / plain FastAPI | custom / built-in (driftloop req/s) |",
            "|---|---|---|---|",
        ]
        for clients, texts in load_cells("sklearn"):
            ratios = []
            for ours, plain, _label in pairs:
                a, b = find(cells, ours, clients, texts), find(cells, plain, clients, texts)
                ratios.append(
                    a.ok_per_second / b.ok_per_second if a and b and b.ok_per_second else None
                )
            a, b = (
                find(cells, CUSTOM_DRIFTLOOP, clients, texts),
                find(cells, "driftloop", clients, texts),
            )
            direct = a.ok_per_second / b.ok_per_second if a and b and b.ok_per_second else None
            rows.append(
                f"| {clients} x {texts} | {_ratio(ratios[0])} | {_ratio(ratios[1])} "
                f"| {_ratio(direct)} |"
            )
        for label in ("built-in", "custom"):
            raw64 = next((r for r in raw if r.batch == 64 and r.label == label), None)
            server = "driftloop" if label == "built-in" else CUSTOM_DRIFTLOOP
            best = max(
                (c.load for c in cells if c.server == server and c.load.texts_per_request == 64),
                key=lambda x: x.texts_per_second,
                default=None,
            )
            if raw64 is not None and best is not None:
                rows.append(
                    f"| {label}: best 64-text cell vs raw batch 64 | "
                    f"{best.texts_per_second / raw64.texts_per_second:.2f}x "
                    f"({best.texts_per_second:,.0f} vs {raw64.texts_per_second:,.0f} texts/s) | | |"
                )
        tables.append(("Plug-in path: the same model as a custom predictor", rows))
    if any(c.server == INIT_UP for c in cells):
        rows = [
            f"| clients x texts | driftloop serve (bare config) | {INIT_UP} | {INIT_BASELINE} "
            "| init / bare | init / baseline |",
            "|---|---|---|---|---|---|",
        ]
        for clients, texts in load_cells("sklearn"):
            bare, init, base = (
                find(cells, name, clients, texts) for name in ("driftloop", INIT_UP, INIT_BASELINE)
            )
            rows.append(
                f"| {clients} x {texts} | {_rps(bare)} | {_rps(init)} | {_rps(base)} "
                f"| {_share(init, bare)} | {_share(init, base)} |"
            )
        tables.append(("A `driftloop init` project under `driftloop up` (req/s)", rows))
    return tables


def plugin_goal(cells: list[Cell]) -> list[Goal]:
    """The custom predictor's driftloop / plain FastAPI ratio against the built-in's, per cell
    (median): the plug-in path costs no more than the built-in one."""
    shares = []
    for clients, texts in load_cells("sklearn"):
        loads = [
            find(cells, name, clients, texts)
            for name in ("driftloop", "plain FastAPI", CUSTOM_DRIFTLOOP, CUSTOM_PLAIN)
        ]
        if all(load is not None and load.ok_per_second for load in loads):
            ours, plain, custom, custom_plain = (load.ok_per_second for load in loads if load)
            shares.append((custom / custom_plain) / (ours / plain))
    if not shares:
        return []
    median = statistics.median(shares)
    return [
        Goal(
            "custom predictor vs built-in: (driftloop / plain FastAPI) ratio, median over cells",
            f"{median:.2f} (cells {min(shares):.2f}-{max(shares):.2f})",
            ">= 0.9 (same within noise)",
            median >= 0.9,
        )
    ]


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _rps(load: LoadResult | None) -> str:
    return "n/a" if load is None else f"{load.ok_per_second:,.0f}"


def _share(a: LoadResult | None, b: LoadResult | None) -> str:
    if a is None or b is None or not b.ok_per_second:
        return "n/a"
    return f"{a.ok_per_second / b.ok_per_second:.2f}x"


def markdown(
    machine: MachineDescription,
    project: Project,
    raw: list[RawResult],
    cells: list[Cell],
    found: list[Goal],
    command: str,
    missing: list[str],
) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        machine.markdown(),
        f"- model: {project.description}; request texts drawn from the bundled reviews "
        "(median 233 characters)",
        "",
    ]
    lines += [
        "**Raw model, in process**",
        "",
        "| predictor | batch | texts/s | median call (ms) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r.label} | {r.batch} | {r.texts_per_second:,.0f} | {r.median_ms:.3f} |" for r in raw
    ]
    lines += [
        "",
        "**Over HTTP (one server process each, closed loop on 127.0.0.1)**",
        "",
        "| server | clients | texts/request | requests/s | texts/s | p50 (ms) | p99 (ms) "
        "| failed | of which 503 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in cells:
        load = cell.load
        lines.append(
            f"| {cell.server} | {load.clients} | {load.texts_per_request} | "
            f"{load.ok_per_second:,.0f} | {load.texts_per_second:,.0f} | "
            f"{load.p50:.2f} | {load.p99:.2f} | {load.failed:,} | {load.rejected:,} |"
        )
    for title, rows in comparisons(cells, raw):
        lines += ["", f"**{title}**", "", *rows]
    lines += ["", "**Goals**", "", "| goal | measured | target | met |", "|---|---|---|---|"]
    for goal in found:
        met = "n/a" if goal.met is None else ("yes" if goal.met else "**no**")
        lines.append(f"| {goal.name} | {goal.measured} | {goal.target} | {met} |")
    for note in missing:
        lines += ["", note]
    return "\n".join(lines)


def print_console(
    console: Console, kind: str, raw: list[RawResult], cells: list[Cell], found: list[Goal]
) -> None:
    table = Table(
        "server",
        "clients",
        "texts/req",
        "req/s",
        "texts/s",
        "p50 ms",
        "p99 ms",
        "failed",
        "503",
        title=f"serving: {kind} model",
    )
    for r in raw:
        table.add_row(
            f"raw model, {r.label} (in process)",
            "-",
            str(r.batch),
            "-",
            f"{r.texts_per_second:,.0f}",
            f"{r.median_ms:.3f}",
            "-",
            "-",
            "-",
        )
    for cell in cells:
        load = cell.load
        table.add_row(
            cell.server,
            str(load.clients),
            str(load.texts_per_request),
            f"{load.ok_per_second:,.0f}",
            f"{load.texts_per_second:,.0f}",
            f"{load.p50:.2f}",
            f"{load.p99:.2f}",
            str(load.failed),
            str(load.rejected),
        )
    console.print(table)
    goals_table = Table("goal", "measured", "target", "met", title="goals")
    for goal in found:
        goals_table.add_row(
            goal.name,
            goal.measured,
            goal.target,
            "n/a" if goal.met is None else ("yes" if goal.met else "NO"),
        )
    console.print(goals_table)
    for title, rows in comparisons(cells, raw):
        console.print(f"[bold]{title}[/]")
        console.print("\n".join(rows))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve-plain":
        parser = argparse.ArgumentParser()
        parser.add_argument("mode")
        parser.add_argument("--model-dir", type=Path, required=True)
        parser.add_argument("--port", type=int, required=True)
        plain = parser.parse_args()
        serve_plain(plain.model_dir, plain.port)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        choices=MODEL_KINDS,
        default="sklearn",
        help="which model to serve (the transformers one needs driftloop[transformers])",
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="per cell")
    parser.add_argument("--max-requests", type=int, default=50_000, help="per cell")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument("--no-bentoml", action="store_true", help="skip BentoML")
    parser.add_argument(
        "--custom-predictor",
        action="store_true",
        help="also serve the same model behind a user's predictor class (sklearn model)",
    )
    parser.add_argument(
        "--init-project",
        action="store_true",
        help="also serve a `driftloop init` project with `driftloop up`",
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="with --init-project: also make and serve it with the driftloop in this src folder",
    )
    parser.add_argument("--bentoml-python", default=None, help="interpreter with bentoml installed")
    parser.add_argument(
        "--driftloop-workers",
        type=int,
        nargs="*",
        default=[],
        help="also run `driftloop serve --workers N` for each N (e.g. on a GPU, "
        "where one process, not the model, is the limit)",
    )
    parser.add_argument(
        "--driftloop-batch-wait-ms",
        type=float,
        nargs="*",
        default=[0.0],
        help="also run driftloop with these serving.max_batch_wait_ms values "
        "(the default config waits 2 ms)",
    )
    parser.add_argument(
        "--bentoml-latency-ms",
        type=int,
        nargs="+",
        default=[1000],
        help="BentoML max_latency_ms values to run (one server each)",
    )
    args = parser.parse_args()
    console = Console(stderr=args.markdown)
    machine = describe_machine()
    command = "python benchmarks/serving.py " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="driftloop-bench-") as temporary:
        work = Path(temporary)
        project = build_project(work / "project", console, args.model)
        raw = measure_raw(project.model_dir, project.texts, min(args.seconds, 2.0))
        shown_raw = list(raw)
        if args.custom_predictor:
            project = with_custom_predictor(project, work)
            assert project.custom_model_dir is not None
            shown_raw += measure_raw(
                project.custom_model_dir, project.texts, min(args.seconds, 2.0), "custom"
            )
        cells: list[Cell] = []
        missing: list[str] = []
        specs = server_specs(project, args, work)
        bento = next((spec for spec in specs if spec.name.startswith("BentoML")), None)
        if bento is None and not args.no_bentoml:
            missing.append(
                "BentoML was not run: no interpreter with bentoml found "
                "(see the docstring of benchmarks/serving.py)."
            )
        elif bento is not None:
            version = subprocess.run(
                [bento.command[0], "-c", "import bentoml; print(bentoml.__version__)"],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            ).stdout.strip()
            missing.append(
                f"BentoML {version} ({bento.command[0]}), one worker, "
                "`batchable=True, max_batch_size=64`."
            )
        for spec in specs:
            console.print(f"[bold]{spec.name}[/]")
            try:
                cells += run_server(spec, project, args, work, console)
            except RuntimeError as exc:
                missing.append(f"{spec.name} could not run here: {str(exc)[:500]}")
                console.print(f"[red]{spec.name} could not run:[/] {exc}")
        found = goals(cells, raw, args.model) + plugin_goal(cells)
    if args.markdown:
        print(markdown(machine, project, shown_raw, cells, found, command, missing))
    else:
        print_console(console, args.model, shown_raw, cells, found)
        for note in missing:
            console.print(note)
    np.seterr(all="ignore")


if __name__ == "__main__":
    main()

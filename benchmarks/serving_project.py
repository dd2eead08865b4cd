"""The serving benchmark's model and project (``benchmarks/serving.py``): the driftloop project
serving the model trained on the bundled reviews, the request bodies, and the raw model timed in
process (the ceiling)."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from rich.console import Console

from environment import (
    LoadResult,
)
from serving_variants import (
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


def build_project(
    directory: Path, console: Console, kind: str = "sklearn", base_model: str | None = None
) -> Project:
    """A driftloop project serving the ``kind`` model trained on the bundled reviews
    (``base_model``: another checkpoint for the transformers model)."""
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
        "models": {MODEL: MODEL_SPECS[kind] | ({"base_model": base_model} if base_model else {})},
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

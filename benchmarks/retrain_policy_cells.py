"""The retrain-policy benchmark's experiment (``benchmarks/retrain_policy.py``): the scenarios,
the models each one trains (v1 and v2 under every policy), their scores on known and drifted
traffic, and the cross-validation over every subtopic."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.model_selection import StratifiedKFold

from driftloop.config import ModelConfig
from driftloop.demo.scenario import build_scenario
from driftloop.objectstore import bundled_reviews_path
from driftloop.predictors import Predictor
from driftloop.trainers.base import TrainedModel, TrainingData
from driftloop.trainers.registry import get_trainer

POLICIES = ("cumulative", "newest", "weighted")
"""The candidate retrain data policies."""
MODELS = ("v1", "v1_all_known", "cumulative", "newest", "weighted", "weighted_fixed_c")
TITLES = {
    "v1": "v1: snapshot 1",
    "v1_all_known": "v1, every known row (diagnostic)",
    "cumulative": "v2 cumulative",
    "newest": "v2 newest window",
    "weighted": "v2 weighted (rows repeated)",
    "weighted_fixed_c": "v2 weighted, cumulative's C (diagnostic)",
}
MIN_SUBTOPIC_ROWS = 400
"""A subtopic needs this many rows (both classes) to be a scenario of its own."""
TOLERANCE = 0.02
"""The 2 points of both goals."""
CV_FOLDS = 4
DEFAULT_SEEDS = (7, 8)
Table3 = tuple[str, list[str], list[list[str]]]


@dataclass
class Scores:
    """One model on one scenario's traffic."""

    train_rows: int
    acc_known: float
    acc_drift: float
    conf_known: float
    conf_drift: float
    conf_reference: float
    c: float
    temperature: float


@dataclass
class Cell:
    """One scenario, one seed."""

    scenario: str
    seed: int
    new_rows: int
    """Labeled rows of the drifting subtopics (all in the newest window)."""
    window_rows: int
    snapshot_1_rows: int
    known_traffic: int
    drifted_traffic: int
    models: dict[str, Scores]
    seconds: float
    cpu_seconds: float


@dataclass
class CrossValidation:
    """Out-of-fold predictions over the whole data set: per subtopic (correct, rows)."""

    seed: int
    subtopics: dict[str, tuple[int, int]] = field(default_factory=dict)
    cpu_seconds: float = 0.0

    def accuracy(self, subtopics: Sequence[str], *, inside: bool) -> float:
        chosen = [v for k, v in self.subtopics.items() if (k in subtopics) == inside]
        return sum(c for c, _ in chosen) / max(1, sum(n for _, n in chosen))


def load_reviews() -> pd.DataFrame:
    return pd.read_csv(bundled_reviews_path())


def parse_scenario(name: str) -> tuple[str, ...]:
    return tuple(sorted(part for part in name.split("+") if part))


def scenario_name(drifting: Sequence[str]) -> str:
    return "+".join(drifting)


def default_scenarios(frame: pd.DataFrame) -> list[tuple[str, ...]]:
    """Every subtopic with at least MIN_SUBTOPIC_ROWS rows alone; then, for the topics with
    more than two subtopics, their subtopics paired across two such topics by size rank."""
    sizes = frame.groupby("subtopic").size()
    singles = [(s,) for s in sorted(sizes.index) if sizes[s] >= MIN_SUBTOPIC_ROWS]
    by_topic: dict[str, list[str]] = {}
    for topic, group in frame.groupby("topic"):
        counts = group.groupby("subtopic").size()
        ranked = sorted(counts.index, key=lambda s: (-counts[s], s))
        if len(ranked) > 2:
            by_topic[str(topic)] = [s for s in ranked if sizes[s] >= MIN_SUBTOPIC_ROWS]
    topics = sorted(by_topic)
    pairs = [
        tuple(sorted((a, b)))
        for i, first in enumerate(topics)
        for second in topics[i + 1 :]
        for a, b in zip(by_topic[first], by_topic[second], strict=False)
    ]
    return singles + pairs


def check_scenario(frame: pd.DataFrame, drifting: Sequence[str]) -> None:
    unknown = sorted(set(drifting) - set(frame["subtopic"]))
    if unknown:
        raise SystemExit(f"unknown subtopics {unknown}; known: {sorted(set(frame['subtopic']))}")
    kept = frame[~frame["subtopic"].isin(drifting)].groupby("label")["subtopic"].nunique()
    lost = sorted(set(frame["label"]) - set(kept[kept > 0].index))
    if lost:
        raise SystemExit(
            f"holding out {'+'.join(drifting)} leaves no subtopic in snapshot 1 "
            f"for {lost}: v1 could not learn those classes"
        )


def fit(frame: pd.DataFrame, seed: int, c: float | None = None) -> TrainedModel:
    """The library's sklearn trainer with its default parameters (``c``: a one-value grid)."""
    params: dict[str, Any] = {"seed": seed}
    if c is not None:
        params["c_grid"] = [c]
    config = ModelConfig(trainer="sklearn", data="reviews", params=params)
    trainer = get_trainer(config.trainer, config)
    return trainer.fit(
        TrainingData(frame.reset_index(drop=True), config.text_column, config.label_column)
    )


def predict(
    predictor: Predictor, texts: Sequence[str]
) -> tuple[NDArray[np.str_], NDArray[np.float64]]:
    probabilities = predictor.predict_proba(list(texts))
    labels = np.asarray(predictor.labels)
    return labels[probabilities.argmax(axis=1)], probabilities.max(axis=1)


def accuracy_and_confidence(predictor: Predictor, traffic: pd.DataFrame) -> tuple[float, float]:
    predicted, confidence = predict(predictor, traffic["text"].astype(str).tolist())
    correct = predicted == traffic["label"].astype(str).to_numpy()
    return float(correct.mean()), float(confidence.mean())


def weighted_frame(
    old: pd.DataFrame, newest: pd.DataFrame, share: float, seed: int
) -> pd.DataFrame:
    """``old`` + ``newest`` with ``newest`` carrying ``share`` of the total weight, by repeating
    the lighter side's rows (the fractional part of the factor as a seeded sample)."""
    factor = share / (1 - share) * len(old) / len(newest)
    light, heavy = (newest, old) if factor >= 1 else (old, newest)
    factor = factor if factor >= 1 else 1 / factor
    whole = int(factor)
    extra = light.sample(n=round((factor - whole) * len(light)), random_state=seed)
    return pd.concat([heavy, *([light] * whole), extra]).sample(frac=1.0, random_state=seed)


def scores(model: TrainedModel, rows: int, known: pd.DataFrame, drifted: pd.DataFrame) -> Scores:
    acc_known, conf_known = accuracy_and_confidence(model.predictor, known)
    acc_drift, conf_drift = accuracy_and_confidence(model.predictor, drifted)
    return Scores(
        train_rows=rows,
        acc_known=acc_known,
        acc_drift=acc_drift,
        conf_known=conf_known,
        conf_drift=conf_drift,
        conf_reference=model.reference.mean_confidence,
        c=float(model.params["C"]),
        temperature=float(model.params["temperature"]),
    )


def run_cell(drifting: tuple[str, ...], seed: int, window: float, share: float) -> Cell:
    started, cpu = time.perf_counter(), time.process_time()
    split = build_scenario(load_reviews(), drifting=drifting, seed=seed, newest_window=window)
    old, newest = split.snapshot_1, split.snapshot_2
    known, drifted = split.known_traffic, split.drifted_traffic
    is_new = newest["subtopic"].isin(drifting)
    cumulative = pd.concat([old, newest]).sample(frac=1.0, random_state=seed)
    weighted = weighted_frame(old, newest, share, seed)
    models: dict[str, Scores] = {}

    def measure(name: str, frame: pd.DataFrame, c: float | None = None) -> None:
        models[name] = scores(fit(frame, seed, c), len(frame), known, drifted)

    measure("v1", old)
    measure("v1_all_known", pd.concat([old, newest[~is_new]]))
    measure("cumulative", cumulative)
    measure("newest", newest)
    measure("weighted", weighted)
    measure("weighted_fixed_c", weighted, models["cumulative"].c)
    return Cell(
        scenario=scenario_name(drifting),
        seed=seed,
        new_rows=int(is_new.sum()),
        window_rows=len(newest),
        snapshot_1_rows=len(old),
        known_traffic=len(known),
        drifted_traffic=len(drifted),
        models=models,
        seconds=time.perf_counter() - started,
        cpu_seconds=time.process_time() - cpu,
    )


def run_cross_validation(seed: int) -> CrossValidation:
    cpu = time.process_time()
    frame = load_reviews()
    strata = frame["label"].astype(str) + "/" + frame["subtopic"].astype(str)
    folds = StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed)
    correct = np.zeros(len(frame), dtype=bool)
    for train_index, test_index in folds.split(frame, strata):
        model = fit(frame.iloc[train_index], seed)
        test = frame.iloc[test_index]
        predicted, _ = predict(model.predictor, test["text"].astype(str).tolist())
        correct[test_index] = predicted == test["label"].astype(str).to_numpy()
    result = CrossValidation(seed)
    for subtopic, rows in frame.groupby("subtopic").indices.items():
        result.subtopics[str(subtopic)] = (int(correct[rows].sum()), len(rows))
    result.cpu_seconds = time.process_time() - cpu
    return result

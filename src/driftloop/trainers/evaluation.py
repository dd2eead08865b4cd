"""Shared by every trainer: held-out splits, temperature scaling, ECE and the reference profile."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from driftloop.predictors import Evaluation, ReferenceProfile, softmax

if TYPE_CHECKING:  # frames arrive built; this module never makes one
    import pandas as pd

REFERENCE_SAMPLE = 2_000


def split_holdout(
    frame: pd.DataFrame, label_column: str, fraction: float = 0.2, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified train / held-out split (plain random when a class is too small to stratify)."""
    from sklearn.model_selection import train_test_split

    counts = frame[label_column].value_counts()
    stratify = frame[label_column] if counts.min() >= 2 else None
    train, held_out = train_test_split(
        frame, test_size=fraction, random_state=seed, stratify=stratify
    )
    return train.reset_index(drop=True), held_out.reset_index(drop=True)


def _nll(logits: NDArray[np.float64], y: NDArray[np.int64], temperature: float) -> float:
    probs = softmax(logits / temperature)
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))))


def fit_temperature(logits: NDArray[np.float64], y: NDArray[np.int64]) -> float:
    """The temperature minimising negative log-likelihood on a validation split."""
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(
        lambda t: _nll(logits, y, t), bounds=(0.05, 20.0), method="bounded", options={"xatol": 1e-4}
    )
    return float(result.x)


def expected_calibration_error(
    probs: NDArray[np.float64], y: NDArray[np.int64], bins: int = 15
) -> float:
    """Top-label ECE with equal-width confidence bins."""
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for low, high in itertools.pairwise(edges):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def evaluate(
    logits: NDArray[np.float64], y: NDArray[np.int64], labels: Sequence[str], temperature: float
) -> Evaluation:
    from sklearn.metrics import accuracy_score, f1_score

    raw = softmax(logits)
    calibrated = softmax(logits / temperature)
    predicted = calibrated.argmax(axis=1)
    per_class = f1_score(
        y, predicted, labels=list(range(len(labels))), average=None, zero_division=0
    )
    return Evaluation(
        accuracy=float(accuracy_score(y, predicted)),
        macro_f1=float(np.mean(per_class)),
        per_class_f1={label: float(f) for label, f in zip(labels, per_class, strict=True)},
        ece=expected_calibration_error(calibrated, y),
        ece_before_calibration=expected_calibration_error(raw, y),
        mean_confidence=float(calibrated.max(axis=1).mean()),
        n=len(y),
    )


def reference_profile(
    probs: NDArray[np.float64],
    texts: Sequence[str],
    labels: Sequence[str],
    evaluation: Evaluation,
    seed: int = 0,
    inputs: Mapping[str, NDArray[np.float64]] | None = None,
) -> ReferenceProfile:
    """What drift detectors compare live traffic against (a bounded sample); ``inputs`` are
    the predictor's input signals on ``texts``, sampled at the same rows."""
    confidence = probs.max(axis=1)
    rng = np.random.default_rng(seed)
    take = rng.permutation(len(confidence))[:REFERENCE_SAMPLE]
    predicted = probs.argmax(axis=1)
    mix = np.bincount(predicted, minlength=len(labels)) / max(len(predicted), 1)
    return ReferenceProfile(
        confidences=[float(c) for c in confidence[take]],
        text_lengths=[len(texts[i]) for i in take],
        class_mix={label: float(m) for label, m in zip(labels, mix, strict=True)},
        mean_confidence=float(confidence.mean()),
        metrics={
            "accuracy": evaluation.accuracy,
            "macro_f1": evaluation.macro_f1,
            "ece": evaluation.ece,
        },
        inputs={
            name: [float(v) for v in np.asarray(values)[take]]
            for name, values in (inputs or {}).items()
        },
    )


def evaluate_probabilities(
    probs: NDArray[np.float64],
    y: NDArray[np.int64],
    labels: Sequence[str],
    weights: NDArray[np.float64] | None = None,
) -> Evaluation:
    """Quality of already-calibrated probabilities; F1 is averaged over the classes present in
    ``y`` (a held-out set of new data may hold only some), while predictions range over all."""
    from sklearn.metrics import f1_score

    predicted = probs.argmax(axis=1)
    present = sorted(set(int(label) for label in y))
    per_class = f1_score(
        y, predicted, labels=present, average=None, zero_division=0, sample_weight=weights
    )
    correct = (predicted == y).astype(np.float64)
    w = np.ones(len(y)) if weights is None else weights
    ece = expected_calibration_error(probs, y)
    return Evaluation(
        accuracy=float(np.average(correct, weights=w)),
        macro_f1=float(np.mean(per_class)),
        per_class_f1={labels[i]: float(f) for i, f in zip(present, per_class, strict=True)},
        ece=ece,
        ece_before_calibration=ece,
        mean_confidence=float(np.average(probs.max(axis=1), weights=w)),
        n=len(y),
    )


def align_probabilities(
    probs: NDArray[np.float64], model_labels: Sequence[str], labels: Sequence[str]
) -> NDArray[np.float64]:
    """Reorder a model's probability columns to ``labels``; classes it lacks get 0."""
    aligned = np.zeros((probs.shape[0], len(labels)))
    position = {label: i for i, label in enumerate(model_labels)}
    for j, label in enumerate(labels):
        if label in position:
            aligned[:, j] = probs[:, position[label]]
    return aligned

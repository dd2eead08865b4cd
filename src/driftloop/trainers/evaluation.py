"""Shared by every trainer and the gate: held-out splits, temperature scaling, ECE, regression
errors, the reference profile, and a frame's rows as a predictor's inputs (texts, or records of
its features)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from driftloop.errors import InvalidInputError
from driftloop.predictors import (
    Evaluation,
    Feature,
    InputSchema,
    OutputKind,
    Predictor,
    ReferenceProfile,
    RegressionEvaluation,
    softmax,
)

if TYPE_CHECKING:  # frames arrive built; this module never makes one
    import pandas as pd

REFERENCE_SAMPLE = 2_000


def split_holdout(
    frame: pd.DataFrame,
    label_column: str,
    fraction: float = 0.2,
    seed: int = 0,
    *,
    output: OutputKind = "classification",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train / held-out split: stratified by class for a classifier (plain random when a class
    is too small to stratify), plain random for a regression model (:func:`split_rows`: its
    numeric targets are not classes)."""
    if output == "regression":
        return split_rows(frame, fraction, seed)
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


def split_rows(
    frame: pd.DataFrame, fraction: float = 0.2, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A plain random train / held-out split (a regression target is not stratified)."""
    from sklearn.model_selection import train_test_split

    train, held_out = train_test_split(frame, test_size=fraction, random_state=seed)
    return train.reset_index(drop=True), held_out.reset_index(drop=True)


def evaluate_regression(
    predicted: NDArray[np.float64], y: NDArray[np.float64]
) -> RegressionEvaluation:
    """MAE, RMSE and R² of ``predicted`` values (a ``[value, lower, upper]`` row counts its
    value) against the targets ``y``."""
    values = predicted if predicted.ndim == 1 else predicted[:, 0]
    errors = values - y
    spread = float(np.sum((y - y.mean()) ** 2)) if len(y) else 0.0
    r2 = 1.0 - float(np.sum(errors**2)) / spread if spread > 0 else 0.0
    return RegressionEvaluation(
        mae=float(np.mean(np.abs(errors))),
        rmse=float(np.sqrt(np.mean(errors**2))),
        r2=r2,
        n=len(y),
    )


def regression_targets(frame: pd.DataFrame, label_column: str) -> NDArray[np.float64]:
    """The label column as numbers; :class:`InvalidInputError` naming the first row that is not
    one."""
    values = np.empty(len(frame), dtype=np.float64)
    for i, raw in enumerate(frame[label_column].tolist()):
        try:
            values[i] = float(raw)
        except (TypeError, ValueError):
            values[i] = math.nan
        if not math.isfinite(values[i]):
            raise InvalidInputError(
                f"row {i}: the regression target {label_column!r} is {raw!r}, not a finite number"
            )
    return values


def model_inputs(schema: InputSchema, frame: pd.DataFrame, text_column: str) -> list[Any]:
    """``frame``'s rows as the predictor takes them: the texts of ``text_column``, or one record
    per row made of the schema's feature columns (see :func:`records_from_frame`)."""
    if schema.is_text:
        if text_column not in frame:
            raise InvalidInputError(
                f"the data has no text column {text_column!r}; its columns are "
                f"{[str(c) for c in frame.columns]}"
            )
        return [str(text) for text in frame[text_column].tolist()]
    return records_from_frame(schema, frame)


def records_from_frame(schema: InputSchema, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One record per row, each feature read from its column (snapshots hold text: numbers,
    integers and booleans are parsed); a blank cell is ``None`` for an optional feature.
    :class:`InvalidInputError` names the row and feature of a value that does not fit."""
    missing = [f.name for f in schema.features if not f.optional and f.name not in frame]
    if missing:
        raise InvalidInputError(
            f"the data has no column for the features {missing}; its columns are "
            f"{[str(c) for c in frame.columns]}"
        )
    columns = {f.name: frame[f.name].tolist() if f.name in frame else None for f in schema.features}
    records: list[dict[str, Any]] = []
    for i in range(len(frame)):
        record: dict[str, Any] = {}
        for feature in schema.features:
            column = columns[feature.name]
            record[feature.name] = _feature_value(feature, None if column is None else column[i], i)
        records.append(record)
    return records


_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _feature_value(feature: Feature, raw: Any, row: int) -> Any:
    blank = raw is None or (isinstance(raw, float) and math.isnan(raw)) or str(raw).strip() == ""
    if blank:
        if feature.optional:
            return None
        raise InvalidInputError(f"row {row}: the required feature {feature.name!r} is blank")
    text = str(raw).strip()
    try:
        if feature.type in ("number", "integer"):
            number = float(text)
            if not math.isfinite(number) or (feature.type == "integer" and not number.is_integer()):
                raise ValueError(text)
            return float(number) if feature.type == "number" else int(number)
        if feature.type == "boolean":
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            raise ValueError(text)
    except ValueError:
        raise InvalidInputError(
            f"row {row}: feature {feature.name!r} is {raw!r}, not a valid {feature.type}"
        ) from None
    if feature.type == "category" and text not in feature.categories:
        raise InvalidInputError(
            f"row {row}: feature {feature.name!r} is {text!r}, "
            f"not one of {list(feature.categories)}"
        )
    return text


def predictor_evaluation(
    predictor: Predictor,
    frame: pd.DataFrame,
    text_column: str,
    label_column: str,
    labels: Sequence[str] | None = None,
) -> Evaluation | RegressionEvaluation:
    """The predictor's quality on ``frame``, by its output kind: a classifier's probabilities
    (columns aligned to ``labels``, default its own) against the class labels, or a regression
    model's values against the numeric targets."""
    inputs = model_inputs(predictor.inputs, frame, text_column)
    answers = np.asarray(predictor.predict(inputs), dtype=np.float64)
    if predictor.output == "regression":
        return evaluate_regression(answers, regression_targets(frame, label_column))
    classes = list(labels if labels is not None else predictor.labels)
    probs = align_probabilities(answers, predictor.labels, classes)
    index = {label: i for i, label in enumerate(classes)}
    unknown = sorted(set(frame[label_column].astype(str)) - set(index))
    if unknown:
        raise InvalidInputError(f"labels {unknown} are not among the model's classes {classes}")
    y = np.array([index[label] for label in frame[label_column].astype(str)], dtype=np.int64)
    return evaluate_probabilities(probs, y, classes)


def describe_evaluation(evaluation: Evaluation | RegressionEvaluation) -> str:
    """The headline numbers, for logs: macro-F1 and ECE, or MAE, RMSE and R²."""
    if isinstance(evaluation, RegressionEvaluation):
        return f"MAE {evaluation.mae:.3f}, RMSE {evaluation.rmse:.3f}, R² {evaluation.r2:.3f}"
    return f"macro-F1 {evaluation.macro_f1:.3f}, ECE {evaluation.ece:.3f}"

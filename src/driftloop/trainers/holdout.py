"""The splits every trainer uses and the evaluation that makes their numbers comparable.

A snapshot is split (stratified, seeded) into a **held-out** test set, a **validation** set and
the **training** rows. The model learns from the training rows only; its temperature is fitted
on the validation rows; accuracy, macro-F1, per-class F1 and ECE (before and after temperature
scaling) are measured on the held-out rows, which also give the reference profile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from driftloop.predictors import ModelEvaluation, Predictor, ReferenceProfile, softmax
from driftloop.trainers.evaluation import (
    evaluate,
    fit_temperature,
    reference_profile,
    split_holdout,
)

DEFAULT_HOLDOUT_FRACTION = 0.2
DEFAULT_VALIDATION_FRACTION = 0.2


@dataclass(frozen=True)
class TrainingSplits:
    train: pd.DataFrame
    validation: pd.DataFrame
    held_out: pd.DataFrame

    def sizes(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "validation": len(self.validation),
            "held_out": len(self.held_out),
        }


def split_for_training(
    frame: pd.DataFrame,
    label_column: str,
    *,
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    seed: int = 0,
) -> TrainingSplits:
    """Held-out set first (``holdout_fraction`` of all rows), then validation from the rest."""
    rest, held_out = split_holdout(frame, label_column, holdout_fraction, seed)
    train, validation = split_holdout(rest, label_column, validation_fraction, seed)
    return TrainingSplits(train=train, validation=validation, held_out=held_out)


def label_indices(
    frame: pd.DataFrame, label_column: str, labels: tuple[str, ...]
) -> NDArray[np.int64]:
    index = {label: i for i, label in enumerate(labels)}
    return np.array([index[str(v)] for v in frame[label_column]], dtype=np.int64)


@dataclass(frozen=True)
class CalibratedEvaluation:
    temperature: float
    evaluation: ModelEvaluation
    reference: ReferenceProfile


def calibrate_and_evaluate(
    predictor: Predictor, splits: TrainingSplits, *, text_column: str, label_column: str
) -> CalibratedEvaluation:
    """Fit the predictor's temperature on the validation rows (setting it on the predictor),
    then evaluate on the held-out rows."""
    labels = predictor.labels
    validation_logits = predictor.logits(splits.validation[text_column].tolist())
    temperature = fit_temperature(
        validation_logits, label_indices(splits.validation, label_column, labels)
    )
    predictor.temperature = temperature
    held_out_texts = splits.held_out[text_column].tolist()
    held_out_logits = predictor.logits(held_out_texts)
    y = label_indices(splits.held_out, label_column, labels)
    evaluation = evaluate(held_out_logits, y, labels, temperature)
    reference = reference_profile(
        softmax(held_out_logits / temperature),
        held_out_texts,
        labels,
        evaluation,
        inputs=predictor.input_signals(held_out_texts),
    )
    return CalibratedEvaluation(temperature, evaluation, reference)

"""The segment classifier's trainer: fits the predictor on a snapshot's feature columns,
calibrates it on a validation split and measures it on a held-out split, with the helpers
every driftloop trainer shares."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from driftloop.config import ModelConfig
from driftloop.errors import InvalidInputError
from driftloop.trainers.base import ProgressCallback, TrainedModel, Trainer, TrainingData
from driftloop.trainers.evaluation import evaluate, fit_temperature, split_holdout

from .predictor import FEATURES, SegmentPredictor


class SegmentTrainer(Trainer):
    """Standardised features, multinomial logistic regression, temperature-scaled."""

    name: ClassVar[str] = "segment"

    def __init__(self, model_config: ModelConfig) -> None:
        self.seed = int(model_config.params.get("seed", 0))

    def fit(self, data: TrainingData, *, progress: ProgressCallback | None = None) -> TrainedModel:
        report = progress or (lambda _stage, _fraction: None)
        frame = data.frame
        missing = [c for c in (*FEATURES, data.label_column) if c not in frame.columns]
        if missing:
            raise InvalidInputError(f"the snapshot has no columns {missing}")
        train, held_out = split_holdout(frame, data.label_column, 0.2, self.seed)
        train, validation = split_holdout(train, data.label_column, 0.2, self.seed)
        report("fitting", 0.1)
        pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        pipeline.fit(train[list(FEATURES)], train[data.label_column].astype(str))
        predictor = SegmentPredictor(pipeline)
        report("calibrating", 0.7)
        predictor.temperature = fit_temperature(
            predictor.logits(_records(validation)), _indices(validation, data, predictor)
        )
        records = _records(held_out)
        evaluation = evaluate(
            predictor.logits(records),
            _indices(held_out, data, predictor),
            predictor.labels,
            predictor.temperature,
        )
        # the reference is every row the fit did not see (validation set only the temperature):
        # a small snapshot gives the drift detectors a bigger sample that way
        unseen = _records(validation) + records
        reference = dataclasses.replace(
            predictor.reference_profile(unseen),
            metrics={"accuracy": evaluation.accuracy, "macro_f1": evaluation.macro_f1},
        )
        report("done", 1.0)
        params = {"seed": self.seed, "rows": {"train": len(train), "held_out": len(held_out)}}
        return TrainedModel(predictor, evaluation, reference, params)


def _records(frame: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = frame[list(FEATURES)].astype(float).to_dict("records")
    return rows


def _indices(frame: Any, data: TrainingData, predictor: SegmentPredictor) -> Any:
    index = {label: i for i, label in enumerate(predictor.labels)}
    return np.array([index[str(v)] for v in frame[data.label_column]], dtype=np.int64)

"""The conformance suite of local trainers (:class:`~driftloop.trainers.base.Trainer`, the
``models.<name>.trainer`` family): a dataset in, a calibrated, evaluated model out.

The subject is a factory of trainers and a tiny dataset they can train on (a few rows of each
of two classes or more: keep it small, the check trains once). The refusal checks give the
trainer data no model can be trained on and expect a clear InvalidInputError before any work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from driftloop.errors import InvalidInputError
from driftloop.predictors import Evaluation
from driftloop.predictors.trained import TrainedModel
from driftloop.testing.checks.base import Check, checklist, expect, expect_raises, run_checks
from driftloop.trainers.base import Trainer, TrainingData


@dataclass(frozen=True)
class TrainerSubject:
    """A trainer under test and a tiny dataset it can train on."""

    make: Callable[[], Trainer]
    """A new trainer."""
    data: TrainingData
    """Rows of two classes or more, enough for the trainer's splits (a few per class)."""


TRAINER_CHECKS: list[Check[TrainerSubject]] = []
_check = checklist(TRAINER_CHECKS)


def check_trainer(subject: TrainerSubject) -> None:
    """Run every trainer check on ``subject`` (:data:`TRAINER_CHECKS`)."""
    run_checks(TRAINER_CHECKS, subject)


def _labels(data: TrainingData) -> set[str]:
    return {str(label) for label in data.frame[data.label_column]}


def _expect_evaluated(model: TrainedModel, labels: set[str]) -> None:
    evaluation = model.evaluation
    expect(isinstance(evaluation, Evaluation), "a classifier's evaluation is an Evaluation")
    assert isinstance(evaluation, Evaluation)  # for the type checker: expect raised otherwise
    expect(evaluation.n > 0, f"the evaluation counts {evaluation.n} held-out rows")
    for name in ("accuracy", "macro_f1", "ece", "ece_before_calibration", "mean_confidence"):
        value = getattr(evaluation, name)
        expect(0.0 <= value <= 1.0, f"evaluation.{name} is {value}, not in [0, 1]")
    expect(
        set(evaluation.per_class_f1) <= labels,
        f"per-class F1 names {sorted(evaluation.per_class_f1)}, the data {sorted(labels)}",
    )
    confidences = model.reference.confidences
    expect(len(confidences) > 0, "the reference profile holds no confidences")
    expect(all(0.0 <= c <= 1.0 for c in confidences), "a reference confidence is not in [0, 1]")


@_check
def trains_on_a_tiny_dataset(subject: TrainerSubject) -> None:
    """fit() gives a predictor over the data's labels, an evaluation on held-out rows and a
    reference profile; progress, when reported, is a stage and a fraction in [0, 1]."""
    reports: list[tuple[str, float]] = []
    model = subject.make().fit(
        subject.data, progress=lambda stage, done: reports.append((stage, done))
    )
    expect(isinstance(model, TrainedModel), f"fit() returned {type(model).__name__}")
    labels = _labels(subject.data)
    expect(
        set(model.predictor.labels) == labels,
        f"the predictor's labels {sorted(model.predictor.labels)} are not the data's "
        f"{sorted(labels)}",
    )
    _expect_evaluated(model, labels)
    texts = [str(t) for t in subject.data.frame[subject.data.text_column].head(3)]
    probabilities = np.asarray(model.predictor.predict_proba(texts))
    expect(
        probabilities.shape == (len(texts), len(labels)),
        f"the trained predictor answered shape {probabilities.shape}",
    )
    for stage, done in reports:
        expect(
            isinstance(stage, str) and 0.0 <= done <= 1.0, f"progress reported ({stage!r}, {done})"
        )


@_check
def refuses_an_empty_dataset(subject: TrainerSubject) -> None:
    """An empty dataset is an InvalidInputError that says it is empty."""
    data = subject.data
    empty = replace(data, frame=data.frame.iloc[0:0])
    error = expect_raises(
        InvalidInputError, lambda: subject.make().fit(empty), "fitting an empty dataset"
    )
    expect("empty" in str(error), f"the error does not say the data is empty: {error}")


@_check
def refuses_a_dataset_without_its_label_column(subject: TrainerSubject) -> None:
    """A dataset without the label column is an InvalidInputError naming the column."""
    data = subject.data
    unlabelled = replace(data, frame=data.frame.drop(columns=[data.label_column]))
    error = expect_raises(
        InvalidInputError,
        lambda: subject.make().fit(unlabelled),
        "fitting a dataset without its label column",
    )
    expect(data.label_column in str(error), f"the error does not name the column: {error}")


@_check
def refuses_a_single_class(subject: TrainerSubject) -> None:
    """A dataset of one class is an InvalidInputError: a classifier needs two."""
    data = subject.data
    one = str(data.frame[data.label_column].iloc[0])
    frame = pd.DataFrame(
        {
            data.text_column: data.frame[data.text_column].tolist(),
            data.label_column: [one] * len(data.frame),
        }
    )
    expect_raises(
        InvalidInputError,
        lambda: subject.make().fit(replace(data, frame=frame)),
        "fitting a dataset of a single class",
    )

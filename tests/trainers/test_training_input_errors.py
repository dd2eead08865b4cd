"""Data no model can learn from gets a specific error before any training starts."""

from __future__ import annotations

import pandas as pd
import pytest

from driftloop.errors import InvalidInputError
from driftloop.trainers.base import TrainingData
from driftloop.trainers.checks import check_training_data
from driftloop.trainers.sklearn import SklearnTrainer


def rows(labels: list[str], per_label: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": [
                f"review number {i} about {label}" for label in labels for i in range(per_label)
            ],
            "label": [label for label in labels for _ in range(per_label)],
        }
    )


def test_empty_dataset() -> None:
    with pytest.raises(InvalidInputError, match="is empty"):
        SklearnTrainer().fit(TrainingData(rows([]), snapshot_id="s-1"))


def test_missing_label_column() -> None:
    frame = rows(["a", "b"]).drop(columns=["label"])
    with pytest.raises(InvalidInputError, match=r"no column 'label'.*columns are \['text'\]"):
        SklearnTrainer().fit(TrainingData(frame))


def test_missing_text_column() -> None:
    with pytest.raises(InvalidInputError, match="no column 'body'"):
        SklearnTrainer().fit(TrainingData(rows(["a", "b"]), text_column="body"))


def test_single_class() -> None:
    with pytest.raises(InvalidInputError, match=r"single class \('a'\)"):
        SklearnTrainer().fit(TrainingData(rows(["a"])))


def test_labels_outside_the_configured_set() -> None:
    trainer = SklearnTrainer(labels=["a", "b"])
    with pytest.raises(InvalidInputError, match=r"outside the model's label set: \['c'\]"):
        trainer.fit(TrainingData(rows(["a", "b", "c"])))


def test_configured_label_without_rows() -> None:
    trainer = SklearnTrainer(labels=["a", "b", "c"])
    with pytest.raises(InvalidInputError, match=r"no rows for the configured labels \['c'\]"):
        trainer.fit(TrainingData(rows(["a", "b"])))


def test_class_too_small_to_split() -> None:
    frame = pd.concat([rows(["a"], 10), rows(["b"], 2)])
    with pytest.raises(InvalidInputError, match=r"fewer than 5 rows.*'b': 2"):
        SklearnTrainer().fit(TrainingData(frame))


def test_blank_rows_are_dropped_and_counted() -> None:
    frame = pd.concat([rows(["a", "b"]), pd.DataFrame({"text": ["", "text"], "label": ["a", ""]})])
    checked = check_training_data(TrainingData(frame))
    assert checked.labels == ("a", "b")
    assert checked.dropped_rows == 2
    assert len(checked.frame) == 12


def test_rows_without_text_and_label() -> None:
    frame = pd.DataFrame({"text": ["", " "], "label": ["a", "b"]})
    with pytest.raises(InvalidInputError, match="no row with both a text and a label"):
        check_training_data(TrainingData(frame))

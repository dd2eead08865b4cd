"""The local trainers pass driftloop.testing's trainer suite on a tiny dataset: sklearn, and the
command and notebook trainers (whose user code copies a model trained here once, so the suite
measures driftloop's side, not a second training). The transformers trainer is left to its own
tests: one fine-tuning costs more than this whole suite."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from driftloop.objectstore import bundled_reviews_path
from driftloop.testing.checks import ConformanceError, TrainerSubject, check_trainer
from driftloop.trainers.base import ProgressCallback, TrainedModel, TrainingData
from driftloop.trainers.command import CommandTrainer
from driftloop.trainers.notebook import NotebookTrainer
from driftloop.trainers.sklearn import SklearnParams, SklearnTrainer


@pytest.fixture(scope="module")
def data() -> TrainingData:
    reviews = pd.read_csv(bundled_reviews_path(), dtype=str, keep_default_na=False)
    sample = reviews.groupby("label", group_keys=False).sample(10, random_state=0)
    return TrainingData(sample.reset_index(drop=True), snapshot_id="tiny")


@pytest.fixture(scope="module")
def saved_model(data: TrainingData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("trained") / "model"
    SklearnTrainer(SklearnParams(c_grid=[1.0])).fit(data).predictor.save(directory)
    return directory


def copy_model(saved: Path) -> str:
    """User code that 'trains' by copying a saved model into place, with its metrics."""
    return (
        f"import shutil\nshutil.copytree({str(saved)!r}, output_dir + '/model')\n"
        "open(output_dir + '/metrics.json', 'w').write('{\"copied\": 1}')\n"
    )


def test_sklearn_trainer(data: TrainingData) -> None:
    check_trainer(TrainerSubject(lambda: SklearnTrainer(SklearnParams(c_grid=[1.0])), data))


def test_command_trainer(data: TrainingData, saved_model: Path, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("import sys\noutput_dir = sys.argv[2]\n" + copy_model(saved_model))
    command = [sys.executable, str(script), "{data_path}", "{output_dir}"]
    check_trainer(TrainerSubject(lambda: CommandTrainer(command, cwd=tmp_path), data))


def test_notebook_trainer(data: TrainingData, saved_model: Path, tmp_path: Path) -> None:
    cells = [('data_path = ""\noutput_dir = ""', ["parameters"]), (copy_model(saved_model), [])]
    notebook = tmp_path / "train.ipynb"
    notebook.write_text(
        json.dumps(
            {
                "cells": [
                    {
                        "cell_type": "code",
                        "execution_count": None,
                        "id": f"cell-{i}",
                        "metadata": {"tags": tags},
                        "outputs": [],
                        "source": source,
                    }
                    for i, (source, tags) in enumerate(cells)
                ],
                "metadata": {
                    "kernelspec": {
                        "name": "python3",
                        "display_name": "Python 3",
                        "language": "python",
                    },
                    "language_info": {"name": "python"},
                },
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        )
    )
    check_trainer(TrainerSubject(lambda: NotebookTrainer(notebook, cwd=tmp_path), data))


class UncheckedTrainer(SklearnTrainer):
    """Hands an empty dataset to scikit-learn as it is: what the suite is there to catch."""

    def fit(self, data: TrainingData, *, progress: ProgressCallback | None = None) -> TrainedModel:
        first_text = data.frame["text"].tolist()[:1]
        if not first_text:
            raise IndexError("list index out of range")  # as scikit-learn would, unexplained
        return super().fit(data, progress=progress)


def test_the_suite_catches_an_unexplained_error_on_empty_data(data: TrainingData) -> None:
    with pytest.raises(ConformanceError, match=r"refuses_an_empty_dataset.*IndexError"):
        check_trainer(TrainerSubject(lambda: UncheckedTrainer(SklearnParams(c_grid=[1.0])), data))

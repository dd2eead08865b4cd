"""The notebook (papermill) and command trainers: the user's code trains, driftloop evaluates."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from driftloop.errors import TrainingError
from driftloop.objectstore import bundled_reviews_path
from driftloop.predictors import Evaluation
from driftloop.trainers.base import TrainingData
from driftloop.trainers.command import CommandTrainer
from driftloop.trainers.notebook import NotebookTrainer
from driftloop.trainers.sklearn import SklearnParams, SklearnPredictor, SklearnTrainer

TRAINING_CODE = """\
import json
from pathlib import Path

import pandas as pd

from driftloop.trainers.sklearn import SklearnParams, SklearnPredictor, build_pipeline

rows = pd.read_csv(data_path, dtype=str, keep_default_na=False)
labels = sorted(rows["label"].unique())
pipeline = build_pipeline(SklearnParams(), 4.0)
pipeline.fit(rows["text"].tolist(), [labels.index(label) for label in rows["label"]])
SklearnPredictor(labels, pipeline).save(Path(output_dir) / "model")
(Path(output_dir) / "metrics.json").write_text(json.dumps({"train_rows": len(rows)}))
"""


def review_sample(rows_per_class: int) -> pd.DataFrame:
    reviews = pd.read_csv(bundled_reviews_path(), dtype=str, keep_default_na=False)
    return (
        reviews.groupby("label", group_keys=False)
        .sample(rows_per_class, random_state=0)
        .reset_index(drop=True)
    )


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return TrainingData(review_sample(30), snapshot_id="snap")


def script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "train.py"
    path.write_text("import sys\ndata_path, output_dir = sys.argv[1], sys.argv[2]\n" + body)
    return [sys.executable, str(path), "{data_path}", "{output_dir}"]


def write_notebook(path: Path, *cells: str, parameters: str | None = None) -> Path:
    """A minimal nbformat-4 notebook; ``parameters`` becomes the cell tagged for papermill."""
    sources = ([(parameters, ["parameters"])] if parameters is not None else []) + [
        (cell, []) for cell in cells
    ]
    document = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": f"cell-{index}",
                "metadata": {"tags": tags},
                "outputs": [],
                "source": source,
            }
            for index, (source, tags) in enumerate(sources)
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(document))
    return path


def notebook(tmp_path: Path, *cells: str) -> Path:
    return write_notebook(
        tmp_path / "train.ipynb", *cells, parameters='data_path = ""\noutput_dir = ""'
    )


def test_command_trainer_is_evaluated_like_any_other(tmp_path: Path, data: TrainingData) -> None:
    trained = CommandTrainer(script(tmp_path, TRAINING_CODE), cwd=tmp_path).fit(data)
    assert isinstance(trained.predictor, SklearnPredictor)
    assert trained.params["reported_metrics"] == {"train_rows": 115}
    assert trained.params["rows"] == {"train": 115, "validation": 29, "held_out": 36}
    assert isinstance(trained.evaluation, Evaluation)
    assert trained.evaluation.n == 36
    assert trained.evaluation.accuracy > 0.3
    assert trained.predictor.temperature == trained.params["temperature"] != 1.0
    assert trained.params["command"][0] == sys.executable


def test_failing_command_reports_its_stderr(tmp_path: Path, data: TrainingData) -> None:
    trainer = CommandTrainer(
        script(tmp_path, "print('out of memory', file=sys.stderr)\nsys.exit(3)"), cwd=tmp_path
    )
    with pytest.raises(TrainingError, match=r"exited with status 3:\nout of memory"):
        trainer.fit(data)


@pytest.fixture(scope="module")
def saved_models(data: TrainingData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Models trained here, for scripts that only copy one into place (fast to start)."""
    root = tmp_path_factory.mktemp("saved")
    params = SklearnParams(c_grid=[1.0])
    SklearnTrainer(params).fit(data).predictor.save(root / "full")
    fewer = data.frame[data.frame["label"] != "Food-Negative"]
    SklearnTrainer(params).fit(TrainingData(fewer)).predictor.save(root / "fewer-labels")
    return root


def outputs(model: Path | None, metrics: str | None) -> str:
    """A script body that copies a saved model and/or writes metrics.json, as given."""
    lines = ["import shutil"]
    if model is not None:
        lines.append(f"shutil.copytree({str(model)!r}, output_dir + '/model')")
    if metrics is not None:
        lines.append(f"open(output_dir + '/metrics.json', 'w').write({metrics!r})")
    return "\n".join(lines) + "\n"


def test_copied_model_is_accepted(tmp_path: Path, data: TrainingData, saved_models: Path) -> None:
    body = outputs(saved_models / "full", '{"ok": 1}')
    trained = CommandTrainer(script(tmp_path, body)).fit(data)
    assert trained.params["reported_metrics"] == {"ok": 1}


@pytest.mark.parametrize(
    ("model", "metrics", "message"),
    [
        (None, '{"ok": 1}', "wrote no model"),
        ("full", None, "wrote no output_dir/metrics.json"),
        ("full", "[1, 2]", "must hold a JSON object"),
        ("full", "{not json", "not valid JSON"),
        ("fewer-labels", '{"ok": 1}', r"lacks labels \['Food-Negative'\]"),
    ],
)
def test_missing_or_bad_outputs(
    tmp_path: Path,
    data: TrainingData,
    saved_models: Path,
    model: str | None,
    metrics: str | None,
    message: str,
) -> None:
    body = outputs(None if model is None else saved_models / model, metrics)
    with pytest.raises(TrainingError, match=message):
        CommandTrainer(script(tmp_path, body), cwd=tmp_path).fit(data)


def test_unloadable_model(tmp_path: Path, data: TrainingData) -> None:
    body = "import os\nos.makedirs(output_dir + '/model')\nopen(output_dir + '/model/x', 'w')\n"
    with pytest.raises(TrainingError, match="unusable"):
        CommandTrainer(script(tmp_path, body)).fit(data)


def test_missing_program(tmp_path: Path, data: TrainingData) -> None:
    with pytest.raises(TrainingError, match="command not found"):
        CommandTrainer(["/nonexistent/trainer", "{data_path}"]).fit(data)


def test_command_timeout(tmp_path: Path, data: TrainingData) -> None:
    trainer = CommandTrainer(script(tmp_path, "import time\ntime.sleep(30)"), timeout=0.5)
    with pytest.raises(TrainingError, match="timeout"):
        trainer.fit(data)


def test_notebook_trainer_runs_the_notebook_with_papermill(
    tmp_path: Path, data: TrainingData
) -> None:
    trainer = NotebookTrainer(notebook(tmp_path, TRAINING_CODE), cwd=tmp_path)
    trained = trainer.fit(data)
    assert isinstance(trained.predictor, SklearnPredictor)
    assert trained.params["reported_metrics"] == {"train_rows": 115}
    assert trained.params["notebook"] == str(tmp_path / "train.ipynb")
    assert trained.evaluation.n == 36


def test_raising_notebook_is_a_training_error_with_the_cell_error(
    tmp_path: Path, data: TrainingData
) -> None:
    trainer = NotebookTrainer(
        notebook(tmp_path, "x = 1", "raise ValueError('labels are broken')"), cwd=tmp_path
    )
    with pytest.raises(
        TrainingError,
        match=(r"train\.ipynb failed in cell \d+ \(index \d\): ValueError: labels are broken"),
    ):
        trainer.fit(data)

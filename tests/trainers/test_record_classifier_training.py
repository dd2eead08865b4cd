"""#18 part 5: a record classifier (record inputs, classification output) trains through the
``command`` trainer. Its training rows follow the model's input schema: the feature columns
its ``models.<name>.predictor`` class declares (each row checked against them before the user's
code runs), or every column when the snapshot has no text column and nothing is declared; no
text column is required. The model is the churn predictor of docs/byo-model.md."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from byo_models import write_churn_sources
from driftloop.config import ModelConfig
from driftloop.errors import InvalidInputError, TrainingError
from driftloop.predictors import Evaluation
from driftloop.trainers.base import TrainingData
from driftloop.trainers.command import CommandTrainer

TRAIN_SCRIPT = '''
"""Fits the churn pipeline of docs/byo-model.md on the CSV driftloop gives it."""
import json
import shutil
import sys
from pathlib import Path

import joblib
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

data_path, output_dir = sys.argv[1], Path(sys.argv[2])
frame = pd.read_csv(data_path, keep_default_na=False)
labels = frame["churned"]
features = frame[["monthly_spend", "tenure_months", "plan", "country"]].replace("", "unknown")
pipeline = Pipeline([
    ("features", ColumnTransformer([
        ("numbers", StandardScaler(), ["monthly_spend", "tenure_months"]),
        ("categories", OneHotEncoder(handle_unknown="ignore"), ["plan", "country"]),
    ])),
    ("classifier", LogisticRegression(max_iter=1000)),
])
pipeline.fit(features, labels)
model = output_dir / "model"
model.mkdir()
joblib.dump(pipeline, model / "pipeline.joblib")
shutil.copy(Path(__file__).with_name("predictor.py"), model / "predictor.py")
manifest = {"predictor": "predictor.py:ChurnPredictor"}
(model / "driftloop-model.json").write_text(json.dumps(manifest))
(output_dir / "metrics.json").write_text(json.dumps({"columns": list(frame.columns)}))
'''


HEADER_SCRIPT = """
import csv, sys
print("columns:", ",".join(next(csv.reader(open(sys.argv[1])))), file=sys.stderr)
sys.exit(3)
"""
"""Says which columns it was given, and stops."""


def customers(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    """A snapshot of a record classifier: features, an id and the label; no text column."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(rows)],
            "monthly_spend": rng.gamma(2.0, 30.0, rows).round(2),
            "tenure_months": rng.integers(1, 72, rows),
            "plan": rng.choice(["basic", "pro", "team"], rows),
            "country": rng.choice(["de", "fr", "us", ""], rows),
        }
    )
    risk = 1.5 - frame["tenure_months"] / 24 + (frame["plan"] == "basic") * 0.8
    frame["churned"] = np.where(rng.random(rows) < 1 / (1 + np.exp(-risk)), "churn", "stay")
    return frame.astype(str)  # snapshots hold text


def command(sources: Path) -> list[str]:
    (sources / "train_churn.py").write_text(TRAIN_SCRIPT)
    return [sys.executable, str(sources / "train_churn.py"), "{data_path}", "{output_dir}"]


def test_a_record_classifier_trains_on_every_column_when_its_features_are_not_declared(
    tmp_path: Path,
) -> None:
    sources = write_churn_sources(tmp_path / "sources")
    trainer = CommandTrainer(command(sources), cwd=tmp_path)

    trained = trainer.fit(TrainingData(customers(), label_column="churned"))

    assert type(trained.predictor).__name__ == "ChurnPredictor"
    assert trained.predictor.labels == ("churn", "stay")
    assert isinstance(trained.evaluation, Evaluation)
    assert trained.evaluation.n == trained.params["rows"]["held_out"] > 0
    assert trained.evaluation.accuracy > 0.5
    assert trained.params["reported_metrics"]["columns"] == [
        "customer_id",
        "monthly_spend",
        "tenure_months",
        "plan",
        "country",
        "churned",
    ]
    assert set(trained.reference.class_mix) == {"churn", "stay"}


def test_declared_features_choose_the_columns_and_check_every_row_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = write_churn_sources(tmp_path / "sources")
    (sources / "header.py").write_text(HEADER_SCRIPT)
    package = tmp_path / "package"  # the class, importable as models.<name>.predictor names it
    package.mkdir()
    (package / "record_churn_model.py").write_text((sources / "predictor.py").read_text())
    monkeypatch.syspath_prepend(str(package))
    model_config = ModelConfig.model_validate(
        {
            "trainer": "command",
            "command": [sys.executable, str(sources / "header.py"), "{data_path}"],
            "label_column": "churned",
            "predictor": "record_churn_model:ChurnPredictor",
        }
    )
    trainer = CommandTrainer.from_model_config(model_config, base_dir=tmp_path)
    assert trainer.inputs is not None
    assert [f.name for f in trainer.inputs.features][:2] == ["monthly_spend", "tenure_months"]

    with pytest.raises(TrainingError, match="exited with status 3") as stopped:
        trainer.fit(TrainingData(customers(), label_column="churned"))
    # the id is no feature: not handed over
    assert "columns: monthly_spend,tenure_months,plan,country,churned" in stopped.value.message

    gold = customers()
    gold.loc[7, "plan"] = "gold"
    with pytest.raises(InvalidInputError, match=r"row 7: feature 'plan' is 'gold', not one of"):
        trainer.fit(TrainingData(gold, label_column="churned", snapshot_id="s-gold"))
    with pytest.raises(InvalidInputError, match=r"has no column 'tenure_months'.*input schema"):
        trainer.fit(TrainingData(customers().drop(columns="tenure_months"), label_column="churned"))

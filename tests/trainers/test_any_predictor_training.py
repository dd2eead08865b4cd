"""#18 part 5: what the trainers and the gate read from a snapshot for any predictor: records made
of its feature columns (snapshots hold text), numeric regression targets, and the clear errors
for data or models that do not fit; a command trainer's model of the wrong output kind fails."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from byo_models import write_regression_model
from driftloop.errors import InvalidInputError, TrainingError
from driftloop.predictors import Feature, InputSchema
from driftloop.trainers.base import TrainingData
from driftloop.trainers.command import CommandTrainer
from driftloop.trainers.evaluation import records_from_frame, regression_targets

SCHEMA = InputSchema.record(
    Feature.number("spend"),
    Feature.integer("tenure_months"),
    Feature.boolean("promo", optional=True),
    Feature.category("plan", ["basic", "pro"]),
)


def test_a_snapshots_rows_become_records_of_the_schemas_types() -> None:
    frame = pd.DataFrame(
        {
            "spend": ["42.5", "7"],
            "tenure_months": ["3", "12.0"],
            "promo": ["true", ""],
            "plan": ["basic", "pro"],
            "extra": ["ignored", "too"],
        }
    )
    assert records_from_frame(SCHEMA, frame) == [
        {"spend": 42.5, "tenure_months": 3, "promo": True, "plan": "basic"},
        {"spend": 7.0, "tenure_months": 12, "promo": None, "plan": "pro"},
    ]


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("tenure_months", "2.5", "row 1: feature 'tenure_months' is '2.5', not a valid integer"),
        ("spend", "inf", "row 1: feature 'spend' is 'inf', not a valid number"),
        ("promo", "maybe", "row 1: feature 'promo' is 'maybe', not a valid boolean"),
        ("plan", "gold", "row 1: feature 'plan' is 'gold', not one of ['basic', 'pro']"),
        ("plan", " ", "row 1: the required feature 'plan' is blank"),
    ],
)
def test_a_value_that_does_not_fit_names_its_row_and_feature(
    column: str, value: str, message: str
) -> None:
    frame = pd.DataFrame(
        {"spend": ["1", "2"], "tenure_months": ["1", "2"], "promo": ["", ""], "plan": ["pro"] * 2}
    )
    frame.loc[1, column] = value
    with pytest.raises(InvalidInputError) as caught:
        records_from_frame(SCHEMA, frame)
    assert caught.value.message == message


def test_missing_feature_columns_and_bad_targets_are_named() -> None:
    with pytest.raises(InvalidInputError, match=r"no column for the features \['plan'\]"):
        records_from_frame(SCHEMA, pd.DataFrame({"spend": ["1"], "tenure_months": ["1"]}))
    with pytest.raises(InvalidInputError, match="row 2: the regression target 'y' is 'n/a'"):
        regression_targets(pd.DataFrame({"y": ["1.5", "2", "n/a"]}), "y")


def spend_frame(rows: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"tenure_months": [str(i) for i in range(rows)], "spend": [str(2 * i) for i in range(rows)]}
    )


def copying_command(tmp_path: Path, model_dir: Path) -> list[str]:
    """A training command that writes ``model_dir`` as its model."""
    script = tmp_path / "train.py"
    script.write_text(
        "import json, shutil, sys\n"
        f"shutil.copytree({str(model_dir)!r}, sys.argv[2] + '/model')\n"
        "open(sys.argv[2] + '/metrics.json', 'w').write(json.dumps({}))\n"
    )
    return [sys.executable, str(script), "{data_path}", "{output_dir}"]


def test_a_regression_model_where_a_classifier_is_configured_fails_the_training(
    tmp_path: Path,
) -> None:
    model_dir = write_regression_model(tmp_path / "spend", slope=2.0)
    reviews = pd.DataFrame(
        {"text": [f"review {i}" for i in range(40)], "label": ["good", "bad"] * 20}
    )
    trainer = CommandTrainer(copying_command(tmp_path, model_dir), cwd=tmp_path)
    with pytest.raises(
        TrainingError, match=r"is a regression model, but models\.<name>\.output is"
    ):
        trainer.fit(TrainingData(reviews))


def test_regression_training_data_is_checked_before_the_command_runs(tmp_path: Path) -> None:
    never_run = [sys.executable, str(tmp_path / "missing.py"), "{data_path}", "{output_dir}"]
    trainer = CommandTrainer(never_run, cwd=tmp_path, output="regression")
    with pytest.raises(InvalidInputError, match="no target column 'label'"):
        trainer.fit(TrainingData(spend_frame(20)))
    with pytest.raises(InvalidInputError, match="has 5 rows with a target; a regression model"):
        trainer.fit(TrainingData(spend_frame(5), label_column="spend"))
    frame = spend_frame(20)
    frame.loc[4, "spend"] = "lots"
    with pytest.raises(InvalidInputError, match="row 4: the regression target 'spend' is 'lots'"):
        trainer.fit(TrainingData(frame, label_column="spend"))

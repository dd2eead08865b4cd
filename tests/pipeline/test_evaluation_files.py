"""#18 part 5: the evaluation a training job hands in (``evaluation.json`` of an upload,
``driftloop models register --evaluation``) follows the model's output kind: a regression
model's MAE, RMSE, R² and n are recorded as a :class:`RegressionEvaluation`; the other kind's
fields, a missing, unknown or non-numeric field are refused naming the field, registering
nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from byo_models import write_regression_model
from driftloop.client import Client
from driftloop.errors import InvalidInputError
from driftloop.predictors import RegressionEvaluation
from driftloop.registry.versions import parse_evaluation
from driftloop.serving.keys import Scope
from driftloop.trainers.training import register_external
from pipeline.test_regression_gate import regression_world
from pipeline.world import DATASET, MODEL, PipelineWorld
from serving.live import live_server

REGRESSION = {"mae": 0.81, "rmse": 1.02, "r2": 0.97, "n": 60}
CLASSIFICATION = {
    "accuracy": 0.9,
    "macro_f1": 0.88,
    "per_class_f1": {"neg": 0.87, "pos": 0.89},
    "ece": 0.03,
    "ece_before_calibration": 0.05,
    "mean_confidence": 0.9,
    "n": 60,
}


@pytest.fixture
def world(tmp_path: Path) -> PipelineWorld:
    """A regression model (``output: regression``) with v1 in production."""
    return regression_world(tmp_path, mode="fit", production_slope=2.0)


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("evaluation", "message"),
    [
        (
            CLASSIFICATION,
            "'macro_f1', 'mean_confidence', 'per_class_f1'] of a classification evaluation, but "
            "the model is a regression model",
        ),
        ({**REGRESSION, "output": "classification"}, "has output 'classification'"),
        (
            {k: v for k, v in REGRESSION.items() if k != "rmse"},
            "has no field 'rmse'; a regression model's evaluation has the fields mae, n, r2, rmse",
        ),
        ({**REGRESSION, "mape": 0.1}, "has unknown field 'mape'"),
        ({**REGRESSION, "mae": "low"}, "field 'mae' is 'low', not a finite number"),
        ({**REGRESSION, "n": 1.5}, "field 'n' is 1.5, not a count of rows"),
    ],
)
def test_models_register_refuses_an_evaluation_that_does_not_fit_a_regression_model(
    world: PipelineWorld, tmp_path: Path, evaluation: dict[str, object], message: str
) -> None:
    directory = write_regression_model(tmp_path / "ci-model", slope=2.1)
    bad = write_json(tmp_path / "evaluation.json", {"evaluation": evaluation})
    with pytest.raises(InvalidInputError, match=r"evaluation\.json") as refused:
        register_external(world.config, MODEL, directory, evaluation_file=bad)
    assert message in refused.value.message
    assert [v.version for v in world.system.registry.list_versions(MODEL)] == [1]


def test_a_regression_evaluation_is_recorded_from_models_register_and_an_upload(
    world: PipelineWorld, tmp_path: Path
) -> None:
    directory = write_regression_model(tmp_path / "ci-model", slope=2.1)
    top_level = write_json(tmp_path / "top.json", {**REGRESSION, "output": "regression"})
    registered = register_external(world.config, MODEL, directory, evaluation_file=top_level)
    assert registered.evaluation == RegressionEvaluation(mae=0.81, rmse=1.02, r2=0.97, n=60)

    key = world.system.api_keys.create(Scope.REGISTER).key
    snapshot = world.system.datasets.newest(DATASET).snapshot_id
    uploaded_dir = write_regression_model(tmp_path / "output" / "model", slope=2.2)
    good = write_json(tmp_path / "output" / "evaluation.json", {"evaluation": REGRESSION})
    wrong = write_json(tmp_path / "wrong.json", {"evaluation": CLASSIFICATION})
    with live_server(world.system.create_app(poll=False)) as url, Client(url, key) as client:
        with pytest.raises(InvalidInputError, match="but the model is a regression model"):
            client.upload_version(MODEL, uploaded_dir, snapshot_id=snapshot, evaluation=wrong)
        assert len(world.system.registry.list_versions(MODEL)) == 2  # nothing registered
        uploaded = client.upload_version(MODEL, uploaded_dir, snapshot_id=snapshot, evaluation=good)
    version = world.system.registry.get_version(MODEL, uploaded.version)
    assert version.evaluation == RegressionEvaluation(**REGRESSION)  # type: ignore[arg-type]
    shown = version.to_dict()["evaluation"]
    assert (shown["rmse"], shown["output"]) == (1.02, "regression")


def test_the_registry_refuses_an_evaluation_of_the_other_kind_than_the_predictor(
    world: PipelineWorld, tmp_path: Path
) -> None:
    """An upload is read by models.<name>.output; the registry checks it against the
    predictor the directory actually holds."""
    directory = write_regression_model(tmp_path / "ci-model", slope=2.1)
    classifier_evaluation = parse_evaluation(CLASSIFICATION, "classification", "test")
    with pytest.raises(InvalidInputError, match="is a classification evaluation, but its pre"):
        world.system.registry.register(
            MODEL, directory, trainer="upload", evaluation=classifier_evaluation
        )
    assert len(world.system.registry.list_versions(MODEL)) == 1

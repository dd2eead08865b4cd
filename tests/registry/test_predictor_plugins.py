"""How a model directory finds its predictor (#18 part 1), and what registration refuses
(#18 part 6): each refusal names its cause and leaves nothing registered."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from byo_models import write_manifest, write_predictor_module, write_regression_model
from driftloop.config import Config, ModelConfig
from driftloop.errors import InvalidInputError
from driftloop.predictors import (
    PREDICTION,
    PREDICTORS,
    TEXT,
    Feature,
    InputSchema,
    load_predictor,
    read_manifest,
)
from driftloop.predictors.loading import find_predictor_class
from driftloop.registry import ModelRegistry
from driftloop.testing.predictors import KeywordPredictor, review_keyword_predictor
from driftloop.trainers.sklearn import SklearnPredictor

MODEL = """
from pathlib import Path
from typing import Any

import numpy as np

from driftloop import Predictor


class Model(Predictor):
    output = "{output}"
    labels = {labels!r}

    @classmethod
    def load_files(cls, directory: Path, manifest: dict[str, Any]) -> "Model":
        return cls(labels=cls.labels)

    def predict(self, batch: list[Any]) -> np.ndarray:
        return np.array({answer!r} * len(batch), dtype=float)
"""


def config(tmp_path: Path, **models: ModelConfig) -> Config:
    return Config(
        store=f"sqlite:///{tmp_path}/driftloop.db",
        storage=f"file://{tmp_path}/s",
        base_dir=tmp_path,
        models=models or {"m": ModelConfig()},
    )


def stored_files(tmp_path: Path) -> list[Path]:
    return [path for path in (tmp_path / "s").rglob("*") if path.is_file()]


@pytest.mark.parametrize(
    ("source", "manifest", "problem"),
    [
        (
            None,
            {},
            "names no predictor: give it a 'format' (a registered predictor: hf-checkpoint, "
            "keyword, mlflow, sklearn, transformers) or a 'predictor'",
        ),
        (
            "import not_a_module_anywhere\n",
            None,
            "importing predictor.py failed: ModuleNotFoundError: No module named "
            "'not_a_module_anywhere'",
        ),
        ("def broken(:\n", None, "importing predictor.py failed: SyntaxError"),
        ("class Model:\n    pass\n", None, "is <class 'driftloop_model_code_"),
        ("x = 1\n", {"predictor": "predictor.py:Model"}, "predictor.py defines no 'Model'"),
        (None, {"predictor": "../elsewhere.py:Model"}, "FILE a path inside the model directory"),
        (None, {"predictor": "absent.py:Model"}, "absent.py is not in the model directory"),
        (
            MODEL.format(output="regression", labels=(), answer=[[0.5, 0.5]]),
            None,
            "declares a regression output but answered shape (1, 2) for 1 input(s)",
        ),
        (
            MODEL.format(output="classification", labels=("a", "b"), answer=[[0.2, 0.3, 0.5]]),
            None,
            "declares a classification output but answered shape (1, 3)",
        ),
        (
            MODEL.format(output="classification", labels=("a", "b"), answer=[[2.0, 3.0]]),
            None,
            "its rows are not probabilities",
        ),
        (
            MODEL.format(output="classification", labels=("a",), answer=[[1.0]]),
            None,
            "a classifier needs two or more distinct string labels",
        ),
        (
            MODEL.format(output="ranking", labels=(), answer=[1.0]),
            None,
            "declares output 'ranking'; known output kinds: classification, regression",
        ),
        (
            MODEL.format(output="regression", labels=(), answer=[float("nan")]).replace(
                "nan", "float('nan')"
            ),
            None,
            "answered a value that is not finite",
        ),
    ],
)
def test_registration_refuses_a_directory_without_a_working_predictor(
    tmp_path: Path, source: str | None, manifest: dict[str, str] | None, problem: str
) -> None:
    registry = ModelRegistry.from_config(config(tmp_path))
    directory = tmp_path / "model"
    directory.mkdir()
    if source is not None:
        write_predictor_module(directory, source)
    if manifest is not None:
        write_manifest(directory, manifest)
    with pytest.raises(InvalidInputError) as refused:
        registry.register("m", directory, trainer="external")
    assert problem in refused.value.message
    assert registry.list_models() == []
    assert stored_files(tmp_path) == []


def test_a_predictor_that_raises_on_its_example_is_refused(tmp_path: Path) -> None:
    registry = ModelRegistry.from_config(config(tmp_path))
    source = MODEL.format(output="regression", labels=(), answer=[1.0]).replace(
        "return np.array", "raise KeyError('spend')\n        return np.array"
    )
    directory = write_predictor_module(tmp_path / "model", source)
    with pytest.raises(InvalidInputError, match=r"predicting its example failed: KeyError"):
        registry.register("m", directory, trainer="external")
    assert registry.list_models() == []


def test_a_configured_predictor_class_loads_every_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "site"
    package.mkdir()
    (package / "team_models.py").write_text(
        MODEL.format(output="regression", labels=(), answer=[7.0])
    )
    monkeypatch.syspath_prepend(str(package))
    monkeypatch.delitem(sys.modules, "team_models", raising=False)
    directory = tmp_path / "model"
    directory.mkdir()
    write_manifest(directory, {})  # the configured class needs nothing from the manifest
    configured = config(tmp_path, spend=ModelConfig(predictor="team_models:Model"))
    registry = ModelRegistry.from_config(configured)
    version = registry.register("spend", directory, trainer="external")
    predictor = registry.load_predictor(version)
    assert type(predictor).__module__ == "team_models"
    assert predictor.predict([{}]).tolist() == [7.0]

    wrong = ModelRegistry.from_config(
        config(tmp_path, spend=ModelConfig(predictor="team_models:Absent"))
    )
    with pytest.raises(InvalidInputError, match="module 'team_models' has no attribute 'Absent'"):
        wrong.register("spend", directory, trainer="external")
    assert [v.version for v in registry.list_versions("spend")] == [1]


def test_the_predictor_key_must_name_module_and_class() -> None:
    with pytest.raises(ValueError, match="predictor"):
        ModelConfig(predictor="team_models.Model")


def test_built_in_predictors_go_through_the_plug_in_registry(tmp_path: Path) -> None:
    assert {"sklearn", "transformers"} <= set(PREDICTORS.builtin_names())
    sklearn_manifest = {"format": "sklearn"}
    assert find_predictor_class(tmp_path, sklearn_manifest) is SklearnPredictor
    saved = tmp_path / "keyword"
    review_keyword_predictor().save(saved)
    assert read_manifest(saved)["format"] == "keyword"
    assert isinstance(load_predictor(saved), KeywordPredictor)
    with pytest.raises(
        Exception,
        match=r"unknown predictor format 'mystery'.*known: .*sklearn"
        r".*pip install PACKAGE",
    ):
        find_predictor_class(tmp_path, {"format": "mystery"})


def test_a_module_file_is_imported_once_per_content(tmp_path: Path) -> None:
    first = write_regression_model(tmp_path / "v1", slope=1.0)
    second = write_regression_model(tmp_path / "v2", slope=2.0)  # same spend.py
    one, two = load_predictor(first), load_predictor(second)
    assert type(one) is type(two)
    assert two.predict([{"tenure_months": 2, "promo": None}])[0].tolist() == [14.0, 13.0, 15.0]
    assert json.loads((second / "driftloop-model.json").read_text()) == {
        "predictor": "spend.py:SpendPredictor"
    }


def test_the_cli_refuses_code_that_cannot_be_imported(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from driftloop.cli import app

    (tmp_path / "driftloop.yaml").write_text(
        f"store: sqlite:///{tmp_path}/driftloop.db\nstorage: file://{tmp_path}/s\n"
        "models:\n  m: {}\n"
    )
    directory = write_predictor_module(tmp_path / "model", "import xgboost_not_here\n")
    result = CliRunner().invoke(
        app, ["models", "register", "m", str(directory), "-c", str(tmp_path / "driftloop.yaml")]
    )
    assert result.exit_code == 1
    assert "importing predictor.py failed: ModuleNotFoundError" in " ".join(result.output.split())
    assert stored_files(tmp_path) == []


def test_the_reference_profile_hook_records_what_fits_the_output(tmp_path: Path) -> None:
    spend = load_predictor(write_regression_model(tmp_path / "spend", slope=2.0))
    reference = spend.reference_profile(
        [{"tenure_months": 1, "promo": None}, {"tenure_months": 5, "promo": True}]
    )
    assert reference.inputs == {
        PREDICTION: [12.0, 20.0],  # and each feature's values
        "feature.tenure_months": [1.0, 5.0],
        "feature.promo": [1.0],
    }
    assert reference.confidences == []
    with pytest.raises(InvalidInputError, match="regression model: it has no class prob"):
        spend.predict_proba([{"tenure_months": 1, "promo": None}])

    keyword = review_keyword_predictor()
    texts = ["cheap and tasty", "a boring film"]
    profile = keyword.reference_profile(texts)
    assert profile.text_lengths == [15, 13]
    assert profile.confidences == keyword.predict(texts).max(axis=1).tolist()
    assert sum(profile.class_mix.values()) == pytest.approx(1.0)


def test_an_input_schema_round_trips_and_refuses_nonsense() -> None:
    schema = InputSchema.record(
        Feature.number("x"),
        Feature.category("c", ["a", "b"]),
        Feature.string("s", optional=True),
        Feature.boolean("b"),
    )
    assert InputSchema.from_dict(schema.to_dict()) == schema
    assert InputSchema.from_dict(TEXT.to_dict()) == TEXT
    assert schema.example() == {"x": 0.0, "c": "a", "s": "", "b": False}
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: InputSchema.record(), "needs at least one feature"),
        (
            lambda: InputSchema.record(Feature.number("x"), Feature.integer("x")),
            "named more than once: ['x']",
        ),
        (lambda: Feature("x", "complex"), "has type 'complex'"),  # type: ignore[arg-type]
        (lambda: Feature.category("c", []), "needs its categories"),
        (lambda: Feature.number("no spaces"), "must be a letter"),
    ]
    for build, problem in cases:
        with pytest.raises(InvalidInputError, match=re.escape(problem)):
            build()

"""``driftloop models register NAME DIR`` for models saved by other tools (#18 part 4): a Hugging
Face sequence-classification checkpoint (a tiny random BERT saved here, nothing downloaded)
registered, served over /v1 and /v2 with the checkpoint's own answers; MLflow pyfunc models
saved by MLflow, loaded by its loader; ``--reference FILE``
profiled by the predictor and recorded with the predictor and its schema; directories that
are no model refused with nothing registered."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pandas as pd
import pytest
import torch
import transformers
from typer.testing import CliRunner

from byo_models import write_regression_model
from driftloop.cli import app as cli_app
from driftloop.config import load_config
from driftloop.database import open_database
from driftloop.predictors import PREDICTION
from driftloop.registry import ModelRegistry
from driftloop.serving import ApiKeyStore, Scope, create_app

with warnings.catch_warnings():  # MLflow's advice on type hints, given at import
    warnings.simplefilter("ignore", UserWarning)
    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.pyfunc.model import PythonModel
    from mlflow.types import ColSpec, Schema

WORDS = ["good", "bad", "food", "service", "slow", "great", "the", "was"]
TEXTS = ["the food was good", "service was slow and bad", "great"]


def save_tiny_bert(directory: Path) -> Path:
    """A random two-class BERT with its WordPiece tokenizer, as ``save_pretrained`` writes
    them."""
    directory.mkdir(parents=True)
    vocabulary = directory / "vocab.txt"
    vocabulary.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]))
    tokenizer = transformers.BertTokenizer(vocab_file=str(vocabulary))
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(WORDS) + 5,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    transformers.BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def project(tmp_path: Path, models: str) -> Path:
    path = tmp_path / "driftloop.yaml"
    path.write_text(
        f"store: sqlite:///{tmp_path}/driftloop.db\nstorage: file://{tmp_path}/storage\n"
        f"models:\n{models}\n"
    )
    return path


def register(config_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli_app, ["models", "register", *args, "-c", str(config_path)])
    return result.exit_code, result.output


def test_a_hugging_face_checkpoint_is_registered_and_served_with_its_own_answers(
    tmp_path: Path,
) -> None:
    checkpoint = save_tiny_bert(tmp_path / "checkpoint")
    before = sorted(path.name for path in checkpoint.iterdir())
    reference = tmp_path / "reference.csv"
    reference.write_text("text,label\n" + "\n".join(f"{t},positive" for t in TEXTS) + "\n")
    config_path = project(tmp_path, "  reviews: {}")
    code, output = register(
        config_path, "reviews", str(checkpoint), "--reference", str(reference), "--json"
    )
    assert code == 0, output
    assert output.startswith("{"), output[:600]
    registered = json.loads(output)
    assert sorted(path.name for path in checkpoint.iterdir()) == before  # not written to
    params = registered["params"]
    assert params["predictor"] == "hf-checkpoint"
    assert params["inputs"] == {"kind": "text"}
    assert params["output"] == "classification"
    assert params["reference"] == {
        "file": "reference.csv",
        "rows": 3,
        "sha256": hashlib.sha256(reference.read_bytes()).hexdigest(),
    }
    config = load_config(config_path)
    version = ModelRegistry.from_config(config).get_version("reviews", 1)
    assert version.reference is not None
    assert len(version.reference.confidences) == 3

    # the served answers are the checkpoint's own
    model = transformers.BertForSequenceClassification.from_pretrained(checkpoint)
    tokens = transformers.BertTokenizer.from_pretrained(checkpoint)(
        TEXTS, padding=True, return_tensors="pt"
    )
    with torch.inference_mode():
        expected = torch.softmax(model(**tokens).logits, dim=-1).numpy()
    key = (
        ApiKeyStore(open_database(config.store, base_dir=config.base_dir)).create(Scope.PREDICT).key
    )
    served = _predict(create_app(config, poll=False), key, TEXTS)
    np.testing.assert_allclose(
        [[p["probabilities"]["negative"], p["probabilities"]["positive"]] for p in served],
        expected,
        atol=1e-5,
    )


def _predict(app: Any, key: str, texts: list[str]) -> list[dict[str, Any]]:
    async def call() -> list[dict[str, Any]]:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
        ):
            headers = {"Authorization": f"Bearer {key}"}
            v1 = await http.post(
                "/v1/models/reviews/predict", json={"texts": texts}, headers=headers
            )
            assert v1.status_code == 200, v1.text
            v2 = await http.post(
                "/v2/models/reviews/infer",
                headers=headers,
                json={
                    "inputs": [
                        {"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}
                    ]
                },
            )
            assert v2.status_code == 200, v2.text
            classes = next(o for o in v2.json()["outputs"] if o["name"] == "class")["data"]
            predictions: list[dict[str, Any]] = v1.json()["predictions"]
            assert classes == [p["class"] for p in predictions]
            return predictions

    return anyio.run(call)


def test_a_reference_file_profiles_a_record_model_and_bad_ones_register_nothing(
    tmp_path: Path,
) -> None:
    model = write_regression_model(tmp_path / "spend", slope=2.0)
    config_path = project(tmp_path, "  spend: {}")
    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({"promo": True}) + "\n")
    code, output = register(config_path, "spend", str(model), "--reference", str(missing))
    assert code != 0
    assert "lacks the columns ['tenure_months']" in output
    config = load_config(config_path)
    assert ModelRegistry.from_config(config).list_versions("spend") == []

    reference = tmp_path / "reference.jsonl"
    reference.write_text(
        "".join(json.dumps({"tenure_months": months}) + "\n" for months in (0, 5, 10))
    )
    code, output = register(
        config_path, "spend", str(model), "--reference", str(reference), "--json"
    )
    assert code == 0, output
    version = ModelRegistry.from_config(config).get_version("spend", 1)
    assert version.params["output"] == "regression"
    assert [f["name"] for f in version.params["inputs"]["features"]] == ["tenure_months", "promo"]
    assert version.reference is not None
    assert version.reference.inputs[PREDICTION] == [10.0, 20.0, 30.0]

    code, output = register(config_path, "spend", str(model))
    assert code == 0, output
    assert "learn it from the first live values" in output


class SpendModel(PythonModel):
    """An MLflow pyfunc regression: spend = 2 * tenure + 10."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return (2.0 * model_input["tenure_months"] + 10.0).to_numpy()


class ToneModel(PythonModel):
    """An MLflow pyfunc text classifier: a probability per column of its output signature."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        good = model_input["text"].str.contains("good").astype(float) * 0.8 + 0.1
        return pd.DataFrame({"negative": 1.0 - good, "positive": good})


def save_mlflow(directory: Path, model: Any, inputs: list[Any], outputs: list[Any]) -> Path:
    with warnings.catch_warnings():  # MLflow's advice on type hints and input examples
        warnings.simplefilter("ignore", UserWarning)
        mlflow.pyfunc.save_model(
            str(directory),
            python_model=model,
            pip_requirements=[],
            signature=ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs)),
        )
    return directory


def test_mlflow_pyfunc_models_are_registered_and_served_by_mlflows_loader(tmp_path: Path) -> None:
    spend = save_mlflow(
        tmp_path / "spend",
        SpendModel(),
        [ColSpec("long", "tenure_months"), ColSpec("boolean", "promo", required=False)],
        [ColSpec("double", "value")],
    )
    tone = save_mlflow(
        tmp_path / "tone",
        ToneModel(),
        [ColSpec("string", "text")],
        [ColSpec("double", "negative"), ColSpec("double", "positive")],
    )
    config_path = project(tmp_path, "  spend: {}\n  tone: {}")
    reference = tmp_path / "reference.csv"
    reference.write_text("tenure_months\n1\n4\n")
    for name, directory, extra in (
        ("spend", spend, ["--reference", str(reference)]),
        ("tone", tone, []),
    ):
        code, output = register(config_path, name, str(directory), *extra)
        assert code == 0, output
    config = load_config(config_path)
    registry = ModelRegistry.from_config(config)
    spent = registry.get_version("spend", 1)
    assert spent.params["predictor"] == "mlflow"
    assert spent.params["inputs"]["features"] == [
        {"name": "tenure_months", "type": "integer", "optional": False},
        {"name": "promo", "type": "boolean", "optional": True},
    ]
    assert spent.reference is not None
    assert spent.reference.inputs[PREDICTION] == [12.0, 18.0]
    assert registry.get_version("tone", 1).params["inputs"] == {"kind": "text"}
    key = (
        ApiKeyStore(open_database(config.store, base_dir=config.base_dir)).create(Scope.PREDICT).key
    )

    async def call() -> None:
        app = create_app(config, poll=False)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
        ):
            headers = {"Authorization": f"Bearer {key}"}
            values = await http.post(
                "/v1/models/spend/predict",
                headers=headers,
                json={"records": [{"tenure_months": 3}]},
            )
            assert values.status_code == 200, values.text
            assert values.json()["predictions"][0]["value"] == 16.0
            classes = await http.post(
                "/v1/models/tone/predict", headers=headers, json={"texts": ["good food", "meh"]}
            )
            assert classes.status_code == 200, classes.text
            assert [p["class"] for p in classes.json()["predictions"]] == ["positive", "negative"]

    anyio.run(call)


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ({"weights.bin": ""}, "no driftloop-model.json"),
        ({"MLmodel": "flavors: {}"}, "MLflow cannot load"),
        ({"config.json": json.dumps({"architectures": ["BertModel"]})}, "not a sequence-class"),
        (
            {"config.json": json.dumps({"architectures": ["BertForSequenceClassification"]})},
            "holds no tokenizer",
        ),
    ],
)
def test_directories_that_are_no_model_are_refused(
    tmp_path: Path, files: dict[str, str], words: str
) -> None:
    directory = tmp_path / "model"
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text)
    code, output = register(project(tmp_path, "  m: {}"), "m", str(directory))
    assert code != 0
    assert words in output

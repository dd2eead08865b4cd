"""Bring your own model (#18 parts 1, 2, 6): a model directory with its own predictor code
(the tabular scikit-learn churn model of docs/byo-model.md) registered with the CLI, served
from the real registry, validated, hot-swapped; a regression model with canary and shadow; a
failing predictor."""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from byo_models import (
    CUSTOMER,
    IMPORT_LOG_ENV,
    train_churn,
    write_churn_sources,
    write_predictor_module,
    write_regression_model,
)
from driftloop.cli import app as cli_app
from driftloop.config import Config, load_config
from driftloop.insights import InsightsClient
from driftloop.registry import ModelRegistry
from driftloop.serving import ApiKeyStore, Scope, create_app
from driftloop.testing.predictors import review_keyword_predictor
from driftloop.testing.transports import MemoryTransport

pytestmark = pytest.mark.anyio

CHURN = "/v1/models/churn/predict"


def project(tmp_path: Path, models: str = "churn: {}") -> Path:
    path = tmp_path / "driftloop.yaml"
    path.write_text(
        f"store: sqlite:///{tmp_path}/driftloop.db\nstorage: file://{tmp_path}/storage\n"
        f"models:\n  {models}\n"
        "serving: {max_texts_per_request: 8, max_batch_size: 16, registry_poll_interval: 0.05}\n"
        "pipeline: {canary_fraction: 0.5}\n"
    )
    return path


def register_cli(config_path: Path, name: str, directory: Path) -> dict[str, Any]:
    result = CliRunner().invoke(
        cli_app, ["models", "register", name, str(directory), "--json", "-c", str(config_path)]
    )
    assert result.exit_code == 0, result.output
    registered: dict[str, Any] = json.loads(result.output)
    return registered


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t"
        ) as http,
    ):
        yield http


def headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_custom_predictor_is_registered_served_validated_and_hot_swapped(
    tmp_path: Path,
    insights: InsightsClient,
    transport: MemoryTransport,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import_log = tmp_path / "imports.log"
    import_log.touch()
    monkeypatch.setenv(IMPORT_LOG_ENV, str(import_log))
    sources = write_churn_sources(tmp_path / "src", import_log=True)
    v1_dir = train_churn(sources, tmp_path / "churn-v1", seed=0)
    v2_dir = train_churn(sources, tmp_path / "churn-v2", seed=1)
    config_path = project(tmp_path)
    assert register_cli(config_path, "churn", v1_dir)["version"] == 1
    assert import_log.read_text().count("imported") == 1  # registering imported the code
    config = load_config(config_path)
    api_keys = _api_keys(config)
    predict_key = api_keys.create(Scope.PREDICT, name="client").key
    admin_key = api_keys.create(Scope.ADMIN, name="operator").key
    app = create_app(config, insights=insights, api_keys=api_keys)
    async with serving(app) as http:
        one = await http.post(CHURN, json={"record": CUSTOMER}, headers=headers(predict_key))
        assert one.status_code == 200, one.text
        [prediction] = one.json()["predictions"]
        assert prediction["class"] in {"churn", "stay"}
        assert math.isclose(sum(prediction["probabilities"].values()), 1.0)
        assert prediction["confidence"] == max(prediction["probabilities"].values())

        many = [{**CUSTOMER, "tenure_months": months, "country": None} for months in (1, 70)]
        answered = await http.post(CHURN, json={"records": many}, headers=headers(predict_key))
        assert answered.status_code == 200, answered.text
        short, loyal = answered.json()["predictions"]
        assert short["probabilities"]["churn"] > loyal["probabilities"]["churn"]

        # micro-batching: concurrent requests share predictor calls
        burst = await asyncio.gather(
            *(
                http.post(CHURN, json={"records": many}, headers=headers(predict_key))
                for _ in range(6)
            )
        )
        assert [response.status_code for response in burst] == [200] * 6

        # hot swap to v2: the new version answers, the code is not imported by requests
        v2 = register_cli(config_path, "churn", v2_dir)
        deployed = await http.post(
            "/v1/models/churn/deploy", json={"version": v2["version"]}, headers=headers(admin_key)
        )
        assert deployed.status_code == 200, deployed.text
        after = await http.post(CHURN, json={"record": CUSTOMER}, headers=headers(predict_key))
        assert after.json()["version"] == 2
        assert after.json()["predictions"][0]["probabilities"] != prediction["probabilities"]
        imports = import_log.read_text().count("imported")
        for _ in range(3):
            sent = await http.post(
                CHURN,
                json={"record": CUSTOMER, "predictor": "os:system"},
                headers=headers(predict_key),
            )
            assert sent.status_code == 422  # a request cannot name code
            assert (
                await http.post(CHURN, json={"record": CUSTOMER}, headers=headers(predict_key))
            ).status_code == 200
        assert import_log.read_text().count("imported") == imports == 1

        described = (await http.get("/v1/models/churn", headers=headers(predict_key))).json()
        assert described["output"] == "classification"
        assert [f["name"] for f in described["inputs"]["features"]] == [
            "monthly_spend",
            "tenure_months",
            "plan",
            "country",
        ]
    assert insights.flush()
    points = [p for p in transport.points if p.tags.get("model") == "churn"]
    confidences = [p for p in points if p.name == "model_confidence"]
    assert confidences
    assert {p.tags["class"] for p in confidences} <= {"churn", "stay"}
    assert {p.value for p in points if p.name == "monthly_spend"} == {42.5}
    assert not [p for p in points if p.name == "text_length"]


def _api_keys(config: Config) -> ApiKeyStore:
    from driftloop.database import open_database

    return ApiKeyStore(open_database(config.store, base_dir=config.base_dir))


BAD_RECORDS: list[tuple[dict[str, Any], str]] = [
    (
        {"records": [CUSTOMER, {**CUSTOMER, "tenure_months": "long"}]},
        "records.1.tenure_months: Input should be a valid integer",
    ),
    (
        {"records": [{**CUSTOMER, "tenure_months": 2.5}]},
        "records.0.tenure_months: Input should be a valid integer",
    ),
    (
        {"records": [{**CUSTOMER, "tenure_months": True}]},
        "records.0.tenure_months: Input should be a valid integer",
    ),
    ({"record": {k: v for k, v in CUSTOMER.items() if k != "plan"}}, "record.plan: Field required"),
    (
        {"records": [CUSTOMER, CUSTOMER, {**CUSTOMER, "colour": "red"}]},
        "records.2.colour: unknown field",
    ),
    ({"records": [{**CUSTOMER, "plan": "gold"}]}, "records.0.plan: Input should be 'basic'"),
    (
        {"records": [{**CUSTOMER, "monthly_spend": "12"}]},
        "records.0.monthly_spend: Input should be a valid number",
    ),
    ({"texts": ["a text"]}, "texts: unknown field"),
    ({"records": []}, "'records' is empty"),
    ({"records": [CUSTOMER], "record": CUSTOMER}, "exactly one of 'records'"),
]


async def test_records_are_checked_against_the_models_schema(
    churn_app: tuple[FastAPI, str],
) -> None:
    """Wrong types, missing, extra and unknown-category fields: 422 naming item and field;
    a non-finite number; too many records."""
    app, key = churn_app
    async with serving(app) as http:
        for body, problem in BAD_RECORDS:
            response = await http.post(CHURN, json=body, headers=headers(key))
            assert response.status_code == 422, response.text
            error = response.json()["error"]
            assert error["type"] == "InvalidInputError"
            assert problem in error["message"], (body, error)
        nan = await http.post(
            CHURN,
            content=b'{"record": {"monthly_spend": NaN, "tenure_months": 1, "plan": "pro"}}',
            headers=headers(key),
        )
        assert nan.status_code == 422
        assert "record.monthly_spend: Input should be a finite number" in nan.text
        too_many = await http.post(CHURN, json={"records": [CUSTOMER] * 9}, headers=headers(key))
        assert too_many.status_code == 413
        assert too_many.json()["error"]["limit"] == "serving.max_texts_per_request"
        fine = await http.post(
            CHURN, json={"record": {**CUSTOMER, "country": None}}, headers=headers(key)
        )
        assert fine.status_code == 200, fine.text


async def test_the_openapi_document_shows_each_models_own_request_schema(
    tmp_path: Path, insights: InsightsClient
) -> None:
    config_path = project(tmp_path, "churn: {}\n  reviews: {}")
    register_cli(
        config_path, "churn", train_churn(write_churn_sources(tmp_path / "src"), tmp_path / "churn")
    )
    reviews = tmp_path / "reviews"
    review_keyword_predictor().save(reviews)
    register_cli(config_path, "reviews", reviews)
    config = load_config(config_path)
    app = create_app(config, insights=insights, api_keys=_api_keys(config))
    async with serving(app) as http:
        document = (await http.get("/openapi.json")).json()
    churn = document["paths"]["/v1/models/churn/predict"]["post"]
    schema = churn["requestBody"]["content"]["application/json"]["schema"]
    record = schema["properties"]["records"]["anyOf"][0]["items"]
    assert record["required"] == ["monthly_spend", "tenure_months", "plan"]
    assert record["properties"]["plan"]["enum"] == ["basic", "pro", "team"]
    assert record["additionalProperties"] is False
    assert "churn, stay" in churn["description"]
    text = document["paths"]["/v1/models/reviews/predict"]["post"]
    assert set(text["requestBody"]["content"]["application/json"]["schema"]["properties"]) == {
        "texts",
        "text",
    }
    assert "/v1/models/{name}/predict" in document["paths"]


async def test_a_regression_model_serves_values_with_canary_and_shadow(
    tmp_path: Path, insights: InsightsClient, transport: MemoryTransport
) -> None:
    config_path = project(tmp_path, "spend: {}")
    for version, slope in ((1, 2.0), (2, 3.0), (3, 4.0)):
        assert (
            register_cli(
                config_path,
                "spend",
                write_regression_model(tmp_path / f"spend-v{version}", slope=slope),
            )["version"]
            == version
        )
    config = load_config(config_path)
    registry = ModelRegistry.from_config(config)
    registry.set_alias("spend", "canary", 2, actor="test")
    registry.set_alias("spend", "shadow", 3, actor="test")
    api_keys = _api_keys(config)
    key = api_keys.create(Scope.PREDICT, name="client").key
    app = create_app(config, insights=insights, api_keys=api_keys, rng=random.Random(7))
    url = "/v1/models/spend/predict"
    async with serving(app) as http:
        answers = await asyncio.gather(
            *(
                http.post(
                    url,
                    json={"records": [{"tenure_months": 10}, {"tenure_months": 0, "promo": True}]},
                    headers=headers(key),
                )
                for _ in range(16)
            )
        )
        bad = await http.post(
            url, json={"record": {"tenure_months": 1, "promo": "yes"}}, headers=headers(key)
        )
        await asyncio.sleep(0.2)  # the shadow scores in the background
    assert bad.status_code == 422
    assert "record.promo: Input should be a valid boolean" in bad.text
    versions = set()
    for answer in answers:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        versions.add(body["version"])
        first, second = body["predictions"]
        slope = {1: 2.0, 2: 3.0}[body["version"]]
        assert first["value"] == 10 * slope + 10.0
        assert first["interval"] == [first["value"] - 1.0, first["value"] + 1.0]
        assert second["value"] == 10.0
        assert set(first) == {"id", "value", "interval"}
    assert versions == {1, 2}  # production and the canary both answered
    assert insights.flush()
    points = [p for p in transport.points if p.tags.get("model") == "spend"]
    served = {p.value for p in points if p.name == "prediction" and "shadow" not in p.tags}
    assert served == {30.0, 40.0, 10.0}
    shadowed = {p.value for p in points if p.name == "prediction" and p.tags.get("shadow")}
    assert shadowed == {50.0, 10.0}
    assert not [p for p in points if p.name == "model_confidence"]


FRAGILE = """
from pathlib import Path
from typing import Any

import numpy as np

from driftloop import Feature, InputSchema, Predictor


class Model(Predictor):
    inputs = InputSchema.record(Feature.number("x"))
    output = "regression"

    @classmethod
    def load_files(cls, directory: Path, manifest: dict[str, Any]) -> "Model":
        return cls()

    def predict(self, batch: list[dict[str, Any]]) -> np.ndarray:
        if any(row["x"] < 0 for row in batch):
            raise ValueError("negative x")
        if any(row["x"] > 1000 for row in batch):
            return np.zeros(len(batch) + 1)   # one answer too many
        return np.array([row["x"] * 2 for row in batch], dtype=float)
"""


async def test_a_failing_predictor_is_a_500_naming_model_and_version_and_others_serve(
    tmp_path: Path, insights: InsightsClient
) -> None:
    config_path = project(tmp_path, "fragile: {}\n  reviews: {}")
    register_cli(config_path, "fragile", write_predictor_module(tmp_path / "fragile", FRAGILE))
    reviews = tmp_path / "reviews"
    review_keyword_predictor().save(reviews)
    register_cli(config_path, "reviews", reviews)
    config = load_config(config_path)
    api_keys = _api_keys(config)
    key = api_keys.create(Scope.PREDICT, name="client").key
    app = create_app(config, insights=insights, api_keys=api_keys)
    url = "/v1/models/fragile/predict"
    async with serving(app) as http:
        # concurrent: the failing request shares a batch with good ones, which still answer
        good, failing, wrong, *others = await asyncio.gather(
            http.post(url, json={"record": {"x": 1.5}}, headers=headers(key)),
            http.post(url, json={"record": {"x": -1}}, headers=headers(key)),
            http.post(url, json={"record": {"x": 2000}}, headers=headers(key)),
            *(
                http.post(url, json={"records": [{"x": 2}, {"x": 3}]}, headers=headers(key))
                for _ in range(6)
            ),
        )
        reviews_answer = await http.post(
            "/v1/models/reviews/predict", json={"text": "cheap"}, headers=headers(key)
        )
    assert good.status_code == 200
    assert good.json()["predictions"][0]["value"] == 3.0
    assert [o.status_code for o in others] == [200] * 6
    assert all([p["value"] for p in o.json()["predictions"]] == [4, 6] for o in others)
    assert failing.status_code == 500
    assert failing.json()["error"] == {
        "type": "PredictionError",
        "message": "model 'fragile' v1 failed to predict (ValueError); the traceback is in "
        "the server log",
    }
    assert wrong.status_code == 500
    assert "model 'fragile' v1 failed to predict" in wrong.text
    assert "answered shape (2,) for 1 input(s)" in wrong.text
    assert reviews_answer.status_code == 200


@pytest.fixture
def churn_app(tmp_path: Path, insights: InsightsClient) -> tuple[FastAPI, str]:
    config_path = project(tmp_path)
    register_cli(
        config_path, "churn", train_churn(write_churn_sources(tmp_path / "src"), tmp_path / "churn")
    )
    config = load_config(config_path)
    api_keys = _api_keys(config)
    key = api_keys.create(Scope.PREDICT, name="client").key
    return create_app(config, insights=insights, api_keys=api_keys), key


async def test_a_predictor_that_cannot_load_on_the_server_leaves_the_others_serving(
    tmp_path: Path, insights: InsightsClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registered fine, but its load_files fails where the server runs (a missing file or
    dependency there): that model is not ready and says why; the others serve."""
    source = FRAGILE.replace(
        "        return cls()",
        "        import os\n"
        "        if os.environ.get('BYO_BREAK_LOAD'):\n"
        "            raise RuntimeError('no GPU here')\n"
        "        return cls()",
    )
    config_path = project(tmp_path, "fragile: {}\n  reviews: {}")
    register_cli(config_path, "fragile", write_predictor_module(tmp_path / "fragile", source))
    reviews = tmp_path / "reviews"
    review_keyword_predictor().save(reviews)
    register_cli(config_path, "reviews", reviews)
    monkeypatch.setenv("BYO_BREAK_LOAD", "1")
    config = load_config(config_path)
    api_keys = _api_keys(config)
    key = api_keys.create(Scope.PREDICT, name="client").key
    app = create_app(config, insights=insights, api_keys=api_keys, poll=False)
    async with serving(app) as http:
        fragile = await http.post(
            "/v1/models/fragile/predict", json={"record": {"x": 1.0}}, headers=headers(key)
        )
        described = (await http.get("/v1/models/fragile", headers=headers(key))).json()
        reviews_answer = await http.post(
            "/v1/models/reviews/predict", json={"text": "cheap"}, headers=headers(key)
        )
    assert fragile.status_code == 503
    assert "Model.load_files" in described["error"]
    assert "RuntimeError: no GPU here" in described["error"]
    assert reviews_answer.status_code == 200


CLASSIFIER = """
from pathlib import Path
from typing import Any

import numpy as np

from driftloop import Feature, InputSchema, Predictor


class Model(Predictor):
    inputs = InputSchema.record(Feature.number("x"))
    labels = ("low", "high")

    @classmethod
    def load_files(cls, directory: Path, manifest: dict[str, Any]) -> "Model":
        return cls(labels=cls.labels)

    def predict(self, batch: list[dict[str, Any]]) -> np.ndarray:
        high = np.array([min(max(row["x"] / 10, 0.0), 1.0) for row in batch])
        if BROKEN and any(row["x"] > 1000 for row in batch):
            return high  # one column: not the declared classification
        return np.column_stack([1 - high, high])
"""


async def test_a_shadow_that_answers_the_wrong_shape_never_touches_the_answer(
    tmp_path: Path,
    insights: InsightsClient,
    transport: MemoryTransport,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config_path = project(tmp_path, "gauge: {}")
    for version, broken in ((1, False), (2, True)):
        source = f"BROKEN = {broken}\n" + CLASSIFIER
        register_cli(config_path, "gauge", write_predictor_module(tmp_path / f"v{version}", source))
    config = load_config(config_path)
    ModelRegistry.from_config(config).set_alias("gauge", "shadow", 2, actor="test")
    api_keys = _api_keys(config)
    key = api_keys.create(Scope.PREDICT, name="client").key
    app = create_app(config, insights=insights, api_keys=api_keys, poll=False)
    async with serving(app) as http:
        fine = await http.post(
            "/v1/models/gauge/predict", json={"record": {"x": 5.0}}, headers=headers(key)
        )
        large = await http.post(
            "/v1/models/gauge/predict", json={"record": {"x": 5000.0}}, headers=headers(key)
        )
        await asyncio.sleep(0.2)  # the shadow scores in the background
    assert fine.json()["predictions"][0]["probabilities"] == {"low": 0.5, "high": 0.5}
    assert large.status_code == 200
    assert large.json()["predictions"][0]["class"] == "high"
    assert "shadow gauge v2 failed to score 1 texts" in caplog.text
    assert insights.flush()
    shadowed = [
        p
        for p in transport.points
        if p.tags.get("shadow") and p.tags.get("model") == "gauge" and p.name == "model_confidence"
    ]
    assert [p.value for p in shadowed] == [0.5]  # the first request's, not the broken one's

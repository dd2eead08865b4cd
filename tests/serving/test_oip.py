"""The Open Inference Protocol (#18 part 3), driven by Triton's own HTTP client
(``tritonclient[http]``) against a real uvicorn server: health and metadata, inference on a text
classifier, a record classifier and a record regression model, in JSON and in the binary tensor
extension, answered like /v1 (same classes, prediction ids that feedback matches, insights), the
API key and its scope, a hot swap, and the protocol's error body."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from fastapi import FastAPI
from numpy.typing import NDArray
from tritonclient.utils import InferenceServerException

from driftloop.config import Config, ModelConfig
from driftloop.insights import InsightsClient
from driftloop.predictors import Feature, InputSchema, Predictor
from driftloop.serving import ApiKeyStore, InMemoryModelSource, Scope, create_app
from driftloop.serving.error_insights import PREDICT_ERROR_METRIC
from driftloop.testing.predictors import review_keyword_predictor
from driftloop.testing.transports import MemoryTransport
from serving.live import live_server
from waiting import wait_until

TEXTS = ["delicious and fresh", "the waiter was rude", "slow and cold"]


class PlanPredictor(Predictor):
    """A record classifier over every feature type: upgrade when spend is high."""

    inputs = InputSchema.record(
        Feature.number("spend"),
        Feature.integer("seats"),
        Feature.boolean("trial"),
        Feature.category("plan", ["basic", "pro"]),
        Feature.string("note", optional=True),
    )
    output = "classification"

    def __init__(self) -> None:
        super().__init__(["stay", "upgrade"])

    @classmethod
    def load_files(cls, directory: Path, manifest: dict[str, Any]) -> PlanPredictor:
        return cls()

    def save_files(self, directory: Path) -> dict[str, Any]:
        return {}

    def predict(self, batch: Sequence[Any]) -> NDArray[np.float64]:
        if any(row["note"] == "explode" for row in batch):
            raise RuntimeError("the model's own code failed")
        upgrade = np.array([1.0 / (1.0 + np.exp(-(row["spend"] - 50.0) / 10.0)) for row in batch])
        return np.column_stack([1.0 - upgrade, upgrade])


class SpendPredictor(Predictor):
    """A regression with an interval: spend = 2 * tenure + 10, +- 1."""

    inputs = InputSchema.record(
        Feature.integer("tenure_months"), Feature.boolean("promo", optional=True)
    )
    output = "regression"

    @classmethod
    def load_files(cls, directory: Path, manifest: dict[str, Any]) -> SpendPredictor:
        return cls()

    def save_files(self, directory: Path) -> dict[str, Any]:
        return {}

    def predict(self, batch: Sequence[Any]) -> NDArray[np.float64]:
        value = np.array([2.0 * row["tenure_months"] + 10.0 for row in batch])
        return np.column_stack([value, value - 1.0, value + 1.0])


@pytest.fixture
def oip_app(config: Config, insights: InsightsClient, api_keys: ApiKeyStore) -> FastAPI:
    source = InMemoryModelSource()
    source.add("reviews", review_keyword_predictor(), production=True)
    source.add("reviews", review_keyword_predictor(extra_classes=True))
    source.add("plans", PlanPredictor(), production=True)
    source.add("spend", SpendPredictor(), production=True)
    config = config.model_copy(
        update={"models": {name: ModelConfig() for name in ("reviews", "plans", "spend")}}
    )
    return create_app(config, model_source=source, insights=insights, api_keys=api_keys)


@pytest.fixture
def served(oip_app: FastAPI) -> Iterator[tuple[str, triton.InferenceServerClient]]:
    with live_server(oip_app) as url:
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        yield url, client
        client.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def strings(tensor: Any) -> list[str]:
    """A BYTES output: ``bytes`` from binary data, ``str`` from JSON."""
    return [item.decode() if isinstance(item, bytes) else str(item) for item in tensor]


def text_input(texts: Sequence[str], *, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(
        np.array([t.encode() for t in texts], dtype=np.object_), binary_data=binary
    )
    return tensor


def test_triton_client_reads_health_and_metadata(
    served: tuple[str, triton.InferenceServerClient], predict_key: str
) -> None:
    _, client = served
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("reviews")
    assert not client.is_model_ready("nope")
    assert client.get_server_metadata()["name"] == "driftloop"
    reviews = client.get_model_metadata("reviews", headers=bearer(predict_key))
    assert reviews["versions"] == ["1"]
    assert reviews["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert {o["name"]: o["shape"] for o in reviews["outputs"]} == {
        "class": [-1],
        "confidence": [-1],
        "probabilities": [-1, 4],
        "prediction_id": [-1],
    }
    plans = client.get_model_metadata("plans", headers=bearer(predict_key))
    assert {i["name"]: i["datatype"] for i in plans["inputs"]} == {
        "spend": "FP64",
        "seats": "INT64",
        "trial": "BOOL",
        "plan": "BYTES",
        "note": "BYTES",
    }
    with pytest.raises(InferenceServerException) as unauthorized:
        client.get_model_metadata("reviews")
    assert unauthorized.value.status() == "401"
    assert "missing API key" in unauthorized.value.message()


@pytest.mark.parametrize("binary", [True, False])
def test_triton_client_infers_texts_as_v1_does(
    served: tuple[str, triton.InferenceServerClient],
    predict_key: str,
    transport: MemoryTransport,
    binary: bool,
) -> None:
    url, client = served
    outputs = (
        None
        if binary
        else [
            triton.InferRequestedOutput(name, binary_data=False)
            for name in ("class", "probabilities", "prediction_id")
        ]
    )
    result = client.infer(
        "reviews",
        [text_input(TEXTS, binary=binary)],
        outputs=outputs,
        request_id="r-1",
        headers=bearer(predict_key),
    )
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        "reviews",
        "1",
        "r-1",
    )
    classes = strings(result.as_numpy("class"))
    probabilities = result.as_numpy("probabilities")
    v1 = httpx.post(
        f"{url}/v1/models/reviews/predict", json={"texts": TEXTS}, headers=bearer(predict_key)
    ).json()["predictions"]
    assert classes == [p["class"] for p in v1]
    labels = next(o for o in response["outputs"] if o["name"] == "probabilities")["parameters"][
        "labels"
    ]
    np.testing.assert_allclose(
        probabilities, [[p["probabilities"][label] for label in labels] for p in v1]
    )
    # the prediction ids are the prediction log's: feedback matches them
    ids = strings(result.as_numpy("prediction_id"))
    feedback = httpx.post(
        f"{url}/v1/models/reviews/feedback",
        headers=bearer(predict_key),
        json={"feedback": [{"prediction_id": ids[0], "label": classes[0]}]},
    )
    assert feedback.json()["matched"] == 1, feedback.text
    assert result.as_numpy("confidence") is None or binary


def test_triton_client_infers_records_and_values(
    served: tuple[str, triton.InferenceServerClient], predict_key: str
) -> None:
    _, client = served
    spend = triton.InferInput("spend", [2], "FP64")
    spend.set_data_from_numpy(np.array([10.0, 90.0]))
    seats = triton.InferInput("seats", [2, 1], "INT64")
    seats.set_data_from_numpy(np.array([[1], [5]], dtype=np.int64), binary_data=False)
    trial = triton.InferInput("trial", [2], "BOOL")
    trial.set_data_from_numpy(np.array([True, False]))
    plan = triton.InferInput("plan", [2], "BYTES")
    plan.set_data_from_numpy(np.array([b"basic", b"pro"], dtype=np.object_))
    result = client.infer("plans", [spend, seats, trial, plan], headers=bearer(predict_key))
    assert strings(result.as_numpy("class")) == ["stay", "upgrade"]

    tenure = triton.InferInput("tenure_months", [3], "INT32")
    tenure.set_data_from_numpy(np.array([0, 1, 10], dtype=np.int32))
    values = client.infer("spend", [tenure], headers=bearer(predict_key))
    np.testing.assert_allclose(values.as_numpy("value"), [10.0, 12.0, 30.0])
    np.testing.assert_allclose(values.as_numpy("interval"), [[9, 11], [11, 13], [29, 31]])

    wrong = triton.InferInput("plan", [2], "BYTES")
    wrong.set_data_from_numpy(np.array([b"basic", b"gold"], dtype=np.object_))
    with pytest.raises(InferenceServerException) as invalid:
        client.infer("plans", [spend, seats, trial, wrong], headers=bearer(predict_key))
    assert invalid.value.status() == "422"
    assert "records.1.plan" in invalid.value.message()


def test_triton_client_follows_a_hot_swap_and_is_scoped(
    served: tuple[str, triton.InferenceServerClient],
    predict_key: str,
    admin_key: str,
    api_keys: ApiKeyStore,
) -> None:
    url, client = served
    deployed = httpx.post(
        f"{url}/v1/models/reviews/deploy", json={"version": 2}, headers=bearer(admin_key)
    )
    assert deployed.status_code == 200, deployed.text
    result = client.infer("reviews", [text_input(TEXTS, binary=True)], headers=bearer(predict_key))
    assert result.get_response()["model_version"] == "2"
    assert result.as_numpy("probabilities").shape[1] > 4  # v2 has more classes
    label_key = api_keys.create(Scope.LABEL, name="labeller").key
    with pytest.raises(InferenceServerException) as forbidden:
        client.infer("reviews", [text_input(TEXTS, binary=True)], headers=bearer(label_key))
    assert forbidden.value.status() == "403"


def infer_body(*inputs: dict[str, Any]) -> dict[str, Any]:
    return {"inputs": list(inputs)}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("model", "body", "status", "message"),
    [
        (
            "reviews",
            infer_body({"name": "texts", "shape": [1], "datatype": "BYTES", "data": ["a"]}),
            422,
            "takes one input 'text'",
        ),
        (
            "reviews",
            infer_body({"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a"]}),
            422,
            "1 values for shape [2]",
        ),
        (
            "reviews",
            infer_body({"name": "text", "shape": [1], "datatype": "BYTES", "data": [3]}),
            422,
            "expected a string",
        ),
        (
            "reviews",
            infer_body({"name": "text", "shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]}),
            422,
            "send [N] or [N, 1]",
        ),
        ("reviews", {"inputs": []}, 422, "inputs"),
        ("reviews", {"inputs": [], "extra": 1}, 422, "extra: unknown field"),
        (
            "plans",
            infer_body({"name": "spend", "shape": [1], "datatype": "FP64", "data": [1.0]}),
            422,
            "missing inputs ['plan', 'seats', 'trial']",
        ),
        (
            "plans",
            infer_body(
                {"name": "spend", "shape": [1], "datatype": "BYTES", "data": ["1"]},
                {"name": "seats", "shape": [1], "datatype": "INT64", "data": [1]},
                {"name": "trial", "shape": [1], "datatype": "BOOL", "data": [True]},
                {"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["pro"]},
            ),
            422,
            "input 'spend' has datatype BYTES; it takes FP16 or FP32",
        ),
        (
            "plans",
            infer_body(
                {"name": "spend", "shape": [1], "datatype": "FP64", "data": [1.0]},
                {"name": "seats", "shape": [1], "datatype": "INT64", "data": [1]},
                {"name": "trial", "shape": [1], "datatype": "BOOL", "data": [True]},
                {"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["pro"]},
                {"name": "note", "shape": [1], "datatype": "BYTES", "data": ["explode"]},
            ),
            500,
            "model 'plans' v1 failed to predict (RuntimeError)",
        ),
        (
            "nope",
            infer_body({"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}),
            404,
            "nope",
        ),
    ],
)
async def test_v2_errors_have_the_protocols_body(
    oip_app: FastAPI,
    predict_headers: dict[str, str],
    model: str,
    body: dict[str, Any],
    status: int,
    message: str,
) -> None:
    async with (
        oip_app.router.lifespan_context(oip_app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=oip_app, raise_app_exceptions=False),
            base_url="http://t",
        ) as http,
    ):
        answer = await http.post(f"/v2/models/{model}/infer", json=body, headers=predict_headers)
    assert answer.status_code == status, answer.text
    error = answer.json()
    assert isinstance(error["error"], str)
    assert message in error["error"], error
    assert error["type"]


@pytest.mark.anyio
async def test_a_failed_v2_inference_is_a_predict_error_insight(
    client: httpx.AsyncClient, predict_headers: dict[str, str], transport: MemoryTransport
) -> None:
    answer = await client.post(
        "/v2/models/reviews/infer",
        headers=predict_headers,
        json=infer_body({"name": "text", "shape": [1], "datatype": "BYTES", "data": [5]}),
    )
    assert answer.status_code == 422, answer.text
    await wait_until(
        lambda: [p for p in transport.points if p.name == PREDICT_ERROR_METRIC],
        "a predict_error insight",
    )
    [error] = [p for p in transport.points if p.name == PREDICT_ERROR_METRIC]
    assert dict(error.tags) == {"model": "reviews", "status_class": "4xx"}

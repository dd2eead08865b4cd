"""``POST /v1/models/{name}/predictions``: predictions made elsewhere, logged so that feedback
labels join them (realized accuracy), through the real app and its SQLite prediction log."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from driftloop.client import AsyncClient, Client, LoggedPrediction
from driftloop.errors import ForbiddenError, InvalidInputError
from driftloop.serving import ApiKeyStore, Scope
from driftloop.serving.prediction_log import external_log_id
from driftloop.testing.transports import MemoryTransport
from serving.live import live_server

pytestmark = pytest.mark.anyio

MODEL = "reviews"
URL = f"/v1/models/{MODEL}/predictions"


@pytest.fixture
def insights_headers(api_keys: ApiKeyStore) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_keys.create(Scope.INSIGHTS, name='flask').key}"}


def logged(prediction_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": prediction_id,
        "input": "tasty soup",
        "class": "Food - Positive",
        "confidence": 0.8,
        **fields,
    }


async def feedback(
    client: httpx.AsyncClient, headers: dict[str, str], *items: tuple[str, str]
) -> dict[str, int]:
    answer = await client.post(
        f"/v1/models/{MODEL}/feedback",
        headers=headers,
        json={"feedback": [{"prediction_id": i, "label": label} for i, label in items]},
    )
    assert answer.status_code == 200, answer.text
    counts: dict[str, int] = answer.json()
    return counts


async def test_feedback_joins_logged_predictions_and_reports_realized_accuracy(
    client: httpx.AsyncClient,
    insights_headers: dict[str, str],
    predict_headers: dict[str, str],
    transport: MemoryTransport,
    app: FastAPI,
) -> None:
    answer = await client.post(
        URL,
        headers=insights_headers,
        json={
            "version": 7,
            "predictions": [
                logged("req-1"),
                logged(
                    "req-2",
                    confidence=None,
                    **{"class": None},
                    probabilities={"Food - Positive": 0.3, "Service - Negative": 0.7},
                ),
                logged("req-1", confidence=0.1),  # twice in one request: the first counts
            ],
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": 2, "duplicates": 1}
    again = await client.post(
        URL,
        headers=insights_headers,
        json={"version": 8, "predictions": [logged("req-1", **{"class": "Service - Negative"})]},
    )
    assert again.json() == {"accepted": 0, "duplicates": 1}  # a retry changes nothing

    counts = await feedback(
        client,
        predict_headers,
        ("req-1", "Food - Positive"),
        ("req-2", "Food - Positive"),
        ("never-logged", "Food - Positive"),
    )
    assert counts == {"accepted": 3, "matched": 2, "relabelled": 0}
    rows = {row.prediction_id: row for row in app.state.serving.feedback.list(MODEL)}
    assert (rows["req-1"].version, rows["req-1"].predicted_class, rows["req-1"].correct) == (
        7,
        "Food - Positive",
        True,
    )
    assert (rows["req-2"].predicted_class, rows["req-2"].correct) == ("Service - Negative", False)
    assert rows["never-logged"].correct is None

    app.state.serving.insights.flush()
    correct = {
        (p.tags["version"], p.tags["class"], p.value)
        for p in transport.points
        if p.name == "prediction_correct"
    }
    assert correct == {("7", "Food - Positive", 1.0), ("7", "Service - Negative", 0.0)}
    confidences = sorted(
        p.value
        for p in transport.points
        if p.name == "model_confidence" and p.tags.get("version") == "7"
    )
    assert confidences == [0.7, 0.8]  # each logged prediction reports as a served one


async def test_client_ids_cannot_clash_with_served_ids_or_another_models(
    client: httpx.AsyncClient, insights_headers: dict[str, str], predict_headers: dict[str, str]
) -> None:
    served = (
        await client.post(
            f"/v1/models/{MODEL}/predict", headers=predict_headers, json={"text": "rude waiter"}
        )
    ).json()["predictions"][0]["id"]
    refused = await client.post(
        URL, headers=insights_headers, json={"version": 1, "predictions": [logged(served)]}
    )
    assert refused.status_code == 422
    assert "shape of the ids this server issues" in refused.json()["error"]["message"]
    assert external_log_id(MODEL, "a") != external_log_id("other", "a")
    assert external_log_id(MODEL, "a").startswith("x")  # never the shape of a served id


BAD: list[tuple[dict[str, Any], str]] = [
    (logged("a", **{"class": "Nope"}), "not one of the model's classes"),
    (logged("a", value=3.0), "or 'value'"),
    (logged("a", **{"class": None}), "give 'class'"),
    (logged("a", input={"age": 3}), "mix texts and records"),
    (logged("a", input="x" * 201), "max_text_chars"),
    (logged("a", confidence=1.5), "confidence"),
    (logged("a", timestamp=1.0), "prediction_log_retention"),
    (logged("a", probabilities={"Food - Positive": 0.5}), "add up to 1"),
    (logged("b" * 65), "id"),
    (logged("a", input={"bad name": 1}), "feature name"),
]


async def test_bad_logged_predictions_are_refused_whole(
    client: httpx.AsyncClient, insights_headers: dict[str, str], app: FastAPI
) -> None:
    kept_not = external_log_id(MODEL, "kept-not")
    for bad, named in BAD:
        answer = await client.post(
            URL,
            headers=insights_headers,
            json={"version": 1, "predictions": [logged("kept-not"), bad]},
        )
        assert answer.status_code == 422, (bad, answer.text)
        assert named in answer.json()["error"]["message"], (bad, answer.text)
    for body in (
        {"version": 1, "predictions": []},
        {"version": "1", "predictions": []},
        {"predictions": [logged("kept-not")]},
        {"version": 1, "predictions": [logged("kept-not", input={"age": 3})]},
    ):
        answer = await client.post(URL, headers=insights_headers, json=body)
        assert answer.status_code == 422, answer.text
    assert not app.state.serving.predictions.read([kept_not])


async def test_scope_size_and_model_limits(
    client: httpx.AsyncClient,
    insights_headers: dict[str, str],
    predict_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    body = {"version": 1, "predictions": [logged("s-1")]}
    assert (await client.post(URL, json=body)).status_code == 401
    assert (await client.post(URL, json=body, headers=predict_headers)).status_code == 403
    assert (await client.post(URL, json=body, headers=admin_headers)).status_code == 200
    many = {"version": 1, "predictions": [logged(f"m-{i}") for i in range(9)]}
    too_many = await client.post(URL, json=many, headers=insights_headers)
    assert too_many.status_code == 413
    assert too_many.json()["error"]["limit"] == "serving.max_texts_per_request"
    unknown = await client.post("/v1/models/nope/predictions", json=body, headers=insights_headers)
    assert unknown.status_code == 404


@pytest.fixture
def url(app: FastAPI) -> Iterator[str]:
    with live_server(app) as base:
        yield base


async def test_the_client_logs_predictions_sync_and_async(
    url: str, api_keys: ApiKeyStore, predict_key: str
) -> None:
    key = api_keys.create(Scope.INSIGHTS, name="elsewhere").key
    with Client(url, key) as sync_client:
        result = sync_client.log_predictions(
            MODEL,
            [
                LoggedPrediction("c-1", "tasty soup", label="Food - Positive", confidence=0.9),
                LoggedPrediction(
                    "c-2", probabilities={"Food - Positive": 0.2, "Service - Negative": 0.8}
                ),
            ],
            version=3,
        )
        assert (result.accepted, result.duplicates) == (2, 0)
        with pytest.raises(InvalidInputError, match="not one of the model's classes"):
            sync_client.log_predictions(MODEL, [LoggedPrediction("c-3", label="?")], version=3)
    async with AsyncClient(url, key) as async_client:
        again = await async_client.log_predictions(
            MODEL, [LoggedPrediction("c-1", label="Food - Positive")], version=3
        )
        assert (again.accepted, again.duplicates) == (0, 1)
        with pytest.raises(ForbiddenError):
            await async_client.feedback(MODEL, [("c-1", "Food - Positive")])
    with Client(url, predict_key) as labeller:
        joined = labeller.feedback(MODEL, [("c-1", "Food - Positive"), ("c-2", "Food - Positive")])
        assert (joined.accepted, joined.matched) == (2, 2)

"""What feedback may carry (issue #22 part 7): labels among the model's classes, a capped number
of items, one label per prediction (the latest wins, one insight), and texts only for predictions
the server answered on that very text."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from driftloop.config import Config, ModelConfig
from driftloop.database import Database
from driftloop.insights import InsightsClient
from driftloop.serving import ApiKeyStore, FeedbackStore, InMemoryModelSource, create_app
from driftloop.serving.tables import predictions
from driftloop.testing.transports import MemoryTransport

pytestmark = pytest.mark.anyio

PREDICT = "/v1/models/reviews/predict"
FEEDBACK = "/v1/models/reviews/feedback"


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        yield http


async def predict(
    client: httpx.AsyncClient, headers: dict[str, str], *texts: str
) -> list[dict[str, Any]]:
    response = await client.post(PREDICT, json={"texts": list(texts)}, headers=headers)
    assert response.status_code == 200, response.text
    answers: list[dict[str, Any]] = response.json()["predictions"]
    return answers


def correct_points(transport: MemoryTransport) -> list[tuple[float, dict[str, str]]]:
    return [(p.value, dict(p.tags)) for p in transport.points if p.name == "prediction_correct"]


async def test_a_label_that_is_not_one_of_the_models_classes_is_refused_naming_the_item(
    client: httpx.AsyncClient,
    predict_headers: dict[str, str],
    database: Database,
    insights: InsightsClient,
    transport: MemoryTransport,
) -> None:
    """A free-text label used to become a metric tag: 3,000 made-up labels, 3,000 series."""
    [answer] = await predict(client, predict_headers, "tasty")
    response = await client.post(
        FEEDBACK,
        headers=predict_headers,
        json={
            "feedback": [
                {"prediction_id": answer["id"], "label": "Food - Positive"},
                {"prediction_id": answer["id"], "label": "Price - Negative"},
                {"prediction_id": "p-2", "label": "food - positive"},
            ]
        },
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "InvalidInputError"
    assert "feedback item 1's label 'Price - Negative'" in error["message"]
    assert "feedback item 2's label 'food - positive'" in error["message"]
    assert "'Food - Positive', 'Service - Negative'" in error["message"]  # what is allowed
    assert "item 0" not in error["message"]
    assert FeedbackStore(database).list("reviews") == []  # the request is refused whole
    assert insights.flush()
    assert correct_points(transport) == []


async def test_a_label_of_a_class_that_only_the_rollout_version_has_is_accepted(
    config: Config,
    source: InMemoryModelSource,
    insights: InsightsClient,
    api_keys: ApiKeyStore,
    predict_headers: dict[str, str],
) -> None:
    """While v2 (which adds the Price classes) is in shadow, its classes are the model's too;
    ``models.<name>.labels``, when set, is the model's class list."""
    app = create_app(config, model_source=source, insights=insights, api_keys=api_keys)
    async with running(app) as http:
        [answer] = await predict(http, predict_headers, "cheap")
        body = {"feedback": [{"prediction_id": answer["id"], "label": "Price - Positive"}]}
        assert (await http.post(FEEDBACK, json=body, headers=predict_headers)).status_code == 422
        source.set_alias("reviews", "shadow", 2, actor="pipeline")
        deadline = anyio.current_time() + 5
        while app.state.serving.manager.get("reviews").shadow is None:
            assert anyio.current_time() < deadline
            await anyio.sleep(0.01)
        response = await http.post(FEEDBACK, json=body, headers=predict_headers)
        assert response.status_code == 200, response.text
    labelled = config.model_copy(
        update={
            "models": {
                "reviews": ModelConfig(
                    labels=["Food - Positive", "Food - Negative", "Gift - Positive"]
                )
            }
        }
    )
    app = create_app(labelled, model_source=source, insights=insights, api_keys=api_keys)
    async with running(app) as http:
        [answer] = await predict(http, predict_headers, "tasty")
        for label, status in (("Gift - Positive", 200), ("Service - Negative", 422)):
            response = await http.post(
                FEEDBACK,
                headers=predict_headers,
                json={"feedback": [{"prediction_id": answer["id"], "label": label}]},
            )
            assert response.status_code == status, response.text


async def test_more_items_than_serving_max_feedback_items_are_refused_whole(
    config: Config,
    source: InMemoryModelSource,
    insights: InsightsClient,
    api_keys: ApiKeyStore,
    predict_headers: dict[str, str],
    database: Database,
) -> None:
    """Items without a text had no limit but the body size: 3,000 per request."""
    capped = config.model_copy(
        update={"serving": config.serving.model_copy(update={"max_feedback_items": 3})}
    )
    app = create_app(capped, model_source=source, insights=insights, api_keys=api_keys)
    item = {"prediction_id": "p", "label": "Food - Positive"}
    async with running(app) as http:
        response = await http.post(
            FEEDBACK,
            headers=predict_headers,
            json={"feedback": [{**item, "prediction_id": f"p{i}"} for i in range(4)]},
        )
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert (error["type"], error["limit"]) == ("LimitError", "serving.max_feedback_items")
        assert (
            "4 feedback items in one request exceed serving.max_feedback_items (3)"
            in error["message"]
        )
        assert FeedbackStore(database).list("reviews") == []
        response = await http.post(
            FEEDBACK,
            headers=predict_headers,
            json={"feedback": [{**item, "prediction_id": f"p{i}"} for i in range(3)]},
        )
        assert response.status_code == 200, response.text


async def test_one_label_per_prediction_the_latest_wins_and_reports_once(
    client: httpx.AsyncClient,
    predict_headers: dict[str, str],
    database: Database,
    insights: InsightsClient,
    transport: MemoryTransport,
) -> None:
    """Relabelling used to add a row and a metric point each time, without end. Now the row
    (and the training sample) takes the latest label; ``prediction_correct`` stays the one
    reported for the first label."""
    first, second = await predict(client, predict_headers, "tasty soup", "rude waiter")
    assert (first["class"], second["class"]) == ("Food - Positive", "Service - Negative")
    answers = []
    for items in (
        [{"prediction_id": first["id"], "label": "Food - Negative", "text": "tasty soup"}],
        [{"prediction_id": first["id"], "label": "Food - Positive"}],
        [
            {"prediction_id": second["id"], "label": "Food - Negative"},
            {"prediction_id": second["id"], "label": "Service - Negative"},
        ],
        *[[{"prediction_id": first["id"], "label": "Food - Positive"}]] * 5,
    ):
        response = await client.post(FEEDBACK, headers=predict_headers, json={"feedback": items})
        assert response.status_code == 200, response.text
        answers.append(response.json())
    assert answers[:3] == [
        {"accepted": 1, "matched": 1, "relabelled": 0},
        {"accepted": 1, "matched": 1, "relabelled": 1},
        {"accepted": 2, "matched": 2, "relabelled": 1},
    ]
    assert all(answer["relabelled"] == 1 for answer in answers[3:])

    store = FeedbackStore(database)
    rows = store.list("reviews")
    assert [(r.prediction_id, r.label, r.correct, r.text) for r in rows] == [
        (first["id"], "Food - Positive", True, "tasty soup"),
        (second["id"], "Service - Negative", True, None),
    ]
    assert [(text, label) for text, label, _ in store.labeled_samples("reviews")] == [
        ("tasty soup", "Food - Positive")
    ]  # the sample follows the relabel
    assert insights.flush()
    assert correct_points(transport) == [
        (
            0.0,
            {
                "model": "reviews",
                "version": "1",
                "class": "Food - Positive",
                "label": "Food - Negative",
            },
        ),
        (
            1.0,
            {
                "model": "reviews",
                "version": "1",
                "class": "Service - Negative",
                "label": "Service - Negative",
            },
        ),
    ]


async def test_a_text_is_accepted_only_for_an_issued_prediction_that_scored_it(
    client: httpx.AsyncClient, predict_headers: dict[str, str], database: Database, app: FastAPI
) -> None:
    """Any predict key could put training rows in for ids the server never issued, with texts
    it never scored. The log keeps a hash of each scored text; a text must match it."""
    [answer] = await predict(client, predict_headers, "tasty soup")
    assert app.state.serving.predictions.flush()
    with database.engine.connect() as connection:
        stored_hash = connection.execute(
            sa.select(predictions.c.text_hash).where(predictions.c.prediction_id == answer["id"])
        ).scalar_one()
    assert stored_hash == hashlib.sha256(b"tasty soup").hexdigest()[:32]

    refused = await client.post(
        FEEDBACK,
        headers=predict_headers,
        json={
            "feedback": [
                {"prediction_id": answer["id"], "label": "Food - Positive"},
                {"prediction_id": "never-issued", "label": "Food - Negative", "text": "cold soup"},
                {"prediction_id": answer["id"], "label": "Food - Negative", "text": "cold soup"},
            ]
        },
    )
    assert refused.status_code == 422, refused.text
    message = refused.json()["error"]["message"]
    assert (
        "feedback item 1's text (prediction 'never-issued' is not in the prediction log)" in message
    )
    assert (
        f"feedback item 2's text (not the text that prediction '{answer['id']}' scored)" in message
    )
    assert "send the label without the text" in message
    store = FeedbackStore(database)
    assert store.list("reviews") == []
    assert store.labeled_samples("reviews") == []

    accepted = await client.post(
        FEEDBACK,
        headers=predict_headers,
        json={
            "feedback": [
                {"prediction_id": answer["id"], "label": "Food - Positive", "text": "tasty soup"}
            ]
        },
    )
    assert accepted.status_code == 200, accepted.text
    assert [(text, label) for text, label, _ in store.labeled_samples("reviews")] == [
        ("tasty soup", "Food - Positive")
    ]

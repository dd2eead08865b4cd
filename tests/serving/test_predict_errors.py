"""Predict requests answered with an error are reported as ``predict_error`` insights (the
dashboard's error-rate panel), by model and status class; refused keys and unknown model
names are not."""

from __future__ import annotations

import httpx
import pytest

from driftloop.insights import InsightsClient
from driftloop.serving.error_insights import PREDICT_ERROR_METRIC
from driftloop.testing.transports import MemoryTransport

pytestmark = pytest.mark.anyio
URL = "/v1/models/reviews/predict"


async def test_errors_of_served_models_are_reported_by_status_class(
    client: httpx.AsyncClient,
    predict_headers: dict[str, str],
    insights: InsightsClient,
    transport: MemoryTransport,
) -> None:
    answers = [
        await client.post(URL, json={"text": 5}, headers=predict_headers),  # 422
        await client.post(URL, content=b"{" + b" " * 5000, headers=predict_headers),  # 413
        await client.post(URL, json={"texts": ["so tasty"]}, headers=predict_headers),  # 200
        await client.post(URL, json={"texts": ["so tasty"]}),  # 401: no key
        await client.post(
            "/v1/models/nope/predict", json={"texts": ["a"]}, headers=predict_headers
        ),  # 404: no such model
    ]
    assert [a.status_code for a in answers] == [422, 413, 200, 401, 404]
    assert insights.flush()
    errors = [p for p in transport.points if p.name == PREDICT_ERROR_METRIC]
    assert [(p.value, dict(p.tags)) for p in errors] == [
        (1.0, {"model": "reviews", "status_class": "4xx"}),
        (1.0, {"model": "reviews", "status_class": "4xx"}),
    ]

"""Predictions: the response shape, version headers, insights for every prediction."""

from __future__ import annotations

import time

import httpx
import pytest

from driftloop.insights import InsightsClient
from driftloop.serving import HASH_HEADER, SERVER_TIMING_HEADER, VERSION_HEADER, InMemoryModelSource
from driftloop.testing.transports import MemoryTransport

pytestmark = pytest.mark.anyio

URL = "/v1/models/reviews/predict"


async def test_predict_many_texts(
    client: httpx.AsyncClient, predict_headers: dict[str, str], source: InMemoryModelSource
) -> None:
    response = await client.post(
        URL, json={"texts": ["so tasty and fresh", "a rude waiter"]}, headers=predict_headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "reviews"
    assert body["version"] == 1
    assert response.headers[VERSION_HEADER] == "1"
    assert response.headers[HASH_HEADER] == source.resolve("reviews").content_hash
    first, second = body["predictions"]
    assert first["class"] == "Food - Positive"
    assert second["class"] == "Service - Negative"
    assert set(first["probabilities"]) == {
        "Food - Positive",
        "Food - Negative",
        "Service - Positive",
        "Service - Negative",
    }
    assert sum(first["probabilities"].values()) == pytest.approx(1.0)
    assert first["confidence"] == max(first["probabilities"].values())
    assert first["confidence"] > 0.9
    assert len({first["id"], second["id"]}) == 2


async def test_server_timing_splits_the_model_call_from_the_rest(
    client: httpx.AsyncClient, predict_headers: dict[str, str]
) -> None:
    started = time.perf_counter()
    response = await client.post(URL, json={"texts": ["so tasty", "rude"]}, headers=predict_headers)
    elapsed_ms = (time.perf_counter() - started) * 1000
    timings = {}
    for part in response.headers[SERVER_TIMING_HEADER].split(","):
        name, _, duration = part.strip().partition(";dur=")
        timings[name] = float(duration)
    assert set(timings) == {"model", "total"}
    assert 0 < timings["model"] <= timings["total"] <= elapsed_ms


async def test_predict_single_text(
    client: httpx.AsyncClient, predict_headers: dict[str, str]
) -> None:
    response = await client.post(URL, json={"text": "helpful and quick"}, headers=predict_headers)
    assert response.status_code == 200
    [prediction] = response.json()["predictions"]
    assert prediction["class"] == "Service - Positive"


async def test_every_prediction_reports_insights(
    client: httpx.AsyncClient,
    predict_headers: dict[str, str],
    insights: InsightsClient,
    transport: MemoryTransport,
) -> None:
    texts = ["stale bread", "friendly"]
    response = await client.post(URL, json={"texts": texts}, headers=predict_headers)
    predictions = response.json()["predictions"]
    assert insights.flush()
    by_name: dict[str, list[tuple[float, dict[str, str]]]] = {}
    for point in transport.points:
        by_name.setdefault(point.name, []).append((point.value, dict(point.tags)))
    assert set(by_name) == {"model_confidence", "text_length", "latency_ms", "predicted_class"}
    labels = list(predictions[0]["probabilities"])  # the class's index: what chi-square counts
    assert [v for v, _ in by_name["predicted_class"]] == [
        float(labels.index(p["class"])) for p in predictions
    ]
    assert [v for v, _ in by_name["model_confidence"]] == [p["confidence"] for p in predictions]
    assert [v for v, _ in by_name["text_length"]] == [float(len(t)) for t in texts]
    [(latency, latency_tags)] = by_name["latency_ms"]  # one per request, not per text
    assert latency > 0
    assert latency_tags == {"model": "reviews", "version": "1"}
    assert [tags for _, tags in by_name["model_confidence"]] == [
        {"model": "reviews", "version": "1", "class": p["class"]} for p in predictions
    ]


async def test_describe_models(
    client: httpx.AsyncClient, predict_headers: dict[str, str], source: InMemoryModelSource
) -> None:
    listing = await client.get("/v1/models", headers=predict_headers)
    assert listing.status_code == 200
    [model] = listing.json()["models"]
    assert model["name"] == "reviews"
    assert model["ready"] is True
    assert model["version"] == 1
    assert model["content_hash"] == source.resolve("reviews").content_hash
    one = await client.get("/v1/models/reviews", headers=predict_headers)
    assert one.json() == model
    assert one.json()["labels"][0] == "Food - Positive"


async def test_probes_and_docs_need_no_key(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    schema = (await client.get("/openapi.json")).json()
    predict = schema["paths"]["/v1/models/{name}/predict"]["post"]
    body = predict["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"texts", "text"}
    assert set(schema["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader"}
    assert predict["security"] == [{"HTTPBearer": []}, {"APIKeyHeader": []}]


async def test_prediction_ids_are_distinct_time_ordered_hex(
    client: httpx.AsyncClient, predict_headers: dict[str, str]
) -> None:
    """128-bit hex ids: the issue time in milliseconds (12 hex digits), then 80 random bits."""
    ids: list[str] = []
    started = time.time()
    for _ in range(3):
        response = await client.post(
            URL, json={"texts": ["tasty", "rude", "stale"]}, headers=predict_headers
        )
        ids += [p["id"] for p in response.json()["predictions"]]
    assert len(set(ids)) == len(ids) == 9
    assert all(len(i) == 32 and int(i, 16) >= 0 and i == i.lower() for i in ids)
    issued = [int(i[:12], 16) / 1000 for i in ids]
    assert issued == sorted(issued)
    assert started - 0.002 <= issued[0] <= issued[-1] <= time.time()

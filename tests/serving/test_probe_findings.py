"""Findings of the outside probe (#22 part 7), each held by a test that fails without its fix:
a store failure answers a generic 503 (the statement only in the log), no redirect echoes the
Host header, the SQLite store is created private (0600), and a key over its scope's rate limit
is answered 429 with Retry-After, and readiness is per model and names no internal path."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from driftloop.config import Config, ModelConfig, RateLimitConfig, ServingConfig
from driftloop.database import Database
from driftloop.insights.client import InsightsClient
from driftloop.serving import ApiKeyStore, InMemoryModelSource, Scope, create_app
from driftloop.testing.predictors import review_keyword_predictor

pytestmark = pytest.mark.anyio


async def test_a_store_failure_before_authentication_answers_a_generic_503(
    client: httpx.AsyncClient,
    database: Database,
    predict_headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with database.engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE serving_api_keys"))
    with caplog.at_level(logging.WARNING, logger="driftloop.serving.keys"):
        response = await client.get("/v1/models", headers=predict_headers)
    assert response.status_code == 503
    body = response.text
    assert "serving_api_keys" not in body
    assert "SELECT" not in body
    assert "sqlite" not in body.lower()
    assert "the store is unavailable" in response.json()["error"]["message"]
    assert any("serving_api_keys" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("path", ["/v1/models/", "/healthz/", "/docs/"])
async def test_no_redirect_echoes_the_host_header(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path, headers={"Host": "evil.example"})
    assert "evil.example" not in response.headers.get("location", "")
    assert "evil.example" not in response.text
    assert response.status_code == 404


def test_the_sqlite_store_and_its_wal_are_created_private(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'new' / 'driftloop.db'}")
    try:
        database.migrate()
        with database.engine.begin() as connection:
            connection.execute(sa.text("SELECT 1"))
            files = sorted((tmp_path / "new").iterdir())
            assert [f.name for f in files][:1] == ["driftloop.db"]
            for file in files:
                assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name
    finally:
        database.dispose()


async def test_a_key_over_its_scopes_rate_limit_gets_429_with_retry_after(
    config: Config,
    source: InMemoryModelSource,
    insights: InsightsClient,
    api_keys: ApiKeyStore,
    predict_key: str,
    admin_key: str,
) -> None:
    limited = config.model_copy(
        update={
            "serving": config.serving.model_copy(
                update={"rate_limits": {"predict": RateLimitConfig(rate=0.5, burst=3)}}
            )
        }
    )
    app = create_app(limited, model_source=source, insights=insights, api_keys=api_keys)
    other = api_keys.create(Scope.PREDICT, name="another client").key
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://driftloop.test"
        ) as client,
    ):
        key = {"X-API-Key": predict_key}
        answers = [(await client.get("/v1/models", headers=key)).status_code for _ in range(3)]
        assert answers == [200, 200, 200]
        refused = await client.get("/v1/models", headers=key)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "2"
        assert "rate limit (0.5/s, burst 3)" in refused.json()["error"]["message"]
        # buckets are per key, and a scope without a limit is not limited
        assert (await client.get("/v1/models", headers={"X-API-Key": other})).status_code == 200
        admin = {"X-API-Key": admin_key}
        for _ in range(5):
            assert (await client.get("/v1/models", headers=admin)).status_code == 200


def test_rate_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="rate"):
        ServingConfig.model_validate({"rate_limits": {"predict": {"rate": 0, "burst": 1}}})
    with pytest.raises(ValueError, match="rate_limits"):
        ServingConfig.model_validate({"rate_limits": {"dashboard": {"rate": 1, "burst": 1}}})


async def test_readiness_is_per_model_and_names_no_internal_path(
    config: Config, insights: InsightsClient
) -> None:
    source = InMemoryModelSource()
    source.add("reviews", review_keyword_predictor(), production=True)
    source.add("broken", review_keyword_predictor())  # no production version: not loaded
    both = config.model_copy(update={"models": {**config.models, "broken": ModelConfig()}})
    app = create_app(both, model_source=source, insights=insights)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://driftloop.test"
        ) as client,
    ):
        # what a failed load leaves behind: an error naming the storage
        app.state.serving.manager.get(
            "broken"
        ).last_error = "cannot read /srv/driftloop/storage/models/broken/v1/model.joblib"
        whole = await client.get("/readyz")
        assert whole.status_code == 503
        assert whole.json() == {
            "ready": False,
            "models": {
                "reviews": {"ready": True, "version": 1},
                "broken": {"ready": False, "version": None},
            },
        }
        assert (await client.get("/readyz/reviews")).json() == {
            "model": "reviews",
            "ready": True,
            "version": 1,
        }
        broken = await client.get("/readyz/broken")
        assert broken.status_code == 503
        assert "/srv/" not in broken.text
        assert (await client.get("/readyz/nothing")).status_code == 404


@pytest.mark.parametrize("table", ["serving_feedback", "serving_predictions"])
async def test_a_store_failure_under_feedback_answers_a_generic_503(
    app: FastAPI,
    client: httpx.AsyncClient,
    database: Database,
    predict_headers: dict[str, str],
    table: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The probe saw the SQL statement and its bound values in a feedback 503."""
    predicted = await client.post(
        "/v1/models/reviews/predict", headers=predict_headers, json={"text": "great food"}
    )
    prediction_id = predicted.json()["predictions"][0]["id"]
    assert app.state.serving.predictions.flush()  # the prediction is in the store
    with database.engine.begin() as connection:
        connection.execute(sa.text(f"DROP TABLE {table}"))
    with caplog.at_level(logging.WARNING, logger="driftloop.serving"):
        response = await client.post(
            "/v1/models/reviews/feedback",
            headers=predict_headers,
            json={"feedback": [{"prediction_id": prediction_id, "label": "Food - Positive"}]},
        )
    assert response.status_code == 503, response.text
    for leak in (table, "INSERT", "SELECT", prediction_id, "sqlite"):
        assert leak not in response.text, leak
    assert "the store is unavailable" in response.text
    assert any(table in record.getMessage() for record in caplog.records)

"""Shared set-up of the serving tests: a config on a temporary store, API keys, two versions
of a real keyword model in an in-memory source, an insights client on a memory transport, and
the app with its lifespan running behind an httpx client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from driftloop.config import Config, InsightsConfig, ModelConfig, ServingConfig
from driftloop.database import Database, open_database
from driftloop.insights import InsightsClient
from driftloop.serving import ApiKeyStore, InMemoryModelSource, Scope, create_app
from driftloop.testing.predictors import review_keyword_predictor
from driftloop.testing.transports import MemoryTransport


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(
        store=f"sqlite:///{tmp_path}/driftloop.db",
        storage=f"file://{tmp_path}/storage",
        base_dir=tmp_path,
        models={"reviews": ModelConfig()},
        serving=ServingConfig(
            max_texts_per_request=8,
            max_text_chars=200,
            max_body_bytes=4096,
            max_batch_size=16,
            max_batch_wait_ms=5,
            registry_poll_interval=0.05,
        ),
        insights=InsightsConfig(outbox="outbox", flush_interval=0.02),
    )


@pytest.fixture
def database(config: Config) -> Database:
    return open_database(config.store, base_dir=config.base_dir)


@pytest.fixture
def api_keys(database: Database) -> ApiKeyStore:
    return ApiKeyStore(database)


@pytest.fixture
def predict_key(api_keys: ApiKeyStore) -> str:
    return api_keys.create(Scope.PREDICT, name="client").key


@pytest.fixture
def admin_key(api_keys: ApiKeyStore) -> str:
    return api_keys.create(Scope.ADMIN, name="operator").key


@pytest.fixture
def source() -> InMemoryModelSource:
    models = InMemoryModelSource()
    models.add("reviews", review_keyword_predictor(), production=True)
    models.add("reviews", review_keyword_predictor(extra_classes=True))
    return models


@pytest.fixture
def transport() -> MemoryTransport:
    return MemoryTransport()


@pytest.fixture
def insights(tmp_path: Path, transport: MemoryTransport) -> Iterator[InsightsClient]:
    client = InsightsClient(transport, outbox=tmp_path / "outbox", flush_interval=0.02)
    yield client
    client.close()


@pytest.fixture
def app(
    config: Config, source: InMemoryModelSource, insights: InsightsClient, api_keys: ApiKeyStore
) -> FastAPI:
    return create_app(config, model_source=source, insights=insights, api_keys=api_keys)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://driftloop.test",
        ) as http,
    ):
        yield http


@pytest.fixture
def predict_headers(predict_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {predict_key}"}


@pytest.fixture
def admin_headers(admin_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_key}"}

"""The default model source is the real registry; a real uvicorn server; the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from driftloop.cli import app as cli_app
from driftloop.config import Config, load_config
from driftloop.database import open_database
from driftloop.insights import InsightsClient
from driftloop.registry import ModelRegistry, ModelVersion
from driftloop.serving import (
    HASH_HEADER,
    ApiKeyStore,
    RegistryModelSource,
    Scope,
    app_from_environment,
    create_app,
    plan_server,
)
from driftloop.serving.prometheus import MULTIPROCESS_ENV
from driftloop.testing.predictors import KeywordPredictor, review_keyword_predictor
from serving.live import live_server as serve_live

URL = "/v1/models/reviews/predict"


def register(
    registry: ModelRegistry, tmp_path: Path, predictor: KeywordPredictor, tag: str
) -> ModelVersion:
    directory = tmp_path / f"model-{tag}"
    predictor.save(directory)
    return registry.register("reviews", directory, trainer="keyword")


@pytest.fixture
def registry(config: Config) -> ModelRegistry:
    return ModelRegistry.from_config(config)


@pytest.mark.anyio
async def test_serving_from_the_registry_with_deploy_and_tamper_detection(
    config: Config,
    registry: ModelRegistry,
    tmp_path: Path,
    insights: InsightsClient,
    api_keys: ApiKeyStore,
    predict_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    v1 = register(registry, tmp_path, review_keyword_predictor(), "v1")
    v2 = register(registry, tmp_path, review_keyword_predictor(extra_classes=True), "v2")
    v3 = register(registry, tmp_path, KeywordPredictor({"a": ["x"], "b": ["y"]}), "v3")
    registry.set_alias("reviews", "production", v1.version, actor="test")
    app = create_app(config, insights=insights, api_keys=api_keys)  # the registry by default
    assert isinstance(app.state.serving.manager.source, RegistryModelSource)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t"
        ) as http,
    ):
        first = await http.post(URL, json={"text": "cheap"}, headers=predict_headers)
        assert first.status_code == 200
        assert first.headers[HASH_HEADER] == v1.content_hash

        deployed = await http.post(
            "/v1/models/reviews/deploy", json={"version": v2.version}, headers=admin_headers
        )
        assert deployed.status_code == 200, deployed.text
        assert registry.resolve("reviews").version == v2.version
        second = await http.post(URL, json={"text": "cheap"}, headers=predict_headers)
        assert second.headers[HASH_HEADER] == v2.content_hash
        assert second.json()["predictions"][0]["class"] == "Price - Positive"
        described = (await http.get("/v1/models/reviews", headers=predict_headers)).json()
        assert described["deployed_at"] is not None
        assert described["created_at"] is not None

        [stored] = list((tmp_path / "storage").rglob(f"{v3.content_hash}/keywords.json"))
        stored.write_text(stored.read_text().replace('"x"', '"z"'))
        tampered = await http.post(
            "/v1/models/reviews/deploy", json={"version": v3.version}, headers=admin_headers
        )
        assert tampered.status_code == 500
        assert tampered.json()["error"]["type"] == "IntegrityError"
        assert "changed after registration" in tampered.json()["error"]["message"]
        assert registry.resolve("reviews").version == v2.version  # production did not move
        still = await http.post(URL, json={"text": "cheap"}, headers=predict_headers)
        assert still.json()["version"] == v2.version

        rolled = await http.post("/v1/models/reviews/rollback", headers=admin_headers)
        assert rolled.json()["version"] == v1.version


@pytest.fixture
def live_server(app: FastAPI) -> Iterator[str]:
    """The app under a real uvicorn server on a free loopback port, in a thread."""
    with serve_live(app) as url:
        yield url


def test_real_uvicorn_server(live_server: str, predict_headers: dict[str, str]) -> None:
    with httpx.Client(base_url=live_server, timeout=10) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").status_code == 200
        response = http.post(URL, json={"texts": ["tasty", "rude"]}, headers=predict_headers)
        assert response.status_code == 200
        assert [p["class"] for p in response.json()["predictions"]] == [
            "Food - Positive",
            "Service - Negative",
        ]
        raw = http.post(URL, content=b"\xff\xfe", headers=predict_headers)
        assert raw.status_code == 422
        assert "UTF-8" in raw.json()["error"]["message"]


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "driftloop.yaml"
    path.write_text(
        "store: sqlite:///.driftloop/driftloop.db\n"
        "storage: file://.driftloop/storage\n"
        "models:\n  reviews: {trainer: sklearn}\n"
        "serving: {port: 8123}\n"
    )
    return path


def test_keys_cli_create_ls_revoke(tmp_path: Path) -> None:
    runner = CliRunner()
    path = str(write_config(tmp_path))
    created = runner.invoke(
        cli_app, ["keys", "create", "--scope", "admin", "--name", "ops", "--config", path, "--json"]
    )
    assert created.exit_code == 0, created.output
    key = json.loads(created.stdout)
    assert key["scope"] == "admin"
    assert key["key"].startswith(f"dl_{key['key_id']}_")

    plain = runner.invoke(cli_app, ["keys", "create", "--config", path])
    assert plain.exit_code == 0
    printed = plain.stdout.strip().splitlines()[-1]
    config = load_config(path)
    store = ApiKeyStore(open_database(config.store, base_dir=config.base_dir))
    assert store.authenticate(printed).scope is Scope.PREDICT  # the key, printed once

    listed = runner.invoke(cli_app, ["keys", "ls", "--config", path, "--json"])
    keys = json.loads(listed.stdout)
    assert (keys[0]["name"], keys[0]["scope"]) == ("ops", "admin")
    assert len(keys) == 2
    assert all("key" not in k for k in keys)
    assert key["key"] not in listed.stdout

    revoked = runner.invoke(cli_app, ["keys", "revoke", key["key_id"], "--config", path])
    assert revoked.exit_code == 0
    assert "revoked" in revoked.stdout
    active = json.loads(runner.invoke(cli_app, ["keys", "ls", "--config", path, "--json"]).stdout)
    assert [k["name"] for k in active] == [keys[1]["name"]]
    everything = json.loads(
        runner.invoke(cli_app, ["keys", "ls", "--all", "--config", path, "--json"]).stdout
    )
    assert everything[0]["revoked_at"] is not None

    bad_scope = runner.invoke(cli_app, ["keys", "create", "--scope", "root", "--config", path])
    assert bad_scope.exit_code == 1
    assert "unknown scope 'root'" in bad_scope.output
    missing = runner.invoke(cli_app, ["keys", "revoke", "ffffffff", "--config", path])
    assert missing.exit_code == 1
    assert "no API key" in missing.output


def test_serve_plans_single_and_multi_worker_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path)
    config = load_config(path)
    monkeypatch.delenv(MULTIPROCESS_ENV, raising=False)
    single = plan_server(config, config_path=path)
    assert (single.host, single.port, single.workers) == ("127.0.0.1", 8123, 1)
    assert single.multiprocess_dir is None
    several = plan_server(config, host="0.0.0.0", port=9000, workers=3, config_path=path)
    assert several.url == "http://0.0.0.0:9000"
    assert several.config_path == path.resolve()
    assert several.multiprocess_dir == tmp_path / ".driftloop" / "prometheus"


def test_the_worker_factory_builds_the_app_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path)
    monkeypatch.setenv("DRIFTLOOP_CONFIG", str(path))
    app = app_from_environment()
    assert list(app.state.serving.manager.models) == ["reviews"]
    assert app.state.serving.config.serving.port == 8123
    keys = app.state.serving.api_keys
    assert isinstance(keys, ApiKeyStore)
    assert keys.authenticate(keys.create(Scope.PREDICT).key).scope is Scope.PREDICT

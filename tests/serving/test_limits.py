"""The body limit as a bare ASGI middleware (what reaches the app, and what never does) and the
uvicorn options every command starts the server with. Over real sockets against the whole
loop: tests/reliability/test_limits.py."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import Message, Receive, Scope, Send

from driftloop.config import ServingConfig
from driftloop.serving.limits import PROTOCOL, BodyLimitMiddleware, uvicorn_options
from driftloop.serving.protocol import LimitedHttpToolsProtocol

pytestmark = pytest.mark.anyio

LIMIT = 4096


class Recorder:
    """An ASGI app that reads its whole body and answers how it arrived."""

    def __init__(self) -> None:
        self.calls = 0
        self.messages: list[Message] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        body = b""
        while True:
            message = await receive()
            self.messages.append(message)
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        content = json.dumps({"bytes": len(body), "messages": len(self.messages)}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": content})


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def client(recorder: Recorder) -> AsyncIterator[httpx.AsyncClient]:
    app = BodyLimitMiddleware(recorder, max_body_bytes=LIMIT)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        yield http


def limit_error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "LimitError"
    assert error["limit"] == "serving.max_body_bytes"
    return error


async def test_a_declared_length_over_the_limit_never_reaches_the_app(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    response = await client.post("/anything", content=b"a" * (LIMIT + 1))
    error = limit_error(response)
    assert error["message"] == (
        f"request body of {LIMIT + 1} bytes exceeds serving.max_body_bytes ({LIMIT})"
    )
    assert recorder.calls == 0


async def test_a_chunked_body_is_refused_once_it_passes_the_limit(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1000
            yield b"a" * 1000

    response = await client.post("/anything", content=endless())
    limit_error(response)
    assert recorder.calls == 0
    assert pulled <= LIMIT + 1000


async def test_a_chunked_body_within_the_limit_reaches_the_app_whole(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"a" * 1000

    response = await client.post("/anything", content=pieces())
    assert response.json() == {"bytes": 4000, "messages": 1}
    assert recorder.messages[0]["more_body"] is False


@pytest.mark.parametrize("size", [0, LIMIT])
async def test_a_declared_length_within_the_limit_passes_untouched(
    client: httpx.AsyncClient, recorder: Recorder, size: int
) -> None:
    response = await client.post("/anything", content=b"a" * size)
    assert response.status_code == 200
    assert response.json()["bytes"] == size
    assert recorder.calls == 1


async def test_a_request_without_a_body_passes(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    response = await client.get("/anything")
    assert response.json()["bytes"] == 0
    assert recorder.calls == 1


def test_uvicorn_options_carry_the_serving_limits() -> None:
    settings = ServingConfig(max_header_bytes=8192, idle_timeout=2.5, max_connections=40)
    options = uvicorn_options(settings)
    assert options == {
        "access_log": False,
        "h11_max_incomplete_event_size": 8192,
        "timeout_keep_alive": 3,
        "limit_concurrency": 40,
        "http": PROTOCOL,
    }
    unlimited = uvicorn_options(ServingConfig(max_connections=None, access_log=True))
    assert unlimited["limit_concurrency"] is None
    assert unlimited["access_log"] is True
    config = uvicorn.Config(Recorder(), **options)
    config.load()
    assert config.http_protocol_class is LimitedHttpToolsProtocol


def test_without_httptools_uvicorn_falls_back_to_h11_with_the_head_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "httptools" else real(name, *args),
    )
    options = uvicorn_options(ServingConfig())
    assert options["http"] == "h11"
    assert options["h11_max_incomplete_event_size"] == 65_536


def test_several_workers_get_time_to_load_before_a_health_check_restarts_them(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn restarts a worker that misses its supervisor's ping for 5 s; a worker loading
    its models on a busy machine misses it, and was restarted over and over."""
    from driftloop.config import load_config
    from driftloop.serving.server import plan_server, run_server

    path = tmp_path / "driftloop.yaml"
    path.write_text("serving: {worker_healthcheck_timeout: 90s}\n")
    config = load_config(path, environ={})
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
    # run_server sets both for its workers: set here, so that they are put back after the test
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "prometheus"))
    monkeypatch.setenv("DRIFTLOOP_CONFIG", str(path))
    run_server(config, plan_server(config, workers=2, config_path=path))
    [options] = calls
    assert options["workers"] == 2
    assert options["timeout_worker_healthcheck"] == 90

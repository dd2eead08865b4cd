"""Load shedding on the event loop's lag: the monitor sees a blocked loop, and while requests
queue and their wait is over the limit, predict requests are answered 503 with Retry-After,
everything else served; a past stall with no queue behind it sheds nothing."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from driftloop.serving.shedding import MIN_IN_FLIGHT, LoadSheddingMiddleware, LoopLagMonitor

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def answer(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def holding_slow_requests(release: asyncio.Event) -> ASGIApp:
    """An app that answers at once, except requests for model ``slow``: until ``release``."""

    async def held(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"].startswith("/v1/models/slow"):
            await release.wait()
        await answer(scope, receive, send)

    return held


async def test_the_monitor_sees_a_blocked_loop_and_the_lag_fades() -> None:
    monitor = LoopLagMonitor()
    monitor.ensure_running()
    try:
        await asyncio.sleep(0.12)
        assert monitor.lag < 0.1
        time.sleep(0.4)  # the loop is busy: every timer is late
        await asyncio.sleep(0.06)
        assert monitor.lag > 0.25
        await asyncio.sleep(1.5)  # quiet again
        assert monitor.lag < 0.1
    finally:
        monitor.stop()


async def test_predict_requests_are_shed_while_the_loop_lags_under_a_queue() -> None:
    release = asyncio.Event()
    monitor = LoopLagMonitor()
    shedding = LoadSheddingMiddleware(
        holding_slow_requests(release), max_delay=0.5, monitor=monitor
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=shedding), base_url="http://test"
    ) as client:
        assert (await client.post("/v1/models/m/predict")).status_code == 200
        waiting = [
            asyncio.ensure_future(client.post("/v1/models/slow/predict"))
            for _ in range(MIN_IN_FLIGHT)
        ]
        while shedding.in_flight < MIN_IN_FLIGHT:
            await asyncio.sleep(0.01)
        monitor.lag = 2.3  # as the monitor would set it under a flood
        refused = await client.post("/v1/models/m/predict")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "3"
        assert refused.json()["error"]["type"] == "OverloadedError"
        assert "serving.max_queue_delay" in refused.json()["error"]["message"]
        assert (await client.get("/healthz")).status_code == 200  # never shed
        assert (await client.post("/v1/models/m/deploy")).status_code == 200
        assert shedding.shed == 1
        release.set()
        assert [r.status_code for r in await asyncio.gather(*waiting)] == [200] * MIN_IN_FLIGHT
    monitor.stop()


async def test_a_past_stall_does_not_shed_a_lone_request() -> None:
    """A loop that stalled once (a long garbage collection, a host that paused the process)
    with no queue behind it: the next request is read at once, so it is answered."""
    monitor = LoopLagMonitor()
    shedding = LoadSheddingMiddleware(answer, max_delay=0.5, monitor=monitor)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=shedding), base_url="http://test"
    ) as client:
        monitor.lag = 2.3
        answers = [(await client.post("/v1/models/m/predict")).status_code for _ in range(5)]
        assert answers == [200] * 5
        assert shedding.shed == 0
    monitor.stop()


async def test_without_a_limit_nothing_is_shed() -> None:
    monitor = LoopLagMonitor()
    monitor.lag = 10.0
    shedding = LoadSheddingMiddleware(answer, max_delay=0.0, monitor=monitor)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=shedding), base_url="http://test"
    ) as client:
        assert (await client.post("/v1/models/m/predict")).status_code == 200


async def test_a_queue_of_requests_waiting_too_long_is_shed_until_it_drains() -> None:
    """20 predict requests held in flight for longer than the limit: a new one is shed; a
    burst of young requests is not; once they finish, requests are admitted again."""
    release = asyncio.Event()
    held = holding_slow_requests(release)
    monitor = LoopLagMonitor()
    shedding = LoadSheddingMiddleware(held, max_delay=0.3, monitor=monitor)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=shedding), base_url="http://test"
    ) as client:
        waiting = [asyncio.ensure_future(client.post("/v1/models/slow/predict")) for _ in range(20)]
        while shedding.in_flight < 20:
            await asyncio.sleep(0.01)
        # young: a burst the server has only just taken is no reason to shed
        assert (await client.post("/v1/models/m/predict")).status_code == 200
        await asyncio.sleep(0.5)  # now the oldest has waited longer than the limit
        assert shedding.expected_wait(time.monotonic()) > 0.5
        refused = await client.post("/v1/models/m/predict")
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        release.set()
        assert [r.status_code for r in await asyncio.gather(*waiting)] == [200] * 20
        assert shedding.in_flight == 0
        assert (await client.post("/v1/models/m/predict")).status_code == 200
    monitor.stop()


async def test_one_slow_request_alone_is_no_queue() -> None:
    release = asyncio.Event()
    held = holding_slow_requests(release)
    monitor = LoopLagMonitor()
    shedding = LoadSheddingMiddleware(held, max_delay=0.1, monitor=monitor)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=shedding), base_url="http://test"
    ) as client:
        slow = asyncio.ensure_future(client.post("/v1/models/slow/predict"))
        await asyncio.sleep(0.3)
        assert (await client.post("/v1/models/m/predict")).status_code == 200
        release.set()
        assert (await slow).status_code == 200
    monitor.stop()

"""The demo's clients treat a shed request as the documented backpressure it is: sent again after
its Retry-After, counted as shed, a failure only if it stays refused."""

from __future__ import annotations

import asyncio

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from driftloop.demo.traffic import SHED_RETRIES, TrafficGenerator


def shedding_app(refusals: int) -> Starlette:
    answered = {"count": 0}

    async def predict(request: Request) -> JSONResponse:
        answered["count"] += 1
        if answered["count"] <= refusals:
            return JSONResponse(
                {"error": {"type": "OverloadedError", "message": "busy"}},
                status_code=503,
                headers={"Retry-After": "0"},
            )
        return JSONResponse({"version": 1, "predictions": [{"class": "x"}]})

    return Starlette(routes=[Route("/v1/models/m/predict", predict, methods=["POST"])])


def test_a_shed_request_is_sent_again_and_only_a_lasting_refusal_fails() -> None:
    traffic = TrafficGenerator("http://demo", "m", "key")

    async def send(refusals: int) -> int:
        transport = httpx.ASGITransport(app=shedding_app(refusals))
        async with httpx.AsyncClient(transport=transport) as client:
            return (await traffic._post(client, ["a text"])).status_code

    assert asyncio.run(send(2)) == 200
    assert traffic.stats.shed == 2
    assert asyncio.run(send(SHED_RETRIES + 1)) == 503
    assert traffic.stats.shed == 2 + SHED_RETRIES

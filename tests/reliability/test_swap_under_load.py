"""Load across a hot swap and across a rollback, over real sockets: 16 concurrent clients keep
sending requests to the whole loop's app (uvicorn, the sklearn model from the registry) while an
operator deploys v2 and then rolls back to v1 through the API. Not one request may fail, and
every request that starts after a swap is answered by the new version."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import pytest

from reliability.conftest import ServedSystem
from reliability.project import MODEL

CLIENTS = 16
PHASE_SECONDS = 1.5
LAST_RUN: dict[str, float] = {}


@dataclass(frozen=True)
class Answer:
    sent: float
    received: float
    status: int
    version: int | None
    header: str


async def hammer(served: ServedSystem) -> tuple[list[Answer], float, float]:
    project = served.project
    answers: list[Answer] = []
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=CLIENTS * 2)
    async with httpx.AsyncClient(base_url=served.url, timeout=30, limits=limits) as http:

        async def client(number: int) -> None:
            texts = [f"the food was cold and the waiter rude {number}", "great value"]
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    response = await http.post(
                        f"/v1/models/{MODEL}/predict",
                        json={"texts": texts},
                        headers=project.headers(),
                    )
                    body = response.json()
                    answers.append(
                        Answer(
                            sent,
                            time.monotonic(),
                            response.status_code,
                            body.get("version") if response.status_code == 200 else None,
                            response.headers.get("x-driftloop-model-version", ""),
                        )
                    )
                except httpx.HTTPError as exc:  # a refused or dropped connection is a failure
                    answers.append(Answer(sent, time.monotonic(), -1, None, repr(exc)))

        tasks = [asyncio.create_task(client(n)) for n in range(CLIENTS)]
        await asyncio.sleep(PHASE_SECONDS)
        deploy = await http.post(
            f"/v1/models/{MODEL}/deploy", json={"version": 2}, headers=project.headers(admin=True)
        )
        deployed = time.monotonic()
        assert deploy.status_code == 200, deploy.text
        await asyncio.sleep(PHASE_SECONDS)
        rollback = await http.post(
            f"/v1/models/{MODEL}/rollback", headers=project.headers(admin=True)
        )
        rolled_back = time.monotonic()
        assert rollback.status_code == 200, rollback.text
        assert rollback.json()["version"] == 1
        await asyncio.sleep(PHASE_SECONDS)
        stop.set()
        await asyncio.gather(*tasks)
    return answers, deployed, rolled_back


@pytest.mark.slow
def test_load_across_a_deploy_and_a_rollback_has_no_failed_request(
    served_system: ServedSystem,
) -> None:
    started = time.monotonic()
    answers, deployed, rolled_back = asyncio.run(hammer(served_system))
    took = time.monotonic() - started

    failed = [a for a in answers if a.status != 200]
    LAST_RUN.update(requests=len(answers), failed=len(failed), seconds=took)
    print(
        f"swap under load: {len(answers)} requests in {took:.1f}s "
        f"({len(answers) / took:.0f}/s), {len(failed)} failed"
    )
    assert failed == []
    assert len(answers) > 100
    assert all(a.header == str(a.version) for a in answers)
    for answer in answers:
        if deployed < answer.sent and answer.received < rolled_back:
            assert answer.version == 2
        if answer.sent > rolled_back:
            assert answer.version == 1
    seen = [a.version for a in sorted(answers, key=lambda a: a.sent)]
    assert {1, 2} <= set(seen)
    registry = served_system.project.registry
    assert registry.aliases(MODEL)["production"] == 1
    history = [(c.alias, c.version, c.action) for c in registry.alias_history(MODEL)]
    assert history[-2:] == [("production", 2, "set"), ("production", 1, "rollback")]

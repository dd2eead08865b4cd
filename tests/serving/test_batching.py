"""The micro-batcher: a lone request skips the batching wait; concurrent ones wait and share."""

from __future__ import annotations

import asyncio
import time

import pytest

from driftloop.serving.batching import MicroBatcher
from driftloop.testing.predictors import review_keyword_predictor

pytestmark = pytest.mark.anyio

LONG_WAIT_MS = 400.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_lone_request_does_not_wait_for_company() -> None:
    batcher = MicroBatcher("reviews", max_batch_size=64, max_batch_wait_ms=LONG_WAIT_MS)
    predictor = review_keyword_predictor()
    try:
        for _ in range(3):  # one client, one request after the other
            started = time.perf_counter()
            probabilities = await batcher.predict(predictor, ["tasty"])
            elapsed = time.perf_counter() - started
            assert probabilities.shape == (1, len(predictor.labels))
            assert elapsed < LONG_WAIT_MS / 1000.0 / 4
    finally:
        await batcher.close()


async def test_concurrent_requests_wait_and_share_one_call() -> None:
    sizes: list[int] = []
    batcher = MicroBatcher("reviews", max_batch_size=64, max_batch_wait_ms=50.0,
                           observer=sizes.append)
    predictor = review_keyword_predictor()
    try:
        await asyncio.gather(*(batcher.predict(predictor, ["tasty", "rude"]) for _ in range(4)))
        assert sizes[-1] > 2  # the burst after the first lone call was batched
        sizes.clear()

        async def arrive_later(delay: float) -> None:
            await asyncio.sleep(delay)
            await batcher.predict(predictor, ["stale"])

        # Requests are concurrent now, so a batch waits for the stragglers within its window.
        await asyncio.gather(batcher.predict(predictor, ["tasty"]), arrive_later(0.01),
                             arrive_later(0.02))
        assert sizes == [3]
    finally:
        await batcher.close()

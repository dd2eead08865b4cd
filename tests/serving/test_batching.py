"""The micro-batcher: a lone request skips the batching wait; concurrent ones wait and share."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pytest
from numpy.typing import NDArray

from driftloop.errors import OverloadedError
from driftloop.predictors import Predictor
from driftloop.serving.batching import MicroBatcher, batched_signals
from driftloop.testing.predictors import KeywordPredictor, review_keyword_predictor

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
    batcher = MicroBatcher(
        "reviews", max_batch_size=64, max_batch_wait_ms=50.0, observer=sizes.append
    )
    predictor = review_keyword_predictor()
    try:
        await asyncio.gather(*(batcher.predict(predictor, ["tasty", "rude"]) for _ in range(4)))
        assert sizes[-1] > 2  # the burst after the first lone call was batched
        sizes.clear()

        async def arrive_later(delay: float) -> None:
            await asyncio.sleep(delay)
            await batcher.predict(predictor, ["stale"])

        # Requests are concurrent now, so a batch waits for the stragglers within its window.
        await asyncio.gather(
            batcher.predict(predictor, ["tasty"]), arrive_later(0.01), arrive_later(0.02)
        )
        assert sizes == [3]
    finally:
        await batcher.close()


class _SleepingPredictor(KeywordPredictor):
    """Each call sleeps ``seconds`` (outside the GIL, like a model computing on another core)
    and records the thread it ran in."""

    format: ClassVar[str] = "keyword"

    def __init__(self, seconds: float, parallel: int = 1) -> None:
        base = review_keyword_predictor()
        super().__init__(base.keywords, bias=base.bias)
        self.seconds = seconds
        self.parallel = parallel
        self.threads: list[str] = []

    @property
    def parallel_batches(self) -> int:
        return self.parallel

    def logits(self, texts: Sequence[str]) -> NDArray[np.float64]:
        self.threads.append(threading.current_thread().name)
        time.sleep(self.seconds)
        return super().logits(texts)


CALL_SECONDS = 0.3


async def _burst_seconds(predictor: Predictor, *, parallel_batches: int | None = None) -> float:
    """One lone request, then a burst that arrives while it runs: how long until all answered."""
    batcher = MicroBatcher(
        "reviews", max_batch_size=64, max_batch_wait_ms=1.0, parallel_batches=parallel_batches
    )
    try:
        started = time.perf_counter()
        lone = asyncio.ensure_future(batcher.predict(predictor, ["tasty"]))
        await asyncio.sleep(0.02)  # the lone request is running
        burst = [batcher.predict(predictor, ["rude", "stale"]) for _ in range(5)]
        results = await asyncio.gather(lone, *burst)
        assert [r.shape[0] for r in results] == [1, 2, 2, 2, 2, 2]
        return time.perf_counter() - started
    finally:
        await batcher.close()


async def test_a_model_that_computes_outside_the_gil_runs_batches_side_by_side() -> None:
    assert await _burst_seconds(_SleepingPredictor(CALL_SECONDS, parallel=2)) < CALL_SECONDS * 1.7
    # One at a time: the burst waits for the lone call, then runs as one batch.
    assert await _burst_seconds(_SleepingPredictor(CALL_SECONDS, parallel=1)) > CALL_SECONDS * 1.9
    # The config's serving.parallel_batches overrides what the predictor says.
    assert (
        await _burst_seconds(_SleepingPredictor(CALL_SECONDS, parallel=2), parallel_batches=1)
        > CALL_SECONDS * 1.9
    )


async def _lone_calls(predictor: _SleepingPredictor, inline_below_ms: float) -> None:
    batcher = MicroBatcher(
        "reviews", max_batch_size=64, max_batch_wait_ms=1.0, inline_below_ms=inline_below_ms
    )
    try:
        for _ in range(4):
            await batcher.predict(predictor, ["tasty"])
        await batcher.predict(predictor, ["tasty", "rude"])
    finally:
        await batcher.close()


async def test_a_quick_model_answers_a_lone_text_on_the_event_loop() -> None:
    loop_thread = threading.current_thread().name
    quick = _SleepingPredictor(0.0)
    await _lone_calls(quick, inline_below_ms=50.0)
    # the first call measures the model in its thread; then one text runs inline, two do not
    assert quick.threads[0] != loop_thread
    assert quick.threads[1:4] == [loop_thread] * 3
    assert quick.threads[4] != loop_thread

    slow = _SleepingPredictor(0.02)  # slower than the 5 ms limit: always the thread
    await _lone_calls(slow, inline_below_ms=5.0)
    assert loop_thread not in slow.threads

    never = _SleepingPredictor(0.0)
    await _lone_calls(never, inline_below_ms=0.0)
    assert loop_thread not in never.threads


async def test_each_answer_carries_the_time_of_the_model_call_that_made_it() -> None:
    predictor = _SleepingPredictor(0.05)
    batcher = MicroBatcher("reviews", max_batch_size=3, max_batch_wait_ms=1.0)
    try:
        probabilities, seconds = await batcher.predict_timed(predictor, ["tasty"])  # alone
        assert probabilities.shape == (1, len(predictor.labels))
        assert 0.05 <= seconds < 0.2
        # 5 texts over max_batch_size 3 take two calls: their times add up
        probabilities, seconds = await batcher.predict_timed(predictor, list("abcde"))
        assert probabilities.shape[0] == 5
        assert 0.1 <= seconds < 0.4
        # requests that arrive while a call runs share the next one, and its time
        lone = asyncio.ensure_future(batcher.predict_timed(predictor, ["tasty"]))
        await asyncio.sleep(0.02)
        burst = await asyncio.gather(
            *(batcher.predict_timed(predictor, ["rude"]) for _ in range(3))
        )
        await lone
        shared = {seconds for _, seconds in burst}
        assert len(shared) == 1
        assert 0.05 <= shared.pop() < 0.2
    finally:
        await batcher.close()


async def test_past_max_queue_delay_requests_are_refused_at_once_and_answered_ones_wait_less() -> (
    None
):
    """A model taking 200 ms per call of up to 4 texts (50 ms a text), a queue bounded at 0.5 s:
    a burst of 40 four-text requests is partly refused with OverloadedError (503 with
    Retry-After) without waiting, the rest are answered, and the queue drains."""
    predictor = _SleepingPredictor(0.2)  # slow enough that no stall passes for a refusal
    batcher = MicroBatcher("reviews", max_batch_size=4, max_batch_wait_ms=1.0, max_queue_delay=0.5)
    try:
        await batcher.predict(predictor, ["tasty", "rude"])  # learns the seconds per text
        await batcher.predict(predictor, ["tasty", "rude"])

        async def one() -> float | OverloadedError:
            started = time.perf_counter()
            try:
                await batcher.predict(predictor, ["tasty", "rude", "stale", "cold"])
            except OverloadedError as exc:
                assert time.perf_counter() - started < 0.15  # not after the call in progress
                return exc
            return time.perf_counter() - started

        lone = asyncio.ensure_future(one())  # takes the worker: the burst queues behind it
        await asyncio.sleep(0.005)
        outcomes = [lone, *await asyncio.gather(*(one() for _ in range(40)))]
        refused = [o for o in outcomes[1:] if isinstance(o, OverloadedError)]
        answered = [o for o in outcomes[1:] if isinstance(o, float)]
        assert refused, "nothing was shed"
        assert answered, "everything was shed"
        assert batcher.shed == len(refused)
        assert refused[0].retry_after >= 1.0
        assert "serving.max_queue_delay" in refused[0].message
        # the answered ones waited about max_queue_delay at most, plus the call in progress
        assert max(answered) < 0.5 + 2 * 0.2 + 0.75
        # the queue drains: a request after the burst is answered
        assert (await batcher.predict(predictor, ["tasty"])).shape == (1, len(predictor.labels))
    finally:
        await batcher.close()


async def test_without_max_queue_delay_nothing_is_shed() -> None:
    predictor = _SleepingPredictor(0.01)
    batcher = MicroBatcher("reviews", max_batch_size=4, max_batch_wait_ms=1.0)
    try:
        await batcher.predict(predictor, ["tasty"])
        results = await asyncio.gather(
            *(batcher.predict(predictor, ["a", "b", "c", "d"]) for _ in range(30))
        )
        assert len(results) == 30
        assert batcher.shed == 0
    finally:
        await batcher.close()


class SignalCountingPredictor(KeywordPredictor):
    """The keyword predictor with an input signal (each text's length), recording the thread
    and the size of every :meth:`input_signals` call."""

    def __init__(self) -> None:
        super().__init__({"pos": ["tasty"], "neg": ["rude"]})
        self.signal_calls: list[tuple[str, int]] = []

    def input_signals(self, batch: Sequence[str]) -> dict[str, NDArray[np.float64]]:
        self.signal_calls.append((threading.current_thread().name, len(batch)))
        return {"chars": np.array([float(len(text)) for text in batch])}


async def test_a_batch_computes_its_input_signals_once_in_the_worker_thread() -> None:
    batcher = MicroBatcher("reviews", max_batch_size=64, max_batch_wait_ms=50.0)
    predictor = SignalCountingPredictor()
    requests = [["tasty soup", "rude"], ["a"], ["rude waiter", "ok", "tasty"]]

    async def one(texts: list[str]) -> dict[str, NDArray[np.float64]] | None:
        await batcher.predict(predictor, texts)
        return batched_signals(predictor, texts)

    try:
        await batcher.predict(predictor, ["warm up"])  # a lone call: the next ones are batched
        predictor.signal_calls.clear()
        await asyncio.gather(*(batcher.predict(predictor, ["x", "y"]) for _ in range(2)))
        predictor.signal_calls.clear()
        found = await asyncio.gather(*(one(texts) for texts in requests))
        # one call per batch (not per request), in the model's worker thread
        assert sum(size for _thread, size in predictor.signal_calls) == 6
        assert len(predictor.signal_calls) < len(requests)
        assert all(t.startswith("model-reviews") for t, _size in predictor.signal_calls)
        for texts, signals in zip(requests, found, strict=True):
            assert signals is not None
            assert signals["chars"].tolist() == [float(len(text)) for text in texts]
        # another sequence, or another predictor, gets none: the handler computes its own
        assert batched_signals(predictor, ["tasty soup", "rude"]) is None
    finally:
        await batcher.close()


class FailingSignalsPredictor(KeywordPredictor):
    def __init__(self) -> None:
        super().__init__({"pos": ["tasty"], "neg": ["rude"]})

    def input_signals(self, batch: Sequence[str]) -> dict[str, NDArray[np.float64]]:
        raise RuntimeError("no signals today")


async def test_failing_input_signals_never_fail_the_answer() -> None:
    batcher = MicroBatcher("reviews", max_batch_size=64, max_batch_wait_ms=1.0)
    predictor = FailingSignalsPredictor()
    texts = ["tasty"]
    try:
        probabilities = await batcher.predict(predictor, texts)
        assert probabilities.shape == (1, 2)
        assert batched_signals(predictor, texts) is None
    finally:
        await batcher.close()


async def test_a_request_with_nothing_queued_ahead_is_never_shed() -> None:
    """One-text calls of 40 ms set the seconds per text at 0.04, so 64 texts look like 2.6 s
    of work against a 0.1 s max_queue_delay; after a burst (the batcher then batches every
    request), a lone 64-text request with an empty queue is still answered, every time."""
    predictor = _SleepingPredictor(0.04)
    batcher = MicroBatcher("reviews", max_batch_size=64, max_batch_wait_ms=1.0, max_queue_delay=0.1)
    try:
        await batcher.predict(predictor, ["tasty"])
        await asyncio.gather(*(batcher.predict(predictor, ["rude"]) for _ in range(3)))
        for _ in range(3):
            probabilities = await batcher.predict(predictor, ["tasty"] * 64)
            assert probabilities.shape == (64, len(predictor.labels))
        assert batcher.shed == 0
    finally:
        await batcher.close()

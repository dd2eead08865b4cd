"""Micro-batching: concurrent requests for one model share one predictor call.

Each served model has one :class:`MicroBatcher`. A request puts its texts on the batcher's
queue together with the :class:`~driftloop.serving.slots.ModelSlot` it took when it started
(so a request always finishes on the version it began with, across a hot swap); the batcher's
task collects requests until ``max_batch_size`` texts are waiting or ``max_batch_wait_ms`` has
passed since the first, then runs the predictor in the model's worker thread. While one batch
runs, the next one fills up, so under load batches grow by themselves. The wait only applies
while requests are concurrent (the last batch held more than one): a lone client's request is
dispatched at once, so batching costs nothing at low load.

A lone one-text request on a model that usually answers in under ``serving.inline_below_ms``
(the sklearn model: 1.6 ms) is scored on the event loop itself: handing it to the worker thread
and back would cost more than the loop loses in that time.

Under more load than the model can take, requests would wait in the queue without end; with
``max_queue_delay`` set, a request whose texts would wait longer than that (the texts queued
ahead of it times the model's recent seconds per text, over its parallel batches) is refused at
once with :class:`~driftloop.errors.OverloadedError` (503 with ``Retry-After``), so answered
requests keep a bounded latency and clients back off.

The predictor's input signals (:meth:`~driftloop.predictors.Predictor.input_signals`: the
sklearn model's ``oov_rate`` and ``embedding_typicality``) are computed in the same worker
thread call, once per batch, right after its prediction (so a predictor can reuse what it
computed for it, e.g. the TF-IDF rows); the request that waits for them takes its share with
:func:`batched_signals`. Computed per request on the event loop instead, they cost an
``driftloop init`` project several times its prediction (docs/benchmarks.md).

A model whose work runs outside the GIL (``Predictor.parallel_batches`` > 1, or
``serving.parallel_batches``) runs that many batches side by side in worker threads; a batch
then starts as soon as a worker is free, without the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from driftloop.errors import BackendUnavailableError, OverloadedError
from driftloop.predictors import Predictor, TextClassifier
from driftloop.predictors.loading import WrongAnswerError, check_answer

logger = logging.getLogger(__name__)

MAX_PARALLEL_BATCHES = 8
"""Worker threads of one model's batcher (how many batches may run at once, at most)."""

BatchObserver = Callable[[int], None]
"""Called with the number of texts of every predictor call."""


Scored = tuple[NDArray[np.float64], float]
"""Probabilities, and the seconds the predictor calls that made them took."""

Signals = dict[str, NDArray[np.float64]]
"""Per input signal, one value per input (:meth:`Predictor.input_signals`)."""


@dataclass(frozen=True)
class _Batched:
    """A request's share of a batch: its probabilities, the batch's predictor seconds, and its
    input signals (None when computing them failed)."""

    probabilities: NDArray[np.float64]
    seconds: float
    signals: Signals | None


@dataclass(frozen=True)
class _Handoff:
    predictor: Predictor
    items: Sequence[Any]
    signals: Signals | None


_LAST_SIGNALS: contextvars.ContextVar[_Handoff | None] = contextvars.ContextVar(
    "driftloop_batched_signals", default=None
)
"""The signals of the inputs the current task's last :meth:`MicroBatcher.predict_timed` scored
(a coroutine's context is its task's, so the request's handler sees what its batch computed)."""


def batched_signals(predictor: Predictor, items: Sequence[Any]) -> Signals | None:
    """The input signals the batch computed for ``items`` (the very sequence this task passed
    to :meth:`MicroBatcher.predict_timed` with ``predictor``), or None: another sequence, or
    the signals failed (the caller then computes them itself)."""
    handoff = _LAST_SIGNALS.get()
    if handoff is None or handoff.items is not items or handoff.predictor is not predictor:
        return None
    return handoff.signals


@dataclass(eq=False)
class _Request:
    predictor: Predictor
    texts: Sequence[Any]
    """The inputs: texts, or records."""
    future: asyncio.Future[_Batched]


@dataclass(eq=False)
class _Group:
    predictor: Predictor
    requests: list[_Request] = field(default_factory=list)


class MicroBatcher:
    """Collects concurrent predict requests into batches for a model's worker thread."""

    def __init__(
        self,
        name: str,
        *,
        max_batch_size: int,
        max_batch_wait_ms: float,
        observer: BatchObserver | None = None,
        parallel_batches: int | None = None,
        inline_below_ms: float = 0.0,
        max_queue_delay: float = 0.0,
    ) -> None:
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_wait = max_batch_wait_ms / 1000.0
        self.observer = observer
        self.parallel_batches = parallel_batches
        """Batches that may run at once; None: what the predictor says it can take
        (:attr:`~driftloop.predictors.Predictor.parallel_batches`)."""
        self._executor = ThreadPoolExecutor(
            max_workers=MAX_PARALLEL_BATCHES, thread_name_prefix=f"model-{name}"
        )
        self._queue: asyncio.Queue[_Request] | None = None
        self._task: asyncio.Task[None] | None = None
        self._carry: _Request | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._finished = asyncio.Event()
        """Set whenever a batch finishes (the loop waits on it for a free worker)."""
        self._closed = False
        self._concurrent = False
        """Whether the last batch held more than one request: only then is waiting for more
        worth its delay (a lone client gets its answer without the batching wait)."""
        self._running = 0
        """Predictor calls handed to the worker thread and not finished yet."""
        self.inline_below = inline_below_ms / 1000.0
        """A lone one-text request whose predictor usually answers one text faster than this
        runs on the event loop itself: the hop to the worker thread would cost more than the
        loop loses. 0: never."""
        self._one_text_seconds: weakref.WeakKeyDictionary[Predictor, float] = (
            weakref.WeakKeyDictionary()
        )
        """Per predictor, a moving average of lone one-text call times."""
        self.max_queue_delay = max_queue_delay
        """Refuse a request whose texts would wait longer than this in the queue; 0: never."""
        self._waiting_texts = 0
        """Texts queued (or carried to the next batch) and not handed to a worker yet."""
        self._seconds_per_text = 0.0
        """A moving average of predictor seconds per text, over batched calls."""
        self.shed = 0
        """Requests refused because the queue was too long."""

    async def predict(self, predictor: Predictor, texts: Sequence[Any]) -> NDArray[np.float64]:
        """``predictor.predict(texts)`` (texts or records), computed in a batch."""
        probabilities, _ = await self.predict_timed(predictor, texts)
        return probabilities

    async def predict_timed(self, predictor: Predictor, texts: Sequence[Any]) -> Scored:
        """:meth:`predict`, with the seconds spent in the predictor call(s) that scored these
        texts (the whole batch's call, when they shared one): what serving adds is the rest.
        The inputs' signals, computed with them, are :func:`batched_signals` afterwards."""
        batched = await self._predict_batched(predictor, texts)
        _LAST_SIGNALS.set(_Handoff(predictor, texts, batched.signals))
        return batched.probabilities, batched.seconds

    async def _predict_batched(self, predictor: Predictor, texts: Sequence[Any]) -> _Batched:
        if self._closed:
            raise BackendUnavailableError(f"model {self.name!r} is shutting down")
        loop = asyncio.get_running_loop()
        if self._idle() and len(texts) <= self.max_batch_size:
            # Nothing to batch with: straight to the worker thread, without the queue's hop,
            # or, for one text on a quick model, right here.
            self._running += 1
            try:
                if len(texts) != 1:
                    return await loop.run_in_executor(self._executor, self._score, predictor, texts)
                usual = self._one_text_seconds.get(predictor)
                started = time.perf_counter()
                if usual is not None and usual < self.inline_below:
                    scored = self._score(predictor, texts)
                else:
                    scored = await loop.run_in_executor(
                        self._executor, self._score, predictor, texts
                    )
                took = time.perf_counter() - started
                self._one_text_seconds[predictor] = (
                    took if usual is None else 0.8 * usual + 0.2 * took
                )
                return scored
            finally:
                self._running -= 1
                self._finished.set()
        self._admit(predictor, len(texts))
        if self._queue is None or self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._run(self._queue), name=f"batcher-{self.name}")
        request = _Request(predictor, texts, loop.create_future())
        self._queue.put_nowait(request)
        self._waiting_texts += len(texts)
        return await request.future

    def _admit(self, predictor: Predictor, texts: int) -> None:
        """Refuse ``texts`` more when they would wait longer than ``max_queue_delay``. With no
        texts queued ahead, a request is never refused: the next batch takes it (refusing it
        kept a request of many texts out for good once a burst of small ones had set the
        seconds per text high, which a 64-text batch does not take 64 times)."""
        if not self.max_queue_delay or not self._seconds_per_text or not self._waiting_texts:
            return
        delay = (self._waiting_texts + texts) * self._seconds_per_text / self._capacity(predictor)
        if delay > self.max_queue_delay:
            self.shed += 1
            raise OverloadedError(
                f"model {self.name!r} is overloaded: {self._waiting_texts} texts are queued, "
                f"about {delay:.1f}s of work (serving.max_queue_delay "
                f"{self.max_queue_delay:g}s); retry later",
                retry_after=max(1.0, delay),
            )

    def _idle(self) -> bool:
        return (
            not self._concurrent
            and self._running == 0
            and self._carry is None
            and (self._queue is None or self._queue.empty())
        )

    def _capacity(self, predictor: Predictor) -> int:
        wanted = self.parallel_batches or predictor.parallel_batches
        return max(1, min(wanted, MAX_PARALLEL_BATCHES))

    async def _run(self, queue: asyncio.Queue[_Request]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = self._carry or await queue.get()
            self._carry = None
            # While the model's workers are all busy, requests gather in the queue: the batch
            # is formed once one is free, from everything that arrived meanwhile.
            while self._running >= self._capacity(first.predictor):
                self._finished.clear()
                await self._finished.wait()
            batch = [first]
            size = len(first.texts)
            deadline = loop.time() + self.max_wait
            # Waiting for company pays off when the model runs one batch at a time; a model
            # that runs several side by side starts a free worker at once instead (measured
            # with the MiniLM model on 2 cores: 89 vs 59 texts/s at 64 clients).
            wait = self._concurrent and self._capacity(first.predictor) == 1
            while size < self.max_batch_size:
                try:
                    following = queue.get_nowait()
                except asyncio.QueueEmpty:
                    if not wait:
                        break
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        following = await asyncio.wait_for(queue.get(), remaining)
                    except TimeoutError:
                        break
                if size + len(following.texts) > self.max_batch_size:
                    self._carry = following
                    break
                batch.append(following)
                size += len(following.texts)
            self._concurrent = len(batch) > 1
            self._waiting_texts -= size
            live = [r for r in batch if not r.future.done()]
            if not live:
                continue
            groups = _group_by_predictor(live)
            self._running += 1
            task = loop.create_task(self._execute(live, groups))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _execute(self, live: list[_Request], groups: list[_Group]) -> None:
        """Run one batch in a worker thread and answer its requests (a cancelled batch's
        requests are failed by :meth:`close`)."""
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self._compute, groups)
        except asyncio.CancelledError:
            _fail(live, BackendUnavailableError(f"model {self.name!r} is shutting down"))
            raise
        except Exception as exc:
            _fail(live, exc)
            return
        finally:
            self._running -= 1
            self._finished.set()
        for request, scored in zip(live, results, strict=True):
            if request.future.done():
                continue
            if isinstance(scored, Exception):
                request.future.set_exception(scored)
            else:
                request.future.set_result(scored)

    def _compute(self, groups: list[_Group]) -> list[_Batched | Exception]:
        """Runs in the worker thread: one predictor call per slot (chunked to the batch size).
        When a shared call raises, each of its requests is scored alone, so the error reaches
        only the requests whose inputs cause it."""
        results: list[_Batched | Exception] = []
        for group in groups:
            texts = [text for request in group.requests for text in request.texts]
            try:
                scored = self._score(group.predictor, texts)
            except Exception as exc:
                if len(group.requests) == 1:
                    results.append(exc)
                    continue
                results.extend(self._score_alone(group))
                continue
            offset = 0
            for request in group.requests:
                end = offset + len(request.texts)
                signals = (
                    None
                    if scored.signals is None
                    else {name: values[offset:end] for name, values in scored.signals.items()}
                )
                results.append(_Batched(scored.probabilities[offset:end], scored.seconds, signals))
                offset = end
        return results

    def _score_alone(self, group: _Group) -> list[_Batched | Exception]:
        results: list[_Batched | Exception] = []
        for request in group.requests:
            try:
                results.append(self._score(group.predictor, request.texts))
            except Exception as exc:
                results.append(exc)
        return results

    def _score(self, predictor: Predictor, texts: Sequence[Any]) -> _Batched:
        """Runs in the worker thread: predictor calls of at most ``max_batch_size`` texts, each
        followed by the chunk's input signals."""
        chunks: list[NDArray[np.float64]] = []
        signal_chunks: list[Signals] | None = []
        seconds = 0.0
        for start in range(0, len(texts), self.max_batch_size):
            chunk = texts[start : start + self.max_batch_size]
            started = time.perf_counter()
            answer = predictor.predict(chunk)
            if not isinstance(predictor, TextClassifier):  # driftloop's own are checked at load
                answer = np.asarray(answer, dtype=np.float64)
                check_answer(predictor, answer, len(chunk), "it", WrongAnswerError)
            chunks.append(answer)
            seconds += time.perf_counter() - started
            if signal_chunks is not None:
                signal_chunks = self._signals(predictor, chunk, signal_chunks)
            took = time.perf_counter() - started
            per_text = took / len(chunk)
            self._seconds_per_text = (
                per_text
                if not self._seconds_per_text
                else 0.9 * self._seconds_per_text + 0.1 * per_text
            )
            if self.observer is not None:
                self.observer(len(chunk))
        probabilities = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        return _Batched(probabilities, seconds, _joined(signal_chunks))

    def _signals(
        self, predictor: Predictor, chunk: Sequence[Any], found: list[Signals]
    ) -> list[Signals] | None:
        """``found`` and the chunk's input signals; None if they fail (which never fails the
        answer: the request's handler computes them itself, and logs why they fail)."""
        try:
            signals = {
                name: np.asarray(values, dtype=np.float64)
                for name, values in predictor.input_signals(chunk).items()
            }
        except Exception:
            logger.debug("input signals of a %s batch failed", self.name, exc_info=True)
            return None
        if any(values.shape != (len(chunk),) for values in signals.values()):
            return None
        found.append(signals)
        return found

    async def close(self) -> None:
        """Stop taking requests; fail what is still queued; release the worker thread."""
        self._closed = True
        tasks = [*([self._task] if self._task is not None else []), *self._batches]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pending = [*([self._carry] if self._carry else [])]
        if self._queue is not None:
            while not self._queue.empty():
                pending.append(self._queue.get_nowait())
        _fail(pending, BackendUnavailableError(f"model {self.name!r} is shutting down"))
        self._executor.shutdown(wait=True)


def _joined(chunks: list[Signals] | None) -> Signals | None:
    if chunks is None or not chunks:
        return None if chunks is None else {}
    if len(chunks) == 1:
        return chunks[0]
    return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}


def _fail(requests: Sequence[_Request], error: BaseException) -> None:
    for request in requests:
        if not request.future.done():
            request.future.set_exception(error)


def _group_by_predictor(requests: list[_Request]) -> list[_Group]:
    """Requests in order, grouped by the predictor they started on (results keep that order)."""
    groups: dict[int, _Group] = {}
    for request in requests:
        group = groups.get(id(request.predictor))
        if group is None:
            group = groups[id(request.predictor)] = _Group(request.predictor)
        group.requests.append(request)
    ordered: list[_Request] = [r for g in groups.values() for r in g.requests]
    requests[:] = ordered
    return list(groups.values())

"""Hot swap: each served model holds a :class:`ModelSlot` that is replaced by reference.

A new version is loaded (and tried on one text) beside the old one, off the event loop; only
then is ``served.slot`` reassigned, one atomic store. A request takes the slot once, when it
starts, so it finishes on the version it began with while new requests get the new one; the old
predictor is freed when its last request is done.

:class:`ModelSlotManager` loads the ``production`` version of every served model at start-up,
moves it on admin calls (deploy, rollback, reload) and polls the source every
``serving.registry_poll_interval`` so a deploy made by another process reaches this one.

Rollouts: while the registry has a ``canary`` or ``shadow`` alias (set by the retrain pipeline
in ``pipeline.deploy_mode: canary|shadow``), that version is loaded beside production with the
same load-then-swap safety and dropped when the alias goes. :meth:`ServedModel.choose` sends a
request to the canary with probability ``pipeline.canary_fraction``; the shadow only scores in
the background (see the app).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftloop.config import ServingConfig
from driftloop.drift.estimated_accuracy import accuracy_threshold
from driftloop.errors import (
    BackendUnavailableError,
    DriftloopError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
)
from driftloop.predictors import InputSchema, Predictor
from driftloop.predictors.loading import check_answer
from driftloop.serving.batching import MicroBatcher
from driftloop.serving.prometheus import ServingMetrics
from driftloop.serving.sources import CANARY, PRODUCTION, SHADOW, ModelSource, ModelVersionLike
from driftloop.timestamps import iso_utc

logger = logging.getLogger(__name__)

WARM_UP_TEXT = "driftloop warm-up"


@dataclass(frozen=True)
class ModelSlot:
    """One loaded version: immutable; a swap installs a new slot."""

    name: str
    version: int
    content_hash: str
    predictor: Predictor
    loaded_at: float
    info: ModelVersionLike
    accuracy_threshold: float | None = None
    """The confidence above which a prediction counts toward ``estimated_accuracy``
    (:func:`driftloop.drift.estimated_accuracy.accuracy_threshold`); None: not reported."""

    @property
    def labels(self) -> tuple[str, ...]:
        return self.predictor.labels


@dataclass(frozen=True)
class ServedModelStatus:
    """What ``GET /v1/models/{name}`` reports."""

    name: str
    ready: bool
    version: int | None
    content_hash: str | None
    labels: list[str]
    loaded_at: float | None
    created_at: str | None
    deployed_at: str | None
    error: str | None
    output: str | None = None
    """``classification`` or ``regression``."""
    inputs: dict[str, Any] | None = None
    """The loaded version's :class:`~driftloop.predictors.InputSchema`, as a dict."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ready": self.ready,
            "version": self.version,
            "content_hash": self.content_hash,
            "labels": self.labels,
            "loaded_at": iso_utc(self.loaded_at),
            "created_at": self.created_at,
            "deployed_at": self.deployed_at,
            "error": self.error,
            "output": self.output,
            "inputs": self.inputs,
        }


class ServedModel:
    """A model name being served: its current slot, its batcher and its swap lock."""

    def __init__(self, name: str, batcher: MicroBatcher) -> None:
        self.name = name
        self.batcher = batcher
        self.slot: ModelSlot | None = None
        self.canary: ModelSlot | None = None
        """The canary version while a canary rollout runs (else None)."""
        self.shadow: ModelSlot | None = None
        """The shadow version while a shadow rollout runs (else None)."""
        self.lock = asyncio.Lock()
        self.last_error: str | None = None

    def choose(self, rng: random.Random, canary_fraction: float) -> ModelSlot:
        """The slot that answers one request: the canary with probability
        ``canary_fraction`` while one is loaded, else production."""
        slot = self.current()
        canary = self.canary
        if canary is not None and rng.random() < canary_fraction:
            return canary
        return slot

    @property
    def inputs(self) -> InputSchema:
        """What the production version takes; :class:`BackendUnavailableError` (503) while
        none is loaded (whatever a request holds, it cannot be checked yet)."""
        return self.current().predictor.inputs

    def current(self) -> ModelSlot:
        slot = self.slot
        if slot is None:
            reason = f": {self.last_error}" if self.last_error else ""
            raise BackendUnavailableError(
                f"model {self.name!r} has no loaded {PRODUCTION} version yet{reason}"
            )
        return slot

    def status(self) -> ServedModelStatus:
        slot = self.slot
        if slot is None:
            return ServedModelStatus(
                self.name, False, None, None, [], None, None, None, self.last_error
            )
        return ServedModelStatus(
            self.name,
            True,
            slot.version,
            slot.content_hash,
            list(slot.labels),
            slot.loaded_at,
            _timestamp(getattr(slot.info, "created_at", None)),
            _timestamp(getattr(slot.info, "deployed_at", None)),
            self.last_error,
            slot.predictor.output,
            slot.predictor.inputs.to_dict(),
        )


class ModelSlotManager:
    """Loads, swaps and polls the served models."""

    def __init__(
        self,
        source: ModelSource,
        names: Iterable[str],
        settings: ServingConfig,
        metrics: ServingMetrics,
        *,
        on_swap: Callable[[ModelSlot], None] | None = None,
        canary_fraction: float = 0.1,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < canary_fraction < 1:
            raise InvalidInputError(f"canary_fraction must be in (0, 1), not {canary_fraction}")
        self.canary_fraction = canary_fraction
        self.rng = rng if rng is not None else random.Random()
        self.source = source
        self.settings = settings
        self.metrics = metrics
        self.on_swap = on_swap
        self.models: dict[str, ServedModel] = {}
        for name in names:
            batcher = MicroBatcher(
                name,
                max_batch_size=settings.max_batch_size,
                max_batch_wait_ms=settings.max_batch_wait_ms,
                observer=metrics.batch_size.labels(name).observe,
                parallel_batches=settings.parallel_batches,
                inline_below_ms=settings.inline_below_ms,
                max_queue_delay=settings.max_queue_delay,
            )
            self.models[name] = ServedModel(name, batcher)
        self._poller: asyncio.Task[None] | None = None

    def get(self, name: str) -> ServedModel:
        served = self.models.get(name)
        if served is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise NotFoundError(f"model {name!r} is not served here; served models: {known}")
        return served

    @property
    def ready(self) -> bool:
        return all(m.slot is not None for m in self.models.values())

    async def start(self, *, poll: bool = True) -> None:
        """Load every model's production version (a model without one stays not ready and is
        retried by the poller); then start polling."""
        for served in self.models.values():
            try:
                await self.sync(served.name)
                await self.sync_rollouts(served.name)
            except DriftloopError as exc:
                served.last_error = exc.message
                logger.warning("model %s not loaded at start-up: %s", served.name, exc.message)
        if poll and self._poller is None and self.settings.registry_poll_interval > 0:
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="poller")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        for served in self.models.values():
            await served.batcher.close()

    async def sync(self, name: str, *, force: bool = False) -> ModelSlot:
        """Serve what ``production`` points at now (reloading it when ``force``)."""
        served = self.get(name)
        async with served.lock:
            # Read the alias under the lock: read before a deploy or rollback that holds it,
            # it would be stale by the time this poll swaps, and undo that deploy.
            info = await asyncio.to_thread(self.source.resolve, name, PRODUCTION)
            current = served.slot
            if (
                not force
                and current is not None
                and current.version == info.version
                and current.content_hash == info.content_hash
            ):
                return current
            slot = await self._load(info)
            self._install(served, slot)
            return slot

    async def deploy(
        self,
        name: str,
        version: int,
        *,
        actor: str,
        before_move: Callable[[], object] | None = None,
    ) -> ModelSlot:
        """Load ``version`` beside the current one, point ``production`` at it, swap;
        ``before_move`` (a model served elsewhere: its deploy hook) runs once the version has
        loaded, before the alias moves, and an error from it leaves everything as it was."""
        served = self.get(name)
        async with served.lock:
            info = await asyncio.to_thread(self.source.get_version, name, version)
            slot = await self._load(info)
            if before_move is not None:
                await asyncio.to_thread(before_move)
            await asyncio.to_thread(self.source.set_alias, name, PRODUCTION, version, actor=actor)
            deployed = await asyncio.to_thread(self.source.get_version, name, version)
            slot = dataclasses.replace(slot, info=deployed)  # now with its deployed_at
            self._install(served, slot)
            return slot

    async def rollback(
        self, name: str, *, actor: str, before_move: Callable[[], object] | None = None
    ) -> ModelSlot:
        """Move ``production`` back to its previous version and serve it (``before_move`` as
        in :meth:`deploy`, run before the alias moves)."""
        served = self.get(name)
        async with served.lock:
            if before_move is not None:
                await asyncio.to_thread(before_move)
            info = await asyncio.to_thread(self.source.rollback, name, actor=actor)
            slot = await self._load(info)
            self._install(served, slot)
            return slot

    async def _load(self, info: ModelVersionLike) -> ModelSlot:
        def load_and_try() -> Predictor:
            predictor = self.source.load(info)
            what = f"{info.name} v{info.version}"
            try:
                example = WARM_UP_TEXT if predictor.inputs.is_text else predictor.example()
                answer = np.asarray(predictor.predict([example]), dtype=np.float64)
            except DriftloopError:
                raise
            except Exception as exc:  # the model's own code: it stays unloaded, others serve
                raise IntegrityError(
                    f"{what} failed its warm-up: {type(exc).__name__}: {exc}"
                ) from exc
            try:
                check_answer(predictor, answer, 1, what)
            except InvalidInputError as exc:
                raise IntegrityError(exc.message) from None
            return predictor

        predictor = await asyncio.to_thread(load_and_try)
        return ModelSlot(
            info.name,
            info.version,
            info.content_hash,
            predictor,
            time.time(),
            info,
            accuracy_threshold(info.reference),
        )

    def _install(self, served: ServedModel, slot: ModelSlot) -> None:
        previous = served.slot
        served.slot = slot  # the swap: one reference store
        served.last_error = None
        self.metrics.set_model_version(slot.name, slot.version, slot.content_hash)
        if previous is None or previous.version != slot.version:
            logger.info("serving %s v%d (%s)", slot.name, slot.version, slot.content_hash[:12])
        if self.on_swap is not None:
            self.on_swap(slot)

    def choose(self, served: ServedModel) -> ModelSlot:
        """The slot that answers one request of ``served`` (canary routing included)."""
        return served.choose(self.rng, self.canary_fraction)

    async def sync_rollouts(self, name: str) -> None:
        """Follow the ``canary`` and ``shadow`` aliases: load a new one beside production,
        drop one whose alias is gone (or that production has become)."""
        served = self.get(name)
        for alias in (CANARY, SHADOW):
            async with served.lock:  # the alias is read under the lock, as in sync()
                try:
                    info: ModelVersionLike | None = await asyncio.to_thread(
                        self.source.resolve, name, alias
                    )
                except NotFoundError:
                    info = None
                current = getattr(served, alias)
                production = served.slot
                if info is None or (production is not None and production.version == info.version):
                    if current is not None:
                        logger.info("%s %s v%d ended", name, alias, current.version)
                    setattr(served, alias, None)
                    continue
                if (
                    current is not None
                    and current.version == info.version
                    and current.content_hash == info.content_hash
                ):
                    continue
                slot = await self._load(info)
                setattr(served, alias, slot)  # one reference store, as for production
                logger.info("%s %s v%d loaded beside production", name, alias, slot.version)

    async def poll_once(self) -> None:
        for served in self.models.values():
            try:
                await self.sync(served.name)
            except DriftloopError as exc:
                if served.last_error != exc.message:
                    logger.warning(
                        "model %s: cannot follow %s: %s", served.name, PRODUCTION, exc.message
                    )
                served.last_error = exc.message
                continue
            try:
                await self.sync_rollouts(served.name)
            except DriftloopError as exc:  # production keeps serving; the next poll retries
                logger.warning("model %s: cannot follow its rollout: %s", served.name, exc.message)

    async def _poll(self) -> None:
        interval = self.settings.registry_poll_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self.poll_once()
            except Exception:
                logger.exception("model poller failed; retrying in %.1fs", interval)


def _timestamp(value: object) -> str | None:
    if value is None:
        return None
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return str(isoformat())
    if isinstance(value, int | float):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))
    return str(value)

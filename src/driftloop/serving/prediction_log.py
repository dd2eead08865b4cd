"""The prediction log: every prediction a server answered, and what a shadow version predicted for
the same text, kept in the store (table ``serving_predictions``) for
``serving.prediction_log_retention``, so that a feedback label meets its prediction whichever
worker, replica or restart of the server it reaches.

Writes stay off the request path. :meth:`PredictionLog.remember` and
:meth:`PredictionLog.add_shadow` put an entry (a tuple) in an in-memory buffer (a dict insert
under a lock); a background thread writes the buffer as one multi-row ``INSERT`` every
``flush_interval`` (0.2 s), or as soon as ``batch_size`` entries wait, and purges rows older than
the retention every ``purge_interval``. While the store is down the buffer keeps up to
``max_pending`` entries (the oldest are dropped past that, and counted) and the thread retries
with backoff; a stopping server writes what is left.

Reads (:meth:`PredictionLog.find`) look in this process's buffer first, then in the store. A
label may reach another worker before the buffer holding its prediction is written: prediction
ids are time-ordered (:func:`new_prediction_ids`: the first 12 hex digits are the issue time in
milliseconds), so an id issued less than ``settle`` seconds ago (5 s: the writer's interval plus
room for a busy store) that is not found yet is looked up again (after half ``flush_interval``,
then twice as long each time, at most a second apart) until it is found or that time is up. Ids
that old or older, and ids of another shape, are answered at once.

Each answered prediction carries the first 128 bits of the SHA-256 of its text
(:func:`text_digest`): a text sent with feedback for training must match it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from driftloop.background import BackgroundLoop
from driftloop.database import Database
from driftloop.errors import BackendUnavailableError
from driftloop.serving.tables import predictions

logger = logging.getLogger(__name__)

DEFAULT_RETENTION = 7 * 86400.0
"""``serving.prediction_log_retention``'s default: a week."""

_ID = re.compile(r"^[0-9a-f]{32}$")
_TIME_DIGITS = 12
_READ_CHUNK = 500
_MAX_BACKOFF = 5.0


def new_prediction_ids(count: int, now: float | None = None) -> list[str]:
    """``count`` time-ordered 128-bit ids in hex (UUIDv7's layout, without its version bits):
    48 bits of the issue time in milliseconds, then 80 random bits from one read of the OS's
    random source. Ordered by time, they also land at the end of the log's primary-key index."""
    stamp = f"{int((time.time() if now is None else now) * 1000) & 0xFFFF_FFFF_FFFF:012x}"
    pool = os.urandom(10 * count).hex()
    return [stamp + pool[i : i + 20] for i in range(0, 20 * count, 20)]


def issued_at(prediction_id: str) -> float | None:
    """When :func:`new_prediction_ids` issued ``prediction_id`` (seconds), or None for an id of
    another shape."""
    if not _ID.match(prediction_id):
        return None
    return int(prediction_id[:_TIME_DIGITS], 16) / 1000.0


def text_digest(text: str) -> str:
    """The first 128 bits of the text's SHA-256 (UTF-8), hex: what the log keeps of a text."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def external_log_id(model: str, client_id: str) -> str:
    """The log's key of a prediction made elsewhere (``POST /v1/models/{name}/predictions``):
    ``x`` and 31 hex digits of the SHA-256 of the model and the client's id. Never the shape of
    an id this server issues (32 hex digits), and one per model, so client ids can neither
    clash with served ones nor with another model's."""
    digest = hashlib.sha256(f"{model}\x00{client_id}".encode("utf-8", "surrogatepass"))
    return "x" + digest.hexdigest()[:31]


def log_id(model: str, prediction_id: str) -> str:
    """Where the log keeps the prediction a feedback item names: a served id as it is, a
    client's id under :func:`external_log_id`."""
    return prediction_id if _ID.match(prediction_id) else external_log_id(model, prediction_id)


def dialect_insert(dialect: str, table: sa.Table) -> Any:
    """An INSERT with this dialect's ``ON CONFLICT`` clauses (SQLite >= 3.24, PostgreSQL); each
    dialect's module is imported here, when a store of its kind writes (SQLAlchemy's PostgreSQL
    dialect alone costs a SQLite command a tenth of a second)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


@dataclass(frozen=True, slots=True)
class RecordedPrediction:
    """One answered prediction, as the log keeps it."""

    model: str
    version: int
    predicted_class: str
    timestamp: float
    shadow_version: int | None = None
    """The version that scored the same text in shadow (verification, or a shadow rollout)."""
    shadow_class: str | None = None
    text_hash: str | None = None
    """:func:`text_digest` of the scored text."""


@dataclass(frozen=True, slots=True)
class LoggedEntry:
    """A prediction made elsewhere, as :meth:`PredictionLog.write_external` writes it."""

    key: str
    """:func:`external_log_id` of the client's id."""
    model: str
    version: int
    predicted_class: str
    timestamp: float
    input_hash: str | None


_Entry = tuple[str, int, str, float, str | None]
"""An answered prediction in the buffer: model, version, predicted class, time, text hash (a
tuple: the request path builds one per text)."""

_Shadow = tuple[str, int, str, float]
"""A shadow's prediction in the buffer: model, version, predicted class, time."""


@dataclass(frozen=True)
class PredictionLogStats:
    """What the log has done since it started."""

    written: int
    """Rows written to the store (answered and shadow)."""
    pending: int
    """Entries waiting in memory to be written."""
    dropped: int
    """Entries lost because the store stayed down while ``max_pending`` waited."""
    purged: int
    """Rows deleted past the retention by this process."""


class PredictionLog:
    """Predictions by id, in the store's ``serving_predictions``, written in batches by a
    background thread (:meth:`start`, :meth:`close`); see the module docstring."""

    def __init__(
        self,
        database: Database,
        *,
        retention: float = DEFAULT_RETENTION,
        flush_interval: float = 0.2,
        batch_size: int = 5000,
        max_pending: int = 200_000,
        settle: float = 5.0,
        purge_interval: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if retention <= 0 or flush_interval <= 0 or purge_interval <= 0:
            raise ValueError("retention, flush_interval and purge_interval must be positive")
        self.database = database
        self.retention = float(retention)
        self.flush_interval = float(flush_interval)
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.settle = float(settle)
        self.purge_interval = float(purge_interval)
        self.clock = clock
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending: dict[str, _Entry] = {}
        self._pending_shadows: dict[str, _Shadow] = {}
        self._writing: dict[str, _Entry] = {}
        self._writing_shadows: dict[str, _Shadow] = {}
        self._writer = BackgroundLoop(
            self._write_and_purge,
            self.flush_interval,
            name="driftloop-prediction-log",
            logger=logger,
            failure="prediction log: the writer failed; retrying",
            wait_first=True,
        )
        self._next_purge = 0.0
        self._healthy = True
        self._written = 0
        self._dropped = 0
        self._purged = 0
        self._insert = dialect_insert(database.dialect, predictions).on_conflict_do_nothing(
            index_elements=[predictions.c.prediction_id, predictions.c.version]
        )

    # --- the request path -------------------------------------------------------------------

    def remember(
        self,
        prediction_id: str,
        model: str,
        version: int,
        predicted_class: str,
        timestamp: float,
        text_hash: str | None = None,
    ) -> None:
        """Log an answered prediction (written within ``flush_interval``); ``text_hash`` is
        :func:`text_digest` of the scored text."""
        with self._lock:
            pending = self._pending
            pending[prediction_id] = (model, version, predicted_class, timestamp, text_hash)
            if len(pending) + len(self._pending_shadows) > self.max_pending:
                self._drop_oldest()
            full = len(pending) >= self.batch_size
        if full:
            self._writer.wake()

    def add_shadow(
        self, prediction_id: str, model: str, version: int, predicted_class: str
    ) -> None:
        """Log what the shadow ``version`` predicted for the answered prediction
        ``prediction_id``."""
        with self._lock:
            self._pending_shadows[prediction_id] = (model, version, predicted_class, self.clock())
            if len(self._pending) + len(self._pending_shadows) > self.max_pending:
                self._drop_oldest()

    def _drop_oldest(self) -> None:
        """Make room (lock held): the store has been down for ``max_pending`` entries."""
        victims = self._pending if self._pending else self._pending_shadows
        del victims[next(iter(victims))]
        self._dropped += 1
        if self._dropped == 1 or self._dropped % 10_000 == 0:
            logger.warning(
                "prediction log: %d predictions dropped while the store %s is down "
                "(feedback for them will not be matched)",
                self._dropped,
                self.database.safe_url,
            )

    def write_external(self, entries: Sequence[LoggedEntry]) -> set[str]:
        """Write predictions made elsewhere now (not through the buffer: a label sent right
        after finds them from any process); returns the keys written, leaving out those
        logged before (with any version: the first logged stays).
        :class:`BackendUnavailableError` when the store cannot be written."""
        keys = [entry.key for entry in entries]
        columns = predictions.c
        try:
            with self.database.engine.begin() as connection:
                existing = set(
                    connection.execute(
                        sa.select(columns.prediction_id).where(
                            columns.prediction_id.in_(keys), columns.shadow.is_(False)
                        )
                    ).scalars()
                )
                rows = [
                    {
                        "prediction_id": e.key,
                        "model": e.model,
                        "version": e.version,
                        "predicted_class": e.predicted_class,
                        "shadow": False,
                        "text_hash": e.input_hash,
                        "created_at": e.timestamp,
                    }
                    for e in entries
                    if e.key not in existing
                ]
                if rows:
                    connection.execute(self._insert, rows)
        except SQLAlchemyError as exc:
            logger.warning(
                "prediction log: cannot write to the store %s: %s", self.database.safe_url, exc
            )
            raise BackendUnavailableError(
                "prediction log: the store is unavailable; try again later"
            ) from exc
        with self._lock:
            self._written += len(rows)
        return {str(row["prediction_id"]) for row in rows}

    async def find_labelled(self, model: str, ids: Sequence[str]) -> dict[str, RecordedPrediction]:
        """:meth:`find` for the ids feedback items of ``model`` name: served ids, and the
        client ids of predictions logged from elsewhere; keyed by the items' ids."""
        keys = {prediction_id: log_id(model, prediction_id) for prediction_id in ids}
        found = await self.find(list(dict.fromkeys(keys.values())))
        return {prediction_id: found[key] for prediction_id, key in keys.items() if key in found}

    # --- lookups ------------------------------------------------------------------------------

    async def find(self, ids: Sequence[str]) -> dict[str, RecordedPrediction]:
        """The logged predictions of ``ids`` (those found), each with its shadow's answer when a
        shadow scored it; waits up to ``settle`` for ids issued moments ago (see the module
        docstring). :class:`BackendUnavailableError` when the store cannot be read."""
        found = self.local(ids)
        missing = [i for i in dict.fromkeys(ids) if i not in found]
        if missing:
            found.update(
                self._with_local_shadows(await anyio.to_thread.run_sync(self.read, missing))
            )
        now = self.clock()
        waiting = [i for i in missing if i not in found and self._may_be_unwritten(i, now)]
        if not waiting:
            return found
        deadline = min(now, max(issued_at(i) or now for i in waiting)) + self.settle
        pause = self.flush_interval / 2
        while waiting and self.clock() < deadline:
            await anyio.sleep(min(pause, max(0.0, deadline - self.clock())))
            pause = min(pause * 2, 1.0)
            found.update(self.local(waiting))
            rest = [i for i in waiting if i not in found]
            if rest:
                found.update(
                    self._with_local_shadows(await anyio.to_thread.run_sync(self.read, rest))
                )
            waiting = [i for i in waiting if i not in found]
        return found

    def _with_local_shadows(
        self, stored: dict[str, RecordedPrediction]
    ) -> dict[str, RecordedPrediction]:
        """``stored`` with the shadows' answers this process has not written yet (a shadow
        scores after the answer, so its row may come one write later)."""
        with self._lock:
            shadows = {
                prediction_id: shadow
                for prediction_id in stored
                if (
                    shadow := self._pending_shadows.get(prediction_id)
                    or self._writing_shadows.get(prediction_id)
                )
                is not None
            }
        for prediction_id, shadow in shadows.items():
            entry = stored[prediction_id]
            if entry.shadow_version is None and shadow[0] == entry.model:
                stored[prediction_id] = dataclasses.replace(
                    entry, shadow_version=shadow[1], shadow_class=shadow[2]
                )
        return stored

    def _may_be_unwritten(self, prediction_id: str, now: float) -> bool:
        """Whether ``prediction_id`` was issued so recently (by any process, whose clock may be
        a second ahead) that its row may still wait in that process's buffer."""
        issued = issued_at(prediction_id)
        return issued is not None and now - self.settle <= issued <= now + 1.0

    def local(self, ids: Iterable[str]) -> dict[str, RecordedPrediction]:
        """The entries of ``ids`` that this process has not written yet."""
        found: dict[str, RecordedPrediction] = {}
        with self._lock:
            for prediction_id in ids:
                entry = self._pending.get(prediction_id) or self._writing.get(prediction_id)
                if entry is None:
                    continue
                shadow = self._pending_shadows.get(prediction_id) or self._writing_shadows.get(
                    prediction_id
                )
                found[prediction_id] = _recorded(entry, shadow)
        return found

    def read(self, ids: Sequence[str]) -> dict[str, RecordedPrediction]:
        """The predictions of ``ids`` in the store, younger than the retention (rows past it
        count as gone even before the purge deletes them)."""
        horizon = self.clock() - self.retention
        columns = predictions.c
        answered: dict[str, _Entry] = {}
        shadows: dict[str, _Shadow] = {}
        try:
            with self.database.engine.connect() as connection:
                for start in range(0, len(ids), _READ_CHUNK):
                    query = sa.select(predictions).where(
                        columns.prediction_id.in_(ids[start : start + _READ_CHUNK]),
                        columns.created_at >= horizon,
                    )
                    for row in connection.execute(query).mappings():
                        prediction_id = str(row["prediction_id"])
                        found: _Shadow = (
                            str(row["model"]),
                            int(row["version"]),
                            str(row["predicted_class"]),
                            float(row["created_at"]),
                        )
                        if row["shadow"]:
                            shadows[prediction_id] = found
                        else:
                            answered[prediction_id] = (*found, row["text_hash"])
        except SQLAlchemyError as exc:
            logger.warning(
                "prediction log: cannot read the store %s: %s", self.database.safe_url, exc
            )
            raise BackendUnavailableError(
                "prediction log: the store is unavailable; try again later"
            ) from exc
        return {
            prediction_id: _recorded(entry, shadows.get(prediction_id))
            for prediction_id, entry in answered.items()
        }

    # --- writing -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background thread that writes and purges (a
        :class:`~driftloop.background.BackgroundLoop`: it waits ``flush_interval``, or longer
        while the store is down, or until a full batch wakes it, then writes one batch)."""
        if self._writer.running:
            return
        self._next_purge = time.monotonic() + random.uniform(0.05, 1.0) * self.purge_interval
        self._writer.start()

    def close(self) -> None:
        """Stop the thread and write what is left (a last try, when the store is up)."""
        self._writer.stop()
        if not self.flush():
            logger.warning(
                "prediction log: %d predictions not written at shutdown", self.stats.pending
            )

    def _write_and_purge(self) -> None:
        """The writer's step: one batch, and a purge when one is due."""
        self._flush_once()
        if time.monotonic() >= self._next_purge and self._healthy:
            self._next_purge = time.monotonic() + self.purge_interval
            self.purge()

    def flush(self) -> bool:
        """Write everything buffered now; True when nothing is left."""
        while self._flush_once():
            pass
        return self._healthy and not (self._pending or self._pending_shadows)

    def _flush_once(self) -> bool:
        """Write one batch; True when a batch was written and more may wait."""
        with self._flush_lock:
            with self._lock:
                if not self._pending and not self._pending_shadows:
                    return False
                batch, self._pending = self._pending, {}
                shadows, self._pending_shadows = self._pending_shadows, {}
                self._writing, self._writing_shadows = batch, shadows
            rows = [
                {
                    "prediction_id": prediction_id,
                    "model": model,
                    "version": version,
                    "predicted_class": predicted,
                    "shadow": False,
                    "text_hash": text_hash,
                    "created_at": timestamp,
                }
                for prediction_id, (
                    model,
                    version,
                    predicted,
                    timestamp,
                    text_hash,
                ) in batch.items()
            ]
            rows += [
                {
                    "prediction_id": prediction_id,
                    "model": model,
                    "version": version,
                    "predicted_class": predicted,
                    "shadow": True,
                    "text_hash": None,
                    "created_at": timestamp,
                }
                for prediction_id, (model, version, predicted, timestamp) in shadows.items()
            ]
            try:
                with self.database.engine.begin() as connection:
                    connection.execute(self._insert, rows)
            except SQLAlchemyError as exc:
                self._failed(batch, shadows, exc)
                return False
            with self._lock:
                self._writing, self._writing_shadows = {}, {}
                self._written += len(rows)
            if not self._healthy:
                logger.info(
                    "prediction log: the store %s is back; writing again", self.database.safe_url
                )
            self._healthy = True
            self._writer.interval = self.flush_interval  # the writer's wait, backed off below
            return True

    def _failed(
        self, batch: dict[str, _Entry], shadows: dict[str, _Shadow], exc: SQLAlchemyError
    ) -> None:
        """Put a batch that could not be written back in front of the buffer, and back off."""
        with self._lock:
            self._pending = {**batch, **self._pending}
            self._pending_shadows = {**shadows, **self._pending_shadows}
            self._writing, self._writing_shadows = {}, {}
            while len(self._pending) + len(self._pending_shadows) > self.max_pending:
                self._drop_oldest()
        if self._healthy:
            logger.warning(
                "prediction log: cannot write to the store %s (%s); keeping up to %d "
                "predictions in memory and retrying",
                self.database.safe_url,
                exc,
                self.max_pending,
            )
        self._healthy = False
        self._writer.interval = min(self._writer.interval * 2, _MAX_BACKOFF)

    def purge(self, now: float | None = None) -> int:
        """Delete the rows older than the retention; returns how many."""
        horizon = (self.clock() if now is None else now) - self.retention
        try:
            with self.database.engine.begin() as connection:
                deleted = int(
                    connection.execute(
                        predictions.delete().where(predictions.c.created_at < horizon)
                    ).rowcount
                )
        except SQLAlchemyError as exc:
            logger.warning(
                "prediction log: cannot purge the store %s: %s", self.database.safe_url, exc
            )
            return 0
        with self._lock:
            self._purged += deleted
        return deleted

    @property
    def stats(self) -> PredictionLogStats:
        with self._lock:
            return PredictionLogStats(
                written=self._written,
                pending=len(self._pending)
                + len(self._pending_shadows)
                + len(self._writing)
                + len(self._writing_shadows),
                dropped=self._dropped,
                purged=self._purged,
            )


def _recorded(entry: _Entry, shadow: _Shadow | None) -> RecordedPrediction:
    model, version, predicted, timestamp, text_hash = entry
    if shadow is None or shadow[0] != model:
        return RecordedPrediction(model, version, predicted, timestamp, text_hash=text_hash)
    return RecordedPrediction(model, version, predicted, timestamp, shadow[1], shadow[2], text_hash)

"""Ground-truth feedback: true labels for earlier predictions, by prediction id.

The server remembers its most recent predictions (:class:`PredictionLog`, bounded) so that a
label arriving for one of them becomes a ``prediction_correct`` insight (1 or 0, tagged with the
model, the version and the predicted class) that realized-accuracy monitors aggregate. Every
label is stored (:class:`FeedbackStore`), known prediction or not; one sent with its text is
also kept as a labeled production sample, which the retrain pipeline merges into the training
data of a model with ``merge_feedback``.
"""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from driftloop.errors import BackendUnavailableError
from driftloop.serving.tables import feedback, feedback_texts
from driftloop.store import Database

DEFAULT_REMEMBERED = 100_000


@dataclass(frozen=True, slots=True)
class RecordedPrediction:
    model: str
    version: int
    predicted_class: str
    timestamp: float
    shadow_version: int | None = None
    """The version that scored the same text in shadow (verification, or a shadow rollout)."""
    shadow_class: str | None = None


class PredictionLog:
    """The last ``capacity`` predictions by id (oldest forgotten first); event-loop only."""

    def __init__(self, capacity: int = DEFAULT_REMEMBERED) -> None:
        self.capacity = capacity
        self._entries: dict[str, RecordedPrediction] = {}

    def remember(self, prediction_id: str, prediction: RecordedPrediction) -> None:
        entries = self._entries
        entries[prediction_id] = prediction
        if len(entries) > self.capacity:
            del entries[next(iter(entries))]

    def add_shadow(self, prediction_id: str, version: int, predicted_class: str) -> None:
        """Record what the shadow version predicted for a remembered prediction."""
        entry = self._entries.get(prediction_id)
        if entry is not None:
            self._entries[prediction_id] = dataclasses.replace(
                entry, shadow_version=version, shadow_class=predicted_class)

    def get(self, prediction_id: str) -> RecordedPrediction | None:
        return self._entries.get(prediction_id)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class FeedbackRecord:
    """One true label, with what the server knew of the prediction."""

    prediction_id: str
    model: str
    label: str
    version: int | None
    predicted_class: str | None
    key_id: str | None
    received_at: float
    text: str | None = None
    """The predicted text, when the sender included it."""

    shadow_version: int | None = None
    shadow_class: str | None = None

    @property
    def correct(self) -> bool | None:
        return None if self.predicted_class is None else self.predicted_class == self.label

    @property
    def shadow_correct_gap(self) -> float | None:
        """The shadow version's correctness minus the served one's, when a shadow scored it."""
        if self.shadow_class is None or self.predicted_class is None:
            return None
        return float(self.shadow_class == self.label) - float(self.predicted_class == self.label)


class FeedbackStore:
    """Stores feedback rows in ``serving_feedback``."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def record(self, records: Sequence[FeedbackRecord]) -> int:
        if not records:
            return 0
        rows = [
            {"prediction_id": r.prediction_id, "model": r.model, "label": r.label,
             "version": r.version, "predicted_class": r.predicted_class, "correct": r.correct,
             "key_id": r.key_id, "received_at": r.received_at}
            for r in records
        ]
        samples = [
            {"prediction_id": r.prediction_id, "model": r.model, "text": r.text,
             "label": r.label, "key_id": r.key_id, "received_at": r.received_at}
            for r in records if r.text is not None
        ]
        try:
            with self.database.engine.begin() as connection:
                connection.execute(feedback.insert(), rows)
                if samples:
                    connection.execute(feedback_texts.insert(), samples)
        except SQLAlchemyError as exc:
            raise BackendUnavailableError(
                f"feedback: cannot write to the store {self.database.safe_url}: {exc}") from exc
        return len(rows)

    def list(self, model: str | None = None, *, limit: int = 1000,
             newest: bool = False) -> list[FeedbackRecord]:
        """Feedback rows, oldest first (``newest``: the last ``limit``, newest first), each with
        the text sent with it, if any."""
        texts = feedback_texts.c
        sent_with = sa.and_(texts.prediction_id == feedback.c.prediction_id,
                            texts.model == feedback.c.model,
                            texts.received_at == feedback.c.received_at)
        order = feedback.c.feedback_id.desc() if newest else feedback.c.feedback_id
        query = (sa.select(feedback, texts.text)
                 .select_from(feedback.outerjoin(feedback_texts, sent_with))
                 .order_by(order).limit(limit))
        if model is not None:
            query = query.where(feedback.c.model == model)
        with self.database.engine.connect() as connection:
            return [
                FeedbackRecord(
                    prediction_id=row["prediction_id"], model=row["model"], label=row["label"],
                    version=row["version"], predicted_class=row["predicted_class"],
                    key_id=row["key_id"], received_at=float(row["received_at"]),
                    text=row["text"],
                )
                for row in connection.execute(query).mappings()
            ]

    def purge(self, model: str, *, key_id: str | None = None,
              received_before: float | None = None) -> int:
        """Delete ``model``'s feedback (labels and their texts), only that sent with ``key_id``
        and/or received before ``received_before`` when given; returns the labels deleted. A
        model that merges feedback no longer learns from it at its next retrain (versions
        trained before keep the snapshot they were trained on)."""
        conditions = {
            table: [table.c.model == model,
                    *([table.c.key_id == key_id] if key_id is not None else []),
                    *([table.c.received_at < received_before]
                      if received_before is not None else [])]
            for table in (feedback, feedback_texts)
        }
        try:
            with self.database.engine.begin() as connection:
                connection.execute(feedback_texts.delete().where(*conditions[feedback_texts]))
                deleted = connection.execute(feedback.delete().where(*conditions[feedback]))
        except SQLAlchemyError as exc:
            raise BackendUnavailableError(
                f"feedback: cannot write to the store {self.database.safe_url}: {exc}") from exc
        return int(deleted.rowcount)

    def labeled_samples(self, model: str) -> builtins.list[tuple[str, str, float]]:
        """``(text, label, received_at)`` of every label sent with its text for ``model``,
        oldest first."""
        columns = feedback_texts.c
        query = (sa.select(columns.text, columns.label, columns.received_at)
                 .where(columns.model == model).order_by(columns.sample_id))
        try:
            with self.database.engine.connect() as connection:
                return [(row[0], row[1], float(row[2])) for row in connection.execute(query)]
        except SQLAlchemyError as exc:
            raise BackendUnavailableError(
                f"feedback: cannot read the store {self.database.safe_url}: {exc}") from exc

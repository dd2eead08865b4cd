"""Ground-truth feedback: true labels for earlier predictions, by prediction id.

A label is checked (:func:`check_feedback`: at most ``serving.max_feedback_items`` items, each
label one of the model's classes, texts within the text limits), matched with its prediction in
the :class:`~driftloop.serving.prediction_log.PredictionLog` (:func:`match_feedback`; a text
sent with it must be the text that prediction scored) and stored (:class:`FeedbackStore`), known
prediction or not. A prediction has one label: a later label for the same id replaces the
stored one (the latest received wins), and only the first becomes a ``prediction_correct``
insight (1 or 0, tagged with the model, the version and the predicted class), which
realized-accuracy monitors aggregate. A label sent with its text is also kept as a labeled
production sample, which the retrain pipeline merges into the training data of a model with
``merge_feedback``.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from driftloop.config import ServingConfig
from driftloop.database import Database
from driftloop.errors import BackendUnavailableError, InvalidInputError
from driftloop.serving.prediction_log import RecordedPrediction, dialect_insert, text_digest
from driftloop.serving.schemas import FeedbackItem, LimitError, check_texts
from driftloop.serving.tables import feedback, feedback_texts

logger = logging.getLogger(__name__)

_NAMED = 5
"""Problems named in one error message (the rest are counted)."""


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


@dataclass(frozen=True)
class StoredFeedback:
    """What :meth:`FeedbackStore.record` did."""

    first: tuple[FeedbackRecord, ...]
    """The records that labelled their prediction for the first time (stored as new rows)."""
    relabelled: int
    """Records that replaced an earlier label of the same prediction (stored before, or earlier
    in the same call)."""


def check_feedback(
    items: Sequence[FeedbackItem], classes: Collection[str], settings: ServingConfig
) -> None:
    """Refuse a feedback request whole: more than ``serving.max_feedback_items`` items (413),
    a label that is not one of ``classes`` (422 naming the items), texts past
    ``serving.max_texts_per_request`` or ``serving.max_text_chars``."""
    if len(items) > settings.max_feedback_items:
        raise LimitError(
            f"{len(items)} feedback items in one request exceed serving.max_feedback_items "
            f"({settings.max_feedback_items})",
            "serving.max_feedback_items",
        )
    unknown = [(index, item.label) for index, item in enumerate(items) if item.label not in classes]
    if unknown:
        known = sorted(classes)
        listed = ", ".join(repr(c) for c in known[:20]) + (", ..." if len(known) > 20 else "")
        raise InvalidInputError(
            _problems([f"feedback item {index}'s label {label!r}" for index, label in unknown])
            + f" not one of the model's classes ({listed})"
        )
    with_text = [(index, item.text) for index, item in enumerate(items) if item.text is not None]
    check_texts(
        [text for _, text in with_text],
        settings,
        [f"feedback item {index}'s text" for index, _ in with_text],
    )


def match_feedback(
    items: Sequence[FeedbackItem],
    known: Mapping[str, RecordedPrediction],
    *,
    model: str,
    key_id: str | None,
    received_at: float,
) -> list[FeedbackRecord]:
    """The records of ``items``, each with what the log ``known`` says of its prediction (a
    prediction of another model counts as unknown). A text is accepted only for a prediction
    the log holds whose scored text it is (422 naming the items otherwise): training rows come
    only from traffic the model really served."""
    records: list[FeedbackRecord] = []
    refused: list[str] = []
    for index, item in enumerate(items):
        entry = known.get(item.prediction_id)
        if entry is not None and entry.model != model:
            entry = None
        if item.text is not None:
            if entry is None:
                refused.append(
                    f"feedback item {index}'s text (prediction {item.prediction_id!r}"
                    " is not in the prediction log)"
                )
            elif entry.text_hash != text_digest(item.text):
                refused.append(
                    f"feedback item {index}'s text (not the text that prediction "
                    f"{item.prediction_id!r} scored)"
                )
        records.append(
            FeedbackRecord(
                prediction_id=item.prediction_id,
                model=model,
                label=item.label,
                version=None if entry is None else entry.version,
                predicted_class=None if entry is None else entry.predicted_class,
                key_id=key_id,
                received_at=received_at,
                text=item.text,
                shadow_version=None if entry is None else entry.shadow_version,
                shadow_class=None if entry is None else entry.shadow_class,
            )
        )
    if refused:
        raise InvalidInputError(
            _problems(refused) + " refused: a text is kept for training only with a label for "
            "a prediction this model answered on that very text, within "
            "serving.prediction_log_retention; send the label without the text"
        )
    return records


def _problems(problems: Sequence[str]) -> str:
    named = "; ".join(problems[:_NAMED])
    more = len(problems) - _NAMED
    return (
        named
        + (f"; and {more} more" if more > 0 else "")
        + (" is" if len(problems) == 1 else " are")
    )


class FeedbackStore:
    """Stores feedback rows in ``serving_feedback`` (one per prediction) and the texts sent with
    them in ``serving_feedback_texts``."""

    def __init__(self, database: Database) -> None:
        self.database = database
        dialect = database.dialect
        columns = feedback.c
        self._insert_new = (
            dialect_insert(dialect, feedback)
            .on_conflict_do_nothing(index_elements=[columns.model, columns.prediction_id])
            .returning(columns.prediction_id)
        )
        predicted = sa.func.coalesce(
            sa.bindparam("b_predicted_class", type_=sa.String), columns.predicted_class
        )
        self._relabel = (
            feedback.update()
            .where(
                columns.model == sa.bindparam("b_model"),
                columns.prediction_id == sa.bindparam("b_prediction_id"),
                columns.received_at <= sa.bindparam("b_received_at"),
            )
            .values(
                label=sa.bindparam("b_label"),
                version=sa.func.coalesce(
                    sa.bindparam("b_version", type_=sa.Integer), columns.version
                ),
                predicted_class=predicted,
                correct=sa.case(
                    (predicted.is_(None), sa.null()),
                    (predicted == sa.bindparam("b_label"), sa.true()),
                    else_=sa.false(),
                ),
                key_id=sa.bindparam("b_key_id"),
                received_at=sa.bindparam("b_received_at"),
            )
        )
        texts = feedback_texts.c
        upsert = dialect_insert(dialect, feedback_texts)
        self._upsert_text = upsert.on_conflict_do_update(
            index_elements=[texts.model, texts.prediction_id],
            set_={
                "text": upsert.excluded.text,
                "label": upsert.excluded.label,
                "key_id": upsert.excluded.key_id,
                "received_at": upsert.excluded.received_at,
            },
            where=texts.received_at <= upsert.excluded.received_at,
        )
        self._relabel_text = (
            feedback_texts.update()
            .where(
                texts.model == sa.bindparam("b_model"),
                texts.prediction_id == sa.bindparam("b_prediction_id"),
                texts.received_at <= sa.bindparam("b_received_at"),
            )
            .values(
                label=sa.bindparam("b_label"),
                key_id=sa.bindparam("b_key_id"),
                received_at=sa.bindparam("b_received_at"),
            )
        )

    def record(self, records: Sequence[FeedbackRecord]) -> StoredFeedback:
        """Store ``records``, one label per ``(model, prediction_id)``: a new prediction id adds
        a row, a known one has its row updated (the latest ``received_at`` wins; the last of
        several records of one id in ``records``), its training sample too. Atomic."""
        latest: dict[tuple[str, str], FeedbackRecord] = {}
        for record in records:
            latest.pop((record.model, record.prediction_id), None)
            latest[(record.model, record.prediction_id)] = record
        if not latest:
            return StoredFeedback((), 0)
        by_model: dict[str, list[FeedbackRecord]] = {}
        for record in latest.values():
            by_model.setdefault(record.model, []).append(record)
        first: list[FeedbackRecord] = []
        try:
            with self.database.engine.begin() as connection:
                for model, group in by_model.items():
                    first += self._record_model(connection, model, group)
        except SQLAlchemyError as exc:
            logger.warning(
                "feedback: cannot write to the store %s: %s", self.database.safe_url, exc
            )
            raise BackendUnavailableError(
                "feedback: the store is unavailable; try again later"
            ) from exc
        return StoredFeedback(tuple(first), len(records) - len(first))

    def _record_model(
        self, connection: sa.Connection, model: str, records: list[FeedbackRecord]
    ) -> list[FeedbackRecord]:
        rows = [
            {
                "prediction_id": r.prediction_id,
                "model": r.model,
                "label": r.label,
                "version": r.version,
                "predicted_class": r.predicted_class,
                "correct": r.correct,
                "key_id": r.key_id,
                "received_at": r.received_at,
            }
            for r in records
        ]
        inserted = set(connection.execute(self._insert_new, rows).scalars())
        relabels = [_bound(row) for row in rows if row["prediction_id"] not in inserted]
        if relabels:
            connection.execute(self._relabel, relabels)
        samples = [
            {
                "prediction_id": r.prediction_id,
                "model": r.model,
                "text": r.text,
                "label": r.label,
                "key_id": r.key_id,
                "received_at": r.received_at,
            }
            for r in records
            if r.text is not None
        ]
        if samples:
            connection.execute(self._upsert_text, samples)
        text_relabels = [
            _bound(row)
            for row, r in zip(rows, records, strict=True)
            if r.text is None and r.prediction_id not in inserted
        ]
        if text_relabels:
            connection.execute(self._relabel_text, text_relabels)
        return [r for r in records if r.prediction_id in inserted]

    def list(
        self, model: str | None = None, *, limit: int = 1000, newest: bool = False
    ) -> list[FeedbackRecord]:
        """Feedback rows, oldest first (``newest``: the last ``limit``, newest first), each with
        the text sent with it, if any."""
        texts = feedback_texts.c
        sent_with = sa.and_(
            texts.prediction_id == feedback.c.prediction_id, texts.model == feedback.c.model
        )
        order = feedback.c.feedback_id.desc() if newest else feedback.c.feedback_id
        query = (
            sa.select(feedback, texts.text)
            .select_from(feedback.outerjoin(feedback_texts, sent_with))
            .order_by(order)
            .limit(limit)
        )
        if model is not None:
            query = query.where(feedback.c.model == model)
        with self.database.engine.connect() as connection:
            return [
                FeedbackRecord(
                    prediction_id=row["prediction_id"],
                    model=row["model"],
                    label=row["label"],
                    version=row["version"],
                    predicted_class=row["predicted_class"],
                    key_id=row["key_id"],
                    received_at=float(row["received_at"]),
                    text=row["text"],
                )
                for row in connection.execute(query).mappings()
            ]

    def purge(
        self, model: str, *, key_id: str | None = None, received_before: float | None = None
    ) -> int:
        """Delete ``model``'s feedback (labels and their texts), only that sent with ``key_id``
        and/or received before ``received_before`` when given; returns the labels deleted. A
        model that merges feedback no longer learns from it at its next retrain (versions
        trained before keep the snapshot they were trained on)."""
        conditions = {
            table: [
                table.c.model == model,
                *([table.c.key_id == key_id] if key_id is not None else []),
                *([table.c.received_at < received_before] if received_before is not None else []),
            ]
            for table in (feedback, feedback_texts)
        }
        try:
            with self.database.engine.begin() as connection:
                connection.execute(feedback_texts.delete().where(*conditions[feedback_texts]))
                deleted = connection.execute(feedback.delete().where(*conditions[feedback]))
        except SQLAlchemyError as exc:
            logger.warning(
                "feedback: cannot write to the store %s: %s", self.database.safe_url, exc
            )
            raise BackendUnavailableError(
                "feedback: the store is unavailable; try again later"
            ) from exc
        return int(deleted.rowcount)

    def labeled_samples(self, model: str) -> builtins.list[tuple[str, str, float]]:
        """``(text, label, received_at)`` of every label sent with its text for ``model``,
        oldest first (a relabelled sample is as old as its latest label)."""
        columns = feedback_texts.c
        query = (
            sa.select(columns.text, columns.label, columns.received_at)
            .where(columns.model == model)
            .order_by(columns.received_at, columns.sample_id)
        )
        try:
            with self.database.engine.connect() as connection:
                return [(row[0], row[1], float(row[2])) for row in connection.execute(query)]
        except SQLAlchemyError as exc:
            logger.warning("feedback: cannot read the store %s: %s", self.database.safe_url, exc)
            raise BackendUnavailableError(
                "feedback: the store is unavailable; try again later"
            ) from exc


def _bound(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's values as the ``b_``-prefixed parameters of the relabel statements."""
    return {
        f"b_{name}": row[name]
        for name in (
            "model",
            "prediction_id",
            "label",
            "version",
            "predicted_class",
            "key_id",
            "received_at",
        )
    }

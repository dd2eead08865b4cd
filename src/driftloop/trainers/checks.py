"""What every trainer checks before it fits: a clear :class:`InvalidInputError` for data no
model can be trained on, instead of a stack trace from deep inside a library."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from driftloop.errors import InvalidInputError
from driftloop.predictors import TEXT, InputSchema
from driftloop.trainers.base import TrainingData
from driftloop.trainers.evaluation import records_from_frame

MIN_ROWS_PER_CLASS = 5
"""A class needs this many rows to appear in the train, validation and held-out splits."""


@dataclass(frozen=True)
class CheckedData:
    """Training rows with a label (as a string) and the model's inputs (a text model's text as
    a string), blank rows removed."""

    frame: pd.DataFrame
    labels: tuple[str, ...]
    dropped_rows: int


def check_training_data(
    data: TrainingData,
    *,
    allowed_labels: Sequence[str] | None = None,
    min_rows_per_class: int = MIN_ROWS_PER_CLASS,
    inputs: InputSchema | None = TEXT,
) -> CheckedData:
    """Validate a snapshot for training and return its usable rows and sorted label set.

    ``inputs`` is the model's input schema: texts (the text and label columns are kept, as
    strings, rows without a text dropped), a record (its features' columns and the label are
    kept; every row must be a valid record), or None for a record model whose features are
    not declared (every column is kept). Refuses: no rows, a missing input or label column, a
    single class, classes too small to split, and (when ``allowed_labels`` is given) labels
    outside that set or configured labels with no rows.
    """
    frame = data.frame
    where = f"snapshot {data.snapshot_id}" if data.snapshot_id else "the training data"
    if len(frame) == 0:
        raise InvalidInputError(f"{where} is empty: there is nothing to train on")
    usable = _usable_rows(data, inputs, where)
    if len(usable) == 0:
        what = "a text" if inputs is not None and inputs.is_text else "its inputs"
        raise InvalidInputError(f"{where} has no row with both {what} and a label")
    counts = usable[data.label_column].value_counts()
    present = sorted(str(label) for label in counts.index)
    if allowed_labels is not None:
        _check_allowed(present, allowed_labels, where)
    if len(present) < 2:
        raise InvalidInputError(
            f"{where} has a single class ({present[0]!r}); a classifier needs at least two"
        )
    small = {str(label): int(n) for label, n in counts.items() if n < min_rows_per_class}
    if small:
        raise InvalidInputError(
            f"{where}: classes with fewer than {min_rows_per_class} rows cannot be split "
            f"into train, validation and held-out sets: {dict(sorted(small.items()))}"
        )
    return CheckedData(frame=usable, labels=tuple(present), dropped_rows=len(frame) - len(usable))


def _usable_rows(data: TrainingData, inputs: InputSchema | None, where: str) -> pd.DataFrame:
    """The rows with a label (and, for a text model, a text), with the columns the model's
    inputs need; a declared record's rows are checked feature by feature."""
    frame, label = data.frame, data.label_column
    text = inputs is not None and inputs.is_text
    if inputs is None or text:
        needed = [data.text_column, label] if text else [label]
    else:
        needed = [f.name for f in inputs.features if not f.optional] + [label]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise InvalidInputError(
            f"{where} has no column {', '.join(repr(c) for c in missing)}; "
            f"its columns are {[str(c) for c in frame.columns]} "
            + (
                "(set models.<name>.text_column / label_column to pick others)"
                if text or label in missing
                else "(the model's input schema names these features)"
            )
        )
    labels = frame[label].astype("string").fillna("").str.strip()
    if text:
        texts = frame[data.text_column].astype("string").fillna("").str.strip()
        rows = pd.DataFrame({data.text_column: texts, label: labels})
        usable = rows[(rows[data.text_column] != "") & (rows[label] != "")]
        return usable.astype(str).reset_index(drop=True)
    columns = (
        [c for c in frame.columns if c != label]
        if inputs is None
        else [f.name for f in inputs.features if f.name in frame.columns]
    )
    usable = frame[columns].assign(**{label: labels.astype(str)})[labels != ""]
    usable = usable.reset_index(drop=True)
    if inputs is not None:
        try:
            records_from_frame(inputs, usable)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{where}: {exc.message}") from exc
    return usable


def _check_allowed(present: list[str], allowed_labels: Sequence[str], where: str) -> None:
    allowed = [str(label) for label in allowed_labels]
    unknown = sorted(set(present) - set(allowed))
    if unknown:
        raise InvalidInputError(
            f"{where} has labels outside the model's label set: {unknown}; "
            f"configured labels: {allowed}"
        )
    absent = sorted(set(allowed) - set(present))
    if absent:
        raise InvalidInputError(
            f"{where} has no rows for the configured labels {absent}; "
            "a model cannot learn a class it never sees"
        )

"""What every trainer checks before it fits: a clear :class:`InvalidInputError` for data no
model can be trained on, instead of a stack trace from deep inside a library."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from driftloop.errors import InvalidInputError
from driftloop.trainers.base import TrainingData

MIN_ROWS_PER_CLASS = 5
"""A class needs this many rows to appear in the train, validation and held-out splits."""


@dataclass(frozen=True)
class CheckedData:
    """Training rows with text and label as strings, blank rows removed."""

    frame: pd.DataFrame
    labels: tuple[str, ...]
    dropped_rows: int


def check_training_data(
    data: TrainingData,
    *,
    allowed_labels: Sequence[str] | None = None,
    min_rows_per_class: int = MIN_ROWS_PER_CLASS,
) -> CheckedData:
    """Validate a snapshot for training and return its usable rows and sorted label set.

    Refuses: no rows, a missing text or label column, a single class, classes too small to
    split, and (when ``allowed_labels`` is given) labels outside that set or configured labels
    with no rows.
    """
    frame = data.frame
    where = f"snapshot {data.snapshot_id}" if data.snapshot_id else "the training data"
    if len(frame) == 0:
        raise InvalidInputError(f"{where} is empty: there is nothing to train on")
    missing = [c for c in (data.text_column, data.label_column) if c not in frame.columns]
    if missing:
        raise InvalidInputError(
            f"{where} has no column {', '.join(repr(c) for c in missing)}; "
            f"its columns are {[str(c) for c in frame.columns]} "
            "(set models.<name>.text_column / label_column to pick others)"
        )
    rows = pd.DataFrame(
        {
            data.text_column: frame[data.text_column].astype("string").fillna("").str.strip(),
            data.label_column: frame[data.label_column].astype("string").fillna("").str.strip(),
        }
    )
    usable = rows[(rows[data.text_column] != "") & (rows[data.label_column] != "")]
    usable = usable.astype(str).reset_index(drop=True)
    if len(usable) == 0:
        raise InvalidInputError(f"{where} has no row with both a text and a label")
    counts = usable[data.label_column].value_counts()
    present = sorted(str(label) for label in counts.index)
    if allowed_labels is not None:
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

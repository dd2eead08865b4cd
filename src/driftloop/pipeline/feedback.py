"""Merging feedback-labeled production samples into a model's training data.

Labels that production clients sent with their texts (``POST .../feedback`` with ``text``) are
the freshest ground truth there is: they are the traffic the model serves. A model with
``merge_feedback`` retrains on its newest snapshot plus these samples; the merged rows are
stored as a new snapshot of the dataset, so the new version records a snapshot id and hash like
any other, and the next retrain knows which texts its production model has seen.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

LabeledSample = tuple[str, str, float]
"""``(text, label, received_at)``: one label that production feedback sent with its text."""


@dataclass(frozen=True)
class FeedbackMerge:
    """The training rows after a merge, and what the merge did."""

    frame: pd.DataFrame
    added: int
    """Samples whose text the snapshot did not hold."""
    relabelled: int
    """Snapshot texts whose label newer feedback changed."""
    unknown_labels: dict[str, int]
    """Samples left out because their label is not one of the model's classes, by label."""

    @property
    def changed(self) -> bool:
        return self.added > 0 or self.relabelled > 0


def merge_feedback(
    frame: pd.DataFrame,
    samples: Sequence[LabeledSample],
    *,
    text_column: str,
    label_column: str,
    labels: Collection[str],
    snapshot_time: float,
    label_times: Mapping[str, float] | None = None,
) -> FeedbackMerge:
    """``frame`` (a snapshot made at ``snapshot_time``; ``label_times`` gives an earlier time for
    the texts whose label came from an older snapshot) with ``samples`` (oldest first) merged
    in. The newest label of a text wins: a later sample over an earlier one, and a sample over
    the snapshot's rows of that text only when it arrived after the snapshot was made (a label
    corrected in a newer snapshot is not overturned by older feedback). Relabelled rows keep
    their other columns; added rows have them empty. Samples whose label is not in ``labels``
    are left out (a typo in a labelling tool must not add a class)."""
    import pandas as pd  # a retrain merges: the modules that only read do not pay

    latest: dict[str, tuple[str, float]] = {}
    unknown: dict[str, int] = {}
    for text, label, received_at in samples:
        if label in labels:
            latest[text] = (label, received_at)
        else:
            unknown[label] = unknown.get(label, 0) + 1
    texts = frame[text_column].astype(str)
    snapshot_labels = frame[label_column].astype(str)
    held = set(texts)
    added = {text: label for text, (label, _) in latest.items() if text not in held}
    newer = {
        text: label
        for text, (label, received_at) in latest.items()
        if text in held and received_at > (label_times or {}).get(text, snapshot_time)
    }
    wanted = texts.map(newer)
    stale = wanted.notna() & (wanted != snapshot_labels)
    relabelled = texts[stale].nunique()
    if not added and not relabelled:
        return FeedbackMerge(frame, 0, 0, unknown)
    merged = frame.copy()
    merged.loc[stale, label_column] = wanted[stale]
    fresh = pd.DataFrame({column: "" for column in frame.columns}, index=range(len(added)))
    fresh[text_column] = list(added)
    fresh[label_column] = list(added.values())
    return FeedbackMerge(
        pd.concat([merged, fresh], ignore_index=True), len(added), int(relabelled), unknown
    )

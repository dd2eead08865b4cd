"""Merging feedback-labeled production samples into a model's training data.

Labels that production clients sent with their texts (``POST .../feedback`` with ``text``) are
the freshest ground truth there is: they are the traffic the model serves. A model with
``merge_feedback`` retrains on its newest snapshot plus these samples; the merged rows are
stored as a new snapshot of the dataset, so the new version records a snapshot id and hash like
any other, and the next retrain knows which texts its production model has seen.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class FeedbackMerge:
    """The training rows after a merge, and what the merge did."""

    frame: pd.DataFrame
    added: int
    """Samples whose text the snapshot did not hold."""
    relabelled: int
    """Snapshot texts whose label the feedback changed (the feedback's label wins)."""
    unknown_labels: dict[str, int]
    """Samples left out because their label is not one of the model's classes, by label."""

    @property
    def changed(self) -> bool:
        return self.added > 0 or self.relabelled > 0


def merge_feedback(
    frame: pd.DataFrame, samples: Sequence[tuple[str, str]], *, text_column: str,
    label_column: str, labels: Collection[str],
) -> FeedbackMerge:
    """``frame`` with ``samples`` (``(text, label)``, oldest first) merged in: a text's latest
    label wins, over earlier feedback and over the snapshot's row(s) of the same text; samples
    whose label is not in ``labels`` are left out (a typo in a labelling tool must not add a
    class). Columns other than the text and the label are empty on added rows."""
    latest: dict[str, str] = {}
    unknown: dict[str, int] = {}
    for text, label in samples:
        if label in labels:
            latest[text] = label
        else:
            unknown[label] = unknown.get(label, 0) + 1
    texts = frame[text_column].astype(str)
    known = dict(zip(texts, frame[label_column].astype(str), strict=True))
    added = {t: label for t, label in latest.items() if t not in known}
    relabelled = {t: label for t, label in latest.items() if t in known and known[t] != label}
    if not added and not relabelled:
        return FeedbackMerge(frame, 0, 0, unknown)
    kept = frame[~texts.isin(relabelled.keys())]
    fresh = pd.DataFrame({column: "" for column in frame.columns},
                         index=range(len(added) + len(relabelled)))
    merged_samples = {**relabelled, **added}
    fresh[text_column] = list(merged_samples)
    fresh[label_column] = list(merged_samples.values())
    merged = pd.concat([kept, fresh], ignore_index=True)
    return FeedbackMerge(merged, len(added), len(relabelled), unknown)

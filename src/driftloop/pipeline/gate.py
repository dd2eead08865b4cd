"""The quality gate: a candidate replaces production only if it is clearly better on fresh data.

"Fresh" means rows of the newest snapshot that the production model never trained on: a
held-out set drawn from data production has seen would favour it unfairly. When the newest
snapshot brings too few new rows, the held-out set is a plain random split (and says so).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from driftloop.config import GateConfig
from driftloop.predictors import Evaluation, Predictor
from driftloop.trainers.evaluation import align_probabilities, evaluate_probabilities

if TYPE_CHECKING:  # frames arrive built; this module never makes one
    import pandas as pd


@dataclass(frozen=True)
class GateDecision:
    accepted: bool
    candidate: Evaluation
    production: Evaluation | None
    reasons: list[str]
    holdout_rows: int
    fresh_holdout: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GateSplit:
    train: pd.DataFrame
    holdout: pd.DataFrame
    fresh: bool
    fresh_rows: int


def split_for_gate(
    frame: pd.DataFrame,
    text_column: str,
    label_column: str,
    seen_texts: set[str],
    *,
    fraction: float,
    min_fresh_rows: int,
    seed: int,
) -> GateSplit:
    """Train on everything but the held-out rows; hold out rows production never saw."""
    fresh_mask = ~frame[text_column].astype(str).isin(seen_texts)
    fresh_rows = int(fresh_mask.sum())
    fresh = fresh_rows >= min_fresh_rows
    pool = frame[fresh_mask] if fresh else frame
    labels = pool[label_column]
    stratify = labels if labels.value_counts().min() >= 2 else None
    from sklearn.model_selection import train_test_split  # the gate runs in a worker only

    _, held_index = train_test_split(
        pool.index.to_numpy(),
        test_size=fraction,
        random_state=seed,
        stratify=None if stratify is None else stratify.to_numpy(),
    )
    holdout = frame.loc[held_index]
    train = frame.drop(index=held_index)
    return GateSplit(
        train.reset_index(drop=True), holdout.reset_index(drop=True), fresh, fresh_rows
    )


def evaluate_on_holdout(
    predictor: Predictor,
    holdout: pd.DataFrame,
    text_column: str,
    label_column: str,
    labels: Sequence[str],
) -> Evaluation:
    texts = holdout[text_column].astype(str).tolist()
    probs = align_probabilities(predictor.predict_proba(texts), predictor.labels, labels)
    index = {label: i for i, label in enumerate(labels)}
    y = np.array([index[label] for label in holdout[label_column].astype(str)], dtype=np.int64)
    return evaluate_probabilities(probs, y, labels)


def decide(
    candidate: Evaluation,
    production: Evaluation | None,
    gate: GateConfig,
    *,
    holdout_rows: int,
    fresh_holdout: bool,
) -> GateDecision:
    reasons: list[str] = []
    if not fresh_holdout:
        reasons.append(
            "too few new rows: held-out set is a random split that production may have trained on"
        )
    if production is None:
        reasons.append("no production model: the candidate is accepted")
        return GateDecision(True, candidate, None, reasons, holdout_rows, fresh_holdout)
    gain = candidate.macro_f1 - production.macro_f1
    f1_ok = gain >= gate.min_macro_f1_gain
    reasons.append(
        f"macro-F1 {candidate.macro_f1:.3f} vs production {production.macro_f1:.3f} "
        f"(gain {gain:+.3f}, needs >= {gate.min_macro_f1_gain:+.3f}): "
        f"{'pass' if f1_ok else 'fail'}"
    )
    ece_delta = candidate.ece - production.ece
    ece_ok = ece_delta <= gate.max_ece_increase
    reasons.append(
        f"ECE {candidate.ece:.3f} vs production {production.ece:.3f} "
        f"(change {ece_delta:+.3f}, allowed <= {gate.max_ece_increase:+.3f}): "
        f"{'pass' if ece_ok else 'fail'}"
    )
    return GateDecision(
        f1_ok and ece_ok, candidate, production, reasons, holdout_rows, fresh_holdout
    )

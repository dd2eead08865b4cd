"""The quality gate: a candidate replaces production only if it is clearly better on fresh data.

"Fresh" means rows of the newest snapshot that the production model never trained on: a
held-out set drawn from data production has seen would favour it unfairly. When the newest
snapshot brings too few new rows, the held-out set is a plain random split (and says so). A row
is known by its text, or for a record model (no text column) by all its feature columns.

What "better" means follows the model's output kind (``GateConfig.primary_metric``): a
classifier is compared on macro-F1 (or accuracy), and its calibration (ECE) may not worsen by
more than ``max_ece_increase``; a regression model on RMSE (or MAE), where lower is better.
The candidate must gain at least the margin (``min_gain``, in the metric's own units).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from driftloop.config import GateConfig
from driftloop.errors import ConfigError, TrainingError
from driftloop.predictors import (
    Evaluation,
    ModelEvaluation,
    OutputKind,
    Predictor,
    RegressionEvaluation,
)
from driftloop.trainers.evaluation import predictor_evaluation, split_holdout

if TYPE_CHECKING:  # frames arrive built; this module never makes one
    import pandas as pd

METRIC_NAMES = {"macro_f1": "macro-F1", "accuracy": "accuracy", "mae": "MAE", "rmse": "RMSE"}
LOWER_IS_BETTER = frozenset({"mae", "rmse"})


@dataclass(frozen=True)
class GateDecision:
    accepted: bool
    candidate: ModelEvaluation
    production: ModelEvaluation | None
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


def row_keys(frame: pd.DataFrame, text_column: str, label_column: str) -> pd.Series[str]:
    """What tells rows apart: the text, or (no text column) every column but the label."""
    if text_column in frame:
        return frame[text_column].astype(str)
    columns = sorted(str(c) for c in frame.columns if c != label_column)
    return frame[columns].astype(str).agg("\x1f".join, axis=1)


def seen_keys(frame: pd.DataFrame, text_column: str, label_column: str) -> set[str]:
    """The :func:`row_keys` of the rows production trained on."""
    return set(row_keys(frame, text_column, label_column)) if len(frame) else set()


def split_for_gate(
    frame: pd.DataFrame,
    text_column: str,
    label_column: str,
    seen_texts: set[str],
    *,
    fraction: float,
    min_fresh_rows: int,
    seed: int,
    output: str = "classification",
) -> GateSplit:
    """Train on everything but the held-out rows; hold out rows production never saw
    (``seen_texts``: their :func:`row_keys`). Class labels are stratified, regression
    targets are not."""
    fresh_mask = ~row_keys(frame, text_column, label_column).isin(seen_texts)
    fresh_rows = int(fresh_mask.sum())
    fresh = fresh_rows >= min_fresh_rows
    pool = frame[fresh_mask] if fresh else frame
    labels = pool[label_column]
    stratify = labels if output == "classification" and labels.value_counts().min() >= 2 else None
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


def split_for_remote(
    frame: pd.DataFrame,
    text_column: str,
    label_column: str,
    seen_texts: set[str],
    *,
    fraction: float,
    min_fresh_rows: int,
    seed: int,
    output: OutputKind = "classification",
) -> GateSplit:
    """The gate's rows for a candidate trained elsewhere: the rows its workflow was not given
    (``split_holdout`` with the same fraction, seed and output kind, as
    ``GET /v1/models/{name}/training-data`` leaves them out: stratified by class for a
    classifier, at random for a regression model), only those production never saw
    (``seen_texts``: their :func:`row_keys`) when enough of them are new."""
    train, held_out = split_holdout(frame, label_column, fraction, seed, output=output)
    new = ~row_keys(held_out, text_column, label_column).isin(seen_texts)
    fresh_rows = int((~row_keys(frame, text_column, label_column).isin(seen_texts)).sum())
    fresh = int(new.sum()) >= min_fresh_rows
    holdout = held_out[new].reset_index(drop=True) if fresh else held_out
    return GateSplit(train, holdout, fresh, fresh_rows)


def evaluate_on_holdout(
    predictor: Predictor,
    holdout: pd.DataFrame,
    text_column: str,
    label_column: str,
    labels: Sequence[str],
) -> ModelEvaluation:
    """The predictor's quality on the held-out rows, by its input and output kinds (``labels``:
    the classes a classifier's columns are aligned to; a regression model ignores them)."""
    return predictor_evaluation(predictor, holdout, text_column, label_column, labels)


def decide(
    candidate: ModelEvaluation,
    production: ModelEvaluation | None,
    gate: GateConfig,
    *,
    holdout_rows: int,
    fresh_holdout: bool,
    model: str = "the model",
) -> GateDecision:
    reasons: list[str] = []
    if not fresh_holdout:
        reasons.append(
            "too few new rows: held-out set is a random split that production may have trained on"
        )
    output = _output_of(candidate)
    metric = gate.metric_for(output)
    if metric not in gate.metrics_for(output):
        raise ConfigError(
            f"gate primary_metric {metric!r} cannot gate {model}: it is a {output} model; "
            f"use one of {', '.join(gate.metrics_for(output))}"
        )
    if production is None:
        reasons.append("no production model: the candidate is accepted")
        return GateDecision(True, candidate, None, reasons, holdout_rows, fresh_holdout)
    if _output_of(production) != output:
        raise TrainingError(
            f"the candidate of {model} is a {output} model but production is a "
            f"{_output_of(production)} model: the gate cannot compare them"
        )
    passed = _primary_check(metric, candidate, production, gate.margin_for(metric), reasons)
    if isinstance(candidate, Evaluation) and isinstance(production, Evaluation):
        passed = _ece_check(candidate, production, gate, reasons) and passed
    elif isinstance(candidate, RegressionEvaluation) and isinstance(
        production, RegressionEvaluation
    ):
        reasons.append(_regression_report(candidate, production))
    return GateDecision(passed, candidate, production, reasons, holdout_rows, fresh_holdout)


def _output_of(evaluation: ModelEvaluation) -> str:
    return "regression" if isinstance(evaluation, RegressionEvaluation) else "classification"


def _primary_check(
    metric: str,
    candidate: ModelEvaluation,
    production: ModelEvaluation,
    margin: float,
    reasons: list[str],
) -> bool:
    """The candidate gains at least ``margin`` on ``metric`` (a decrease for an error)."""
    ours, theirs = float(getattr(candidate, metric)), float(getattr(production, metric))
    lower = metric in LOWER_IS_BETTER
    gain = theirs - ours if lower else ours - theirs
    passed = gain >= margin
    reasons.append(
        f"{METRIC_NAMES[metric]} {ours:.3f} vs production {theirs:.3f} "
        f"(gain {gain:+.3f}{', lower is better' if lower else ''}, needs >= {margin:+.3f}): "
        f"{'pass' if passed else 'fail'}"
    )
    return passed


def _ece_check(
    candidate: Evaluation, production: Evaluation, gate: GateConfig, reasons: list[str]
) -> bool:
    ece_delta = candidate.ece - production.ece
    passed = ece_delta <= gate.max_ece_increase
    reasons.append(
        f"ECE {candidate.ece:.3f} vs production {production.ece:.3f} "
        f"(change {ece_delta:+.3f}, allowed <= {gate.max_ece_increase:+.3f}): "
        f"{'pass' if passed else 'fail'}"
    )
    return passed


def _regression_report(candidate: RegressionEvaluation, production: RegressionEvaluation) -> str:
    return (
        f"for the record: MAE {candidate.mae:.3f} vs production {production.mae:.3f}, "
        f"RMSE {candidate.rmse:.3f} vs {production.rmse:.3f}, "
        f"R² {candidate.r2:.3f} vs {production.r2:.3f}"
    )

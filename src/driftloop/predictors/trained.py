"""What a trainer hands over: a :class:`TrainedModel`, a predictor with its evaluation and
reference profile. It lives beside the contract, not in ``trainers/``, so the model registry
(which stores it) depends on the contract only and never on training code."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftloop.predictors.base import ModelEvaluation, Predictor, ReferenceProfile


@dataclass
class TrainedModel:
    """A calibrated predictor, its quality on a held-out split, how it behaved there, and the
    parameters it was trained with."""

    predictor: Predictor
    evaluation: ModelEvaluation
    reference: ReferenceProfile
    params: dict[str, Any] = field(default_factory=dict)
    model_dir: Path | None = None
    """The model directory to register as it is, for a predictor that cannot save itself
    (custom code written by a ``command`` or ``notebook`` trainer); None: save the predictor."""
    keep_alive: object = field(default=None, repr=False, compare=False)
    """What keeps ``model_dir`` on disk (a temporary directory, removed with this object)."""

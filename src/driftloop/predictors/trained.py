"""What a trainer hands over: a :class:`TrainedModel`, a predictor with its evaluation and
reference profile. It lives beside the contract, not in ``trainers/``, so the model registry
(which stores it) depends on the contract only and never on training code."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from driftloop.predictors.base import Evaluation, Predictor, ReferenceProfile


@dataclass
class TrainedModel:
    """A calibrated predictor, its quality on a held-out split, how it behaved there, and the
    parameters it was trained with."""

    predictor: Predictor
    evaluation: Evaluation
    reference: ReferenceProfile
    params: dict[str, Any] = field(default_factory=dict)

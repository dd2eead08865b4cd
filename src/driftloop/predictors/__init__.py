"""The model contract: :class:`Predictor`, its evaluation and reference profile."""

from driftloop.predictors.base import (
    MANIFEST,
    PREDICTORS,
    Evaluation,
    Predictor,
    ReferenceProfile,
    load_predictor,
    softmax,
)

__all__ = ["MANIFEST", "PREDICTORS", "Evaluation", "Predictor", "ReferenceProfile",
           "load_predictor", "softmax"]

"""The model contract: :class:`Predictor`, its evaluation and reference profile."""

from driftloop.predictors.base import (
    MANIFEST,
    PREDICTOR_FORMATS,
    Evaluation,
    Predictor,
    ReferenceProfile,
    load_predictor,
    softmax,
)

__all__ = ["MANIFEST", "PREDICTOR_FORMATS", "Evaluation", "Predictor", "ReferenceProfile",
           "load_predictor", "softmax"]

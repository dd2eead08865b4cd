"""The model contract: :class:`Predictor`, its inputs and output, evaluation and reference
profile, and how a model directory finds its predictor."""

from driftloop.predictors.base import (
    MANIFEST,
    PREDICTION,
    PREDICTORS,
    Evaluation,
    ModelEvaluation,
    PredictionError,
    Predictor,
    ReferenceProfile,
    RegressionEvaluation,
    TextClassifier,
    evaluation_from_dict,
    softmax,
)
from driftloop.predictors.loading import check_predictor, load_predictor, read_manifest
from driftloop.predictors.schema import TEXT, Feature, InputSchema, OutputKind

__all__ = [
    "MANIFEST",
    "PREDICTION",
    "PREDICTORS",
    "TEXT",
    "Evaluation",
    "Feature",
    "InputSchema",
    "ModelEvaluation",
    "OutputKind",
    "PredictionError",
    "Predictor",
    "ReferenceProfile",
    "RegressionEvaluation",
    "TextClassifier",
    "check_predictor",
    "evaluation_from_dict",
    "load_predictor",
    "read_manifest",
    "softmax",
]

"""The contract between a model and everything that serves, monitors or gates it.

A :class:`Predictor` is a loaded model: built from a model directory (:meth:`Predictor.
load_files`), it declares its :attr:`~Predictor.inputs` (texts, or records of typed features:
:mod:`driftloop.predictors.schema`) and its :attr:`~Predictor.output` kind (classification or
regression), and :meth:`~Predictor.predict` answers a batch of inputs at once.
:class:`TextClassifier` is the calibrated text classifier driftloop trains itself (logits,
temperature-scaled softmax). A model directory holds ``driftloop-model.json``, whose ``format``
names a registered predictor or whose ``predictor`` names a module file inside the directory
(:mod:`driftloop.predictors.loading`).

:class:`Evaluation` is a model's quality on a held-out split and :class:`ReferenceProfile` how
it behaved there, which drift detectors and relative thresholds compare live traffic against.

Serving, monitors and the registry depend on this package only; trainers produce what it
defines.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from driftloop.backends import PluginFamily
from driftloop.errors import InvalidInputError
from driftloop.errors import PredictionError as PredictionError  # the old import path
from driftloop.predictors.schema import TEXT, InputSchema, OutputKind, feature_references

if TYPE_CHECKING:  # numpy is imported where arrays are made: reading a model version's record
    # (``driftloop models ls``, ``status``) does not pay for it
    import numpy as np
    from numpy.typing import NDArray

MANIFEST = "driftloop-model.json"
PREDICTION = "prediction"
"""The metric a regression model's values are reported under (and profiled as)."""

PREDICTORS: PluginFamily[type[Predictor]] = PluginFamily("predictor", noun="format")
"""The manifest's ``format`` → its :class:`Predictor` class; installed packages add formats in
the entry-point group ``driftloop.predictors``."""
PREDICTORS.register("sklearn", "driftloop.trainers.sklearn:SklearnPredictor")
PREDICTORS.register(
    "transformers",
    "driftloop.trainers.transformers_model:TransformersPredictor",
    extra="transformers",
)
PREDICTORS.register(
    "hf-checkpoint", "driftloop.trainers.hf_checkpoint:HFCheckpointPredictor", extra="transformers"
)
PREDICTORS.register("mlflow", "driftloop.trainers.mlflow_pyfunc:MLflowPredictor", extra="mlflow")


@dataclass(frozen=True)
class Evaluation:
    """Quality on a held-out split; ``ece`` is after temperature scaling."""

    accuracy: float
    macro_f1: float
    per_class_f1: dict[str, float]
    ece: float
    ece_before_calibration: float
    mean_confidence: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        return cls(**data)


@dataclass(frozen=True)
class RegressionEvaluation:
    """A regression model's quality on a held-out split: mean absolute error, root mean
    squared error (both in the target's units) and R² (reported, not gated on)."""

    mae: float
    rmse: float
    r2: float
    n: int
    output: OutputKind = "regression"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RegressionEvaluation:
        return cls(**data)


ModelEvaluation = Evaluation | RegressionEvaluation
"""A classifier's :class:`Evaluation` or a regression model's :class:`RegressionEvaluation`."""


def evaluation_from_dict(data: dict[str, Any]) -> ModelEvaluation:
    """What :meth:`Evaluation.to_dict` or :meth:`RegressionEvaluation.to_dict` wrote."""
    if data.get("output") == "regression":
        return RegressionEvaluation.from_dict(data)
    return Evaluation.from_dict(data)


@dataclass(frozen=True)
class ReferenceProfile:
    """How the model behaved on its validation split, captured at training time."""

    confidences: list[float]
    text_lengths: list[int]
    class_mix: dict[str, float]
    mean_confidence: float
    metrics: dict[str, float] = field(default_factory=dict)
    inputs: dict[str, list[float]] = field(default_factory=dict)
    """Per input signal (:meth:`Predictor.input_signals`, e.g. ``oov_rate``): its values on
    the same sampled texts as ``confidences``; for a record model also each numeric feature's
    values, as ``feature.<name>``."""
    categories: dict[str, dict[str, int]] = field(default_factory=dict)
    """For a record model: ``feature.<name>`` → how many reference records had each of the
    category feature's categories (in the feature's order)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        return cls(**data)


class Predictor(ABC):
    """A loaded model: a batch of inputs in, one answer per input out.

    Subclasses declare :attr:`inputs` and :attr:`output` (class attributes will do), build
    themselves from a model directory in :meth:`load_files`, and implement :meth:`predict`
    (or, for a classifier that gives scores, :meth:`logits`, which the default
    :meth:`predict` turns into probabilities with a temperature-scaled softmax).
    """

    format: ClassVar[str] = ""
    """The manifest ``format`` this class is registered under (``PREDICTORS``, or the
    entry-point group ``driftloop.predictors``); empty for a predictor found otherwise."""
    inputs: InputSchema = TEXT
    """What one input is: a text (the default) or a record of typed features."""
    output: OutputKind = "classification"
    """``classification`` (probabilities over :attr:`labels`) or ``regression``."""
    labels: tuple[str, ...] = ()
    """A classifier's classes, in the order of :meth:`predict`'s columns."""
    temperature: float = 1.0
    """The calibration temperature the default :meth:`predict` divides :meth:`logits` by."""

    def __init__(self, labels: Sequence[str] = (), temperature: float = 1.0) -> None:
        self.labels = tuple(labels)
        self.temperature = float(temperature)

    @property
    def parallel_batches(self) -> int:
        """How many calls of :meth:`predict` may usefully run at once in threads: 1 (the
        default) for models whose work holds the GIL; more for models that compute outside it
        on otherwise idle cores."""
        return 1

    @classmethod
    @abstractmethod
    def load_files(cls, directory: Path, manifest: dict[str, Any]) -> Predictor:
        """Build the predictor from its model directory (``manifest``: its parsed
        ``driftloop-model.json``)."""

    def predict(self, batch: Sequence[Any]) -> NDArray[np.float64]:
        """Answer ``batch`` (texts, or records as ``dict``s), one row per input:
        a classification gives shape ``(len(batch), len(labels))``, probabilities that sum to
        1; a regression gives shape ``(len(batch),)``, or ``(len(batch), 3)`` for ``[value,
        lower, upper]``. The default is the temperature-scaled softmax of :meth:`logits`."""
        return softmax(self.logits(batch) / self.temperature)

    def predict_proba(self, batch: Sequence[Any]) -> NDArray[np.float64]:
        """A classifier's calibrated probabilities: :meth:`predict`."""
        if self.output != "classification":
            raise InvalidInputError(
                f"{type(self).__name__} is a {self.output} model: it has no class probabilities"
            )
        return self.predict(batch)

    def logits(self, batch: Sequence[Any]) -> NDArray[np.float64]:
        """A classifier's uncalibrated scores, shape ``(len(batch), len(labels))``; needed
        only by the default :meth:`predict`."""
        raise NotImplementedError(
            f"{type(self).__name__} implements neither predict() nor logits()"
        )

    def input_signals(self, batch: Sequence[Any]) -> dict[str, NDArray[np.float64]]:
        """Per-input measures of the inputs themselves (e.g. ``oov_rate``, see
        :mod:`driftloop.predictors.inputs`, or a record's numeric features), each an array of
        ``len(batch)`` values that the server reports beside each prediction and the
        reference profile samples; none by default."""
        del batch
        return {}

    def example(self) -> Any:
        """One valid input, which the registry and the server score before they accept a
        version (default: made from :attr:`inputs`)."""
        return self.inputs.example()

    def reference_profile(self, batch: Sequence[Any]) -> ReferenceProfile:
        """How the model behaves on ``batch`` (a reference set): what drift monitors compare
        live traffic with. Override to add measures; the default records confidences and the
        class mix (classification) or the values (regression), text lengths and
        :meth:`input_signals`."""
        return profile_of(self, batch)

    def save_files(self, directory: Path) -> dict[str, Any]:
        """Write the model's own files; return extra manifest fields. A predictor whose model
        directory is written by hand (custom code) need not implement it."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot save itself: copy its model directory instead"
        )

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        extra = self.save_files(directory)
        manifest = {
            "format": self.format,
            "labels": list(self.labels),
            "temperature": self.temperature,
            **extra,
        }
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2))


class TextClassifier(Predictor):
    """A calibrated text classifier: texts in, temperature-scaled probabilities out (what
    driftloop's own trainers produce)."""

    inputs = TEXT
    output: OutputKind = "classification"

    def __init__(self, labels: Sequence[str], temperature: float = 1.0) -> None:
        super().__init__(labels, temperature)

    @abstractmethod
    def logits(self, batch: Sequence[Any]) -> NDArray[np.float64]:
        """Uncalibrated scores, shape ``(len(texts), len(labels))``."""


def profile_of(predictor: Predictor, batch: Sequence[Any]) -> ReferenceProfile:
    """The default :meth:`Predictor.reference_profile`."""
    import numpy as np

    outputs = np.asarray(predictor.predict(batch), dtype=np.float64)
    signals = {name: values.tolist() for name, values in predictor.input_signals(batch).items()}
    lengths = [len(item) for item in batch if isinstance(item, str)]
    categories: dict[str, dict[str, int]] = {}
    if not predictor.inputs.is_text:
        numbers, categories = feature_references(predictor.inputs, batch)
        signals.update(numbers)
    if predictor.output == "regression":
        values = outputs if outputs.ndim == 1 else outputs[:, 0]
        return ReferenceProfile(
            [],
            lengths,
            {},
            0.0,
            inputs={**signals, PREDICTION: values.tolist()},
            categories=categories,
        )
    confidences = outputs.max(axis=1)
    best = outputs.argmax(axis=1)
    mix = {
        label: float(np.mean(best == i)) if len(best) else 0.0
        for i, label in enumerate(predictor.labels)
    }
    return ReferenceProfile(
        confidences.tolist(),
        lengths,
        mix,
        float(confidences.mean()) if len(confidences) else 0.0,
        inputs=signals,
        categories=categories,
    )


def softmax(scores: NDArray[np.float64]) -> NDArray[np.float64]:
    import numpy as np

    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    result: NDArray[np.float64] = exp / exp.sum(axis=1, keepdims=True)
    return result

"""The contract between a model and everything that serves, monitors or gates it.

A :class:`Predictor` is a loaded, calibrated classifier. It saves itself to a directory holding
``driftloop-model.json`` (its ``format`` names the loader) plus its own files;
:func:`load_predictor` reads any of them back. :class:`Evaluation` is its quality on a held-out
split and :class:`ReferenceProfile` how it behaved there, which drift detectors and relative
thresholds compare live traffic against.

Serving, monitors and the registry depend on this package only; trainers produce what it
defines.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from driftloop.backends import PluginFamily
from driftloop.errors import ConfigError, IntegrityError, NotFoundError

MANIFEST = "driftloop-model.json"

PREDICTORS: PluginFamily[type[Predictor]] = PluginFamily("predictor", noun="format")
"""The manifest's ``format`` → its :class:`Predictor` class; installed packages add formats in
the entry-point group ``driftloop.predictors``."""
PREDICTORS.register("sklearn", "driftloop.trainers.sklearn:SklearnPredictor")
PREDICTORS.register("transformers", "driftloop.trainers.transformers:TransformersPredictor",
                    extra="transformers")

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
class ReferenceProfile:
    """How the model behaved on its validation split, captured at training time."""

    confidences: list[float]
    text_lengths: list[int]
    class_mix: dict[str, float]
    mean_confidence: float
    metrics: dict[str, float] = field(default_factory=dict)
    inputs: dict[str, list[float]] = field(default_factory=dict)
    """Per input signal (:meth:`Predictor.input_signals`, e.g. ``oov_rate``): its values on
    the same sampled texts as ``confidences``."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        return cls(**data)


class Predictor(ABC):
    """A loaded, calibrated classifier: texts in, class probabilities out."""

    format: ClassVar[str]

    def __init__(self, labels: Sequence[str], temperature: float = 1.0) -> None:
        self.labels: tuple[str, ...] = tuple(labels)
        self.temperature = float(temperature)

    @property
    def parallel_batches(self) -> int:
        """How many calls of :meth:`predict_proba` may usefully run at once in threads: 1
        (the default) for models whose work holds the GIL; more for models that compute
        outside it on otherwise idle cores."""
        return 1

    @abstractmethod
    def logits(self, texts: Sequence[str]) -> NDArray[np.float64]:
        """Uncalibrated scores, shape ``(len(texts), len(labels))``."""

    def input_signals(self, texts: Sequence[str]) -> dict[str, NDArray[np.float64]]:
        """Per-text measures of the inputs themselves (e.g. ``oov_rate``, see
        :mod:`driftloop.predictors.inputs`), each an array of ``len(texts)`` values that the
        server reports beside each prediction; none by default."""
        del texts
        return {}

    def predict_proba(self, texts: Sequence[str]) -> NDArray[np.float64]:
        """Calibrated probabilities (temperature-scaled softmax of :meth:`logits`)."""
        return softmax(self.logits(texts) / self.temperature)

    @abstractmethod
    def save_files(self, directory: Path) -> dict[str, Any]:
        """Write the model's own files; return extra manifest fields."""

    @classmethod
    @abstractmethod
    def load_files(cls, directory: Path, manifest: dict[str, Any]) -> Predictor:
        """Read what :meth:`save_files` wrote."""

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


def load_predictor(directory: Path) -> Predictor:
    """Load any saved predictor; a missing or unreadable manifest is an integrity error."""
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise NotFoundError(f"{directory} holds no model ({MANIFEST} is missing)")
    try:
        manifest = json.loads(manifest_path.read_text())
        model_format = str(manifest["format"])
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{manifest_path} is corrupt: {exc}") from exc
    predictor_class: object = PREDICTORS.load(model_format, str(manifest_path))
    if not (isinstance(predictor_class, type) and issubclass(predictor_class, Predictor)):
        raise ConfigError(f"the predictor format {model_format!r} is {predictor_class!r}, not a "
                          "Predictor subclass")
    return predictor_class.load_files(directory, manifest)


def softmax(scores: NDArray[np.float64]) -> NDArray[np.float64]:
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    result: NDArray[np.float64] = exp / exp.sum(axis=1, keepdims=True)
    return result

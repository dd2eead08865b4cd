"""What every trainer produces: a :class:`TrainedModel` from a dataset snapshot.

A trainer turns a :class:`TrainingData` snapshot into a :class:`TrainedModel`: a calibrated
:class:`~driftloop.predictors.Predictor`, its :class:`~driftloop.predictors.Evaluation` on a
held-out split and the :class:`~driftloop.predictors.ReferenceProfile` that drift detectors and
relative thresholds compare live traffic against.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from driftloop.predictors.trained import TrainedModel

if TYPE_CHECKING:  # trainers build frames; what they are handed needs no pandas import
    import pandas as pd

__all__ = ["ProgressCallback", "TrainedModel", "Trainer", "TrainingData"]

ProgressCallback = Callable[[str, float], None]
"""Called as ``progress(stage, fraction_done)`` during long work."""


@dataclass
class TrainingData:
    """A dataset snapshot as a frame, with where it came from."""

    frame: pd.DataFrame
    text_column: str = "text"
    label_column: str = "label"
    snapshot_id: str | None = None
    snapshot_hash: str | None = None


class Trainer(ABC):
    """Fits a model on a dataset; chosen by :attr:`name` in ``models.<name>.trainer``."""

    name: ClassVar[str]

    @abstractmethod
    def fit(
        self, data: TrainingData, *, progress: ProgressCallback | None = None
    ) -> TrainedModel: ...

"""The segment classifier's predictor: a scikit-learn pipeline over 18 numeric features of an
image region. This file travels with every model directory (``predictor.py:SegmentPredictor``
in its manifest), so it imports nothing from its own package."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from driftloop import Feature, InputSchema, InvalidInputError, Predictor

FEATURES: tuple[str, ...] = (
    "region_centroid_col",
    "region_centroid_row",
    "short_line_density_5",
    "short_line_density_2",
    "vedge_mean",
    "vedge_sd",
    "hedge_mean",
    "hedge_sd",
    "intensity_mean",
    "rawred_mean",
    "rawblue_mean",
    "rawgreen_mean",
    "exred_mean",
    "exblue_mean",
    "exgreen_mean",
    "value_mean",
    "saturation_mean",
    "hue_mean",
)
PIPELINE_FILE = "pipeline.joblib"


def record_json(record: dict[str, Any]) -> str:
    """A record's canonical JSON (sorted keys, no spaces): how driftloop's prediction log keys a
    record, and how the dataset's ``record`` column stores it for the retrain pipeline's gate."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


class SegmentPredictor(Predictor):
    """Which of 7 classes (sky, grass, window, ...) an image region shows."""

    inputs = InputSchema.record(*(Feature.number(name) for name in FEATURES))
    output = "classification"

    def __init__(self, pipeline: Any, temperature: float = 1.0) -> None:
        super().__init__(
            labels=[str(label) for label in pipeline.classes_], temperature=temperature
        )
        self.pipeline = pipeline

    @classmethod
    def load_files(cls, directory: Path, manifest: dict[str, Any]) -> SegmentPredictor:
        return cls(joblib.load(directory / PIPELINE_FILE), float(manifest.get("temperature", 1.0)))

    def logits(self, batch: Sequence[Any]) -> NDArray[np.float64]:
        """The logistic regression's scores. ``batch`` holds records as served (``dict``s) or
        their canonical JSON (what the retrain pipeline's gate reads from the dataset)."""
        frame = pd.DataFrame.from_records(
            [json.loads(item) if isinstance(item, str) else item for item in batch],
            columns=list(FEATURES),
        )
        if frame.isna().to_numpy().any():
            raise InvalidInputError(f"every record needs the features {list(FEATURES)}")
        return np.asarray(self.pipeline.decision_function(frame), dtype=np.float64)

    def save_files(self, directory: Path) -> dict[str, Any]:
        joblib.dump(self.pipeline, directory / PIPELINE_FILE)
        shutil.copy(Path(__file__), directory / "predictor.py")
        return {"predictor": "predictor.py:SegmentPredictor"}

"""The contract shared by trainers that run the user's own code (``notebook``, ``command``).

driftloop splits the snapshot first and hands the user's code only the training rows:

* ``data_path``: a CSV of the training rows, with the model's text and label columns (named as
  in ``models.<name>.text_column`` / ``label_column``);
* ``output_dir``: an empty directory, into which the code must write
  ``model/`` (a saved predictor of any format in ``PREDICTORS``, e.g.
  ``SklearnPredictor(...).save(Path(output_dir) / "model")``) and ``metrics.json`` (a JSON
  object of the code's own metrics, kept as ``params.reported_metrics``).

driftloop then loads the model, fits its temperature on the validation rows and evaluates it
on the held-out rows, so every trainer's numbers are measured the same way.
"""

from __future__ import annotations

import json
import math
import tempfile
from abc import abstractmethod
from pathlib import Path
from typing import Any

from driftloop.errors import DriftloopError, TrainingError
from driftloop.predictors import Predictor, load_predictor
from driftloop.trainers.base import ProgressCallback, TrainedModel, Trainer, TrainingData
from driftloop.trainers.checks import check_training_data
from driftloop.trainers.holdout import (
    DEFAULT_HOLDOUT_FRACTION,
    DEFAULT_VALIDATION_FRACTION,
    calibrate_and_evaluate,
    split_for_training,
)

MODEL_DIR = "model"
METRICS_FILE = "metrics.json"
DEFAULT_TIMEOUT = 3600.0


class ExternalTrainer(Trainer):
    """Runs user code on the training rows and evaluates what it writes."""

    def __init__(
        self,
        *,
        labels: list[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
        validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
        seed: int = 0,
    ) -> None:
        self.labels = labels
        self.timeout = timeout
        self.holdout_fraction = holdout_fraction
        self.validation_fraction = validation_fraction
        self.seed = seed

    @abstractmethod
    def run(self, data_path: Path, output_dir: Path, work_dir: Path) -> dict[str, Any]:
        """Run the user's code; raise :class:`TrainingError` when it fails. Returns params."""

    def fit(self, data: TrainingData, *, progress: ProgressCallback | None = None) -> TrainedModel:
        report = progress or (lambda _stage, _fraction: None)
        checked = check_training_data(data, allowed_labels=self.labels)
        splits = split_for_training(
            checked.frame,
            data.label_column,
            holdout_fraction=self.holdout_fraction,
            validation_fraction=self.validation_fraction,
            seed=self.seed,
        )
        with tempfile.TemporaryDirectory(prefix=f"driftloop-{self.name}-") as temporary:
            work_dir = Path(temporary)
            data_path = work_dir / "train.csv"
            output_dir = work_dir / "output"
            output_dir.mkdir()
            splits.train.to_csv(data_path, index=False)
            report(f"running {self.name}", 0.05)
            run_params = self.run(data_path, output_dir, work_dir)
            report("evaluating", 0.9)
            predictor = self._read_model(output_dir, set(checked.labels))
            reported = self._read_metrics(output_dir)
            calibrated = calibrate_and_evaluate(
                predictor, splits, text_column=data.text_column, label_column=data.label_column
            )
        report("done", 1.0)
        params: dict[str, Any] = {
            **run_params,
            "reported_metrics": reported,
            "temperature": calibrated.temperature,
            "rows": splits.sizes(),
            "dropped_rows": checked.dropped_rows,
            "holdout_fraction": self.holdout_fraction,
            "validation_fraction": self.validation_fraction,
            "seed": self.seed,
        }
        return TrainedModel(predictor, calibrated.evaluation, calibrated.reference, params)

    def _read_model(self, output_dir: Path, data_labels: set[str]) -> Predictor:
        model_dir = output_dir / MODEL_DIR
        if not model_dir.is_dir():
            raise TrainingError(
                f"the {self.name} trainer wrote no model: expected a saved predictor in "
                f"output_dir/{MODEL_DIR}/"
            )
        try:
            predictor = load_predictor(model_dir)
        except DriftloopError as exc:
            raise TrainingError(f"the model the {self.name} wrote is unusable: {exc}") from exc
        except Exception as exc:  # user code can save anything
            raise TrainingError(
                f"the model the {self.name} wrote does not load: {type(exc).__name__}: {exc}"
            ) from exc
        missing = sorted(data_labels - set(predictor.labels))
        if missing:
            raise TrainingError(
                f"the model the {self.name} wrote lacks labels {missing} "
                f"(it has {list(predictor.labels)})"
            )
        return predictor

    def _read_metrics(self, output_dir: Path) -> dict[str, Any]:
        path = output_dir / METRICS_FILE
        if not path.is_file():
            raise TrainingError(
                f"the {self.name} trainer wrote no output_dir/{METRICS_FILE} "
                "(a JSON object of its own metrics)"
            )
        try:
            metrics = json.loads(path.read_text())
        except ValueError as exc:
            raise TrainingError(f"output_dir/{METRICS_FILE} is not valid JSON: {exc}") from exc
        if not isinstance(metrics, dict):
            raise TrainingError(f"output_dir/{METRICS_FILE} must hold a JSON object")
        for key, value in metrics.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise TrainingError(f"output_dir/{METRICS_FILE}: {key} is {value}")
        return metrics

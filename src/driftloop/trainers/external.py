"""The contract shared by trainers that run the user's own code (``notebook``, ``command``).

driftloop splits the snapshot first and hands the user's code only the training rows:

* ``data_path``: a CSV of the training rows, following the model's inputs: for a text
  classifier the model's text and label columns (named as in ``models.<name>.text_column`` /
  ``label_column``); for a record classifier (its ``models.<name>.predictor`` class declares
  record inputs, or the snapshot has no text column) its features' columns (every column when
  they are not declared) and the label, rows with a blank label left out; for a regression
  model (``models.<name>.output: regression``) every column of the snapshot, the label column
  holding the numeric target;
* ``output_dir``: an empty directory, into which the code must write
  ``model/`` (any model directory: a saved predictor of a format in ``PREDICTORS``, e.g.
  ``SklearnPredictor(...).save(Path(output_dir) / "model")``, or the model's own files with
  ``"predictor": "FILE.py:Class"`` in its manifest, docs/byo-model.md) and ``metrics.json``
  (a JSON object of the code's own metrics, kept as ``params.reported_metrics``).

driftloop then loads the model and checks it as registration does (the same loader, its
example input scored), and evaluates it on the held-out rows, so every trainer's numbers are
measured the same way: a text classifier that gives logits has its temperature fitted on the
validation rows first; a custom classifier's probabilities and a regression model's values
(MAE, RMSE, R²) are measured as they come. A model that cannot save itself is registered as the
directory the code wrote.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
import weakref
from abc import abstractmethod
from pathlib import Path
from typing import Any

from driftloop.config import ModelConfig
from driftloop.errors import DriftloopError, InvalidInputError, TrainingError
from driftloop.predictors import (
    TEXT,
    InputSchema,
    OutputKind,
    Predictor,
    check_predictor,
    load_predictor,
)
from driftloop.predictors.loading import import_target
from driftloop.trainers.base import ProgressCallback, TrainedModel, Trainer, TrainingData
from driftloop.trainers.checks import check_training_data
from driftloop.trainers.evaluation import (
    model_inputs,
    predictor_evaluation,
    regression_targets,
    split_rows,
)
from driftloop.trainers.holdout import (
    DEFAULT_HOLDOUT_FRACTION,
    DEFAULT_VALIDATION_FRACTION,
    CalibratedEvaluation,
    TrainingSplits,
    calibrate_and_evaluate,
    split_for_training,
)

MODEL_DIR = "model"
METRICS_FILE = "metrics.json"
DEFAULT_TIMEOUT = 3600.0
MIN_REGRESSION_ROWS = 10
"""A regression snapshot needs this many rows with a target to split into train and held-out."""


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
        output: OutputKind = "classification",
        inputs: InputSchema | None = None,
    ) -> None:
        self.output: OutputKind = output
        self.inputs = inputs
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
        if self.output == "regression":
            splits, labels, dropped = self._regression_splits(data), None, 0
        else:
            checked = check_training_data(
                data, allowed_labels=self.labels, inputs=self._inputs_of(data)
            )
            splits = split_for_training(
                checked.frame,
                data.label_column,
                holdout_fraction=self.holdout_fraction,
                validation_fraction=self.validation_fraction,
                seed=self.seed,
            )
            labels, dropped = set(checked.labels), checked.dropped_rows
        keep = KeptDirectory(f"driftloop-{self.name}-")
        work_dir = Path(keep.name)
        data_path = work_dir / "train.csv"
        output_dir = work_dir / "output"
        output_dir.mkdir()
        splits.train.to_csv(data_path, index=False)
        report(f"running {self.name}", 0.05)
        try:
            run_params = self.run(data_path, output_dir, work_dir)
            report("evaluating", 0.9)
            predictor = self._read_model(output_dir, labels)
            reported = self._read_metrics(output_dir)
            measured = self._evaluate(predictor, splits, data)
        except BaseException:
            keep.cleanup()
            raise
        report("done", 1.0)
        params: dict[str, Any] = {
            **run_params,
            "reported_metrics": reported,
            "temperature": measured.temperature,
            "rows": splits.sizes(),
            "dropped_rows": dropped,
            "holdout_fraction": self.holdout_fraction,
            "validation_fraction": self.validation_fraction,
            "seed": self.seed,
        }
        if _saves_itself(predictor):
            keep.cleanup()
            return TrainedModel(predictor, measured.evaluation, measured.reference, params)
        data_path.unlink()  # only the model directory stays until it is registered
        return TrainedModel(
            predictor,
            measured.evaluation,
            measured.reference,
            params,
            model_dir=output_dir / MODEL_DIR,
            keep_alive=keep,
        )

    def _inputs_of(self, data: TrainingData) -> InputSchema | None:
        """The declared input schema (``models.<name>.predictor``'s class); undeclared, texts
        when the data has the text column, else a record of every other column (None)."""
        if self.inputs is not None:
            return self.inputs
        return TEXT if data.text_column in data.frame.columns else None

    def _regression_splits(self, data: TrainingData) -> TrainingSplits:
        """Rows with a numeric target, split at random into train and held-out (a regression
        model has no temperature: its validation split is empty)."""
        frame = data.frame
        where = f"snapshot {data.snapshot_id}" if data.snapshot_id else "the training data"
        if data.label_column not in frame:
            raise InvalidInputError(
                f"{where} has no target column {data.label_column!r}; its columns are "
                f"{[str(c) for c in frame.columns]} (set models.<name>.label_column)"
            )
        labelled = frame[frame[data.label_column].astype(str).str.strip() != ""]
        labelled = labelled.reset_index(drop=True)
        if len(labelled) < MIN_REGRESSION_ROWS:
            raise InvalidInputError(
                f"{where} has {len(labelled)} rows with a target; a regression model needs "
                f"at least {MIN_REGRESSION_ROWS} to train and evaluate"
            )
        try:
            regression_targets(labelled, data.label_column)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{where}: {exc.message}") from exc
        train, held_out = split_rows(labelled, self.holdout_fraction, self.seed)
        return TrainingSplits(train=train, validation=train.iloc[0:0], held_out=held_out)

    def _evaluate(
        self, predictor: Predictor, splits: TrainingSplits, data: TrainingData
    ) -> CalibratedEvaluation:
        """Temperature and held-out evaluation of a text classifier with logits; the plain
        held-out evaluation of any other predictor, and its own reference profile."""
        if (
            predictor.output == "classification"
            and predictor.inputs.is_text
            and _has_logits(predictor)
        ):
            return calibrate_and_evaluate(
                predictor, splits, text_column=data.text_column, label_column=data.label_column
            )
        try:
            evaluation = predictor_evaluation(
                predictor, splits.held_out, data.text_column, data.label_column
            )
            reference = predictor.reference_profile(
                model_inputs(predictor.inputs, splits.held_out, data.text_column)
            )
        except DriftloopError as exc:
            raise TrainingError(
                f"evaluating the model the {self.name} wrote failed: {exc.message}"
            ) from exc
        reference = dataclasses.replace(
            reference, metrics={**reference.metrics, **_numbers(evaluation.to_dict())}
        )
        return CalibratedEvaluation(predictor.temperature, evaluation, reference)

    def _read_model(self, output_dir: Path, data_labels: set[str] | None) -> Predictor:
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
        try:
            check_predictor(predictor, f"the model the {self.name} wrote")
        except DriftloopError as exc:
            raise TrainingError(exc.message) from exc
        if predictor.output != self.output:
            raise TrainingError(
                f"the model the {self.name} wrote is a {predictor.output} model, but "
                f"models.<name>.output is {self.output}"
            )
        missing = sorted((data_labels or set()) - set(predictor.labels))
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


def declared_inputs(model_config: ModelConfig) -> InputSchema | None:
    """The input schema ``models.<name>.predictor``'s class declares (importing it, as loading
    the model's versions does), or None when the model names no class (or its class sets its
    inputs only when built): the training rows then tell."""
    if model_config.predictor is None:
        return None
    found = import_target(model_config.predictor, "models.<name>.predictor")
    inputs = getattr(found, "inputs", None)
    return inputs if isinstance(inputs, InputSchema) else None


class KeptDirectory:
    """A temporary directory that lives as long as this object (a trained model's files until
    it is registered), or until :meth:`cleanup`."""

    def __init__(self, prefix: str) -> None:
        self.name = tempfile.mkdtemp(prefix=prefix)
        self._remove = weakref.finalize(self, shutil.rmtree, self.name, ignore_errors=True)

    def cleanup(self) -> None:
        self._remove()


def _has_logits(predictor: Predictor) -> bool:
    return type(predictor).logits is not Predictor.logits


def _saves_itself(predictor: Predictor) -> bool:
    return type(predictor).save_files is not Predictor.save_files


def _numbers(data: dict[str, Any]) -> dict[str, float]:
    return {
        key: float(value)
        for key, value in data.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and key != "n"
    }

"""An MLflow pyfunc model as a driftloop model (the optional extra ``mlflow``).

``driftloop models register NAME DIR`` takes a directory that ``mlflow.pyfunc.save_model`` (or
``log_model``) wrote: :mod:`driftloop.trainers.importing` recognises its ``MLmodel`` file and
registers a copy whose manifest names the format ``mlflow``, and :class:`MLflowPredictor` loads
it with MLflow's own loader (``mlflow.pyfunc.load_model``). The model's signature, which it
must have been saved with, says what it is:

* inputs: one ``string`` column named ``text`` makes a text model; other columns make a record
  model, one feature each (``double``/``float`` a number, ``long``/``integer`` an integer,
  ``boolean``, ``string``; an optional column an optional feature);
* outputs: one numeric column makes a regression model (its values); two or more make a
  classifier whose labels are the column names and whose ``predict`` answers one probability
  per column.

Each batch reaches the model as a ``pandas.DataFrame`` with those columns.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from driftloop.backends import require_module
from driftloop.errors import IntegrityError
from driftloop.predictors import TEXT, Feature, InputSchema, Predictor
from driftloop.predictors.schema import OutputKind
from driftloop.trainers.importing import MLFLOW_FORMAT

try:
    with warnings.catch_warnings():  # its advice on type hints, given at import
        warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow(\.|$)")
        import mlflow.pyfunc
except ImportError as exc:  # the optional extra is missing: say how to install it
    require_module(exc.name or "mlflow", "mlflow")
    raise

_FEATURE_TYPES = {
    "double": "number",
    "float": "number",
    "long": "integer",
    "integer": "integer",
    "boolean": "boolean",
    "string": "string",
}


@contextmanager
def _without_mlflow_notices() -> Iterator[None]:
    """MLflow's own advice on type hints and input examples (UserWarnings) is no concern of a
    server loading a saved model."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow(\.|$)")
        yield


class MLflowPredictor(Predictor):
    """A pyfunc model loaded by MLflow, its inputs and output read from its signature."""

    format: ClassVar[str] = MLFLOW_FORMAT

    def __init__(
        self, model: Any, inputs: InputSchema, output: OutputKind, labels: Sequence[str] = ()
    ) -> None:
        super().__init__(labels)
        self.model = model
        self.inputs = inputs
        self.output = output

    @classmethod
    def load_files(cls, directory: Path, manifest: dict[str, Any]) -> MLflowPredictor:
        with _without_mlflow_notices():
            try:
                model = mlflow.pyfunc.load_model(str(directory))
            except Exception as exc:  # MLflow raises its own MlflowException, among others
                raise IntegrityError(
                    f"MLflow cannot load the model in {directory}: {type(exc).__name__}: {exc}"
                ) from exc
        metadata = model.metadata
        inputs, outputs = metadata.get_input_schema(), metadata.get_output_schema()
        if inputs is None or outputs is None:
            raise IntegrityError(
                f"the MLflow model in {directory} has no signature of its "
                "inputs and outputs: save it with signature=..."
            )
        output, labels = _output_of(outputs, directory)
        return cls(model, _inputs_of(inputs, directory), output, labels)

    def predict(self, batch: Sequence[Any]) -> NDArray[np.float64]:
        if self.inputs.is_text:
            frame = pd.DataFrame({"text": list(batch)})
        else:
            frame = pd.DataFrame.from_records(
                list(batch), columns=[feature.name for feature in self.inputs.features]
            )
        with _without_mlflow_notices():
            answer = self.model.predict(frame)
        values = np.asarray(
            answer.to_numpy() if hasattr(answer, "to_numpy") else answer, dtype=np.float64
        )
        if self.output == "regression" and values.ndim == 2 and values.shape[1] == 1:
            return values[:, 0]
        return values


def _columns(schema: Any, directory: Path, what: str) -> list[Any]:
    if not schema.is_tensor_spec():
        return list(schema.inputs)
    raise IntegrityError(
        f"the MLflow model in {directory} has a tensor signature for its "
        f"{what}: driftloop takes column signatures"
    )


def _inputs_of(schema: Any, directory: Path) -> InputSchema:
    columns = _columns(schema, directory, "inputs")
    kinds = [(column.name, getattr(column.type, "name", str(column.type))) for column in columns]
    if kinds == [("text", "string")]:
        return TEXT
    unknown = [f"{name} ({kind})" for name, kind in kinds if kind not in _FEATURE_TYPES]
    if unknown or any(name is None for name, _ in kinds):
        raise IntegrityError(
            f"the MLflow model in {directory} takes inputs driftloop cannot "
            f"send: {unknown or 'unnamed columns'} (known: "
            f"{', '.join(_FEATURE_TYPES)})"
        )
    return InputSchema.record(
        *(
            Feature(
                name,
                _FEATURE_TYPES[kind],  # type: ignore[arg-type]
                not getattr(column, "required", True),
            )
            for (name, kind), column in zip(kinds, columns, strict=True)
        )
    )


def _output_of(schema: Any, directory: Path) -> tuple[OutputKind, list[str]]:
    columns = _columns(schema, directory, "outputs")
    names = [str(column.name) for column in columns]
    if len(columns) == 1:
        return "regression", []
    return "classification", names

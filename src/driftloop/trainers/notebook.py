"""``trainer: notebook``: run the team's own training notebook with papermill.

The notebook gets two parameters, ``data_path`` and ``output_dir`` (put a cell tagged
``parameters`` with defaults in it, or papermill adds them at the top), and must write
``output_dir/model/`` (any model directory: a saved predictor, or the model's own files and
code named by ``"predictor": "FILE.py:Class"`` in its manifest) and
``output_dir/metrics.json``; see :mod:`driftloop.trainers.external` for the whole contract. A
cell that raises is a :class:`TrainingError` naming the cell and its error. Needs the
``notebook`` extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from driftloop.backends import require_module
from driftloop.config import ModelConfig
from driftloop.errors import ConfigError, TrainingError
from driftloop.predictors import InputSchema, OutputKind
from driftloop.trainers.external import DEFAULT_TIMEOUT, ExternalTrainer, declared_inputs
from driftloop.trainers.holdout import DEFAULT_HOLDOUT_FRACTION, DEFAULT_VALIDATION_FRACTION

EXECUTED_NOTEBOOK = "executed.ipynb"


class NotebookTrainer(ExternalTrainer):
    """Executes a notebook with papermill under the training contract."""

    name: ClassVar[str] = "notebook"

    def __init__(
        self,
        notebook: Path,
        *,
        kernel_name: str = "python3",
        cwd: Path | None = None,
        labels: list[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
        validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
        seed: int = 0,
        output: OutputKind = "classification",
        inputs: InputSchema | None = None,
    ) -> None:
        super().__init__(
            labels=labels,
            timeout=timeout,
            holdout_fraction=holdout_fraction,
            validation_fraction=validation_fraction,
            seed=seed,
            output=output,
            inputs=inputs,
        )
        self.notebook = notebook
        self.kernel_name = kernel_name
        self.cwd = cwd

    @classmethod
    def from_model_config(
        cls, model_config: ModelConfig, *, base_dir: Path | None = None
    ) -> NotebookTrainer:
        if not model_config.notebook:
            raise ConfigError("trainer 'notebook' needs models.<name>.notebook: the .ipynb path")
        base = base_dir or Path.cwd()
        notebook = Path(model_config.notebook)
        if not notebook.is_absolute():
            notebook = base / notebook
        if not notebook.is_file():
            raise ConfigError(f"models.<name>.notebook: no such notebook {notebook}")
        params = model_config.params
        return cls(
            notebook,
            kernel_name=str(params.get("kernel_name", "python3")),
            cwd=base,
            labels=model_config.labels,
            timeout=float(params.get("timeout", DEFAULT_TIMEOUT)),
            holdout_fraction=float(params.get("holdout_fraction", DEFAULT_HOLDOUT_FRACTION)),
            validation_fraction=float(
                params.get("validation_fraction", DEFAULT_VALIDATION_FRACTION)
            ),
            seed=int(params.get("seed", 0)),
            output=model_config.output,
            inputs=declared_inputs(model_config),
        )

    def run(self, data_path: Path, output_dir: Path, work_dir: Path) -> dict[str, Any]:
        require_module("papermill", "notebook")
        import papermill
        from papermill.exceptions import PapermillExecutionError

        try:
            papermill.execute_notebook(
                str(self.notebook),
                str(work_dir / EXECUTED_NOTEBOOK),
                parameters={"data_path": str(data_path), "output_dir": str(output_dir)},
                kernel_name=self.kernel_name,
                progress_bar=False,
                log_output=False,
                request_save_on_cell_execute=False,
                cwd=str(self.cwd or self.notebook.parent),
                execution_timeout=self.timeout,
            )
        except PapermillExecutionError as exc:
            raise TrainingError(
                f"notebook {self.notebook.name} failed in cell {exc.exec_count} "
                f"(index {exc.cell_index}): {exc.ename}: {exc.evalue}"
            ) from None
        except Exception as exc:  # kernel start failures, invalid notebooks, timeouts
            raise TrainingError(
                f"notebook {self.notebook.name} could not run: {type(exc).__name__}: {exc}"
            ) from exc
        return {"notebook": str(self.notebook), "kernel_name": self.kernel_name}

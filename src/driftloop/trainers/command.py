"""``trainer: command``: run any program under the training contract.

``models.<name>.command`` is an argument list; ``{data_path}`` and ``{output_dir}`` in it are
replaced by the paths. The program runs in the project directory and must write
``output_dir/model/`` (any model directory: a saved predictor, or the model's own files and
code named by ``"predictor": "FILE.py:Class"`` in its manifest) and ``output_dir/metrics.json``
(see :mod:`driftloop.trainers.external`);
a non-zero exit is a :class:`TrainingError` carrying the end of its stderr.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from driftloop.config import ModelConfig
from driftloop.errors import ConfigError, TrainingError
from driftloop.predictors import InputSchema, OutputKind
from driftloop.trainers.external import DEFAULT_TIMEOUT, ExternalTrainer, declared_inputs
from driftloop.trainers.holdout import DEFAULT_HOLDOUT_FRACTION, DEFAULT_VALIDATION_FRACTION

STDERR_TAIL_LINES = 20


class CommandTrainer(ExternalTrainer):
    """Runs an argument list with ``{data_path}`` / ``{output_dir}`` placeholders."""

    name: ClassVar[str] = "command"

    def __init__(
        self,
        command: Sequence[str],
        *,
        cwd: Path | None = None,
        labels: list[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
        validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
        seed: int = 0,
        output: OutputKind = "classification",
        inputs: InputSchema | None = None,
    ) -> None:
        if not command:
            raise ConfigError("trainer 'command' needs a non-empty models.<name>.command list")
        super().__init__(
            labels=labels,
            timeout=timeout,
            holdout_fraction=holdout_fraction,
            validation_fraction=validation_fraction,
            seed=seed,
            output=output,
            inputs=inputs,
        )
        self.command = list(command)
        self.cwd = cwd

    @classmethod
    def from_model_config(
        cls, model_config: ModelConfig, *, base_dir: Path | None = None
    ) -> CommandTrainer:
        if not model_config.command:
            raise ConfigError(
                "trainer 'command' needs models.<name>.command, e.g. "
                "[python, train.py, '{data_path}', '{output_dir}']"
            )
        params = model_config.params
        return cls(
            model_config.command,
            cwd=base_dir,
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
        del work_dir
        arguments = [
            part.replace("{data_path}", str(data_path)).replace("{output_dir}", str(output_dir))
            for part in self.command
        ]
        try:
            completed = subprocess.run(
                arguments,
                cwd=self.cwd,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            raise TrainingError(f"training command not found: {arguments[0]}") from exc
        except subprocess.TimeoutExpired as exc:
            raise TrainingError(
                f"training command {arguments[0]} ran past its {self.timeout:g} s timeout"
            ) from exc
        if completed.returncode != 0:
            tail = "\n".join(completed.stderr.strip().splitlines()[-STDERR_TAIL_LINES:])
            raise TrainingError(
                f"training command {arguments[0]} exited with status {completed.returncode}"
                + (f":\n{tail}" if tail else "")
            )
        return {"command": self.command}

"""Model directories with their own predictor code, for the bring-your-own-model tests.

The churn model is built by the very code of docs/byo-model.md (its ``predictor.py`` and
``train.py`` blocks), so the page's example is what the tests run. The regression and the
fragile models are small custom predictors written here.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BYO_PAGE = ROOT / "docs" / "byo-model.md"
IMPORT_LOG_ENV = "DRIFTLOOP_TEST_IMPORT_LOG"

CUSTOMER = {"monthly_spend": 42.5, "tenure_months": 3, "plan": "basic", "country": "de"}


def doc_block(first_line: str) -> str:
    """The python block of docs/byo-model.md that starts with ``first_line``."""
    for block in re.findall(r"```python\n(.*?)```", BYO_PAGE.read_text(), flags=re.S):
        if block.startswith(first_line):
            return str(block)
    raise AssertionError(f"docs/byo-model.md has no python block starting {first_line!r}")


def write_churn_sources(directory: Path, *, import_log: bool = False) -> Path:
    """``predictor.py`` and ``train.py`` from the docs page, in ``directory``; with
    ``import_log`` the predictor module also appends a line to ``$DRIFTLOOP_TEST_IMPORT_LOG``
    each time it is imported (its content then differs per directory, so it is imported anew)."""
    directory.mkdir(parents=True, exist_ok=True)
    predictor = doc_block("# predictor.py")
    if import_log:
        predictor += (
            f"\n# {directory}\nimport os as _os\n"
            f"with open(_os.environ[{IMPORT_LOG_ENV!r}], 'a') as _log:\n"
            "    _log.write('imported\\n')\n"
        )
    (directory / "predictor.py").write_text(predictor)
    (directory / "train.py").write_text(doc_block("# train.py"))
    return directory


def train_churn(sources: Path, output: Path, *, seed: int = 0) -> Path:
    """Run the page's ``train(output, seed=...)``."""
    spec = importlib.util.spec_from_file_location(f"byo_train_{seed}", sources / "train.py")
    assert spec is not None
    assert spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.train(output, seed=seed)
    return output


REGRESSION_PREDICTOR = '''
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from driftloop import Feature, InputSchema, Predictor


class SpendPredictor(Predictor):
    """Monthly spend = slope * tenure + intercept, with an interval of +- width."""

    inputs = InputSchema.record(Feature.integer("tenure_months"),
                                Feature.boolean("promo", optional=True))
    output = "regression"

    def __init__(self, slope: float, intercept: float, width: float) -> None:
        super().__init__()
        self.slope, self.intercept, self.width = slope, intercept, width

    @classmethod
    def load_files(cls, directory: Path, manifest: dict[str, Any]) -> SpendPredictor:
        return cls(**json.loads((directory / "coefficients.json").read_text()))

    def predict(self, batch: list[dict[str, Any]]) -> np.ndarray:
        tenure = np.array([row["tenure_months"] for row in batch], dtype=float)
        value = self.slope * tenure + self.intercept
        return np.column_stack([value, value - self.width, value + self.width])
'''


def write_regression_model(
    directory: Path, *, slope: float, intercept: float = 10.0, width: float = 1.0
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "spend.py").write_text(REGRESSION_PREDICTOR)
    (directory / "coefficients.json").write_text(
        json.dumps({"slope": slope, "intercept": intercept, "width": width})
    )
    write_manifest(directory, {"predictor": "spend.py:SpendPredictor"})
    return directory


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    (directory / "driftloop-model.json").write_text(json.dumps(manifest))


def write_predictor_module(
    directory: Path, source: str, *, file: str = "predictor.py", target: str | None = None
) -> Path:
    """A model directory whose ``file`` holds ``source`` and whose manifest names
    ``target`` (default ``FILE:Model``)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / file).write_text(source)
    write_manifest(directory, {"predictor": target or f"{file}:Model"})
    return directory

"""The serving benchmark's other driftloop rows (``benchmarks/serving.py``):

* **custom predictor** (``--custom-predictor``): the same trained sklearn model behind a user's
  predictor class, loaded through the plug-in path (a model directory whose manifest names
  ``"predictor": "review_predictor.py:ReviewPredictor"``, registered as model
  ``reviews-custom``). The class delegates ``predict`` and ``input_signals`` to the built-in
  predictor, so the model's work is the same and only the path around it differs; it is
  measured raw, behind the plain FastAPI endpoint and behind ``driftloop serve``, like the
  built-in row.
* **init project** (``--init-project``): a project made the way a user makes one (``driftloop
  init``, ``driftloop train``, ``driftloop keys create``), served by ``driftloop up`` (the API
  with the control plane: monitors, notifications, the retrain worker) with every default the
  template switches on: the input-drift signal, four monitors, the prediction log. With
  ``--baseline-src DIR`` (a checkout of an older driftloop, e.g. ``git archive HEAD``), the
  same project made and served by that code as well, for a before/after in one run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import yaml

CUSTOM_MODEL = "reviews-custom"
INIT_MODEL = "review-classifier"

CUSTOM_PREDICTOR = '''
"""A user's predictor: driftloop's sklearn review model behind a class of one's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from driftloop import Predictor
from driftloop.trainers.sklearn import SklearnPredictor


class ReviewPredictor(Predictor):
    output = "classification"

    def __init__(self, inner: SklearnPredictor) -> None:
        super().__init__(labels=inner.labels)
        self.inner = inner

    @classmethod
    def load_files(cls, directory: Path, manifest: dict[str, Any]) -> ReviewPredictor:
        return cls(SklearnPredictor.load_files(directory, manifest))

    def predict(self, batch: list[str]) -> np.ndarray:
        return self.inner.predict(batch)

    def input_signals(self, batch: list[str]) -> dict[str, np.ndarray]:
        return self.inner.input_signals(batch)
'''


def custom_model_dir(model_dir: Path, target: Path) -> Path:
    """A copy of the saved sklearn model whose manifest names the user's predictor file."""
    shutil.copytree(model_dir, target)
    (target / "review_predictor.py").write_text(textwrap.dedent(CUSTOM_PREDICTOR).lstrip())
    manifest_path = target / "driftloop-model.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.pop("format", None)
    manifest["predictor"] = "review_predictor.py:ReviewPredictor"
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return target


def register_custom(config_path: Path, model_dir: Path, work: Path) -> tuple[Path, Path]:
    """Register the custom-predictor copy of ``model_dir`` as ``reviews-custom`` (production)
    in the project of ``config_path``; its directory and a config serving it alone."""
    from driftloop.config import load_config
    from driftloop.registry import ModelRegistry

    directory = custom_model_dir(model_dir, work / "custom-model")
    document = yaml.safe_load(config_path.read_text())
    document["models"] = {CUSTOM_MODEL: {}}
    custom_config = config_path.with_name("driftloop-custom.yaml")
    custom_config.write_text(yaml.safe_dump(document))
    config = load_config(custom_config, environ={})
    registry = ModelRegistry.from_config(config)
    version = registry.register(CUSTOM_MODEL, directory, trainer="custom")
    registry.set_alias(CUSTOM_MODEL, "production", version.version, actor="benchmark")
    return directory, custom_config


@dataclass(frozen=True)
class InitProject:
    directory: Path
    key: str
    environ: dict[str, str]
    """The environment its commands and its server run with (the baseline's PYTHONPATH)."""


def make_init_project(directory: Path, baseline_src: Path | None = None) -> InitProject:
    """``driftloop init``, ``driftloop train``, ``driftloop keys create``, as a user does (with
    ``baseline_src``: by the driftloop under that ``src`` folder), access log off."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")}
    if baseline_src is not None:
        environ["PYTHONPATH"] = str(baseline_src.resolve())
    driftloop = str(Path(sys.executable).parent / "driftloop")

    def run(cwd: Path, *arguments: str) -> str:
        return subprocess.run(
            [driftloop, *arguments],
            cwd=cwd,
            env=environ,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    directory.parent.mkdir(parents=True, exist_ok=True)
    run(directory.parent, "init", directory.name)
    config_path = directory / "driftloop.yaml"
    document = yaml.safe_load(config_path.read_text())
    document.setdefault("serving", {})["access_log"] = False
    config_path.write_text(yaml.safe_dump(document, sort_keys=False))
    run(directory, "train", INIT_MODEL)
    key = run(directory, "keys", "create", "--scope", "predict", "-q")
    return InitProject(directory, key, environ)

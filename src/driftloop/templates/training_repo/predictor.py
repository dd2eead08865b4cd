"""The model's own predictor: driftloop serves every version of the model through this class.

The notebook saves the model that driftloop's trainer fitted into ``output/model/``, copies this
file beside it and names it in the model's manifest (``driftloop-model.json``) as
``"predictor": "predictor.py:ReviewPredictor"``: the code travels, and is hashed, with each
version, and driftloop imports it when a version is registered or loaded (never because of a
request). Change :func:`clean` to the preprocessing your texts need: it runs when driftloop
evaluates the model and in production alike. See "Bring your own model" in driftloop's docs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from driftloop import Predictor
from driftloop.predictors import PREDICTORS

MARKUP = re.compile(r"<[^>]{0,100}>")
SPACES = re.compile(r"\s+")


def clean(text: str) -> str:
    """HTML tags (review sites leave ``<br />`` in) and runs of white space become one space."""
    return SPACES.sub(" ", MARKUP.sub(" ", text)).strip()


class ReviewPredictor(Predictor):
    """Texts in, class probabilities out: the saved model's answer on the cleaned texts."""

    def __init__(self, model: Predictor) -> None:
        super().__init__(model.labels, model.temperature)
        self.model = model
        self.inputs = model.inputs
        self.output = model.output

    @classmethod
    def load_files(cls, directory: Path, manifest: dict[str, Any]) -> ReviewPredictor:
        """The model the trainer saved here (its manifest ``format``, e.g. ``sklearn``)."""
        model_class = PREDICTORS.load(manifest["format"], str(directory))
        return cls(model_class.load_files(directory, manifest))

    def predict(self, batch: Sequence[Any]) -> NDArray[np.float64]:
        return self.model.predict([clean(text) for text in batch])

    def input_signals(self, batch: Sequence[Any]) -> dict[str, NDArray[np.float64]]:
        return self.model.input_signals([clean(text) for text in batch])

"""A small, deterministic, real :class:`Predictor` for tests and examples: no training needed.

:class:`KeywordPredictor` scores each class by how many of its keywords a text contains (whole
lowercase words), plus a per-class bias; the scores are its logits, so probabilities come from
the same temperature-scaled softmax every predictor uses. It saves to and loads from a directory
like any predictor (format ``keyword``).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from driftloop.errors import InvalidInputError
from driftloop.predictors import PREDICTORS, TextClassifier

_WORD = re.compile(r"[a-z0-9']+")
KEYWORDS_FILE = "keywords.json"


class KeywordPredictor(TextClassifier):
    """Logit of a class = ``weight`` * (its keywords found in the text) + its bias."""

    format: ClassVar[str] = "keyword"

    def __init__(
        self,
        keywords: Mapping[str, Sequence[str]],
        *,
        bias: Mapping[str, float] | None = None,
        weight: float = 2.0,
        temperature: float = 1.0,
    ) -> None:
        if not keywords:
            raise InvalidInputError("a keyword predictor needs at least one class")
        super().__init__(list(keywords), temperature)
        self.keywords = {
            label: tuple(w.lower() for w in words) for label, words in keywords.items()
        }
        self.bias = {label: float((bias or {}).get(label, 0.0)) for label in self.labels}
        self.weight = float(weight)
        self._index = {
            word: [i for i, label in enumerate(self.labels) if word in self.keywords[label]]
            for words in self.keywords.values()
            for word in words
        }
        self._lock = threading.Lock()
        self.batch_sizes: list[int] = []
        """How many texts each :meth:`logits` call scored (to observe batching)."""

    def logits(self, texts: Sequence[str]) -> NDArray[np.float64]:
        with self._lock:
            self.batch_sizes.append(len(texts))
        scores = np.tile(np.array([self.bias[label] for label in self.labels]), (len(texts), 1))
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                for column in self._index.get(word, ()):
                    scores[row, column] += self.weight
        return scores.astype(np.float64)

    def save_files(self, directory: Path) -> dict[str, Any]:
        (directory / KEYWORDS_FILE).write_text(
            json.dumps(
                {
                    "keywords": {k: list(v) for k, v in self.keywords.items()},
                    "bias": self.bias,
                    "weight": self.weight,
                },
                indent=2,
                sort_keys=True,
            )
        )
        return {"files": [KEYWORDS_FILE]}

    @classmethod
    def load_files(cls, directory: Path, manifest: dict[str, Any]) -> KeywordPredictor:
        data = json.loads((directory / KEYWORDS_FILE).read_text())
        keywords = {label: data["keywords"][label] for label in manifest["labels"]}
        return cls(
            keywords, bias=data["bias"], weight=data["weight"], temperature=manifest["temperature"]
        )


PREDICTORS.register(KeywordPredictor.format, f"{__name__}:KeywordPredictor")


def review_keyword_predictor(*, extra_classes: bool = False) -> KeywordPredictor:
    """A keyword model over review-like classes; ``extra_classes`` adds a second topic, so
    two versions give visibly different answers."""
    keywords: dict[str, list[str]] = {
        "Food - Positive": ["delicious", "tasty", "fresh"],
        "Food - Negative": ["stale", "bland", "cold"],
        "Service - Positive": ["friendly", "quick", "helpful"],
        "Service - Negative": ["rude", "slow", "ignored"],
    }
    if extra_classes:
        keywords["Price - Positive"] = ["cheap", "bargain", "affordable"]
        keywords["Price - Negative"] = ["expensive", "overpriced", "pricey"]
    return KeywordPredictor(keywords, bias={"Food - Positive": 0.1})

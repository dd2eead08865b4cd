"""Measures of a model's *inputs*, one number per text, that the server reports beside each
prediction so that drift of the inputs themselves can be monitored, whatever the model's
confidence does (a model can be confidently wrong on inputs it has never seen).

A predictor names its measures in :meth:`~driftloop.predictors.Predictor.input_signals`; the
reference profile keeps a sample of each on the validation reference (``ReferenceProfile.
inputs``), which a ``type: drift`` monitor on the same metric tests live windows against. Any
numeric per-prediction feature fits the same path (a tabular model's columns, an embedding's
distance to the reference): report it under a name, give the profile its reference sample.

``oov_rate``: the share of a text's words that are not in the model's training vocabulary (0
for a text with no words). Texts from a topic, domain or language the model never learned
carry more unknown words; so do typos and new product names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np
from numpy.typing import NDArray

OOV_RATE = "oov_rate"
"""The metric name of the out-of-vocabulary rate, as the server reports it."""

WORD_PATTERN = r"(?u)\b\w\w+\b"
"""scikit-learn's default word pattern (words of two or more characters)."""


class VocabularyProfile:
    """A word vocabulary and the tokenization that produced it; measures each text's share of
    words outside it."""

    def __init__(
        self, words: Iterable[str], *, token_pattern: str = WORD_PATTERN, lowercase: bool = True
    ) -> None:
        self.words = frozenset(words)
        self.lowercase = lowercase
        self._tokens = re.compile(token_pattern)

    def oov_rates(self, texts: Sequence[str]) -> NDArray[np.float64]:
        """Per text: unknown words / words (0 where a text has no words)."""
        known, findall = self.words.__contains__, self._tokens.findall
        rates = np.zeros(len(texts), dtype=np.float64)
        for i, text in enumerate(texts):
            tokens = findall(text.lower() if self.lowercase else text)
            if tokens:
                rates[i] = 1.0 - sum(map(known, tokens)) / len(tokens)
        return rates

"""The built-in predictors pass driftloop.testing's predictor suite: sklearn (trained on a small
sample) and transformers (a tiny BERT built here, never downloaded)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from driftloop.objectstore import bundled_reviews_path
from driftloop.predictors import Predictor
from driftloop.testing.checks import ConformanceError, PredictorSubject, check_predictor
from driftloop.testing.predictors import KeywordPredictor
from driftloop.trainers.base import TrainingData
from driftloop.trainers.sklearn import SklearnParams, SklearnTrainer

TEXTS = [
    "the soup was cold and the waiter rude",
    "delicious fresh bread, friendly staff",
    "",
    "slow",
    "an ordinary meal at an ordinary price, nothing to write home about",
]


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    reviews = pd.read_csv(bundled_reviews_path(), dtype=str, keep_default_na=False)
    return reviews.groupby("label", group_keys=False).sample(12, random_state=0)


def test_sklearn_predictor(sample: pd.DataFrame) -> None:
    trained = SklearnTrainer(SklearnParams(c_grid=[1.0])).fit(TrainingData(sample))
    check_predictor(PredictorSubject(trained.predictor, TEXTS))


def test_transformers_predictor(sample: pd.DataFrame, tmp_path: Path) -> None:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    from driftloop.trainers.transformers import PooledClassifierModule, TransformersPredictor

    words = sorted({w for text in TEXTS for w in text.replace(",", " ").split()})
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]))
    torch.manual_seed(0)
    encoder = BertModel(
        BertConfig(
            vocab_size=5 + len(words),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=32,
        )
    )
    labels = sorted(sample["label"].unique())
    predictor = TransformersPredictor(
        labels,
        1.3,
        model=PooledClassifierModule(encoder, len(labels)),
        tokenizer=BertTokenizer(str(vocab_file)),
        max_length=32,
        threads=1,
    )
    check_predictor(PredictorSubject(predictor, TEXTS, tolerance=1e-5))


class BatchSensitivePredictor(KeywordPredictor):
    """Scores a text by how long its batch is: what the suite is there to catch."""

    format = "keyword"

    def logits(self, texts: object) -> object:  # type: ignore[override]
        scores = super().logits(texts)  # type: ignore[arg-type]
        return scores * len(scores)


def test_the_suite_catches_an_answer_that_depends_on_the_batch() -> None:
    predictor: Predictor = BatchSensitivePredictor({"a": ["x"], "b": ["y"]})
    with pytest.raises(ConformanceError, match=r"answers_each_input_alone.*input \d alone"):
        check_predictor(PredictorSubject(predictor, ["x y", "y"]))

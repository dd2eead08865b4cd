"""Fine-tuning's two CPU savings: length-grouped batches, and the frozen lower layers run once
with each step running only the tuned layers on their kept output (checked against the whole
encoder, with a fallback when an architecture does not fit the shortcut)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pytest
import torch
from transformers.models.bert.modeling_bert import BertLayer
from transformers.models.distilbert.modeling_distilbert import TransformerBlock

from driftloop.config import ModelConfig
from driftloop.errors import TrainingError
from driftloop.predictors import Evaluation
from driftloop.trainers.base import TrainedModel, TrainingData
from driftloop.trainers.transformers import TransformersPredictor, TransformersTrainer
from driftloop.trainers.transformers_tuning import (
    LENGTH_GROUP,
    _PassThrough,
    length_grouped_batches,
)

from .tiny_encoders import reviews, write_tiny_encoder

Architecture = Literal["bert", "distilbert"]


@pytest.fixture(scope="module")
def small_reviews() -> pd.DataFrame:
    return reviews(per_class=20)  # 24 validation rows: typicality's neighbours (patched)


def padded_share(batches: list[np.ndarray[Any, Any]], lengths: np.ndarray[Any, Any]) -> float:
    """Tokens the batches compute (each padded to its longest text) per real token."""
    return float(sum(len(rows) * lengths[rows].max() for rows in batches) / lengths.sum())


def test_length_grouped_batches_hold_every_row_once_and_pad_little() -> None:
    texts = pd.read_csv(Path(__file__).parents[2] / "src/driftloop/data/reviews.csv.gz")["text"]
    lengths = np.minimum(texts.str.len().to_numpy()[:3_000] // 4 + 2, 128)  # tokens, roughly
    rng = np.random.default_rng(0)

    first = length_grouped_batches(lengths, 16, rng)
    second = length_grouped_batches(lengths, 16, rng)

    for epoch in (first, second):
        assert sorted(np.concatenate(epoch).tolist()) == list(range(len(lengths)))
        assert sum(len(rows) < 16 for rows in epoch) <= -(-len(lengths) // (16 * LENGTH_GROUP))
        assert padded_share(epoch, lengths) < 1.1
    assert not np.array_equal(np.concatenate(first), np.concatenate(second))  # reshuffled
    shuffled = rng.permutation(len(lengths))
    random_batches = [shuffled[i : i + 16] for i in range(0, len(shuffled), 16)]
    assert padded_share(random_batches, lengths) > 1.5


def fit_counting_rows(
    checkpoint: Path, frame: pd.DataFrame, **params: Any
) -> tuple[TrainedModel, list[int]]:
    """Fit, and count the rows that reach each encoder layer (in layer order)."""
    rows: dict[int, int] = {}

    def count(module: torch.nn.Module, _args: object, output: object) -> None:
        if isinstance(module, (BertLayer, TransformerBlock)):
            hidden = output[0] if isinstance(output, tuple) else output
            assert isinstance(hidden, torch.Tensor)
            rows[id(module)] = rows.get(id(module), 0) + len(hidden)

    settings = {"mode": "head", "max_length": 48, "eval_batch_size": 8, "batch_size": 8, **params}
    config = ModelConfig(trainer="transformers", base_model=str(checkpoint), params=settings)
    hook = torch.nn.modules.module.register_module_forward_hook(count)
    try:
        model = TransformersTrainer(config).fit(TrainingData(frame))
    finally:
        hook.remove()
    return model, list(rows.values())


def weights(model: TrainedModel) -> dict[str, torch.Tensor]:
    assert isinstance(model.predictor, TransformersPredictor)
    return {k: v.detach().clone() for k, v in model.predictor.model.state_dict().items()}


def tune_the_top_layer_on_the_whole_encoder(
    checkpoint: Path,
    frame: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> TrainedModel:
    """Tune the top layer with warnings captured, and check that the frozen layer saw every
    training row in the probe's pass and in each epoch: the shortcut was not used."""
    monkeypatch.setattr("driftloop.trainers.transformers.TYPICALITY_SAMPLE", 24)
    with caplog.at_level(logging.WARNING, logger="driftloop.trainers.transformers"):
        model, rows = fit_counting_rows(
            checkpoint, frame, train_layers=1, epochs=2, learning_rate=1e-3
        )
    held_out = model.params["validation_rows"] + model.params["test_rows"]
    assert rows[0] == held_out + 3 * model.params["train_rows"]
    return model


@pytest.mark.parametrize("architecture", ["bert", "distilbert"])
def test_tuning_on_kept_states_trains_as_the_whole_encoder_does(
    architecture: Architecture,
    small_reviews: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without dropout, tuning the top layer on the kept output of the frozen ones gives the
    weights that running the whole encoder every step gives, while the frozen layers see each
    training row once instead of once per epoch and the probe's pass."""
    checkpoint = write_tiny_encoder(
        tmp_path / architecture,
        small_reviews["text"],
        architecture=architecture,
        layers=3,
        dropout=0.0,
    )
    settings = {"train_layers": 1, "epochs": 2, "learning_rate": 1e-3}
    monkeypatch.setattr("driftloop.trainers.transformers.TYPICALITY_SAMPLE", 24)

    shortcut, shortcut_rows = fit_counting_rows(checkpoint, small_reviews, **settings)
    monkeypatch.setattr(
        "driftloop.trainers.transformers_tuning._shortcut_matches", lambda *_args: False
    )
    whole, whole_rows = fit_counting_rows(checkpoint, small_reviews, **settings)

    held_out = shortcut.params["validation_rows"] + shortcut.params["test_rows"]
    train = shortcut.params["train_rows"]
    assert shortcut_rows[:2] == [held_out + train] * 2  # the frozen layers
    assert whole_rows[:2] == [held_out + 3 * train] * 2  # probe pass + 2 epochs
    tuned, reference = weights(shortcut), weights(whole)
    assert tuned.keys() == reference.keys()
    for name, tensor in reference.items():
        torch.testing.assert_close(tuned[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    assert isinstance(shortcut.evaluation, Evaluation)
    assert isinstance(whole.evaluation, Evaluation)
    assert shortcut.evaluation.per_class_f1 == whole.evaluation.per_class_f1
    assert shortcut.evaluation.ece == pytest.approx(whole.evaluation.ece, abs=1e-6)


def test_a_shortcut_that_differs_from_the_encoder_is_not_used(
    small_reviews: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An architecture whose layers the pass-through does not feed as its embeddings would: the
    check before the first step sees other outputs, says so, and every step runs the whole
    encoder."""
    checkpoint = write_tiny_encoder(tmp_path / "bert", small_reviews["text"], layers=2)
    original = _PassThrough.forward

    def shifted(self: _PassThrough, *args: object, **kwargs: object) -> torch.Tensor:
        return original(self, *args, **kwargs) + 1.0

    monkeypatch.setattr(_PassThrough, "forward", shifted)
    model = tune_the_top_layer_on_the_whole_encoder(checkpoint, small_reviews, monkeypatch, caplog)

    assert "every training step runs the whole encoder" in caplog.text
    assert model.evaluation.n == model.params["test_rows"]


@pytest.mark.parametrize("settings", [{"mode": "full"}, {"mode": "head", "train_layers": 1}])
def test_a_diverging_loss_is_a_training_error(
    settings: dict[str, Any], small_reviews: pd.DataFrame, tmp_path: Path
) -> None:
    checkpoint = write_tiny_encoder(tmp_path / "bert", small_reviews["text"], layers=2)
    config = ModelConfig(
        trainer="transformers",
        base_model=str(checkpoint),
        params={**settings, "max_length": 48, "epochs": 3, "learning_rate": 1e30},
    )

    with pytest.raises(TrainingError, match=r"non-finite by step .*lower learning_rate"):
        TransformersTrainer(config).fit(TrainingData(small_reviews))


def test_kept_states_over_the_memory_cap_are_not_kept(
    small_reviews: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The frozen layers' kept output costs host memory (float32 per real token): over
    ``KEPT_STATES_MAX_BYTES`` every step runs the whole encoder instead, and a warning says so."""
    checkpoint = write_tiny_encoder(tmp_path / "bert", small_reviews["text"], layers=2)
    monkeypatch.setattr("driftloop.trainers.transformers_tuning.KEPT_STATES_MAX_BYTES", 1024)
    tune_the_top_layer_on_the_whole_encoder(checkpoint, small_reviews, monkeypatch, caplog)

    assert "would take" in caplog.text

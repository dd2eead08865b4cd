"""A Hugging Face sequence-classification checkpoint as a driftloop model.

``driftloop models register NAME DIR`` takes a directory that ``save_pretrained`` wrote for an
``AutoModelForSequenceClassification`` (``config.json`` with a ``*ForSequenceClassification``
architecture, its weights, its tokenizer; what a fine-tune such as the seed's DistilBERT
produces): :mod:`driftloop.trainers.importing` recognises it and writes the registered copy's
``driftloop-model.json`` (format ``hf-checkpoint``, the labels of ``config.id2label``), and
:class:`HFCheckpointPredictor` serves it: the checkpoint's own tokenizer and
classification head, its logits softmaxed (temperature 1 unless the manifest says otherwise).
Nothing is downloaded: the checkpoint loads with ``local_files_only``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from driftloop.backends import require_module
from driftloop.errors import IntegrityError
from driftloop.predictors import TextClassifier
from driftloop.trainers.importing import HF_FORMAT

try:
    import torch
    import transformers
except ImportError as exc:  # the optional extra is missing: say how to install it
    require_module(exc.name or "torch", "transformers")
    raise


class HFCheckpointPredictor(TextClassifier):
    """A Hugging Face ``AutoModelForSequenceClassification`` checkpoint with its tokenizer."""

    format: ClassVar[str] = HF_FORMAT

    def __init__(
        self,
        labels: Sequence[str],
        temperature: float,
        *,
        model: Any,
        tokenizer: Any,
        max_length: int = 256,
        batch_size: int = 32,
    ) -> None:
        super().__init__(labels, temperature)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size

    @classmethod
    def load_files(cls, directory: Path, manifest: dict[str, Any]) -> HFCheckpointPredictor:
        progress_bars = transformers.utils.logging.is_progress_bar_enabled()
        transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        try:  # no tqdm bar in the CLI's output
            model = transformers.AutoModelForSequenceClassification.from_pretrained(
                directory, local_files_only=True
            )
            tokenizer = transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise IntegrityError(f"cannot load the checkpoint in {directory}: {exc}") from exc
        finally:
            if progress_bars:
                transformers.utils.logging.enable_progress_bar()  # type: ignore[no-untyped-call]
        labels = [str(label) for label in manifest["labels"]]
        if model.config.num_labels != len(labels):
            raise IntegrityError(
                f"{directory}: the checkpoint has {model.config.num_labels} "
                f"outputs but the manifest names {len(labels)} labels"
            )
        return cls(
            labels,
            float(manifest.get("temperature", 1.0)),
            model=model,
            tokenizer=tokenizer,
            max_length=int(manifest.get("max_length", 256)),
            batch_size=int(manifest.get("batch_size", 32)),
        )

    def logits(self, batch: Sequence[str]) -> NDArray[np.float64]:
        rows: list[NDArray[np.float64]] = []
        with torch.inference_mode():
            for start in range(0, len(batch), self.batch_size):
                encoded = self.tokenizer(
                    list(batch[start : start + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                rows.append(self.model(**encoded).logits.double().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, len(self.labels)))

    def save_files(self, directory: Path) -> dict[str, Any]:
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        return {"max_length": self.max_length, "batch_size": self.batch_size}

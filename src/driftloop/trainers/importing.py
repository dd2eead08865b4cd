"""Models saved by other tools, made registrable: ``driftloop models register NAME DIR`` takes a
driftloop model directory (a ``driftloop-model.json``: driftloop's own predictors, or custom
predictor code) and also a Hugging Face sequence-classification checkpoint directory or an MLflow
pyfunc model directory, which :func:`importable_directory` copies with the manifest that serves
it (format ``hf-checkpoint``, :class:`~driftloop.trainers.hf_checkpoint.HFCheckpointPredictor`;
format ``mlflow``, :class:`~driftloop.trainers.mlflow_pyfunc.MLflowPredictor`). The user's
directory is never written to; the registered copy is what is hashed and stored.

Recognising a directory reads its files only: no torch, no MLflow, no code of the model.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from driftloop.errors import InvalidInputError, NotFoundError
from driftloop.predictors.base import MANIFEST
from driftloop.predictors.schema import InputSchema

HF_CONFIG = "config.json"
HF_FORMAT = "hf-checkpoint"
VOCABULARIES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
)
MLFLOW_MODEL = "MLmodel"
MLFLOW_FORMAT = "mlflow"


@contextmanager
def importable_directory(directory: Path) -> Iterator[Path]:
    """``directory`` itself when it holds a ``driftloop-model.json``; for a Hugging Face
    checkpoint, a temporary copy with the manifest added (removed after the block); else an
    error saying what a model directory must hold."""
    if not directory.is_dir():
        raise NotFoundError(f"no such model directory: {directory}")
    if (directory / MANIFEST).is_file():
        yield directory
        return
    manifest = (
        {"format": MLFLOW_FORMAT}
        if (directory / MLFLOW_MODEL).is_file()
        else hf_checkpoint_manifest(directory)
    )
    if manifest is None:
        raise InvalidInputError(
            f"{directory} is not a model directory: it holds no {MANIFEST} (a driftloop "
            f"predictor, docs/byo-model.md), no {HF_CONFIG} (a Hugging Face "
            f"sequence-classification checkpoint) and no {MLFLOW_MODEL} (an MLflow model)"
        )
    with tempfile.TemporaryDirectory(prefix="driftloop-import-") as scratch:
        copy = Path(scratch) / directory.name
        shutil.copytree(directory, copy, symlinks=False)
        (copy / MANIFEST).write_text(json.dumps(manifest, indent=2))
        yield copy


def hf_checkpoint_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest that makes ``directory`` a driftloop model, when it is a Hugging Face
    sequence-classification checkpoint (``None`` when it has no ``config.json``); an
    :class:`InvalidInputError` naming what is missing when it is an incomplete one."""
    path = directory / HF_CONFIG
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path} is not JSON: {exc}") from None
    architectures = config.get("architectures") if isinstance(config, dict) else None
    if not isinstance(architectures, list) or not any(
        str(name).endswith("ForSequenceClassification") for name in architectures
    ):
        raise InvalidInputError(
            f"{path} is not a sequence-classification checkpoint (architectures "
            f"{architectures!r}; expected a *ForSequenceClassification)"
        )
    if not any((directory / name).is_file() for name in VOCABULARIES):
        raise InvalidInputError(
            f"{directory} holds no tokenizer ({', '.join(VOCABULARIES)}): "
            "save the tokenizer beside the model"
        )
    id2label = config.get("id2label") or {}
    labels = [
        str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(len(id2label))
    ]
    return {"format": HF_FORMAT, "labels": labels, "temperature": 1.0}


REFERENCE_SUFFIXES = (".csv", ".jsonl", ".parquet")


def read_reference(path: Path, inputs: InputSchema) -> tuple[list[Any], dict[str, Any]]:
    """The inputs of a reference file (``.csv``, ``.jsonl`` or ``.parquet``; a ``text`` column
    for a text model, one column per feature for a record model; other columns, a label for
    one, are ignored) and what the registry records of it: its name, SHA-256 and row count."""
    if not path.is_file():
        raise NotFoundError(f"no such reference file: {path}")
    if path.suffix not in REFERENCE_SUFFIXES:
        raise InvalidInputError(
            f"reference file {path.name}: expected one of {', '.join(REFERENCE_SUFFIXES)}"
        )
    import pandas as pd

    try:
        frame = (
            pd.read_csv(path)
            if path.suffix == ".csv"
            else pd.read_json(path, lines=True)
            if path.suffix == ".jsonl"
            else pd.read_parquet(path)
        )
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"reference file {path.name} cannot be read: {exc}") from None
    needed = ["text"] if inputs.is_text else [f.name for f in inputs.features if not f.optional]
    missing = [column for column in needed if column not in frame.columns]
    if missing:
        raise InvalidInputError(f"reference file {path.name} lacks the columns {missing}")
    if frame.empty:
        raise InvalidInputError(f"reference file {path.name} has no rows")
    if inputs.is_text:
        items: list[Any] = [str(text) for text in frame["text"].tolist()]
    else:
        names = [f.name for f in inputs.features]
        columns = {
            name: frame[name].tolist() if name in frame.columns else [None] * len(frame)
            for name in names
        }
        items = [
            {name: _present(columns[name][row]) for name in names} for row in range(len(frame))
        ]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return items, {"file": path.name, "sha256": digest, "rows": len(items)}


def _present(value: Any) -> Any:
    """A cell's value; ``None`` for a missing one (pandas reads it as NaN)."""
    return None if isinstance(value, float) and math.isnan(value) else value

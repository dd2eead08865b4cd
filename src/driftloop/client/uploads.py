"""Uploading a trained model (``POST /v1/models/{name}/versions``): the archive
(:func:`pack_model`) and the headers that describe it. The server's upload route
(:mod:`driftloop.pipeline.uploads`) reads the same header names."""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from driftloop.client.results import UploadedVersion
from driftloop.errors import InvalidInputError

SHA256_HEADER = "X-Driftloop-Sha256"
DATASET_HEADER = "X-Driftloop-Dataset"
SNAPSHOT_HEADER = "X-Driftloop-Snapshot"
RUN_ID_HEADER = "X-Driftloop-Run-Id"
"""The id the training workflow was dispatched with (its ``incident_id`` input)."""
TRAINER_HEADER = "X-Driftloop-Trainer"
SOURCE_HEADERS = {
    "repo": "X-Driftloop-Source-Repo",
    "commit": "X-Driftloop-Source-Commit",
    "run_id": "X-Driftloop-Source-Run",
}
"""The training code a version was made by, recorded as the version's ``training_code``."""
UPLOAD_CHUNK = 1 << 20


def pack_model(model_dir: Path, archive: Path, evaluation: Path | None = None) -> str:
    """Write ``model_dir`` as ``model/`` (and ``evaluation`` as ``evaluation.json``) to the
    gzipped tar ``archive``; returns its SHA-256 (hex)."""
    if not model_dir.is_dir():
        raise InvalidInputError(f"no such model directory: {model_dir}")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(model_dir, arcname="model")
        if evaluation is not None:
            tar.add(evaluation, arcname="evaluation.json")
    digest = hashlib.sha256()
    with archive.open("rb") as file:
        while chunk := file.read(UPLOAD_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def upload_headers(
    sha256: str,
    snapshot_id: str,
    *,
    run_id: str | None,
    trainer: str,
    source: Mapping[str, str] | None,
) -> dict[str, str]:
    """The headers of an upload of the archive whose SHA-256 is ``sha256``."""
    headers = {
        SHA256_HEADER: sha256,
        SNAPSHOT_HEADER: snapshot_id,
        TRAINER_HEADER: trainer,
        "Content-Type": "application/gzip",
    }
    if run_id:
        headers[RUN_ID_HEADER] = run_id
    for key, value in (source or {}).items():
        if key not in SOURCE_HEADERS:
            raise InvalidInputError(
                f"unknown source field {key!r}; known: {', '.join(SOURCE_HEADERS)}"
            )
        if value:
            headers[SOURCE_HEADERS[key]] = value
    return headers


def read_uploaded(data: Mapping[str, Any]) -> UploadedVersion:
    return UploadedVersion(
        str(data["model"]), int(data["version"]), str(data["job_id"]), bool(data["attached"])
    )

"""The one door back from a training workflow: ``POST /v1/models/{name}/versions``.

A workflow (the training-repo template's, or any other) uploads the model it trained as a
gzipped tar with its SHA-256 in a header, using a key with the ``register`` scope and nothing
else (no database or storage credentials). driftloop checks the hash and the archive, registers
the model as a new version without any alias, and hands it to the retrain pipeline:

* a retrain job of that model waiting for its remote run (``trainer: github_dispatch``) gets it:
  the version's trigger names the run's id, which is what the waiting trainer looks for;
* otherwise a new job is opened with the version recorded as ``result.uploaded_version``; so
  too when the waiting job ended (cancelled, timed out) while the upload was being registered.

Either way the candidate goes through the gate, the deploy, the verification and the rollback,
like any other; nothing uploaded reaches production without them.

``GET /v1/models/{name}/training-data`` (same scope) gives the workflow the rows it trains on:
a snapshot less the rows the gate holds out.

The archive holds ``model/`` (a saved predictor directory) and optionally ``evaluation.json``
(what ``driftloop models register --evaluation`` reads: a classifier's or, for a model with
``models.<name>.output: regression``, a regression model's fields). Only files and folders are
accepted: a link, a device, an absolute name or one with ``..`` refuses the whole upload.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
import pandas as pd
from fastapi import APIRouter, Request, Response

from driftloop.client import (
    DATASET_HEADER,
    RUN_ID_HEADER,
    SHA256_HEADER,
    SNAPSHOT_HEADER,
    SOURCE_HEADERS,
    TRAINER_HEADER,
)
from driftloop.config import Config
from driftloop.errors import ConflictError, InvalidInputError, LimitError, NotFoundError
from driftloop.objectstore.datasets import DatasetStore, Snapshot
from driftloop.pipeline.queue import Job, JobQueue, JobState
from driftloop.pipeline.results import JobResult
from driftloop.registry.model_registry import ModelRegistry
from driftloop.registry.versions import read_evaluation_file
from driftloop.serving.auth import RegisterKey
from driftloop.serving.limits import UPLOAD_LIMIT
from driftloop.trainers.evaluation import split_holdout

MODEL_FOLDER = "model"
EVALUATION_FILE = "evaluation.json"
UNPACKED_FACTOR = 4
"""An archive may unpack to at most this many times ``serving.max_upload_bytes``."""
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HEADER_VALUE = re.compile(r"^[\w.:/@+-]{1,200}$")


@dataclass(frozen=True)
class UploadedCandidate:
    """What became of an upload: the version registered and the job that gates it."""

    model: str
    version: int
    job_id: str
    attached: bool
    """True: a job waiting for its remote run took it; False: a new job was opened."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "job_id": self.job_id,
            "attached": self.attached,
        }


@dataclass(frozen=True)
class UploadHeaders:
    """The upload's own headers, checked."""

    sha256: str
    snapshot_id: str
    run_id: str | None
    trainer: str
    source: dict[str, str]

    @classmethod
    def parse(cls, headers: Any) -> UploadHeaders:
        sha256 = str(headers.get(SHA256_HEADER, "")).strip().lower()
        if not _SHA256.fullmatch(sha256):
            raise InvalidInputError(
                f"send the archive's SHA-256 as {SHA256_HEADER}: 64 hex "
                "digits (sha256sum model.tar.gz)"
            )
        snapshot = _header(headers, SNAPSHOT_HEADER)
        if snapshot is None:
            raise InvalidInputError(
                f"send the dataset snapshot the model trained on as "
                f"{SNAPSHOT_HEADER}: the gate holds out rows of it"
            )
        source = {
            key: value
            for key, name in SOURCE_HEADERS.items()
            if (value := _header(headers, name)) is not None
        }
        return cls(
            sha256=sha256,
            snapshot_id=snapshot,
            run_id=_header(headers, RUN_ID_HEADER),
            trainer=_header(headers, TRAINER_HEADER) or "upload",
            source=source,
        )


def _header(headers: Any, name: str) -> str | None:
    value = str(headers.get(name, "")).strip()
    if not value:
        return None
    if not _HEADER_VALUE.fullmatch(value):
        raise InvalidInputError(f"{name} must be 1-200 letters, digits or . : / @ + - _")
    return value


def extract_candidate(archive: Path, into: Path, *, max_bytes: int) -> Path:
    """Unpack ``archive`` (a gzipped tar) into ``into`` and return its ``model/`` folder.

    Refuses, unpacking nothing: an archive that is not a gzipped tar, a member that is not a
    plain file or folder (links, devices), a name that is absolute or climbs with ``..``, and
    contents over ``max_bytes`` in all."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            total = 0
            for member in members:
                _check_member(member)
                total += member.size
            if total > max_bytes:
                raise LimitError(
                    f"the archive unpacks to {total} bytes, over {max_bytes} "
                    f"({UNPACKED_FACTOR}x {UPLOAD_LIMIT})",
                    UPLOAD_LIMIT,
                )
            tar.extractall(into, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidInputError(f"the upload is not a readable .tar.gz archive: {exc}") from exc
    model_dir = into / MODEL_FOLDER
    if not model_dir.is_dir():
        raise InvalidInputError(
            f"the archive has no {MODEL_FOLDER}/ folder: pack the saved "
            f"predictor as {MODEL_FOLDER}/ (and optionally "
            f"{EVALUATION_FILE}), e.g. tar -czf model.tar.gz -C output "
            f"{MODEL_FOLDER} {EVALUATION_FILE}"
        )
    return model_dir


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    if not (member.isfile() or member.isdir()):
        kind = "link" if member.issym() or member.islnk() else "special file"
        raise InvalidInputError(
            f"archive member {name!r} is a {kind}: only files and folders are accepted"
        )
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or ".." in parts or "\\" in name or ":" in name:
        raise InvalidInputError(f"archive member {name!r} leaves the archive's folder")


class CandidateUploads:
    """Registers an uploaded candidate and hands it to a retrain job (attached or new)."""

    def __init__(
        self, config: Config, registry: ModelRegistry, queue: JobQueue, datasets: DatasetStore
    ) -> None:
        self.config = config
        self.registry = registry
        self.queue = queue
        self.datasets = datasets

    def check_model(self, model: str) -> None:
        if model not in self.config.models:
            raise NotFoundError(
                f"model {model!r} is not configured in driftloop.yaml; "
                f"configured: {', '.join(sorted(self.config.models)) or 'none'}"
            )

    def receive(self, model: str, upload: UploadHeaders, model_dir: Path) -> UploadedCandidate:
        """Register ``model_dir`` as a version of ``model`` and give it to a job."""
        self.check_model(model)
        snapshot = self.datasets.get(self.config.models[model].data, upload.snapshot_id)
        waiting = self._waiting_job(model, upload.run_id)
        run_id = _correlation_id(waiting) if waiting is not None else upload.run_id
        evaluation_file = model_dir.parent / EVALUATION_FILE
        evaluation, reference = (
            read_evaluation_file(evaluation_file, self.config.models[model].output)
            if evaluation_file.is_file()
            else (None, None)
        )
        production = self.registry.aliases(model).get("production")
        version = self.registry.register(
            model,
            model_dir,
            trainer=upload.trainer,
            params={"training_code": upload.source} if upload.source else {},
            snapshot_id=snapshot.snapshot_id,
            snapshot_hash=snapshot.content_hash,
            evaluation=evaluation,
            reference=reference,
            parent_version=production,
            trigger=_trigger(run_id, upload.source, upload.sha256),
        )
        ended = ""
        if waiting is not None:
            job = self.queue.get(waiting.job_id)
            if not job.state.finished or job.candidate_version == version.version:
                return UploadedCandidate(model, version.version, waiting.job_id, attached=True)
            # it ended (cancelled, timed out) between the check and the registration: the
            # version gets a job of its own instead of staying registered with none
            ended = f" after job {job.job_id[:8]} ended {job.state.value}"
        opened = self.queue.enqueue(
            model,
            reason=f"v{version.version} uploaded" + (f" for {run_id}" if run_id else "") + ended,
            trigger="upload",
            force=True,
            result=JobResult(uploaded_version=version.version),
        )
        if not opened.created:
            raise ConflictError(
                f"v{version.version} of {model} is registered, but retrain job "
                f"{opened.job.job_id[:8]} started meanwhile; it stays registered without an "
                "alias: upload again when that job ends"
            )
        return UploadedCandidate(model, version.version, opened.job.job_id, attached=False)

    def training_rows(self, model: str, snapshot_id: str | None) -> tuple[pd.DataFrame, Snapshot]:
        """The rows of the snapshot a workflow trains on, less those the gate holds out
        (``split_holdout`` with ``pipeline.holdout_fraction``, ``pipeline.seed`` and the
        model's output kind, as the retrain pipeline gates a remote candidate:
        :func:`~driftloop.pipeline.gate.split_for_remote`)."""
        self.check_model(model)
        model_config = self.config.models[model]
        snapshot = (
            self.datasets.get(model_config.data, snapshot_id)
            if snapshot_id
            else self.datasets.newest(model_config.data)
        )
        train, _ = split_holdout(
            self.datasets.load(snapshot),
            model_config.label_column,
            self.config.pipeline.holdout_fraction,
            seed=self.config.pipeline.seed,
            output=model_config.output,
        )
        return train, snapshot

    def _waiting_job(self, model: str, run_id: str | None) -> Job | None:
        """The job of ``model`` waiting for its remote run, if any; a job doing anything
        else, or waiting for another run than ``run_id``, refuses the upload (409)."""
        job = self.queue.active(model)
        if job is None:
            return None
        waiting = job.state == JobState.TRAINING and bool(job.result.remote_run)
        if not waiting:
            raise ConflictError(
                f"retrain job {job.job_id[:8]} of {model} is {job.state.value}, "
                "not waiting for an upload: upload again when it ends"
            )
        expected = _correlation_id(job)
        if run_id is not None and expected is not None and run_id != expected:
            raise ConflictError(
                f"retrain job {job.job_id[:8]} of {model} waits for run "
                f"{expected}, not {run_id}: upload again when it ends"
            )
        return job


def _correlation_id(job: Job) -> str | None:
    state = job.result.remote_run.get("state") or {}
    value = state.get("correlation_id") if isinstance(state, dict) else None
    return None if value is None else str(value)


def _trigger(run_id: str | None, source: dict[str, str], sha256: str) -> str:
    """The version's trigger: what a waiting remote trainer matches (the run's id)."""
    if run_id is None:
        return f"ci:{source['run_id']}" if "run_id" in source else f"upload:{sha256[:12]}"
    return f"dispatch:{run_id}" if run_id.startswith("dispatch-") else f"incident:{run_id}"


def uploads_router(uploads: CandidateUploads) -> APIRouter:
    """``POST /v1/models/{name}/versions`` and ``GET /v1/models/{name}/training-data``
    (``register`` scope): all a training workflow needs of driftloop."""
    router = APIRouter(prefix="/v1/models", tags=["registry"])
    limit = uploads.config.serving.max_upload_bytes

    @router.post(
        "/{name}/versions",
        status_code=201,
        summary="Upload a trained model as a candidate for the retrain pipeline",
    )
    async def upload_version(name: str, request: Request, key: RegisterKey) -> dict[str, Any]:
        """The body is the gzipped tar of ``model/`` (and optionally ``evaluation.json``);
        headers: its SHA-256, the snapshot it trained on, the dispatch's run id, the training
        code's repository, commit and run. 201 with the version and the job gating it."""
        del key
        uploads.check_model(name)
        upload = UploadHeaders.parse(request.headers)
        with tempfile.TemporaryDirectory(prefix="driftloop-upload-") as temporary:
            archive = Path(temporary) / "candidate.tar.gz"
            await _receive(request, archive, upload.sha256, limit)
            model_dir = await anyio.to_thread.run_sync(
                lambda: extract_candidate(
                    archive, Path(temporary) / "unpacked", max_bytes=limit * UNPACKED_FACTOR
                )
            )
            outcome = await anyio.to_thread.run_sync(uploads.receive, name, upload, model_dir)
        return outcome.to_dict()

    @router.get(
        "/{name}/training-data",
        response_class=Response,
        summary="The training rows of a snapshot, without the gate's rows (CSV)",
    )
    def training_data(name: str, key: RegisterKey, snapshot: str | None = None) -> Response:
        """What a training workflow trains on: the rows of ``snapshot`` (default: the newest
        snapshot of the model's dataset) that the gate does not hold out, as CSV; the
        dataset and the snapshot id come as headers."""
        del key
        rows, chosen = uploads.training_rows(name, snapshot)
        return Response(
            rows.to_csv(index=False),
            media_type="text/csv",
            headers={DATASET_HEADER: chosen.dataset, SNAPSHOT_HEADER: chosen.snapshot_id},
        )

    return router


async def _receive(request: Request, archive: Path, sha256: str, limit: int) -> None:
    """Stream the body to ``archive``, counting and hashing; over ``limit`` or a hash that
    differs from ``sha256`` is an error and keeps nothing."""
    digest = hashlib.sha256()
    size = 0
    with archive.open("wb") as file:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise LimitError(f"upload exceeds {UPLOAD_LIMIT} ({limit} bytes)", UPLOAD_LIMIT)
            digest.update(chunk)
            file.write(chunk)
    if size == 0:
        raise InvalidInputError("the upload is empty: send the model's .tar.gz as the body")
    if digest.hexdigest() != sha256:
        raise InvalidInputError(
            f"the body's SHA-256 is {digest.hexdigest()}, not the "
            f"{sha256} of {SHA256_HEADER}: the upload was damaged or is "
            "not the archive it names; nothing was registered"
        )


__all__ = ["CandidateUploads", "UploadedCandidate", "extract_candidate", "uploads_router"]

"""``driftloop.Client`` and ``driftloop.AsyncClient``: a typed client of a driftloop server.

::

    from driftloop import Client

    with Client("https://driftloop.example", api_key=os.environ["DRIFTLOOP_KEY"]) as client:
        result = client.predict("reviews", ["the soup was cold"])
        client.feedback("reviews", [(result.predictions[0].id, "Food - Negative")])

Both classes have the same methods (the async ones are coroutines) and share everything but the
HTTP call: each operation is a :class:`_Call` (method, path, body, how to read the answer).
An error answer raises driftloop's own exception of the type the server named
(``NotFoundError``, ``ForbiddenError``, ``LimitError`` with its ``limit``, ``RateLimitedError``
with its ``retry_after`` ...), else the one its status maps to; a server that cannot be reached
raises :class:`BackendUnavailableError`. The client needs nothing of driftloop's server side:
httpx only.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import tarfile
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import anyio
import httpx

from driftloop import errors
from driftloop.errors import BackendUnavailableError, DriftloopError, InvalidInputError

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0

_BY_STATUS: dict[int, type[DriftloopError]] = {
    401: errors.AuthError,
    403: errors.ForbiddenError,
    404: errors.NotFoundError,
    409: errors.ConflictError,
    413: errors.PayloadTooLargeError,
    422: errors.InvalidInputError,
    429: errors.RateLimitedError,
    503: errors.BackendUnavailableError,
}


# --- what the server answers ------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    id: str
    """The prediction id, for :meth:`Client.feedback`."""
    label: str
    """The most probable class (``"class"`` in the JSON answer)."""
    confidence: float
    probabilities: dict[str, float]


@dataclass(frozen=True)
class PredictResult:
    model: str
    version: int
    predictions: list[Prediction]


@dataclass(frozen=True)
class FeedbackResult:
    accepted: int
    matched: int
    """Labels whose prediction the server found (they count towards realized accuracy)."""
    relabelled: int = 0
    """Labels for predictions labelled before: they replace the stored label."""


@dataclass(frozen=True)
class ModelStatus:
    name: str
    ready: bool
    version: int | None
    content_hash: str | None
    labels: list[str]
    error: str | None
    extra: dict[str, Any] = field(default_factory=dict)
    """Every other field the server sent (load and deploy times, ...)."""


@dataclass(frozen=True)
class MonitorStatus:
    name: str
    type: str
    metric: str
    state: str | None
    """The worst state over the monitor's groups (``OK``, ``WARN``, ``ALERT``, ``NO_DATA``)."""
    error: str | None
    groups: list[dict[str, Any]]


@dataclass(frozen=True)
class InsightPoint:
    """One point for :meth:`Client.report_insights`; ``timestamp`` in unix seconds (default:
    when the server receives it)."""

    name: str
    value: float
    tags: Mapping[str, str] = field(default_factory=dict)
    timestamp: float | None = None
    point_id: str | None = None


@dataclass(frozen=True)
class LoggedPrediction:
    """A prediction made elsewhere, for :meth:`Client.log_predictions`: the client's own
    ``id`` (feedback names it; not 32 lowercase hex digits, the shape of the server's ids), the
    ``input`` it scored (a text, or a record of features) and its output: ``label`` with
    ``confidence`` and/or ``probabilities`` (classification), or ``value`` (regression).
    ``timestamp`` in unix seconds (default: when the server receives it)."""

    id: str
    input: str | Mapping[str, Any] | None = None
    label: str | None = None
    confidence: float | None = None
    probabilities: Mapping[str, float] | None = None
    value: float | None = None
    timestamp: float | None = None


@dataclass(frozen=True)
class LoggedResult:
    accepted: int
    """Predictions logged now."""
    duplicates: int
    """Ids logged before for this model (kept as first logged: a retry is harmless)."""


@dataclass(frozen=True)
class UploadedVersion:
    """A model uploaded with :meth:`Client.upload_version`: the version it was registered as
    and the retrain job that gates, deploys and verifies it."""

    model: str
    version: int
    job_id: str
    attached: bool
    """True: a retrain job waiting for its remote run took it; False: a new job was opened."""


# --- uploading a trained model (POST /v1/models/{name}/versions) -------------------------

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


def _upload_headers(
    sha256: str,
    snapshot_id: str,
    *,
    run_id: str | None,
    trainer: str,
    source: Mapping[str, str] | None,
) -> dict[str, str]:
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


def _read_uploaded(data: Mapping[str, Any]) -> UploadedVersion:
    return UploadedVersion(
        str(data["model"]), int(data["version"]), str(data["job_id"]), bool(data["attached"])
    )


# --- one operation, whatever the HTTP client --------------------------------------------


@dataclass(frozen=True)
class _Call(Generic[T]):
    method: str
    path: str
    read: Callable[[Any], T]
    body: Any = None
    params: Mapping[str, str] | None = None


def _model_path(name: str, action: str = "") -> str:
    return f"/v1/models/{quote(name, safe='')}" + (f"/{action}" if action else "")


def _read_prediction(item: Mapping[str, Any]) -> Prediction:
    return Prediction(
        id=item["id"],
        label=item["class"],
        confidence=float(item["confidence"]),
        probabilities={k: float(v) for k, v in item["probabilities"].items()},
    )


def _read_predict(data: Mapping[str, Any]) -> PredictResult:
    return PredictResult(
        model=data["model"],
        version=int(data["version"]),
        predictions=[_read_prediction(p) for p in data["predictions"]],
    )


_MODEL_FIELDS = ("name", "ready", "version", "content_hash", "labels", "error")


def _read_model(data: Mapping[str, Any]) -> ModelStatus:
    return ModelStatus(
        name=data["name"],
        ready=bool(data["ready"]),
        version=data.get("version"),
        content_hash=data.get("content_hash"),
        labels=list(data.get("labels", [])),
        error=data.get("error"),
        extra={k: v for k, v in data.items() if k not in _MODEL_FIELDS},
    )


def _read_monitor(data: Mapping[str, Any]) -> MonitorStatus:
    return MonitorStatus(
        name=data["name"],
        type=data["type"],
        metric=data["metric"],
        state=data.get("state"),
        error=data.get("error"),
        groups=list(data.get("groups", [])),
    )


def _predict(model: str, texts: Sequence[str]) -> _Call[PredictResult]:
    if isinstance(texts, str):
        raise InvalidInputError("predict takes a list of texts; wrap one text in a list")
    return _Call("POST", _model_path(model, "predict"), _read_predict, {"texts": list(texts)})


def _feedback(
    model: str, labels: Iterable[tuple[str, str] | tuple[str, str, str]]
) -> _Call[FeedbackResult]:
    items = []
    for entry in labels:
        item = {"prediction_id": entry[0], "label": entry[1]}
        if len(entry) == 3:
            item["text"] = entry[2]
        items.append(item)
    return _Call(
        "POST",
        _model_path(model, "feedback"),
        lambda data: FeedbackResult(
            int(data["accepted"]), int(data["matched"]), int(data.get("relabelled", 0))
        ),
        {"feedback": items},
    )


def _insights(points: Iterable[InsightPoint]) -> _Call[int]:
    body = []
    for point in points:
        if not math.isfinite(point.value):
            raise InvalidInputError(f"insight {point.name!r}: {point.value} is not finite")
        item: dict[str, Any] = {"name": point.name, "value": point.value, "tags": dict(point.tags)}
        if point.timestamp is not None:
            item["timestamp"] = datetime.fromtimestamp(point.timestamp, UTC).isoformat()
        if point.point_id is not None:
            item["point_id"] = point.point_id
        body.append(item)
    return _Call("POST", "/v1/insights", lambda data: int(data["accepted"]), {"points": body})


def _log_predictions(
    model: str, predictions: Iterable[LoggedPrediction], version: int
) -> _Call[LoggedResult]:
    body = []
    for prediction in predictions:
        item: dict[str, Any] = {"id": prediction.id}
        if prediction.input is not None:
            item["input"] = (
                prediction.input if isinstance(prediction.input, str) else dict(prediction.input)
            )
        for name, value in (
            ("class", prediction.label),
            ("confidence", prediction.confidence),
            ("value", prediction.value),
        ):
            if value is not None:
                item[name] = value
        if prediction.probabilities is not None:
            item["probabilities"] = dict(prediction.probabilities)
        if prediction.timestamp is not None:
            item["timestamp"] = datetime.fromtimestamp(prediction.timestamp, UTC).isoformat()
        body.append(item)
    return _Call(
        "POST",
        _model_path(model, "predictions"),
        lambda data: LoggedResult(int(data["accepted"]), int(data["duplicates"])),
        {"version": version, "predictions": body},
    )


def _models() -> _Call[list[ModelStatus]]:
    return _Call("GET", "/v1/models", lambda data: [_read_model(m) for m in data["models"]])


def _model(name: str) -> _Call[ModelStatus]:
    return _Call("GET", _model_path(name), _read_model)


def _monitors() -> _Call[list[MonitorStatus]]:
    return _Call("GET", "/v1/monitors", lambda data: [_read_monitor(m) for m in data])


def _deploy(model: str, version: int) -> _Call[ModelStatus]:
    return _Call("POST", _model_path(model, "deploy"), _read_model, {"version": version})


def _rollback(model: str) -> _Call[ModelStatus]:
    return _Call("POST", _model_path(model, "rollback"), _read_model)


def _error(response: httpx.Response) -> DriftloopError:
    status = response.status_code
    kind, message, limit = "", response.text[:500], None
    try:
        detail = response.json()["error"]
        kind, message = str(detail["type"]), str(detail["message"])
        limit = str(detail["limit"]) if detail.get("limit") is not None else None
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    found = getattr(errors, kind, None)
    if not (
        isinstance(found, type)
        and issubclass(found, DriftloopError)
        and found.status_code == status
    ):
        found = _BY_STATUS.get(status, DriftloopError)
    error = found(
        f"{response.request.method} {response.request.url.path} answered {status}: {message}"
    )
    error.status_code = status
    if isinstance(error, errors.LimitError | errors.InvalidTextError):
        error.limit = limit
    if isinstance(error, errors.RateLimitedError | errors.OverloadedError):
        with contextlib.suppress(ValueError):
            error.retry_after = float(response.headers.get("retry-after", error.retry_after))
    return error


def _result(call: _Call[T], response: httpx.Response) -> T:
    if response.status_code >= 400:
        raise _error(response)
    try:
        return call.read(response.json())
    except (ValueError, KeyError, TypeError) as exc:
        raise BackendUnavailableError(
            f"{call.method} {call.path}: the server answered {response.status_code} with a body "
            f"this client cannot read ({exc}): is the URL a driftloop server?"
        ) from exc


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class Client:
    """Blocking client; one pooled connection per server. Use as a context manager or
    :meth:`close` it."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=_headers(api_key),
            timeout=timeout,
            transport=transport,
        )

    def _run(self, call: _Call[T]) -> T:
        try:
            response = self._http.request(
                call.method, call.path, json=call.body, params=call.params
            )
        except httpx.HTTPError as exc:
            raise BackendUnavailableError(
                f"{call.method} {self._http.base_url}{call.path}: {exc}"
            ) from exc
        return _result(call, response)

    def predict(self, model: str, texts: Sequence[str]) -> PredictResult:
        """Classify ``texts`` with ``model``'s production version (scope ``predict``)."""
        return self._run(_predict(model, texts))

    def feedback(
        self, model: str, labels: Iterable[tuple[str, str] | tuple[str, str, str]]
    ) -> FeedbackResult:
        """True labels: ``(prediction_id, label)`` or ``(prediction_id, label, text)``."""
        return self._run(_feedback(model, labels))

    def report_insights(self, points: Iterable[InsightPoint]) -> int:
        """Send insight points now (scope ``insights``); returns how many were accepted. For
        reporting from a request path, use ``report_insights`` with an ``https://``
        transport instead: it batches, spools and never blocks."""
        return self._run(_insights(points))

    def log_predictions(
        self, model: str, predictions: Iterable[LoggedPrediction], *, version: int
    ) -> LoggedResult:
        """Log predictions ``version`` of ``model`` made elsewhere (scope ``insights``), so
        that :meth:`feedback` naming their ids joins them (realized accuracy)."""
        return self._run(_log_predictions(model, predictions, version))

    def models(self) -> list[ModelStatus]:
        return self._run(_models())

    def model(self, name: str) -> ModelStatus:
        return self._run(_model(name))

    def monitors(self) -> list[MonitorStatus]:
        """Every monitor's state (scope ``admin``)."""
        return self._run(_monitors())

    def deploy(self, model: str, version: int) -> ModelStatus:
        """Serve ``version`` as production (scope ``admin``)."""
        return self._run(_deploy(model, version))

    def rollback(self, model: str) -> ModelStatus:
        """Move production back to its previous version (scope ``admin``)."""
        return self._run(_rollback(model))

    def upload_version(
        self,
        model: str,
        model_dir: Path,
        *,
        snapshot_id: str,
        evaluation: Path | None = None,
        run_id: str | None = None,
        trainer: str = "upload",
        source: Mapping[str, str] | None = None,
    ) -> UploadedVersion:
        """Upload a trained model directory as a candidate (scope ``register``): it is
        registered, then gated, deployed and verified by a retrain job (one that waits for
        ``run_id``, or a new one). ``snapshot_id`` is the snapshot it trained on;
        ``evaluation`` the JSON of ``driftloop models register --evaluation``; ``source``
        the training code's ``repo``, ``commit`` and ``run_id``."""
        with tempfile.TemporaryDirectory(prefix="driftloop-upload-") as temporary:
            archive = Path(temporary) / "model.tar.gz"
            sha256 = pack_model(model_dir, archive, evaluation)
            call = _Call("POST", _model_path(model, "versions"), _read_uploaded)
            headers = _upload_headers(
                sha256, snapshot_id, run_id=run_id, trainer=trainer, source=source
            )
            with archive.open("rb") as body:
                try:
                    response = self._http.post(call.path, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    raise BackendUnavailableError(
                        f"POST {self._http.base_url}{call.path}: {exc}"
                    ) from exc
            return _result(call, response)

    def training_data(
        self, model: str, output: Path, snapshot_id: str | None = None
    ) -> tuple[str, str]:
        """Write the rows a training job trains on to the CSV ``output`` (scope ``register``):
        ``snapshot_id`` (default: the newest snapshot of the model's dataset) without the
        rows the gate holds out. Returns the dataset and the snapshot id."""
        path = _model_path(model, "training-data")
        params = {"snapshot": snapshot_id} if snapshot_id else None
        try:
            with self._http.stream("GET", path, params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error(response)
                output.parent.mkdir(parents=True, exist_ok=True)
                with output.open("wb") as file:
                    for chunk in response.iter_bytes():
                        file.write(chunk)
                return (response.headers[DATASET_HEADER], response.headers[SNAPSHOT_HEADER])
        except httpx.HTTPError as exc:
            raise BackendUnavailableError(f"GET {self._http.base_url}{path}: {exc}") from exc

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """The same methods as :class:`Client`, as coroutines."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=_headers(api_key),
            timeout=timeout,
            transport=transport,
        )

    async def _run(self, call: _Call[T]) -> T:
        try:
            response = await self._http.request(
                call.method, call.path, json=call.body, params=call.params
            )
        except httpx.HTTPError as exc:
            raise BackendUnavailableError(
                f"{call.method} {self._http.base_url}{call.path}: {exc}"
            ) from exc
        return _result(call, response)

    async def predict(self, model: str, texts: Sequence[str]) -> PredictResult:
        return await self._run(_predict(model, texts))

    async def feedback(
        self, model: str, labels: Iterable[tuple[str, str] | tuple[str, str, str]]
    ) -> FeedbackResult:
        return await self._run(_feedback(model, labels))

    async def report_insights(self, points: Iterable[InsightPoint]) -> int:
        return await self._run(_insights(points))

    async def log_predictions(
        self, model: str, predictions: Iterable[LoggedPrediction], *, version: int
    ) -> LoggedResult:
        return await self._run(_log_predictions(model, predictions, version))

    async def models(self) -> list[ModelStatus]:
        return await self._run(_models())

    async def model(self, name: str) -> ModelStatus:
        return await self._run(_model(name))

    async def monitors(self) -> list[MonitorStatus]:
        return await self._run(_monitors())

    async def deploy(self, model: str, version: int) -> ModelStatus:
        return await self._run(_deploy(model, version))

    async def rollback(self, model: str) -> ModelStatus:
        return await self._run(_rollback(model))

    async def upload_version(
        self,
        model: str,
        model_dir: Path,
        *,
        snapshot_id: str,
        evaluation: Path | None = None,
        run_id: str | None = None,
        trainer: str = "upload",
        source: Mapping[str, str] | None = None,
    ) -> UploadedVersion:
        """:meth:`Client.upload_version`; the archive is packed and read in a thread."""
        with tempfile.TemporaryDirectory(prefix="driftloop-upload-") as temporary:
            archive = Path(temporary) / "model.tar.gz"
            sha256 = await anyio.to_thread.run_sync(pack_model, model_dir, archive, evaluation)
            call = _Call("POST", _model_path(model, "versions"), _read_uploaded)
            headers = _upload_headers(
                sha256, snapshot_id, run_id=run_id, trainer=trainer, source=source
            )
            with archive.open("rb") as file:

                async def body() -> AsyncIterator[bytes]:
                    while chunk := await anyio.to_thread.run_sync(file.read, UPLOAD_CHUNK):
                        yield chunk

                try:
                    response = await self._http.post(call.path, content=body(), headers=headers)
                except httpx.HTTPError as exc:
                    raise BackendUnavailableError(
                        f"POST {self._http.base_url}{call.path}: {exc}"
                    ) from exc
            return _result(call, response)

    async def training_data(
        self, model: str, output: Path, snapshot_id: str | None = None
    ) -> tuple[str, str]:
        """:meth:`Client.training_data`."""
        path = _model_path(model, "training-data")
        params = {"snapshot": snapshot_id} if snapshot_id else None
        try:
            async with self._http.stream("GET", path, params=params) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _error(response)
                output.parent.mkdir(parents=True, exist_ok=True)
                with output.open("wb") as file:
                    async for chunk in response.aiter_bytes():
                        await anyio.to_thread.run_sync(file.write, chunk)
                return (response.headers[DATASET_HEADER], response.headers[SNAPSHOT_HEADER])
        except httpx.HTTPError as exc:
            raise BackendUnavailableError(f"GET {self._http.base_url}{path}: {exc}") from exc

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

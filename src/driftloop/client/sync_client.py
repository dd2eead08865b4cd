"""The blocking :class:`Client`."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from driftloop.client.calls import (
    DEFAULT_TIMEOUT,
    Call,
    auth_headers,
    deploy_call,
    error_from,
    feedback_call,
    insights_call,
    log_predictions_call,
    model_call,
    model_path,
    models_call,
    monitors_call,
    predict_call,
    result_of,
    rollback_call,
)
from driftloop.client.results import (
    FeedbackResult,
    InsightPoint,
    LoggedPrediction,
    LoggedResult,
    ModelStatus,
    MonitorStatus,
    PredictResult,
    UploadedVersion,
)
from driftloop.client.uploads import (
    DATASET_HEADER,
    SNAPSHOT_HEADER,
    pack_model,
    read_uploaded,
    upload_headers,
)
from driftloop.errors import BackendUnavailableError

T = TypeVar("T")


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
            headers=auth_headers(api_key),
            timeout=timeout,
            transport=transport,
        )

    def _run(self, call: Call[T]) -> T:
        try:
            response = self._http.request(
                call.method, call.path, json=call.body, params=call.params
            )
        except httpx.HTTPError as exc:
            raise BackendUnavailableError(
                f"{call.method} {self._http.base_url}{call.path}: {exc}"
            ) from exc
        return result_of(call, response)

    def predict(
        self,
        model: str,
        texts: Sequence[str] | None = None,
        *,
        records: Sequence[Mapping[str, Any]] | None = None,
    ) -> PredictResult:
        """Predict with ``model``'s production version (scope ``predict``): ``texts`` for a
        text model, or ``records`` (``{feature: value}`` each) for a model that takes records."""
        return self._run(predict_call(model, texts, records))

    def feedback(
        self, model: str, labels: Iterable[tuple[str, str] | tuple[str, str, str]]
    ) -> FeedbackResult:
        """True labels: ``(prediction_id, label)`` or ``(prediction_id, label, text)``."""
        return self._run(feedback_call(model, labels))

    def report_insights(self, points: Iterable[InsightPoint]) -> int:
        """Send insight points now (scope ``insights``); returns how many were accepted. For
        reporting from a request path, use ``report_insights`` with an ``https://``
        transport instead: it batches, spools and never blocks."""
        return self._run(insights_call(points))

    def log_predictions(
        self, model: str, predictions: Iterable[LoggedPrediction], *, version: int
    ) -> LoggedResult:
        """Log predictions ``version`` of ``model`` made elsewhere (scope ``insights``), so
        that :meth:`feedback` naming their ids joins them (realized accuracy)."""
        return self._run(log_predictions_call(model, predictions, version))

    def models(self) -> list[ModelStatus]:
        return self._run(models_call())

    def model(self, name: str) -> ModelStatus:
        return self._run(model_call(name))

    def monitors(self) -> list[MonitorStatus]:
        """Every monitor's state (scope ``admin``)."""
        return self._run(monitors_call())

    def deploy(self, model: str, version: int) -> ModelStatus:
        """Serve ``version`` as production (scope ``admin``)."""
        return self._run(deploy_call(model, version))

    def rollback(self, model: str) -> ModelStatus:
        """Move production back to its previous version (scope ``admin``)."""
        return self._run(rollback_call(model))

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
            call = Call("POST", model_path(model, "versions"), read_uploaded)
            headers = upload_headers(
                sha256, snapshot_id, run_id=run_id, trainer=trainer, source=source
            )
            with archive.open("rb") as body:
                try:
                    response = self._http.post(call.path, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    raise BackendUnavailableError(
                        f"POST {self._http.base_url}{call.path}: {exc}"
                    ) from exc
            return result_of(call, response)

    def training_data(
        self, model: str, output: Path, snapshot_id: str | None = None
    ) -> tuple[str, str]:
        """Write the rows a training job trains on to the CSV ``output`` (scope ``register``):
        ``snapshot_id`` (default: the newest snapshot of the model's dataset) without the
        rows the gate holds out. Returns the dataset and the snapshot id."""
        path = model_path(model, "training-data")
        params = {"snapshot": snapshot_id} if snapshot_id else None
        try:
            with self._http.stream("GET", path, params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from(response)
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

"""The asyncio :class:`AsyncClient`: the methods of :class:`~driftloop.client.Client`, as
coroutines."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
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
    UPLOAD_CHUNK,
    pack_model,
    read_uploaded,
    upload_headers,
)
from driftloop.errors import BackendUnavailableError

T = TypeVar("T")


class AsyncClient:
    """The same methods as :class:`~driftloop.client.Client`, as coroutines."""

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
            headers=auth_headers(api_key),
            timeout=timeout,
            transport=transport,
        )

    async def _run(self, call: Call[T]) -> T:
        try:
            response = await self._http.request(
                call.method, call.path, json=call.body, params=call.params
            )
        except httpx.HTTPError as exc:
            raise BackendUnavailableError(
                f"{call.method} {self._http.base_url}{call.path}: {exc}"
            ) from exc
        return result_of(call, response)

    async def predict(
        self,
        model: str,
        texts: Sequence[str] | None = None,
        *,
        records: Sequence[Mapping[str, Any]] | None = None,
    ) -> PredictResult:
        return await self._run(predict_call(model, texts, records))

    async def feedback(
        self, model: str, labels: Iterable[tuple[str, str] | tuple[str, str, str]]
    ) -> FeedbackResult:
        return await self._run(feedback_call(model, labels))

    async def report_insights(self, points: Iterable[InsightPoint]) -> int:
        return await self._run(insights_call(points))

    async def log_predictions(
        self, model: str, predictions: Iterable[LoggedPrediction], *, version: int
    ) -> LoggedResult:
        return await self._run(log_predictions_call(model, predictions, version))

    async def models(self) -> list[ModelStatus]:
        return await self._run(models_call())

    async def model(self, name: str) -> ModelStatus:
        return await self._run(model_call(name))

    async def monitors(self) -> list[MonitorStatus]:
        return await self._run(monitors_call())

    async def deploy(self, model: str, version: int) -> ModelStatus:
        return await self._run(deploy_call(model, version))

    async def rollback(self, model: str) -> ModelStatus:
        return await self._run(rollback_call(model))

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
            call = Call("POST", model_path(model, "versions"), read_uploaded)
            headers = upload_headers(
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
            return result_of(call, response)

    async def training_data(
        self, model: str, output: Path, snapshot_id: str | None = None
    ) -> tuple[str, str]:
        """:meth:`Client.training_data`."""
        path = model_path(model, "training-data")
        params = {"snapshot": snapshot_id} if snapshot_id else None
        try:
            async with self._http.stream("GET", path, params=params) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise error_from(response)
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

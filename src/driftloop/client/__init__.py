"""``driftloop.Client`` and ``driftloop.AsyncClient``: a typed client of a driftloop server.

::

    from driftloop import Client

    with Client("https://driftloop.example", api_key=os.environ["DRIFTLOOP_KEY"]) as client:
        result = client.predict("reviews", ["the soup was cold"])
        client.feedback("reviews", [(result.predictions[0].id, "Food - Negative")])
        churn = client.predict("churn", records=[{"tenure_months": 3, "plan": "basic"}])

Both classes have the same methods (the async ones are coroutines) and share everything but the
HTTP call: each operation is a :class:`~driftloop.client.calls.Call` (method, path, body, how
to read the answer), built in :mod:`~driftloop.client.calls`; the answers are the dataclasses of
:mod:`~driftloop.client.results`. An error answer raises driftloop's own exception of the type
the server named (``NotFoundError``, ``ForbiddenError``, ``LimitError`` with its ``limit``,
``RateLimitedError`` with its ``retry_after`` ...), else the one its status maps to; a server
that cannot be reached raises :class:`~driftloop.errors.BackendUnavailableError`. The client
needs nothing of driftloop's server side: httpx only.
"""

from __future__ import annotations

from driftloop.client.async_client import AsyncClient
from driftloop.client.calls import DEFAULT_TIMEOUT
from driftloop.client.results import (
    FeedbackResult,
    InsightPoint,
    LoggedPrediction,
    LoggedResult,
    ModelStatus,
    MonitorStatus,
    Prediction,
    PredictResult,
    UploadedVersion,
)
from driftloop.client.sync_client import Client
from driftloop.client.uploads import (
    DATASET_HEADER,
    RUN_ID_HEADER,
    SHA256_HEADER,
    SNAPSHOT_HEADER,
    SOURCE_HEADERS,
    TRAINER_HEADER,
    UPLOAD_CHUNK,
    pack_model,
)

__all__ = [
    "DATASET_HEADER",
    "DEFAULT_TIMEOUT",
    "RUN_ID_HEADER",
    "SHA256_HEADER",
    "SNAPSHOT_HEADER",
    "SOURCE_HEADERS",
    "TRAINER_HEADER",
    "UPLOAD_CHUNK",
    "AsyncClient",
    "Client",
    "FeedbackResult",
    "InsightPoint",
    "LoggedPrediction",
    "LoggedResult",
    "ModelStatus",
    "MonitorStatus",
    "PredictResult",
    "Prediction",
    "UploadedVersion",
    "pack_model",
]

"""The one HTTP error boundary of the server: every error answer has one JSON shape.

::

    {"error": {"type": "NotFoundError", "message": "no monitor 'nope' ...",
               "limit": "serving.max_body_bytes"}}        # "limit" only on limit errors

except on the Open Inference Protocol's routes (``/v2``, :mod:`driftloop.serving.oip`), where it
is the protocol's ``{"error": "<message>", "type": ..., "limit": ...}`` with the same status.
(The answers of the ASGI middlewares below, which come before routing, keep the first shape.)

Routers (models, feedback, insights, monitors, jobs, dashboard JSON, inbound hooks, graphs)
raise :mod:`driftloop.errors` exceptions and never build an error answer themselves;
:func:`install_error_handlers` maps each class to its ``status_code`` and this body, with
``WWW-Authenticate: Bearer`` on 401 and ``Retry-After`` on 429 (:class:`RateLimitedError`) and
503 (:class:`OverloadedError`). Requests FastAPI refuses itself answer the same way: a body or
parameter of the wrong type is a 422 ``InvalidInputError``, an unknown route a 404
``NotFoundError`` ("no such endpoint"), a wrong method a 405 ``MethodNotAllowedError``; any other
exception is a 500 ``InternalError`` whose details stay in the log. The ASGI middlewares that
answer before routing (body and header limits, load shedding) encode the same body with
:func:`error_json`.

:func:`~driftloop.serving.create_app` installs the handlers; an app that mounts driftloop's
routers itself calls :func:`install_error_handlers` on it.
"""

from __future__ import annotations

import logging
import math
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from driftloop.errors import (
    DriftloopError,
    InvalidTextError,
    LimitError,
    OverloadedError,
    RateLimitedError,
)

logger = logging.getLogger(__name__)

INTERNAL_ERROR = "InternalError"
"""The ``type`` of an unexpected exception's answer (500; the traceback goes to the log)."""
OIP_PREFIX = "/v2"
"""The Open Inference Protocol's routes (:mod:`driftloop.serving.oip`), whose errors have the
protocol's shape."""
_KIND_BY_STATUS = {404: "NotFoundError", 405: "MethodNotAllowedError"}
"""The ``type`` of the answers the router makes itself (no driftloop error behind them)."""


class ErrorDetail(BaseModel):
    type: str
    """The :mod:`driftloop.errors` class (``driftloop.Client`` raises it)."""
    message: str
    limit: str | None = None
    """The ``serving.*`` config key a limit error exceeded."""


class ErrorResponse(BaseModel):
    """Every error answer of the server (documented in OpenAPI)."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (401, "no or unknown API key"),
        (403, "the key lacks the scope"),
        (404, "unknown model or version"),
        (413, "a size limit was exceeded"),
        (422, "malformed or invalid input"),
        (503, "model not loaded or a backend is down"),
    )
}
"""The error answers of the keyed routes, for their OpenAPI ``responses``."""


def error_body(kind: str, message: str, limit: str | None = None) -> dict[str, Any]:
    """The one error body: ``{"error": {"type", "message", "limit"?}}``."""
    detail: dict[str, Any] = {"type": kind, "message": message}
    if limit is not None:
        detail["limit"] = limit
    return {"error": detail}


def error_json(kind: str, message: str, limit: str | None = None) -> bytes:
    """:func:`error_body` encoded, for ASGI middlewares that answer before routing."""
    return (
        ErrorResponse(error=ErrorDetail(type=kind, message=message, limit=limit))
        .model_dump_json(exclude_none=True)
        .encode()
    )


def error_headers(error: DriftloopError) -> dict[str, str] | None:
    """``WWW-Authenticate`` for a 401, ``Retry-After`` (whole seconds) when a retry helps."""
    if isinstance(error, RateLimitedError | OverloadedError):
        return {"Retry-After": str(max(1, math.ceil(error.retry_after)))}
    if error.status_code == 401:
        return {"WWW-Authenticate": "Bearer"}
    return None


def error_response(error: DriftloopError, path: str = "") -> JSONResponse:
    """The answer to ``error``: its status, the one body, its headers. Routers raise instead;
    this is for one that must add to the answer (the dashboard ends a session cookie)."""
    limit = error.limit if isinstance(error, LimitError | InvalidTextError) else None
    return JSONResponse(
        _body_for(path, type(error).__name__, error.message, limit),
        status_code=error.status_code,
        headers=error_headers(error),
    )


def _body_for(path: str, kind: str, message: str, limit: str | None = None) -> dict[str, Any]:
    """:func:`error_body`, or on an Open Inference Protocol route (``/v2``) the protocol's
    ``{"error": "<message>"}`` with ``type`` (and ``limit``) beside it."""
    if path == OIP_PREFIX or path.startswith(OIP_PREFIX + "/"):
        return {"error": message, "type": kind, **({"limit": limit} if limit else {})}
    return error_body(kind, message, limit)


async def _driftloop_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DriftloopError)
    if exc.status_code >= 500 and not isinstance(exc, OverloadedError):
        logger.error(
            "%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc.message
        )
    return error_response(exc, request.url.path)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
        for problem in exc.errors()
    )
    return JSONResponse(
        _body_for(request.url.path, "InvalidInputError", f"invalid request: {problems}"),
        status_code=422,
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    """What the router answers itself: an unknown route (404), a wrong method (405)."""
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    message = str(exc.detail)
    if status == 404 and message == HTTPStatus.NOT_FOUND.phrase:
        message = f"no such endpoint: {request.method} {request.url.path}"
    return JSONResponse(
        _body_for(request.url.path, _KIND_BY_STATUS.get(status, "HTTPError"), message),
        status_code=status,
        headers=exc.headers,
    )


async def _internal_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        _body_for(request.url.path, INTERNAL_ERROR, "internal server error"), status_code=500
    )


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error raised in ``app`` with the one body shape."""
    app.add_exception_handler(DriftloopError, _driftloop_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)


__all__ = [
    "ERROR_RESPONSES",
    "INTERNAL_ERROR",
    "ErrorDetail",
    "ErrorResponse",
    "error_body",
    "error_headers",
    "error_json",
    "error_response",
    "install_error_handlers",
]

"""Limits that hold before any endpoint runs: the request body, and uvicorn's own.

:class:`BodyLimitMiddleware` caps every request body at ``serving.max_body_bytes``, on every
route, with or without a key, before routing and before anything parses it:

- a declared ``Content-Length`` over the limit is answered 413 at once, without reading a
  byte of the body;
- a body without a declared length (``Transfer-Encoding: chunked``) is read here, counted as
  it arrives, and answered 413 as soon as the count passes the limit; one within the limit is
  handed to the app whole, so nothing behind this middleware ever holds more than the limit.

The 413 is the app's JSON error (``{"error": {"type": "LimitError", "message": ...,
"limit": "serving.max_body_bytes"}}``). The connection stays open so that a client which sends
its whole body before it reads (``requests``, ``http.client``) still gets the 413 rather than a
reset; uvicorn drops the rest of the body unread, and the head deadline of
:class:`~driftloop.serving.protocol.LimitedHttpToolsProtocol` closes the connection if no next
request head follows within ``serving.idle_timeout`` of the answer, so a client that keeps
streaming is cut off then.

:func:`uvicorn_options` gives every place that starts uvicorn the ``serving.*`` connection
limits: the size of a request head (``max_header_bytes``), how long a connection may go
without a complete request head (``idle_timeout``: from opening, between keep-alive requests,
or while its head trickles in) and how many connections or requests in progress one server
process takes before it answers 503 (``max_connections``). The head size and the head deadline
are enforced by :class:`~driftloop.serving.protocol.LimitedHttpToolsProtocol` (uvicorn's
httptools protocol has neither).
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from driftloop.config import ServingConfig
from driftloop.errors import LimitError
from driftloop.serving.errors import error_json

BODY_LIMIT = "serving.max_body_bytes"
UPLOAD_LIMIT = "serving.max_upload_bytes"
UPLOAD_PATH = re.compile(r"/v1/models/[^/]+/versions")
"""The model upload (:mod:`driftloop.pipeline.uploads`): it streams its body itself, up to
``serving.max_upload_bytes``."""
PROTOCOL = "driftloop.serving.protocol:LimitedHttpToolsProtocol"


class BodyLimitMiddleware:
    """A pure ASGI middleware: 413 for a request body over ``max_body_bytes``, on any route."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        streamed: Sequence[tuple[re.Pattern[str], int, str]] = (),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.streamed = tuple(streamed)
        """Routes that stream their body themselves (a model upload): ``(path pattern, limit,
        config key)``; a declared length over that limit is answered 413 here, the rest is
        passed on unread for the route to count."""

    # One pass over the request head (length, chunking, streamed routes) in the ASGI hot path.
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: C901
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"transfer-encoding":
                chunked = True
        path = scope.get("path", "")
        for pattern, streamed_limit, key in self.streamed:
            if pattern.fullmatch(path):
                if declared is not None and declared.isdigit() and int(declared) > streamed_limit:
                    await self._refuse(
                        send,
                        f"request body of {int(declared)} bytes exceeds {key} ({streamed_limit})",
                        key,
                    )
                    return
                await self.app(scope, receive, send)
                return
        limit = self.max_body_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(
                send, f"request body of {int(declared)} bytes exceeds {BODY_LIMIT} ({limit})"
            )
            return
        if not chunked and (declared is not None or scope.get("http_version", "1.1")[0] == "1"):
            # the server delivers exactly Content-Length bytes (or none when there is none)
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nobody to answer
                return
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(send, f"request body exceeds {BODY_LIMIT} ({limit} bytes)")
                return
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        del chunks
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send: Send, message: str, limit: str = BODY_LIMIT) -> None:
        content = error_json(LimitError.__name__, message, limit)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(content)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content, "more_body": False})


def uvicorn_options(settings: ServingConfig) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` with the ``serving.*``
    connection limits and ``serving.access_log``; every place that starts uvicorn passes them
    (``driftloop up`` logged every request whatever ``access_log`` said)."""
    options: dict[str, Any] = {
        "access_log": settings.access_log,
        # read by LimitedHttpToolsProtocol too: uvicorn hands protocols only its own config
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": max(1, math.ceil(settings.idle_timeout)),
        "limit_concurrency": settings.max_connections,
    }
    if importlib.util.find_spec("httptools") is not None:
        options["http"] = PROTOCOL
    else:  # h11 enforces the head size itself; idle connections wait for their first request
        options["http"] = "h11"
    return options

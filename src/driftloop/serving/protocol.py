"""uvicorn's httptools HTTP/1.1 protocol with the two limits it lacks: the size of a request
head, and a deadline for it.

uvicorn picks this class by import string (:func:`driftloop.serving.limits.uvicorn_options`
sets ``http``), so every worker of ``driftloop serve --workers N`` uses it too. Its limits come
from the uvicorn config, which is all uvicorn hands a protocol: ``h11_max_incomplete_event_size``
(``serving.max_header_bytes``: the same limit uvicorn's h11 protocol enforces) and
``timeout_keep_alive`` (``serving.idle_timeout``).

- **Head size.** httptools gathers a header whole before it reports it (a 64 MB header is
  64 MB of memory and seconds of copying), so the bytes received while a head is incomplete
  are counted here, and past the limit the connection is answered 431 and closed. A head that
  completes inside one read is not counted, so at most one read (256 KiB) more gets through.
- **Head deadline.** A connection must deliver a complete request head within the timeout of
  opening or of its previous response, or it is closed: an idle connection, one trickling its
  head a byte at a time, or one still streaming the body of a request that was already answered
  (a 413) no longer holds a slot (and a ``max_connections`` place) forever. uvicorn's own
  keep-alive timeout only starts after a response, and any byte resets it. A request being
  answered is never cut.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from driftloop.errors import LimitError
from driftloop.serving.errors import error_json

HEADER_LIMIT = "serving.max_header_bytes"
DEFAULT_MAX_HEAD_BYTES = 65_536


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` with a size cap (431) and a deadline for each request head."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.max_head_bytes = config.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD_BYTES
        self.head_timeout = float(config.timeout_keep_alive)
        self.reading_head = True
        """No request head is complete since the last message ended (or the connection
        opened): what arrives now belongs to the next head."""
        self.head_bytes = 0
        self.heads_completed = 0
        self.head_deadline: asyncio.TimerHandle | None = None

    # -- the head's size ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        counting = self.reading_head
        completed = self.heads_completed
        super().data_received(data)
        if not counting or not self.reading_head or self.heads_completed != completed:
            return
        self.head_bytes += len(data)
        if self.head_bytes > self.max_head_bytes and not self.transport.is_closing():
            self.refuse_head()

    def on_headers_complete(self) -> None:
        self.reading_head = False
        self.heads_completed += 1
        self.head_bytes = 0
        self.cancel_head_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading_head = True

    def refuse_head(self) -> None:
        """431 with the app's JSON error shape, then close: the rest is never parsed."""
        self.reading_head = False
        message = (
            f"the request line and headers exceed {HEADER_LIMIT} ({self.max_head_bytes} bytes)"
        )
        self.logger.warning("Request head over %d bytes: refused with 431.", self.max_head_bytes)
        body = error_json(LimitError.__name__, message, HEADER_LIMIT)
        content = [STATUS_LINE[431]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()

    # -- the head's deadline --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_head_deadline()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.cycle.response_complete and not self.transport.is_closing():
            self.arm_head_deadline()  # idle now, unless a pipelined request started

    def arm_head_deadline(self) -> None:
        self.cancel_head_deadline()
        self.head_deadline = self.loop.call_later(self.head_timeout, self.head_timed_out)

    def cancel_head_deadline(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def head_timed_out(self) -> None:
        self.head_deadline = None
        answering = self.cycle is not None and not self.cycle.response_complete
        if not answering and not self.transport.is_closing():
            self.transport.close()

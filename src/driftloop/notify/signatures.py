"""Webhook signatures, both ways, following the Standard Webhooks specification
(https://www.standardwebhooks.com), through its reference library ``standardwebhooks``.

A signed request carries three headers: ``webhook-id`` (the message's id, the same when it is
resent), ``webhook-timestamp`` (unix seconds) and ``webhook-signature`` (``v1,<base64 of the
HMAC-SHA256 of "<id>.<timestamp>.<body>">``, several separated by spaces). The secret is
``whsec_<base64 key>``. A receiver refuses a timestamp further than its tolerance from its
clock and an id it has seen before (:class:`ReceiptStore`, in the store so that every replica
sees every receipt).

:func:`legacy_signature` is driftloop's first scheme (``sha256=<hex HMAC of the body>``), kept
behind ``signature: legacy`` for receivers and senders that need it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from standardwebhooks.webhooks import Webhook

from driftloop.config import standard_webhook_key
from driftloop.database import Database
from driftloop.errors import AuthError, BackendUnavailableError, ConfigError, ConflictError
from driftloop.notify.tables import notify_webhook_receipts

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
DEFAULT_TOLERANCE = 300.0
_MAX_ID_CHARS = 256


def legacy_signature(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of the exact body bytes (no timestamp, no id)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class StandardSigner:
    """Signs and verifies messages with one ``whsec_`` secret."""

    def __init__(self, secret: str, *, where: str = "secret") -> None:
        try:
            self._webhook = Webhook(standard_webhook_key(secret, where=where))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def _signature(self, message_id: str, timestamp: int, body: bytes) -> bytes:
        signed = self._webhook.sign(
            message_id, datetime.fromtimestamp(timestamp, UTC), body.decode("utf-8")
        )
        return base64.b64decode(signed.partition(",")[2])

    def headers(self, message_id: str, body: bytes, *, timestamp: float) -> dict[str, str]:
        """The three headers of ``body`` sent as message ``message_id`` at ``timestamp``."""
        seconds = int(timestamp)
        signature = base64.b64encode(self._signature(message_id, seconds, body)).decode()
        return {
            ID_HEADER: message_id,
            TIMESTAMP_HEADER: str(seconds),
            SIGNATURE_HEADER: f"v1,{signature}",
        }

    def verify(
        self,
        body: bytes,
        headers: Mapping[str, str],
        *,
        now: float,
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> tuple[str, int]:
        """The message id and timestamp of a correctly signed, timely request; otherwise
        :class:`AuthError` saying what is wrong."""
        lowered = {key.lower(): value for key, value in headers.items()}
        message_id = lowered.get(ID_HEADER, "").strip()
        raw_timestamp = lowered.get(TIMESTAMP_HEADER, "").strip()
        signatures = lowered.get(SIGNATURE_HEADER, "").split()
        if not (message_id and raw_timestamp and signatures):
            raise AuthError(
                f"missing {ID_HEADER}, {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} "
                "header (Standard Webhooks)"
            )
        if len(message_id) > _MAX_ID_CHARS:
            raise AuthError(f"{ID_HEADER} is longer than {_MAX_ID_CHARS} characters")
        if not (raw_timestamp.isascii() and raw_timestamp.isdigit() and len(raw_timestamp) < 16):
            raise AuthError(f"{TIMESTAMP_HEADER} must be unix seconds, got {raw_timestamp[:32]!r}")
        timestamp = int(raw_timestamp)
        if abs(now - timestamp) > tolerance:
            raise AuthError(
                f"{TIMESTAMP_HEADER} is {now - timestamp:+.0f} s from this server's "
                f"clock; the tolerance is {tolerance:g} s"
            )
        try:
            expected = self._signature(message_id, timestamp, body)
        except UnicodeDecodeError:
            raise AuthError("a signed body must be UTF-8") from None
        for candidate in signatures:
            version, _, encoded = candidate.partition(",")
            if version != "v1":
                continue
            try:
                given = base64.b64decode(encoded, validate=True)
            except binascii.Error:
                continue
            if hmac.compare_digest(given, expected):
                return message_id, timestamp
        raise AuthError(f"no valid v1 signature in {SIGNATURE_HEADER}")


class ReceiptStore:
    """The ids of the signed messages received, until they could no longer pass the timestamp
    check: a second message with the same id is a replay. Kept in the store
    (``notify_webhook_receipts``), so a replay to another replica is refused too."""

    def __init__(self, database: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.database = database
        self.clock = clock

    def claim(self, source: str, message_id: str, *, keep_for: float) -> None:
        """Record ``message_id`` from ``source``; :class:`ConflictError` if it was seen."""
        now = self.clock()
        receipt = hashlib.sha256(f"{source}\n{message_id}".encode()).hexdigest()
        table = notify_webhook_receipts
        try:
            with self.database.engine.begin() as connection:
                connection.execute(table.delete().where(table.c.expires_at <= now))
            with self.database.engine.begin() as connection:
                connection.execute(
                    table.insert().values(
                        receipt=receipt, received_at=now, expires_at=now + keep_for
                    )
                )
        except IntegrityError:
            raise ConflictError(
                f"{ID_HEADER} {message_id[:64]!r} was already received: a "
                "replayed request is refused"
            ) from None
        except SQLAlchemyError as exc:
            raise BackendUnavailableError("webhook receipts: the store is unavailable") from exc


__all__ = [
    "DEFAULT_TOLERANCE",
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "ReceiptStore",
    "StandardSigner",
    "legacy_signature",
]

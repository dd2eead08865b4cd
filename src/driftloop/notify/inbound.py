"""Inbound alerts: ``POST /v1/hooks/alert`` takes Datadog webhook and Prometheus Alertmanager
(webhook version 4) payloads, so teams that monitor elsewhere can drive driftloop's retraining.

Requests must be signed with ``hooks.secret`` following the Standard Webhooks specification
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature``; :mod:`driftloop.notify.signatures`):
a timestamp further than ``hooks.tolerance`` from the server's clock, or a ``webhook-id`` seen
before (on any replica), is refused. With ``hooks.signature: legacy`` the first scheme is
accepted instead: ``X-Driftloop-Signature: sha256=<hex HMAC-SHA256 of the body>`` or
``Authorization: Bearer <secret>`` (what Alertmanager's ``http_config`` and Datadog's custom
headers can send). Answers: 202 with the incident id(s); 401 for a missing, wrong, stale or
unsigned request; 404 when the alert names an unknown model; 409 for a replay; 413 for a body
over 1 MiB; 422 for a payload that is neither format. Errors have the server's one body,
``{"error": {"type", "message"}}`` (:mod:`driftloop.serving.errors`).

Which model an alert is about: Alertmanager's ``model`` label (of the alert, else the common
labels); for Datadog, a ``model`` field or a ``model:<name>`` tag in ``tags`` / ``alert_scope``
(``$TAGS``, ``$ALERT_SCOPE``), or in the ``{...}`` scope of the event title.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from driftloop.config import Config, HooksConfig
from driftloop.errors import AuthError, InvalidInputError, NotFoundError, PayloadTooLargeError
from driftloop.notify.retrain import EnqueueRetrain
from driftloop.notify.signatures import ReceiptStore, StandardSigner, legacy_signature

logger = logging.getLogger(__name__)

AlertSource = Literal["datadog", "alertmanager"]
AlertStatus = Literal["firing", "resolved"]
MAX_BODY_BYTES = 1_048_576
SIGNATURE_HEADER = "X-Driftloop-Signature"

_DATADOG_KEYS = {
    "title",
    "body",
    "event_type",
    "alert_transition",
    "alert_id",
    "event_title",
    "event_msg",
    "aggreg_key",
    "alert_cycle_key",
    "last_updated",
}
_TITLE_TRANSITION = re.compile(r"^\s*\[([^\]]+?)(?:\s+on\s+\{([^}]*)\})?\]\s*(.*)$", re.S)


@dataclass(frozen=True)
class InboundAlert:
    """One alert from another monitoring system."""

    source: AlertSource
    model: str
    status: AlertStatus
    title: str
    labels: Mapping[str, str]
    key: str
    """Stable for one firing → resolved cycle: Datadog's alert cycle/aggregation key,
    Alertmanager's fingerprint (or labels) plus start time."""
    raw: Mapping[str, Any] = field(default_factory=dict)
    url: str | None = None


# -- parsing ----------------------------------------------------------------------------------


def parse_alert_payload(payload: object) -> list[InboundAlert]:
    """Alerts from a decoded JSON body, either format; :class:`InvalidInputError` otherwise."""
    if not isinstance(payload, dict):
        raise InvalidInputError("expected a JSON object (a Datadog or Alertmanager payload)")
    if "alerts" in payload or "version" in payload:
        return parse_alertmanager(payload)
    if _DATADOG_KEYS & payload.keys():
        return [parse_datadog(payload)]
    raise InvalidInputError(
        "not a Datadog webhook payload (no title/event_type/alert_transition) nor an "
        "Alertmanager one (no version/alerts)"
    )


def _string_map(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"{where} must be an object of strings")
    return {str(k): str(v) for k, v in value.items()}


def parse_alertmanager(payload: Mapping[str, Any]) -> list[InboundAlert]:
    """Alertmanager webhook payload, version 4: one :class:`InboundAlert` per alert."""
    version = payload.get("version")
    if version != "4":
        raise InvalidInputError(
            f'Alertmanager webhook version {version!r} is not supported; expected "4"'
        )
    alerts = payload.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise InvalidInputError("alerts must be a non-empty list")
    common = _string_map(payload.get("commonLabels"), "commonLabels")
    common_annotations = _string_map(payload.get("commonAnnotations"), "commonAnnotations")
    parsed: list[InboundAlert] = []
    for index, alert in enumerate(alerts):
        if not isinstance(alert, dict):
            raise InvalidInputError(f"alerts[{index}] must be an object")
        labels = {**common, **_string_map(alert.get("labels"), f"alerts[{index}].labels")}
        annotations = {
            **common_annotations,
            **_string_map(alert.get("annotations"), f"alerts[{index}].annotations"),
        }
        status = alert.get("status", payload.get("status"))
        if status not in {"firing", "resolved"}:
            raise InvalidInputError(
                f"alerts[{index}].status must be firing or resolved, got {status!r}"
            )
        model = labels.get("model")
        if not model:
            raise InvalidInputError(
                f"alerts[{index}] has no 'model' label: add one to the "
                "alerting rule (labels: {model: <name>})"
            )
        fingerprint = str(alert.get("fingerprint") or json.dumps(labels, sort_keys=True))
        title = (
            annotations.get("summary")
            or annotations.get("description")
            or labels.get("alertname")
            or "alert"
        )
        parsed.append(
            InboundAlert(
                source="alertmanager",
                model=model,
                status="firing" if status == "firing" else "resolved",
                title=title,
                labels=labels,
                key=f"{fingerprint}@{alert.get('startsAt', '')}",
                raw=alert,
                url=alert.get("generatorURL")
                if isinstance(alert.get("generatorURL"), str)
                else None,
            )
        )
    return parsed


def _tags(text: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in re.split(r"[,\s]+", text):
        name, sep, value = item.strip().partition(":")
        if sep and name:
            tags[name] = value
    return tags


def parse_datadog(payload: Mapping[str, Any]) -> InboundAlert:
    """A Datadog webhook payload: the default one (``title``, ``body``, ``event_type``,
    ``date``, ``org``, ``id``) or a custom one with ``$ALERT_TRANSITION``, ``$TAGS`` ..."""
    title = str(
        payload.get("title") or payload.get("event_title") or payload.get("alert_title") or ""
    )
    match = _TITLE_TRANSITION.match(title)
    transition = str(
        payload.get("alert_transition")
        or payload.get("transition")
        or (match.group(1) if match else "")
    ).strip()
    if not transition:
        raise InvalidInputError(
            "the Datadog payload says neither alert_transition nor a "
            "'[Triggered]'/'[Recovered]' title"
        )
    tags: dict[str, str] = {}
    for key in ("alert_scope", "scope", "tags"):
        value = payload.get(key)
        if isinstance(value, str):
            tags.update(_tags(value))
        elif isinstance(value, list):
            tags.update(_tags(",".join(str(v) for v in value)))
    if match and match.group(2):
        tags = {**_tags(match.group(2)), **tags}
    model = str(payload.get("model") or tags.get("model") or "")
    if not model:
        raise InvalidInputError(
            "the Datadog alert names no model: add a model:<name> tag to "
            'the monitor\'s scope or a "model" field to the payload'
        )
    status: AlertStatus = (
        "resolved" if transition.lower() in {"recovered", "resolved"} else "firing"
    )
    cycle = (
        payload.get("alert_cycle_key")
        or payload.get("aggreg_key")
        or payload.get("alert_id")
        or (match.group(3) if match else title)
    )
    return InboundAlert(
        source="datadog",
        model=model,
        status=status,
        title=(match.group(3).strip() if match and match.group(3).strip() else title) or model,
        labels=tags,
        key=f"{cycle}:{model}",
        raw=dict(payload),
        url=payload.get("link") if isinstance(payload.get("link"), str) else None,
    )


# -- verification -----------------------------------------------------------------------------


def signature(secret: str, body: bytes) -> str:
    """The legacy ``X-Driftloop-Signature`` value of ``body``."""
    return legacy_signature(secret, body)


def verify_legacy_request(secret: str | None, body: bytes, headers: Mapping[str, str]) -> bool:
    """True when the request carries the shared secret the legacy way (an HMAC signature of the
    body, or a bearer token): neither has a timestamp, so a captured request replays."""
    if not secret:
        return False
    signed = headers.get(SIGNATURE_HEADER.lower()) or headers.get(SIGNATURE_HEADER)
    if signed and hmac.compare_digest(signed.strip().encode(), signature(secret, body).encode()):
        return True
    authorization = headers.get("authorization") or headers.get("Authorization") or ""
    scheme, _, token = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), secret.encode()
    )


class HookVerifier:
    """Admits a signed request to ``/v1/hooks/alert`` as ``hooks`` says, or raises
    :class:`AuthError` (401) or :class:`~driftloop.errors.ConflictError` (409, a replay)."""

    def __init__(
        self, hooks: HooksConfig, receipts: ReceiptStore, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.hooks = hooks
        self.receipts = receipts
        self.clock = clock
        self._signer = (
            StandardSigner(hooks.secret, where="hooks.secret")
            if hooks.secret and hooks.signature == "standard"
            else None
        )

    def __call__(self, body: bytes, headers: Mapping[str, str]) -> None:
        secret = self.hooks.secret
        if not secret:
            raise AuthError("inbound alerts are disabled until hooks.secret is set")
        if self.hooks.signature == "legacy":
            if verify_legacy_request(secret, body, headers):
                return
            raise AuthError(f"missing or invalid {SIGNATURE_HEADER} signature or bearer token")
        assert self._signer is not None
        message_id, _ = self._signer.verify(
            body, headers, now=self.clock(), tolerance=self.hooks.tolerance
        )
        self.receipts.claim("hooks", message_id, keep_for=2 * self.hooks.tolerance)


# -- the handler that maps alerts to retrains -------------------------------------------------


def incident_id_for(alert: InboundAlert) -> str:
    digest = hashlib.sha256(f"{alert.source}\n{alert.key}".encode()).hexdigest()[:16]
    return f"inbound-{alert.source}-{digest}"


class InboundRetrainHandler:
    """Maps an inbound alert to an incident (stable per alert cycle) and, while it fires,
    enqueues a retrain of its model; an unknown model raises :class:`NotFoundError`."""

    def __init__(self, config: Config, enqueue_retrain: EnqueueRetrain) -> None:
        self._models = set(config.models)
        self._enqueue = enqueue_retrain

    def __call__(self, alert: InboundAlert) -> str:
        if alert.model not in self._models:
            raise NotFoundError(f"no model {alert.model!r}; known: {sorted(self._models)}")
        incident = incident_id_for(alert)
        if alert.status == "firing":
            reason = f"{alert.source} alert firing: {alert.title}"
            job = self._enqueue(alert.model, incident, reason)
            logger.info(
                "inbound %s alert for %s: incident %s, retrain job %s",
                alert.source,
                alert.model,
                incident,
                job,
            )
        else:
            logger.info(
                "inbound %s alert for %s resolved: incident %s", alert.source, alert.model, incident
            )
        return incident


# -- the FastAPI router -----------------------------------------------------------------------

AlertHandler = Callable[[InboundAlert], str]


def inbound_router(
    verify: Callable[[bytes, Mapping[str, str]], None], handler: AlertHandler
) -> APIRouter:
    """A FastAPI ``APIRouter`` with ``POST /v1/hooks/alert``.

    ``verify`` (a :class:`HookVerifier` of ``hooks``) admits a request or raises; while
    ``hooks.secret`` is unset every request is refused (401), so a fresh install never lets
    anyone on the network start retrains.
    """
    router = APIRouter()

    @router.post(
        "/v1/hooks/alert",
        status_code=202,
        summary="Receive a Datadog or Alertmanager alert",
        tags=["hooks"],
    )
    async def receive_alert(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise PayloadTooLargeError(f"body over {MAX_BODY_BYTES} bytes")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise PayloadTooLargeError(f"body over {MAX_BODY_BYTES} bytes")
        await run_in_threadpool(verify, body, request.headers)
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"body is not JSON: {exc}") from None
        alerts = parse_alert_payload(payload)
        accepted: list[dict[str, str]] = []
        unknown: list[str] = []
        for alert in alerts:
            try:
                incident = await run_in_threadpool(handler, alert)
            except NotFoundError as exc:
                unknown.append(exc.message)
                continue
            accepted.append({"incident_id": incident, "model": alert.model, "status": alert.status})
        if not accepted:
            raise NotFoundError("; ".join(unknown))
        return JSONResponse(
            {"incident_id": accepted[0]["incident_id"], "alerts": accepted, "rejected": unknown},
            status_code=202,
        )

    return router


__all__ = [
    "SIGNATURE_HEADER",
    "AlertHandler",
    "HookVerifier",
    "InboundAlert",
    "InboundRetrainHandler",
    "inbound_router",
    "incident_id_for",
    "parse_alert_payload",
    "parse_alertmanager",
    "parse_datadog",
    "signature",
    "verify_legacy_request",
]

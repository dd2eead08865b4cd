"""A generic webhook: any URL and method, custom headers, a JSON payload template with the
monitor-message variables, and an optional signature: by default the Standard Webhooks headers
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature``; :mod:`driftloop.notify.signatures`),
with ``signature: legacy`` an HMAC-SHA256 of the body alone in ``hmac_header``.

Enough on its own to call GitHub's ``workflow_dispatch`` endpoint (``{"ref": "master"}`` with an
``Authorization: token ...`` header); :mod:`driftloop.notify.github` is the first-class form.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from driftloop.config import WebhookNotifierConfig
from driftloop.notify.base import DeliveryResult, Notification, Notifier
from driftloop.notify.http_requests import HttpSender
from driftloop.notify.signatures import StandardSigner, legacy_signature
from driftloop.notify.variables import (
    VARIABLES,
    notification_variables,
    render_payload,
    render_text,
)


def default_payload() -> dict[str, str]:
    """Without a ``payload`` template, every variable under its own name."""
    return {name: "{{" + name + "}}" for name in VARIABLES}


class WebhookNotifier(Notifier):
    def __init__(
        self,
        config: WebhookNotifierConfig,
        *,
        name: str = "webhook",
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.config = config
        self.clock = clock
        self._signer = (
            StandardSigner(config.hmac_secret, where=f"notifiers.{name}.hmac_secret")
            if config.hmac_secret and config.signature == "standard"
            else None
        )
        self._http = HttpSender(timeout=timeout, service=f"webhook {name}")

    def render(self, notification: Notification) -> tuple[dict[str, str], bytes]:
        """The headers and body bytes this notification would be sent with."""
        variables = notification_variables(notification)
        headers = {key: render_text(value, variables) for key, value in self.config.headers.items()}
        body = b""
        if self.config.method != "GET":
            template = default_payload() if self.config.payload is None else self.config.payload
            rendered = render_payload(template, variables)
            body = json.dumps(rendered, separators=(",", ":"), ensure_ascii=False).encode()
            if not any(key.lower() == "content-type" for key in headers):
                headers["Content-Type"] = "application/json"
        if self._signer is not None:
            headers.update(
                self._signer.headers(notification.event_id, body, timestamp=self.clock())
            )
        elif self.config.hmac_secret:
            headers[self.config.hmac_header] = legacy_signature(self.config.hmac_secret, body)
        return headers, body

    def send(self, notification: Notification) -> DeliveryResult:
        headers, body = self.render(notification)
        response = self._http.request(
            self.config.method, self.config.url, headers=headers, content=body or None
        )
        if isinstance(response, DeliveryResult):
            return response
        if 200 <= response.status_code < 300:
            return DeliveryResult.delivered(http_status=response.status_code)
        return self._http.failure(response, f"{self.config.method} webhook")

    def close(self) -> None:
        self._http.close()

"""Slack: a Block Kit message through an incoming webhook, with a graph of the metric.

With a ``bot_token`` the PNG is uploaded through the Web API (``files.getUploadURLExternal`` →
upload → ``files.completeUploadExternal``, via slack-sdk's ``files_upload_v2``) and shown from
Slack; without one it is kept in the :class:`GraphStore` and linked as
``{public_url}/v1/graphs/<id>.png``.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.error import URLError

from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web import WebClient
from slack_sdk.webhook import WebhookClient

from driftloop.config import SlackNotifierConfig
from driftloop.errors import ConfigError
from driftloop.notify.base import DeliveryResult, Notification, Notifier, format_time
from driftloop.notify.graphs import GraphStore, graph_url, notification_graph

logger = logging.getLogger(__name__)

# slack-sdk logs request URLs (a webhook URL is a secret) and headers at DEBUG; keep it above.
_sdk_logger = logging.getLogger("driftloop.notify.slack_sdk")
_sdk_logger.setLevel(logging.WARNING)

_STATE_EMOJI = {
    "OK": ":large_green_circle:",
    "WARN": ":large_yellow_circle:",
    "ALERT": ":red_circle:",
    "NO_DATA": ":white_circle:",
}


def escape_mrkdwn(text: str) -> str:
    """Slack's three control characters, escaped as its docs ask."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _header(headers: dict[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def slack_blocks(notification: Notification, image: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The Block Kit layout: header, message, facts, graph, dashboard button, context."""
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _truncate(notification.title, 150),
                "emoji": True,
            },
        }
    ]
    if notification.text:
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": _truncate(escape_mrkdwn(notification.text), 3000),
                },
            }
        )
    blocks.append(
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": _truncate(f, 2000)} for f in _facts(notification)
            ],
        }
    )
    if image is not None:
        blocks.append(image)
    blocks.append(_dashboard_button(notification.dashboard_url))
    blocks.append(_context(notification))
    return blocks


def _facts(notification: Notification) -> list[str]:
    """The facts section's fields: state, monitor, model, value, thresholds, incident."""
    event = notification.event
    emoji = _STATE_EMOJI.get(str(event.state), "")
    facts = [
        f"*State*\n{emoji} {event.previous} → {event.state}",
        f"*Monitor*\n{escape_mrkdwn(event.monitor)}",
        f"*Model*\n{escape_mrkdwn(event.model or '-')}",
        f"*Value*\n{notification.value_text}"
        + ("" if event.threshold is None else f" (crossed {event.threshold:g})"),
        f"*Thresholds*\n{notification.thresholds.describe()}",
    ]
    if event.incident_id:
        facts.append(f"*Incident*\n{escape_mrkdwn(event.incident_id)}")
    return facts


def _dashboard_button(url: str) -> dict[str, Any]:
    return {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Open dashboard"},
                "url": url,
                "action_id": "driftloop_dashboard",
            }
        ],
    }


def _context(notification: Notification) -> dict[str, Any]:
    """The footer: the event id and when it happened."""
    event = notification.event
    return {
        "type": "context",
        "elements": [
            {
                "type": "mrkdwn",
                "text": escape_mrkdwn(f"event {event.event_id} · {format_time(event.timestamp)}"),
            }
        ],
    }


class SlackNotifier(Notifier):
    def __init__(
        self,
        config: SlackNotifierConfig,
        *,
        name: str = "slack",
        public_url: str,
        graph_store: GraphStore | None = None,
        timeout: float = 10.0,
    ) -> None:
        if config.bot_token and not config.channel:
            raise ConfigError(
                f"notifiers.{name}: a bot_token uploads the graph to a channel; set 'channel' "
                "(a channel id such as C0123456789)"
            )
        self.name = name
        self.config = config
        self.public_url = public_url
        self.graph_store = graph_store
        seconds = max(1, round(timeout))
        self._webhook = WebhookClient(
            config.webhook_url, timeout=seconds, retry_handlers=[], logger=_sdk_logger
        )
        self._web: WebClient | None = None
        if config.bot_token:
            self._web = WebClient(
                token=config.bot_token,
                base_url=config.api_url,
                timeout=seconds,
                retry_handlers=[],
                logger=_sdk_logger,
            )
        self._uploaded: dict[str, str] = {}

    def send(self, notification: Notification) -> DeliveryResult:
        image: dict[str, Any] | None = None
        notes: list[str] = []
        png = notification_graph(notification)
        if png is not None:
            alt = f"{notification.monitor}: recent values with thresholds"
            if self._web is not None:
                uploaded = self._upload(notification, png)
                if isinstance(uploaded, DeliveryResult):
                    if uploaded.retryable:
                        return uploaded
                    notes.append(f"graph upload failed ({uploaded.error}); linked instead")
                else:
                    image = {"type": "image", "slack_file": {"id": uploaded}, "alt_text": alt}
                    notes.append(f"file {uploaded}")
            if image is None and self.graph_store is not None:
                graph_id = self.graph_store.put(png, monitor=notification.monitor)
                url = graph_url(self.public_url, graph_id)
                image = {"type": "image", "image_url": url, "alt_text": alt}
                notes.append(f"graph {url}")
        blocks = slack_blocks(notification, image)
        fallback = f"{notification.title}: {notification.value_text}"
        try:
            response = self._webhook.send(text=fallback, blocks=blocks)
        except (URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return DeliveryResult.failed(f"cannot reach Slack: {reason}", retryable=True)
        detail = "; ".join(notes) or None
        if response.status_code == 200 and response.body.strip() == "ok":
            return DeliveryResult.delivered(http_status=200, detail=detail)
        body = response.body.strip()[:200] or "(empty body)"
        return DeliveryResult.from_http(
            response.status_code,
            f"Slack incoming webhook answered {response.status_code}: {body}",
            retry_after=_header(dict(response.headers), "Retry-After"),
        )

    def _upload(self, notification: Notification, png: bytes) -> str | DeliveryResult:
        """Upload the graph once per event; the file id, or why it failed."""
        cached = self._uploaded.get(notification.event_id)
        if cached is not None:
            return cached
        assert self._web is not None
        try:
            response = self._web.files_upload_v2(
                content=png,
                filename=f"driftloop-{notification.event_id}.png",
                title=notification.title,
                channel=self.config.channel,
                alt_txt=f"{notification.monitor}: recent values with thresholds",
            )
        except SlackApiError as exc:
            status = int(exc.response.status_code)
            code = exc.response.get("error") if isinstance(exc.response.data, dict) else None
            retry_after = _header(dict(exc.response.headers), "Retry-After")
            return DeliveryResult.from_http(
                status,
                f"Slack Web API files upload failed: {code or status}",
                retry_after=retry_after,
            )
        except SlackRequestError as exc:
            return DeliveryResult.failed(f"Slack file upload failed: {exc}", retryable=True)
        except (URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return DeliveryResult.failed(
                f"cannot reach the Slack Web API: {reason}", retryable=True
            )
        file = response.get("file") or {}
        file_id = file.get("id") if isinstance(file, dict) else None
        if not isinstance(file_id, str):
            return DeliveryResult.failed(
                "Slack completed the upload without a file id", retryable=False
            )
        self._uploaded[notification.event_id] = file_id
        return file_id


__all__ = ["SlackNotifier", "escape_mrkdwn", "slack_blocks"]

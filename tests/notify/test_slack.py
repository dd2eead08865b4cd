from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from matplotlib import image as mpimg

from driftloop.config import SlackNotifierConfig
from driftloop.database.core import Database
from driftloop.errors import ConfigError, NotFoundError
from driftloop.metrics.points import SeriesPoint
from driftloop.notify import GraphStore, Notification, SlackNotifier, ThresholdLines, render_graph
from notify.fake_services import (
    SLACK_BOT_TOKEN,
    SLACK_WEBHOOK_PATH,
    FakeApiServer,
    Reply,
    SlackFake,
    make_event,
)

PUBLIC_URL = "https://driftloop.example.com"
THRESHOLDS = ThresholdLines(warning=0.8, critical=0.7, direction="below")


def series(n: int = 20) -> tuple[SeriesPoint, ...]:
    return tuple(
        SeriesPoint(
            timestamp=1_700_000_000.0 - (n - i) * 60,
            avg=0.92 - 0.014 * i,
            min=0.88 - 0.015 * i,
            max=0.95 - 0.01 * i,
            count=50,
        )
        for i in range(n)
    )


def notification(**kwargs: Any) -> Notification:
    return Notification.from_event(
        make_event(**kwargs),
        dashboard_url=f"{PUBLIC_URL}/dashboard?monitor=confidence",
        thresholds=THRESHOLDS,
        series=series(),
    )


def slack(fake: SlackFake, database: Database, **config: Any) -> SlackNotifier:
    cfg = SlackNotifierConfig(type="slack", webhook_url=fake.webhook_url, **config)
    return SlackNotifier(
        cfg, name="slack-ml", public_url=PUBLIC_URL, graph_store=GraphStore(database)
    )


def test_block_kit_message_with_a_graph_served_by_driftloop(
    server: FakeApiServer, database: Database
) -> None:
    fake = SlackFake(server)
    result = slack(fake, database).send(notification())

    assert result.status == "delivered"
    assert result.http_status == 200
    [request] = server.to(SLACK_WEBHOOK_PATH)
    assert request.headers["content-type"].startswith("application/json")
    body = request.json()
    assert body["text"].startswith("[ALERT] confidence on review-classifier")
    blocks = body["blocks"]
    assert [b["type"] for b in blocks] == [
        "header",
        "section",
        "section",
        "image",
        "actions",
        "context",
    ]
    assert blocks[0]["text"]["text"] == "[ALERT] confidence on review-classifier"
    fields = "\n".join(f["text"] for f in blocks[2]["fields"])
    assert "WARN → ALERT" in fields
    assert "*Monitor*\nconfidence" in fields
    assert "*Model*\nreview-classifier" in fields
    assert "0.65 (crossed 0.7)" in fields
    assert "warning < 0.8, critical < 0.7" in fields
    button = blocks[4]["elements"][0]
    assert button["url"] == f"{PUBLIC_URL}/dashboard?monitor=confidence"
    image_url = blocks[3]["image_url"]
    assert image_url.startswith(f"{PUBLIC_URL}/v1/graphs/")
    assert image_url.endswith(".png")
    graph_id = image_url.rsplit("/", 1)[1].removesuffix(".png")
    assert GraphStore(database).get(graph_id).startswith(b"\x89PNG")
    assert result.detail == f"graph {image_url}"


def test_message_text_escapes_slack_control_characters(
    server: FakeApiServer, database: Database
) -> None:
    fake = SlackFake(server)
    slack(fake, database).send(notification(message="value <0.7 & falling @slack-ml"))
    section = server.to(SLACK_WEBHOOK_PATH)[0].json()["blocks"][1]
    assert section["text"]["text"] == "value &lt;0.7 &amp; falling"


@pytest.mark.parametrize(
    ("error", "status"), [("invalid_token", 403), ("no_service", 404), ("channel_is_archived", 410)]
)
def test_webhook_errors_are_final_failures(
    server: FakeApiServer, database: Database, error: str, status: int
) -> None:
    fake = SlackFake(server, webhook_error=error)
    result = slack(fake, database).send(notification())
    assert result.status == "failed"
    assert result.http_status == status
    assert not result.retryable
    assert error in (result.error or "")
    assert fake.webhook_url not in (result.error or "")  # the URL is a secret


def test_invalid_payload_is_reported(server: FakeApiServer, database: Database) -> None:
    fake = SlackFake(server)
    server.route("POST", SLACK_WEBHOOK_PATH, lambda _r: Reply(400, "invalid_payload"))
    result = slack(fake, database).send(notification())
    assert result.http_status == 400
    assert "invalid_payload" in (result.error or "")
    assert not result.retryable


def test_rate_limit_is_retryable_with_retry_after(
    server: FakeApiServer, database: Database
) -> None:
    fake = SlackFake(server, webhook_error="rate_limited")
    result = slack(fake, database).send(notification())
    assert result.retryable
    assert result.retry_after == 2.0


def test_bot_token_uploads_the_graph_with_files_upload_v2(
    server: FakeApiServer, database: Database
) -> None:
    fake = SlackFake(server)
    notifier = slack(
        fake, database, bot_token=SLACK_BOT_TOKEN, channel="C0123456789", api_url=fake.api_url
    )
    result = notifier.send(notification())

    assert result.status == "delivered"
    paths = [r.path for r in server.requests]
    assert paths == [
        "/api/files.getUploadURLExternal",
        "/upload/v1/CwABAAAAXAoAAVnX",
        "/api/files.completeUploadExternal",
        SLACK_WEBHOOK_PATH,
    ]
    get_url = server.requests[0]
    assert get_url.headers["authorization"] == f"Bearer {SLACK_BOT_TOKEN}"
    assert get_url.params()["filename"] == "driftloop-evt-1.png"
    assert fake.uploads["F07A1B2C3D4"].startswith(b"\x89PNG")
    assert int(get_url.params()["length"]) == len(fake.uploads["F07A1B2C3D4"])
    complete = server.requests[2].params()
    assert complete["channel_id"] == "C0123456789"
    image = next(b for b in server.requests[3].json()["blocks"] if b["type"] == "image")
    assert image["slack_file"] == {"id": "F07A1B2C3D4"}
    assert "image_url" not in image
    assert result.detail == "file F07A1B2C3D4"


def test_failed_upload_falls_back_to_the_driftloop_graph_link(
    server: FakeApiServer, database: Database
) -> None:
    fake = SlackFake(server, web_error="invalid_auth")
    notifier = slack(
        fake, database, bot_token=SLACK_BOT_TOKEN, channel="C0123456789", api_url=fake.api_url
    )
    result = notifier.send(notification())
    assert result.status == "delivered"
    assert "invalid_auth" in (result.detail or "")
    image = next(
        b for b in server.to(SLACK_WEBHOOK_PATH)[0].json()["blocks"] if b["type"] == "image"
    )
    assert image["image_url"].startswith(f"{PUBLIC_URL}/v1/graphs/")


def test_bot_token_needs_a_channel(database: Database) -> None:
    config = SlackNotifierConfig(
        type="slack", webhook_url="https://hooks.slack.com/x", bot_token=SLACK_BOT_TOKEN
    )
    with pytest.raises(ConfigError, match="channel"):
        SlackNotifier(config, public_url=PUBLIC_URL)


def _colour_pixels(png: bytes, rgb: tuple[int, int, int]) -> int:
    pixels = mpimg.imread(io.BytesIO(png), format="png")[:, :, :3]
    target = np.array(rgb) / 255.0
    return int((np.abs(pixels - target).max(axis=2) < 0.05).sum())


def test_graph_draws_the_thresholds() -> None:
    with_lines = render_graph(series(), THRESHOLDS, title="confidence")
    without = render_graph(series(), ThresholdLines(), title="confidence")
    assert with_lines.startswith(b"\x89PNG")
    critical = (0xD6, 0x27, 0x28)
    warning = (0xF2, 0xA9, 0x00)
    assert _colour_pixels(with_lines, critical) > 200
    assert _colour_pixels(with_lines, warning) > 200
    assert _colour_pixels(without, critical) == 0


def test_graph_store_rejects_unknown_ids_and_non_png(database: Database) -> None:
    store = GraphStore(database)
    with pytest.raises(NotFoundError):
        store.get("0" * 32)
    with pytest.raises(NotFoundError):
        store.get("../etc/passwd")
    graph_id = store.put(render_graph(series(), THRESHOLDS, title="t"), monitor="m")
    assert store.get(graph_id).startswith(b"\x89PNG")

"""Feedback labels become stored rows and ``prediction_correct`` insights; ``/metrics``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from driftloop.cli import app as cli_app
from driftloop.config import load_config
from driftloop.database import Database, open_database
from driftloop.insights import InsightsClient
from driftloop.serving import FeedbackStore
from driftloop.serving.feedback import FeedbackRecord
from driftloop.testing.transports import MemoryTransport

pytestmark = pytest.mark.anyio


async def test_feedback_is_stored_and_reported_when_the_prediction_is_known(
    client: httpx.AsyncClient,
    predict_headers: dict[str, str],
    insights: InsightsClient,
    transport: MemoryTransport,
    database: Database,
) -> None:
    response = await client.post(
        "/v1/models/reviews/predict", json={"texts": ["tasty", "rude"]}, headers=predict_headers
    )
    right, wrong = response.json()["predictions"]
    feedback = await client.post(
        "/v1/models/reviews/feedback",
        headers=predict_headers,
        json={
            "feedback": [
                {"prediction_id": right["id"], "label": "Food - Positive"},
                {"prediction_id": wrong["id"], "label": "Service - Positive"},
                {"prediction_id": "unknown-id", "label": "Food - Negative"},
            ]
        },
    )
    assert feedback.status_code == 200, feedback.text
    assert feedback.json() == {"accepted": 3, "matched": 2, "relabelled": 0}

    rows = FeedbackStore(database).list("reviews")
    assert [(r.prediction_id, r.label, r.predicted_class, r.version, r.correct) for r in rows] == [
        (right["id"], "Food - Positive", "Food - Positive", 1, True),
        (wrong["id"], "Service - Positive", "Service - Negative", 1, False),
        ("unknown-id", "Food - Negative", None, None, None),
    ]
    assert all(r.key_id for r in rows)

    assert insights.flush()
    correct = [p for p in transport.points if p.name == "prediction_correct"]
    assert [(p.value, dict(p.tags)) for p in correct] == [
        (
            1.0,
            {
                "model": "reviews",
                "version": "1",
                "class": "Food - Positive",
                "label": "Food - Positive",
            },
        ),
        (
            0.0,
            {
                "model": "reviews",
                "version": "1",
                "class": "Service - Negative",
                "label": "Service - Positive",
            },
        ),
    ]


async def test_a_label_sent_with_its_text_is_kept_as_a_labeled_sample(
    client: httpx.AsyncClient, predict_headers: dict[str, str], database: Database
) -> None:
    response = await client.post(
        "/v1/models/reviews/predict", json={"text": "tasty soup"}, headers=predict_headers
    )
    [prediction] = response.json()["predictions"]
    feedback = await client.post(
        "/v1/models/reviews/feedback",
        headers=predict_headers,
        json={
            "feedback": [
                {
                    "prediction_id": prediction["id"],
                    "label": "Food - Positive",
                    "text": "tasty soup",
                },
                {"prediction_id": "label-only", "label": "Food - Negative"},
            ]
        },
    )
    assert feedback.json() == {"accepted": 2, "matched": 1, "relabelled": 0}
    store = FeedbackStore(database)
    samples = store.labeled_samples("reviews")
    assert [(text, label) for text, label, _ in samples] == [("tasty soup", "Food - Positive")]
    assert all(received > 0 for _, _, received in samples)
    assert store.labeled_samples("another-model") == []
    assert len(store.list("reviews")) == 2  # every label is a feedback row, text or not


async def test_a_feedback_text_over_the_limit_is_refused_whole(
    client: httpx.AsyncClient, predict_headers: dict[str, str], database: Database
) -> None:
    limit = 200  # serving.max_text_chars of the fixture's config
    response = await client.post(
        "/v1/models/reviews/feedback",
        headers=predict_headers,
        json={
            "feedback": [
                {"prediction_id": "a", "label": "Food - Positive", "text": "fine"},
                {"prediction_id": "b", "label": "Food - Positive", "text": "x" * (limit + 1)},
            ]
        },
    )
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "feedback item 1's text has 201 characters" in message
    assert "serving.max_text_chars" in message
    assert FeedbackStore(database).list("reviews") == []  # nothing of the batch stored
    assert FeedbackStore(database).labeled_samples("reviews") == []


@pytest.mark.parametrize(
    "body",
    [
        {"feedback": []},
        {"feedback": [{"prediction_id": "x"}]},
        {"feedback": [{"prediction_id": "x", "label": ""}]},
        {"labels": []},
        {"feedback": [{"prediction_id": "x", "label": "Food - Positive", "text": ""}]},
        {"feedback": [{"prediction_id": "x", "label": "Food - Positive", "text": ["a"]}]},
        {"feedback": [{"prediction_id": "x", "label": "Food - Positive", "text": "a\u0000b"}]},
        {"feedback": [{"prediction_id": "x", "label": "Food\u0000"}]},
    ],
)
async def test_bad_feedback_is_422(
    client: httpx.AsyncClient, predict_headers: dict[str, str], body: dict[str, object]
) -> None:
    response = await client.post("/v1/models/reviews/feedback", json=body, headers=predict_headers)
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "InvalidInputError"


async def test_metrics_exposition(
    client: httpx.AsyncClient, predict_headers: dict[str, str], insights: InsightsClient
) -> None:
    for _ in range(3):
        await client.post(
            "/v1/models/reviews/predict", json={"texts": ["tasty", "rude"]}, headers=predict_headers
        )
    await client.post("/v1/models/reviews/predict", json={"text": "x"})  # 401
    insights.flush()
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    route = 'route="/v1/models/{name}/predict"'
    assert f'driftloop_http_requests_total{{method="POST",{route},status="200"}} 3.0' in text
    assert f'driftloop_http_requests_total{{method="POST",{route},status="401"}} 1.0' in text
    assert f'driftloop_http_request_duration_seconds_count{{method="POST",{route}}} 4.0' in text
    assert 'driftloop_predictions_total{model="reviews",version="1"} 6.0' in text
    assert 'driftloop_batch_size_bucket{le="2.0",model="reviews"}' in text
    assert 'driftloop_model_version_info{content_hash="' in text
    assert 'model="reviews",version="1"} 1.0' in text
    assert "driftloop_insights_queue_depth 0.0" in text
    # 3 x (2 texts x (confidence, length, class) + 1 latency)
    assert 'driftloop_insights_points_total{outcome="published"} 21.0' in text
    assert 'driftloop_insights_points_total{outcome="spooled"} 0.0' in text
    assert 'driftloop_insights_points_total{outcome="replayed"} 0.0' in text
    assert "driftloop_insights_outbox_pending_points 0.0" in text


async def test_metrics_show_the_new_version_after_a_swap(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    await client.post("/v1/models/reviews/deploy", json={"version": 2}, headers=admin_headers)
    text = (await client.get("/metrics")).text
    info = [line for line in text.splitlines() if line.startswith("driftloop_model_version_info{")]
    assert len(info) == 1
    assert 'version="2"} 1.0' in info[0]
    assert 'driftloop_model_swaps_total{model="reviews"} 1.0' in text


def test_multiprocess_mode_merges_workers(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR set, values from two processes add up in /metrics."""
    script = textwrap.dedent("""
        import sys
        from driftloop.serving.prometheus import ServingMetrics
        metrics = ServingMetrics()
        metrics.observe_request("/v1/models/{name}/predict", "POST", 200, 0.01)
        metrics.set_model_version("reviews", 3, "abc")
        if sys.argv[1] == "show":
            sys.stdout.write(metrics.exposition().decode())
    """)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", script, "write"], env=env, check=True)
    shown = subprocess.run(
        [sys.executable, "-c", script, "show"], env=env, check=True, capture_output=True, text=True
    ).stdout
    route = 'route="/v1/models/{name}/predict"'
    assert f'driftloop_http_requests_total{{method="POST",{route},status="200"}} 2.0' in shown
    assert (
        'driftloop_model_version_info{content_hash="abc",model="reviews",version="3"} 1.0' in shown
    )


def _write_config(tmp_path: Path) -> Path:
    path = tmp_path / "driftloop.yaml"
    path.write_text(
        "store: sqlite:///.driftloop/driftloop.db\n"
        "storage: file://.driftloop/storage\n"
        "models:\n  reviews: {trainer: sklearn, merge_feedback: true}\n"
    )
    return path


def test_feedback_cli_lists_and_purges(tmp_path: Path) -> None:
    """A labelling tool went wrong: its labels are found with `feedback ls` and removed with
    `feedback purge --key`, texts included, so no retrain learns from them."""
    path = _write_config(tmp_path)
    config = load_config(path)
    store = FeedbackStore(open_database(config.store, base_dir=config.base_dir))
    store.database.migrate()
    now = time.time()
    store.record(
        [
            FeedbackRecord(f"p{i}", "reviews", label, None, None, key, received, text)
            for i, (label, key, received, text) in enumerate(
                [
                    ("Food - Positive", "goodtool", now - 10, "tasty"),
                    ("Food - Negative", "badtool", now - 5, "tasty again"),
                    ("Food - Negative", "badtool", now - 3 * 86400, "old and wrong"),
                    ("Food - Positive", "goodtool", now - 3 * 86400, None),
                ]
            )
        ]
    )
    runner = CliRunner()
    listed = runner.invoke(cli_app, ["feedback", "ls", "reviews", "--config", str(path), "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [(r["prediction_id"], r["key_id"], r["text"]) for r in rows] == [
        ("p3", "goodtool", None),
        ("p2", "badtool", "old and wrong"),
        ("p1", "badtool", "tasty again"),
        ("p0", "goodtool", "tasty"),
    ]

    refused = runner.invoke(cli_app, ["feedback", "purge", "reviews", "--config", str(path)])
    assert refused.exit_code == 1
    assert "--key KEY_ID, --older-than DURATION, or --all" in refused.output
    bad = runner.invoke(
        cli_app, ["feedback", "purge", "reviews", "--older-than", "soon", "--config", str(path)]
    )
    assert bad.exit_code == 1
    assert "--older-than: expected a duration" in bad.output

    purged = runner.invoke(
        cli_app,
        ["feedback", "purge", "reviews", "--key", "badtool", "--config", str(path), "--json"],
    )
    assert json.loads(purged.stdout) == {"model": "reviews", "deleted": 2}
    assert [text for text, _, _ in store.labeled_samples("reviews")] == ["tasty"]
    old = runner.invoke(
        cli_app, ["feedback", "purge", "reviews", "--older-than", "1d", "--config", str(path)]
    )
    assert "deleted 1 feedback label(s) of reviews" in old.stdout
    assert [r.prediction_id for r in store.list("reviews")] == ["p0"]

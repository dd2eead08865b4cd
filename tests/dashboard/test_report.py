"""The static report: HTML, PNG plots and events.json, from the library and from the CLI."""

from __future__ import annotations

import json
import struct
import time
from datetime import UTC, datetime
from pathlib import Path

import matplotlib.image
import pytest
from typer.testing import CliRunner

from dashboard.world import CONFIG, MODEL, DashboardWorld
from driftloop.cli import app
from driftloop.dashboard import generate_report, parse_since
from driftloop.errors import InvalidInputError, NotFoundError
from driftloop.timestamps import epoch_seconds
from timeformat import iso_times

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_report_holds_the_charts_the_timeline_and_every_event(
    lived_world: DashboardWorld, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    paths = generate_report(lived_world.data, out, model=MODEL)

    assert paths.index_html == out / "index.html"
    assert [p.name for p in paths.images] == [
        "review-classifier--review-classifier-confidence.png",
        "review-classifier--incident-timeline.png",
    ]
    for image in paths.images:
        width, height = _png_size(image)
        assert width > 600
        assert height > 200
        pixels = matplotlib.image.imread(str(image))
        assert pixels.shape[:2] == (height, width)
        assert pixels.std() > 0.05  # something is drawn, not a blank canvas

    html = paths.index_html.read_text()
    for image in paths.images:
        assert f'src="{image.name}"' in html
    assert "http://" not in html
    assert "https://" not in html
    assert "WARN" in html
    assert "ALERT" in html
    assert "fetch_data" in html
    assert "v2" in html

    document = json.loads(paths.events_json.read_text())
    assert document["models"] == [MODEL]
    events = document["events"]
    assert paths.events == len(events)
    # one timestamp format, ISO 8601 UTC, in every JSON output (#21 part 5)
    moments = iso_times(document)
    assert {"$.generated_at", "$.events[0].timestamp"} <= set(moments)
    assert all(iso_times({"timestamp": document[key]}) for key in ("start", "end"))
    step_times = [e["details"]["started_at"] for e in events if e["kind"] == "job_step"]
    assert step_times
    assert all(iso_times({"started_at": moment}) for moment in step_times)
    timestamps = [epoch_seconds(e["timestamp"]) for e in events]
    assert timestamps == sorted(timestamps)
    kinds = {e["kind"] for e in events}
    assert {"state_change", "notification", "incident_opened", "job_step", "deploy"} <= kinds
    monitor_event_ids = {e.event_id for e in lived_world.events}
    reported_ids = {e["details"]["event_id"] for e in events if e["kind"] == "state_change"}
    assert reported_ids == monitor_event_ids
    transitions = [
        (e["details"]["previous"], e["details"]["state"])
        for e in events
        if e["kind"] == "state_change"
    ]
    assert transitions == [("OK", "WARN"), ("WARN", "ALERT")]
    notified = {
        (e["details"]["notifier"], e["details"]["state"], e["details"]["status"])
        for e in events
        if e["kind"] == "notification"
    }
    assert notified == {("log", "WARN", "delivered"), ("log", "ALERT", "delivered")}
    steps = [e["details"]["step"] for e in events if e["kind"] == "job_step"]
    assert steps == ["fetch_data", "train", "evaluate"]
    deploys = [e["details"]["version"] for e in events if e["kind"] == "deploy"]
    assert deploys == [1, 2]


def test_since_limits_the_range_and_unknown_models_are_refused(
    lived_world: DashboardWorld, tmp_path: Path
) -> None:
    now = time.time()
    recent = generate_report(lived_world.data, tmp_path / "recent", since=now - 60)
    kinds = {e["kind"] for e in json.loads(recent.events_json.read_text())["events"]}
    assert "state_change" not in kinds  # the transitions happened minutes ago
    assert "deploy" in kinds
    with pytest.raises(NotFoundError, match="known models: review-classifier"):
        generate_report(lived_world.data, tmp_path / "x", model="nope")
    with pytest.raises(InvalidInputError, match="must be in the past"):
        generate_report(lived_world.data, tmp_path / "y", since=now + 3600)


def test_parse_since_reads_durations_and_iso_times() -> None:
    assert parse_since("2h", now=10_000.0) == 10_000.0 - 7200
    assert (
        parse_since("2025-03-01T12:00", now=0.0) == datetime(2025, 3, 1, 12, tzinfo=UTC).timestamp()
    )
    with pytest.raises(InvalidInputError, match="expected a duration"):
        parse_since("last tuesday", now=0.0)


def test_the_report_command_writes_the_report(lived_world: DashboardWorld, tmp_path: Path) -> None:
    config_file = lived_world.root / "driftloop.yaml"
    config_file.write_text(CONFIG)
    out = tmp_path / "cli-report"
    result = CliRunner().invoke(
        app,
        [
            "report",
            "--config",
            str(config_file),
            "--model",
            MODEL,
            "--since",
            "1h",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["models"] == [MODEL]
    assert epoch_seconds(summary["end"]) - epoch_seconds(summary["start"]) == pytest.approx(
        3600, abs=5
    )
    assert summary["index_html"] == str(out / "index.html")
    assert len(summary["images"]) == 2
    events = json.loads((out / "events.json").read_text())["events"]
    assert summary["events"] == len(events) > 0

    missing = CliRunner().invoke(
        app, ["report", "--config", str(config_file), "--model", "nope", "--out", str(out)]
    )
    assert missing.exit_code == 1
    assert "no model 'nope'" in missing.output

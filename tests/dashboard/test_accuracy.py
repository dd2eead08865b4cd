"""Estimated and realized accuracy per version on the dashboard and in the report: the estimate
of the last five minutes with whether it holds, realized accuracy of the last hour."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from dashboard.world import MODEL, DashboardWorld
from driftloop.dashboard import generate_report
from driftloop.dashboard.data import snapshot
from driftloop.metrics.points import MetricPoint


def test_each_version_shows_its_estimate_whether_it_holds_and_realized_accuracy(
    world: DashboardWorld, tmp_path: Path
) -> None:
    world.register_with_reference()
    end = time.time()
    live = np.random.default_rng(4)
    world.write_predictions(
        end, live.beta(6, 2, 500).tolist(), live.integers(20, 400, 500).tolist()
    )
    world.write_predictions(
        end, [0.3] * 500, [5_000.0] * 500, version="2", shadow=True
    )  # a shadow's: left out
    world.metric_store.write(
        [
            MetricPoint(
                "prediction_correct",
                float(i % 4 != 0),
                end - 1_000 + i,
                {"model": MODEL, "version": "1"},
                point_id=f"label{i}",
            )
            for i in range(400)
        ]
    )

    [row] = world.data.accuracy(MODEL, end)
    assert row.version == "1"
    assert row.reference_accuracy == 0.8
    assert row.estimated_n == 500
    assert row.estimated is not None
    assert abs(row.estimated - 0.8) < 0.06
    assert row.estimate_holds is True
    assert row.may_not_hold_because == []
    assert (row.realized, row.realized_n) == (0.75, 400)


def test_an_estimate_off_the_reference_says_it_may_not_hold_on_the_page_and_in_the_report(
    world: DashboardWorld, tmp_path: Path
) -> None:
    world.register_with_reference()
    end = time.time()
    live = np.random.default_rng(5)
    world.write_predictions(end, live.beta(6, 2, 500).tolist(), [5_000.0] * 500)  # very long texts

    [row] = snapshot(world.data, MODEL, end - 3_600, end).accuracy
    assert row.estimate_holds is False
    [reason] = row.may_not_hold_because
    assert reason.startswith("text_length differs from the reference")
    assert row.realized is None

    paths = generate_report(world.data, tmp_path / "report", model=MODEL, since=end - 3_600)
    page = paths.index_html.read_text()
    assert "Accuracy on live traffic" in page
    assert "may not hold" in page
    assert "text_length differs" in page

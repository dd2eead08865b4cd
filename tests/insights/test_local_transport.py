"""``local://``: batches land in the SQL metric store, then reach listeners."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from driftloop.config import Config
from driftloop.errors import ConfigError, UnknownBackendError
from driftloop.insights import InsightsClient, LocalTransport, open_transport
from driftloop.metrics.points import MetricPoint
from driftloop.metrics.sql import SqlMetricStore
from driftloop.testing.configs import make_config


def transport_config(tmp_path: Path, transport: str = "local://") -> Config:
    return make_config(
        tmp_path, transport=transport, insights={"outbox": "outbox", "flush_interval": 0.01}
    )


def test_open_transport_builds_a_local_transport_on_the_sql_store(tmp_path: Path) -> None:
    transport = open_transport(transport_config(tmp_path))
    assert isinstance(transport, LocalTransport)
    assert isinstance(transport.store, SqlMetricStore)


def test_unknown_transport_scheme_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownBackendError, match="local://"):
        open_transport(transport_config(tmp_path, "carrier-pigeon://x"))
    with pytest.raises(ConfigError, match="no host or path"):
        open_transport(transport_config(tmp_path, "local://somewhere/else"))


def test_points_reach_the_store_and_then_every_listener(tmp_path: Path) -> None:
    config = transport_config(tmp_path)
    transport = open_transport(config)
    assert isinstance(transport, LocalTransport)
    seen: list[Sequence[MetricPoint]] = []

    def broken_listener(points: Sequence[MetricPoint]) -> None:
        raise RuntimeError("a consumer bug")

    transport.add_listener(broken_listener)
    transport.add_listener(seen.append)
    with InsightsClient.from_config(config, transport=transport) as insights:
        insights.report({"model_confidence": 0.8}, {"model": "m"}, timestamp=1_000.0)
        insights.report({"model_confidence": 0.6}, {"model": "m"}, timestamp=1_001.0)
        assert insights.flush()
        assert insights.stats.spooled == 0
    assert [p.value for batch in seen for p in batch] == [0.8, 0.6]
    results = transport.store.query("model_confidence", "avg", 0.0, 2_000.0, group_by=["model"])
    assert len(results) == 1
    assert results[0].count == 2
    assert results[0].value == pytest.approx(0.7)
    assert results[0].group == {"model": "m"}

"""The metric store down under traffic: predictions keep being answered, their insights wait in
the SDK's on-disk outbox, and after recovery every one of them is in the store (counted there).

The store is SQLite on a 16 MiB tmpfs mounted for the test; the outage is that filesystem
filling up ("database or disk is full"), so writes fail and the SDK spools. Where mounting is
not permitted (and in the "locked" case), the outage is another connection holding SQLite's
exclusive lock for two seconds (writes wait behind it).
A broker outage of the ``kafka://`` transport is tested in tests/scale/test_scale_kafka.py
(``test_a_broker_outage_under_traffic_spools_and_every_point_arrives``)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from driftloop.system import DriftloopSystem
from reliability.project import MODEL, ReliabilityProject, UvicornThread
from reliability.test_storage_failure import fill, tiny_filesystem
from waiting import wait_for

CLIENTS = 8
LAST_RUN: dict[str, object] = {}


async def traffic(url: str, project: ReliabilityProject, seconds: float) -> tuple[int, int]:
    """(texts answered, requests failed) for ``seconds`` of CLIENTS concurrent clients."""
    answered = 0
    failed = 0
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:

        async def client(number: int) -> None:
            nonlocal answered, failed
            while time.monotonic() < deadline:
                response = await http.post(
                    f"/v1/models/{MODEL}/predict",
                    headers=project.headers(),
                    json={"texts": [f"slow service {number}", "tasty food", "rude staff"]},
                )
                if response.status_code == 200:
                    answered += len(response.json()["predictions"])
                else:
                    failed += 1

        await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    return answered, failed


@contextlib.contextmanager
def exclusive_lock(database: Path) -> Iterator[None]:
    connection = sqlite3.connect(database, timeout=30, isolation_level=None)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        yield
        connection.execute("ROLLBACK")
    finally:
        connection.close()


@pytest.mark.slow
@pytest.mark.parametrize("outage", ["disk-full", "locked"])
def test_store_outage_under_traffic_loses_no_insight(tmp_path: Path, outage: str) -> None:
    store_dir = tmp_path / "store"
    with tiny_filesystem(store_dir, size="16m", mount=outage == "disk-full") as mounted:
        database = store_dir / "driftloop.db"
        project = ReliabilityProject.create(tmp_path / "project", store=f"sqlite:///{database}")
        system = DriftloopSystem(project.config)
        system.insights.start()
        server = UvicornThread(system.create_app())
        started = time.time()
        with server.running() as url:
            before, failed_before = asyncio.run(traffic(url, project, 1.0))
            wait_for(lambda: system.insights.stats.queue_depth == 0, 30, "the first flush")
            if mounted:
                fill(store_dir)
                during, failed_during = asyncio.run(traffic(url, project, 2.0))
                wait_for(lambda: system.insights.stats.spooled > 0, 30, "the SDK to spool")
                seen: dict[str, object] = {
                    "mode": "disk full (tmpfs)",
                    "spooled": system.insights.stats.spooled,
                    "transport_healthy": system.insights.stats.transport_healthy,
                }
                (store_dir / "filler").unlink()
            else:
                with exclusive_lock(database):
                    during, failed_during = asyncio.run(traffic(url, project, 2.0))
                seen = {
                    "mode": "exclusive lock",
                    "spooled": system.insights.stats.spooled,
                    "transport_healthy": True,
                }
            after, failed_after = asyncio.run(traffic(url, project, 1.0))
            system.insights.flush()
            wait_for(
                lambda: (
                    system.insights.stats.outbox_pending == 0
                    and system.insights.stats.queue_depth == 0
                ),
                60,
                "the outbox to replay",
            )
        stats = system.insights.stats
        system.insights.close()

        answered = before + during + after
        [stored] = system.metric_store.query(
            "model_confidence", "count", started - 1, time.time() + 1, filter={"model": MODEL}
        )
        LAST_RUN.update(
            seen,
            answered=answered,
            stored=stored.count,
            replayed=stats.replayed,
            dropped=stats.dropped,
        )
        print(f"store outage: {LAST_RUN}")
        assert (failed_before, failed_during, failed_after) == (0, 0, 0)
        assert during > 0
        if mounted:
            spooled = seen["spooled"]
            assert isinstance(spooled, int)
            assert spooled > 0
            assert seen["transport_healthy"] is False
            assert stats.replayed >= spooled
        assert stats.dropped == 0
        assert stored.count == answered  # every prediction's confidence, exactly once

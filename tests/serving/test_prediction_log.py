"""The prediction log in the store (issue #17 part 6): written in batches by a background thread,
read by whichever process a label reaches (also one whose write is still buffered elsewhere), kept
for the retention and no longer, buffered while the store is down; SQLite and PostgreSQL. The
server itself: a label after a restart meets its prediction, and the request path never waits
for the store."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from driftloop.config import Config
from driftloop.database import Database
from driftloop.errors import BackendUnavailableError
from driftloop.insights import InsightsClient
from driftloop.serving import (
    ApiKeyStore,
    FeedbackRecord,
    FeedbackStore,
    InMemoryModelSource,
    PredictionLog,
    RecordedPrediction,
    create_app,
)
from driftloop.serving.prediction_log import issued_at, new_prediction_ids, text_digest
from driftloop.serving.tables import predictions
from driftloop.testing.transports import MemoryTransport
from servicekit import BOTH_BACKENDS, migrated_database

store = pytest.fixture(params=BOTH_BACKENDS)(migrated_database)
"""A migrated store on SQLite and (``postgres`` marker) on a fresh PostgreSQL database."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def rows(database: Database) -> list[tuple[str, int, bool]]:
    with database.engine.connect() as connection:
        found = connection.execute(
            sa.select(
                predictions.c.prediction_id, predictions.c.version, predictions.c.shadow
            ).order_by(predictions.c.prediction_id, predictions.c.version)
        ).all()
    return [(str(i), int(v), bool(s)) for i, v, s in found]


def entry(
    version: int = 1, label: str = "a", at: float | None = None, text: str = "some text"
) -> tuple[str, int, str, float, str]:
    """:meth:`PredictionLog.remember`'s arguments after the id."""
    return "reviews", version, label, time.time() if at is None else at, text_digest(text)


@pytest.fixture
def log(store: Database) -> Iterator[PredictionLog]:
    log = PredictionLog(store, flush_interval=60.0)  # writes only when told, in these tests
    yield log
    log.close()


def test_ids_carry_their_issue_time() -> None:
    ids = new_prediction_ids(3, now=1_800_000_000.123)
    assert len(set(ids)) == 3
    assert {issued_at(i) for i in ids} == {1_800_000_000.123}
    assert issued_at("unknown-id") is None
    assert issued_at("0" * 31 + "_") is None
    assert issued_at(" " + ids[0][1:]) is None


@pytest.mark.anyio
async def test_entries_wait_in_memory_and_are_written_together(
    log: PredictionLog, store: Database
) -> None:
    ids = new_prediction_ids(3)
    for prediction_id in ids:
        log.remember(prediction_id, *entry())
    log.add_shadow(ids[0], "reviews", 2, "b")
    assert rows(store) == []  # nothing written on the request path
    found = await log.find(ids)  # this process finds its own unwritten entries
    assert {i: (e.version, e.shadow_version) for i, e in found.items()} == {
        ids[0]: (1, 2),
        ids[1]: (1, None),
        ids[2]: (1, None),
    }
    assert found[ids[1]] == RecordedPrediction(
        "reviews", 1, "a", found[ids[1]].timestamp, text_hash=text_digest("some text")
    )

    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    sa.event.listen(store.engine, "before_cursor_execute", count)
    try:
        assert log.flush()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", count)
    inserts = [s for s in statements if s.startswith("INSERT INTO serving_predictions")]
    assert len(inserts) == 1  # one multi-row INSERT for the batch
    assert rows(store) == sorted(
        [(ids[0], 1, False), (ids[0], 2, True), (ids[1], 1, False), (ids[2], 1, False)]
    )
    other = PredictionLog(store)  # another worker, replica or a restarted server
    again = await other.find([ids[0], ids[1], "unknown"])
    assert again == {ids[0]: found[ids[0]], ids[1]: found[ids[1]]}
    assert again[ids[0]].text_hash == text_digest("some text")
    assert log.stats.written == 4


@pytest.mark.anyio
async def test_a_shadow_answer_still_in_memory_joins_its_written_prediction(
    log: PredictionLog,
) -> None:
    """The shadow scores after the answer went out: its row may come one write later."""
    [prediction_id] = new_prediction_ids(1)
    log.remember(prediction_id, *entry())
    assert log.flush()
    log.add_shadow(prediction_id, "reviews", 2, "b")
    found = (await log.find([prediction_id]))[prediction_id]
    assert (found.version, found.shadow_version, found.shadow_class) == (1, 2, "b")


@pytest.mark.anyio
async def test_a_label_waits_for_a_prediction_another_process_has_not_written_yet(
    store: Database,
) -> None:
    """Worker A answers and buffers; the label reaches worker B before A's next write."""
    worker_a = PredictionLog(store, flush_interval=0.4)
    # a long settle, so that a find that waits it out cannot pass for one that did not
    worker_b = PredictionLog(store, flush_interval=0.05, settle=60.0)
    worker_a.start()
    try:
        [fresh] = new_prediction_ids(1)
        worker_a.remember(fresh, *entry())
        started = time.monotonic()
        found = await worker_b.find([fresh])
        assert found[fresh].predicted_class == "a"
        assert time.monotonic() - started < 20  # found once A writes (0.4 s)

        # an id this server never issued, or one issued long ago, is answered at once
        [old] = new_prediction_ids(1, now=time.time() - 600)
        started = time.monotonic()
        assert await worker_b.find(["never-issued", old]) == {}
        assert time.monotonic() - started < 20
    finally:
        worker_a.close()


@pytest.mark.anyio
async def test_rows_past_the_retention_are_not_matched_and_are_purged(store: Database) -> None:
    now = [1_800_000_000.0]
    log = PredictionLog(store, retention=3600.0, clock=lambda: now[0])
    old, young = new_prediction_ids(2, now=now[0])
    log.remember(old, *entry(at=now[0] - 3000))
    log.remember(young, *entry(at=now[0]))
    assert log.flush()
    assert set(await log.find([old, young])) == {old, young}
    now[0] += 1000  # the old one is now 4000 s old: past the retention, before any purge
    assert set(await log.find([old, young])) == {young}
    assert log.purge() == 1
    assert [r[0] for r in rows(store)] == [young]
    assert log.stats.purged == 1


def test_the_writer_purges_on_its_own(store: Database) -> None:
    log = PredictionLog(store, retention=60.0, flush_interval=0.05, purge_interval=0.2)
    log.remember("a" * 32, *entry(at=time.time() - 120))
    log.remember("b" * 32, *entry())
    log.start()
    try:
        deadline = time.monotonic() + 10
        while log.stats.purged < 1:
            assert time.monotonic() < deadline, log.stats
            time.sleep(0.05)
        assert [r[0] for r in rows(store)] == ["b" * 32]
    finally:
        log.close()


@pytest.mark.anyio
async def test_entries_wait_while_the_store_is_down_and_the_oldest_go_past_the_cap(
    store: Database,
) -> None:
    log = PredictionLog(store, max_pending=3)
    with store.engine.begin() as connection:  # the table is gone: every write fails
        connection.execute(sa.text("ALTER TABLE serving_predictions RENAME TO away"))
    try:
        ids = new_prediction_ids(4)
        for prediction_id in ids[:2]:
            log.remember(prediction_id, *entry())
        assert not log.flush()
        for prediction_id in ids[2:]:
            log.remember(prediction_id, *entry())
        assert (log.stats.pending, log.stats.dropped) == (3, 1)  # the oldest went
        assert set(log.local(ids)) == set(ids[1:])
        with pytest.raises(BackendUnavailableError) as refused:
            log.read(ids)
        assert "serving_predictions" not in str(refused.value)  # no SQL in the message
    finally:
        with store.engine.begin() as connection:
            connection.execute(sa.text("ALTER TABLE away RENAME TO serving_predictions"))
    assert log.flush()
    assert [r[0] for r in rows(store)] == sorted(ids[1:])
    assert set(await PredictionLog(store).find(ids)) == set(ids[1:])


def test_the_writer_backs_off_while_the_store_is_down_and_starts_again_after_close(
    store: Database,
) -> None:
    """The writer thread waits twice as long after each failed write, writes the batch it kept
    once the store is back, and a closed log started again writes again."""
    attempts: list[float] = []

    def seen(*args: Any) -> None:
        if str(args[2]).startswith("INSERT INTO serving_predictions"):
            attempts.append(time.monotonic())

    log = PredictionLog(store, flush_interval=0.05)
    first, second = new_prediction_ids(2)
    sa.event.listen(store.engine, "before_cursor_execute", seen)
    with store.engine.begin() as connection:  # the table is gone: every write fails
        connection.execute(sa.text("ALTER TABLE serving_predictions RENAME TO away"))
    try:
        log.remember(first, *entry())
        log.start()
        time.sleep(0.6)  # writes at 0.05, 0.15, 0.35 (0.75) s; without backoff twelve
        assert 2 <= len(attempts) <= 4, attempts
    finally:
        with store.engine.begin() as connection:
            connection.execute(sa.text("ALTER TABLE away RENAME TO serving_predictions"))
    try:
        deadline = time.monotonic() + 5
        while log.stats.written < 1:
            assert time.monotonic() < deadline, log.stats
            time.sleep(0.02)
        log.close()
        log.remember(second, *entry())
        log.start()
        while log.stats.written < 2:
            assert time.monotonic() < deadline, log.stats
            time.sleep(0.02)
    finally:
        log.close()
        sa.event.remove(store.engine, "before_cursor_execute", seen)
    assert [r[0] for r in rows(store)] == sorted([first, second])


def test_one_label_per_prediction_under_concurrent_writers(store: Database) -> None:
    """Two processes label the same new prediction at once: one row, one first label."""
    feedback = FeedbackStore(store)
    firsts: list[int] = []
    barrier = threading.Barrier(4)

    def label(number: int) -> None:
        record = FeedbackRecord(
            "p-1", "reviews", f"label-{number}", 1, "label-0", None, 1000.0 + number
        )
        barrier.wait()
        firsts.append(len(FeedbackStore(store).record([record]).first))

    threads = [threading.Thread(target=label, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(firsts) == [0, 0, 0, 1]
    [row] = feedback.list("reviews")
    assert (row.label, row.received_at) == ("label-3", 1003.0)  # the latest received wins
    assert row.correct is False


# --- the server ------------------------------------------------------------------------------


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        yield http


@pytest.mark.anyio
async def test_a_label_sent_after_a_restart_meets_its_prediction(
    config: Config,
    source: InMemoryModelSource,
    api_keys: ApiKeyStore,
    predict_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    """The log used to be a dict in the process: a restart lost every prediction."""
    first = InsightsClient(MemoryTransport(), outbox=tmp_path / "one", flush_interval=0.02)
    async with running(
        create_app(config, model_source=source, insights=first, api_keys=api_keys)
    ) as http:
        response = await http.post(
            "/v1/models/reviews/predict", headers=predict_headers, json={"texts": ["tasty", "rude"]}
        )
        answers = response.json()["predictions"]
    first.close()  # the server stopped; its last predictions were written at shutdown

    transport = MemoryTransport()
    second = InsightsClient(transport, outbox=tmp_path / "two", flush_interval=0.02)
    async with running(
        create_app(config, model_source=source, insights=second, api_keys=api_keys)
    ) as http:
        response = await http.post(
            "/v1/models/reviews/feedback",
            headers=predict_headers,
            json={
                "feedback": [
                    {"prediction_id": answers[0]["id"], "label": "Food - Positive"},
                    {"prediction_id": answers[1]["id"], "label": "Food - Negative", "text": "rude"},
                ]
            },
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"accepted": 2, "matched": 2, "relabelled": 0}
    assert second.flush()
    second.close()
    assert [
        (p.value, p.tags["class"]) for p in transport.points if p.name == "prediction_correct"
    ] == [(1.0, "Food - Positive"), (0.0, "Service - Negative")]


@pytest.mark.anyio
async def test_the_request_path_never_touches_the_prediction_log_table(
    app: FastAPI, client: httpx.AsyncClient, predict_headers: dict[str, str], database: Database
) -> None:
    """No per-request round trip: only the log's own thread writes its rows."""
    threads: list[str] = []

    def seen(*args: Any) -> None:
        if "serving_predictions" in str(args[2]):
            threads.append(threading.current_thread().name)

    sa.event.listen(database.engine, "before_cursor_execute", seen)
    try:
        for _ in range(5):
            await client.post(
                "/v1/models/reviews/predict",
                headers=predict_headers,
                json={"texts": ["tasty", "rude", "stale"]},
            )
        deadline = time.monotonic() + 5
        while not threads:
            assert time.monotonic() < deadline
            await anyio.sleep(0.02)
    finally:
        sa.event.remove(database.engine, "before_cursor_execute", seen)
    assert set(threads) == {"driftloop-prediction-log"}
    assert app.state.serving.predictions.flush()
    assert len(rows(database)) == 15

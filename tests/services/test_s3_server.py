"""A real S3 API server (S3Proxy, filesystem backend) started by scripts/services/s3.sh."""

from __future__ import annotations

import os

import anyio
import pytest
import s3fs

from driftloop.objectstore.storage import open_storage
from servicekit import S3Endpoint, close_s3_filesystem

pytestmark = pytest.mark.s3


def test_put_and_get_with_s3fs(s3_endpoint: S3Endpoint, s3_bucket: str) -> None:
    assert s3_endpoint.url.startswith("http://127.0.0.1:")
    fs = s3fs.S3FileSystem(
        key=s3_endpoint.access_key,
        secret=s3_endpoint.secret_key,
        client_kwargs={"endpoint_url": s3_endpoint.url, "region_name": s3_endpoint.region},
    )
    fs.pipe(f"{s3_bucket}/models/churn/v1.bin", b"\x00weights\xff")
    assert fs.cat(f"{s3_bucket}/models/churn/v1.bin") == b"\x00weights\xff"
    assert fs.ls(f"{s3_bucket}/models/churn", detail=False) == [f"{s3_bucket}/models/churn/v1.bin"]


def test_wrong_secret_is_refused(s3_endpoint: S3Endpoint, s3_bucket: str) -> None:
    fs = s3fs.S3FileSystem(
        key=s3_endpoint.access_key,
        secret="not-the-secret",
        skip_instance_cache=True,
        client_kwargs={"endpoint_url": s3_endpoint.url, "region_name": s3_endpoint.region},
    )
    try:
        with pytest.raises(PermissionError):
            fs.pipe(f"{s3_bucket}/refused.txt", b"x")
    finally:
        close_s3_filesystem(fs)  # uncached: nothing else closes it before it is collected


def test_driftloop_object_storage_on_s3(s3_endpoint: S3Endpoint, s3_bucket: str) -> None:
    # Credentials come from the standard AWS variables, which the fixture points at the server.
    assert os.environ["AWS_ACCESS_KEY_ID"] == s3_endpoint.access_key
    storage = open_storage(f"s3://{s3_bucket}/runs?endpoint_url={s3_endpoint.url}")
    storage.put_bytes("snapshots/2026-11-26/data.csv", b"text,label\nok,1\n")
    assert storage.get_bytes("snapshots/2026-11-26/data.csv") == b"text,label\nok,1\n"
    assert storage.list("snapshots") == ["snapshots/2026-11-26/data.csv"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_a_filesystem_collected_during_an_async_test_closes_on_its_own_loop(
    s3_endpoint: S3Endpoint, s3_bucket: str
) -> None:
    # s3fs closes a collected filesystem's session from a GC hook; run inside another event
    # loop, its own version schedules the close on that loop and the test fails with "attached
    # to a different loop" (CI met it in an unrelated serving test). tests/conftest.py fixes it.
    fs = s3fs.S3FileSystem(
        key=s3_endpoint.access_key,
        secret=s3_endpoint.secret_key,
        skip_instance_cache=True,
        client_kwargs={"endpoint_url": s3_endpoint.url, "region_name": s3_endpoint.region},
    )
    await anyio.to_thread.run_sync(fs.pipe, f"{s3_bucket}/collected.txt", b"x")
    session = fs._s3creator
    # what the hook s3fs registers with weakref.finalize runs when the filesystem is collected
    # (called directly: whether a collection happens at a given line is up to the collector)
    s3fs.S3FileSystem.close_session(fs.loop, session)
    await anyio.sleep(0.2)  # a close scheduled on this loop would run, and fail, now
    assert session._client._endpoint.http_session._sessions is None  # closed, on its loop

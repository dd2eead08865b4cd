"""A real S3 API server (S3Proxy, filesystem backend) started by scripts/services/s3.sh."""

from __future__ import annotations

import os

import pytest
import s3fs

from driftloop.storage.objects import open_storage
from servicekit import S3Endpoint

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
    with pytest.raises(PermissionError):
        fs.pipe(f"{s3_bucket}/refused.txt", b"x")


def test_driftloop_object_storage_on_s3(s3_endpoint: S3Endpoint, s3_bucket: str) -> None:
    # Credentials come from the standard AWS variables, which the fixture points at the server.
    assert os.environ["AWS_ACCESS_KEY_ID"] == s3_endpoint.access_key
    storage = open_storage(f"s3://{s3_bucket}/runs?endpoint_url={s3_endpoint.url}")
    storage.put_bytes("snapshots/2026-11-26/data.csv", b"text,label\nok,1\n")
    assert storage.get_bytes("snapshots/2026-11-26/data.csv") == b"text,label\nok,1\n"
    assert storage.list("snapshots") == ["snapshots/2026-11-26/data.csv"]

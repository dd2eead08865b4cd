"""Both built-in object storage backends pass driftloop.testing's object storage suite:
``file://`` on a local directory, ``s3://`` on the S3-compatible test server."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from driftloop.errors import InvalidInputError
from driftloop.objectstore import ObjectStorage, open_storage
from driftloop.testing.checks import ConformanceError, ObjectStorageSubject, check_object_storage
from servicekit import S3Endpoint


def test_file_storage(tmp_path: Path) -> None:
    check_object_storage(
        ObjectStorageSubject(lambda: open_storage(f"file://{tmp_path / uuid.uuid4().hex}"))
    )


@pytest.mark.s3
def test_s3_storage(s3_endpoint: S3Endpoint, s3_bucket: str) -> None:
    check_object_storage(
        ObjectStorageSubject(
            lambda: open_storage(
                f"s3://{s3_bucket}/{uuid.uuid4().hex}?endpoint_url={s3_endpoint.url}"
            )
        )
    )


class TraversingStorage(ObjectStorage):
    """Takes keys as they come, '..' and all: what the suite is there to catch."""

    def _path(self, key: str) -> str:
        return f"{self.root}/{key.strip('/')}" if key.strip("/") else self.root

    def _temporary_path(self, key: str) -> str:
        return self._path(key) + ".part"


def test_the_suite_catches_path_traversal(tmp_path: Path) -> None:
    def open_traversing() -> ObjectStorage:
        storage = open_storage(f"file://{tmp_path / uuid.uuid4().hex}")
        return TraversingStorage(storage.fs, storage.root, storage.url)

    with pytest.raises(
        ConformanceError, match=r"refuses_path_traversal.*expected " + InvalidInputError.__name__
    ):
        check_object_storage(ObjectStorageSubject(open_traversing))

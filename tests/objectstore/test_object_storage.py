"""ObjectStorage: the file:// and s3:// backends, key rules and atomic publishing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fsspec.implementations.local import LocalFileSystem

from driftloop.errors import (
    BackendUnavailableError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    UnknownBackendError,
)
from driftloop.objectstore import ObjectStorage, open_storage


@pytest.fixture
def storage(tmp_path: Path) -> ObjectStorage:
    return open_storage("file://store", base_dir=tmp_path)


def every_file(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_bytes_round_trip(storage: ObjectStorage) -> None:
    storage.put_bytes("a/b/c.txt", b"hello")
    storage.put_bytes("a/d.txt", b"")
    assert storage.get_bytes("a/b/c.txt") == b"hello"
    assert storage.get_bytes("a/d.txt") == b""
    assert storage.exists("a/b/c.txt")
    assert not storage.exists("a/nothing.txt")
    assert storage.list() == ["a/b/c.txt", "a/d.txt"]
    assert storage.list("a/b") == ["a/b/c.txt"]
    assert storage.list("missing") == []


def test_relative_file_url_resolves_against_the_project_dir(tmp_path: Path) -> None:
    storage = open_storage("file://.driftloop/storage", base_dir=tmp_path)
    storage.put_bytes("k", b"1")
    assert (tmp_path / ".driftloop" / "storage" / "k").read_bytes() == b"1"
    assert storage.uri("k") == f"file://{(tmp_path / '.driftloop/storage/k').resolve()}"
    assert storage.key_of(storage.uri("x/y")) == "x/y"
    assert storage.key_of("s3://elsewhere/x") is None


def test_absolute_file_url(tmp_path: Path) -> None:
    storage = open_storage(f"file://{tmp_path}/abs", base_dir=Path("/nonexistent"))
    storage.put_bytes("k", b"2")
    assert (tmp_path / "abs" / "k").read_bytes() == b"2"


def test_overwrite_is_atomic_and_leaves_no_temporary_files(
    storage: ObjectStorage, tmp_path: Path
) -> None:
    storage.put_bytes("x.bin", b"old")
    storage.put_bytes("x.bin", b"new")
    assert storage.get_bytes("x.bin") == b"new"
    assert every_file(tmp_path / "store") == ["x.bin"]


def test_directory_round_trip(storage: ObjectStorage, tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "nested").mkdir(parents=True)
    (source / "one.txt").write_text("1")
    (source / "nested" / "two.txt").write_text("2")
    keys = storage.put_dir(source, "models/m/abc")
    assert keys == ["models/m/abc/nested/two.txt", "models/m/abc/one.txt"]
    target = tmp_path / "copy"
    storage.get_dir("models/m/abc", target)
    assert (target / "one.txt").read_text() == "1"
    assert (target / "nested" / "two.txt").read_text() == "2"


def test_put_dir_never_overwrites(storage: ObjectStorage, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "f").write_text("first")
    (second / "f").write_text("second")
    storage.put_dir(first, "p")
    with pytest.raises(ConflictError, match="never change"):
        storage.put_dir(second, "p")
    assert storage.get_bytes("p/f") == b"first"


class FailingFileSystem(LocalFileSystem):  # type: ignore[misc]
    """A local filesystem whose second upload fails, as a dropped connection would."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.uploads = 0

    def put_file(self, lpath: str, rpath: str, **kwargs: Any) -> None:
        self.uploads += 1
        if self.uploads == 2:
            raise ConnectionError("connection reset by peer")
        super().put_file(lpath, rpath, **kwargs)


def test_interrupted_put_dir_publishes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    storage = ObjectStorage(FailingFileSystem(auto_mkdir=True), root.as_posix(), "file://store")
    source = tmp_path / "src"
    source.mkdir()
    for name in ("a", "b", "c"):
        (source / name).write_text(name)
    with pytest.raises(BackendUnavailableError, match="connection reset"):
        storage.put_dir(source, "models/m/h")
    assert storage.list() == []
    assert every_file(root) == []


def test_missing_keys_and_directories(storage: ObjectStorage, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="nothing stored"):
        storage.get_bytes("nope")
    with pytest.raises(NotFoundError, match="nothing stored"):
        storage.get_dir("nope", tmp_path / "out")
    with pytest.raises(NotFoundError, match="no such directory"):
        storage.put_dir(tmp_path / "absent", "k")
    with pytest.raises(NotFoundError, match="no such file"):
        storage.put_file(tmp_path / "absent.txt", "k")


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../escape", "a/../../b", "a//b"])
def test_invalid_keys_are_refused(storage: ObjectStorage, key: str) -> None:
    with pytest.raises(InvalidInputError):
        storage.put_bytes(key, b"x")


def test_file_round_trip_and_delete(storage: ObjectStorage, tmp_path: Path) -> None:
    local = tmp_path / "in.txt"
    local.write_text("payload")
    storage.put_file(local, "dir/in.txt")
    storage.put_bytes("dir/other", b"o")
    storage.get_file("dir/in.txt", tmp_path / "out" / "copy.txt")
    assert (tmp_path / "out" / "copy.txt").read_text() == "payload"
    storage.delete("dir/in.txt")
    assert storage.list("dir") == ["dir/other"]
    storage.delete("dir")
    storage.delete("dir")  # a missing key is not an error
    assert storage.list() == []


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(UnknownBackendError, match=r"known schemes: file://, s3://"):
        open_storage("gs://bucket/prefix")


def test_s3_url_names_bucket_prefix_and_endpoint() -> None:
    storage = open_storage("s3://bucket/some/prefix?endpoint_url=http://127.0.0.1:9")
    assert storage.root == "bucket/some/prefix"
    assert storage.url == "s3://bucket/some/prefix"
    assert storage.uri("models/m/h") == "s3://bucket/some/prefix/models/m/h"
    assert storage.fs.client_kwargs == {"endpoint_url": "http://127.0.0.1:9"}
    with pytest.raises(InvalidInputError, match="names no bucket"):
        open_storage("s3:///prefix")

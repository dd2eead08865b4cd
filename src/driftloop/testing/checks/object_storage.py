"""The conformance suite of object storage backends (:class:`~driftloop.objectstore.ObjectStorage`,
the ``storage:`` URL's family).

The subject is a factory of storages on a new, empty root each call (a fresh directory, a new
bucket or prefix), so checks never see each other's keys.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from driftloop.errors import ConflictError, InvalidInputError, NotFoundError
from driftloop.objectstore.storage import ObjectStorage
from driftloop.testing.checks.base import Check, checklist, expect, expect_raises, run_checks


@dataclass(frozen=True)
class ObjectStorageSubject:
    """An object storage backend under test."""

    open: Callable[[], ObjectStorage]
    """A storage on a new, empty root."""


OBJECT_STORAGE_CHECKS: list[Check[ObjectStorageSubject]] = []
_check = checklist(OBJECT_STORAGE_CHECKS)

TRAVERSALS = ("../escape", "a/../../escape", "/etc/passwd", "a//b", "./a", "a/./b", "a/..")
"""Keys that would leave the storage root or name one object two ways."""


def check_object_storage(subject: ObjectStorageSubject) -> None:
    """Run every object storage check on ``subject`` (:data:`OBJECT_STORAGE_CHECKS`)."""
    run_checks(OBJECT_STORAGE_CHECKS, subject)


@_check
def round_trips_bytes(subject: ObjectStorageSubject) -> None:
    """Bytes read back equal the bytes written (empty, binary, nested keys); a write replaces."""
    storage = subject.open()
    samples = {"empty": b"", "binary": bytes(range(256)) * 4, "a/b/c/nested.json": b'{"x": 1}'}
    for key, data in samples.items():
        storage.put_bytes(key, data)
    for key, data in samples.items():
        expect(storage.get_bytes(key) == data, f"{key!r} did not read back as written")
        expect(storage.exists(key), f"exists({key!r}) is False after a write")
    storage.put_bytes("empty", b"second")
    expect(storage.get_bytes("empty") == b"second", "a second write did not replace the first")


@_check
def lists_keys_sorted_by_prefix(subject: ObjectStorageSubject) -> None:
    """list() gives every key, recursively and sorted; a prefix narrows it; none is ``[]``."""
    storage = subject.open()
    keys = ["b/2.txt", "a/1.txt", "b/deep/3.txt", "c.txt"]
    for key in keys:
        storage.put_bytes(key, key.encode())
    expect(storage.list() == sorted(keys), f"list() gave {storage.list()}")
    expect(storage.list("b") == ["b/2.txt", "b/deep/3.txt"], f"list('b') gave {storage.list('b')}")
    expect(storage.list("nothing-here") == [], "list() of a missing prefix is not []")


@_check
def refuses_path_traversal(subject: ObjectStorageSubject) -> None:
    """A key that is absolute, climbs with '..' or has empty segments is an InvalidInputError."""
    storage = subject.open()
    storage.put_bytes("inside", b"x")
    for key in TRAVERSALS:
        expect_raises(
            InvalidInputError, partial(storage.put_bytes, key, b"x"), f"put_bytes({key!r})"
        )
        expect_raises(InvalidInputError, partial(storage.get_bytes, key), f"get_bytes({key!r})")
        expect_raises(InvalidInputError, partial(storage.delete, key), f"delete({key!r})")
    expect(storage.list() == ["inside"], f"a refused key left objects: {storage.list()}")


@_check
def reports_missing_objects_with_not_found(subject: ObjectStorageSubject) -> None:
    """Reading what is not there is a NotFoundError; exists() is False; deleting it is fine."""
    storage = subject.open()
    expect_raises(NotFoundError, lambda: storage.get_bytes("missing"), "get_bytes of a missing key")
    with tempfile.TemporaryDirectory() as scratch:
        expect_raises(
            NotFoundError,
            lambda: storage.get_file("missing", Path(scratch) / "f"),
            "get_file of a missing key",
        )
        expect_raises(
            NotFoundError,
            lambda: storage.get_dir("missing", Path(scratch) / "d"),
            "get_dir of a missing prefix",
        )
    expect(not storage.exists("missing"), "exists() of a missing key is True")
    storage.delete("missing")


@_check
def deletes_keys_and_prefixes(subject: ObjectStorageSubject) -> None:
    """delete() removes one key, or every key under a prefix, and nothing else."""
    storage = subject.open()
    for key in ("keep.txt", "gone.txt", "tree/a.txt", "tree/sub/b.txt"):
        storage.put_bytes(key, b"x")
    storage.delete("gone.txt")
    storage.delete("tree")
    expect(storage.list() == ["keep.txt"], f"after the deletes, list() gave {storage.list()}")
    expect_raises(NotFoundError, lambda: storage.get_bytes("tree/a.txt"), "a deleted key")


@_check
def round_trips_files_and_directories(subject: ObjectStorageSubject) -> None:
    """put_file/get_file and put_dir/get_dir round-trip; a prefix is never overwritten."""
    storage = subject.open()
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "model"
        (source / "sub").mkdir(parents=True)
        (source / "weights.bin").write_bytes(b"\x00\x01" * 100)
        (source / "sub" / "config.json").write_text('{"labels": ["a", "b"]}')
        written = storage.put_dir(source, "models/m/1")
        expect(
            written == ["models/m/1/sub/config.json", "models/m/1/weights.bin"],
            f"put_dir wrote {written}",
        )
        expect_raises(
            ConflictError,
            lambda: storage.put_dir(source, "models/m/1"),
            "put_dir onto a prefix that holds keys",
        )
        copy = Path(scratch) / "copy"
        storage.get_dir("models/m/1", copy)
        for relative in ("weights.bin", "sub/config.json"):
            expect(
                (copy / relative).read_bytes() == (source / relative).read_bytes(),
                f"get_dir changed {relative}",
            )
        storage.put_file(source / "weights.bin", "single/weights.bin")
        storage.get_file("single/weights.bin", Path(scratch) / "one.bin")
        expect(
            (Path(scratch) / "one.bin").read_bytes() == b"\x00\x01" * 100,
            "put_file/get_file changed the bytes",
        )


@_check
def names_keys_by_uri(subject: ObjectStorageSubject) -> None:
    """key_of(uri(key)) gives the key back; a URI outside the storage gives None."""
    storage = subject.open()
    for key in ("a.txt", "x/y/z.bin"):
        expect(
            storage.key_of(storage.uri(key)) == key,
            f"key_of(uri({key!r})) gave {storage.key_of(storage.uri(key))!r}",
        )
    expect(
        storage.key_of("file:///somewhere/else/entirely") is None,
        "key_of() of a URI outside the storage is not None",
    )

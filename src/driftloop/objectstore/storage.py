"""Object storage for dataset snapshots and model artifacts, through fsspec.

The storage URL picks the backend (:data:`STORAGES`): ``file://PATH`` (the default; a relative
``PATH`` is resolved against the project directory) or ``s3://bucket/prefix`` (needs s3fs, the
``s3`` extra; ``?endpoint_url=http://host:port`` selects an S3-compatible server).

Keys are relative, ``/``-separated paths under the storage root. Every write is published
atomically: bytes go to a temporary key beside the target first, then are renamed (local) or
copied (S3) into place, so a reader never sees half a file. Temporary keys start with
``.tmp-`` and never show up in :meth:`ObjectStorage.list`.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from driftloop.backends import BackendFamily
from driftloop.errors import (
    BackendUnavailableError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)

if TYPE_CHECKING:
    import fsspec

TEMP_PREFIX = ".tmp-"
# exceptions from these client libraries mean the object store is unreachable or refused
_CLIENT_PACKAGES = frozenset({"botocore", "aiobotocore", "aiohttp", "s3fs"})


def _check_key(key: str, *, allow_root: bool = False) -> str:
    """A normalised relative key; refuses absolute paths, ``..`` and empty segments."""
    stripped = key.strip("/")
    if not stripped:
        if allow_root:
            return ""
        raise InvalidInputError("an object key cannot be empty")
    parts = stripped.split("/")
    if any(part in {"", ".", ".."} for part in parts) or key.startswith("/"):
        raise InvalidInputError(f"invalid object key {key!r}: use a relative path without '..'")
    return stripped


def _is_temporary(key: str) -> bool:
    return any(part.startswith(TEMP_PREFIX) for part in key.split("/"))


class ObjectStorage:
    """Keys → bytes on one fsspec filesystem under a root path.

    ``fs`` is the filesystem, or a function that makes it on first use: opening local storage
    then costs no fsspec import (``driftloop status`` and ``models ls`` open the registry's
    storage and never read it)."""

    def __init__(
        self,
        fs: fsspec.AbstractFileSystem | Callable[[], fsspec.AbstractFileSystem],
        root: str,
        url: str,
    ) -> None:
        self._fs = fs
        self.root = root.rstrip("/")
        self.url = url

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        if callable(self._fs):  # a filesystem is not callable: the function that makes it
            self._fs = self._fs()
        return self._fs

    @property
    def _local(self) -> bool:
        from fsspec.implementations.local import LocalFileSystem

        return isinstance(self.fs, LocalFileSystem)

    # paths ---------------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        relative = _check_key(key, allow_root=True)
        return f"{self.root}/{relative}" if relative else self.root

    def _temporary_path(self, key: str) -> str:
        relative = _check_key(key)
        parent, _, name = relative.rpartition("/")
        temporary = f"{TEMP_PREFIX}{uuid.uuid4().hex}-{name}"
        return self._path(f"{parent}/{temporary}" if parent else temporary)

    def uri(self, key: str = "") -> str:
        """The full URL of a key (``file:///abs/path/key``, ``s3://bucket/prefix/key``)."""
        path = self._path(key)
        protocol = self.fs.protocol
        scheme = protocol[0] if isinstance(protocol, tuple | list) else protocol
        if scheme in {"file", "local"}:
            return f"file://{path}"
        return f"{scheme}://{path}"

    def key_of(self, uri: str) -> str | None:
        """The key of a full URL inside this storage, or ``None`` when it lies elsewhere."""
        root = self.uri("")
        if uri == root:
            return ""
        if uri.startswith(root + "/"):
            return uri[len(root) + 1 :]
        return None

    # bytes ---------------------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` atomically (temporary key, then rename or copy)."""
        temporary = self._temporary_path(key)
        with self._errors(key):
            self.fs.makedirs(self._parent(temporary), exist_ok=True)
            self.fs.pipe_file(temporary, data)
            try:
                self._publish_file(temporary, self._path(key))
            except BaseException:
                self._remove_quietly(temporary)
                raise

    def get_bytes(self, key: str) -> bytes:
        with self._errors(key):
            data: bytes = self.fs.cat_file(self._path(key))
        return data

    def exists(self, key: str) -> bool:
        with self._errors(key):
            return bool(self.fs.exists(self._path(key)))

    def list(self, prefix: str = "") -> list[str]:
        """Every key (files only, recursively) under ``prefix``, sorted."""
        base = self._path(prefix)
        with self._errors(prefix):
            if not self.fs.exists(base):
                return []
            found: list[str] = self.fs.find(base)
        keys = []
        root = self.fs._strip_protocol(self.root).rstrip("/") + "/"
        for path in found:
            stripped = self.fs._strip_protocol(path)
            key = stripped[len(root) :] if stripped.startswith(root) else stripped
            if not _is_temporary(key):
                keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        """Remove a key, or every key under a prefix; a missing key is not an error."""
        path = self._path(_check_key(key))
        with self._errors(key):
            self._remove(path)

    # files and directories -----------------------------------------------------------------

    def put_file(self, local: Path, key: str) -> None:
        """Upload a local file atomically."""
        if not local.is_file():
            raise NotFoundError(f"no such file: {local}")
        temporary = self._temporary_path(key)
        with self._errors(key):
            self.fs.makedirs(self._parent(temporary), exist_ok=True)
            self.fs.put_file(str(local), temporary)
            try:
                self._publish_file(temporary, self._path(key))
            except BaseException:
                self._remove_quietly(temporary)
                raise

    def get_file(self, key: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        with self._errors(key):
            self.fs.get_file(self._path(key), str(local))

    def put_dir(self, local_dir: Path, prefix: str) -> builtins.list[str]:
        """Upload a directory under a new ``prefix``; returns the keys written.

        The files go under a temporary prefix first, which is then renamed (local: one atomic
        rename) or copied (S3) to ``prefix``. A prefix that already holds keys is never
        overwritten: that is a :class:`ConflictError`.
        """
        if not local_dir.is_dir():
            raise NotFoundError(f"no such directory: {local_dir}")
        files = sorted(p for p in local_dir.rglob("*") if p.is_file())
        if not files:
            raise InvalidInputError(f"{local_dir} is empty; nothing to upload")
        target = _check_key(prefix)
        if self.list(target):
            raise ConflictError(f"{self.uri(target)} already exists; stored objects never change")
        temporary = self._temporary_path(target)
        with self._errors(prefix):
            try:
                for file in files:
                    relative = file.relative_to(local_dir).as_posix()
                    destination = f"{temporary}/{relative}"
                    self.fs.makedirs(self._parent(destination), exist_ok=True)
                    self.fs.put_file(str(file), destination)
                self._publish_dir(
                    temporary,
                    self._path(target),
                    [file.relative_to(local_dir).as_posix() for file in files],
                )
            except BaseException:
                self._remove_quietly(temporary)
                raise
        return [f"{target}/{file.relative_to(local_dir).as_posix()}" for file in files]

    def get_dir(self, prefix: str, local_dir: Path) -> builtins.list[Path]:
        """Download every key under ``prefix`` into ``local_dir``; returns the local files."""
        base = _check_key(prefix, allow_root=True)
        keys = self.list(base)
        if not keys:
            raise NotFoundError(f"nothing stored under {self.uri(base)}")
        written = []
        for key in keys:
            relative = key[len(base) + 1 :] if base else key
            destination = local_dir / relative
            self.get_file(key, destination)
            written.append(destination)
        return written

    # internals -----------------------------------------------------------------------------

    def _parent(self, path: str) -> str:
        return path.rpartition("/")[0] or path

    def _publish_file(self, temporary: str, final: str) -> None:
        if self._local:
            os.replace(temporary, final)
        else:
            self.fs.mv(temporary, final)

    def _publish_dir(self, temporary: str, final: str, relatives: builtins.list[str]) -> None:
        if self._local:
            self.fs.makedirs(self._parent(final), exist_ok=True)
            try:
                os.rename(temporary, final)  # fails, rather than merges, if final exists
            except OSError as exc:
                if os.path.isdir(final):
                    raise ConflictError(
                        f"{final} was written concurrently; stored objects never change"
                    ) from exc
                raise
        else:  # object stores have no rename: copy each object, then drop the temporaries
            for relative in relatives:
                self.fs.copy(f"{temporary}/{relative}", f"{final}/{relative}")
            self._remove_quietly(temporary)

    def _remove(self, path: str) -> None:
        """Remove a file or a tree. On an object store, only the objects found under ``path``:
        a recursive ``rm`` also names the "directories" between them, which S3 ignores but an
        S3-compatible server on a filesystem (S3Proxy) refuses with a 500 while they hold files."""
        if not self.fs.exists(path):
            return
        if self._local:
            self.fs.rm(path, recursive=True)
            return
        objects = self.fs.find(path)
        if objects:
            self.fs.rm(objects)

    def _remove_quietly(self, path: str) -> None:
        with contextlib.suppress(OSError):
            self._remove(path)

    def _errors(self, key: str) -> _StorageErrors:
        return _StorageErrors(self, key)

    def __repr__(self) -> str:
        return f"ObjectStorage({self.url!r})"


class _StorageErrors:
    """Maps filesystem errors to driftloop's: missing → NotFound, anything else → 503."""

    def __init__(self, storage: ObjectStorage, key: str) -> None:
        self.storage = storage
        self.key = key

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: Any
    ) -> None:
        if exc is None:
            return
        where = self.storage.uri(self.key) if self.key.strip("/") else self.storage.url
        if isinstance(exc, FileNotFoundError):
            raise NotFoundError(f"nothing stored at {where}") from exc
        client_error = type(exc).__module__.split(".")[0] in _CLIENT_PACKAGES
        if isinstance(exc, OSError | TimeoutError) or client_error:
            raise BackendUnavailableError(f"storage {self.storage.url}: {exc}") from exc


def _file_storage(url: str, base_dir: Path | None = None) -> ObjectStorage:
    """``file://relative/path`` (against ``base_dir``) or ``file:///absolute/path``."""
    raw = url.removeprefix("file://")
    if not raw:
        raise InvalidInputError(f"{url!r} names no directory: use file://PATH")
    path = Path(raw)
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    return ObjectStorage(_local_filesystem, path.as_posix(), url)


def _local_filesystem() -> fsspec.AbstractFileSystem:
    from fsspec.implementations.local import LocalFileSystem

    return LocalFileSystem(auto_mkdir=True)


def _s3_storage(url: str, base_dir: Path | None = None) -> ObjectStorage:
    """``s3://bucket/prefix[?endpoint_url=http://host:port]`` (else ``$AWS_ENDPOINT_URL_S3`` or
    ``$AWS_ENDPOINT_URL``); credentials from the usual AWS chain."""
    del base_dir
    import s3fs

    parts = urlsplit(url)
    if not parts.netloc:
        raise InvalidInputError(f"{url!r} names no bucket: use s3://bucket/prefix")
    options: dict[str, Any] = {}
    query = parse_qs(parts.query)
    endpoint = (
        query["endpoint_url"][0]
        if "endpoint_url" in query
        else os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    )
    if endpoint:
        options["client_kwargs"] = {"endpoint_url": endpoint}
    root = f"{parts.netloc}/{parts.path.strip('/')}".rstrip("/")
    safe_url = url.split("?", 1)[0]
    return ObjectStorage(s3fs.S3FileSystem(**options), root, safe_url)


STORAGES: BackendFamily[ObjectStorage] = BackendFamily("storage")
STORAGES.register("file", "driftloop.objectstore.storage:_file_storage")
STORAGES.register("s3", "driftloop.objectstore.storage:_s3_storage", requires=("s3fs",), extra="s3")


def open_storage(url: str, base_dir: Path | None = None) -> ObjectStorage:
    """The :class:`ObjectStorage` for a storage URL; unknown schemes list the known ones."""
    return STORAGES.create(url, base_dir)

"""Content hashes of model artifact directories, and their verification.

The digest of a directory is the SHA-256 of its sorted ``<relative path>\\0<file sha256>\\n``
lines: it depends on file names and bytes only (not on times, permissions or the order files
were written), so the same model gives the same hash on every machine.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from driftloop.errors import IntegrityError, InvalidInputError, NotFoundError

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ArtifactDigest:
    """Per-file hashes of an artifact directory and the content hash over them."""

    files: dict[str, str]
    content_hash: str

    @classmethod
    def of_files(cls, files: dict[str, str]) -> ArtifactDigest:
        lines = "".join(f"{path}\0{files[path]}\n" for path in sorted(files))
        return cls(dict(sorted(files.items())), hashlib.sha256(lines.encode()).hexdigest())


def hash_directory(directory: Path) -> ArtifactDigest:
    """The :class:`ArtifactDigest` of every regular file under ``directory``."""
    if not directory.is_dir():
        raise NotFoundError(f"no such directory: {directory}")
    files: dict[str, str] = {}
    for path in sorted(directory.rglob("*")):
        if path.is_symlink():
            raise InvalidInputError(f"{path} is a symbolic link; artifacts hold plain files only")
        if path.is_file():
            files[path.relative_to(directory).as_posix()] = file_sha256(path)
    if not files:
        raise InvalidInputError(f"{directory} is empty: no model files to register")
    return ArtifactDigest.of_files(files)


def verify_directory(directory: Path, expected: ArtifactDigest, *, what: str) -> None:
    """Raise :class:`IntegrityError` naming the first file that is missing, extra or changed."""
    actual: dict[str, str] = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            actual[path.relative_to(directory).as_posix()] = file_sha256(path)
    for name, digest in expected.files.items():
        if name not in actual:
            raise IntegrityError(f"{what}: file {name} is missing")
        if actual[name] != digest:
            raise IntegrityError(
                f"{what}: file {name} changed after registration "
                f"(sha256 {actual[name][:12]}… != recorded {digest[:12]}…)"
            )
    extra = sorted(set(actual) - set(expected.files))
    if extra:
        raise IntegrityError(f"{what}: unexpected file {extra[0]} not in the registered artifact")
    if ArtifactDigest.of_files(actual).content_hash != expected.content_hash:
        raise IntegrityError(f"{what}: content hash does not match the registered one")

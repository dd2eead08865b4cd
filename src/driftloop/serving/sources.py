"""Where the server gets its models: a small :class:`ModelSource` protocol.

The default is :class:`RegistryModelSource` (the model registry: immutable, hashed versions and
the ``production`` alias). :class:`InMemoryModelSource` serves predictors handed over in code,
with the same alias semantics, for embedding the server or testing it without a registry.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from driftloop.errors import ConflictError, InvalidInputError, NotFoundError
from driftloop.predictors import Predictor, ReferenceProfile

if TYPE_CHECKING:
    from driftloop.config import Config
    from driftloop.registry import ModelRegistry, ModelVersion

PRODUCTION = "production"
CANARY = "canary"
"""While a canary rollout runs, this alias points at the candidate that takes a fraction of
the traffic (``pipeline.canary_fraction``)."""
SHADOW = "shadow"
"""While a shadow rollout runs, this alias points at the candidate that scores every request
in the background; production still answers."""
SERVED_ALIASES = (PRODUCTION, CANARY, SHADOW)
"""The aliases whose versions a server loads and scores with."""


@runtime_checkable
class ModelVersionLike(Protocol):
    """The part of a registry ``ModelVersion`` the server needs."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> int: ...

    @property
    def content_hash(self) -> str: ...

    @property
    def reference(self) -> ReferenceProfile | None:
        """How the version behaved on its held-out split (its ``estimated_accuracy``
        threshold comes from it); None when it was registered without one."""


class ModelSource(Protocol):
    """Resolves aliases to versions and loads them."""

    def resolve(self, name: str, alias: str = PRODUCTION) -> ModelVersionLike:
        """The version an alias points at; ``NotFoundError`` when there is none."""
        ...

    def get_version(self, name: str, version: int) -> ModelVersionLike:
        """One version; ``NotFoundError`` when it does not exist."""
        ...

    def load(self, version: ModelVersionLike) -> Predictor:
        """A ready predictor for the version (``IntegrityError`` if its files were altered)."""
        ...

    def set_alias(self, name: str, alias: str, version: int, *, actor: str) -> None:
        """Point an alias at a version."""
        ...

    def rollback(self, name: str, *, actor: str) -> ModelVersionLike:
        """Move ``production`` back to the version it pointed at before; returns it."""
        ...


class RegistryModelSource:
    """A :class:`ModelSource` backed by the model registry (the default)."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    @classmethod
    def from_config(cls, config: Config) -> RegistryModelSource:
        from driftloop.registry import ModelRegistry

        return cls(ModelRegistry.from_config(config))

    def resolve(self, name: str, alias: str = PRODUCTION) -> ModelVersion:
        return self.registry.resolve(name, alias)

    def get_version(self, name: str, version: int) -> ModelVersion:
        return self.registry.get_version(name, version)

    def load(self, version: ModelVersionLike) -> Predictor:
        from driftloop.registry import ModelVersion

        if not isinstance(version, ModelVersion):
            version = self.registry.get_version(version.name, version.version)
        return self.registry.load_predictor(version)

    def set_alias(self, name: str, alias: str, version: int, *, actor: str) -> None:
        self.registry.set_alias(name, alias, version, actor=actor)

    def rollback(self, name: str, *, actor: str) -> ModelVersion:
        return self.registry.rollback(name, actor=actor)


@dataclass(frozen=True)
class InMemoryModelVersion:
    name: str
    version: int
    content_hash: str
    created_at: float
    predictor: Predictor
    reference: ReferenceProfile | None = None


def predictor_hash(predictor: Predictor) -> str:
    """SHA-256 over the files the predictor saves (names and bytes, in name order)."""
    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory(prefix="driftloop-hash-") as directory:
        root = Path(directory)
        predictor.save(root)
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


class InMemoryModelSource:
    """Versions of predictors kept in memory, with aliases and a production history."""

    def __init__(self) -> None:
        self._versions: dict[str, list[InMemoryModelVersion]] = {}
        self._aliases: dict[tuple[str, str], int] = {}
        self._history: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self.alias_changes: list[tuple[str, str, int, str]] = []
        """``(name, alias, version, actor)`` for every alias move, in order."""

    def add(
        self,
        name: str,
        predictor: Predictor,
        *,
        production: bool = False,
        actor: str = "code",
        reference: ReferenceProfile | None = None,
    ) -> InMemoryModelVersion:
        """Register a new version (numbered from 1); ``production`` also deploys it."""
        content_hash = predictor_hash(predictor)
        with self._lock:
            versions = self._versions.setdefault(name, [])
            added = InMemoryModelVersion(
                name, len(versions) + 1, content_hash, time.time(), predictor, reference
            )
            versions.append(added)
        if production:
            self.set_alias(name, PRODUCTION, added.version, actor=actor)
        return added

    def versions(self, name: str) -> Sequence[InMemoryModelVersion]:
        with self._lock:
            return tuple(self._versions.get(name, ()))

    def resolve(self, name: str, alias: str = PRODUCTION) -> InMemoryModelVersion:
        with self._lock:
            version = self._aliases.get((name, alias))
        if version is None:
            raise NotFoundError(f"model {name!r} has no {alias!r} version")
        return self.get_version(name, version)

    def get_version(self, name: str, version: int) -> InMemoryModelVersion:
        with self._lock:
            versions = self._versions.get(name)
            if not versions:
                raise NotFoundError(f"no model named {name!r}")
            if not 1 <= version <= len(versions):
                raise NotFoundError(f"model {name!r} has no version {version}")
            return versions[version - 1]

    def load(self, version: ModelVersionLike) -> Predictor:
        found = self.get_version(version.name, version.version)
        if found.content_hash != version.content_hash:
            raise ConflictError(f"{version.name} v{version.version}: content hash mismatch")
        return found.predictor

    def set_alias(self, name: str, alias: str, version: int, *, actor: str) -> None:
        if not alias:
            raise InvalidInputError("an alias needs a name")
        self.get_version(name, version)
        with self._lock:
            previous = self._aliases.get((name, alias))
            self._aliases[(name, alias)] = version
            if alias == PRODUCTION and previous is not None and previous != version:
                self._history.setdefault(name, []).append(previous)
            self.alias_changes.append((name, alias, version, actor))

    def remove_alias(self, name: str, alias: str, *, actor: str) -> bool:
        """Remove an alias (not ``production``); False when it was not set."""
        if alias == PRODUCTION:
            raise InvalidInputError(f"the {PRODUCTION!r} alias cannot be removed")
        with self._lock:
            version = self._aliases.pop((name, alias), None)
            if version is not None:
                self.alias_changes.append((name, alias, version, f"{actor} (removed)"))
        return version is not None

    def rollback(self, name: str, *, actor: str) -> InMemoryModelVersion:
        with self._lock:
            history = self._history.get(name)
            if not history:
                raise ConflictError(f"model {name!r} has no earlier production version")
            version = history.pop()
            self._aliases[(name, PRODUCTION)] = version
            self.alias_changes.append((name, PRODUCTION, version, actor))
        return self.get_version(name, version)

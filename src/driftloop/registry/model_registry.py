"""The model registry: immutable versions, aliases, and verified loading.

Registering a version (:meth:`ModelRegistry.register`):

1. the directory must load as a predictor and score a text (else :class:`InvalidInputError`);
2. its content is hashed (:mod:`driftloop.registry.artifacts`);
3. the files are uploaded atomically to ``models/<name>/<content-hash>/`` in object storage
   (content-addressed: registering the same bytes twice reuses the upload);
4. one transaction numbers the version (previous maximum + 1) and inserts its row.

A failure in any step leaves nothing registered, and an upload made by the failed call is
removed. A version's row and artifact never change afterwards; :meth:`ModelRegistry.load_predictor`
checks every file against the hashes recorded at registration and names the first one that
differs (:class:`IntegrityError`).

Aliases (``production``, ``candidate`` or any name) point at versions. Every change is kept in
the alias history; :meth:`ModelRegistry.rollback` replays it as a stack (a ``set`` pushes, a
``rollback`` pops), so repeated rollbacks walk back through earlier deployments.
"""

from __future__ import annotations

import random
import re
import tempfile
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as SqlIntegrityError

from driftloop.config import NAME_PATTERN, Config
from driftloop.database.core import Database, open_database
from driftloop.errors import (
    ConflictError,
    DriftloopError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
)
from driftloop.objectstore.storage import ObjectStorage, open_storage
from driftloop.predictors import (
    ModelEvaluation,
    Predictor,
    ReferenceProfile,
    check_predictor,
    load_predictor,
)
from driftloop.predictors.trained import TrainedModel
from driftloop.registry.artifacts import ArtifactDigest, hash_directory, verify_directory
from driftloop.registry.loading import PredictorCache
from driftloop.registry.rows import change_from_row, version_from_row
from driftloop.registry.rows import connection as read_connection
from driftloop.registry.rows import transaction as write_transaction
from driftloop.registry.tables import alias_history, model_aliases, model_versions
from driftloop.registry.versions import (
    PRODUCTION,
    AliasChange,
    ModelVersion,
    check_trigger,
    evaluation_output,
)

if TYPE_CHECKING:
    from driftloop.objectstore.datasets import Snapshot

MODELS_PREFIX = "models"
CACHE_DIR = ".driftloop/cache/models"
_INSERT_ATTEMPTS = 5


def check_name(kind: str, value: str) -> str:
    if not re.match(NAME_PATTERN, value):
        raise InvalidInputError(
            f"{kind} {value!r} must match {NAME_PATTERN} (lower case, digits, . _ -)"
        )
    return value


class ModelRegistry:
    """Model versions in the relational store, their artifacts in object storage."""

    def __init__(
        self,
        database: Database,
        storage: ObjectStorage,
        cache_dir: Path,
        *,
        predictors: Mapping[str, str] | None = None,
    ) -> None:
        self.database = database
        self.storage = storage
        self.cache_dir = cache_dir
        self.predictors = dict(predictors or {})
        """Model name → its configured ``models.<name>.predictor`` (``package.module:Class``),
        which loads every version of that model."""
        self._predictors = PredictorCache(storage, cache_dir)

    @classmethod
    def from_config(cls, config: Config) -> ModelRegistry:
        return cls(
            open_database(config.store, base_dir=config.base_dir),
            open_storage(config.storage, base_dir=config.base_dir),
            config.path(CACHE_DIR),
            predictors={
                name: model.predictor
                for name, model in config.models.items()
                if model.predictor is not None
            },
        )

    # registering ---------------------------------------------------------------------------

    def register(
        self,
        name: str,
        predictor_dir: Path,
        *,
        trainer: str,
        params: Mapping[str, Any] | None = None,
        snapshot_id: str | None = None,
        snapshot_hash: str | None = None,
        evaluation: ModelEvaluation | None = None,
        reference: ReferenceProfile | None = None,
        parent_version: int | None = None,
        trigger: str = "manual",
    ) -> ModelVersion:
        """Register a saved predictor directory as the next version of ``name``."""
        check_name("model name", name)
        check_trigger(trigger)
        if not trainer.strip():
            raise InvalidInputError("trainer must name how the model was trained")
        if not predictor_dir.is_dir():
            raise NotFoundError(f"no such model directory: {predictor_dir}")
        predictor = self._check_loadable(name, predictor_dir)
        if evaluation is not None and evaluation_output(evaluation) != predictor.output:
            raise InvalidInputError(
                f"the evaluation given with {predictor_dir} is a {evaluation_output(evaluation)} "
                f"evaluation, but its predictor is a {predictor.output} model"
            )
        digest = hash_directory(predictor_dir)
        if parent_version is not None:
            self.get_version(name, parent_version)
        key = f"{MODELS_PREFIX}/{name}/{digest.content_hash}"
        uploaded = self._upload(name, predictor_dir, key, digest)
        try:
            return self._insert(
                name,
                digest,
                key,
                trainer=trainer,
                params=dict(params or {}),
                snapshot_id=snapshot_id,
                snapshot_hash=snapshot_hash,
                evaluation=evaluation,
                reference=reference,
                parent_version=parent_version,
                trigger=trigger,
            )
        except BaseException:
            if uploaded and not self._hash_in_use(name, digest.content_hash):
                self.storage.delete(key)
            raise

    def register_trained(
        self,
        name: str,
        trained: TrainedModel,
        *,
        trainer: str,
        snapshot: Snapshot | None = None,
        trigger: str = "manual",
        parent_version: int | None = None,
    ) -> ModelVersion:
        """Save a trainer's result and register it with its evaluation and reference."""
        with tempfile.TemporaryDirectory(prefix="driftloop-model-") as temporary:
            directory = trained.model_dir or Path(temporary) / "model"
            if trained.model_dir is None:
                trained.predictor.save(directory)
            return self.register(
                name,
                directory,
                trainer=trainer,
                params=trained.params,
                snapshot_id=None if snapshot is None else snapshot.snapshot_id,
                snapshot_hash=None if snapshot is None else snapshot.content_hash,
                evaluation=trained.evaluation,
                reference=trained.reference,
                parent_version=parent_version,
                trigger=trigger,
            )

    def _check_loadable(self, name: str, directory: Path) -> Predictor:
        """Load the directory's predictor (importing its code) and check that it answers its
        example input as its declared output kind says."""
        try:
            predictor = load_predictor(directory, self.predictors.get(name))
        except DriftloopError as exc:
            raise InvalidInputError(f"{directory} is not a loadable model: {exc.message}") from exc
        except Exception as exc:  # a broken model can fail in any library
            raise InvalidInputError(
                f"{directory} is not a loadable model: {type(exc).__name__}: {exc}"
            ) from exc
        check_predictor(predictor, f"{directory} ({type(predictor).__name__})")
        return predictor

    def _upload(self, name: str, directory: Path, key: str, digest: ArtifactDigest) -> bool:
        """Upload unless an identical artifact is already stored; True when this call wrote."""
        stored = self.storage.list(key)
        if stored:
            expected = {f"{key}/{name}" for name in digest.files}
            if set(stored) == expected and self._stored_matches(key, digest):
                return False
            if self._hash_in_use(name, digest.content_hash):
                raise IntegrityError(
                    f"{self.storage.uri(key)} no longer matches its content hash; "
                    "a registered artifact was modified in storage"
                )
            self.storage.delete(key)  # an interrupted upload nothing refers to
        self.storage.put_dir(directory, key)
        return True

    def _stored_matches(self, key: str, digest: ArtifactDigest) -> bool:
        with tempfile.TemporaryDirectory(prefix="driftloop-verify-") as temporary:
            local = Path(temporary)
            self.storage.get_dir(key, local)
            try:
                verify_directory(local, digest, what=key)
            except IntegrityError:
                return False
        return True

    def _insert(
        self,
        name: str,
        digest: ArtifactDigest,
        key: str,
        *,
        trainer: str,
        params: dict[str, Any],
        snapshot_id: str | None,
        snapshot_hash: str | None,
        evaluation: ModelEvaluation | None,
        reference: ReferenceProfile | None,
        parent_version: int | None,
        trigger: str,
    ) -> ModelVersion:
        values: dict[str, Any] = {
            "name": name,
            "content_hash": digest.content_hash,
            "artifact_uri": self.storage.uri(key),
            "files": digest.files,
            "trainer": trainer,
            "params": params,
            "snapshot_id": snapshot_id,
            "snapshot_hash": snapshot_hash,
            "evaluation": None if evaluation is None else evaluation.to_dict(),
            "reference": None if reference is None else reference.to_dict(),
            "parent_version": parent_version,
            "trigger": trigger,
            "deployed_at": None,
        }
        for attempt in range(_INSERT_ATTEMPTS):
            try:
                with self._transaction() as connection:
                    if self.database.dialect == "postgresql":
                        # writers of one model take turns; others are not held up
                        connection.execute(
                            sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                            {"name": f"driftloop.model_versions.{name}"},
                        )
                    current = connection.execute(
                        sa.select(sa.func.max(model_versions.c.version)).where(
                            model_versions.c.name == name
                        )
                    ).scalar()
                    version = int(current or 0) + 1
                    created_at = datetime.now(UTC)
                    connection.execute(
                        model_versions.insert().values(
                            **values, version=version, created_at=created_at
                        )
                    )
                return self.get_version(name, version)
            except SqlIntegrityError:
                if attempt == _INSERT_ATTEMPTS - 1:
                    raise ConflictError(
                        f"could not number a new version of {name!r}: too many concurrent "
                        "registrations"
                    ) from None
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")

    # reading -------------------------------------------------------------------------------

    def get_version(self, name: str, version: int) -> ModelVersion:
        with self._connection() as connection:
            row = (
                connection.execute(
                    sa.select(model_versions).where(
                        model_versions.c.name == name, model_versions.c.version == version
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFoundError(f"model {name!r} has no version {version}")
        return version_from_row(row)

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first; empty for an unknown model."""
        with self._connection() as connection:
            rows = (
                connection.execute(
                    sa.select(model_versions)
                    .where(model_versions.c.name == name)
                    .order_by(model_versions.c.version)
                )
                .mappings()
                .all()
            )
        return [version_from_row(row) for row in rows]

    def latest_version(self, name: str) -> ModelVersion:
        versions = self.list_versions(name)
        if not versions:
            raise NotFoundError(self._unknown_model_message(name))
        return versions[-1]

    def list_models(self) -> list[str]:
        with self._connection() as connection:
            names = (
                connection.execute(
                    sa.select(model_versions.c.name).distinct().order_by(model_versions.c.name)
                )
                .scalars()
                .all()
            )
        return list(names)

    def resolve(self, name: str, alias: str = PRODUCTION) -> ModelVersion:
        """The version an alias points at."""
        aliases = self.aliases(name)
        if alias not in aliases:
            if not aliases and not self.list_versions(name):
                raise NotFoundError(self._unknown_model_message(name))
            raise NotFoundError(
                f"model {name!r} has no alias {alias!r}; its aliases: {aliases or 'none'}"
            )
        return self.get_version(name, aliases[alias])

    def aliases(self, name: str) -> dict[str, int]:
        with self._connection() as connection:
            rows = connection.execute(
                sa.select(model_aliases.c.alias, model_aliases.c.version)
                .where(model_aliases.c.name == name)
                .order_by(model_aliases.c.alias)
            ).all()
        return {row.alias: int(row.version) for row in rows}

    def alias_history(self, name: str) -> list[AliasChange]:
        """Every alias change of ``name``, oldest first."""
        with self._connection() as connection:
            rows = (
                connection.execute(
                    sa.select(alias_history)
                    .where(alias_history.c.name == name)
                    .order_by(alias_history.c.id)
                )
                .mappings()
                .all()
            )
        return [change_from_row(row) for row in rows]

    # aliases -------------------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int, *, actor: str) -> None:
        """Point ``alias`` at ``version``; ``production`` also records ``deployed_at``."""
        check_name("alias", alias)
        if not actor.strip():
            raise InvalidInputError("actor must say who or what changes the alias")
        self.get_version(name, version)
        for attempt in range(_INSERT_ATTEMPTS):
            try:
                with self._transaction() as connection:
                    self._move_alias(connection, name, alias, version, actor, action="set")
                return
            except SqlIntegrityError:
                if attempt == _INSERT_ATTEMPTS - 1:
                    raise ConflictError(
                        f"alias {alias!r} of {name!r} is changing concurrently; try again"
                    ) from None

    def remove_alias(self, name: str, alias: str, *, actor: str) -> bool:
        """Remove ``alias`` (recorded in the alias history with action ``remove``); False when
        it was not set. ``production`` cannot be removed: serving always needs it."""
        check_name("alias", alias)
        if alias == PRODUCTION:
            raise InvalidInputError(
                f"the {PRODUCTION!r} alias cannot be removed; point it at another version"
            )
        if not actor.strip():
            raise InvalidInputError("actor must say who or what removes the alias")
        with self._transaction() as connection:
            current = connection.execute(
                sa.select(model_aliases.c.version).where(
                    model_aliases.c.name == name, model_aliases.c.alias == alias
                )
            ).scalar()
            if current is None:
                return False
            connection.execute(
                model_aliases.delete().where(
                    model_aliases.c.name == name, model_aliases.c.alias == alias
                )
            )
            connection.execute(
                alias_history.insert().values(
                    name=name,
                    alias=alias,
                    version=current,
                    previous_version=current,
                    action="remove",
                    actor=actor,
                    changed_at=datetime.now(UTC),
                )
            )
        return True

    def rollback(self, name: str, *, actor: str) -> ModelVersion:
        """Point ``production`` back at the version deployed before the current one."""
        if not actor.strip():
            raise InvalidInputError("actor must say who or what rolls back")
        with self._transaction() as connection:
            target = self._rollback_target(connection, name)
            self._move_alias(connection, name, PRODUCTION, target, actor, action="rollback")
        return self.get_version(name, target)

    def rollback_target(self, name: str) -> int:
        """The version :meth:`rollback` would point ``production`` at now (``NotFoundError``
        or ``ConflictError`` as it would raise)."""
        with self._connection() as connection:
            return self._rollback_target(connection, name)

    @staticmethod
    def _rollback_target(connection: Connection, name: str) -> int:
        rows = connection.execute(
            sa.select(alias_history.c.version, alias_history.c.action)
            .where(alias_history.c.name == name, alias_history.c.alias == PRODUCTION)
            .order_by(alias_history.c.id)
        ).all()
        stack: list[int] = []
        for row in rows:
            if row.action == "rollback" and stack:
                stack.pop()
            if not stack or stack[-1] != row.version:
                stack.append(int(row.version))
        if not stack:
            raise NotFoundError(f"model {name!r} has never been deployed to production")
        if len(stack) < 2:
            raise ConflictError(
                f"model {name!r} has no earlier production version to roll back to "
                f"(production is version {stack[-1]})"
            )
        return stack[-2]

    def _move_alias(
        self,
        connection: Connection,
        name: str,
        alias: str,
        version: int,
        actor: str,
        *,
        action: str,
    ) -> None:
        now = datetime.now(UTC)
        current = connection.execute(
            sa.select(model_aliases.c.version).where(
                model_aliases.c.name == name, model_aliases.c.alias == alias
            )
        ).scalar()
        if current == version:
            return
        if current is None:
            connection.execute(
                model_aliases.insert().values(
                    name=name, alias=alias, version=version, updated_at=now, actor=actor
                )
            )
        else:
            connection.execute(
                model_aliases.update()
                .where(model_aliases.c.name == name, model_aliases.c.alias == alias)
                .values(version=version, updated_at=now, actor=actor)
            )
        connection.execute(
            alias_history.insert().values(
                name=name,
                alias=alias,
                version=version,
                previous_version=current,
                action=action,
                actor=actor,
                changed_at=now,
            )
        )
        if alias == PRODUCTION:
            connection.execute(
                model_versions.update()
                .where(
                    model_versions.c.name == name,
                    model_versions.c.version == version,
                    model_versions.c.deployed_at.is_(None),
                )
                .values(deployed_at=now)
            )

    # loading -------------------------------------------------------------------------------

    def load_predictor(self, version: ModelVersion) -> Predictor:
        """The version's predictor, its files checked against the registered hashes.

        Files are downloaded to ``<cache_dir>/<name>/<version>`` and verified; a cached copy is
        verified too before use (and fetched again if it no longer matches). Loaded predictors
        are kept in memory by content hash (:mod:`driftloop.registry.loading`).
        """
        cached = self._predictors.loaded(version.content_hash)
        if cached is not None:
            return cached
        return self._predictors.load(
            version, self._digest(version), self.predictors.get(version.name)
        )

    def _digest(self, version: ModelVersion) -> ArtifactDigest:
        with self._connection() as connection:
            files = connection.execute(
                sa.select(model_versions.c.files).where(
                    model_versions.c.name == version.name,
                    model_versions.c.version == version.version,
                )
            ).scalar()
        if files is None:
            raise NotFoundError(f"model {version.name!r} has no version {version.version}")
        digest = ArtifactDigest.of_files(dict(files))
        if digest.content_hash != version.content_hash:
            raise IntegrityError(
                f"model {version.name} v{version.version}: the recorded files do not match its "
                "content hash"
            )
        return digest

    # internals -----------------------------------------------------------------------------

    def _hash_in_use(self, name: str, content_hash: str) -> bool:
        with self._connection() as connection:
            found = connection.execute(
                sa.select(model_versions.c.id)
                .where(model_versions.c.name == name, model_versions.c.content_hash == content_hash)
                .limit(1)
            ).first()
        return found is not None

    def _unknown_model_message(self, name: str) -> str:
        known = self.list_models()
        return f"no model named {name!r} in the registry; known: {known or 'none'}"

    def _transaction(self) -> AbstractContextManager[Connection]:
        return write_transaction(self.database)

    def _connection(self) -> AbstractContextManager[Connection]:
        return read_connection(self.database)

"""Loading a registered version's predictor: its files fetched from object storage into a local
cache, checked against the hashes recorded at registration, and the loaded predictors kept in
memory by content hash."""

from __future__ import annotations

import shutil
import threading
import uuid
from collections import OrderedDict
from pathlib import Path

from driftloop.errors import IntegrityError, NotFoundError
from driftloop.objectstore.storage import ObjectStorage, open_storage
from driftloop.predictors import Predictor, load_predictor
from driftloop.registry.artifacts import ArtifactDigest, verify_directory
from driftloop.registry.versions import ModelVersion

LOADED_PREDICTORS = 8


class PredictorCache:
    """Verified copies of version artifacts under ``<cache_dir>/<name>/<version>`` and the last
    :data:`LOADED_PREDICTORS` predictors loaded from them."""

    def __init__(self, storage: ObjectStorage, cache_dir: Path) -> None:
        self.storage = storage
        self.cache_dir = cache_dir
        self._loaded: OrderedDict[str, Predictor] = OrderedDict()
        self._lock = threading.Lock()

    def loaded(self, content_hash: str) -> Predictor | None:
        """The predictor already in memory for these files, if any."""
        with self._lock:
            cached = self._loaded.get(content_hash)
            if cached is not None:
                self._loaded.move_to_end(content_hash)
            return cached

    def load(
        self, version: ModelVersion, digest: ArtifactDigest, predictor_class: str | None
    ) -> Predictor:
        """Load the version from its verified local copy (fetched first when missing or no
        longer matching ``digest``), with ``predictor_class`` when the model configures one."""
        what = f"model {version.name} v{version.version} ({version.artifact_uri})"
        directory = self.cache_dir / version.name / str(version.version)
        ready = directory.is_dir()
        if ready:
            try:
                verify_directory(directory, digest, what=what)
            except IntegrityError:
                ready = False  # a damaged cache: fetch again from storage
        if not ready:
            self._download(version, digest, directory, what)
        predictor = load_predictor(directory, predictor_class)
        with self._lock:
            self._loaded[version.content_hash] = predictor
            while len(self._loaded) > LOADED_PREDICTORS:
                self._loaded.popitem(last=False)
        return predictor

    def _download(
        self, version: ModelVersion, digest: ArtifactDigest, directory: Path, what: str
    ) -> None:
        key = self.storage.key_of(version.artifact_uri)
        storage = self.storage if key is not None else open_storage(version.artifact_uri)
        directory.parent.mkdir(parents=True, exist_ok=True)
        temporary = directory.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            try:
                storage.get_dir(key or "", temporary)
            except NotFoundError as exc:
                raise IntegrityError(f"{what}: the artifact is missing from storage") from exc
            verify_directory(temporary, digest, what=what)
            if directory.exists():  # another process sharing the cache may have finished first
                try:
                    verify_directory(directory, digest, what=what)
                    return
                except (IntegrityError, OSError):
                    shutil.rmtree(directory, ignore_errors=True)
            try:
                temporary.rename(directory)
            except OSError:  # another process renamed its copy in between: use it if sound
                verify_directory(directory, digest, what=what)
        finally:
            if temporary.exists():
                shutil.rmtree(temporary, ignore_errors=True)

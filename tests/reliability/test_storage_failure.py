"""Registering a model while the artifact storage is full or read-only: a clear error (503
naming the storage and the OS error) and nothing half-registered: no version row, no alias
change, no artifact or temporary upload left in storage.

The storage is a real, tiny filesystem: a 4 MiB tmpfs mounted for the test (filled up for
"disk-full", remounted read-only for "read-only"; tests run as root, where ``chmod`` stops no
write). The "not-a-directory" case, which is also what the other two fall back to where mounting
is not permitted, puts a regular *file* where the models directory must go, so the upload fails
the same way (an ``OSError`` from the filesystem)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from driftloop.errors import BackendUnavailableError
from driftloop.objectstore.storage import TEMP_PREFIX
from driftloop.registry import ModelRegistry
from driftloop.registry.model_registry import MODELS_PREFIX
from driftloop.trainers.base import TrainingData
from driftloop.trainers.sklearn import SklearnParams, SklearnTrainer
from pipeline.world import SKLEARN_PARAMS, make_snapshots
from reliability.project import MODEL, ReliabilityProject

FAILURES: dict[str, str] = {}


@dataclass
class FailingStorage:
    """How the storage fails, and what it says."""

    mode: str
    """``disk full`` / ``read-only`` on tmpfs, or ``not a directory`` when mounting is denied."""
    root: Path
    errno_words: str


def _mount(*args: str) -> bool:
    result = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    return result.returncode == 0


@contextlib.contextmanager
def tiny_filesystem(directory: Path, *, mount: bool = True, size: str = "4m") -> Iterator[bool]:
    """A small tmpfs at ``directory``; yields False (and mounts nothing) when not permitted."""
    directory.mkdir(parents=True, exist_ok=True)
    mounted = (
        mount
        and os.geteuid() == 0
        and _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory))
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(root: Path) -> None:
    """Write until the filesystem says it is full."""
    with (root / "filler").open("wb", buffering=0) as filler:
        block = b"\0" * 65536
        with contextlib.suppress(OSError):
            while True:
                filler.write(block)
        with contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 512)


@dataclass
class Scenario:
    project: ReliabilityProject
    root: Path
    mode: str
    mounted: bool

    def break_storage(self) -> FailingStorage:
        """Make the storage fail from now on; what it will say."""
        if not self.mounted:  # a regular file where the models directory must go
            os.replace(self.root / MODELS_PREFIX, self.root / f"{MODELS_PREFIX}-kept")
            (self.root / MODELS_PREFIX).write_text("not a directory")
            return FailingStorage("not a directory", self.root, "Not a directory")
        if self.mode == "disk-full":
            fill(self.root)
            return FailingStorage("disk full", self.root, "No space left on device")
        assert _mount("-o", "remount,ro", str(self.root))
        return FailingStorage("read-only", self.root, "Read-only file system")


@pytest.fixture(params=["disk-full", "read-only", "not-a-directory"])
def scenario(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Scenario]:
    root = tmp_path / "storage"
    with tiny_filesystem(root, mount=request.param != "not-a-directory") as mounted:
        project = ReliabilityProject.create(tmp_path / "project", storage=f"file://{root}")
        yield Scenario(project, root, str(request.param), mounted)
        if mounted and request.param == "read-only":
            _mount("-o", "remount,rw", str(root))


def leftovers(root: Path) -> list[str]:
    """Temporary uploads anywhere under the storage root."""
    return sorted(str(p.relative_to(root)) for p in root.rglob(f"{TEMP_PREFIX}*"))


def test_registering_on_failing_storage_leaves_nothing_half_registered(scenario: Scenario) -> None:
    project = scenario.project
    registry: ModelRegistry = project.registry
    snapshot = project.push(make_snapshots(known_rows=400, seed=5).known)
    trained = SklearnTrainer(SklearnParams(**SKLEARN_PARAMS)).fit(
        TrainingData(
            project.datasets.load(snapshot),
            "text",
            "label",
            snapshot.snapshot_id,
            snapshot.content_hash,
        )
    )
    before_versions = [v.version for v in registry.list_versions(MODEL)]
    before_aliases = registry.aliases(MODEL)
    before_history = len(registry.alias_history(MODEL))
    failure = scenario.break_storage()
    before_leftovers = leftovers(failure.root)

    with pytest.raises(BackendUnavailableError) as raised:
        registry.register_trained(MODEL, trained, trainer="sklearn", snapshot=snapshot)

    message = raised.value.message
    FAILURES[failure.mode] = message
    assert raised.value.status_code == 503
    assert f"storage file://{failure.root}" in message
    assert failure.errno_words in message, message
    assert [v.version for v in registry.list_versions(MODEL)] == before_versions
    assert registry.aliases(MODEL) == before_aliases
    assert len(registry.alias_history(MODEL)) == before_history
    assert leftovers(failure.root) == before_leftovers
    if failure.mode != "not a directory":
        stored = {key.split("/")[2] for key in registry.storage.list(f"{MODELS_PREFIX}/{MODEL}")}
        assert stored == {v.content_hash for v in registry.list_versions(MODEL)}
        # production still loads (verified against its hashes) from the full/read-only storage
        production = registry.resolve(MODEL, "production")
        assert registry.load_predictor(production).predict_proba(["tasty"]).shape[0] == 1

"""The model registry: immutable, content-hashed model versions with aliases and rollback."""

from __future__ import annotations

from typing import TYPE_CHECKING

from driftloop._lazy import lazy_exports

if TYPE_CHECKING:
    from driftloop.registry.artifacts import ArtifactDigest, hash_directory, verify_directory
    from driftloop.registry.model_registry import ModelRegistry
    from driftloop.registry.versions import (
        CANDIDATE,
        PRODUCTION,
        AliasChange,
        ModelVersion,
        check_trigger,
    )

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "AliasChange": "driftloop.registry.versions",
        "ArtifactDigest": "driftloop.registry.artifacts",
        "CANDIDATE": "driftloop.registry.versions",
        "ModelRegistry": "driftloop.registry.model_registry",
        "ModelVersion": "driftloop.registry.versions",
        "PRODUCTION": "driftloop.registry.versions",
        "check_trigger": "driftloop.registry.versions",
        "hash_directory": "driftloop.registry.artifacts",
        "verify_directory": "driftloop.registry.artifacts",
    },
)

__all__ = [
    "CANDIDATE",
    "PRODUCTION",
    "AliasChange",
    "ArtifactDigest",
    "ModelRegistry",
    "ModelVersion",
    "check_trigger",
    "hash_directory",
    "verify_directory",
]

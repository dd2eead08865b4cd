"""The model registry: immutable, content-hashed model versions with aliases and rollback."""

from driftloop.registry.artifacts import ArtifactDigest, hash_directory, verify_directory
from driftloop.registry.model_registry import ModelRegistry
from driftloop.registry.versions import (
    CANDIDATE,
    PRODUCTION,
    AliasChange,
    ModelVersion,
    check_trigger,
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

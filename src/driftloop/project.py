"""Creating a project directory: ``driftloop init``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from driftloop.config import CONFIG_FILENAME
from driftloop.errors import ConflictError


def default_config_text() -> str:
    """The commented ``driftloop.yaml`` that ``driftloop init`` writes."""
    return resources.files("driftloop.templates").joinpath("driftloop.yaml").read_text()


def init_project(directory: Path, *, force: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / CONFIG_FILENAME
    if target.exists() and not force:
        raise ConflictError(f"{target} already exists; pass --force to overwrite it")
    target.write_text(default_config_text())
    return target

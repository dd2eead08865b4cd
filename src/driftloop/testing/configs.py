"""A configuration for tests, validated like a ``driftloop.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from driftloop.config import Config


def make_config(base_dir: Path | None = None, /, **sections: Any) -> Config:
    """The :class:`Config` a ``driftloop.yaml`` with these top-level ``sections`` would give.

    With ``base_dir``, the store is a SQLite file there (unless ``sections`` name another) and
    relative paths resolve against it; without, the defaults apply (the store in the working
    directory), as for an in-memory check of a section."""
    document: dict[str, Any] = {}
    if base_dir is not None:
        document.update(store=f"sqlite:///{base_dir}/driftloop.db", base_dir=base_dir)
    document.update(sections)
    return Config.model_validate(document)

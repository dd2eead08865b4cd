"""Lazy re-exports for package ``__init__`` modules: a name is imported from its module on first
use, so importing a package (for one light name, or for its ``tables`` module) does not import
the heavy modules its other names live in (pandas, fastapi, ...)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``names`` maps each exported name to
    the module that defines it."""

    def get_attribute(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def list_attributes() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return get_attribute, list_attributes

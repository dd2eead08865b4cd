"""Backends chosen by URL scheme: one small registry per family (store, storage, transport).

A family maps each scheme to a factory given as ``"module:attribute"`` plus the optional extra
it needs, so a heavy client (confluent-kafka, psycopg, s3fs) is imported only when its URL is
used, and a missing one fails with the exact ``pip install`` line.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import urlsplit

from driftloop.errors import MissingExtraError, UnknownBackendError

T = TypeVar("T")


def url_scheme(url: str) -> str:
    """The scheme of a backend URL; ``postgresql+psycopg://`` counts as ``postgresql+psycopg``."""
    scheme = urlsplit(url).scheme
    if not scheme or "://" not in url:
        raise UnknownBackendError(f"{url!r} is not a URL: expected SCHEME://...")
    return scheme


def require_module(module: str, extra: str) -> object:
    """Import an optional dependency, or fail with the install line for its extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"this feature needs the optional package {module!r}: "
            f"pip install 'driftloop[{extra}]'"
        ) from exc


@dataclass(frozen=True)
class BackendEntry:
    target: str
    requires: tuple[str, ...] = ()
    extra: str | None = None


@dataclass
class BackendFamily(Generic[T]):
    """Scheme → factory registry of one family; factories take the URL and return a backend."""

    family: str
    entries: dict[str, BackendEntry] = field(default_factory=dict)

    def register(
        self, scheme: str, target: str, *, requires: tuple[str, ...] = (), extra: str | None = None
    ) -> None:
        self.entries[scheme] = BackendEntry(target, requires, extra)

    def known_schemes(self) -> list[str]:
        return sorted(self.entries)

    def factory(self, url: str) -> Callable[..., T]:
        scheme = url_scheme(url)
        entry = self.entries.get(scheme)
        if entry is None:
            known = ", ".join(f"{s}://" for s in self.known_schemes())
            raise UnknownBackendError(
                f"unknown {self.family} scheme {scheme!r} in {url!r}; known schemes: {known}"
            )
        for module in entry.requires:
            require_module(module, entry.extra or "all")
        module_name, _, attribute = entry.target.partition(":")
        factory: Callable[..., T] = getattr(importlib.import_module(module_name), attribute)
        return factory

    def create(self, url: str, *args: object, **kwargs: object) -> T:
        return self.factory(url)(url, *args, **kwargs)

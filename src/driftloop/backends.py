"""The one plug-in registry: every pluggable family (stores, object storage, transports,
trainers, predictors, notifiers, drift detectors) is a :class:`PluginFamily`.

A family maps a name to a target given as ``"module:attribute"`` plus the optional extra it
needs, so a heavy client (confluent-kafka, psycopg, s3fs, torch) is imported only when its name
is used and a missing one fails with the exact ``pip install`` line. Names the family does not
build in are looked up, lazily and only then, in the family's entry-point group
(``driftloop.trainers``, ``driftloop.notifiers`` ...), so an installed third-party package
adds plug-ins without touching driftloop. Loading one runs that package's code: installing the
package is the admin's decision, like any other dependency; a request never names a plug-in.

An unknown name fails with every known name (built in and installed) and how to add one.
:class:`BackendFamily` is the family of backends chosen by URL scheme (``kafka://...``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar, cast
from urllib.parse import urlsplit

from driftloop.errors import ConfigError, MissingExtraError, UnknownBackendError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

T = TypeVar("T")

ENTRY_POINT_PREFIX = "driftloop."


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
            f"this feature needs the optional package {module!r}: pip install 'driftloop[{extra}]'"
        ) from exc


def installed_plugins(group: str) -> dict[str, EntryPoint]:
    """The entry points of ``group`` that installed packages declare, by name; reading them
    imports nothing."""
    from importlib.metadata import entry_points  # 0.1 s: only when a name is not built in

    return {ep.name: ep for ep in entry_points(group=group)}


@dataclass(frozen=True)
class BackendEntry:
    target: str
    requires: tuple[str, ...] = ()
    extra: str | None = None


@dataclass
class PluginFamily(Generic[T]):
    """Name → plug-in of one family: the built-ins registered here, third-party ones found in
    the entry-point group ``group`` (``driftloop.<family>s`` unless given)."""

    family: str
    group: str = ""
    entries: dict[str, BackendEntry] = field(default_factory=dict)
    noun: str = "name"

    def __post_init__(self) -> None:
        self.group = self.group or f"{ENTRY_POINT_PREFIX}{self.family}s"

    def register(
        self, name: str, target: str, *, requires: tuple[str, ...] = (), extra: str | None = None
    ) -> None:
        self.entries[name] = BackendEntry(target, requires, extra)

    def builtin_names(self) -> list[str]:
        return sorted(self.entries)

    def known_names(self) -> list[str]:
        """Built-in names and those installed packages declare in the entry-point group."""
        return sorted(set(self.entries) | set(installed_plugins(self.group)))

    def unknown(self, name: str, context: str = "") -> UnknownBackendError:
        """The error for a name nothing registers: the known names and how to add one."""
        known = ", ".join(self.known_names()) or "none"
        where = f" in {context}" if context else ""
        return UnknownBackendError(
            f"unknown {self.family} {self.noun} {name!r}{where}; known: {known}; "
            f"install a package that provides it (pip install PACKAGE; it declares "
            f"the entry point group {self.group!r})"
        )

    def load(self, name: str, context: str = "") -> T:
        """The plug-in registered as ``name``: built in, else from an installed package."""
        entry = self.entries.get(name)
        if entry is not None:
            return self._load_builtin(name, entry)
        plugin = installed_plugins(self.group).get(name)
        if plugin is None:
            raise self.unknown(name, context)
        try:
            return cast(T, plugin.load())
        except ImportError as exc:
            raise MissingExtraError(
                f"the {self.family} plug-in {name!r} ({plugin.value}, entry point group "
                f"{self.group!r}) cannot be imported: {exc}; reinstall the package that "
                "provides it"
            ) from exc
        except AttributeError as exc:
            raise ConfigError(
                f"the {self.family} plug-in {name!r} points at {plugin.value}, which does not "
                f"exist: {exc}"
            ) from exc

    def _load_builtin(self, name: str, entry: BackendEntry) -> T:
        for module in entry.requires:
            require_module(module, entry.extra or "all")
        module_name, _, attribute = entry.target.partition(":")
        try:
            loaded = importlib.import_module(module_name)
        except ImportError as exc:
            if entry.extra is None:
                raise
            raise MissingExtraError(
                f"the {name!r} {self.family} needs {exc.name or 'an optional package'}: "
                f"pip install 'driftloop[{entry.extra}]'"
            ) from exc
        return cast(T, getattr(loaded, attribute))


@dataclass
class BackendFamily(PluginFamily[Callable[..., T]]):
    """Scheme → factory of one family; factories take the URL and return a backend."""

    noun: str = "scheme"

    def known_schemes(self) -> list[str]:
        return self.known_names()

    def unknown(self, name: str, context: str = "") -> UnknownBackendError:
        known = ", ".join(f"{s}://" for s in self.known_schemes())
        return UnknownBackendError(
            f"unknown {self.family} scheme {name!r} in {context!r}; known schemes: {known}; "
            f"others come from installed packages (pip install PACKAGE; it declares the entry "
            f"point group {self.group!r})"
        )

    def factory(self, url: str) -> Callable[..., T]:
        return self.load(url_scheme(url), url)

    def create(self, url: str, *args: object, **kwargs: object) -> T:
        return self.factory(url)(url, *args, **kwargs)

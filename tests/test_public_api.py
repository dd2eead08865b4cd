"""The curated public API: ``driftloop.__all__`` is sorted and complete."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

import driftloop

SOURCE = Path(driftloop.__file__).parent


def test_all_is_sorted() -> None:
    assert driftloop.__all__ == sorted(driftloop.__all__)


def test_every_name_in_all_is_driftloops_own() -> None:
    """Each exported class or function is defined in driftloop (not a third-party object
    re-exported by accident), under the name it is exported as."""
    for name in driftloop.__all__:
        value = getattr(driftloop, name)
        if isinstance(value, type | types.FunctionType):
            assert value.__module__.startswith("driftloop."), (name, value.__module__)
            assert value.__name__ == name, (name, value.__name__)


def test_all_is_complete() -> None:
    """In a fresh interpreter, before any name is looked up: ``__all__`` is exactly the public
    names ``import driftloop`` binds plus the lazily exported ones (``_LAZY``), and every name
    in it resolves."""
    code = (
        "import json, types, driftloop as d; print(json.dumps(["
        "[n for n, v in vars(d).items() if not n.startswith('_') "
        "and not isinstance(v, types.ModuleType)], sorted(d._LAZY), d.__all__]))"
    )
    eager, lazy, exported = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )
    eager_public = set(eager) - {"annotations", "TYPE_CHECKING", "Any", "importlib"}
    assert not set(lazy) & eager_public, "a name is both imported and lazily exported"
    assert eager_public | set(lazy) | {"__version__"} == set(exported), (
        f"missing from __all__: {(eager_public | set(lazy)) - set(exported)}; "
        f"in __all__ but never bound: {set(exported) - eager_public - set(lazy) - {'__version__'}}"
    )
    for name in exported:
        getattr(driftloop, name)


def test_sdk_import_stays_light() -> None:
    code = (
        "import sys, driftloop; from driftloop import report_insights; "
        "print(','.join(m for m in ('fastapi', 'sklearn', 'uvicorn') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""


def lazy_exports_of(init: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The lazily exported names of a package's ``__init__.py`` (name -> module: the ``_LAZY``
    dict or the dict given to ``lazy_exports``) and what it imports under ``TYPE_CHECKING``
    (name -> module), read from its source."""
    tree = ast.parse(init.read_text())
    lazy: dict[str, str] = {}
    for node in ast.walk(tree):
        found: ast.expr | None = None
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets
        ):
            found = node.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "lazy_exports"
            and len(node.args) == 2
        ):
            found = node.args[1]
        if isinstance(found, ast.Dict):
            lazy.update(
                {
                    ast.literal_eval(k): ast.literal_eval(v)
                    for k, v in zip(found.keys, found.values, strict=True)
                    if k is not None
                }
            )
    typed: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom) and statement.module:
                    typed.update(
                        {alias.asname or alias.name: statement.module for alias in statement.names}
                    )
    return lazy, typed


LAZY_PACKAGES = sorted(
    ".".join(init.parent.relative_to(SOURCE.parent).parts)
    for init in SOURCE.rglob("__init__.py")
    if lazy_exports_of(init)[0]
)


@pytest.fixture(scope="module")
def fresh_dirs() -> dict[str, list[str]]:
    """``dir()`` of every lazily exporting package in a fresh interpreter (no name looked up
    yet), one interpreter for all of them."""
    code = (
        "import importlib, json, sys; print(json.dumps({p: dir(importlib.import_module(p)) "
        "for p in sys.argv[1:]}))"
    )
    listed: dict[str, list[str]] = json.loads(
        subprocess.run(
            [sys.executable, "-c", code, *LAZY_PACKAGES], capture_output=True, text=True, check=True
        ).stdout
    )
    return listed


def test_the_lazy_packages_are_found() -> None:
    assert {"driftloop", "driftloop.drift", "driftloop.objectstore"} <= set(LAZY_PACKAGES)


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_lazily_exported_names_are_the_typed_ones_and_resolve_to_their_module(
    package: str, fresh_dirs: dict[str, list[str]]
) -> None:
    """Each lazily exported name is in ``__all__``; what type checkers are told under
    ``TYPE_CHECKING`` is exactly the lazy map (so they see what run time gives); a name
    resolves to the very object its module defines, and ``dir()`` lists it before first use."""
    init = SOURCE.parent.joinpath(*package.split("."), "__init__.py")
    lazy, typed = lazy_exports_of(init)
    listed = fresh_dirs[package]
    module = importlib.import_module(package)
    assert set(lazy) <= set(module.__all__), (
        f"lazily exported, not in __all__: {set(lazy) - set(module.__all__)}"
    )
    assert typed == lazy, (
        f"TYPE_CHECKING imports differ from the lazy map: {set(typed.items()) ^ set(lazy.items())}"
    )
    for name, defining_module in lazy.items():
        assert getattr(module, name) is getattr(importlib.import_module(defining_module), name)
    if package != "driftloop":  # the top level defines __getattr__ only
        assert set(module.__all__) <= set(listed), set(module.__all__) - set(listed)


def test_package_tables_import_without_the_server_modules() -> None:
    code = (
        "import sys; from driftloop.database.core import import_table_modules; "
        "import_table_modules(); "
        "print(','.join(m for m in ('fastapi', 'pandas', 'sklearn', 'scipy', 'slack_sdk') "
        "if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""

"""The curated public API: ``driftloop.__all__`` is sorted and complete."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import driftloop


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
    module = importlib.reload(driftloop)
    lazy = set(module._LAZY)
    missing = lazy - set(module.__all__)
    assert not missing, f"lazily exported but not in __all__: {missing}"
    for name in module.__all__:
        getattr(module, name)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
        and name not in {"annotations", "TYPE_CHECKING", "Any"}
    }
    assert public | {"__version__"} == set(module.__all__)


def test_sdk_import_stays_light() -> None:
    code = ("import sys, driftloop; from driftloop import report_insights; "
            "print(','.join(m for m in ('fastapi', 'sklearn', 'uvicorn') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == ""


def test_lazily_exporting_packages_resolve_every_name() -> None:
    for package in ("driftloop.registry", "driftloop.notify", "driftloop.serving",
                    "driftloop.storage", "driftloop.drift"):
        module = importlib.import_module(package)
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{package}.{name}"
        assert set(module.__all__) <= set(dir(module))


def test_package_tables_import_without_the_server_modules() -> None:
    code = ("import sys; from driftloop.store.database import import_table_modules; "
            "import_table_modules(); "
            "print(','.join(m for m in ('fastapi', 'pandas', 'sklearn', 'scipy', 'slack_sdk') "
            "if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == ""

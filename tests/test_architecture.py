"""The dependency direction of docs/architecture.md, enforced on the source.

Every module under ``src/driftloop/<package>/`` is parsed (``ast``) and its imports, including
those inside functions, under ``if TYPE_CHECKING:`` and ``importlib.import_module("...")``
calls with a literal name, are checked against the rules below. A violation is reported with
its file, line and import, so the fix is to move the code, not to loosen the rule.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "driftloop"

# One insight point travels serving → insights → transport → metrics → monitors → notify →
# pipeline, with no way back; the CLI and the system wiring sit on top of everything.
DOWNSTREAM_OF_METRICS = ("driftloop.monitors", "driftloop.notify", "driftloop.pipeline")
TOP = ("driftloop.cli", "driftloop.system", "driftloop.demo", "driftloop.dashboard")
SERVER_LIBRARIES = ("fastapi", "starlette", "uvicorn")
TRAINING_LIBRARIES = ("sklearn", "torch", "transformers", "papermill", "nbformat")


@dataclass(frozen=True)
class ImportRule:
    """Modules of ``package`` must not import anything under ``forbidden`` (a module or a
    package prefix) except what lies under ``allowed``."""

    package: str
    forbidden: tuple[str, ...]
    reason: str
    allowed: tuple[str, ...] = ()


RULES: tuple[ImportRule, ...] = (
    ImportRule(
        "drift",
        ("driftloop.store", "driftloop.metrics", "driftloop.monitors", "driftloop.serving",
         "driftloop.insights", "driftloop.registry", "driftloop.storage", "driftloop.notify",
         "driftloop.pipeline", *TOP, "sqlalchemy", *SERVER_LIBRARIES),
        "drift/ is pure numerics: no store, no server",
    ),
    ImportRule(
        "metrics",
        ("driftloop.insights", "driftloop.serving", *DOWNSTREAM_OF_METRICS, *TOP),
        "metrics/ knows no monitor (and nothing upstream of it)",
    ),
    ImportRule(
        "insights",
        ("driftloop.serving", *DOWNSTREAM_OF_METRICS, *TOP),
        "insights/ feeds the metric store and knows nothing downstream of it",
    ),
    ImportRule(
        "monitors",
        ("driftloop.notify", "driftloop.pipeline", "driftloop.serving", "driftloop.insights",
         *TOP),
        "monitors/ emit events; they do not know who is notified or what retrains",
    ),
    ImportRule(
        "registry",
        ("driftloop.serving", *TOP, *SERVER_LIBRARIES),
        "registry/ knows no server",
    ),
    ImportRule(
        "serving",
        ("driftloop.trainers", "driftloop.pipeline", *TOP, *TRAINING_LIBRARIES),
        "serving/ never imports training code (only the Predictor contract, driftloop.predictors)",
    ),
    ImportRule(
        "predictors",
        ("driftloop.trainers", "driftloop.serving", "driftloop.registry", "driftloop.store",
         "driftloop.pipeline", *TOP, *TRAINING_LIBRARIES, *SERVER_LIBRARIES),
        "predictors/ is the model contract: no trainer, no server, no store",
    ),
    ImportRule(
        "cli",
        ("sqlalchemy", "sqlite3", "psycopg"),
        "the CLI only parses arguments and calls the library: no SQL in it",
    ),
    *(
        ImportRule(package, ("driftloop.cli",), "no library code imports the CLI")
        for package in ("backends", "config", "errors", "project", "scaffold", "system",
                        "dashboard", "demo", "drift", "insights", "metrics", "monitors",
                        "notify", "pipeline", "registry", "serving", "storage", "store",
                        "templates", "testing", "trainers")
    ),
)


@dataclass(frozen=True)
class ImportSite:
    file: Path
    line: int
    module: str      # absolute dotted name, e.g. "driftloop.store.database"

    def __str__(self) -> str:
        return f"{self.file.relative_to(SOURCE.parent)}:{self.line}: imports {self.module}"


def module_name(path: Path, root: Path = SOURCE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = SOURCE) -> Iterator[ImportSite]:
    """Every module a file imports, relative imports resolved to absolute names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    own = module_name(path, root)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield ImportSite(path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                # ``from driftloop import store`` imports driftloop.store; ``from x import Y``
                # is judged by x.Y, which lies under x.
                yield ImportSite(path, node.lineno, f"{module}.{alias.name}")
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if name in {"import_module", "__import__"} and isinstance(first, ast.Constant) \
                    and isinstance(first.value, str):
                yield ImportSite(path, node.lineno, first.value)


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(rule: ImportRule, root: Path = SOURCE) -> list[ImportSite]:
    target = root / rule.package
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target.with_suffix(".py")]
    found: list[ImportSite] = []
    for file in files:
        for site in imports_of(file, root):
            if any(_under(site.module, p) for p in rule.forbidden) and not any(
                _under(site.module, a) for a in rule.allowed
            ):
                found.append(site)
    return found


def test_every_rule_names_an_existing_part() -> None:
    for rule in RULES:
        assert (SOURCE / rule.package).is_dir() or (SOURCE / f"{rule.package}.py").is_file(), (
            f"rule for missing package driftloop.{rule.package}"
        )


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.package}-{r.forbidden[0]}")
def test_dependency_direction(rule: ImportRule) -> None:
    found = violations(rule)
    assert not found, f"{rule.reason}:\n" + "\n".join(f"  {site}" for site in found)


def test_the_checker_finds_every_kind_of_import(tmp_path: Path) -> None:
    """Without this, a checker that parses nothing would pass every rule."""
    root = tmp_path / "driftloop"
    (root / "drift").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "drift" / "__init__.py").write_text("from . import numbers\n")
    (root / "drift" / "bad.py").write_text(
        "from __future__ import annotations\n"
        "import importlib\n"
        "from typing import TYPE_CHECKING\n"
        "from ..store import database\n"
        "from driftloop import metrics\n"
        "if TYPE_CHECKING:\n"
        "    from driftloop.serving.app import create_app\n"
        "def later() -> None:\n"
        "    import sqlalchemy\n"
        "    importlib.import_module('driftloop.monitors.engine')\n"
        "from driftloop.trainers.base import Predictor\n"
    )
    rule = next(r for r in RULES if r.package == "drift")
    found = {(site.line, site.module) for site in violations(rule, root)}
    assert found == {
        (4, "driftloop.store.database"),
        (5, "driftloop.metrics"),
        (7, "driftloop.serving.app.create_app"),
        (9, "sqlalchemy"),
        (10, "driftloop.monitors.engine"),
    }
    serving = next(r for r in RULES if r.package == "serving")
    assert any(_under("driftloop.trainers.base", p) for p in serving.forbidden)
    assert not any(_under("driftloop.predictors", p) for p in serving.forbidden)


def test_serving_loads_no_training_code() -> None:
    """The rule on the import graph as Python really loads it, not only on direct imports."""
    code = (
        "import sys, driftloop.serving.app, driftloop.serving.server\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                            text=True, timeout=60).stdout.split()
    training = [m for m in loaded
                if _under(m, "driftloop.trainers")
                or _under(m, "driftloop.pipeline")
                or any(_under(m, lib) for lib in TRAINING_LIBRARIES)]
    assert not training, f"importing driftloop.serving loads training code: {training}"

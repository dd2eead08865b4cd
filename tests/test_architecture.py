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
# The core every part may use: the configuration model reads only these, never a feature.
CORE = (
    "driftloop.config",
    "driftloop.errors",
    "driftloop.backends",
    "driftloop.messages",
    "driftloop.redaction",
    "driftloop._version",
)


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
        (
            "driftloop.database",
            "driftloop.metrics",
            "driftloop.monitors",
            "driftloop.serving",
            "driftloop.insights",
            "driftloop.registry",
            "driftloop.objectstore",
            "driftloop.notify",
            "driftloop.pipeline",
            *TOP,
            "sqlalchemy",
            *SERVER_LIBRARIES,
        ),
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
        ("driftloop.notify", "driftloop.pipeline", "driftloop.serving", "driftloop.insights", *TOP),
        "monitors/ emit events; they do not know who is notified or what retrains",
    ),
    ImportRule(
        "client",
        ("driftloop", "sqlalchemy", "numpy", "pandas", *SERVER_LIBRARIES, *TRAINING_LIBRARIES),
        "the HTTP client is what another service installs: httpx and driftloop's errors only",
        allowed=("driftloop.client", "driftloop.errors"),
    ),
    ImportRule(
        "registry",
        (
            "driftloop.serving",
            "driftloop.trainers",
            "driftloop.pipeline",
            *TOP,
            *SERVER_LIBRARIES,
            *TRAINING_LIBRARIES,
        ),
        "registry/ knows no server and no training code: trainers/ use the registry, never "
        "the reverse",
    ),
    ImportRule(
        "trainers",
        (
            "driftloop.serving",
            "driftloop.pipeline",
            "driftloop.monitors",
            "driftloop.notify",
            "driftloop.insights",
            *TOP,
            *SERVER_LIBRARIES,
        ),
        "trainers/ turn data into models and register them; they know no server, monitor or "
        "pipeline",
    ),
    *(
        ImportRule(
            core,
            ("driftloop",),
            "the core (config, errors, plug-in registry, message "
            "templates, secret masking) imports no feature package",
            allowed=CORE,
        )
        for core in ("config", "errors", "backends", "messages", "redaction")
    ),
    ImportRule(
        "serving",
        ("driftloop.trainers", "driftloop.pipeline", *TOP, *TRAINING_LIBRARIES),
        "serving/ never imports training code (only the Predictor contract, driftloop.predictors)",
    ),
    ImportRule(
        "predictors",
        (
            "driftloop.trainers",
            "driftloop.serving",
            "driftloop.registry",
            "driftloop.database",
            "driftloop.pipeline",
            *TOP,
            *TRAINING_LIBRARIES,
            *SERVER_LIBRARIES,
        ),
        "predictors/ is the model contract: no trainer, no server, no store",
    ),
    ImportRule(
        "cli",
        ("sqlalchemy", "sqlite3", "psycopg"),
        "the CLI only parses arguments and calls the library: no SQL in it",
    ),
    *(
        ImportRule(package, ("driftloop.cli",), "no library code imports the CLI")
        for package in (
            "backends",
            "config",
            "errors",
            "messages",
            "project",
            "redaction",
            "scaffold",
            "system",
            "dashboard",
            "demo",
            "drift",
            "insights",
            "metrics",
            "monitors",
            "notify",
            "pipeline",
            "registry",
            "serving",
            "objectstore",
            "database",
            "templates",
            "testing",
            "trainers",
        )
    ),
)


@dataclass(frozen=True)
class ImportSite:
    file: Path
    line: int
    module: str  # absolute dotted name, e.g. "driftloop.database.core"

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
                # ``from driftloop import store`` imports driftloop.database; ``from x import Y``
                # is judged by x.Y, which lies under x.
                yield ImportSite(path, node.lineno, f"{module}.{alias.name}")
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if (
                name in {"import_module", "__import__"}
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
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
        "from ..database import core\n"
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
        (4, "driftloop.database.core"),
        (5, "driftloop.metrics"),
        (7, "driftloop.serving.app.create_app"),
        (9, "sqlalchemy"),
        (10, "driftloop.monitors.engine"),
    }
    serving = next(r for r in RULES if r.package == "serving")
    assert any(_under("driftloop.trainers.base", p) for p in serving.forbidden)
    assert not any(_under("driftloop.predictors", p) for p in serving.forbidden)


def test_the_new_rules_catch_their_violations(tmp_path: Path) -> None:
    """registry/ importing trainers/, and config.py importing a feature package, are found;
    the core config.py may use is not."""
    root = tmp_path / "driftloop"
    (root / "registry").mkdir(parents=True)
    (root / "registry" / "model_registry.py").write_text(
        "from driftloop.trainers.base import TrainedModel\n"
        "from driftloop.predictors.trained import TrainedModel as Fine\n"
    )
    (root / "config.py").write_text(
        "from driftloop.errors import ConfigError\n"
        "from driftloop.messages import MessageTemplate\n"
        "def check() -> None:\n"
        "    from driftloop.monitors.templates import MessageTemplate\n"
        "from . import system\n"
    )
    registry_rules = [r for r in RULES if r.package == "registry"]
    assert {(s.line, s.module) for r in registry_rules for s in violations(r, root)} == {
        (1, "driftloop.trainers.base.TrainedModel")
    }
    config_rules = [r for r in RULES if r.package == "config"]
    assert {(s.line, s.module) for r in config_rules for s in violations(r, root)} == {
        (4, "driftloop.monitors.templates.MessageTemplate"),
        (5, "driftloop.system"),
    }


def part_of(module: str) -> str | None:
    """The part of driftloop a module belongs to: ``driftloop.notify.router`` → ``notify``,
    ``driftloop.config`` → ``config``; ``None`` outside driftloop or for the package root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "driftloop" else None


def import_graph(root: Path = SOURCE) -> dict[str, dict[str, ImportSite]]:
    """Part → part it imports → one import that says so (every kind of import counts)."""
    graph: dict[str, dict[str, ImportSite]] = {}
    for file in sorted(root.rglob("*.py")):
        relative = file.relative_to(root).parts
        if relative == ("__init__.py",):
            continue  # the public facade re-exports every part
        source = relative[0].removesuffix(".py")
        for site in imports_of(file, root):
            target = part_of(site.module)
            if target is not None and target != source:
                graph.setdefault(source, {}).setdefault(target, site)
    return graph


def cycles(graph: dict[str, dict[str, ImportSite]]) -> list[list[str]]:
    """The strongly connected groups of more than one part (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group: list[str] = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_part_of_driftloop_imports_itself_back() -> None:
    """No cycle between the parts of the package (sub-packages and top-level modules), with
    imports inside functions and under TYPE_CHECKING counted: each part can be read alone."""
    graph = import_graph()
    found = cycles(graph)
    described = [
        " -> ".join(group)
        + "\n"
        + "\n".join(f"    {graph[a][b]}" for a in group for b in group if b in graph.get(a, {}))
        for group in found
    ]
    assert not found, "import cycles between parts:\n" + "\n".join(described)


def test_the_cycle_check_finds_a_cycle(tmp_path: Path) -> None:
    root = tmp_path / "driftloop"
    for part in ("trainers", "registry", "drift"):
        (root / part).mkdir(parents=True)
    (root / "__init__.py").write_text("from driftloop import trainers, registry\n")
    (root / "trainers" / "training.py").write_text("from driftloop.registry import Registry\n")
    (root / "registry" / "store.py").write_text(
        "def later() -> None:\n    from ..trainers.base import TrainedModel\n"
    )
    (root / "drift" / "base.py").write_text("import driftloop.config\n")
    (root / "config.py").write_text("from driftloop.errors import ConfigError\n")
    graph = import_graph(root)
    assert cycles(graph) == [["registry", "trainers"]]
    site = graph["registry"]["trainers"]
    assert (site.file, site.line, site.module) == (
        root / "registry" / "store.py",
        2,
        "driftloop.trainers.base.TrainedModel",
    )


def test_serving_loads_no_training_code() -> None:
    """The rule on the import graph as Python really loads it, not only on direct imports."""
    code = (
        "import sys, driftloop.serving.app, driftloop.serving.server\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    ).stdout.split()
    training = [
        m
        for m in loaded
        if _under(m, "driftloop.trainers")
        or _under(m, "driftloop.pipeline")
        or any(_under(m, lib) for lib in TRAINING_LIBRARIES)
    ]
    assert not training, f"importing driftloop.serving loads training code: {training}"

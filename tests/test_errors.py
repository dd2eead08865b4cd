"""The one exception tree: every error class of driftloop lives in ``driftloop.errors``, drawn in
its docstring, with the HTTP status the server answers it with (#23 part 4)."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from driftloop import errors

SOURCE = Path(errors.__file__).parent


def test_no_error_class_is_defined_outside_errors_py() -> None:
    """A public ``...Error`` class elsewhere would be a second place to look (and one the server's
    boundary and the client may not know). Private control-flow signals (``_...Error``) and the
    conformance checks' assertion failures are not driftloop errors."""
    strays = []
    for path in sorted(SOURCE.rglob("*.py")):
        if path == Path(errors.__file__):
            continue
        text = path.read_text()
        if not re.search(r"(?m)^\s*class \w+Error\b", text):
            continue
        for node in ast.walk(ast.parse(text, filename=str(path))):
            if (
                isinstance(node, ast.ClassDef)
                and node.name.endswith("Error")
                and not node.name.startswith("_")
                and not any(
                    isinstance(base, ast.Name) and base.id == "AssertionError"
                    for base in node.bases
                )
            ):
                strays.append(f"{path.relative_to(SOURCE.parent)}:{node.lineno}: {node.name}")
    assert not strays, (
        "define these in driftloop/errors.py (re-export them where they were): " + ", ".join(strays)
    )


def test_every_error_class_is_in_the_drawn_tree_with_its_status() -> None:
    classes = [
        value
        for value in vars(errors).values()
        if inspect.isclass(value) and issubclass(value, errors.DriftloopError)
    ]
    tree = errors.__doc__ or ""
    for error in classes:
        assert f"{error.__name__} ({error.status_code})" in tree, error.__name__
        assert 400 <= error.status_code <= 599, error.__name__

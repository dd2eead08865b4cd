"""Reading a GitHub Actions workflow the way GitHub does, for the template tests: YAML with
``on`` as a key (not YAML 1.1's ``true``), GitHub's JSON schema for workflow files, and a small
evaluator for the ``${{ }}`` expressions the template uses."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import yaml

BOOL_TAG = "tag:yaml.org,2002:bool"


class WorkflowLoader(yaml.SafeLoader):
    """YAML 1.2 booleans only (``true``/``false``), as GitHub's parser reads them."""


WorkflowLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
WorkflowLoader.add_implicit_resolver(
    BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_workflow(text: str) -> dict[str, Any]:
    data = yaml.load(text, Loader=WorkflowLoader)  # noqa: S506 (a SafeLoader subclass)
    assert isinstance(data, dict)
    return data


def github_workflow_schema() -> dict[str, Any]:
    """SchemaStore's schema of GitHub workflow files, as vendored by check-jsonschema."""
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendor.joinpath("github-workflows.json").read_text())
    return schema


# GitHub's documented structure of the parts driftloop relies on, stricter than the schema:
# https://docs.github.com/actions/writing-workflows/workflow-syntax-for-github-actions
DISPATCH_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["description", "required", "type"],
    "additionalProperties": False,
    "properties": {
        "description": {"type": "string", "minLength": 1},
        "required": {"type": "boolean"},
        "type": {"enum": ["string", "boolean", "choice", "number", "environment"]},
        "default": {"type": ["string", "boolean", "number"]},
        "options": {"type": "array", "items": {"type": "string"}},
    },
}
STEP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "oneOf": [{"required": ["uses"]}, {"required": ["run"]}],
    "not": {"required": ["uses", "run"]},
    "properties": {
        "id": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_-]*$"},
        "name": {"type": "string"},
        "if": {"type": ["string", "boolean"]},
        "uses": {
            "type": "string",
            "pattern": r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[A-Za-z0-9_.-]+$",
        },
        "run": {"type": "string", "minLength": 1},
        "with": {
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
        "env": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}
WORKFLOW_STRUCTURE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["on", "jobs"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "run-name": {"type": "string"},
        "on": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "push": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "branches": {"type": "array", "items": {"type": "string"}},
                        "paths": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "workflow_dispatch": {
                    "type": "object",
                    "required": ["inputs"],
                    "additionalProperties": False,
                    "properties": {
                        "inputs": {
                            "type": "object",
                            "maxProperties": 25,
                            "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_-]*$"},
                            "additionalProperties": DISPATCH_INPUT_SCHEMA,
                        }
                    },
                },
            },
        },
        "permissions": {"type": "object"},
        "concurrency": {"type": "object", "required": ["group"]},
        "env": {"type": "object"},
        "jobs": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_-]*$"},
            "additionalProperties": {
                "type": "object",
                "required": ["runs-on", "steps"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string"},
                    "runs-on": {
                        "oneOf": [
                            {"type": "string", "minLength": 1},
                            {"type": "array", "minItems": 1, "items": {"type": "string"}},
                        ]
                    },
                    "timeout-minutes": {"type": "integer", "minimum": 1},
                    "env": {"type": "object", "additionalProperties": {"type": "string"}},
                    "steps": {"type": "array", "minItems": 1, "items": STEP_SCHEMA},
                },
            },
        },
    },
}

EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
_LITERAL = re.compile(r"^'((?:[^']|'')*)'$")


def expressions(node: Any) -> list[str]:
    """Every ``${{ }}`` expression in the parsed workflow's strings."""
    if isinstance(node, dict):
        return [e for value in node.values() for e in expressions(value)]
    if isinstance(node, list):
        return [e for value in node for e in expressions(value)]
    if isinstance(node, str):
        return [match.strip() for match in EXPRESSION.findall(node)]
    return []


def _operand(text: str, contexts: dict[str, Any]) -> Any:
    text = text.strip()
    if text == "always()":
        return True
    if text.startswith("!"):
        return not _operand(text[1:], contexts)
    literal = _LITERAL.match(text)
    if literal:
        return literal.group(1).replace("''", "'")
    node: Any = contexts
    for part in text.split("."):
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", part):
            raise ValueError(f"unsupported expression {text!r}")
        node = node.get(part) if isinstance(node, dict) else None
    return node


def evaluate(expression: str, contexts: dict[str, Any]) -> Any:
    """The ``a || b || 'c'``, ``!a``, ``always()`` and ``context.path`` forms, as GitHub
    evaluates them (``||`` gives the first truthy operand, else the last)."""
    operands = expression.split("||")
    value: Any = None
    for operand in operands:
        value = _operand(operand, contexts)
        if value:
            return value
    return value


def render_value(value: str, contexts: dict[str, Any]) -> str:
    """A string with its ``${{ }}`` expressions replaced (null becomes '')."""

    def replace(match: re.Match[str]) -> str:
        result = evaluate(match.group(1), contexts)
        return "" if result is None else str(result)

    return EXPRESSION.sub(replace, value)

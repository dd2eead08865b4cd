"""Every CLI command and every config key is documented, and the references are right.

* every command path (``driftloop models ls``) appears in backticks in README.md or docs/;
* every command and group has a one-line help, and ``driftloop --help`` shows it;
* docs/cli.md has a section per command naming each of its options and arguments;
* every key path of :func:`driftloop.config.config_keys` appears in backticks in the docs, and
  docs/configuration.md has a row for it whose default is the model's real default.

typer >= 0.2x vendors its own click (``typer._click``), so commands are told apart by typer's
public :class:`typer.core.TyperGroup`, never by ``isinstance(..., click.Group)``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import pytest
import typer
import yaml
from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo
from typer.core import TyperGroup
from typer.testing import CliRunner

from driftloop.cli import app
from driftloop.config import (
    Config,
    GithubDispatchNotifierConfig,
    JiraNotifierConfig,
    LogNotifierConfig,
    RetrainNotifierConfig,
    SlackNotifierConfig,
    WebhookNotifierConfig,
    config_keys,
)
from driftloop.database.core import STORES
from driftloop.insights.transports import TRANSPORTS
from driftloop.objectstore.storage import STORAGES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CLI_PAGE = DOCS / "cli.md"
CONFIG_PAGE = DOCS / "configuration.md"

NOTIFIER_MODELS: dict[str, type[BaseModel]] = {
    "slack": SlackNotifierConfig,
    "jira": JiraNotifierConfig,
    "webhook": WebhookNotifierConfig,
    "github_dispatch": GithubDispatchNotifierConfig,
    "log": LogNotifierConfig,
    "retrain": RetrainNotifierConfig,
}


def documentation() -> str:
    pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    return "\n".join(page.read_text() for page in pages)


# --------------------------------------------------------------------------- the command tree


@dataclass(frozen=True)
class CliParameter:
    kind: str  # "option" or "argument"
    name: str  # the argument's metavar name, e.g. JOB_ID
    flags: tuple[str, ...]  # the option's long flags, e.g. ("--json",)
    hidden: bool


@dataclass(frozen=True)
class CliCommand:
    path: str  # "driftloop models ls"
    help: str  # the first paragraph of its help, whitespace collapsed
    raw_help: str
    is_group: bool
    parameters: tuple[CliParameter, ...]


def _summary(raw: str) -> str:
    return " ".join(raw.split("\n\n")[0].split())


def walk_commands() -> Iterator[CliCommand]:
    """Every visible command and group below the root, depth first."""

    def walk(group: TyperGroup, path: str) -> Iterator[CliCommand]:
        for name, sub in group.commands.items():
            if sub.hidden:
                continue
            sub_path = f"{path} {name}"
            raw = (sub.short_help or sub.help or "").strip()
            parameters = tuple(
                CliParameter(
                    kind=p.param_type_name,
                    name=(p.name or "").upper(),
                    flags=tuple(o for o in p.opts if o.startswith("--")),
                    hidden=bool(getattr(p, "hidden", False)),
                )
                for p in sub.params
                if p.name != "help"
            )
            is_group = isinstance(sub, TyperGroup)
            yield CliCommand(sub_path, _summary(raw), raw, is_group, parameters)
            if isinstance(sub, TyperGroup):
                yield from walk(sub, sub_path)

    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup), type(root).__mro__
    yield from walk(root, "driftloop")


def cli_commands() -> list[str]:
    """Every leaf command path, e.g. ``driftloop models ls``."""
    return sorted(c.path for c in walk_commands() if not c.is_group)


def test_the_command_tree_is_walked() -> None:
    commands = cli_commands()
    # a broken walk (the old isinstance(click.Group) one) finds nothing below the root
    assert {"driftloop version", "driftloop config check", "driftloop models ls"} <= set(commands)
    assert all(path.count(" ") >= 1 for path in commands)


def test_every_cli_command_is_documented() -> None:
    docs = documentation()
    missing = [
        path for path in cli_commands() if not re.search(rf"`{re.escape(path)}(?=[`\s\[])", docs)
    ]
    assert not missing, f"undocumented commands (write them in backticks in docs/): {missing}"


def test_every_command_has_one_line_help() -> None:
    for command in walk_commands():
        first_paragraph = command.raw_help.split("\n\n")[0]
        assert command.help, f"{command.path} has no help"
        assert "\n" not in first_paragraph.strip(), (
            f"{command.path}: the help's first paragraph must be one line: {first_paragraph!r}"
        )


def _panel_text(output: str) -> str:
    """``--help`` output with the panel borders removed and whitespace collapsed, so a help
    line that rich wrapped reads as one line again."""
    lines = [line.strip().strip("│╭╰─╮╯").strip() for line in output.splitlines()]
    return " ".join(" ".join(lines).split())


def test_help_lists_every_top_level_command_with_its_help() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    shown = _panel_text(result.output)
    top_level = [c for c in walk_commands() if c.path.count(" ") == 1]
    assert len(top_level) >= 10
    missing = [
        f"{c.path}: {c.help}" for c in top_level if f"{c.path.split()[-1]} {c.help}" not in shown
    ]
    assert not missing, f"driftloop --help does not show: {missing}"


def test_every_group_help_lists_its_commands() -> None:
    runner = CliRunner()
    for group in (c for c in walk_commands() if c.is_group):
        result = runner.invoke(app, [*group.path.split()[1:], "--help"])
        assert result.exit_code == 0, result.output
        shown = _panel_text(result.output)
        children = [
            c
            for c in walk_commands()
            if c.path.startswith(group.path + " ") and c.path.count(" ") == 2
        ]
        missing = [c.path for c in children if f"{c.path.split()[-1]} {c.help}" not in shown]
        assert not missing, f"{group.path} --help does not show: {missing}"


def cli_sections() -> dict[str, str]:
    """docs/cli.md split at its ``### `driftloop ...``` headings."""
    sections: dict[str, str] = {}
    current: str | None = None
    for line in CLI_PAGE.read_text().splitlines():
        heading = re.match(r"^### `(driftloop[^`]*)`\s*$", line)
        if heading:
            current = heading.group(1).strip()
            sections[current] = ""
        elif re.match(r"^#{1,3} ", line):
            current = None
        elif current is not None:
            sections[current] += line + "\n"
    return sections


def test_cli_page_documents_every_option_and_argument() -> None:
    sections = cli_sections()
    problems: list[str] = []
    for command in walk_commands():
        if command.is_group:
            continue
        text = sections.get(command.path)
        if text is None:
            problems.append(f"{command.path}: no '### `{command.path}`' section in docs/cli.md")
            continue
        if "```" not in text:
            problems.append(f"{command.path}: no example")
        for param in command.parameters:
            if param.hidden:
                continue
            if param.kind == "argument":
                if param.name not in text:
                    problems.append(f"{command.path}: argument {param.name} not described")
                continue
            for flag in param.flags:
                if f"`{flag}" not in text:
                    problems.append(f"{command.path}: option {flag} not described")
    stale = sorted(set(sections) - {c.path for c in walk_commands()})
    problems += [f"docs/cli.md documents {path}, which is not a command" for path in stale]
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- configuration


def test_every_config_key_is_documented() -> None:
    docs = documentation()
    missing = [key for key in config_keys() if f"`{key}`" not in docs]
    assert not missing, f"undocumented config keys: {missing}"


@dataclass(frozen=True)
class ReferenceRow:
    key: str
    type: str
    default: str
    meaning: str
    notifier: str | None  # the ``type:`` of the notifier section the row is in
    line: int


def reference_rows() -> list[ReferenceRow]:
    """The ``| `key` | type | default | meaning |`` rows of docs/configuration.md."""
    rows: list[ReferenceRow] = []
    notifier: str | None = None
    for number, line in enumerate(CONFIG_PAGE.read_text().splitlines(), start=1):
        if line.startswith("#"):
            match = re.search(r"`type: ([a-z_]+)`", line)
            notifier = match.group(1) if match and line.startswith("###") else None
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)]
        if len(cells) != 6 or cells[0] or cells[-1]:
            continue
        key = re.fullmatch(r"`([^`]+)`", cells[1])
        if key is None:
            continue
        rows.append(
            ReferenceRow(
                key.group(1), cells[2], cells[3].replace("\\|", "|"), cells[4], notifier, number
            )
        )
    return rows


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Annotated:
        return _nested_model(args[0])
    if origin is dict:
        return _nested_model(args[1])
    for arg in args:
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def resolve_field(key: str, notifier: str | None) -> FieldInfo:
    """The pydantic field behind a documented key path."""
    model: type[BaseModel] | None = Config
    field: FieldInfo | None = None
    for part in key.replace("[]", "").split("."):
        if part == "*":
            continue
        if model is None:
            raise KeyError(f"{key}: {part!r} lies below a value that has no keys")
        if model is Config and part == "notifiers" and key != "notifiers":
            field = Config.model_fields["notifiers"]
            if notifier not in NOTIFIER_MODELS:
                raise KeyError(f"{key}: document it under a '### `type: NAME`' heading")
            model = NOTIFIER_MODELS[notifier]
            continue
        if part not in model.model_fields:
            raise KeyError(f"{key}: {model.__name__} has no field {part!r}")
        field = model.model_fields[part]
        model = _nested_model(field.annotation)
    assert field is not None
    return field


def _matches_default(cell: str, field: FieldInfo) -> bool:
    if field.is_required():
        return cell == "required"
    default = field.get_default(call_default_factory=True)
    if isinstance(default, BaseModel):
        return cell == "section"
    if cell == "none":
        return default is None
    literal = re.fullmatch(r"`([^`]*)`", cell)
    if literal is None:
        return False
    text = literal.group(1)
    form: Any = field.annotation
    if field.metadata:
        form = Annotated.__class_getitem__((form, *field.metadata))  # type: ignore[attr-defined]
    adapter: TypeAdapter[Any] = TypeAdapter(form)
    candidates: list[object] = [text]
    with contextlib.suppress(yaml.YAMLError):
        candidates.insert(0, yaml.safe_load(text))
    for candidate in candidates:
        try:
            if adapter.validate_python(candidate) == default:
                return True
        except ValueError:
            continue
    return False


def test_configuration_page_has_a_row_for_every_key() -> None:
    rows = reference_rows()
    documented = {
        (row.key, row.notifier if row.key.startswith("notifiers.*.") else None) for row in rows
    }
    wanted: set[tuple[str, str | None]] = set()
    for key in config_keys():
        if key.startswith("notifiers.*."):
            continue
        wanted.add((key, None))
    for type_name, model in NOTIFIER_MODELS.items():
        wanted |= {(f"notifiers.*.{name}", type_name) for name in model.model_fields}
    missing = sorted(wanted - documented, key=lambda k: (k[0], k[1] or ""))
    assert not missing, (
        "docs/configuration.md has no '| `key` | type | default | meaning |' row for "
        f"(key, notifier type): {missing}"
    )


def test_configuration_page_rows_are_real_keys_with_their_defaults() -> None:
    rows = reference_rows()
    assert len(rows) >= len(config_keys())
    problems: list[str] = []
    for row in rows:
        if not row.type or not row.meaning:
            problems.append(f"line {row.line}: {row.key}: type and meaning must not be empty")
        try:
            field = resolve_field(row.key, row.notifier)
        except KeyError as exc:
            problems.append(f"line {row.line}: not a config key: {exc}")
            continue
        if not _matches_default(row.default, field):
            real = (
                "required"
                if field.is_required()
                else repr(field.get_default(call_default_factory=True))
            )
            problems.append(
                f"line {row.line}: {row.key}: documented default {row.default!r}, "
                f"real default {real}"
            )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("cell", "key", "expected"),
    [
        ("`8000`", "serving.port", True),
        ("`8001`", "serving.port", False),
        ("`5m`", "monitors[].window", True),
        ("`4m`", "monitors[].window", False),
        ("`[model]`", "monitors[].group_by", True),
        ("required", "monitors[].name", True),
        ("none", "hooks.secret", True),
        ("section", "serving", True),
        ("`{}`", "models", True),
    ],
)
def test_default_check_tells_right_from_wrong(cell: str, key: str, expected: bool) -> None:
    assert _matches_default(cell, resolve_field(key, None)) is expected


# --------------------------------------------------------------------------- links

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces → '-'."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            found.add(github_anchor(line.lstrip("#")))
    return found


def test_github_anchor() -> None:
    assert github_anchor(" Metric store (`metrics:`)") == "metric-store-metrics"
    assert (
        github_anchor("Inbound alerts: `POST /v1/hooks/alert`")
        == "inbound-alerts-post-v1hooksalert"
    )


def test_relative_links_resolve() -> None:
    broken: list[str] = []
    for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        for target in _LINK.findall(page.read_text()):
            if re.match(r"^[a-z]+:", target):
                continue
            path_part, _, anchor = target.partition("#")
            linked = (page.parent / path_part).resolve() if path_part else page
            if not linked.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


# --------------------------------------------------------------------------- backends


def test_every_backend_scheme_is_documented_with_its_extra() -> None:
    rows = [
        line
        for line in CONFIG_PAGE.read_text().splitlines()
        if line.startswith("| store |")
        or line.startswith("| storage |")
        or line.startswith("| transport |")
    ]
    problems: list[str] = []
    for family in (STORES, STORAGES, TRANSPORTS):
        for scheme, entry in family.entries.items():
            matching = [
                row
                for row in rows
                if row.startswith(f"| {family.family} |") and f"`{scheme}://" in row
            ]
            if not matching:
                problems.append(f"{family.family}: {scheme}:// has no row in the backends table")
                continue
            extra_cell = [c.strip() for c in matching[0].strip("|").split("|")][-1]
            if extra_cell != (f"`{entry.extra}`" if entry.extra else "none"):
                problems.append(
                    f"{family.family}: {scheme}:// needs extra {entry.extra!r}, "
                    f"documented {extra_cell!r}"
                )
    assert not problems, "\n".join(problems)

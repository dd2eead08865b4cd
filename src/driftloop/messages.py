"""Datadog-like monitor messages, and the ``@handle`` mentions that route them.

It sits beside ``config.py``, outside any feature package, so the configuration can reject a
broken template when it is read, and the monitors render the same templates.

``{{#is_alert}}...{{/is_alert}}`` keeps its body when the flag is true, ``{{^is_alert}}...
{{/is_alert}}`` when it is false; sections nest. ``{{value}}``, ``{{model}}``, ``{{threshold}}``,
``{{monitor}}``, ``{{state}}`` and any group tag are replaced by their text; an unknown variable or
flag renders empty (false). The template is parsed once; values are inserted literally and never
parsed again, so a tag value such as ``{{#is_alert}}`` or ``@oncall`` cannot change what is
rendered or who is notified: mentions are taken from the template's own text, never from values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from driftloop.errors import ConfigError

_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9][A-Za-z0-9_.-]*)")
_TAG = re.compile(r"\{\{\s*([#^/]?)\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")

FLAGS: tuple[str, ...] = (
    "is_alert",
    "is_warning",
    "is_recovery",
    "is_alert_recovery",
    "is_warning_recovery",
    "is_no_data",
    "is_no_data_recovery",
    "is_ok",
    "is_renotify",
    "is_retired",
)
"""The section flags the engine sets for every event (a retrain outcome sets its own:
``driftloop.monitors.outcomes.OUTCOME_FLAGS`` and ``is_retrain_outcome``)."""


@dataclass(frozen=True, slots=True)
class _Text:
    text: str


@dataclass(frozen=True, slots=True)
class _Variable:
    name: str


@dataclass(frozen=True, slots=True)
class _Section:
    flag: str
    inverted: bool
    body: tuple[_Node, ...]


_Node = _Text | _Variable | _Section


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """A rendered message and the ``@handle`` mentions its kept sections hold."""

    text: str
    handles: tuple[str, ...]


class MessageTemplate:
    """A parsed message template; :meth:`render` it once per event."""

    def __init__(self, source: str, *, name: str = "message") -> None:
        self.source = source
        self.name = name
        self._nodes = self._parse(source)

    def _parse(self, source: str) -> tuple[_Node, ...]:
        stack: list[tuple[str, bool, list[_Node], int]] = [("", False, [], 0)]
        position = 0
        for match in _TAG.finditer(source):
            if match.start() > position:
                stack[-1][2].append(_Text(source[position : match.start()]))
            position = match.end()
            sigil, name = match.group(1), match.group(2)
            if sigil in {"#", "^"}:
                stack.append((name, sigil == "^", [], match.start()))
            elif sigil == "/":
                flag, inverted, body, opened = stack[-1]
                if len(stack) == 1:
                    raise ConfigError(
                        f"{self.name}: '{{{{/{name}}}}}' at character {match.start()} closes a "
                        "section that was never opened"
                    )
                if flag != name:
                    raise ConfigError(
                        f"{self.name}: '{{{{/{name}}}}}' at character {match.start()} closes "
                        f"'{flag}', opened at character {opened}"
                    )
                stack.pop()
                stack[-1][2].append(_Section(flag, inverted, tuple(body)))
            else:
                stack[-1][2].append(_Variable(name))
        if position < len(source):
            stack[-1][2].append(_Text(source[position:]))
        if len(stack) > 1:
            flag, _inverted, _body, opened = stack[-1]
            raise ConfigError(
                f"{self.name}: section '{flag}' opened at character {opened} is never closed "
                f"(add '{{{{/{flag}}}}}')"
            )
        return tuple(stack[0][2])

    def render(self, variables: Mapping[str, str], flags: Mapping[str, bool]) -> RenderedMessage:
        """The message, and the mentions of the sections kept (not of the values inserted)."""
        text = "".join(self._render(self._nodes, variables, flags, skeleton=False))
        skeleton = "".join(self._render(self._nodes, {}, flags, skeleton=True))
        return RenderedMessage(text.strip(), tuple(mentioned_handles(skeleton)))

    def _render(
        self,
        nodes: tuple[_Node, ...],
        variables: Mapping[str, str],
        flags: Mapping[str, bool],
        *,
        skeleton: bool,
    ) -> list[str]:
        parts: list[str] = []
        for node in nodes:
            if isinstance(node, _Text):
                parts.append(node.text)
            elif isinstance(node, _Variable):
                # In the skeleton (mentions only) a blank stands for every value.
                parts.append(" " if skeleton else variables.get(node.name, ""))
            elif bool(flags.get(node.flag, False)) != node.inverted:
                body = self._render(node.body, variables, flags, skeleton=skeleton)
                # In the skeleton a section is a word of its own: "@retrain{{/is_alert}}
                # {{#is_rejected}}Rejected" must not read as the mention @retrainRejected.
                parts.extend([" ", *body, " "] if skeleton else body)
        return parts


MISSING_VALUE = "n/a"
"""How a missing value (a window without data) reads wherever driftloop shows one."""


def format_value(value: float | None) -> str:
    """How a value or threshold reads in monitor messages, notifications (Slack, Jira, retrain
    requests), the CLI, reports and the demo: four significant digits, :data:`MISSING_VALUE`
    when there is none."""
    return MISSING_VALUE if value is None else f"{value:.4g}"


def mentioned_handles(message: str) -> list[str]:
    """The ``@handle`` mentions in a monitor message, in order, without repeats."""
    seen: list[str] = []
    for handle in _MENTION.findall(message):
        handle = handle.rstrip(".")
        if handle not in seen:
            seen.append(handle)
    return seen

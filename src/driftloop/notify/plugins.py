"""Notifiers by type (``notifiers.<name>.type``): the notifier family of the plug-in registry.

:data:`NOTIFIERS` maps a type to a factory ``factory(config, context) -> Notifier``: the
built-ins below, and whatever an installed package declares in the entry-point group
``driftloop.notifiers`` (a function, or a :class:`~driftloop.notify.base.Notifier` subclass
whose constructor takes those two arguments). ``config`` is the validated
``notifiers.<name>`` entry (for a plug-in a :class:`~driftloop.config.PluginNotifierConfig`,
its own keys in ``config.model_extra``); ``context`` is what the router shares with every
notifier it builds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from driftloop.backends import PluginFamily
from driftloop.config import (
    GithubDispatchNotifierConfig,
    JiraNotifierConfig,
    RetrainNotifierConfig,
    SlackNotifierConfig,
    WebhookNotifierConfig,
)
from driftloop.database.core import Database
from driftloop.errors import ConfigError
from driftloop.notify.base import Notifier
from driftloop.notify.graphs import GraphStore
from driftloop.notify.retrain import EnqueueRetrain


@dataclass(frozen=True)
class NotifierContext:
    """What the router gives every notifier it builds: the handle (``name``), driftloop's
    public URL for links, the store (for notifiers that remember what they sent), the graph
    store, the clock, the HTTP timeout and the retrain pipeline (``None`` outside a worker)."""

    name: str
    public_url: str
    database: Database
    graph_store: GraphStore
    timeout: float = 10.0
    clock: Callable[[], float] = field(default=time.time)
    enqueue_retrain: EnqueueRetrain | None = None


NotifierFactory = Callable[[Any, NotifierContext], Notifier]

NOTIFIERS: PluginFamily[NotifierFactory] = PluginFamily("notifier", noun="type")
for _kind in ("slack", "jira", "webhook", "github_dispatch", "log", "retrain"):
    NOTIFIERS.register(_kind, f"driftloop.notify.plugins:build_{_kind}")


def build_notifier(kind: str, config: object, context: NotifierContext) -> Notifier:
    """The notifier of type ``kind`` for ``notifiers.<context.name>`` (``config`` is ``None``
    for the implicit ``@log`` and ``@retrain`` handles)."""
    factory = NOTIFIERS.load(kind, f"notifiers.{context.name}")
    built = factory(config, context)
    if not isinstance(built, Notifier):
        raise ConfigError(
            f"notifiers.{context.name}: the {kind!r} notifier factory returned "
            f"{type(built).__name__}, not a Notifier"
        )
    built.name = built.name or context.name
    return built


def build_slack(config: SlackNotifierConfig, context: NotifierContext) -> Notifier:
    from driftloop.notify.slack import SlackNotifier

    return SlackNotifier(
        config,
        name=context.name,
        public_url=context.public_url,
        graph_store=context.graph_store,
        timeout=context.timeout,
    )


def build_jira(config: JiraNotifierConfig, context: NotifierContext) -> Notifier:
    from driftloop.notify.jira import JiraNotifier

    return JiraNotifier(
        config,
        name=context.name,
        database=context.database,
        clock=context.clock,
        timeout=context.timeout,
    )


def build_webhook(config: WebhookNotifierConfig, context: NotifierContext) -> Notifier:
    from driftloop.notify.webhook import WebhookNotifier

    return WebhookNotifier(config, name=context.name, timeout=context.timeout)


def build_github_dispatch(
    config: GithubDispatchNotifierConfig, context: NotifierContext
) -> Notifier:
    from driftloop.notify.github import GithubDispatchNotifier

    return GithubDispatchNotifier(config, name=context.name, timeout=context.timeout)


def build_log(config: object, context: NotifierContext) -> Notifier:
    from driftloop.notify.log import LogNotifier

    del config
    return LogNotifier(name=context.name)


def build_retrain(config: RetrainNotifierConfig | None, context: NotifierContext) -> Notifier:
    from driftloop.notify.retrain import RetrainNotifier

    return RetrainNotifier(
        context.enqueue_retrain, name=context.name, model=None if config is None else config.model
    )

"""What the notification router checks in the config before it sends anything: every template
variable of a webhook or GitHub-dispatch notifier is known, and a monitor that routes to
``@retrain`` has a retrain pipeline to reach."""

from __future__ import annotations

from collections.abc import Collection

from driftloop.config import (
    Config,
    GithubDispatchNotifierConfig,
    RetrainNotifierConfig,
    WebhookNotifierConfig,
)
from driftloop.errors import ConfigError
from driftloop.messages import mentioned_handles
from driftloop.notify.variables import unknown_names


def check_templates(config: Config) -> None:
    """:class:`ConfigError` for a notifier template that uses a variable no event has."""
    tags = {"model"}
    for monitor in config.monitors:
        tags |= set(monitor.group_by) | set(monitor.filter)
    for name, entry in config.notifiers.items():
        templates: list[tuple[str, object]] = []
        if isinstance(entry, WebhookNotifierConfig):
            templates = [("payload", entry.payload), ("headers", entry.headers)]
        elif isinstance(entry, GithubDispatchNotifierConfig):
            templates = [("inputs", entry.inputs)]
        for key, template in templates:
            unknown = unknown_names(template, tags)
            if unknown:
                raise ConfigError(
                    f"notifiers.{name}.{key} uses unknown variables "
                    f"{['{{' + u + '}}' for u in unknown]}; see docs/notifications.md"
                )


def retrain_handles(config: Config) -> set[str]:
    """The handles that queue a retrain: ``retrain`` unless a notifier took that name, and
    every notifier of type ``retrain``."""
    handles = {"retrain"} if "retrain" not in config.notifiers else set()
    handles |= {n for n, e in config.notifiers.items() if isinstance(e, RetrainNotifierConfig)}
    return handles


def check_retrain_routes(config: Config, *, given: Collection[str]) -> None:
    """:class:`ConfigError` for a monitor routed to a retrain handle when the router has no
    retrain pipeline (``given``: the handles whose notifiers the caller built itself)."""
    retrain = retrain_handles(config) - set(given)
    for monitor in config.monitors:
        routed = retrain & set(mentioned_handles(monitor.message))
        if routed:
            raise ConfigError(
                f"monitor {monitor.name!r} routes to @{sorted(routed)[0]}, but the "
                "notification router was given no retrain pipeline (enqueue_retrain)"
            )

"""The ``notifiers`` section (one model per built-in type, and plug-ins' own keys), the
Standard Webhooks secret check, and the inbound ``hooks`` that share its signing."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from driftloop.backends import installed_plugins
from driftloop.config.values import Duration, StrictModel


class SlackNotifierConfig(StrictModel):
    type: Literal["slack"]
    webhook_url: str
    bot_token: str | None = None
    channel: str | None = None
    api_url: str = "https://slack.com/api/"


class JiraNotifierConfig(StrictModel):
    type: Literal["jira"]
    url: str
    project: str
    token: str
    email: str | None = None
    issue_type: str = "Bug"
    labels: list[str] = Field(default_factory=lambda: ["driftloop"])
    resolve_transition: str | None = None
    api_version: Literal[2, 3] = 2


WebhookSignature = Literal["standard", "legacy"]
"""How webhooks are signed: ``standard`` (the Standard Webhooks specification: ``webhook-id``,
``webhook-timestamp`` and ``webhook-signature``) or ``legacy`` (driftloop's first scheme, an
HMAC-SHA256 of the body alone, and for inbound hooks a bearer token too)."""

STANDARD_SECRET_PREFIX = "whsec_"  # noqa: S105  (a prefix, not a secret)


def standard_webhook_key(secret: str, *, where: str) -> bytes:
    """The key of a Standard Webhooks secret, ``whsec_`` + base64 of 24 to 64 random bytes."""
    hint = (
        f"{where}: a Standard Webhooks secret is {STANDARD_SECRET_PREFIX!r} followed by the "
        'base64 of 24 to 64 random bytes (python -c "import base64, secrets; '
        "print('whsec_' + base64.b64encode(secrets.token_bytes(32)).decode())\"), or set "
        "signature: legacy"
    )
    if not secret.startswith(STANDARD_SECRET_PREFIX):
        raise ValueError(hint)
    try:
        key = base64.b64decode(secret[len(STANDARD_SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError(hint) from None
    if not 24 <= len(key) <= 64:
        raise ValueError(hint)
    return key


class WebhookNotifierConfig(StrictModel):
    type: Literal["webhook"]
    url: str
    method: Literal["POST", "PUT", "PATCH", "GET"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    payload: Any = None
    hmac_secret: str | None = None
    signature: WebhookSignature = "standard"
    hmac_header: str = "X-Driftloop-Signature"

    @model_validator(mode="after")
    def _standard_secret(self) -> WebhookNotifierConfig:
        if self.hmac_secret and self.signature == "standard":
            standard_webhook_key(self.hmac_secret, where="hmac_secret")
        return self


class GithubDispatchNotifierConfig(StrictModel):
    type: Literal["github_dispatch"]
    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    workflow: str
    ref: str = "main"
    token: str
    inputs: dict[str, str] = Field(default_factory=dict)
    api_url: str = "https://api.github.com"


class LogNotifierConfig(StrictModel):
    type: Literal["log"]


class RetrainNotifierConfig(StrictModel):
    type: Literal["retrain"]
    model: str | None = None


NOTIFIER_TYPES = frozenset({"slack", "jira", "webhook", "github_dispatch", "log", "retrain"})
NOTIFIER_PLUGINS = "driftloop.notifiers"
"""The entry-point group of notifiers that installed packages provide."""


class PluginNotifierConfig(BaseModel):
    """A notifier an installed package provides (entry-point group ``driftloop.notifiers``):
    ``type`` names it; its other keys are its own settings (``model_extra``), which it checks
    when it is built."""

    model_config = ConfigDict(extra="allow")
    type: str

    @field_validator("type")
    @classmethod
    def _installed(cls, value: str) -> str:
        installed = installed_plugins(NOTIFIER_PLUGINS)
        if value not in installed:
            raise ValueError(
                f"unknown notifier type {value!r}; known: "
                f"{', '.join(sorted(NOTIFIER_TYPES | set(installed)))}; install a package that "
                f"provides it (pip install PACKAGE; it declares the entry point group "
                f"{NOTIFIER_PLUGINS!r})"
            )
        return value


def _notifier_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if isinstance(kind, str) and kind in NOTIFIER_TYPES else "plugin"


NotifierConfig = Annotated[
    Annotated[SlackNotifierConfig, Tag("slack")]
    | Annotated[JiraNotifierConfig, Tag("jira")]
    | Annotated[WebhookNotifierConfig, Tag("webhook")]
    | Annotated[GithubDispatchNotifierConfig, Tag("github_dispatch")]
    | Annotated[LogNotifierConfig, Tag("log")]
    | Annotated[RetrainNotifierConfig, Tag("retrain")]
    | Annotated[PluginNotifierConfig, Tag("plugin")],
    Discriminator(_notifier_tag),
]


class HooksConfig(StrictModel):
    secret: str | None = None
    signature: WebhookSignature = "standard"
    tolerance: Duration = Field(300.0, gt=0)

    @model_validator(mode="after")
    def _standard_secret(self) -> HooksConfig:
        if self.secret and self.signature == "standard":
            standard_webhook_key(self.secret, where="hooks.secret")
        return self

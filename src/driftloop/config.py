"""``driftloop.yaml``: parsed into pydantic models, with ``${VAR}`` / ``${VAR:-default}`` secrets
from the environment and ``DRIFTLOOP_*`` overrides (``DRIFTLOOP_STORE``,
``DRIFTLOOP_SERVING__PORT``: a double underscore descends one level).

Every rejection names the file, the key path and what was expected.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from driftloop.backends import installed_plugins
from driftloop.errors import ConfigError
from driftloop.messages import MessageTemplate, mentioned_handles
from driftloop.redaction import is_secret_key, mask_url

CONFIG_FILENAME = "driftloop.yaml"
ENV_PREFIX = "DRIFTLOOP_"
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_RELATIVE_THRESHOLD = re.compile(r"^\s*reference\s*(?:([+-])\s*(\d+(?:\.\d+)?))?\s*$")


def parse_duration(value: object) -> float:
    """``"5m"`` → 300.0 seconds; numbers are seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    raise ValueError(f"expected a duration such as 30s, 5m, 1h, got {value!r}")


_DURATION_SCHEMA: dict[str, Any] = {"anyOf": [
    {"type": "number", "minimum": 0},
    {"type": "string", "pattern": _DURATION.pattern, "examples": ["30s", "5m", "1h"]},
]}
Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Threshold(StrictModel):
    """A threshold, absolute (``0.8``) or relative to the model's validation reference
    (``"reference - 0.05"``), so one monitor fits every model version."""

    value: float
    relative: bool = False

    def resolve(self, reference: float | None) -> float | None:
        """The absolute threshold; ``None`` while a relative one has no reference yet."""
        if not self.relative:
            return self.value
        return None if reference is None else reference + self.value

    def __str__(self) -> str:
        if not self.relative:
            return f"{self.value:g}"
        sign = "-" if self.value < 0 else "+"
        return f"reference {sign} {abs(self.value):g}"


def _parse_threshold(value: object) -> object:
    if isinstance(value, Threshold | None | dict):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"value": float(value)}
    if isinstance(value, str):
        match = _RELATIVE_THRESHOLD.match(value)
        if match:
            offset = float(match.group(2) or 0.0)
            return {"value": -offset if match.group(1) == "-" else offset, "relative": True}
    raise ValueError(f"expected a number or 'reference - X', got {value!r}")


_THRESHOLD_SCHEMA: dict[str, Any] = {"anyOf": [
    {"type": "number"},
    {"type": "string", "pattern": _RELATIVE_THRESHOLD.pattern,
     "examples": ["reference - 0.05"]},
]}
ThresholdValue = Annotated[Threshold, BeforeValidator(_parse_threshold),
                           WithJsonSchema(_THRESHOLD_SCHEMA)]


class Thresholds(StrictModel):
    warning: ThresholdValue | None = None
    critical: ThresholdValue | None = None
    warning_recovery: ThresholdValue | None = None
    critical_recovery: ThresholdValue | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> Thresholds:
        if self.warning is None and self.critical is None:
            raise ValueError("set at least one of warning, critical")
        return self


class NoDataConfig(StrictModel):
    after: Duration = 600.0
    notify: bool = False


DETECTOR_ALGORITHMS = ("cusum", "page_hinkley", "ks", "psi", "chi_square", "shape",
                       "cusum_shape")
DETECTOR_PLUGINS = "driftloop.detectors"
"""The entry-point group of drift detectors that installed packages provide."""


class DetectorConfig(StrictModel):
    """A streaming drift detector on a metric (``type: drift`` monitors)."""

    algorithm: str = "cusum"
    false_alarm_rate: float = Field(1e-5, gt=0, lt=1)
    min_shift: float = Field(0.05, gt=0, description="smallest drop worth detecting")
    window: int = Field(500, ge=20, description="window size for two-sample tests")

    @field_validator("algorithm")
    @classmethod
    def _known_algorithm(cls, value: str) -> str:
        if value in DETECTOR_ALGORITHMS:
            return value
        installed = installed_plugins(DETECTOR_PLUGINS)
        if value not in installed:
            raise ValueError(
                f"unknown detector algorithm {value!r}; known: "
                f"{', '.join(sorted(set(DETECTOR_ALGORITHMS) | set(installed)))}; install a "
                f"package that provides it (pip install PACKAGE; it declares the entry point "
                f"group {DETECTOR_PLUGINS!r})"
            )
        return value


class MonitorConfig(StrictModel):
    name: str = Field(min_length=1)
    type: Literal["threshold", "drift"] = "threshold"
    metric: str = "model_confidence"
    aggregation: Literal["avg", "min", "max", "sum", "count", "p50", "p90", "p99"] = "avg"
    window: Duration = 300.0
    group_by: list[str] = Field(default_factory=lambda: ["model"])
    filter: dict[str, str] = Field(default_factory=dict)
    below: Thresholds | None = None
    above: Thresholds | None = None
    require_full_window: bool = False
    min_count: int = Field(1, ge=1, description="points needed in the window for a verdict")
    no_data: NoDataConfig = NoDataConfig()
    renotify: Duration | None = None
    evaluation_delay: Duration = 0.0
    detector: DetectorConfig | None = None
    message: str = "{{monitor}} on {{model}} is {{state}}: {{value}} (threshold {{threshold}})"

    @model_validator(mode="after")
    def _consistent(self) -> MonitorConfig:
        if self.type == "threshold":
            if (self.below is None) == (self.above is None):
                raise ValueError("a threshold monitor needs exactly one of 'below' or 'above'")
            thresholds = self.below or self.above
            assert thresholds is not None
            _check_order(thresholds, below=self.below is not None)
        elif self.detector is None:
            raise ValueError("a drift monitor needs a 'detector' section")
        if self.window <= 0:
            raise ValueError("window must be positive")
        try:
            MessageTemplate(self.message, name="message")
        except ConfigError as exc:  # so 'driftloop config check' rejects a broken template
            raise ValueError(exc.message) from None
        return self


def _check_order(t: Thresholds, *, below: bool) -> None:
    """For ``below``, critical must not lie above warning (and the reverse for ``above``)."""
    w, c = t.warning, t.critical
    if w is None or c is None or w.relative != c.relative:
        return
    if below and c.value > w.value:
        raise ValueError(
            f"below: critical ({c}) must not be above warning ({w}): "
            "values fall past warning before they reach critical"
        )
    if not below and c.value < w.value:
        raise ValueError(f"above: critical ({c}) must not be below warning ({w})")
    for level, threshold, recovery in (
        ("warning", w, t.warning_recovery),
        ("critical", c, t.critical_recovery),
    ):
        if recovery is None or recovery.relative != threshold.relative:
            continue
        wrong_side = recovery.value < threshold.value if below else recovery.value > threshold.value
        if wrong_side:
            side = "at or above" if below else "at or below"
            raise ValueError(
                f"{level}_recovery ({recovery}) must be {side} {level} ({threshold})"
            )


class ModelConfig(StrictModel):
    trainer: str = "sklearn"
    data: str = Field("reviews", pattern=NAME_PATTERN, description="dataset name in storage")
    base_model: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    params: dict[str, Any] = Field(default_factory=dict)
    notebook: str | None = None
    command: list[str] | None = None
    labels: list[str] | None = Field(
        None, description="the model's label set; training data with other labels is refused"
    )
    predictor: str | None = Field(
        None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="'package.module:Class', a driftloop.Predictor subclass that loads every "
                    "version of this model (importing it runs its code)")
    merge_feedback: bool = Field(
        False, description="retrain on the newest snapshot plus the labels that production "
                           "feedback sent with their texts (stored as a new snapshot)")
    retrain_data: Literal["cumulative", "newest"] = Field(
        "cumulative", description="what a training learns from: every labeled row of every "
                                  "snapshot, the newest label of a text winning (cumulative), "
                                  "or the newest snapshot alone (newest)")


RateLimitedScope = Literal["predict", "label", "insights", "admin"]
"""The API key scopes ``serving.rate_limits`` may limit (the dashboard's routes are not)."""


class RateLimitConfig(StrictModel):
    """A token bucket: ``rate`` requests a second on average, ``burst`` at once."""

    rate: float = Field(gt=0)
    burst: int = Field(ge=1)


class ServingConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_texts_per_request: int = Field(256, ge=1)
    max_text_chars: int = Field(10_000, ge=1)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_upload_bytes: int = Field(1_073_741_824, ge=1024)
    max_header_bytes: int = Field(65_536, ge=1024)
    idle_timeout: Duration = Field(5.0, ge=1.0)
    max_connections: int | None = Field(1000, ge=1)
    worker_healthcheck_timeout: Duration = Field(60.0, ge=1.0)
    max_batch_size: int = Field(64, ge=1)
    max_batch_wait_ms: float = Field(2.0, ge=0)
    registry_poll_interval: Duration = 2.0
    access_log: bool = False
    parallel_batches: int | None = Field(None, ge=1, le=8)
    inline_below_ms: float = Field(2.0, ge=0)
    rate_limits: dict[RateLimitedScope, RateLimitConfig] = Field(
        default_factory=dict)
    max_feedback_items: int = Field(1000, ge=1)
    max_insight_points: int = Field(5_000, ge=1)
    max_queue_delay: Duration = Field(1.0, ge=0)
    prediction_log_retention: Duration = Field(7 * 86400.0, ge=60.0)


class InsightsConfig(StrictModel):
    queue_size: int = Field(100_000, ge=1)
    batch_size: int = Field(2_000, ge=1)
    flush_interval: Duration = 0.2
    outbox: str = ".driftloop/outbox"
    api_key: str | None = None
    """For an ``https://`` transport: a key with the ``insights`` scope (write it as
    ``${VAR}``); default ``$DRIFTLOOP_INSIGHTS_KEY``."""
    http_timeout: Duration = Field(5.0, gt=0)
    http_max_points: int = Field(2_000, ge=1)


class KafkaConfig(StrictModel):
    """The ``kafka://`` transport's producer and the ``driftloop ingest`` consumer group."""

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "dead_letter" in data:
            raise ValueError("kafka.dead_letter (a local file) is gone: messages that cannot be "
                             "decoded or stored now go to a dead-letter topic, "
                             "kafka.dead_letter_topic (default <topic>.dead-letter); remove "
                             "the key (docs/scaling.md)")
        return data

    group_id: str = Field("driftloop-ingest", min_length=1)
    session_timeout: Duration = 10.0
    heartbeat_interval: Duration = 3.0
    delivery_timeout: Duration = 10.0
    linger: Duration = 0.005
    max_points_per_message: int = Field(500, ge=1)
    max_batch_messages: int = Field(200, ge=1)
    poll_timeout: Duration = 0.5
    commit_interval: Duration = 1.0
    topic_partitions: int | None = Field(None, ge=1)
    dead_letter_topic: str | None = None
    """Where undecodable or refused messages go; default ``<topic>.dead-letter``."""
    producer: dict[str, str] = Field(default_factory=dict)
    consumer: dict[str, str] = Field(default_factory=dict)


class DogStatsdConfig(StrictModel):
    """Forward insight points to a Datadog agent as DogStatsD metrics (the ``datadog`` extra)."""

    enabled: bool = False
    host: str | None = None
    """Default: ``DD_AGENT_HOST``, else ``localhost`` (``DD_DOGSTATSD_URL`` wins over both)."""
    port: int | None = Field(None, ge=1, le=65535)
    socket_path: str | None = None
    """A Unix socket of the agent instead of UDP (``DD_DOGSTATSD_URL=unix://...`` also)."""
    prefix: str = "driftloop."
    metric_type: Literal["d", "h", "g"] = "d"
    metrics: list[str] = Field(default_factory=lambda: ["model_confidence"])
    tag_keys: list[str] = Field(default_factory=lambda: ["model", "version", "shadow"])
    constant_tags: list[str] = Field(default_factory=list)
    max_packet_bytes: int = Field(1432, ge=512, le=65000)


class MetricsConfig(StrictModel):
    raw_retention: Duration = 7 * 86400.0
    rollup_retention: Duration = 90 * 86400.0


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
    hint = (f"{where}: a Standard Webhooks secret is {STANDARD_SECRET_PREFIX!r} followed by the "
            "base64 of 24 to 64 random bytes (python -c \"import base64, secrets; "
            "print('whsec_' + base64.b64encode(secrets.token_bytes(32)).decode())\"), or set "
            "signature: legacy")
    if not secret.startswith(STANDARD_SECRET_PREFIX):
        raise ValueError(hint)
    try:
        key = base64.b64decode(secret[len(STANDARD_SECRET_PREFIX):], validate=True)
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


class GateConfig(StrictModel):
    min_macro_f1_gain: float = 0.0
    max_ece_increase: float = Field(0.02, ge=0)


REMOVED_PIPELINE_KEYS = {
    "verify_baseline": "verification now compares the new and the previous version on the same "
                       "live requests (the previous one scores them in shadow), not on the time "
                       "before the deploy; remove the key (docs/pipeline.md, 'Deploy, verify, "
                       "roll back')",
    "verify_confidence_tolerance": "use pipeline.verify_tolerance (0.02 by default), which "
                                   "applies to accuracy and to confidence relative to each "
                                   "version's reference",
}


class PipelineConfig(StrictModel):
    cooldown: Duration = 600.0
    gate: GateConfig = GateConfig()
    verify_deadline: Duration = 600.0
    verify_interval: Duration = 2.0
    worker_stale_after: Duration = 60.0
    verify_min_predictions: int = Field(50, ge=2)
    verify_min_labels: int = Field(30, ge=2)
    verify_tolerance: float = Field(0.02, ge=0, le=1)
    verify_error_rate: float = Field(0.05, gt=0, lt=1)
    shadow_fraction: float = Field(1.0, gt=0, le=1)
    retry_backoff: Duration = 600.0
    max_attempts: int = Field(3, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, hint in REMOVED_PIPELINE_KEYS.items():
                if key in data:
                    raise ValueError(f"pipeline.{key} is gone: {hint}")
        return data
    holdout_fraction: float = Field(0.2, gt=0, lt=1)
    min_fresh_rows: int = Field(50, ge=1)
    seed: int = 0
    deploy_mode: Literal["direct", "canary", "shadow"] = "direct"
    canary_fraction: float = Field(0.1, gt=0, lt=1)


class HooksConfig(StrictModel):
    secret: str | None = None
    signature: WebhookSignature = "standard"
    tolerance: Duration = Field(300.0, gt=0)

    @model_validator(mode="after")
    def _standard_secret(self) -> HooksConfig:
        if self.secret and self.signature == "standard":
            standard_webhook_key(self.secret, where="hooks.secret")
        return self


class DashboardConfig(StrictModel):
    """The dashboard's sessions: the secret that signs their cookies (shared by every replica;
    else ``DRIFTLOOP_DASHBOARD_SECRET``, else a file per installation) and how long one lasts."""

    session_secret: str | None = Field(None, min_length=32)
    session_max_age: Duration = Field(12 * 3600.0, gt=0)


class LoggingConfig(StrictModel):
    """driftloop's own log lines in up, serve, worker and ingest (``--log-level``,
    ``--log-format`` win over these)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["text", "json"] = "text"


class ControlConfig(StrictModel):
    """The control plane's leases (docs/reliability.md, "Control plane failover"): a leader
    renews every ``renew_interval``; a follower takes over a lease not renewed for
    ``lease_duration``."""

    lease_duration: Duration = Field(8.0, gt=0)
    renew_interval: Duration = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _renew_within_lease(self) -> ControlConfig:
        if self.renew_interval >= self.lease_duration:
            raise ValueError(f"control.renew_interval ({self.renew_interval:g}s) must be "
                             f"shorter than control.lease_duration ({self.lease_duration:g}s)")
        return self


class Config(StrictModel):
    store: str = "sqlite:///.driftloop/driftloop.db"
    storage: str = "file://.driftloop/storage"
    transport: str = "local://"
    public_url: str = "http://127.0.0.1:8000"
    serving: ServingConfig = ServingConfig()
    insights: InsightsConfig = InsightsConfig()
    metrics: MetricsConfig = MetricsConfig()
    kafka: KafkaConfig = KafkaConfig()
    dogstatsd: DogStatsdConfig = DogStatsdConfig()
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    monitors: list[MonitorConfig] = Field(default_factory=list)
    notifiers: dict[str, NotifierConfig] = Field(default_factory=dict)
    pipeline: PipelineConfig = PipelineConfig()
    hooks: HooksConfig = HooksConfig()
    dashboard: DashboardConfig = DashboardConfig()
    logging: LoggingConfig = LoggingConfig()
    control: ControlConfig = ControlConfig()
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @field_validator("models")
    @classmethod
    def _model_names(cls, models: dict[str, ModelConfig]) -> dict[str, ModelConfig]:
        for name in models:
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"model name {name!r} must match {NAME_PATTERN}")
        return models

    @model_validator(mode="after")
    def _references(self) -> Config:
        names = [m.name for m in self.monitors]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"monitor names must be unique; repeated: {duplicates}")
        known = set(self.notifiers) | {"log", "retrain"}
        for monitor in self.monitors:
            for handle in mentioned_handles(monitor.message):
                if handle not in known:
                    raise ValueError(
                        f"monitor {monitor.name!r} mentions @{handle}, which is not a notifier; "
                        f"known: {sorted(known)}"
                    )
        return self

    def path(self, relative: str) -> Path:
        """A path from the config, relative to the directory of the config file."""
        p = Path(relative)
        return p if p.is_absolute() else self.base_dir / p


def _substitute(node: Any, path: str, environ: Mapping[str, str], source: str) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, f"{path}.{k}" if path else str(k), environ, source)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, f"{path}[{i}]", environ, source) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if f"{name}_FILE" in environ:
            return _read_file_variable(name, environ, source, path)
        if default is not None:
            return default
        raise ConfigError(
            f"{source}: {path}: environment variable {name} is not set "
            f"(set it or {name}_FILE, put it in the secrets file, or write ${{{name}:-default}})"
        )

    return _ENV_REFERENCE.sub(replace, node)


def _apply_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for key, value in sorted(environ.items()):
        if not key.startswith(ENV_PREFIX) or key in {"DRIFTLOOP_CONFIG", "DRIFTLOOP_SECRETS_FILE"}:
            continue
        parts = [p.lower() for p in key[len(ENV_PREFIX):].split("__") if p]
        if not parts or parts[0] not in Config.model_fields or parts[0] == "base_dir":
            continue  # DRIFTLOOP_SERVICES_DIR, DRIFTLOOP_API_KEY ... are not config overrides
        node = raw
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        parsed = yaml.safe_load(value) if value else value
        node[parts[-1]] = parsed


def _read_secrets_file(path: Path) -> dict[str, str]:
    """A ``.env`` file, parsed by python-dotenv (quotes, ``export``, multi-line values,
    ``#`` comments); ``${VAR}`` inside it is not expanded."""
    from dotenv import dotenv_values

    if not path.is_file():
        raise ConfigError(f"DRIFTLOOP_SECRETS_FILE: {path}: no such file")
    secrets: dict[str, str] = {}
    for key, value in dotenv_values(path, interpolate=False).items():
        if value is None:
            raise ConfigError(f"{path}: {key}: expected KEY=value")
        secrets[key] = value
    return secrets


def _read_file_variable(name: str, environ: Mapping[str, str], source: str, path: str) -> str:
    """The secret ``${NAME}`` from the file ``$NAME_FILE`` names (Kubernetes and Docker
    secrets), without its final newline."""
    file = Path(environ[f"{name}_FILE"])
    try:
        return file.read_text().removesuffix("\n")
    except OSError as exc:
        raise ConfigError(f"{source}: {path}: {name}_FILE: cannot read {file}: "
                          f"{exc.strerror}") from None


def _format_validation_error(source: str, error: ValidationError) -> str:
    lines = [f"{source}: invalid configuration"]
    for item in error.errors():
        parts = [str(p) for p in item["loc"] if p != "function-after"]
        if len(parts) > 2 and parts[0] == "notifiers" and parts[2] in NOTIFIER_TYPES | {"plugin"}:
            del parts[2]  # the discriminator pydantic adds: notifiers.x.slack.webhook_url
        location = ".".join(parts)
        message = item["msg"].removeprefix("Value error, ")
        given = item.get("input")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        shown = "" if isinstance(given, dict | list) or given is None else f" (got {given!r})"
        if parts and is_secret_key(parts[-1]):
            shown = ""  # an error message must not show the secret it refuses
        shown = mask_url(shown)
        lines.append(f"  {location or '<root>'}: {message}{shown}")
    return "\n".join(lines)


def parse_config(
    text: str,
    *,
    source: str = CONFIG_FILENAME,
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Parse config text; ``environ`` defaults to the process environment."""
    env = dict(os.environ if environ is None else environ)
    try:
        raw = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level")
    raw = _substitute(raw, "", env, source)
    _apply_overrides(raw, env)
    raw["base_dir"] = (base_dir or Path.cwd()).resolve()
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(source, exc)) from None


def find_config(start: Path | None = None) -> Path | None:
    """``$DRIFTLOOP_CONFIG``, else ``driftloop.yaml`` in ``start`` or a parent directory."""
    explicit = os.environ.get("DRIFTLOOP_CONFIG")
    if explicit:
        return Path(explicit)
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / CONFIG_FILENAME
        if candidate.is_file():
            return candidate
    return None


def load_config(path: Path | str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Load ``driftloop.yaml`` (found as in :func:`find_config` when no path is given).

    Secrets may also come from a ``KEY=value`` file named by ``$DRIFTLOOP_SECRETS_FILE``;
    the real environment wins over it.
    """
    env = dict(os.environ if environ is None else environ)
    config_path = Path(path) if path is not None else find_config()
    if config_path is None:
        raise ConfigError(
            f"no {CONFIG_FILENAME} here or in a parent directory; run 'driftloop init' first"
        )
    if not config_path.is_file():
        raise ConfigError(f"{config_path}: no such config file")
    secrets_file = env.get("DRIFTLOOP_SECRETS_FILE")
    if secrets_file:
        env = {**_read_secrets_file(Path(secrets_file)), **env}
    return parse_config(
        config_path.read_text(),
        source=str(config_path),
        base_dir=config_path.resolve().parent,
        environ=env,
    )


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``driftloop.yaml``, for editors and CI checks."""
    schema = Config.model_json_schema()
    for name, field in Config.model_fields.items():
        if field.exclude:
            schema["properties"].pop(name, None)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "driftloop.yaml"
    return schema


def config_keys() -> list[str]:
    """Every documented config key path (``serving.port``, ``monitors[].below.warning`` ...)."""
    keys: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            if field.exclude:
                continue
            path = f"{prefix}{name}"
            keys.append(path)
            for nested in _nested_models(field.annotation):
                suffix = "[]." if _is_list(field.annotation) else "."
                walk(nested, path + suffix)

    walk(Config, "")
    for notifier in (SlackNotifierConfig, JiraNotifierConfig, WebhookNotifierConfig,
                     GithubDispatchNotifierConfig, LogNotifierConfig, RetrainNotifierConfig):
        walk(notifier, "notifiers.*.")
    walk(ModelConfig, "models.*.")
    return sorted(set(keys))


def _is_list(annotation: object) -> bool:
    return getattr(annotation, "__origin__", None) is list


def _nested_models(annotation: object) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation is not Threshold:
            found.append(annotation)
        return found
    origin = getattr(annotation, "__origin__", None)
    if origin is dict:
        return found
    for arg in getattr(annotation, "__args__", ()):
        found.extend(_nested_models(arg))
    return found

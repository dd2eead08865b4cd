"""The sections of a model and of the path its predictions take: ``models``, ``serving``,
``insights``, ``kafka``, ``dogstatsd`` and the metric store's retention (``metrics``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from driftloop.config.notifiers import standard_webhook_key
from driftloop.config.values import NAME_PATTERN, Duration, StrictModel


class DeployWebhookConfig(StrictModel):
    """A deploy hook called over HTTP: ``POST url`` with the deploy payload, signed with the
    Standard Webhooks headers when ``secret`` is set (docs/pipeline.md)."""

    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    secret: str | None = None
    """A ``whsec_`` secret (write it as ``${VAR}``): the payload is signed with it."""

    @model_validator(mode="after")
    def _standard_secret(self) -> DeployWebhookConfig:
        if self.secret:
            standard_webhook_key(self.secret, where="deploy.webhook.secret")
        return self


class DeployHookConfig(StrictModel):
    """``models.<name>.deploy``: the model is served elsewhere, and the pipeline deploys and
    rolls back through this hook (a webhook or a command) before it moves the registry's
    ``production`` alias (docs/pipeline.md, "Models served elsewhere")."""

    webhook: DeployWebhookConfig | None = None
    command: list[str] | None = Field(None, min_length=1)
    timeout: Duration = Field(60.0, gt=0)
    retries: int = Field(3, ge=0, le=10)
    """Further attempts after a 5xx answer or a connection error (webhook only)."""
    backoff: Duration = Field(1.0, ge=0)
    """The wait before the first retry, doubled before each next one."""

    @model_validator(mode="after")
    def _one_target(self) -> DeployHookConfig:
        if (self.webhook is None) == (self.command is None):
            raise ValueError("deploy takes exactly one of webhook or command")
        return self


GateMetric = Literal["macro_f1", "accuracy", "mae", "rmse"]
GATE_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("macro_f1", "accuracy"),
    "regression": ("rmse", "mae"),
}
"""The metrics the gate can decide on, per output kind; the first is the default."""


class GateConfig(StrictModel):
    primary_metric: GateMetric | None = Field(
        None,
        description="what the gate compares: macro_f1 | accuracy (classification), mae | rmse "
        "(regression); default macro_f1, or rmse for a regression model",
    )
    min_gain: float | None = Field(
        None,
        description="how much better the candidate must be on the primary metric, in its own "
        "units (a gain is a decrease for mae and rmse); default min_macro_f1_gain for macro_f1, "
        "else 0",
    )
    min_macro_f1_gain: float = 0.0
    max_ece_increase: float = Field(0.02, ge=0)

    def metric_for(self, output: str) -> str:
        """The primary metric for a model of this output kind."""
        return self.primary_metric or GATE_METRICS[output][0]

    @staticmethod
    def metrics_for(output: str) -> tuple[str, ...]:
        """The metrics that can gate a model of this output kind."""
        return GATE_METRICS[output]

    def margin_for(self, metric: str) -> float:
        """The gain ``metric`` must show, in its own units."""
        if self.min_gain is not None:
            return self.min_gain
        return self.min_macro_f1_gain if metric == "macro_f1" else 0.0


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
        None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="'package.module:Class', a driftloop.Predictor subclass that loads every "
        "version of this model (importing it runs its code)",
    )
    merge_feedback: bool = Field(
        False,
        description="retrain on the newest snapshot plus the labels that production "
        "feedback sent with their texts (stored as a new snapshot)",
    )
    output: Literal["classification", "regression"] = Field(
        "classification",
        description="what the model's trainer outputs: class probabilities, or a value per "
        "input (the label column then holds numbers); the held-out split and the gate follow it",
    )
    gate: GateConfig | None = Field(
        None, description="this model's quality gate, instead of pipeline.gate"
    )
    retrain_data: Literal["cumulative", "newest"] = Field(
        "cumulative",
        description="what a training learns from: every labeled row of every "
        "snapshot, the newest label of a text winning (cumulative), "
        "or the newest snapshot alone (newest)",
    )
    deploy: DeployHookConfig | None = Field(
        None,
        description="the model is served elsewhere: deploy and roll back through this hook, "
        "verify on the insights that server reports",
    )


def check_gate_metric(name: str, model: ModelConfig, pipeline_gate: GateConfig) -> None:
    """Refuse a gate metric that does not fit the model's output kind."""
    gate = model.gate or pipeline_gate
    metric = gate.primary_metric
    if metric is not None and metric not in GATE_METRICS[model.output]:
        where = f"models.{name}.gate" if model.gate else "pipeline.gate"
        raise ValueError(
            f"{where}.primary_metric {metric!r} cannot gate model {name!r}: it is a "
            f"{model.output} model (models.{name}.output); use one of "
            f"{', '.join(GATE_METRICS[model.output])}"
            + ("" if model.gate else f", in models.{name}.gate")
        )


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
    rate_limits: dict[RateLimitedScope, RateLimitConfig] = Field(default_factory=dict)
    max_feedback_items: int = Field(1000, ge=1)
    max_insight_points: int = Field(5_000, ge=1)
    max_queue_delay: Duration = Field(1.0, ge=0)
    prediction_log_retention: Duration = Field(7 * 86400.0, ge=60.0)
    feature_insights_rate: float = Field(0.25, ge=0.0, le=1.0)
    """The share of record inputs (served or logged) whose features are reported as
    ``feature.<name>`` insights (#19 part 5)."""


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
            raise ValueError(
                "kafka.dead_letter (a local file) is gone: messages that cannot be "
                "decoded or stored now go to a dead-letter topic, "
                "kafka.dead_letter_topic (default <topic>.dead-letter); remove "
                "the key (docs/scaling.md)"
            )
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

"""``driftloop.yaml``: parsed into pydantic models, with ``${VAR}`` / ``${VAR:-default}`` secrets
from the environment and ``DRIFTLOOP_*`` overrides (``DRIFTLOOP_STORE``,
``DRIFTLOOP_SERVING__PORT``: a double underscore descends one level).

Every rejection names the file, the key path and what was expected.

One module per part: :mod:`~driftloop.config.values` (durations, names, thresholds),
:mod:`~driftloop.config.monitors`, :mod:`~driftloop.config.serving` (models, serving and the
insight path), :mod:`~driftloop.config.notifiers` (and the inbound hooks),
:mod:`~driftloop.config.root` (``Config`` and its small sections) and
:mod:`~driftloop.config.loading` (reading the file, secrets and overrides). Import every name
from ``driftloop.config``.
"""

from driftloop.config.loading import (
    CONFIG_FILENAME,
    ENV_PREFIX,
    config_json_schema,
    config_keys,
    find_config,
    load_config,
    parse_config,
)
from driftloop.config.monitors import (
    DETECTOR_ALGORITHMS,
    DETECTOR_PLUGINS,
    DetectorConfig,
    MonitorConfig,
    NoDataConfig,
)
from driftloop.config.notifiers import (
    NOTIFIER_PLUGINS,
    NOTIFIER_TYPES,
    STANDARD_SECRET_PREFIX,
    GithubDispatchNotifierConfig,
    HooksConfig,
    JiraNotifierConfig,
    LogNotifierConfig,
    NotifierConfig,
    PluginNotifierConfig,
    RetrainNotifierConfig,
    SlackNotifierConfig,
    WebhookNotifierConfig,
    WebhookSignature,
    standard_webhook_key,
)
from driftloop.config.root import (
    REMOVED_PIPELINE_KEYS,
    Config,
    ControlConfig,
    DashboardConfig,
    LoggingConfig,
    PipelineConfig,
)
from driftloop.config.serving import (
    DeployHookConfig,
    DeployWebhookConfig,
    DogStatsdConfig,
    GateConfig,
    InsightsConfig,
    KafkaConfig,
    MetricsConfig,
    ModelConfig,
    RateLimitConfig,
    RateLimitedScope,
    ServingConfig,
)
from driftloop.config.values import (
    NAME_PATTERN,
    Duration,
    Name,
    StrictModel,
    Threshold,
    Thresholds,
    ThresholdValue,
    parse_duration,
)

__all__ = [
    "CONFIG_FILENAME",
    "DETECTOR_ALGORITHMS",
    "DETECTOR_PLUGINS",
    "ENV_PREFIX",
    "NAME_PATTERN",
    "NOTIFIER_PLUGINS",
    "NOTIFIER_TYPES",
    "REMOVED_PIPELINE_KEYS",
    "STANDARD_SECRET_PREFIX",
    "Config",
    "ControlConfig",
    "DashboardConfig",
    "DeployHookConfig",
    "DeployWebhookConfig",
    "DetectorConfig",
    "DogStatsdConfig",
    "Duration",
    "GateConfig",
    "GithubDispatchNotifierConfig",
    "HooksConfig",
    "InsightsConfig",
    "JiraNotifierConfig",
    "KafkaConfig",
    "LogNotifierConfig",
    "LoggingConfig",
    "MetricsConfig",
    "ModelConfig",
    "MonitorConfig",
    "Name",
    "NoDataConfig",
    "NotifierConfig",
    "PipelineConfig",
    "PluginNotifierConfig",
    "RateLimitConfig",
    "RateLimitedScope",
    "RetrainNotifierConfig",
    "ServingConfig",
    "SlackNotifierConfig",
    "StrictModel",
    "Threshold",
    "ThresholdValue",
    "Thresholds",
    "WebhookNotifierConfig",
    "WebhookSignature",
    "config_json_schema",
    "config_keys",
    "find_config",
    "load_config",
    "parse_config",
    "parse_duration",
    "standard_webhook_key",
]

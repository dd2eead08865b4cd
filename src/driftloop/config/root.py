"""``Config``, the whole of ``driftloop.yaml``, and its small sections (``pipeline``,
``dashboard``, ``logging``, ``control``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from driftloop.config.monitors import MonitorConfig, check_feature_set_model
from driftloop.config.notifiers import HooksConfig, NotifierConfig
from driftloop.config.serving import (
    DogStatsdConfig,
    GateConfig,
    InsightsConfig,
    KafkaConfig,
    MetricsConfig,
    ModelConfig,
    ServingConfig,
    check_gate_metric,
)
from driftloop.config.values import NAME_PATTERN, Duration, StrictModel
from driftloop.messages import mentioned_handles

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
            raise ValueError(
                f"control.renew_interval ({self.renew_interval:g}s) must be "
                f"shorter than control.lease_duration ({self.lease_duration:g}s)"
            )
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
            check_feature_set_model(monitor, self.models)
        for name, model in self.models.items():
            check_gate_metric(name, model, self.pipeline.gate)
        return self

    def path(self, relative: str) -> Path:
        """A path from the config, relative to the directory of the config file."""
        p = Path(relative)
        return p if p.is_absolute() else self.base_dir / p

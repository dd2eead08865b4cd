"""driftloop: keep a deployed model from drifting.

serve → report insights → monitor → notify → retrain → gate → deploy → verify.
"""

from driftloop._version import __version__
from driftloop.config import Config, MonitorConfig, load_config, parse_config
from driftloop.errors import (
    AuthError,
    BackendUnavailableError,
    ConfigError,
    ConflictError,
    DriftloopError,
    ForbiddenError,
    IntegrityError,
    InvalidInputError,
    MissingExtraError,
    NotFoundError,
    PayloadTooLargeError,
    TrainingError,
    UnknownBackendError,
)
from driftloop.insights import configure_insights, report_insights

__all__ = [
    "AuthError",
    "BackendUnavailableError",
    "Config",
    "ConfigError",
    "ConflictError",
    "DriftloopError",
    "ForbiddenError",
    "IntegrityError",
    "InvalidInputError",
    "MissingExtraError",
    "MonitorConfig",
    "NotFoundError",
    "PayloadTooLargeError",
    "TrainingError",
    "UnknownBackendError",
    "__version__",
    "configure_insights",
    "load_config",
    "parse_config",
    "report_insights",
]

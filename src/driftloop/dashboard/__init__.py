"""The dashboard (a page served by the app, live) and the static report (HTML + PNG + JSON)."""

from driftloop.dashboard.data import (
    ActivityEvent,
    ChartMark,
    ChartPoint,
    DashboardData,
    IncidentRecord,
    JobRecord,
    JobStepRecord,
    MetricChart,
    ModelSnapshot,
    ModelSummary,
    MonitorStatus,
    TimelineEntry,
    VersionRecord,
    snapshot,
)
from driftloop.dashboard.report import ReportPaths, generate_report, parse_since
from driftloop.dashboard.router import (
    KeyVerifier,
    RequestAuthenticator,
    dashboard_router,
    header_authenticator,
)
from driftloop.dashboard.sessions import (
    SECRET_FILE,
    SESSION_COOKIE,
    DashboardSession,
    SessionSigner,
    load_session_secret,
)
from driftloop.dashboard.sources import StoreDashboardData

__all__ = [
    "SECRET_FILE",
    "SESSION_COOKIE",
    "ActivityEvent",
    "ChartMark",
    "ChartPoint",
    "DashboardData",
    "DashboardSession",
    "IncidentRecord",
    "JobRecord",
    "JobStepRecord",
    "KeyVerifier",
    "MetricChart",
    "ModelSnapshot",
    "ModelSummary",
    "MonitorStatus",
    "ReportPaths",
    "RequestAuthenticator",
    "SessionSigner",
    "StoreDashboardData",
    "TimelineEntry",
    "VersionRecord",
    "dashboard_router",
    "generate_report",
    "header_authenticator",
    "load_session_secret",
    "parse_since",
    "snapshot",
]

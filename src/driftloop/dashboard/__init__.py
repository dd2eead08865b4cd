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
from driftloop.dashboard.router import CONTENT_SECURITY_POLICY, dashboard_router
from driftloop.dashboard.sessions import (
    SECRET_ENV,
    SECRET_FILE,
    SESSION_COOKIE,
    DashboardSession,
    SessionSigner,
    SessionStore,
    StoredSession,
    load_session_secret,
    resolve_session_secret,
)
from driftloop.dashboard.sources import StoreDashboardData

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "SECRET_ENV",
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
    "MetricChart",
    "ModelSnapshot",
    "ModelSummary",
    "MonitorStatus",
    "ReportPaths",
    "SessionSigner",
    "SessionStore",
    "StoreDashboardData",
    "StoredSession",
    "TimelineEntry",
    "VersionRecord",
    "dashboard_router",
    "generate_report",
    "load_session_secret",
    "parse_since",
    "resolve_session_secret",
    "snapshot",
]

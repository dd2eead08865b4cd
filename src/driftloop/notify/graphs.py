"""PNG graphs of a metric's recent values with the thresholds drawn, and the store that keeps
them for ``GET /v1/graphs/<id>.png`` (:mod:`driftloop.notify.graph_routes` serves them)."""

from __future__ import annotations

import io
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC

import sqlalchemy as sa

from driftloop.database.core import Database
from driftloop.errors import InvalidInputError, NotFoundError
from driftloop.metrics.points import SeriesPoint
from driftloop.notify.base import Notification, ThresholdLines
from driftloop.notify.tables import notify_graphs

WARNING_COLOR = "#f2a900"
CRITICAL_COLOR = "#d62728"
VALUE_COLOR = "#1f77b4"
_DAY = 86400.0
_GRAPH_ID = re.compile(r"^[0-9a-f]{32}$")
_matplotlib_lock = threading.Lock()


def render_graph(
    series: Sequence[SeriesPoint],
    thresholds: ThresholdLines,
    *,
    title: str,
    event_time: float | None = None,
    width: float = 8.0,
    height: float = 3.2,
    dpi: int = 100,
) -> bytes:
    """A PNG: the average per bucket, its minimum shaded, thresholds as dashed lines."""
    if not series:
        raise InvalidInputError("a graph needs at least one point of the metric")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    # matplotlib dates: days since its epoch, 1970-01-01 by default
    times = [p.timestamp / _DAY for p in series]
    averages = [p.avg for p in series]
    minimums = [p.min for p in series]
    with _matplotlib_lock:
        figure = Figure(figsize=(width, height), dpi=dpi)
        axes = figure.add_subplot()
        axes.plot(times, averages, color=VALUE_COLOR, linewidth=2, label="avg")
        axes.fill_between(times, minimums, averages, color=VALUE_COLOR, alpha=0.15, label="min")
        if thresholds.warning is not None:
            axes.axhline(
                thresholds.warning,
                color=WARNING_COLOR,
                linestyle="--",
                linewidth=2,
                label=f"warning {thresholds.warning:g}",
            )
        if thresholds.critical is not None:
            axes.axhline(
                thresholds.critical,
                color=CRITICAL_COLOR,
                linestyle="--",
                linewidth=2,
                label=f"critical {thresholds.critical:g}",
            )
        if event_time is not None:
            axes.axvline(event_time / _DAY, color="#555555", linestyle=":", linewidth=1)
        axes.xaxis_date(UTC)
        axes.set_title(title, fontsize=10)
        axes.grid(alpha=0.3)
        axes.legend(loc="best", fontsize=8)
        figure.autofmt_xdate()
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    return buffer.getvalue()


def notification_graph(notification: Notification) -> bytes | None:
    """The graph for a notification, or ``None`` when it carries no series."""
    if not notification.series:
        return None
    return render_graph(
        notification.series,
        notification.thresholds,
        title=notification.title,
        event_time=notification.event.timestamp,
    )


class GraphStore:
    """PNG bytes by id, in the store's ``notify_graphs`` table (shared by every replica)."""

    def __init__(self, database: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._database_engine = database.engine
        self._clock = clock

    def put(self, png: bytes, *, monitor: str = "") -> str:
        if not png.startswith(b"\x89PNG\r\n\x1a\n"):
            raise InvalidInputError("the graph store keeps PNG images only")
        graph_id = uuid.uuid4().hex
        with self._database_engine.begin() as connection:
            connection.execute(
                notify_graphs.insert().values(
                    graph_id=graph_id, monitor=monitor[:256], png=png, created_at=self._clock()
                )
            )
        return graph_id

    def get(self, graph_id: str) -> bytes:
        """The PNG bytes; :class:`NotFoundError` for an unknown or malformed id."""
        if not _GRAPH_ID.match(graph_id):
            raise NotFoundError(f"no graph {graph_id!r}")
        with self._database_engine.connect() as connection:
            png = connection.execute(
                sa.select(notify_graphs.c.png).where(notify_graphs.c.graph_id == graph_id)
            ).scalar()
        if png is None:
            raise NotFoundError(f"no graph {graph_id!r}")
        return bytes(png)

    def prune(self, older_than: float) -> int:
        """Delete graphs created more than ``older_than`` seconds ago; returns how many."""
        cutoff = self._clock() - older_than
        with self._database_engine.begin() as connection:
            result = connection.execute(
                notify_graphs.delete().where(notify_graphs.c.created_at < cutoff)
            )
        return int(result.rowcount or 0)


def graph_url(public_url: str, graph_id: str) -> str:
    return f"{public_url.rstrip('/')}/v1/graphs/{graph_id}.png"

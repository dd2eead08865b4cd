"""The one timestamp format of driftloop's JSON: ISO 8601 in UTC with its offset,
``2026-12-01T15:04:05.123456+00:00``, as ``datetime.isoformat`` writes an aware UTC time and
``datetime.fromisoformat`` reads it back. Every API body and every ``--json`` output uses it;
stored rows and in-memory records keep their own types (seconds since the epoch, datetimes)."""

from __future__ import annotations

import math
from datetime import UTC, datetime


def iso_utc(moment: float | datetime | None) -> str | None:
    """``moment`` (seconds since the epoch, or a datetime, naive ones taken as UTC) as ISO 8601
    UTC; ``None`` stays ``None``."""
    if moment is None:
        return None
    if isinstance(moment, datetime):
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat()
    return datetime.fromtimestamp(float(moment), UTC).isoformat()


def epoch_seconds(text: str) -> float:
    """What :func:`iso_utc` wrote, back as seconds since the epoch."""
    parsed = datetime.fromisoformat(text)
    return (parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)).timestamp()


def text_utc(moment: float | datetime | None, missing: str = "") -> str:
    """``moment`` for a person: ``2026-12-01 15:04:05`` in UTC (what tables and timelines show,
    as the dashboard does); ``missing`` for ``None``."""
    iso = iso_utc(moment)
    return missing if iso is None else iso[:19].replace("T", " ")


def parse_moment(text: str, name: str) -> float:
    """A moment given by a user (a query parameter, an option): ISO 8601 (a time without an
    offset is UTC) or seconds since the epoch; anything else is an :class:`InvalidInputError`
    naming ``name``."""
    from driftloop.errors import InvalidInputError

    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = epoch_seconds(text.strip())
        except ValueError:
            raise InvalidInputError(
                f"{name}: {text[:64]!r} is neither ISO 8601 nor seconds since the epoch"
            ) from None
    if not math.isfinite(seconds) or not text.isascii():
        raise InvalidInputError(f"{name}: {text[:64]!r} is not a moment")
    return seconds

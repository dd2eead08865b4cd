"""One timestamp format in every JSON body (#21 part 5): the check the API and CLI tests share."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

TIME_KEYS = frozenset(
    {
        "timestamp",
        "since",
        "last_evaluated",
        "last_data_at",
        "last_notified",
        "first_seen",
        "cursor",
    }
)


def is_time_key(key: str) -> bool:
    return key in TIME_KEYS or key.endswith("_at")


def iso_times(body: Any, where: str = "$") -> list[str]:
    """The paths of every moment in ``body``; fails on one that is not ISO 8601 UTC."""
    found: list[str] = []
    if isinstance(body, dict):
        for key, value in body.items():
            path = f"{where}.{key}"
            if is_time_key(str(key)) and value is not None and not isinstance(value, dict):
                assert isinstance(value, str), f"{path} is {value!r}, not ISO 8601"
                assert datetime.fromisoformat(value).utcoffset() == timedelta(0), path
                found.append(path)
            else:
                found += iso_times(value, path)
    elif isinstance(body, list):
        for index, item in enumerate(body):
            found += iso_times(item, f"{where}[{index}]")
    return found

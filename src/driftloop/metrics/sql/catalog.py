"""The series catalogue: the id of every (name, tags) series, created on first write, and the
tags of every id, both cached for the life of the store.

Tags are canonical JSON on the series row (no JSON operators, which SQLite and PostgreSQL do not
share), so queries filter and group them in Python."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as SqlIntegrityError

from driftloop.database import Database
from driftloop.errors import InvalidInputError
from driftloop.metrics.points import TagFilter
from driftloop.metrics.sql.rows import WRITE_ATTEMPTS, backend_errors, chunks
from driftloop.metrics.tables import metric_series

MAX_NAME = 200
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]
"""A series' name and its tags as (tag, value) pairs in the order the writer gave them."""

_SERIES_BY_NAME = sa.select(metric_series.c.series_id, metric_series.c.tags).where(
    metric_series.c.name == sa.bindparam("name")
)


def _canonical_tags(tags: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(tags.items())), separators=(",", ":"), ensure_ascii=False)


def _check_series(name: str, items: tuple[tuple[str, str], ...]) -> None:
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
        raise InvalidInputError(
            f"metric name must be a string of 1 to {MAX_NAME} characters, got {name!r}; "
            "nothing of this batch was stored"
        )
    for tag, tag_value in items:
        if not isinstance(tag, str) or not isinstance(tag_value, str) or not tag:
            raise InvalidInputError(
                f"metric {name!r}: tags must map non-empty strings to strings, got "
                f"{tag!r}: {tag_value!r}; nothing of this batch was stored"
            )


class SeriesCatalog:
    """Series ids by (name, tags) and tags by series id, on ``database``'s ``metric_series``."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._lock = threading.Lock()
        self._series_ids: dict[SeriesKey, int] = {}
        self._series_tags: dict[int, dict[str, str]] = {}

    def resolve(self, names: Sequence[str], tags: Sequence[Mapping[str, str]]) -> list[int]:
        """The series id of every point, creating the series that do not exist yet. Points of
        one batch share a few tags mappings (the SDK's reports carry one each, a caller's fixed
        tags one for all): each distinct (name, mapping) pair is looked up once, keyed on the
        mapping's id, which is safe while ``tags`` keeps every mapping alive, as it does for
        the whole call."""
        tag_ids = list(map(id, tags))
        try:
            keys = list(zip(names, tag_ids, strict=True))
            distinct = dict.fromkeys(keys)
        except TypeError as exc:
            raise InvalidInputError(
                f"metric names must be strings: {exc}; nothing of this batch was stored"
            ) from exc
        mapping_of = dict(zip(tag_ids, tags, strict=True))
        content: dict[tuple[str, int], SeriesKey] = {}
        for key in distinct:
            mapping = mapping_of[key[1]]
            if type(mapping) is not dict and not isinstance(mapping, Mapping):
                raise InvalidInputError(
                    f"metric {key[0]!r}: tags must be a mapping, got {type(mapping).__name__}; "
                    "nothing of this batch was stored"
                )
            content[key] = (key[0], tuple(mapping.items()))
        with self._lock:
            missing = {series for series in content.values() if series not in self._series_ids}
        if missing:
            self._create(missing)
        with self._lock:
            series_of = {key: self._series_ids[series] for key, series in content.items()}
        return list(map(series_of.__getitem__, keys))

    def _create(self, keys: set[SeriesKey]) -> None:
        wanted: dict[str, tuple[SeriesKey, str]] = {}
        aliases: dict[SeriesKey, str] = {}
        for key in keys:
            name, items = key
            _check_series(name, items)
            tags_json = _canonical_tags(dict(items))
            key_hash = hashlib.sha1(f"{name}\x00{tags_json}".encode(), usedforsecurity=False)
            aliases[key] = key_hash.hexdigest()
            wanted[key_hash.hexdigest()] = (key, tags_json)
        with backend_errors(self.database):
            for attempt in range(WRITE_ATTEMPTS):
                try:
                    with self.database.engine.begin() as connection:
                        found = self._by_hash(connection, list(wanted))
                        new = [
                            {"name": key[0], "tags": tags_json, "key_hash": h}
                            for h, (key, tags_json) in wanted.items()
                            if h not in found
                        ]
                        if new:
                            connection.execute(metric_series.insert(), new)
                            found = self._by_hash(connection, list(wanted))
                    break
                except SqlIntegrityError:
                    if attempt == WRITE_ATTEMPTS - 1:
                        raise
        with self._lock:
            for key, h in aliases.items():
                self._series_ids[key] = found[h]
                self._series_tags[found[h]] = dict(key[1])

    @staticmethod
    def _by_hash(connection: Connection, hashes: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in chunks(hashes):
            rows = connection.execute(
                sa.select(metric_series.c.key_hash, metric_series.c.series_id).where(
                    metric_series.c.key_hash.in_(chunk)
                )
            )
            found.update({row[0]: int(row[1]) for row in rows})
        return found

    def matching(
        self, connection: Connection, metric: str, filter: TagFilter | None
    ) -> dict[int, dict[str, str]]:
        """The tags of every series of ``metric`` that ``filter`` lets through, by id."""
        rows = connection.execute(_SERIES_BY_NAME, {"name": metric}).all()
        matched: dict[int, dict[str, str]] = {}
        for row in rows:
            series_id = int(row[0])
            tags = self._series_tags.get(series_id)
            if tags is None:
                tags = {str(k): str(v) for k, v in json.loads(row[1]).items()}
                with self._lock:
                    self._series_tags[series_id] = tags
            if filter and any(tags.get(k) != v for k, v in filter.items()):
                continue
            matched[series_id] = tags
        return matched

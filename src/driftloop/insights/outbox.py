"""The on-disk outbox: insight points the transport could not take yet, kept until it can.

Layout of an outbox directory (one per process: :meth:`Outbox.open_slot` hands each process of
a multi-worker server its own ``slot-N`` under ``insights.outbox``, held with an exclusive
``flock``, so a restarted worker finds and replays what its predecessor left)::

    slot-0/
      lock                       flock'd while a process owns the slot
      cursor.json                {"segment": 3, "offset": 1234}: where replay resumes
      segment-000000000003.jsonl append-only, one JSON point per line
      segment-000000000004.jsonl
      quarantine.jsonl           lines that could not be parsed (kept, never replayed)

Points are appended to the newest segment and read back from the cursor in the order they were
written; a consumed batch is committed by moving the cursor (written atomically), and segments
wholly behind the cursor are deleted. A crash between a publish and its commit replays that
batch again, which downstream deduplicates by ``point_id``. A partial last line (a crash in the
middle of a write that was never fsync'd) is cut off when the outbox is reopened.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from driftloop.errors import ConflictError, IntegrityError
from driftloop.metrics.points import MetricPoint

logger = logging.getLogger(__name__)

SEGMENT_PREFIX = "segment-"
SEGMENT_SUFFIX = ".jsonl"
CURSOR_FILE = "cursor.json"
LOCK_FILE = "lock"
QUARANTINE_FILE = "quarantine.jsonl"
MAX_SLOTS = 1024


@dataclass(frozen=True)
class OutboxBatch:
    """Points read from the outbox, not yet committed."""

    points: list[MetricPoint]
    end_segment: int
    end_offset: int
    lines: int
    """Lines consumed (points plus any quarantined lines)."""


def encode_point(point: MetricPoint) -> str:
    return json.dumps(
        {
            "id": point.point_id,
            "n": point.name,
            "v": point.value,
            "t": point.timestamp,
            "g": dict(point.tags),
        },
        separators=(",", ":"),
    )


def decode_point(
    line: str, shared_tags: dict[tuple[tuple[str, str], ...], dict[str, str]] | None = None
) -> MetricPoint:
    """The point of one line. With ``shared_tags`` (a dict the caller keeps for a batch),
    points with equal tags get one shared mapping, which the metric store resolves once."""
    data: Any = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    tags = data.get("g") or {}
    if not isinstance(tags, dict):
        raise ValueError("tags are not an object")
    clean = {str(k): str(v) for k, v in tags.items()}
    if shared_tags is not None:
        clean = shared_tags.setdefault(tuple(clean.items()), clean)
    return MetricPoint(
        name=str(data["n"]),
        value=float(data["v"]),
        timestamp=float(data["t"]),
        tags=clean,
        point_id=None if data.get("id") is None else str(data["id"]),
    )


class Outbox:
    """Append-only JSONL segments with a replay cursor; safe to use from several threads."""

    def __init__(self, directory: Path | str, *, segment_max_points: int = 50_000) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_max_points = segment_max_points
        self._lock = threading.RLock()
        self._lock_file = (self.directory / LOCK_FILE).open("a+b")
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise ConflictError(f"outbox {self.directory} is in use by another process") from None
        self._closed = False
        self._dirty = False
        self._read_segment, self._read_offset = self._load_cursor()
        segments = self._segments()
        for number in segments:
            if number < self._read_segment:
                (self._segment_path(number)).unlink(missing_ok=True)
        segments = [n for n in segments if n >= self._read_segment]
        if segments:
            self._repair_tail(segments[-1])
        self._pending = sum(self._count_lines(n) for n in segments)
        if segments:
            self._write_segment = segments[-1]
        else:
            self._write_segment = self._read_segment + 1
            self._read_segment, self._read_offset = self._write_segment, 0
        self._write_count = self._lines_in(self._write_segment)
        self._writer: IO[bytes] = self._segment_path(self._write_segment).open("ab")

    @classmethod
    def open_slot(cls, base: Path | str, **options: Any) -> Outbox:
        """The first outbox ``base/slot-N`` no other process holds (one per server worker)."""
        base_path = Path(base)
        for index in range(MAX_SLOTS):
            try:
                return cls(base_path / f"slot-{index}", **options)
            except ConflictError:
                continue
        raise ConflictError(f"all {MAX_SLOTS} outbox slots under {base_path} are in use")

    # --- writing -------------------------------------------------------------------------

    def append(self, points: Sequence[MetricPoint], *, sync: bool = True) -> None:
        """Append points in order; ``sync`` fsyncs now, else at the next :meth:`sync`."""
        if not points:
            return
        with self._lock:
            self._check_open()
            for point in points:
                self._writer.write(encode_point(point).encode() + b"\n")
                self._write_count += 1
                self._pending += 1
                if self._write_count >= self.segment_max_points:
                    self._rotate()
            self._writer.flush()
            self._dirty = True
            if sync:
                self.sync()

    def sync(self) -> None:
        """fsync what was appended since the last sync."""
        with self._lock:
            if self._dirty and not self._closed:
                os.fsync(self._writer.fileno())
                self._dirty = False

    def _rotate(self) -> None:
        self._writer.flush()
        os.fsync(self._writer.fileno())
        self._writer.close()
        self._write_segment += 1
        self._write_count = 0
        self._writer = self._segment_path(self._write_segment).open("ab")
        _fsync_directory(self.directory)

    # --- reading -------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Points written and not yet committed as replayed."""
        return self._pending

    def read(self, max_points: int) -> OutboxBatch | None:
        """Up to ``max_points`` of the oldest uncommitted points, in write order."""
        with self._lock:
            self._check_open()
            if self._pending == 0:
                return None
            self._writer.flush()
            points: list[MetricPoint] = []
            shared_tags: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
            lines = 0
            segment, offset = self._read_segment, self._read_offset
            while len(points) < max_points:
                path = self._segment_path(segment)
                with contextlib.suppress(FileNotFoundError), path.open("rb") as handle:
                    handle.seek(offset)
                    while len(points) < max_points:
                        raw = handle.readline()
                        if not raw.endswith(b"\n"):
                            break
                        offset += len(raw)
                        lines += 1
                        try:
                            points.append(decode_point(raw.decode(), shared_tags))
                        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
                            self._quarantine(raw, segment, exc)
                if len(points) >= max_points or segment >= self._write_segment:
                    break
                segment, offset = segment + 1, 0
            if lines == 0:
                return None
            return OutboxBatch(points, segment, offset, lines)

    def commit(self, batch: OutboxBatch) -> None:
        """Mark a batch read by :meth:`read` as delivered: move the cursor, drop old segments."""
        with self._lock:
            self._check_open()
            if (batch.end_segment, batch.end_offset) < (self._read_segment, self._read_offset):
                raise IntegrityError("outbox batch committed twice or out of order")
            old_segment = self._read_segment
            self._read_segment, self._read_offset = batch.end_segment, batch.end_offset
            self._pending -= batch.lines
            self._save_cursor()
            for number in range(old_segment, self._read_segment):
                self._segment_path(number).unlink(missing_ok=True)
            if self._pending == 0 and self._write_count >= self.segment_max_points // 2:
                # drained after a long outage: start a fresh segment, delete the consumed one
                self._rotate()
                self._segment_path(self._read_segment).unlink(missing_ok=True)
                self._read_segment, self._read_offset = self._write_segment, 0
                self._save_cursor()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self.sync()
            self._writer.close()
            self._closed = True
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()

    # --- internals -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ConflictError(f"outbox {self.directory} is closed")

    def _segment_path(self, number: int) -> Path:
        return self.directory / f"{SEGMENT_PREFIX}{number:012d}{SEGMENT_SUFFIX}"

    def _segments(self) -> list[int]:
        numbers: list[int] = []
        for path in self.directory.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}"):
            stem = path.name[len(SEGMENT_PREFIX) : -len(SEGMENT_SUFFIX)]
            if stem.isdigit():
                numbers.append(int(stem))
        return sorted(numbers)

    def _load_cursor(self) -> tuple[int, int]:
        path = self.directory / CURSOR_FILE
        if not path.is_file():
            return 1, 0
        try:
            data = json.loads(path.read_text())
            return int(data["segment"]), int(data["offset"])
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"outbox cursor {path} is corrupt: {exc}") from exc

    def _save_cursor(self) -> None:
        path = self.directory / CURSOR_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(
            json.dumps({"segment": self._read_segment, "offset": self._read_offset})
        )
        os.replace(temporary, path)

    def _repair_tail(self, number: int) -> None:
        path = self._segment_path(number)
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            logger.warning(
                "outbox %s: cutting a partial last line (%d bytes) left by a crash",
                path,
                len(data) - keep,
            )
            with path.open("r+b") as handle:
                handle.truncate(keep)

    def _count_lines(self, number: int) -> int:
        path = self._segment_path(number)
        with path.open("rb") as handle:
            if number == self._read_segment:
                handle.seek(self._read_offset)
            return sum(1 for _ in handle)

    def _lines_in(self, number: int) -> int:
        path = self._segment_path(number)
        if not path.is_file():
            return 0
        with path.open("rb") as handle:
            return sum(1 for _ in handle)

    def _quarantine(self, raw: bytes, segment: int, exc: Exception) -> None:
        logger.error(
            "outbox segment %d: unreadable line moved to %s: %s", segment, QUARANTINE_FILE, exc
        )
        with (self.directory / QUARANTINE_FILE).open("ab") as handle:
            handle.write(raw)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

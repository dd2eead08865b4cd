"""Datasets as immutable snapshots in object storage.

Layout: ``datasets/<name>/<snapshot-id>/data.csv.gz`` (the rows as CSV, gzip) and
``datasets/<name>/<snapshot-id>/manifest.json`` (row count, content hash, created time, columns).
The data is written first and the manifest last, each atomically, so a snapshot exists exactly
when its manifest does, and a reader never sees a partial one. Nothing rewrites a snapshot.

**Newest snapshot**: the one with the greatest ``created_at`` (UTC, microsecond resolution,
taken when it was pushed); two snapshots created in the same microsecond are ordered by
``snapshot_id`` (greater is newer). Snapshot ids start with the creation time
(``20250101T120000123456Z-1a2b3c4d``), so both orders agree.

The ``content_hash`` is the SHA-256 of the uncompressed CSV bytes; :meth:`DatasetStore.load`
checks it every time. Every column loads as text (empty cells are empty strings).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftloop.config import NAME_PATTERN, Config
from driftloop.errors import ConfigError, IntegrityError, InvalidInputError, NotFoundError
from driftloop.objectstore.storage import ObjectStorage, open_storage

if TYPE_CHECKING:  # imported where frames are read or built: listing snapshots needs no pandas
    import pandas as pd

DATASETS_PREFIX = "datasets"
DATA_FILE = "data.csv.gz"
MANIFEST_FILE = "manifest.json"
BUNDLED_DATASET = "reviews"
BUNDLED_COLUMNS = ("text", "label", "topic", "subtopic", "source")


@dataclass(frozen=True)
class Snapshot:
    """One immutable version of a dataset."""

    dataset: str
    snapshot_id: str
    created_at: datetime
    row_count: int
    content_hash: str
    columns: tuple[str, ...]
    key: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "snapshot_id": self.snapshot_id,
            "created_at": self.created_at.isoformat(),
            "row_count": self.row_count,
            "content_hash": self.content_hash,
            "columns": list(self.columns),
            "key": self.key,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        return cls(
            dataset=str(data["dataset"]),
            snapshot_id=str(data["snapshot_id"]),
            created_at=datetime.fromisoformat(str(data["created_at"])),
            row_count=int(data["row_count"]),
            content_hash=str(data["content_hash"]),
            columns=tuple(str(c) for c in data["columns"]),
            key=str(data["key"]),
        )

    @property
    def order(self) -> tuple[datetime, str]:
        """The sort key that defines "newest": created time, then snapshot id."""
        return (self.created_at, self.snapshot_id)


def check_dataset_name(dataset: str) -> str:
    if not re.match(NAME_PATTERN, dataset):
        raise InvalidInputError(
            f"dataset name {dataset!r} must match {NAME_PATTERN} (lower case, digits, . _ -)"
        )
    return dataset


def canonical_csv(frame: pd.DataFrame) -> bytes:
    """The bytes a snapshot stores (and hashes) for a frame. Fields are quoted where CSV needs
    it, and every field when a value holds a carriage return: Python's CSV writer leaves a bare
    ``\r`` unquoted (with ``\n`` line ends), and a reader would split the row there."""
    if _holds_carriage_return(frame):
        text = frame.to_csv(index=False, lineterminator="\n", quoting=csv.QUOTE_ALL)
    else:
        text = frame.to_csv(index=False, lineterminator="\n")
    return text.encode("utf-8")


def _holds_carriage_return(frame: pd.DataFrame) -> bool:
    if any("\r" in str(column) for column in frame.columns):
        return True
    return any(
        frame[column].astype(str).str.contains("\r", regex=False).any() for column in frame.columns
    )


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV (``.csv``, ``.csv.gz``, ...: compression from the suffix) or Parquet file."""
    import pandas as pd

    if not path.is_file():
        raise NotFoundError(f"no such file: {path}")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as exc:
        raise InvalidInputError(f"{path} is empty: a dataset needs a header and rows") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise InvalidInputError(f"{path} is not a readable CSV or Parquet file: {exc}") from exc
    except ImportError as exc:
        raise InvalidInputError(f"reading {path} needs pyarrow: {exc}") from exc


class DatasetStore:
    """Pushes, lists and loads dataset snapshots in an :class:`ObjectStorage`."""

    def __init__(self, storage: ObjectStorage) -> None:
        self.storage = storage

    @classmethod
    def from_config(cls, config: Config) -> DatasetStore:
        return cls(open_storage(config.storage, base_dir=config.base_dir))

    def push(self, source: Path | str | pd.DataFrame, dataset: str) -> Snapshot:
        """Store a file or frame as a new snapshot of ``dataset``."""
        import pandas as pd

        check_dataset_name(dataset)
        frame = source if isinstance(source, pd.DataFrame) else read_table(Path(source))
        if len(frame.columns) == 0 or len(frame) == 0:
            raise InvalidInputError(f"refusing to push an empty dataset to {dataset!r}: no rows")
        columns = [str(c) for c in frame.columns]
        duplicated = sorted({c for c in columns if columns.count(c) > 1})
        if duplicated:
            raise InvalidInputError(f"dataset columns must be unique; repeated: {duplicated}")
        data = canonical_csv(frame)
        created_at = datetime.now(UTC)
        snapshot_id = f"{created_at:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}"
        prefix = f"{DATASETS_PREFIX}/{dataset}/{snapshot_id}"
        snapshot = Snapshot(
            dataset=dataset,
            snapshot_id=snapshot_id,
            created_at=created_at,
            row_count=len(frame),
            content_hash=hashlib.sha256(data).hexdigest(),
            columns=tuple(columns),
            key=f"{prefix}/{DATA_FILE}",
        )
        self.storage.put_bytes(snapshot.key, gzip.compress(data, mtime=0))
        manifest = {**snapshot.to_dict(), "format": "csv.gz"}
        self.storage.put_bytes(f"{prefix}/{MANIFEST_FILE}", json.dumps(manifest).encode())
        return snapshot

    def datasets(self) -> list[str]:
        """Names of the datasets holding at least one snapshot."""
        names = set()
        for key in self.storage.list(DATASETS_PREFIX):
            parts = key.split("/")
            if len(parts) == 4 and parts[3] == MANIFEST_FILE:
                names.add(parts[1])
        return sorted(names)

    def list(self, dataset: str) -> list[Snapshot]:
        """The snapshots of ``dataset``, oldest first (see the module doc for the order)."""
        check_dataset_name(dataset)
        snapshots = []
        for key in self.storage.list(f"{DATASETS_PREFIX}/{dataset}"):
            parts = key.split("/")
            if len(parts) == 4 and parts[3] == MANIFEST_FILE:
                snapshots.append(self._read_manifest(key))
        return sorted(snapshots, key=lambda s: s.order)

    def newest(self, dataset: str) -> Snapshot:
        snapshots = self.list(dataset)
        if not snapshots:
            raise NotFoundError(
                f"dataset {dataset!r} has no snapshots; "
                f"push one with 'driftloop data push FILE --dataset {dataset}'"
            )
        return snapshots[-1]

    def get(self, dataset: str, snapshot_id: str) -> Snapshot:
        check_dataset_name(dataset)
        if "/" in snapshot_id or not snapshot_id.strip("."):
            raise InvalidInputError(f"invalid snapshot id {snapshot_id!r}")
        key = f"{DATASETS_PREFIX}/{dataset}/{snapshot_id}/{MANIFEST_FILE}"
        if not self.storage.exists(key):
            raise NotFoundError(f"dataset {dataset!r} has no snapshot {snapshot_id!r}")
        return self._read_manifest(key)

    def load(self, snapshot: Snapshot) -> pd.DataFrame:
        """The snapshot's rows (every column as text), after checking its content hash."""
        import pandas as pd

        try:
            compressed = self.storage.get_bytes(snapshot.key)
        except NotFoundError as exc:
            raise IntegrityError(
                f"snapshot {snapshot.dataset}/{snapshot.snapshot_id}: {snapshot.key} is missing"
            ) from exc
        try:
            data = gzip.decompress(compressed)
        except (OSError, EOFError) as exc:
            raise IntegrityError(f"{self.storage.uri(snapshot.key)} is corrupt: {exc}") from exc
        digest = hashlib.sha256(data).hexdigest()
        if digest != snapshot.content_hash:
            raise IntegrityError(
                f"{self.storage.uri(snapshot.key)} changed after it was written: "
                f"content hash {digest[:12]}… != recorded {snapshot.content_hash[:12]}…"
            )
        return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)

    def _read_manifest(self, key: str) -> Snapshot:
        try:
            return Snapshot.from_dict(json.loads(self.storage.get_bytes(key)))
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"{self.storage.uri(key)} is not a valid manifest: {exc}") from exc


@dataclass(frozen=True)
class TrainingRows:
    """What a training learns from under a retrain data policy, and where it is stored."""

    snapshot: Snapshot
    frame: pd.DataFrame
    added: int
    """Rows that older snapshots added to the newest one (0 under ``newest``)."""
    snapshots: int
    """How many snapshots the rows come from."""
    labels_as_of: float
    """When the newest snapshot the rows come from was made (unix time): a label that arrived
    later (feedback) is newer than the labels of its rows."""
    label_times: dict[str, float] | None = None
    """For the texts older snapshots added: when their snapshot was made."""

    def describe(self) -> str:
        if self.snapshots <= 1:
            return (
                f"snapshot {self.snapshot.snapshot_id} ({self.snapshot.row_count} rows, "
                f"hash {self.snapshot.content_hash[:12]})"
            )
        return (
            f"cumulative: {self.added} rows of {self.snapshots - 1} older snapshot(s) whose "
            f"text the newest lacks added -> snapshot {self.snapshot.snapshot_id} "
            f"({self.snapshot.row_count} rows, hash {self.snapshot.content_hash[:12]})"
        )


def cumulative_rows(
    frames: Sequence[pd.DataFrame], text_column: str, times: Sequence[float]
) -> tuple[pd.DataFrame, dict[str, float]]:
    """The rows of ``frames`` (oldest first, made at ``times``) as one frame: every row of the
    newest, then the rows of older ones whose text no newer frame holds (a text's newest label
    wins). Returns the frame and, for each text an older frame added, that frame's time."""
    import pandas as pd

    newest = frames[-1]
    if text_column not in newest:
        return newest, {}  # the trainer names the missing column
    seen = set(newest[text_column].astype(str))
    older: list[pd.DataFrame] = []
    added: dict[str, float] = {}
    for frame, made_at in zip(reversed(frames[:-1]), reversed(times[:-1]), strict=True):
        if text_column not in frame:
            continue
        fresh = frame[~frame[text_column].astype(str).isin(seen)]
        texts = set(fresh[text_column].astype(str))
        seen |= texts
        added.update(dict.fromkeys(texts, made_at))
        older.append(fresh)
    if not added:
        return newest, {}
    combined = pd.concat([newest, *older], ignore_index=True)
    return combined.fillna("").astype(str)[list(combined.columns)], added


def training_rows(
    store: DatasetStore,
    dataset: str,
    *,
    policy: str,
    text_column: str,
    snapshot: Snapshot | None = None,
) -> TrainingRows:
    """The rows to train on under ``policy`` (``models.<name>.retrain_data``): the newest
    snapshot (or ``snapshot``) alone, or with ``cumulative`` the rows older snapshots add to
    it, stored as a new snapshot of ``dataset`` when they add any (so a version records the
    exact rows it learned from)."""
    newest = snapshot or store.newest(dataset)
    frame = store.load(newest)
    as_of = newest.created_at.timestamp()
    if policy == "newest":
        return TrainingRows(newest, frame, 0, 1, as_of)
    if policy != "cumulative":
        raise ConfigError(f"retrain_data must be cumulative or newest, got {policy!r}")
    older = [s for s in store.list(dataset) if s.order < newest.order]
    if not older:
        return TrainingRows(newest, frame, 0, 1, as_of)
    combined, label_times = cumulative_rows(
        [*(store.load(s) for s in older), frame],
        text_column,
        [*(s.created_at.timestamp() for s in older), as_of],
    )
    if not label_times:
        return TrainingRows(newest, frame, 0, 1, as_of)
    pushed = store.push(combined, dataset)
    return TrainingRows(
        pushed, combined, len(combined) - len(frame), len(older) + 1, as_of, label_times
    )


def bundled_reviews_path() -> Path:
    """The review dataset shipped with driftloop (columns text,label,topic,subtopic,source)."""
    return Path(str(resources.files("driftloop.data").joinpath("reviews.csv.gz")))


def ensure_dataset(config: Config, dataset: str) -> Snapshot:
    """The newest snapshot of ``dataset``; the bundled reviews become the first snapshot of
    ``reviews`` on first use."""
    store = DatasetStore.from_config(config)
    snapshots = store.list(dataset)
    if snapshots:
        return snapshots[-1]
    if dataset == BUNDLED_DATASET:
        return store.push(bundled_reviews_path(), dataset)
    return store.newest(dataset)

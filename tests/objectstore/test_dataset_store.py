"""DatasetStore: immutable snapshots, the definition of "newest", integrity, bundled data."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from driftloop.config import parse_config
from driftloop.errors import IntegrityError, InvalidInputError, NotFoundError
from driftloop.objectstore import (
    DatasetStore,
    ObjectStorage,
    Snapshot,
    bundled_reviews_path,
    ensure_dataset,
    open_storage,
)


@pytest.fixture
def storage(tmp_path: Path) -> ObjectStorage:
    return open_storage("file://store", base_dir=tmp_path)


@pytest.fixture
def store(storage: ObjectStorage) -> DatasetStore:
    return DatasetStore(storage)


def frame(rows: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": [f"text {i}, with a comma" for i in range(rows)],
            "label": ["a" if i % 2 else "b" for i in range(rows)],
        }
    )


def test_push_file_writes_data_and_manifest(store: DatasetStore, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    frame(4).to_csv(source, index=False)
    snapshot = store.push(source, "reviews")
    prefix = f"datasets/reviews/{snapshot.snapshot_id}"
    assert store.storage.list("datasets") == [f"{prefix}/data.csv.gz", f"{prefix}/manifest.json"]
    assert snapshot.key == f"{prefix}/data.csv.gz"
    assert snapshot.row_count == 4
    assert snapshot.columns == ("text", "label")
    stored = gzip.decompress(store.storage.get_bytes(snapshot.key))
    assert snapshot.content_hash == hashlib.sha256(stored).hexdigest()
    manifest = json.loads(store.storage.get_bytes(f"{prefix}/manifest.json"))
    assert manifest["row_count"] == 4
    assert manifest["content_hash"] == snapshot.content_hash
    assert Snapshot.from_dict(manifest) == snapshot


def test_load_returns_the_rows_as_text(store: DatasetStore) -> None:
    rows = pd.DataFrame({"text": ["NA", "", "3"], "label": ["1", "2", "1"]})
    loaded = store.load(store.push(rows, "numbers"))
    assert loaded.to_dict("list") == {"text": ["NA", "", "3"], "label": ["1", "2", "1"]}


def test_line_breaks_inside_a_text_stay_inside_it(store: DatasetStore) -> None:
    # a bare carriage return is left unquoted by Python's CSV writer: the row split in two
    rows = pd.DataFrame(
        {"text": ["a\rb", "c\nd", "e\r\nf", "plain"], "label": ["1", "2", "3", "4"]}
    )
    loaded = store.load(store.push(rows, "breaks"))
    assert loaded.to_dict("list") == rows.to_dict("list")


def test_push_compressed_csv(store: DatasetStore, tmp_path: Path) -> None:
    source = tmp_path / "in.csv.gz"
    frame(5).to_csv(source, index=False, compression="gzip")
    assert store.load(store.push(source, "zipped")).equals(frame(5))


def test_same_content_same_hash_new_snapshot(store: DatasetStore) -> None:
    first = store.push(frame(), "d")
    second = store.push(frame(), "d")
    assert first.content_hash == second.content_hash
    assert first.snapshot_id != second.snapshot_id
    assert [s.snapshot_id for s in store.list("d")] == [first.snapshot_id, second.snapshot_id]


def test_newest_is_the_last_pushed(store: DatasetStore) -> None:
    first = store.push(frame(2), "d")
    second = store.push(frame(3), "d")
    assert store.newest("d") == second
    assert store.get("d", first.snapshot_id) == first
    assert store.list("d") == [first, second]


def write_manifest(storage: ObjectStorage, snapshot_id: str, created_at: datetime) -> None:
    data = b"text,label\nx,a\n"
    prefix = f"datasets/d/{snapshot_id}"
    storage.put_bytes(f"{prefix}/data.csv.gz", gzip.compress(data))
    storage.put_bytes(
        f"{prefix}/manifest.json",
        json.dumps(
            {
                "dataset": "d",
                "snapshot_id": snapshot_id,
                "created_at": created_at.isoformat(),
                "row_count": 1,
                "content_hash": hashlib.sha256(data).hexdigest(),
                "columns": ["text", "label"],
                "key": f"{prefix}/data.csv.gz",
            }
        ).encode(),
    )


def test_newest_orders_by_created_time_then_snapshot_id(
    store: DatasetStore, storage: ObjectStorage
) -> None:
    early = datetime(2025, 1, 1, tzinfo=UTC)
    late = datetime(2025, 6, 1, tzinfo=UTC)
    # ids that sort against their times: time wins
    write_manifest(storage, "zzz-oldest", early)
    write_manifest(storage, "aaa-late", late)
    # the same created time: the greater id is newer
    write_manifest(storage, "bbb-late", late)
    assert [s.snapshot_id for s in store.list("d")] == ["zzz-oldest", "aaa-late", "bbb-late"]
    assert store.newest("d").snapshot_id == "bbb-late"


def test_a_half_written_snapshot_is_invisible(store: DatasetStore) -> None:
    store.storage.put_bytes("datasets/d/20250101T000000000000Z-partial/data.csv.gz", b"x")
    assert store.list("d") == []
    assert store.datasets() == []


def test_snapshots_never_change(store: DatasetStore) -> None:
    first = store.push(frame(2), "d")
    before = store.storage.get_bytes(first.key)
    store.push(frame(9), "d")
    assert store.storage.get_bytes(first.key) == before
    assert store.load(first).equals(frame(2))


def test_tampered_snapshot_fails_to_load(store: DatasetStore) -> None:
    snapshot = store.push(frame(3), "d")
    store.storage.put_bytes(snapshot.key, gzip.compress(b"text,label\nforged,a\n"))
    with pytest.raises(IntegrityError, match="changed after it was written"):
        store.load(snapshot)
    store.storage.put_bytes(snapshot.key, b"not gzip")
    with pytest.raises(IntegrityError, match="corrupt"):
        store.load(snapshot)
    store.storage.delete(snapshot.key)
    with pytest.raises(IntegrityError, match="missing"):
        store.load(snapshot)


def test_empty_inputs_are_refused_and_write_nothing(store: DatasetStore, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    header_only = tmp_path / "header.csv"
    header_only.write_text("text,label\n")
    with pytest.raises(InvalidInputError, match="is empty"):
        store.push(empty, "d")
    with pytest.raises(InvalidInputError, match="empty dataset"):
        store.push(header_only, "d")
    with pytest.raises(InvalidInputError, match="empty dataset"):
        store.push(pd.DataFrame({"text": [], "label": []}), "d")
    assert store.storage.list() == []


def test_bad_names_and_missing_things(store: DatasetStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="dataset name"):
        store.push(frame(), "Bad Name")
    with pytest.raises(NotFoundError, match="no such file"):
        store.push(tmp_path / "absent.csv", "d")
    with pytest.raises(NotFoundError, match="driftloop data push FILE --dataset d"):
        store.newest("d")
    with pytest.raises(NotFoundError, match="no snapshot"):
        store.get("d", "20250101T000000000000Z-00000000")
    with pytest.raises(InvalidInputError, match="columns must be unique"):
        store.push(pd.DataFrame([[1, 2]], columns=["a", "a"]), "d")


def test_bundled_reviews_ship_with_their_sources() -> None:
    path = bundled_reviews_path()
    assert path.name == "reviews.csv.gz"
    assert path.is_file()
    assert (path.parent / "SOURCES.md").is_file()
    reviews = pd.read_csv(path, dtype=str)
    assert list(reviews.columns) == ["text", "label", "topic", "subtopic", "source"]
    assert reviews["label"].nunique() == 6
    assert len(reviews) > 10_000


def test_ensure_dataset_pushes_the_bundled_reviews_once(tmp_path: Path) -> None:
    config = parse_config("storage: file://.driftloop/storage\n", base_dir=tmp_path)
    first = ensure_dataset(config, "reviews")
    assert first.dataset == "reviews"
    assert first.row_count > 10_000
    assert ensure_dataset(config, "reviews") == first
    assert len(DatasetStore.from_config(config).list("reviews")) == 1
    with pytest.raises(NotFoundError, match="has no snapshots"):
        ensure_dataset(config, "other")

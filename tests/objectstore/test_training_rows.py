"""The retrain data policy: what a training learns from when several snapshots exist."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from driftloop.errors import ConfigError
from driftloop.objectstore import DatasetStore
from driftloop.objectstore.datasets import training_rows
from driftloop.objectstore.storage import open_storage


@pytest.fixture
def store(tmp_path: Path) -> DatasetStore:
    return DatasetStore(open_storage("file://store", base_dir=tmp_path))


def rows(*pairs: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame({"text": [t for t, _ in pairs], "label": [label for _, label in pairs]})


def test_cumulative_learns_every_labeled_row_and_the_newest_label_wins(store: DatasetStore) -> None:
    store.push(rows(("old one", "a"), ("relabelled", "a")), "reviews")
    store.push(rows(("middle", "b")), "reviews")
    newest = store.push(rows(("relabelled", "b"), ("fresh", "c")), "reviews")

    found = training_rows(store, "reviews", policy="cumulative", text_column="text")

    assert found.snapshots == 3
    assert found.added == 2
    labels = dict(zip(found.frame["text"], found.frame["label"], strict=True))
    assert labels == {"relabelled": "b", "fresh": "c", "middle": "b", "old one": "a"}
    # stored as a new snapshot, so the version records exactly what it learned from
    assert found.snapshot.snapshot_id != newest.snapshot_id
    assert store.newest("reviews") == found.snapshot
    assert store.load(found.snapshot).equals(found.frame)
    assert "cumulative: 2 rows of 2 older snapshot(s)" in found.describe()
    # when each added row's label was made: its snapshot's time (feedback may be newer)
    first, second = store.list("reviews")[:2]
    assert found.label_times == {
        "old one": first.created_at.timestamp(),
        "middle": second.created_at.timestamp(),
    }
    assert found.labels_as_of == newest.created_at.timestamp()
    # nothing new since: the stored union is used as it is, no snapshot is added
    again = training_rows(store, "reviews", policy="cumulative", text_column="text")
    assert (again.snapshot, again.added) == (found.snapshot, 0)
    assert len(store.list("reviews")) == 4


def test_newest_learns_the_newest_snapshot_alone(store: DatasetStore) -> None:
    store.push(rows(("old one", "a")), "reviews")
    newest = store.push(rows(("fresh", "c")), "reviews")

    found = training_rows(store, "reviews", policy="newest", text_column="text")

    assert (found.snapshot, found.added, list(found.frame["text"])) == (newest, 0, ["fresh"])
    assert len(store.list("reviews")) == 2


def test_a_newest_snapshot_that_holds_everything_is_used_as_it_is(store: DatasetStore) -> None:
    store.push(rows(("a text", "a")), "reviews")
    full = store.push(rows(("a text", "a"), ("another", "b")), "reviews")

    found = training_rows(store, "reviews", policy="cumulative", text_column="text")

    assert (found.snapshot, found.added) == (full, 0)


def test_an_unknown_policy_is_a_config_error(store: DatasetStore) -> None:
    store.push(rows(("a text", "a")), "reviews")
    with pytest.raises(ConfigError, match="cumulative or newest"):
        training_rows(store, "reviews", policy="weighted", text_column="text")

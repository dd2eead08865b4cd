"""Object storage (fsspec: ``file://``, ``s3://``) and the dataset snapshots kept in it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from driftloop._lazy import lazy_exports

if TYPE_CHECKING:
    from driftloop.objectstore.datasets import (
        BUNDLED_DATASET,
        DatasetStore,
        Snapshot,
        bundled_reviews_path,
        ensure_dataset,
    )
    from driftloop.objectstore.storage import STORAGES, ObjectStorage, open_storage

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "BUNDLED_DATASET": "driftloop.objectstore.datasets",
        "DatasetStore": "driftloop.objectstore.datasets",
        "ObjectStorage": "driftloop.objectstore.storage",
        "STORAGES": "driftloop.objectstore.storage",
        "Snapshot": "driftloop.objectstore.datasets",
        "bundled_reviews_path": "driftloop.objectstore.datasets",
        "ensure_dataset": "driftloop.objectstore.datasets",
        "open_storage": "driftloop.objectstore.storage",
    },
)

__all__ = [
    "BUNDLED_DATASET",
    "STORAGES",
    "DatasetStore",
    "ObjectStorage",
    "Snapshot",
    "bundled_reviews_path",
    "ensure_dataset",
    "open_storage",
]

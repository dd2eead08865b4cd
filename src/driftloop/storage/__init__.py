"""Object storage (fsspec: ``file://``, ``s3://``) and the dataset snapshots kept in it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from driftloop._lazy import lazy_exports

if TYPE_CHECKING:
    from driftloop.storage.datasets import (
        BUNDLED_DATASET,
        DatasetStore,
        Snapshot,
        bundled_reviews_path,
        ensure_dataset,
    )
    from driftloop.storage.objects import (
        STORAGES,
        ObjectStorage,
        open_storage,
    )

__getattr__, __dir__ = lazy_exports(__name__, {
    "BUNDLED_DATASET": "driftloop.storage.datasets",
    "DatasetStore": "driftloop.storage.datasets",
    "ObjectStorage": "driftloop.storage.objects",
    "STORAGES": "driftloop.storage.objects",
    "Snapshot": "driftloop.storage.datasets",
    "bundled_reviews_path": "driftloop.storage.datasets",
    "ensure_dataset": "driftloop.storage.datasets",
    "open_storage": "driftloop.storage.objects",
})

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

"""Object storage (fsspec: ``file://``, ``s3://``) and the dataset snapshots kept in it."""

from driftloop.storage.datasets import (
    BUNDLED_DATASET,
    DatasetStore,
    Snapshot,
    bundled_reviews_path,
    ensure_dataset,
)
from driftloop.storage.objects import STORAGES, ObjectStorage, open_storage

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

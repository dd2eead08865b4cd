"""``storage: s3://bucket/prefix`` for the whole system on a real S3 server (S3Proxy): the
endpoint from ``$AWS_ENDPOINT_URL``, credentials from the standard AWS variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from driftloop.errors import IntegrityError
from driftloop.objectstore import DatasetStore, open_storage
from driftloop.pipeline.queue import JobState
from driftloop.registry import ModelRegistry
from pipeline.world import DATASET, MODEL, PipelineWorld, ScriptedHealthProbe

pytestmark = pytest.mark.s3

TEXTS = ["comfortable jeans, great fit", "a dull, lifeless sequel"]


def test_snapshots_training_registry_and_integrity_on_s3(
    s3_endpoint: Any, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_endpoint.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_endpoint.secret_key)
    world = PipelineWorld.create(tmp_path, extra={"storage": f"s3://{s3_bucket}/driftloop"})
    system = world.system
    storage = system.datasets.storage
    assert storage.uri("x") == f"s3://{s3_bucket}/driftloop/x"

    # push a snapshot, train on it, register and deploy v1: every byte lands on S3
    v1 = world.train_production()
    snapshot = system.datasets.newest(DATASET)
    assert v1.artifact_uri.startswith(f"s3://{s3_bucket}/driftloop/models/{MODEL}/")
    assert v1.snapshot_id == snapshot.snapshot_id
    keys = storage.list()
    assert any(key.startswith(f"datasets/{DATASET}/") for key in keys)
    assert not [key for key in keys if ".tmp-" in key]  # atomic publish leaves no temporaries
    assert not list((tmp_path / ".driftloop").glob("storage*"))  # nothing on local disk

    # a retrain job reads the newest snapshot from S3 and registers v2 there
    world.push(world.snapshots.drifted)
    job_id = system.enqueue_retrain_manual(MODEL, "s3 test")
    claimed = system.queue.claim("worker")
    assert claimed is not None
    assert claimed.job_id == job_id
    health = ScriptedHealthProbe(world.clock, ok_from=world.clock.now, confidence={2: 0.9})
    job = world.pipeline(health).run(claimed, "worker")
    assert job.state == JobState.SUCCEEDED, job.error
    v2 = system.registry.resolve(MODEL)
    assert v2.version == 2
    assert v2.snapshot_id == system.datasets.newest(DATASET).snapshot_id

    # another process (fresh cache, fresh client) loads exactly what was registered
    other = open_storage(f"s3://{s3_bucket}/driftloop")
    fresh = ModelRegistry(system.database, other, tmp_path / "other-cache")
    np.testing.assert_allclose(
        fresh.load_predictor(v2).predict_proba(TEXTS),
        system.registry.load_predictor(v2).predict_proba(TEXTS),
    )

    # tampering with an artifact on S3 is caught on load
    key = other.key_of(v2.artifact_uri)
    assert key is not None
    other.put_bytes(f"{key}/coef.npy", b"tampered")
    with pytest.raises(IntegrityError, match=r"coef\.npy"):
        ModelRegistry(system.database, other, tmp_path / "third-cache").load_predictor(v2)
    # ... and so is tampering with a snapshot
    other.put_bytes(snapshot.key, b"text,label\nforged,row\n")
    with pytest.raises(IntegrityError):
        DatasetStore(other).load(snapshot)

"""Feedback-labeled production samples in the retrain: merged into a new snapshot that the new
version records, held out by the gate as rows production never saw, never merged twice, and
ignored by a model that does not ask for them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from driftloop.pipeline.feedback import FeedbackMerge, LabeledSample, merge_feedback
from driftloop.pipeline.queue import JobState
from driftloop.serving.feedback import FeedbackRecord
from pipeline.test_runner import run_job
from pipeline.world import DATASET, MODEL, PipelineWorld, ScriptedHealthProbe

LABELS = {"Food - Positive", "Food - Negative"}


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": ["tasty", "bland", "tasty again"],
            "label": ["Food - Positive", "Food - Negative", "Food - Positive"],
            "source": ["a", "b", "c"],
        }
    )


SNAPSHOT_TIME = 1_000.0
BEFORE, AFTER = SNAPSHOT_TIME - 10, SNAPSHOT_TIME + 10


def _merge(frame: pd.DataFrame, samples: list[LabeledSample]) -> FeedbackMerge:
    return merge_feedback(
        frame,
        samples,
        text_column="text",
        label_column="label",
        labels=LABELS,
        snapshot_time=SNAPSHOT_TIME,
    )


def test_the_newest_label_of_a_text_wins_and_unknown_classes_stay_out() -> None:
    samples = [
        ("bland", "Food - Positive", AFTER),  # relabels a snapshot row...
        ("new one", "Food - Negative", BEFORE),
        ("new one", "Food - Positive", AFTER),  # ...and a later label wins
        ("typo", "Food - Postive", AFTER),
        ("tasty", "Food - Positive", AFTER),
    ]  # the snapshot's label already
    merge = _merge(_frame(), samples)
    assert (merge.added, merge.relabelled) == (1, 1)
    assert merge.unknown_labels == {"Food - Postive": 1}
    assert merge.frame.to_dict("records") == [
        {"text": "tasty", "label": "Food - Positive", "source": "a"},
        {"text": "bland", "label": "Food - Positive", "source": "b"},  # relabelled in place
        {"text": "tasty again", "label": "Food - Positive", "source": "c"},
        {"text": "new one", "label": "Food - Positive", "source": ""},
    ]


def test_feedback_older_than_the_snapshot_does_not_overturn_its_labels() -> None:
    """An operator corrected "bland" in a newer snapshot: the feedback that had labelled it
    before must not flip it back at every retrain."""
    merge = _merge(_frame(), [("bland", "Food - Positive", BEFORE)])
    assert not merge.changed
    assert merge.frame.loc[1, "label"] == "Food - Negative"


def test_a_label_from_an_older_snapshot_yields_to_feedback_sent_after_it() -> None:
    """Under the cumulative policy a row may come from a snapshot older than the newest: the
    feedback that arrived between the two is newer than that row's label."""
    frame = _frame()
    samples: list[LabeledSample] = [("bland", "Food - Positive", BEFORE)]
    assert _merge(frame, samples).relabelled == 0
    merged = merge_feedback(
        frame,
        samples,
        text_column="text",
        label_column="label",
        labels=LABELS,
        snapshot_time=SNAPSHOT_TIME,
        label_times={"bland": BEFORE - 100},
    )
    assert merged.relabelled == 1
    assert (
        dict(zip(merged.frame["text"], merged.frame["label"], strict=True))["bland"]
        == "Food - Positive"
    )


def test_every_row_of_a_repeated_text_takes_the_new_label() -> None:
    frame = pd.DataFrame(
        {
            "text": ["x", "x", "y"],
            "label": ["Food - Negative", "Food - Positive", "Food - Negative"],
        }
    )
    merge = _merge(frame, [("x", "Food - Positive", AFTER)])
    assert merge.relabelled == 1
    assert merge.frame["label"].tolist() == [
        "Food - Positive",
        "Food - Positive",
        "Food - Negative",
    ]


def test_samples_the_snapshot_holds_already_change_nothing() -> None:
    frame = _frame()
    merge = _merge(frame, [("tasty", "Food - Positive", AFTER)])
    assert not merge.changed
    assert merge.frame is frame


def _send_feedback(world: PipelineWorld, rows: pd.DataFrame) -> None:
    world.system.feedback.record(
        [
            FeedbackRecord(
                prediction_id=f"p{i}",
                model=MODEL,
                label=label,
                version=1,
                predicted_class=None,
                key_id=None,
                received_at=world.clock.now,
                text=text,
            )
            for i, (text, label) in enumerate(zip(rows["text"], rows["label"], strict=True))
        ]
    )


def test_a_retrain_learns_from_production_feedback(tmp_path: Path) -> None:
    """Production (v1) trained on the known rows; the drifting traffic's true labels arrive only
    as feedback, with no new snapshot: the retrain merges them, the gate holds out some of them,
    and v2 records the merged snapshot."""
    world = PipelineWorld.create(tmp_path, model={"merge_feedback": True})
    world.train_production()
    base = world.system.datasets.newest(DATASET)
    known = world.snapshots.known
    drifted = world.snapshots.drifted
    new_rows = drifted[~drifted["text"].isin(known["text"])]
    _send_feedback(world, new_rows)
    health = ScriptedHealthProbe(
        world.clock, ok_from=world.clock.now + 10, confidence={1: 0.55, 2: 0.8}
    )

    job = run_job(world, health)

    assert job.state == JobState.SUCCEEDED, job.error
    merged = world.system.datasets.newest(DATASET)
    assert merged.snapshot_id != base.snapshot_id
    assert merged.row_count == len(known) + new_rows["text"].nunique()
    assert job.snapshot_id == merged.snapshot_id
    v2 = world.system.registry.get_version(MODEL, 2)
    assert (v2.snapshot_id, v2.snapshot_hash) == (merged.snapshot_id, merged.content_hash)
    fetching = world.system.queue.steps(job.job_id)[0]
    assert f"{new_rows['text'].nunique()} production samples added" in fetching.log
    assert merged.snapshot_id in fetching.log
    assert job.result is not None
    assert job.result.gate["fresh_holdout"] is True  # judged on feedback rows

    # the next retrain, with no new feedback, trains on the same data and stores nothing new
    world.clock.now += 3600  # past the cooldown
    second = run_job(world, ScriptedHealthProbe(world.clock, ok_from=world.clock.now))
    assert second.snapshot_id == merged.snapshot_id
    assert [s.snapshot_id for s in world.system.datasets.list(DATASET)] == [
        base.snapshot_id,
        merged.snapshot_id,
    ]
    second_fetch = world.system.queue.steps(second.job_id)[0]
    assert "no labeled sample that the snapshot lacks" in second_fetch.log


def test_a_model_without_merge_feedback_trains_on_the_snapshot_alone(tmp_path: Path) -> None:
    world = PipelineWorld.create(tmp_path)
    world.train_production()
    newest = world.push(world.snapshots.drifted)
    _send_feedback(
        world, pd.DataFrame({"text": ["only in feedback"], "label": ["Food - Positive"]})
    )

    job = run_job(
        world,
        ScriptedHealthProbe(
            world.clock, ok_from=world.clock.now + 10, confidence={1: 0.55, 2: 0.8}
        ),
    )

    assert job.snapshot_id == newest.snapshot_id
    assert [s.snapshot_id for s in world.system.datasets.list(DATASET)][-1] == newest.snapshot_id
    assert "feedback" not in world.system.queue.steps(job.job_id)[0].log


def test_merge_feedback_without_a_feedback_source_fails_the_job_clearly(tmp_path: Path) -> None:
    world = PipelineWorld.create(tmp_path, model={"merge_feedback": True})
    world.train_production()
    job_id = world.system.queue.enqueue(MODEL, reason="test").job.job_id
    claimed = world.system.queue.claim("w")
    assert claimed is not None
    pipeline = world.pipeline()
    pipeline.feedback = None  # a pipeline built by hand, without the system's wiring

    job = pipeline.run(claimed, "w")

    assert job.job_id == job_id
    assert job.state == JobState.FAILED
    assert job.error is not None
    assert "models.review-classifier.merge_feedback is on" in job.error
    assert [s.snapshot_id for s in world.system.datasets.list(DATASET)] == [
        world.system.registry.resolve(MODEL, "production").snapshot_id
    ]

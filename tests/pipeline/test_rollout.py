"""Canary and shadow deploys: the candidate serves under the ``canary``/``shadow`` alias beside
production; verification compares both versions on the same traffic (a canary's share against
production's over the same period, a shadow on the requests production answered) and promotes
it, or ends the rollout with production untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftloop.errors import InvalidInputError
from driftloop.pipeline.queue import JobState
from pipeline.world import MODEL, PipelineWorld, ScriptedHealthProbe


def rollout_world(tmp_path: Path, mode: str) -> PipelineWorld:
    world = PipelineWorld.create(
        tmp_path, pipeline={"deploy_mode": mode, "canary_fraction": 0.2, "verify_tolerance": 0.05}
    )
    world.train_production()
    world.push(world.snapshots.drifted)
    return world


def run(world: PipelineWorld, health: ScriptedHealthProbe) -> tuple[str, JobState, str | None]:
    job_id = world.system.queue.enqueue(MODEL, reason="test").job.job_id
    claimed = world.system.queue.claim("test-worker")
    assert claimed is not None
    job = world.pipeline(health).run(claimed, "test-worker")
    assert job.job_id == job_id
    return job_id, job.state, job.error


@pytest.mark.parametrize("mode", ["canary", "shadow"])
def test_a_rollout_that_is_not_worse_is_promoted(tmp_path: Path, mode: str) -> None:
    world = rollout_world(tmp_path, mode)
    seen: list[dict[str, int]] = []
    health = ScriptedHealthProbe(
        world.clock,
        ok_from=None,
        confidence={1: -0.1, 2: -0.08},
        reference_of=world.reference_confidence,
    )

    def on_state(job: object) -> None:
        seen.append(world.aliases())

    job_id = world.system.queue.enqueue(MODEL, reason="test").job.job_id
    claimed = world.system.queue.claim("test-worker")
    assert claimed is not None
    job = world.pipeline(health, on_state=on_state).run(claimed, "test-worker")

    assert job.state == JobState.SUCCEEDED, job.error
    assert job_id == job.job_id
    # while verifying, the candidate served under the rollout alias and production was v1
    assert {"production": 1, "candidate": 2, mode: 2} in seen
    assert world.aliases() == {"production": 2, "candidate": 2}
    # both versions judged on the same traffic (monitors are never OK here: not needed): the
    # canary's random share against production's over the same period, the shadow on the
    # very requests production answered
    assert health.asked[:2] == (
        [f"live_confidence {MODEL} v2", f"live_confidence {MODEL} v1"]
        if mode == "canary"
        else [f"shadow_pairs {MODEL} v2 vs v1", f"monitors_ok {MODEL}"]
    )
    steps = world.system.queue.steps(job.job_id)
    deploying = next(s for s in steps if s.step == "deploying")
    assert f"{mode} → v2" in deploying.log
    assert "production stays v1" in deploying.log
    assert (steps[-1].step, steps[-1].outcome) == ("verifying", "ok")
    assert "promoted" in steps[-1].log
    if mode == "shadow":
        assert job.result is not None
        assert job.result.verification_decision["verdict"] == "keep"
    assert job.result is not None
    assert job.result.deploy_mode == mode
    history = [(h.alias, h.version, h.action) for h in world.system.registry.alias_history(MODEL)]
    assert history[-3:] == [(mode, 2, "set"), ("production", 2, "set"), (mode, 2, "remove")]
    assert world.notices == []


def test_a_worse_canary_is_removed_and_production_untouched(tmp_path: Path) -> None:
    world = rollout_world(tmp_path, "canary")
    health = ScriptedHealthProbe(world.clock, ok_from=world.clock.now, confidence={1: 0.8, 2: 0.6})

    job_id, state, error = run(world, health)

    assert state == JobState.ROLLED_BACK
    assert world.aliases() == {"production": 1, "candidate": 2}
    assert "canary of v2 rejected, production stays v1" in (error or "")
    assert "live confidence 0.6 over 100 predictions, production v1 0.8" in (error or "")
    assert (error or "").endswith(": worse")
    assert [kind for kind, _, _ in world.notices] == ["rollback"]
    production_moves = [
        h for h in world.system.registry.alias_history(MODEL) if h.alias == "production"
    ]
    assert [h.version for h in production_moves] == [1]  # never moved
    steps = world.system.queue.steps(job_id)
    assert (steps[-1].step, steps[-1].outcome) == ("verifying", "failed")


def test_a_canary_without_enough_predictions_ends_at_the_deadline(tmp_path: Path) -> None:
    world = rollout_world(tmp_path, "canary")
    health = ScriptedHealthProbe(
        world.clock, ok_from=world.clock.now, confidence={1: 0.6, 2: 0.9}, count=3
    )

    _, state, error = run(world, health)

    assert state == JobState.ROLLED_BACK
    assert world.clock.sleeps == [5.0] * 12  # verify_interval until verify_deadline (60 s)
    assert "had 3 of 10 predictions within 60s" in (error or "")
    assert world.aliases() == {"production": 1, "candidate": 2}


def test_remove_alias_is_recorded_and_refuses_production(tmp_path: Path) -> None:
    world = rollout_world(tmp_path, "canary")
    registry = world.system.registry
    registry.set_alias(MODEL, "canary", 1, actor="tester")
    assert registry.remove_alias(MODEL, "canary", actor="tester") is True
    assert registry.remove_alias(MODEL, "canary", actor="tester") is False
    last = registry.alias_history(MODEL)[-1]
    assert (last.alias, last.version, last.action, last.actor) == ("canary", 1, "remove", "tester")
    with pytest.raises(InvalidInputError):
        registry.remove_alias(MODEL, "production", actor="tester")
    assert world.aliases() == {"production": 1}


def test_a_worse_shadow_is_removed_and_production_untouched(tmp_path: Path) -> None:
    world = rollout_world(tmp_path, "shadow")
    health = ScriptedHealthProbe(world.clock, ok_from=world.clock.now, confidence={1: 0.8, 2: 0.5})

    job_id, state, error = run(world, health)

    assert state == JobState.ROLLED_BACK
    assert world.aliases() == {"production": 1, "candidate": 2}
    assert "shadow of v2 rejected, production stays v1" in (error or "")
    assert "worse on the same traffic" in (error or "")
    production_moves = [
        h for h in world.system.registry.alias_history(MODEL) if h.alias == "production"
    ]
    assert [h.version for h in production_moves] == [1]
    steps = world.system.queue.steps(job_id)
    assert (steps[-1].step, steps[-1].outcome) == ("verifying", "failed")

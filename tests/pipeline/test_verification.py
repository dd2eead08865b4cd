"""Verification's decision rule on its own: the signal it picks, the sequential test's error
rates over many looks (simulated), and the deadline rules."""

from __future__ import annotations

import numpy as np
import pytest

from driftloop.errors import ConfigError
from driftloop.pipeline.verification import (
    PairedEvidence,
    Verdict,
    VerificationRule,
    decide_verification,
    look_error_rate,
)

RULE = VerificationRule(tolerance=0.02, error_rate=0.05, min_pairs=50, min_labels=30)


def evidence(gap: np.ndarray, correct: np.ndarray | None = None) -> PairedEvidence:
    return PairedEvidence(
        gap.astype(np.float64),
        np.zeros(0) if correct is None else correct.astype(np.float64),
        np.ones(gap.size),
    )


def run_until_decided(
    true_gap: float,
    rng: np.random.Generator,
    *,
    per_look: int = 25,
    looks: int = 40,
    noise: float = 0.2,
) -> Verdict:
    """One verification: ``per_look`` new pairs between looks, until a verdict or the last
    look (the deadline)."""
    values = np.zeros(0)
    counted = 0
    for look in range(1, looks + 1):
        values = np.concatenate([values, rng.normal(true_gap, noise, per_look)])
        if values.size >= RULE.min_pairs:
            counted += 1
        decision = decide_verification(
            evidence(values),
            RULE,
            reference_shift=0.0,
            look=max(1, counted),
            at_deadline=look == looks,
        )
        if decision.verdict != Verdict.WAIT:
            return decision.verdict
    raise AssertionError("the deadline always decides")


def test_the_per_look_error_rates_sum_to_the_error_rate() -> None:
    assert sum(look_error_rate(0.05, k) for k in range(1, 100_000)) == pytest.approx(0.05, rel=1e-4)


@pytest.mark.parametrize(("true_gap", "wrong"), [(-0.02, Verdict.KEEP), (0.0, Verdict.ROLL_BACK)])
def test_the_sequential_test_keeps_its_error_rate_over_many_looks(
    true_gap: float, wrong: Verdict
) -> None:
    """At the boundary (a version exactly ``tolerance`` worse) a keep is an error; a version
    as good as the old one is rolled back rarely. Decisions made by the sequential test only:
    the deadline's point estimate is a separate, documented rule."""
    rng = np.random.default_rng(11)
    errors = 0
    runs = 600
    for _ in range(runs):
        values = np.zeros(0)
        counted = 0
        for _look in range(40):
            values = np.concatenate([values, rng.normal(true_gap, 0.2, 25)])
            counted += values.size >= RULE.min_pairs
            decision = decide_verification(
                evidence(values), RULE, reference_shift=0.0, look=max(1, counted), at_deadline=False
            )
            if decision.verdict != Verdict.WAIT:
                errors += decision.verdict == wrong
                break
    # the rate is at most 0.05 by construction; 3 binomial sd of slack for 600 runs
    assert errors / runs <= 0.05 + 3 * (0.05 * 0.95 / runs) ** 0.5, errors


def test_clear_differences_are_decided_early_and_right() -> None:
    rng = np.random.default_rng(3)
    assert all(run_until_decided(-0.15, rng) == Verdict.ROLL_BACK for _ in range(50))
    assert all(run_until_decided(+0.10, rng) == Verdict.KEEP for _ in range(50))


def test_the_reference_shift_is_taken_out_of_the_confidence_gap() -> None:
    """The new version is 0.10 less confident on every request, but its own reference is 0.12
    lower too: relative to their references, it is the better one."""
    gap = np.full(200, -0.10) + np.random.default_rng(0).normal(0, 0.01, 200)
    assert (
        decide_verification(
            evidence(gap), RULE, reference_shift=0.0, look=1, at_deadline=False
        ).verdict
        == Verdict.ROLL_BACK
    )
    decision = decide_verification(
        evidence(gap), RULE, reference_shift=-0.12, look=1, at_deadline=False
    )
    assert decision.verdict == Verdict.KEEP
    assert decision.signal == "confidence vs reference"
    assert decision.mean == pytest.approx(0.02, abs=0.005)


def test_labels_take_over_from_confidence_once_enough_arrive() -> None:
    confident_but_wrong = np.full(200, 0.2)
    correct = np.array([-1.0] * 12 + [0.0] * 17)  # 29 labels: one short of the minimum
    first = decide_verification(
        evidence(confident_but_wrong, correct), RULE, reference_shift=0.0, look=1, at_deadline=False
    )
    assert (first.signal, first.verdict) == ("confidence vs reference", Verdict.KEEP)
    correct = np.append(correct, -1.0)
    second = decide_verification(
        evidence(confident_but_wrong, correct), RULE, reference_shift=0.0, look=1, at_deadline=False
    )
    assert (second.signal, second.verdict) == ("realized accuracy", Verdict.ROLL_BACK)
    assert second.pairs == 30


def test_too_few_pairs_wait_then_keep_at_the_deadline() -> None:
    few = evidence(np.full(49, -0.5))
    waiting = decide_verification(few, RULE, reference_shift=0.0, look=1, at_deadline=False)
    assert (waiting.verdict, waiting.rule) == (Verdict.WAIT, "waiting")
    final = decide_verification(few, RULE, reference_shift=0.0, look=1, at_deadline=True)
    assert (final.verdict, final.rule) == (Verdict.KEEP, "deadline: too few pairs")
    assert "kept on the gate's verdict" in final.message


@pytest.mark.parametrize(("error_rate", "tolerance"), [(0.0, 0.02), (1.0, 0.02), (0.05, -0.1)])
def test_a_bad_rule_is_a_config_error(error_rate: float, tolerance: float) -> None:
    with pytest.raises(ConfigError):
        VerificationRule(tolerance=tolerance, error_rate=error_rate)


@pytest.mark.parametrize("disagree", [0.05, 0.2])
def test_realized_accuracy_keeps_its_error_rate_though_most_pairs_are_zero(disagree: float) -> None:
    """Correctness gaps are -1, 0 or +1, and 0 where the versions agree (most pairs): a new
    version exactly ``tolerance`` worse must still be kept at most ``error_rate`` of the time,
    from the first look at the minimum of labels on."""
    rng = np.random.default_rng(5)
    t = RULE.tolerance
    worse, better = (disagree + t) / 2, (disagree - t) / 2  # P(-1) - P(+1) = t
    kept = 0
    runs = 600
    confidence = np.zeros(RULE.min_pairs)
    for _ in range(runs):
        labels = np.zeros(0)
        for look in range(1, 41):
            draws = rng.random(RULE.min_labels if look == 1 else 10)
            labels = np.concatenate(
                [labels, np.where(draws < worse, -1.0, np.where(draws < worse + better, 1.0, 0.0))]
            )
            decision = decide_verification(
                evidence(confidence, labels),
                RULE,
                reference_shift=0.0,
                look=look,
                at_deadline=False,
            )
            if decision.verdict != Verdict.WAIT:
                kept += decision.verdict == Verdict.KEEP
                break
    assert kept / runs <= 0.05 + 3 * (0.05 * 0.95 / runs) ** 0.5, kept

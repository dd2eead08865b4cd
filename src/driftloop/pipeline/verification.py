"""Verification's decision: is the new version worse than the old one on the same live traffic?

After a deploy, the version it replaced keeps scoring the live requests in shadow (its answers
never reach a client), so each shadowed request yields a *pair*: what the new version and the old
one made of the very same input. Verification compares the two on those pairs, never the new
version on today's traffic against the old one on yesterday's.

The signal, per pair, is the first of these that has enough values:

1. **realized accuracy**: where a feedback label arrived for a shadowed request, the new
   version's correctness minus the old one's (-1, 0 or +1), with one pretend pair of each
   sign added (pairs mostly 0 would otherwise show no spread and decide on a handful);
2. **confidence relative to each version's own reference**: the new version's confidence minus
   its validation mean, minus the same for the old version. A version that is less sure of
   itself than it was on its own validation data is struggling; comparing each to its own
   reference removes the difference between the two models' overall confidence levels.

The decision is a two-sided sequential test of the mean pair difference ``d`` against the
tolerance ``-t``: at the ``k``-th look (one per ``pipeline.verify_interval``, counted from the
first look with ``pipeline.verify_min_predictions`` pairs) with ``n`` pairs, mean ``m`` and
standard error ``s``:

* **roll back** when ``m + z_k s < -t`` (the new version is worse by more than ``t``);
* **keep** when ``m - z_k s > -t`` (it is not worse by more than ``t``);
* otherwise wait for more pairs,

where ``z_k`` is the normal quantile of ``1 - a_k`` and ``a_k = a * 6 / (pi^2 k^2)``: the
per-look error rates sum to ``a`` (``pipeline.verify_error_rate``), so however many looks the
deadline allows, a version exactly ``t`` worse is kept, or one exactly ``t`` better than that
rolled back, with probability at most ``a`` (a union bound over the looks; normal approximation
of the mean, sound from a few dozen pairs on).

At the deadline, with the test still open: with at least ``verify_min_predictions`` pairs the
point estimate decides (keep when ``m >= -t``); with fewer, the new version is kept, because the
quality gate already found it better on labeled held-out rows and the live traffic gave no
evidence against that. Every verdict says which rule decided it.

**A model served elsewhere** (``models.<name>.deploy``) has no shadow: driftloop does not see
its requests, only the insights its server reports. :func:`decide_against_before` compares the
new version's reported values after the deploy with the previous version's from the
``verify_deadline`` before it (realized accuracy of logged predictions when both have
``verify_min_labels`` labels, else confidence relative to each version's reference), with the
two-sample standard error and the same looks, tolerance and deadline rules. Its weakness: the
two windows hold different traffic, so a change in the traffic at the deploy reads as a
change of the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

from driftloop.errors import ConfigError

DISCRETE_PRIOR = np.array([1.0, -1.0])
"""Added to the realized-accuracy pairs (each -1, 0 or +1) before the test: the spread of
pairs that mostly agree is then never zero."""


PRETEND_OUTCOMES = np.array([1.0, 0.0])
"""Added to each version's labels (1 right, 0 wrong) when a model served elsewhere is verified
on realized accuracy before against after the deploy."""


class Verdict(StrEnum):
    KEEP = "keep"
    ROLL_BACK = "roll_back"
    WAIT = "wait"


@dataclass(frozen=True)
class PairedEvidence:
    """What the shadow pairs say so far, each array one value per pair (new minus old)."""

    confidence_gap: NDArray[np.float64] = field(
        default_factory=lambda: np.zeros(0, dtype=np.float64)
    )
    """New version's confidence minus the old one's, raw (before the reference correction)."""
    correct_gap: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    """New version's correctness minus the old one's, for pairs with a feedback label."""
    agreement: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    """1 where the two versions predicted the same class."""

    @property
    def pairs(self) -> int:
        return int(self.confidence_gap.size)

    def reversed(self) -> PairedEvidence:
        """The same pairs seen from the other version (old minus new)."""
        return PairedEvidence(-self.confidence_gap, -self.correct_gap, self.agreement)


@dataclass(frozen=True)
class VerificationRule:
    """The settings the decision uses (``pipeline.verify_*``)."""

    tolerance: float = 0.02
    error_rate: float = 0.05
    min_pairs: int = 50
    min_labels: int = 30

    def __post_init__(self) -> None:
        if not 0 < self.error_rate < 1:
            raise ConfigError(f"verify_error_rate must lie in (0, 1), got {self.error_rate}")
        if self.tolerance < 0:
            raise ConfigError(f"verify_tolerance cannot be negative, got {self.tolerance}")


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    signal: str
    """``realized accuracy``, ``confidence vs reference`` or ``none``."""
    rule: str
    """What decided: ``sequential test``, ``deadline: point estimate``, ``deadline: too few
    pairs``, or ``waiting``."""
    pairs: int
    mean: float | None
    bound: float | None
    """The confidence bound the test compared with ``-tolerance`` (upper for a rollback, lower
    for a keep), at this look's error rate."""
    agreement: float | None
    message: str

    def to_dict(self) -> dict[str, object]:
        return {
            "verdict": self.verdict.value,
            "signal": self.signal,
            "rule": self.rule,
            "pairs": self.pairs,
            "mean": self.mean,
            "bound": self.bound,
            "agreement": self.agreement,
            "message": self.message,
        }


def look_error_rate(error_rate: float, look: int) -> float:
    """The error rate spent at look ``look`` (1-based): ``a * 6 / (pi^2 k^2)``, summing to ``a``."""
    if look < 1:
        raise ValueError(f"looks are counted from 1, got {look}")
    return error_rate * 6.0 / (math.pi**2 * look**2)


def decide_verification(
    evidence: PairedEvidence,
    rule: VerificationRule,
    *,
    reference_shift: float,
    look: int,
    at_deadline: bool,
) -> Decision:
    """One look at the pairs. ``reference_shift`` is the new version's reference confidence
    minus the old one's; ``look`` counts the looks that had enough pairs (1-based)."""
    agreement = float(evidence.agreement.mean()) if evidence.agreement.size else None
    if evidence.correct_gap.size >= rule.min_labels:
        # one pretend pair each way: most pairs are 0 (both right or both wrong), and a run of
        # zeros alone has no spread, which would make any tiny sample look conclusive
        signal, values = "realized accuracy", np.concatenate([evidence.correct_gap, DISCRETE_PRIOR])
    elif evidence.pairs >= rule.min_pairs:
        signal, values = "confidence vs reference", evidence.confidence_gap - reference_shift
    else:
        if not at_deadline:
            return Decision(
                Verdict.WAIT,
                "none",
                "waiting",
                evidence.pairs,
                None,
                None,
                agreement,
                f"{evidence.pairs} of {rule.min_pairs} pairs so far",
            )
        return Decision(
            Verdict.KEEP,
            "none",
            "deadline: too few pairs",
            evidence.pairs,
            None,
            None,
            agreement,
            f"only {evidence.pairs} shadow pairs (of {rule.min_pairs} needed) by the deadline: "
            "kept on the gate's verdict, unverified on live traffic",
        )
    n = int(values.size)
    real = n - (DISCRETE_PRIOR.size if signal == "realized accuracy" else 0)
    mean = float(values.mean())
    spread = float(values.std(ddof=1)) if n > 1 else 0.0
    return _decide_on_bounds(
        Bounds(signal, real, mean, spread / math.sqrt(n), "the same traffic"),
        rule,
        look=look,
        at_deadline=at_deadline,
        agreement=agreement,
    )


@dataclass(frozen=True)
class Bounds:
    """A mean difference (new minus old) and its standard error, as a look sees them."""

    signal: str
    count: int
    mean: float
    error: float
    basis: str
    """What the two versions were compared on (``the same traffic``, or the windows
    before and after the deploy)."""


def _decide_on_bounds(
    bounds: Bounds,
    rule: VerificationRule,
    *,
    look: int,
    at_deadline: bool,
    agreement: float | None = None,
) -> Decision:
    """The sequential test of ``bounds.mean`` against ``-tolerance`` at look ``look``."""
    signal, real, mean = bounds.signal, bounds.count, bounds.mean
    z = NormalDist().inv_cdf(1.0 - look_error_rate(rule.error_rate, max(1, look)))
    upper, lower = mean + z * bounds.error, mean - z * bounds.error
    what = _describe_bounds(bounds, rule, look, lower, upper, agreement)
    on = f"on {bounds.basis}" if bounds.basis == "the same traffic" else "than before the deploy"
    if upper < -rule.tolerance:
        return Decision(
            Verdict.ROLL_BACK,
            signal,
            "sequential test",
            real,
            mean,
            upper,
            agreement,
            f"worse {on}: {what}",
        )
    if lower > -rule.tolerance:
        return Decision(
            Verdict.KEEP,
            signal,
            "sequential test",
            real,
            mean,
            lower,
            agreement,
            f"not worse {on}: {what}",
        )
    if not at_deadline:
        return Decision(
            Verdict.WAIT,
            signal,
            "waiting",
            real,
            mean,
            None,
            agreement,
            f"undecided so far: {what}",
        )
    verdict = Verdict.KEEP if mean >= -rule.tolerance else Verdict.ROLL_BACK
    outcome = "kept" if verdict == Verdict.KEEP else "rolled back"
    return Decision(
        verdict,
        signal,
        "deadline: point estimate",
        real,
        mean,
        mean,
        agreement,
        f"undecided by the deadline, {outcome} on the point estimate: {what}",
    )


def _describe_bounds(
    bounds: Bounds,
    rule: VerificationRule,
    look: int,
    lower: float,
    upper: float,
    agreement: float | None,
) -> str:
    """The look in words: the signal, the mean difference, its bounds and the tolerance."""
    signal, mean = bounds.signal, bounds.mean
    what = (
        f"{signal}: new minus old {mean:+.3f} over {bounds.count} pairs "
        f"(bounds {lower:+.3f}..{upper:+.3f} at look {look}, tolerance {rule.tolerance:g})"
        if bounds.basis == "the same traffic"
        else f"{signal}: new minus old {mean:+.3f} ({bounds.basis}; bounds "
        f"{lower:+.3f}..{upper:+.3f} at look {look}, tolerance {rule.tolerance:g})"
    )
    if agreement is not None:
        what += f", agreement {agreement:.2f}"
    return what


@dataclass(frozen=True)
class ReportedEvidence:
    """What a model served elsewhere reported, per version: the previous version's values
    from before the deploy, the new version's from after it (no pairs: not the same
    requests)."""

    new_confidence: NDArray[np.float64]
    old_confidence: NDArray[np.float64]
    new_correct: NDArray[np.float64]
    """``prediction_correct`` (1 or 0) of the new version's logged predictions that got a label."""
    old_correct: NDArray[np.float64]


def decide_against_before(
    evidence: ReportedEvidence,
    rule: VerificationRule,
    *,
    reference_shift: float,
    look: int,
    at_deadline: bool,
) -> Decision:
    """One look for a model served elsewhere: the new version after the deploy against the
    previous one before it, realized accuracy when both have ``min_labels`` labels, else
    confidence (each relative to its own reference) when both have ``min_pairs`` points; the
    mean difference's standard error is the two-sample one (``sqrt(s1^2/n1 + s2^2/n2)``), and
    the sequential test, its looks and its deadline rules are those of
    :func:`decide_verification`."""
    e = evidence
    if min(e.new_correct.size, e.old_correct.size) >= rule.min_labels:
        signal, new, old, shift = "realized accuracy", e.new_correct, e.old_correct, 0.0
    elif min(e.new_confidence.size, e.old_confidence.size) >= rule.min_pairs:
        signal, new, old = "confidence vs reference", e.new_confidence, e.old_confidence
        shift = reference_shift
    else:
        counts = f"{e.new_confidence.size} new and {e.old_confidence.size} previous points"
        if not at_deadline:
            return Decision(
                Verdict.WAIT, "none", "waiting", 0, None, None, None, f"{counts} so far"
            )
        return Decision(
            Verdict.KEEP,
            "none",
            "deadline: too few pairs",
            0,
            None,
            None,
            None,
            f"only {counts} (of {rule.min_pairs} each) by the deadline: kept on the gate's "
            "verdict, unverified on the reported insights",
        )
    basis = f"{new.size} points after the deploy against {old.size} before"
    count = int(new.size)
    if signal == "realized accuracy":  # as for the pairs: one pretend right and wrong each,
        new = np.concatenate([new, PRETEND_OUTCOMES])  # so a run of agreeing labels has spread
        old = np.concatenate([old, PRETEND_OUTCOMES])
    error = math.sqrt(_variance(new) / new.size + _variance(old) / old.size)
    mean = float(new.mean() - old.mean()) - shift
    return _decide_on_bounds(
        Bounds(signal, count, mean, error, basis),
        rule,
        look=look,
        at_deadline=at_deadline,
    )


def _variance(values: NDArray[np.float64]) -> float:
    return float(values.var(ddof=1)) if values.size > 1 else 0.0

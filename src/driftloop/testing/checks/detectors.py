"""The conformance suite of drift detectors (:class:`~driftloop.drift.DriftDetector`, the
``monitors[].detector.algorithm`` family).

The subject builds detectors against one reference and draws values like that reference and
values of a drift the detector is meant to catch. Every stream comes from a seeded generator, so
a check gives the same answer on every run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import cast

import numpy as np

from driftloop.drift.base import DriftDetector
from driftloop.errors import InvalidInputError
from driftloop.testing.checks.base import Check, checklist, expect, expect_raises, run_checks

Draw = Callable[[np.random.Generator, int], Sequence[float]]
"""``draw(rng, n)``: ``n`` values of a stream."""


@dataclass(frozen=True)
class DetectorSubject:
    """A drift detector under test, with streams like its reference and a drift it must see."""

    make: Callable[[], DriftDetector]
    """A new detector built against the reference."""
    reference: Draw
    """Values drawn like the reference: the detector should stay quiet on them."""
    shifted: Draw
    """Values of a drift the detector must detect."""
    false_alarm_rate: float
    """The per-value false-alarm budget the detector was built with."""
    quiet_run: int = 2_000
    """Reference values the false-alarm check feeds (keep it short: it is a smoke test)."""
    detect_within: int = 3_000
    """Shifted values the detector may take to fire."""
    lead_in: int = 0
    """Reference values fed before a shifted stream: what a detector that learns its reference
    from the stream itself needs first."""
    seed: int = 20_240_601


DETECTOR_CHECKS: list[Check[DetectorSubject]] = []
_check = checklist(DETECTOR_CHECKS)


def check_detector(subject: DetectorSubject) -> None:
    """Run every detector check on ``subject`` (:data:`DETECTOR_CHECKS`)."""
    run_checks(DETECTOR_CHECKS, subject)


Trace = list[tuple[bool, bool, float]]


def _feed(detector: DriftDetector, values: Sequence[float]) -> Trace:
    """Update with each value; the (drift, warning, statistic) after each update."""
    trace: Trace = []
    for value in values:
        detector.update(float(value))
        expect(
            not detector.drift_detected or detector.warning_detected,
            "drift_detected without warning_detected (a drift is a warning too)",
        )
        trace.append(
            (detector.drift_detected, detector.warning_detected, float(detector.statistic))
        )
    return trace


def _drifting_stream(subject: DetectorSubject, seed_offset: int = 0) -> list[float]:
    rng = np.random.default_rng(subject.seed + seed_offset)
    return [float(v) for v in subject.reference(rng, subject.lead_in)] + [
        float(v) for v in subject.shifted(rng, subject.detect_within)
    ]


def _same(first: Trace, second: Trace) -> bool:
    return all(
        a[:2] == b[:2] and (a[2] == b[2] or (math.isnan(a[2]) and math.isnan(b[2])))
        for a, b in zip(first, second, strict=True)
    )


@_check
def is_deterministic(subject: DetectorSubject) -> None:
    """Two detectors fed the same stream answer the same after every value."""
    stream = _drifting_stream(subject)
    expect(
        _same(_feed(subject.make(), stream), _feed(subject.make(), stream)),
        "two detectors built alike answered differently on the same stream",
    )


@_check
def respects_its_false_alarm_budget(subject: DetectorSubject) -> None:
    """On values like its reference it raises at most the false alarms its budget allows
    (the expected count plus three standard deviations, plus one)."""
    rng = np.random.default_rng(subject.seed + 1)
    detector = subject.make()
    values = [float(v) for v in subject.reference(rng, subject.lead_in + subject.quiet_run)]
    alarms = sum(drift for drift, _warning, _statistic in _feed(detector, values))
    expected = subject.false_alarm_rate * subject.quiet_run
    allowed = math.floor(expected + 3 * math.sqrt(expected)) + 1
    expect(
        alarms <= allowed,
        f"{alarms} false alarms in {subject.quiet_run} reference values; the budget "
        f"{subject.false_alarm_rate:g} per value allows {allowed}",
    )


@_check
def fires_on_a_shifted_stream(subject: DetectorSubject) -> None:
    """It detects the drift within ``detect_within`` shifted values."""
    stream = _drifting_stream(subject, 2)
    trace = _feed(subject.make(), stream)
    fired = [i for i, (drift, _w, _s) in enumerate(trace) if drift and i >= subject.lead_in]
    expect(bool(fired), f"no drift detected in {subject.detect_within} shifted values")


@_check
def counts_the_values_it_has_seen(subject: DetectorSubject) -> None:
    """``n_seen`` counts every update."""
    detector = subject.make()
    values = _drifting_stream(subject, 3)[:250]
    _feed(detector, values)
    expect(detector.n_seen == len(values), f"n_seen is {detector.n_seen} after {len(values)}")


@_check
def reset_forgets_everything(subject: DetectorSubject) -> None:
    """After ``reset()`` it answers like a new detector: no flags, ``n_seen`` 0, the same
    answers on the next stream."""
    stream = _drifting_stream(subject, 4)
    used = subject.make()
    _feed(used, stream)
    used.reset()
    expect(
        not used.drift_detected and not used.warning_detected and used.n_seen == 0,
        f"after reset(): drift={used.drift_detected}, warning={used.warning_detected}, "
        f"n_seen={used.n_seen}",
    )
    again = _drifting_stream(subject, 5)
    expect(
        _same(_feed(used, again), _feed(subject.make(), again)),
        "after reset() it answered differently from a new detector",
    )


@_check
def refuses_values_that_are_not_finite_numbers(subject: DetectorSubject) -> None:
    """NaN, infinities, booleans and ``None`` are an InvalidInputError and change nothing."""
    detector = subject.make()
    detector.update(float(subject.reference(np.random.default_rng(subject.seed), 1)[0]))
    refused: tuple[object, ...] = (math.nan, math.inf, -math.inf, True, None)
    for bad in refused:
        expect_raises(
            InvalidInputError, partial(detector.update, cast(float, bad)), f"update({bad!r})"
        )
    expect(detector.n_seen == 1, f"refused values were counted: n_seen={detector.n_seen}")

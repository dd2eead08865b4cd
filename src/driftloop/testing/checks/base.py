"""What every conformance suite shares: a check is a named function of the subject under test.

A suite is a list of :class:`Check` s; ``check_<family>(subject)`` runs them in order and stops
at the first that fails with a :class:`ConformanceError` naming it (river's ``check_estimator``
is the model). A test suite that wants one test per check parametrizes over the list instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Subject = TypeVar("Subject")


class ConformanceError(AssertionError):
    """An implementation does not behave as its family's contract says; names the check."""


@dataclass(frozen=True)
class Check(Generic[Subject]):
    """One behaviour every implementation of a family must show."""

    name: str
    describe: str
    """The first paragraph of the check's docstring: what an implementation must do."""
    run: Callable[[Subject], None]

    def __call__(self, subject: Subject) -> None:
        try:
            self.run(subject)
        except Exception as exc:
            detail = (
                str(exc) if isinstance(exc, ConformanceError) else f"{type(exc).__name__}: {exc}"
            )
            raise ConformanceError(
                f"check {self.name!r} ({self.describe}) failed: {detail}"
            ) from exc

    def __str__(self) -> str:
        return self.name


def checklist(
    checks: list[Check[Subject]],
) -> Callable[[Callable[[Subject], None]], Callable[[Subject], None]]:
    """A decorator that appends the decorated function to ``checks`` (in definition order)."""

    def register(function: Callable[[Subject], None]) -> Callable[[Subject], None]:
        paragraph = (function.__doc__ or function.__name__).strip().split("\n\n")[0]
        describe = " ".join(paragraph.split())
        checks.append(Check(function.__name__, describe, function))
        return function

    return register


def run_checks(checks: Sequence[Check[Subject]], subject: Subject) -> None:
    """Run every check on ``subject``; the first failure raises :class:`ConformanceError`."""
    for check in checks:
        check(subject)


def expect(condition: bool, message: str) -> None:
    """Fail the running check with ``message`` unless ``condition`` holds (``assert`` would
    vanish under ``python -O``)."""
    if not condition:
        raise ConformanceError(message)


def expect_raises(
    error: type[BaseException], action: Callable[[], object], what: str
) -> BaseException:
    """Run ``action``; fail unless it raises ``error`` (a subclass counts). Returns the error."""
    try:
        action()
    except error as exc:
        return exc
    except Exception as exc:
        raise ConformanceError(
            f"{what}: expected {error.__name__}, got {type(exc).__name__}: {exc}"
        ) from exc
    raise ConformanceError(f"{what}: expected {error.__name__}, nothing was raised")


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 20 ms until it holds; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise ConformanceError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)

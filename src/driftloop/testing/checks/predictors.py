"""The conformance suite of predictors (:class:`~driftloop.predictors.Predictor`, the model
directory's ``format`` family), for classifiers: inputs in, calibrated class probabilities out.

The subject is a ready predictor (trained, or built from known weights) and a few inputs it
answers; the checks save it, load it back through ``load``, and corrupt saved copies one file
at a time.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from driftloop.errors import IntegrityError, NotFoundError
from driftloop.predictors import MANIFEST, Predictor, load_predictor
from driftloop.testing.checks.base import Check, ConformanceError, checklist, expect, run_checks

GARBAGE = b"\x00\xffnot what was saved\xfe"


@dataclass(frozen=True)
class PredictorSubject:
    """A classifier under test and inputs it answers."""

    predictor: Predictor
    inputs: Sequence[Any]
    """A few inputs (texts, or records) of the kind the predictor takes; at least two."""
    load: Callable[[Path], Predictor] = load_predictor
    """How a saved model directory is read back (the registry and the server use
    :func:`~driftloop.predictors.load_predictor`)."""
    tolerance: float = 1e-6
    """How far two answers for one input may differ (batched or alone, before and after a
    save): floating-point kernels that pad a batch differ in the last digits."""


PREDICTOR_CHECKS: list[Check[PredictorSubject]] = []
_check = checklist(PREDICTOR_CHECKS)


def check_predictor(subject: PredictorSubject) -> None:
    """Run every predictor check on ``subject`` (:data:`PREDICTOR_CHECKS`)."""
    run_checks(PREDICTOR_CHECKS, subject)


def _probabilities(predictor: Predictor, inputs: Sequence[Any]) -> NDArray[np.float64]:
    answer = predictor.predict_proba(list(inputs))
    expect(isinstance(answer, np.ndarray), f"predict_proba returned {type(answer).__name__}")
    return np.asarray(answer, dtype=np.float64)


def _close(first: NDArray[np.float64], second: NDArray[np.float64], tolerance: float) -> bool:
    return first.shape == second.shape and bool(np.allclose(first, second, rtol=0, atol=tolerance))


@contextmanager
def _saved(predictor: Predictor) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch) / "model"
        predictor.save(directory)
        yield directory


@_check
def has_labels(subject: PredictorSubject) -> None:
    """Its labels are two or more distinct, non-empty strings."""
    labels = subject.predictor.labels
    expect(len(labels) >= 2, f"a classifier needs two labels or more, has {list(labels)}")
    expect(len(set(labels)) == len(labels), f"labels repeat: {list(labels)}")
    expect(
        all(isinstance(label, str) and label for label in labels),
        f"labels must be non-empty strings: {list(labels)}",
    )


@_check
def answers_probabilities_of_the_right_shape(subject: PredictorSubject) -> None:
    """One row per input, one column per label, each row finite, in [0, 1], summing to 1; an
    empty batch gives zero rows."""
    expect(len(subject.inputs) >= 2, "give the suite two inputs or more")
    labels = subject.predictor.labels
    probabilities = _probabilities(subject.predictor, subject.inputs)
    expect(
        probabilities.shape == (len(subject.inputs), len(labels)),
        f"shape {probabilities.shape} for {len(subject.inputs)} inputs and {len(labels)} labels",
    )
    expect(bool(np.all(np.isfinite(probabilities))), "probabilities are not all finite")
    expect(
        bool(np.all((probabilities >= 0) & (probabilities <= 1))), "probabilities outside [0, 1]"
    )
    expect(
        bool(np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)),
        f"rows sum to {probabilities.sum(axis=1)}, not 1",
    )
    empty = _probabilities(subject.predictor, [])
    expect(empty.shape == (0, len(labels)), f"an empty batch gave shape {empty.shape}")


@_check
def answers_each_input_alone_as_in_a_batch(subject: PredictorSubject) -> None:
    """An input's answer does not depend on the batch it came in (the server micro-batches)
    nor on the call (the same batch twice gives the same answer)."""
    batch = _probabilities(subject.predictor, subject.inputs)
    again = _probabilities(subject.predictor, subject.inputs)
    expect(_close(batch, again, subject.tolerance), "the same batch twice answered differently")
    for index, item in enumerate(subject.inputs):
        alone = _probabilities(subject.predictor, [item])
        expect(
            _close(alone[0], batch[index], subject.tolerance),
            f"input {index} alone gave {alone[0]}, in the batch {batch[index]}",
        )


@_check
def saves_and_loads_to_the_same_answers(subject: PredictorSubject) -> None:
    """A saved and reloaded predictor has the same class, labels and answers."""
    original = subject.predictor
    with _saved(original) as directory:
        expect((directory / MANIFEST).is_file(), f"save() wrote no {MANIFEST}")
        loaded = subject.load(directory)
    expect(
        type(loaded) is type(original),
        f"loaded a {type(loaded).__name__}, saved a {type(original).__name__}",
    )
    expect(
        loaded.labels == original.labels,
        f"labels {loaded.labels} after loading, {original.labels} before",
    )
    before = _probabilities(original, subject.inputs)
    after = _probabilities(loaded, subject.inputs)
    expect(
        _close(before, after, subject.tolerance),
        f"answers changed by a save and load: {before[0]} became {after[0]}",
    )


@_check
def rejects_a_corrupt_directory(subject: PredictorSubject) -> None:
    """A missing manifest is a NotFoundError; any other saved file garbled or removed is an
    IntegrityError, unless the model loads without it and answers exactly as before (a
    redundant file); never another error, never a model that answers differently."""
    expected = _probabilities(subject.predictor, subject.inputs)
    with _saved(subject.predictor) as directory:
        files = sorted(p.relative_to(directory) for p in directory.rglob("*") if p.is_file())
        for relative in files:
            for damage in ("garbled", "removed"):
                with tempfile.TemporaryDirectory() as scratch:
                    copy = Path(scratch) / "model"
                    shutil.copytree(directory, copy)
                    if damage == "garbled":
                        (copy / relative).write_bytes(GARBAGE)
                    else:
                        (copy / relative).unlink()
                    _expect_refused_or_unchanged(
                        subject,
                        copy,
                        f"{relative} was {damage}",
                        expected,
                        missing_manifest=(damage == "removed" and str(relative) == MANIFEST),
                    )


def _expect_refused_or_unchanged(
    subject: PredictorSubject,
    directory: Path,
    damage: str,
    expected: NDArray[np.float64],
    *,
    missing_manifest: bool,
) -> None:
    refusal: type[Exception] = NotFoundError if missing_manifest else IntegrityError
    try:
        loaded = subject.load(directory)
    except refusal:
        return
    except Exception as exc:
        raise ConformanceError(
            f"loading a model whose {damage}: expected {refusal.__name__}, "
            f"got {type(exc).__name__}: {exc}"
        ) from exc
    expect(not missing_manifest, f"a model whose {damage} loaded")
    try:
        answers = _probabilities(loaded, subject.inputs)
    except Exception as exc:
        raise ConformanceError(
            f"a model whose {damage} loaded, then failed to answer: {type(exc).__name__}: {exc}"
        ) from exc
    expect(
        _close(answers, expected, subject.tolerance),
        f"a model whose {damage} loaded and answers differently",
    )

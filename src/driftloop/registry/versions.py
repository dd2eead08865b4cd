"""The records of the registry: an immutable :class:`ModelVersion` and an :class:`AliasChange`."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from driftloop.errors import InvalidInputError, NotFoundError
from driftloop.predictors import (
    Evaluation,
    ModelEvaluation,
    OutputKind,
    ReferenceProfile,
    RegressionEvaluation,
)

PRODUCTION = "production"
CANDIDATE = "candidate"
TRIGGER_PATTERN = re.compile(r"^(manual|[a-z][a-z0-9_-]{0,31}:\S{1,200})$")


def check_trigger(trigger: str) -> str:
    """``manual`` or ``<kind>:<id>``: ``incident:<id>``, ``ci:<run>``, ``job:<id>`` ..."""
    if not TRIGGER_PATTERN.match(trigger):
        raise InvalidInputError(
            f"invalid trigger {trigger!r}: expected 'manual' or KIND:ID such as "
            "'incident:<id>' or 'ci:<run>'"
        )
    return trigger


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version; nothing about it changes after registration, except
    ``deployed_at``, written once when it first becomes ``production``."""

    name: str
    version: int
    content_hash: str
    artifact_uri: str
    trainer: str
    params: dict[str, Any]
    snapshot_id: str | None
    snapshot_hash: str | None
    evaluation: ModelEvaluation | None
    reference: ReferenceProfile | None
    parent_version: int | None
    trigger: str
    created_at: datetime
    deployed_at: datetime | None

    @property
    def training_code(self) -> str:
        """The training code that made it, as an upload recorded it (``repo@commit run
        run_id``, e.g. a GitHub workflow's); empty when unknown."""
        code = self.params.get("training_code")
        if not isinstance(code, dict):
            return ""
        repo, commit, run = (str(code.get(key, "")) for key in ("repo", "commit", "run_id"))
        where = f"{repo}@{commit[:12]}" if repo and commit else repo or commit[:12]
        return " ".join(part for part in (where, f"run {run}" if run else "") if part)

    def to_dict(self, *, full_reference: bool = False) -> dict[str, Any]:
        """JSON-ready; the reference profile is summarised unless ``full_reference``."""
        reference: dict[str, Any] | None = None
        if self.reference is not None:
            reference = (
                self.reference.to_dict()
                if full_reference
                else {
                    "mean_confidence": self.reference.mean_confidence,
                    "class_mix": self.reference.class_mix,
                    "metrics": self.reference.metrics,
                    "sample_size": len(self.reference.confidences),
                }
            )
        return {
            "name": self.name,
            "version": self.version,
            "content_hash": self.content_hash,
            "artifact_uri": self.artifact_uri,
            "trainer": self.trainer,
            "params": self.params,
            "snapshot_id": self.snapshot_id,
            "snapshot_hash": self.snapshot_hash,
            "evaluation": None if self.evaluation is None else self.evaluation.to_dict(),
            "reference": reference,
            "parent_version": self.parent_version,
            "trigger": self.trigger,
            "created_at": self.created_at.isoformat(),
            "deployed_at": None if self.deployed_at is None else self.deployed_at.isoformat(),
        }


@dataclass(frozen=True)
class AliasChange:
    """One row of an alias's history: ``action`` is ``set`` or ``rollback``."""

    name: str
    alias: str
    version: int
    previous_version: int | None
    action: str
    actor: str
    changed_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "alias": self.alias,
            "version": self.version,
            "previous_version": self.previous_version,
            "action": self.action,
            "actor": self.actor,
            "changed_at": self.changed_at.isoformat(),
        }


def read_evaluation_file(
    path: Path, output: OutputKind = "classification"
) -> tuple[ModelEvaluation | None, ReferenceProfile | None]:
    """An evaluation JSON written by an external training job (e.g. a CI run), for a model of
    the ``output`` kind.

    Either the evaluation's fields at the top level, or an object with ``evaluation`` and
    optionally ``reference`` (:class:`ReferenceProfile` fields). A classifier's evaluation has
    the :class:`Evaluation` fields, a regression model's the :class:`RegressionEvaluation`
    fields (``mae``, ``rmse``, ``r2``, ``n``); see :func:`parse_evaluation`.
    """
    if not path.is_file():
        raise NotFoundError(f"no such evaluation file: {path}")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise InvalidInputError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path} must hold a JSON object")
    top_level = bool(set(data) & (_FIELDS["classification"] | _FIELDS["regression"]))
    raw_evaluation = data.get("evaluation", data if top_level else None)
    raw_reference = data.get("reference")
    evaluation = (
        None if raw_evaluation is None else parse_evaluation(raw_evaluation, output, str(path))
    )
    try:
        reference = None if raw_reference is None else ReferenceProfile.from_dict(raw_reference)
    except TypeError as exc:
        raise InvalidInputError(
            f"{path}: expected the fields of a ReferenceProfile under 'reference' "
            f"({', '.join(f.name for f in fields(ReferenceProfile))}): {exc}"
        ) from exc
    return evaluation, reference


_KINDS: dict[str, type[Evaluation] | type[RegressionEvaluation]] = {
    "classification": Evaluation,
    "regression": RegressionEvaluation,
}
_FIELDS: dict[str, frozenset[str]] = {
    kind: frozenset(f.name for f in fields(cls) if f.name != "output")
    for kind, cls in _KINDS.items()
}


def parse_evaluation(raw: Any, output: OutputKind, where: str) -> ModelEvaluation:
    """A classifier's :class:`Evaluation` or a regression model's
    :class:`RegressionEvaluation`, as ``output`` says, from a JSON object; an
    :class:`InvalidInputError` naming the field that is missing, unknown or not a number, or
    saying that the evaluation is of the other kind."""
    if not isinstance(raw, dict):
        raise InvalidInputError(f"{where}: the evaluation must be a JSON object")
    expected = _FIELDS[output]
    other = "regression" if output == "classification" else "classification"
    names = ", ".join(sorted(expected))
    foreign = sorted((set(raw) & _FIELDS[other]) - expected)
    declared = raw.get("output", output)
    if foreign or declared != output:
        what = f"fields {foreign}" if foreign else f"output {declared!r}"
        raise InvalidInputError(
            f"{where}: the evaluation has {what} of a {other} evaluation, but the model is a "
            f"{output} model: its evaluation has the fields {names}"
        )
    unknown = sorted(set(raw) - expected - {"output"})
    missing = sorted(expected - set(raw))
    if unknown or missing:
        problem = f"unknown field {unknown[0]!r}" if unknown else f"no field {missing[0]!r}"
        raise InvalidInputError(
            f"{where}: the evaluation has {problem}; a {output} model's evaluation has the "
            f"fields {names}"
        )
    values = {name: _checked_field(name, raw[name], where) for name in expected}
    return _KINDS[output](**values)


def _checked_field(name: str, value: Any, where: str) -> Any:
    """A field's value, checked: ``n`` a count, ``per_class_f1`` numbers by class, the rest
    finite numbers."""
    if name == "per_class_f1":
        if not isinstance(value, dict):
            raise InvalidInputError(f"{where}: field 'per_class_f1' must map classes to numbers")
        return {str(k): _number(f"per_class_f1.{k}", v, where) for k, v in value.items()}
    if name == "n":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInputError(f"{where}: field 'n' is {value!r}, not a count of rows")
        return value
    return _number(name, value, where)


def _number(name: str, value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(f"{where}: field {name!r} is {value!r}, not a finite number")
    return float(value)


def evaluation_output(evaluation: ModelEvaluation) -> OutputKind:
    """The output kind of the model an evaluation measures."""
    return "regression" if isinstance(evaluation, RegressionEvaluation) else "classification"

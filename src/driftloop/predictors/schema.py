"""What a model takes and what it gives: its :class:`InputSchema` and its :data:`OutputKind`.

A model's inputs are either texts (``InputSchema.text()``, what driftloop's own classifiers
take) or records of named, typed features (``InputSchema.record(...)``): numbers, integers,
categories (one of a fixed list of strings), free strings and booleans, each required or
optional. The server validates every request item against the schema of the version that
answers it and hands the predictor a list of texts, or a list of ``dict``s (feature name →
value, ``None`` for a missing optional feature).

Its output is a ``classification`` (one row of class probabilities per input, over the
predictor's ``labels``) or a ``regression`` (one value per input, or one row ``[value, lower,
upper]`` when the model also gives an interval).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from driftloop.errors import InvalidInputError

OutputKind = Literal["classification", "regression"]
OUTPUT_KINDS: tuple[str, ...] = get_args(OutputKind)

FeatureType = Literal["number", "integer", "category", "string", "boolean"]
FEATURE_TYPES: tuple[str, ...] = get_args(FeatureType)

FEATURE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
"""A feature's name: a JSON key that is also a plain column name."""


@dataclass(frozen=True)
class Feature:
    """One named, typed field of a record input."""

    name: str
    type: FeatureType
    optional: bool = False
    categories: tuple[str, ...] = ()
    """For a ``category``: the values it may take."""

    def __post_init__(self) -> None:
        if not FEATURE_NAME.match(self.name):
            raise InvalidInputError(
                f"feature name {self.name!r} must be a letter or _ then letters, digits, "
                "_ . - (at most 64 characters)"
            )
        if self.type not in FEATURE_TYPES:
            raise InvalidInputError(
                f"feature {self.name!r} has type {self.type!r}; known "
                f"types: {', '.join(FEATURE_TYPES)}"
            )
        if self.type == "category" and not self.categories:
            raise InvalidInputError(f"category feature {self.name!r} needs its categories")
        if self.type != "category" and self.categories:
            raise InvalidInputError(
                f"feature {self.name!r} is a {self.type}: only a category has categories"
            )

    @classmethod
    def number(cls, name: str, *, optional: bool = False) -> Feature:
        return cls(name, "number", optional)

    @classmethod
    def integer(cls, name: str, *, optional: bool = False) -> Feature:
        return cls(name, "integer", optional)

    @classmethod
    def category(cls, name: str, categories: Sequence[str], *, optional: bool = False) -> Feature:
        return cls(name, "category", optional, tuple(categories))

    @classmethod
    def string(cls, name: str, *, optional: bool = False) -> Feature:
        return cls(name, "string", optional)

    @classmethod
    def boolean(cls, name: str, *, optional: bool = False) -> Feature:
        return cls(name, "boolean", optional)

    def example(self) -> Any:
        """A valid value (the warm-up record is made of these)."""
        return {
            "number": 0.0,
            "integer": 0,
            "string": "",
            "boolean": False,
            "category": self.categories[0] if self.categories else "",
        }[self.type]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "type": self.type, "optional": self.optional}
        if self.categories:
            data["categories"] = list(self.categories)
        return data


@dataclass(frozen=True)
class InputSchema:
    """A model's inputs: texts, or records of :class:`Feature` fields."""

    kind: Literal["text", "record"]
    features: tuple[Feature, ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "text" and self.features:
            raise InvalidInputError("a text input has no features")
        if self.kind == "record":
            if not self.features:
                raise InvalidInputError("a record input needs at least one feature")
            names = [feature.name for feature in self.features]
            duplicates = sorted({name for name in names if names.count(name) > 1})
            if duplicates:
                raise InvalidInputError(f"features named more than once: {duplicates}")
        elif self.kind != "text":
            raise InvalidInputError(f"input kind {self.kind!r} is neither 'text' nor 'record'")

    @classmethod
    def text(cls) -> InputSchema:
        return cls("text")

    @classmethod
    def record(cls, *features: Feature) -> InputSchema:
        return cls("record", tuple(features))

    @property
    def is_text(self) -> bool:
        return self.kind == "text"

    def example(self) -> Any:
        """One valid input: a short text, or a record of each feature's example value."""
        if self.is_text:
            return "driftloop example text"
        return {feature.name: feature.example() for feature in self.features}

    def to_dict(self) -> dict[str, Any]:
        if self.is_text:
            return {"kind": "text"}
        return {"kind": "record", "features": [feature.to_dict() for feature in self.features]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSchema:
        if data.get("kind") == "text":
            return cls.text()
        return cls.record(
            *(
                Feature(
                    str(f["name"]),
                    f["type"],
                    bool(f.get("optional", False)),
                    tuple(f.get("categories", ())),
                )
                for f in data.get("features", ())
            )
        )


TEXT = InputSchema.text()
"""The input of a text model."""


FEATURE_METRIC_PREFIX = "feature."
"""A feature's insight is named ``feature.<name>``."""


def feature_metrics(schema: InputSchema, record: Mapping[str, Any]) -> dict[str, float]:
    """The insights one record reports (#19 part 5): ``feature.<name>`` → a number's value (a
    boolean as 0 or 1), or a category's index among the feature's categories (what the
    chi-square detector counts). Strings, missing values and unknown categories report
    nothing."""
    values: dict[str, float] = {}
    for key, name, indexes in _reported_features(schema):
        value = record.get(key)
        if value is None:
            continue
        if indexes is not None:
            index = indexes.get(value)
            if index is not None:
                values[name] = index
        elif isinstance(value, bool | int | float) and math.isfinite(value):
            values[name] = float(value)
    return values


_Reported = tuple[tuple[str, str, dict[str, float] | None], ...]
_REPORTED: dict[int, tuple[InputSchema, _Reported]] = {}


def _reported_features(schema: InputSchema) -> _Reported:
    """Per reported feature: its key, its insight's name, and a category's index by value
    (None for a number); computed once per schema object (the request path calls
    :func:`feature_metrics` per record, and hashing a schema costs more than the lookup)."""
    cached = _REPORTED.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    reported = tuple(
        (
            f.name,
            FEATURE_METRIC_PREFIX + f.name,
            {c: float(i) for i, c in enumerate(f.categories)} if f.type == "category" else None,
        )
        for f in schema.features
        if f.type != "string"
    )
    if len(_REPORTED) >= 256:
        _REPORTED.clear()
    _REPORTED[id(schema)] = (schema, reported)
    return reported


def feature_references(
    schema: InputSchema, records: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, list[float]], dict[str, dict[str, int]]]:
    """A reference sample per feature of ``records``: the values of each numeric or boolean
    feature, and the count of each category of each category feature (in the feature's order),
    keyed ``feature.<name>``."""
    numbers: dict[str, list[float]] = {}
    counts: dict[str, dict[str, int]] = {
        FEATURE_METRIC_PREFIX + f.name: dict.fromkeys(f.categories, 0)
        for f in schema.features
        if f.type == "category"
    }
    for record in records:
        for name, value in feature_metrics(schema, record).items():
            mix = counts.get(name)
            if mix is None:
                numbers.setdefault(name, []).append(value)
            else:
                feature = next(f for f in schema.features if FEATURE_METRIC_PREFIX + f.name == name)
                mix[feature.categories[int(value)]] += 1
    return numbers, counts


def check_output_kind(kind: object, what: str) -> OutputKind:
    if kind not in OUTPUT_KINDS:
        raise InvalidInputError(
            f"{what} declares output {kind!r}; known output kinds: {', '.join(OUTPUT_KINDS)}"
        )
    return kind  # type: ignore[return-value]

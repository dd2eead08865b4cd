"""The value types every section of ``driftloop.yaml`` uses: durations (``"5m"``), names,
thresholds absolute or relative to the model's reference, and the strict base model."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_RELATIVE_THRESHOLD = re.compile(r"^\s*reference\s*(?:([+-])\s*(\d+(?:\.\d+)?))?\s*$")


def parse_duration(value: object) -> float:
    """``"5m"`` → 300.0 seconds; numbers are seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    raise ValueError(f"expected a duration such as 30s, 5m, 1h, got {value!r}")


_DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": _DURATION.pattern, "examples": ["30s", "5m", "1h"]},
    ]
}
Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Threshold(StrictModel):
    """A threshold, absolute (``0.8``) or relative to the model's validation reference
    (``"reference - 0.05"``), so one monitor fits every model version."""

    value: float
    relative: bool = False

    def resolve(self, reference: float | None) -> float | None:
        """The absolute threshold; ``None`` while a relative one has no reference yet."""
        if not self.relative:
            return self.value
        return None if reference is None else reference + self.value

    def __str__(self) -> str:
        if not self.relative:
            return f"{self.value:g}"
        sign = "-" if self.value < 0 else "+"
        return f"reference {sign} {abs(self.value):g}"


def _parse_threshold(value: object) -> object:
    if isinstance(value, Threshold | None | dict):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"value": float(value)}
    if isinstance(value, str):
        match = _RELATIVE_THRESHOLD.match(value)
        if match:
            offset = float(match.group(2) or 0.0)
            return {"value": -offset if match.group(1) == "-" else offset, "relative": True}
    raise ValueError(f"expected a number or 'reference - X', got {value!r}")


_THRESHOLD_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number"},
        {
            "type": "string",
            "pattern": _RELATIVE_THRESHOLD.pattern,
            "examples": ["reference - 0.05"],
        },
    ]
}
ThresholdValue = Annotated[
    Threshold, BeforeValidator(_parse_threshold), WithJsonSchema(_THRESHOLD_SCHEMA)
]


class Thresholds(StrictModel):
    warning: ThresholdValue | None = None
    critical: ThresholdValue | None = None
    warning_recovery: ThresholdValue | None = None
    critical_recovery: ThresholdValue | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> Thresholds:
        if self.warning is None and self.critical is None:
            raise ValueError("set at least one of warning, critical")
        return self

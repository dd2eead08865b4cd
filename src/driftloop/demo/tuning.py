"""What the demo sets per trainer: the model's training parameters and the traffic's shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from driftloop.errors import ConfigError


@dataclass(frozen=True)
class TrainerTuning:
    """What the demo sets for one trainer: the model's training parameters and the traffic's
    shape. Nothing here decides: the monitors, the retrain data policy and the verification are
    the defaults ``driftloop init`` writes (:func:`driftloop.demo.config.demo_monitors`)."""

    params: dict[str, Any]
    batch: int
    """Texts per traffic request."""
    pause: float
    """Seconds each traffic client waits between requests."""
    rationale: str


TUNINGS: dict[str, TrainerTuning] = {
    "sklearn": TrainerTuning(
        params={},
        batch=8,
        pause=0.1,
        rationale="TF-IDF + logistic regression: trains in seconds, serves thousands of texts "
        "per second on a CPU",
    ),
    "transformers": TrainerTuning(
        params={"mode": "head", "max_train_rows": 2000, "torch_threads": 1},
        batch=2,
        pause=1.0,
        rationale="the packaged MiniLM encoder with a linear head, on at most 2,000 rows and "
        "one torch thread, so that it trains in about a minute on a 2-core CPU; "
        "fewer, smaller requests, since each text costs milliseconds",
    ),
}


def tuning_for(trainer: str) -> TrainerTuning:
    try:
        return TUNINGS[trainer]
    except KeyError:
        raise ConfigError(
            f"--trainer must be one of {', '.join(sorted(TUNINGS))}, got {trainer!r}"
        ) from None

"""The tabular scenario's data: real image-segment records (``segment.csv.gz``) split on one
covariate, the colour saturation of the region.

v1 learns from the less saturated half of the records; the traffic then shifts to the more
saturated half, and the newest snapshot (the labeled rows that land while it does) holds only
that half. Every class has rows on both sides of the split, so v1 knows all seven labels and
its failure is the covariate shift itself. Measured with the example trainer (logistic
regression): v1's accuracy falls from about 0.96 on its own half to about 0.45 on the other,
its mean confidence from about 0.94 to 0.83; v2, trained on the newest snapshot alone, scores
about 0.90 there. Traffic is drawn from rows that are in neither snapshot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from driftloop.demo.scenario import DemoScenario
from driftloop.demo.tabular.example.predictor import FEATURES, record_json
from driftloop.errors import ConfigError

TABULAR_MODEL = "segment-classifier"
TABULAR_DATASET = "segments"
DRIFT_FEATURE = "saturation_mean"
"""The covariate the traffic shifts along: rows above its median are the drifted half."""
RECORD_COLUMN = "record"
"""A snapshot's column holding each record's canonical JSON (``models.<name>.text_column``:
what the retrain pipeline keys rows by and its gate scores)."""
INPUT_COLUMN = "input"
"""A traffic pool's column holding each record as a ``dict``, as a client sends it."""
LABEL_COLUMN = "label"


def segment_data_path() -> Path:
    """The bundled data file (its source and licence: ``SOURCES.md`` beside it)."""
    return Path(__file__).with_name("segment.csv.gz")


def build_tabular_scenario(
    frame: pd.DataFrame | None = None, *, traffic_fraction: float = 0.25, seed: int = 7
) -> DemoScenario:
    """Split ``frame`` (default: the bundled segments) at the median of :data:`DRIFT_FEATURE`
    into what v1 learns (snapshot 1, known traffic) and what the traffic shifts to (snapshot 2,
    the newest labeled rows alone; drifted traffic)."""
    data = pd.read_csv(segment_data_path()) if frame is None else frame.copy()
    missing = [c for c in (*FEATURES, LABEL_COLUMN) if c not in data.columns]
    if missing:
        raise ConfigError(f"the tabular scenario's data lacks the columns {missing}")
    data[list(FEATURES)] = data[list(FEATURES)].astype(float)
    # 224 of the 2,310 records repeat another one exactly (features and label): kept once, so
    # that no traffic record is one a model trained on
    data = data.drop_duplicates(subset=list(FEATURES)).reset_index(drop=True)
    data[RECORD_COLUMN] = [record_json(record) for record in _records(data)]
    is_drifted = data[DRIFT_FEATURE] > data[DRIFT_FEATURE].median()
    lost = sorted(set(data[LABEL_COLUMN]) - set(data.loc[~is_drifted, LABEL_COLUMN]))
    if lost:
        raise ConfigError(f"the split at the median of {DRIFT_FEATURE} leaves v1 no rows of {lost}")
    known = data[~is_drifted].sample(frac=1.0, random_state=seed)
    drifted = data[is_drifted].sample(frac=1.0, random_state=seed)
    known_cut, drifted_cut = (
        int(len(known) * traffic_fraction),
        int(len(drifted) * traffic_fraction),
    )
    return DemoScenario(
        snapshot_1=known.iloc[known_cut:].reset_index(drop=True),
        snapshot_2=drifted.iloc[drifted_cut:].reset_index(drop=True),
        known_traffic=_traffic(known.iloc[:known_cut]),
        drifted_traffic=_traffic(drifted.iloc[:drifted_cut]),
        key_column=RECORD_COLUMN,
    )


def _traffic(rows: pd.DataFrame) -> pd.DataFrame:
    pool = rows.reset_index(drop=True)
    pool[INPUT_COLUMN] = pd.Series(_records(pool), index=pool.index, dtype=object)
    return pool


def _records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {feature: float(value) for feature, value in zip(FEATURES, values, strict=True)}
        for values in rows[list(FEATURES)].itertuples(index=False)
    ]

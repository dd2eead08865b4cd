"""The demo's data: the bundled reviews split by subtopic into what v1 knows and what drifts in.

Snapshot 1 lacks the drifting subtopics; snapshot 2 (the newer labeled data that lands in
storage while traffic drifts) adds them. Snapshot 2 is either cumulative (every row of
snapshot 1 plus the new subtopics: the default) or, with ``newest_window``, a sliding window of
the newest labeled rows (newer rows of the known subtopics plus the new ones; snapshot 1 keeps
the older known rows), the way a team that retrains on its last weeks of labels would store
it. Traffic is drawn from rows that are in neither snapshot, so accuracy on it is measured on
data no model trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from driftloop.errors import ConfigError
from driftloop.objectstore import bundled_reviews_path

DRIFTING_SUBTOPICS: tuple[str, ...] = ("imdb_user_review",)
"""The subtopic v1 never sees: long IMDB user reviews (Movies keeps its short critic snippets in
snapshot 1, so every class is present). Measured with the sklearn trainer: v1's calibrated
confidence falls from 0.79 on known traffic to 0.64 on these (accuracy 0.54); v2, trained on
snapshot 2, serves them at 0.79 (accuracy 0.72), level with its own validation reference, so
its drift detector stays quiet. Subtopics such as critic snippets or headlines drop confidence
further but stay hard (about 0.72) even after retraining, so no monitor could recover on them.

With the transformers trainer (frozen MiniLM + linear head) no other subtopic drops v1's
confidence by more than 0.08; IMDB user reviews drop it by 0.27 (0.76 → 0.50, accuracy 0.60).
Long reviews stay harder for a frozen encoder after retraining: v2 serves them about 0.10 under
its reference when snapshot 2 is cumulative (15% of it IMDB), 0.02-0.04 under it when snapshot
2 is the newest window (``newest_window=0.25``: 46% IMDB), which is what the demo uses."""


@dataclass(frozen=True)
class DemoScenario:
    snapshot_1: pd.DataFrame
    snapshot_2: pd.DataFrame
    known_traffic: pd.DataFrame
    drifted_traffic: pd.DataFrame
    key_column: str = "text"
    """The column that identifies a row (a text; a record's canonical JSON)."""

    @property
    def new_rows(self) -> pd.DataFrame:
        """The rows of snapshot 2 that snapshot 1 lacks: the labeled data that lands in
        storage while the traffic drifts (the retrain data policy decides what else a
        retrain learns from)."""
        known = set(self.snapshot_1[self.key_column].astype(str))
        fresh = ~self.snapshot_2[self.key_column].astype(str).isin(known)
        return self.snapshot_2[fresh].reset_index(drop=True)

    def write(self, directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        first, second = directory / "snapshot-1.csv", directory / "snapshot-2.csv"
        self.snapshot_1.to_csv(first, index=False)
        self.snapshot_2.to_csv(second, index=False)
        return first, second


def build_scenario(
    frame: pd.DataFrame | None = None,
    *,
    drifting: tuple[str, ...] = DRIFTING_SUBTOPICS,
    traffic_fraction: float = 0.25,
    seed: int = 7,
    newest_window: float | None = None,
) -> DemoScenario:
    """Split ``frame`` (default: the bundled reviews) into the demo's snapshots and traffic.

    ``newest_window`` (a fraction in (0, 1)): snapshot 2 holds only the newest rows, namely
    that fraction of the known subtopics' training rows (which snapshot 1 then lacks) plus the
    drifting subtopics' rows; ``None``: snapshot 2 holds snapshot 1 plus the drifting rows.
    """
    if newest_window is not None and not 0 < newest_window < 1:
        raise ConfigError(f"newest_window must lie in (0, 1), got {newest_window}")
    data = pd.read_csv(bundled_reviews_path()) if frame is None else frame
    known_subtopics = set(data["subtopic"])
    unknown = sorted(set(drifting) - known_subtopics)
    if not drifting or unknown:
        raise ConfigError(
            f"drifting subtopics must be some of {sorted(known_subtopics)}; got {list(drifting)}"
        )
    is_drifting = data["subtopic"].isin(drifting)
    lost = sorted(set(data["label"]) - set(data.loc[~is_drifting, "label"]))
    if lost:
        raise ConfigError(
            f"holding out {list(drifting)} leaves no rows of the classes {lost} "
            "for the first model: keep at least one subtopic of each class"
        )
    known = data[~is_drifting].sample(frac=1.0, random_state=seed)
    drifted = data[is_drifting].sample(frac=1.0, random_state=seed)
    known_cut = int(len(known) * traffic_fraction)
    drifted_cut = int(len(drifted) * traffic_fraction)
    known_traffic, known_train = known.iloc[:known_cut], known.iloc[known_cut:]
    drifted_traffic, drifted_train = drifted.iloc[:drifted_cut], drifted.iloc[drifted_cut:]
    if newest_window is None:
        snapshot_1 = known_train.reset_index(drop=True)
        snapshot_2 = pd.concat([known_train, drifted_train]).sample(frac=1.0, random_state=seed)
    else:
        cut = int(len(known_train) * (1 - newest_window))
        snapshot_1 = known_train.iloc[:cut].reset_index(drop=True)
        snapshot_2 = pd.concat([known_train.iloc[cut:], drifted_train]).sample(
            frac=1.0, random_state=seed
        )
    return DemoScenario(
        snapshot_1=snapshot_1,
        snapshot_2=snapshot_2.reset_index(drop=True),
        known_traffic=known_traffic.reset_index(drop=True),
        drifted_traffic=drifted_traffic.reset_index(drop=True),
    )

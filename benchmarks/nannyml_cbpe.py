"""NannyML's CBPE on the windows benchmarks/estimated_accuracy.py writes; runs in the NannyML venv
(``make .venv-nannyml/.installed``), never imports driftloop.

    .venv-nannyml/bin/python benchmarks/nannyml_cbpe.py DIR [DIR ...]

Each ``DIR`` holds ``reference.csv`` (the model's held-out split) and ``analysis.csv`` (the windows,
one after another, each ``window_size`` rows, in ``meta.json``) with one probability column
per class (``p_<class>``), ``y_pred`` and ``y_true``; NannyML's estimated accuracy of each
window is written to ``DIR/nannyml.json`` as a list, in window order.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"  # NannyML would post usage to segment.io

import nannyml  # type: ignore[import-not-found]  # only in .venv-nannyml
import pandas as pd


def estimate(directory: Path) -> None:
    meta = json.loads((directory / "meta.json").read_text())
    reference = pd.read_csv(directory / "reference.csv")
    analysis = pd.read_csv(directory / "analysis.csv")
    classes = meta["classes"]
    estimator = nannyml.CBPE(
        y_pred_proba={c: f"p_{c}" for c in classes},
        y_pred="y_pred",
        y_true="y_true",
        problem_type="classification_multiclass",
        metrics=["accuracy"],
        chunk_size=int(meta["window_size"]),
    )
    estimator.fit(reference)
    result = estimator.estimate(analysis).filter(period="analysis").to_df()
    values = [float(v) for v in result[("accuracy", "value")]]
    (directory / "nannyml.json").write_text(
        json.dumps({"version": nannyml.__version__, "estimates": values})
    )


def main() -> None:
    for argument in sys.argv[1:]:
        estimate(Path(argument))


if __name__ == "__main__":
    main()

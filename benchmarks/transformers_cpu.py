"""CPU quality of the ``transformers`` trainer on the bundled reviews (issue #20 part 3).

Fits the trainer (the packaged MiniLM checkpoint, nothing downloaded) on the whole bundled
review dataset with the given ``params`` and prints one table row: the setting, the train /
validation / test rows, the fit time (everything ``fit`` does: embedding, head fit, fine-tuning,
calibration, the reference profile), and the held-out split's macro-F1 and accuracy. The
validation and test splits are always whole (20% each of 11,381 rows); ``max_train_rows``
samples the train split only, so every row is scored on the same 2,277 held-out texts.

    .venv/bin/python benchmarks/transformers_cpu.py                            # trainer defaults
    .venv/bin/python benchmarks/transformers_cpu.py mode=head max_train_rows=2000
    .venv/bin/python benchmarks/transformers_cpu.py train_layers=2 epochs=2 torch_threads=2

Each ``key=value`` is a ``models.<name>.params`` key (values are read as JSON when they parse,
else as strings). Not part of ``make bench``: one run takes minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import pandas as pd

from driftloop.config import ModelConfig
from driftloop.objectstore import bundled_reviews_path
from driftloop.predictors import Evaluation
from driftloop.trainers.base import TrainingData
from driftloop.trainers.transformers import TransformersTrainer


def parse_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, separator, raw = pair.partition("=")
        if not separator or not key:
            raise SystemExit(f"expected key=value, got {pair!r}")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("params", nargs="*", help="trainer params as key=value")
    params = parse_params(parser.parse_args().params)
    frame = pd.read_csv(bundled_reviews_path())
    trainer = TransformersTrainer(ModelConfig(trainer="transformers", params=params))
    started = time.perf_counter()
    model = trainer.fit(TrainingData(frame))
    seconds = time.perf_counter() - started
    used, evaluation = model.params, model.evaluation
    assert isinstance(evaluation, Evaluation)  # a classifier's
    setting = ", ".join(f"{key}={value}" for key, value in params.items()) or "defaults"
    rows = f"{used['train_rows']} / {used['validation_rows']} / {used['test_rows']}"
    print(
        "| setting | train / validation / test rows | torch threads | fit s | macro-F1 | accuracy |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| {setting} | {rows} | {used['torch_threads']} | {seconds:.0f} "
        f"| {evaluation.macro_f1:.3f} | {evaluation.accuracy:.3f} |"
    )


if __name__ == "__main__":
    main()

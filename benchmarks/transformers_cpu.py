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

``--probe-layers N`` asks instead what a frozen encoder allows: on the trainer's own split
(seed 0) it embeds ``N`` training rows and the test split once, keeps the mean-pooled output of
every layer, and fits a logistic regression (scikit-learn, standardised features) on several
poolings of them: the last layer (what the trainer uses), a lower one, layers concatenated.

    .venv/bin/python benchmarks/transformers_cpu.py --probe-layers 4000   # about 15 min busy
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import pandas as pd
import torch
import transformers
from numpy.typing import NDArray

from driftloop.config import ModelConfig
from driftloop.objectstore import bundled_reviews_path
from driftloop.predictors import Evaluation
from driftloop.trainers.base import TrainingData
from driftloop.trainers.transformers import (
    TransformersParams,
    TransformersTrainer,
    _split,
    default_base_model,
)
from driftloop.trainers.transformers_model import torch_threads


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


def layer_outputs(texts: list[str], max_length: int = 128) -> NDArray[np.float32]:
    """Mean-pooled output of the embeddings and of every layer: ``(rows, layers + 1, hidden)``."""
    path = str(default_base_model())
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    encoder = transformers.AutoModel.from_pretrained(path, local_files_only=True).eval()
    result: NDArray[np.float32] | None = None
    with torch_threads(1), torch.inference_mode():
        for start in range(0, len(texts), 16):
            inputs = tokenizer(
                texts[start : start + 16],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            states = encoder(**inputs, output_hidden_states=True).hidden_states
            mask = inputs["attention_mask"].unsqueeze(-1).float()
            pooled = torch.stack([(h * mask).sum(1) / mask.sum(1) for h in states], dim=1)
            if result is None:
                result = np.empty((len(texts), *pooled.shape[1:]), dtype=np.float32)
            result[start : start + 16] = pooled.numpy()
    assert result is not None
    return result


def probe_layers(frame: pd.DataFrame, train_rows: int) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    params = TransformersParams(max_train_rows=train_rows)
    train, _validation, test = _split(frame[["text", "label"]].astype(str), params)
    started = time.perf_counter()
    x_train, x_test = layer_outputs(train["text"].tolist()), layer_outputs(test["text"].tolist())
    print(f"embedded {len(train)} + {len(test)} rows in {time.perf_counter() - started:.0f} s")
    last = x_train.shape[1] - 1
    poolings = {
        f"layer {last} (the trainer's)": [last],
        f"layer {last - 2}": [last - 2],
        f"layers {last - 3}-{last} concatenated": list(range(last - 3, last + 1)),
    }
    print("| pooled output | C | macro-F1 | accuracy |\n|---|---|---|---|")
    for name, layers in poolings.items():
        for strength in (1.0, 0.1):
            model = make_pipeline(StandardScaler(), LogisticRegression(C=strength, max_iter=3000))
            model.fit(x_train[:, layers].reshape(len(x_train), -1), train["label"])
            predicted = model.predict(x_test[:, layers].reshape(len(x_test), -1))
            f1 = f1_score(test["label"], predicted, average="macro")
            accuracy = accuracy_score(test["label"], predicted)
            print(f"| {name} | {strength} | {f1:.3f} | {accuracy:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("params", nargs="*", help="trainer params as key=value")
    parser.add_argument("--probe-layers", type=int, metavar="ROWS", help="frozen-layer probe")
    arguments = parser.parse_args()
    frame = pd.read_csv(bundled_reviews_path())
    if arguments.probe_layers:
        probe_layers(frame, arguments.probe_layers)
        return
    params = parse_params(arguments.params)
    trainer = TransformersTrainer(ModelConfig(trainer="transformers", params=params))
    started = time.perf_counter()
    stage_ends: dict[str, float] = {}

    def progress(stage: str, fraction: float) -> None:
        stage_ends[stage] = time.perf_counter()  # the last call of a stage ends it

    model = trainer.fit(TrainingData(frame), progress=progress)
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
    # a stage runs from the end of the one before to its own last progress call: "calibrate"
    # holds the pass over the validation and test rows that comes before it
    previous, spans = started, []
    for stage, ended in stage_ends.items():
        spans.append(f"{stage} {ended - previous:.0f} s")
        previous = ended
    print("stages, in order:", ", ".join(spans))


if __name__ == "__main__":
    main()

"""Issue #20 part 4 on a GPU machine, as one prepared run that prints the table
docs/benchmarks.md records (with the machine):

1. **quality**: driftloop's ``transformers`` trainer, ``mode: full`` (every weight, bfloat16
   autocast on CUDA), on the bundled reviews, at each ``--learning-rate``: held-out macro-F1
   (goal >= 0.88). Every rate is printed; none is picked on the held-out split;
2. **training throughput**: the same trainer's rows/s over its optimizer steps, against a plain
   Hugging Face ``Trainer`` run of the same checkpoint (``AutoModelForSequenceClassification``),
   the same training rows, batch size, epochs and learning rate, bfloat16 on CUDA, once with
   its default random batches and once with ``group_by_length`` batches (goal >= 0.9x of the
   plain run). Its ``train_samples_per_second`` counts the same rows x epochs;
3. **serving**: ``benchmarks/serving.py --model transformers`` on this machine (64 clients
   against the raw batch of 64; the 1-client overhead), unless ``--no-serving``.

    python benchmarks/gpu.py --out /tmp/gpu          # on the GPU machine, a few minutes
    python benchmarks/gpu.py --smoke                 # anywhere: 240 rows, 1 epoch, no serving

``--smoke`` checks that the run works (tests/trainers/test_gpu_benchmark.py runs it on the CPU); its
numbers mean nothing. ``--base-model`` takes a checkpoint directory (default: the packaged
all-MiniLM-L6-v2). Nothing is downloaded. ``scripts/gpu_pack.py`` prepares what the device
machine lacks (driftloop's dependencies as wheels, the checkpoint).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import transformers
from sklearn.metrics import f1_score

from driftloop.config import ModelConfig
from driftloop.objectstore import bundled_reviews_path
from driftloop.predictors import Evaluation
from driftloop.trainers.base import TrainingData
from driftloop.trainers.transformers import (
    TransformersParams,
    TransformersTrainer,
    _prepare,
    _split,
    default_base_model,
)

QUALITY_GOAL = 0.88
THROUGHPUT_GOAL = 0.9


@dataclass(frozen=True)
class Run:
    """One training run: who trained, at which rate, how fast, how well."""

    trainer: str
    learning_rate: float
    train_rows: int
    epochs: int
    rows_per_second: float
    macro_f1: float
    seconds: float


def machine() -> str:
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
        memory = torch.cuda.get_device_properties(0).total_memory / 2**30
        device = f"{gpu} ({memory:.0f} GiB), CUDA {torch.version.cuda}"
    else:
        device = f"no GPU: CPU only ({platform.processor() or platform.machine()})"
    return (
        f"{device}; torch {torch.__version__}, transformers {transformers.__version__}, "
        f"Python {platform.python_version()}"
    )


def driftloop_run(
    frame: pd.DataFrame, base_model: str, learning_rate: float, args: argparse.Namespace
) -> Run:
    """Fit the trainer; its training throughput is the rows x epochs over the time from the end
    of the linear probe to the last optimizer step."""
    params: dict[str, Any] = {
        "mode": "full",
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": learning_rate,
        "max_length": args.max_length,
    }
    if args.max_train_rows:
        params["max_train_rows"] = args.max_train_rows
    marks: dict[str, float] = {}

    def progress(stage: str, fraction: float) -> None:
        if fraction >= 1.0:
            marks[stage] = time.perf_counter()

    config = ModelConfig(trainer="transformers", base_model=base_model, params=params)
    started = time.perf_counter()
    trained = TransformersTrainer(config).fit(TrainingData(frame), progress=progress)
    seconds = time.perf_counter() - started
    evaluation = trained.evaluation
    assert isinstance(evaluation, Evaluation)
    rows = int(trained.params["train_rows"])
    return Run(
        "driftloop (length-grouped batches)",
        learning_rate,
        rows,
        args.epochs,
        rows * args.epochs / (marks["train"] - marks["probe"]),
        evaluation.macro_f1,
        seconds,
    )


class _Rows(torch.utils.data.Dataset[dict[str, Any]]):
    def __init__(self, encoded: dict[str, list[list[int]]], labels: list[int]) -> None:
        self.encoded, self.labels = encoded, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row: dict[str, Any] = {key: values[index] for key, values in self.encoded.items()}
        row["labels"] = self.labels[index]
        return row


def hugging_face_run(
    frame: pd.DataFrame,
    base_model: str,
    learning_rate: float,
    args: argparse.Namespace,
    sampling: str,
) -> Run:
    """A plain ``transformers.Trainer`` on driftloop's own split of the same rows."""
    params = TransformersParams(
        max_train_rows=args.max_train_rows or None, max_length=args.max_length
    )
    prepared, labels = _prepare(TrainingData(frame))
    train, _validation, test = _split(prepared, params)
    index = {label: i for i, label in enumerate(labels)}
    tokenizer = transformers.AutoTokenizer.from_pretrained(base_model, local_files_only=True)

    def rows(part: pd.DataFrame) -> _Rows:
        encoded = tokenizer(part["text"].tolist(), truncation=True, max_length=args.max_length)
        return _Rows(dict(encoded), [index[label] for label in part["label"]])

    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        base_model, num_labels=len(labels), local_files_only=True
    )
    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as output:
        arguments = transformers.TrainingArguments(
            output_dir=output,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=64,
            num_train_epochs=args.epochs,
            learning_rate=learning_rate,
            weight_decay=0.01,
            max_grad_norm=1.0,
            lr_scheduler_type="linear",
            bf16=cuda,
            use_cpu=not cuda,
            **version_arguments(sampling),
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            seed=0,
        )
        trainer = transformers.Trainer(
            model=model,
            args=arguments,
            train_dataset=rows(train),
            data_collator=transformers.DataCollatorWithPadding(tokenizer),
        )
        started = time.perf_counter()
        metrics = trainer.train().metrics
        seconds = time.perf_counter() - started
        predicted = trainer.predict(rows(test)).predictions
    logits = predicted[0] if isinstance(predicted, tuple) else predicted
    macro_f1 = f1_score(
        [index[label] for label in test["label"]], np.argmax(logits, axis=1), average="macro"
    )
    return Run(
        f"Hugging Face Trainer ({sampling.replace('_', ' ')} batches)",
        learning_rate,
        len(train),
        args.epochs,
        float(metrics["train_samples_per_second"]),
        float(macro_f1),
        seconds,
    )


def version_arguments(sampling: str) -> dict[str, Any]:
    """Warm-up over 10 % of the steps and the batch sampling, as this transformers names them
    (5.x: ``warmup_steps`` takes a fraction and ``train_sampling_strategy`` the sampling; the
    device machine's image may hold an older one)."""
    fields = {field.name for field in dataclasses.fields(transformers.TrainingArguments)}
    arguments: dict[str, Any] = (
        {"warmup_ratio": 0.1} if "warmup_ratio" in fields else {"warmup_steps": 0.1}
    )
    if "train_sampling_strategy" in fields:
        arguments["train_sampling_strategy"] = sampling
    else:
        arguments["group_by_length"] = sampling == "group_by_length"
    return arguments


def table(runs: list[Run]) -> str:
    lines = [
        "| trainer | learning rate | train rows x epochs | rows/s | macro-F1 | wall s (driftloop: "
        "all of fit; Trainer: train()) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.trainer} | {r.learning_rate:g} | {r.train_rows:,} x {r.epochs} "
        f"| {r.rows_per_second:,.1f} | {r.macro_f1:.3f} | {r.seconds:.0f} |"
        for r in runs
    ]
    return "\n".join(lines)


def goals(runs: list[Run]) -> list[str]:
    ours = [r for r in runs if r.trainer.startswith("driftloop")]
    plain = [r for r in runs if r.trainer.startswith("Hugging Face Trainer (random")]
    lines = [
        f"- macro-F1 >= {QUALITY_GOAL} at learning rate {r.learning_rate:g}: {r.macro_f1:.3f} "
        f"({'met' if r.macro_f1 >= QUALITY_GOAL else 'NOT met'})"
        for r in ours
    ]
    for reference in plain:
        mine = next(r for r in ours if r.learning_rate == reference.learning_rate)
        ratio = mine.rows_per_second / reference.rows_per_second
        verdict = "met" if ratio >= THROUGHPUT_GOAL else "NOT met"
        lines.append(
            f"- training throughput >= {THROUGHPUT_GOAL}x the plain Trainer at learning rate "
            f"{reference.learning_rate:g}: {ratio:.2f}x ({verdict})"
        )
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-model", help="checkpoint directory (default: the packaged one)")
    parser.add_argument("--learning-rate", type=float, nargs="+", default=[5e-5, 1e-4])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--max-train-rows", type=int, default=0, help="0: every training row")
    parser.add_argument("--serving-seconds", type=float, default=15.0)
    parser.add_argument("--no-serving", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run: does it work?")
    parser.add_argument("--out", type=Path, help="also write gpu.md and gpu.json here")
    args = parser.parse_args()
    if args.smoke:
        args.epochs, args.max_train_rows, args.no_serving = 1, 0, True
        args.learning_rate = args.learning_rate[:1]
    return args


def main() -> None:
    args = parse_args()
    base_model = args.base_model or str(default_base_model())
    frame = pd.read_csv(bundled_reviews_path(), dtype=str, keep_default_na=False)
    if args.smoke:
        frame = frame.groupby("label").sample(n=40, random_state=0).reset_index(drop=True)
    print(f"machine: {machine()}", flush=True)
    runs: list[Run] = []
    for rate in args.learning_rate:
        runs.append(driftloop_run(frame, base_model, rate, args))
        print(table(runs[-1:]), flush=True)
        for sampling in ("random", "group_by_length"):
            runs.append(hugging_face_run(frame, base_model, rate, args, sampling))
            print(table(runs[-1:]), flush=True)
    report = [f"machine: {machine()}", "", table(runs), "", *goals(runs)]
    if not args.no_serving:
        serving = subprocess.run(
            [
                sys.executable,
                str(Path(__file__).with_name("serving.py")),
                "--model",
                "transformers",
                "--no-bentoml",
                "--base-model",
                base_model,
                "--seconds",
                str(args.serving_seconds),
                "--markdown",
            ],
            check=False,
            capture_output=True,
            text=True,
        )
        report += ["", "serving (benchmarks/serving.py --model transformers):", serving.stdout]
        if serving.returncode:
            report.append(f"serving.py failed ({serving.returncode}): {serving.stderr[-2000:]}")
    text = "\n".join(report)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu.md").write_text(text + "\n")
        (args.out / "gpu.json").write_text(json.dumps([asdict(r) for r in runs], indent=2))


if __name__ == "__main__":
    main()

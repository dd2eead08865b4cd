"""``benchmarks/gpu.py`` is one prepared run for a GPU machine that CI never has: its smoke mode
runs every part but serving on the CPU, on a tiny random encoder, so the script works when a
GPU is lent (the numbers mean nothing here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from .tiny_encoders import reviews, write_tiny_encoder

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_benchmark_smoke_run_prints_every_trainer_and_goal(tmp_path: Path) -> None:
    texts: pd.Series = reviews(per_class=40)["text"]
    checkpoint = write_tiny_encoder(tmp_path / "tiny", texts)
    out = tmp_path / "out"

    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "gpu.py"),
            "--smoke",
            "--base-model",
            str(checkpoint),
            "--max-length",
            "48",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads((out / "gpu.json").read_text())
    assert [run["trainer"] for run in runs] == [
        "driftloop (length-grouped batches)",
        "Hugging Face Trainer (random batches)",
        "Hugging Face Trainer (group by length batches)",
    ]
    assert len({run["train_rows"] for run in runs}) == 1  # the same split for every trainer
    for run in runs:
        assert run["rows_per_second"] > 0
        assert 0.0 <= run["macro_f1"] <= 1.0
    report = (out / "gpu.md").read_text()
    assert "machine: no GPU" in report
    assert "macro-F1 >= 0.88" in report
    assert "training throughput >= 0.9x the plain Trainer" in report

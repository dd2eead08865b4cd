"""Serving throughput and latency, side by side in one run, for one model (``--model``): the
sklearn model (TF-IDF + logistic regression, trained by driftloop's SklearnTrainer on the bundled
reviews) or the transformers model (the packaged all-MiniLM-L6-v2 with a trained head, CPU):

* **raw**: the model's ``predict_proba`` called in this process on the same batches (1 and 64
  texts): the ceiling;
* **driftloop**: ``driftloop serve`` (uvicorn, one process): API key check, micro-batching,
  insights reported for every prediction into the SQLite store, Prometheus metrics; with the
  default config (``serving.max_batch_wait_ms: 2``) and, as a variant, with no batching wait;
* **plain FastAPI**: the endpoint a user would write: a pydantic body, ``predict_proba`` per
  request in a sync ``def`` (FastAPI's thread pool), uvicorn, one process;
* **driftloop, custom predictor** (``--custom-predictor``) and **driftloop up, init project**
  (``--init-project``, ``--baseline-src``): see ``benchmarks/serving_variants.py``;
* **BentoML** (when available): the same model in a ``@bentoml.service`` with adaptive batching
  (``batchable=True, max_batch_size=64``, ``max_latency_ms`` as given), one worker; rejected
  requests (503) are counted.

Each server runs alone as a child process; a closed-loop load generator in this process keeps 1,
8 or 64 connections busy (HTTP/1.1 keep-alive) with requests of 1 or 64 texts, for
``--seconds`` per cell or ``--max-requests``, whichever comes first. It only ever connects to
127.0.0.1.

    .venv/bin/python benchmarks/serving.py                 # about 2 minutes
    .venv/bin/python benchmarks/serving.py --markdown      # tables for docs/benchmarks.md
    .venv/bin/python benchmarks/serving.py --seconds 1 --no-bentoml   # smoke run
    .venv/bin/python benchmarks/serving.py --model transformers       # about 5 minutes
    .venv/bin/python benchmarks/serving.py --no-bentoml --custom-predictor --init-project \
        --baseline-src /tmp/driftloop-before/src   # `git archive HEAD | tar -x -C ...`

BentoML is not a driftloop dependency. The benchmark uses it when this interpreter can import
it, else the interpreter named by ``--bentoml-python`` (default ``.venv-bentoml/bin/python``,
made with ``python3 -m venv .venv-bentoml && .venv-bentoml/bin/pip install bentoml -e .``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console

from environment import (
    describe_machine,
)
from serving_project import MODEL_KINDS, build_project, measure_raw, with_custom_predictor
from serving_report import goals, markdown, plugin_goal, print_console
from serving_servers import Cell, ServerSpec, run_server, serve_plain, server_specs


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        choices=MODEL_KINDS,
        default="sklearn",
        help="which model to serve (the transformers one needs driftloop[transformers])",
    )
    parser.add_argument(
        "--base-model",
        default=None,
        help="with --model transformers: the checkpoint directory to train the head on "
        "(default: the packaged all-MiniLM-L6-v2)",
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="per cell")
    parser.add_argument("--max-requests", type=int, default=50_000, help="per cell")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument("--no-bentoml", action="store_true", help="skip BentoML")
    parser.add_argument(
        "--custom-predictor",
        action="store_true",
        help="also serve the same model behind a user's predictor class (sklearn model)",
    )
    parser.add_argument(
        "--init-project",
        action="store_true",
        help="also serve a `driftloop init` project with `driftloop up`",
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="with --init-project: also make and serve it with the driftloop in this src folder",
    )
    parser.add_argument("--bentoml-python", default=None, help="interpreter with bentoml installed")
    parser.add_argument(
        "--driftloop-workers",
        type=int,
        nargs="*",
        default=[],
        help="also run `driftloop serve --workers N` for each N (e.g. on a GPU, "
        "where one process, not the model, is the limit)",
    )
    parser.add_argument(
        "--driftloop-batch-wait-ms",
        type=float,
        nargs="*",
        default=[0.0],
        help="also run driftloop with these serving.max_batch_wait_ms values "
        "(the default config waits 2 ms)",
    )
    parser.add_argument(
        "--bentoml-latency-ms",
        type=int,
        nargs="+",
        default=[1000],
        help="BentoML max_latency_ms values to run (one server each)",
    )
    return parser.parse_args()


def serve_plain_command() -> None:
    """``serving.py serve-plain --model-dir D --port P``: the plain FastAPI server."""
    parser = argparse.ArgumentParser()
    parser.add_argument("mode")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    plain = parser.parse_args()
    serve_plain(plain.model_dir, plain.port)


def bentoml_note(specs: list[ServerSpec], args: argparse.Namespace) -> list[str]:
    """Which BentoML ran (its version and interpreter), or why none did."""
    bento = next((spec for spec in specs if spec.name.startswith("BentoML")), None)
    if bento is None and not args.no_bentoml:
        return [
            "BentoML was not run: no interpreter with bentoml found "
            "(see the docstring of benchmarks/serving.py)."
        ]
    if bento is None:
        return []
    version = subprocess.run(
        [bento.command[0], "-c", "import bentoml; print(bentoml.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    ).stdout.strip()
    return [
        f"BentoML {version} ({bento.command[0]}), one worker, `batchable=True, max_batch_size=64`."
    ]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve-plain":
        serve_plain_command()
        return
    args = parse_args()
    console = Console(stderr=args.markdown)
    machine = describe_machine()
    command = "python benchmarks/serving.py " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="driftloop-bench-") as temporary:
        work = Path(temporary)
        project = build_project(work / "project", console, args.model, args.base_model)
        raw = measure_raw(project.model_dir, project.texts, min(args.seconds, 2.0))
        shown_raw = list(raw)
        if args.custom_predictor:
            project = with_custom_predictor(project, work)
            assert project.custom_model_dir is not None
            shown_raw += measure_raw(
                project.custom_model_dir, project.texts, min(args.seconds, 2.0), "custom"
            )
        cells: list[Cell] = []
        specs = server_specs(project, args, work)
        missing = bentoml_note(specs, args)
        for spec in specs:
            console.print(f"[bold]{spec.name}[/]")
            try:
                cells += run_server(spec, project, args, work, console)
            except RuntimeError as exc:
                missing.append(f"{spec.name} could not run here: {str(exc)[:500]}")
                console.print(f"[red]{spec.name} could not run:[/] {exc}")
        found = goals(cells, raw, args.model) + plugin_goal(cells)
    if args.markdown:
        print(markdown(machine, project, shown_raw, cells, found, command, missing))
    else:
        print_console(console, args.model, shown_raw, cells, found)
        for note in missing:
            console.print(note)
    np.seterr(all="ignore")


if __name__ == "__main__":
    main()

"""Peak memory of ``driftloop serve`` with each model (sklearn, transformers), from /proc.

For each model the server runs as a child process on a project whose production model is that
model trained on the bundled reviews (as in benchmarks/serving.py). The benchmark reads VmRSS
right after start-up, then drives ``--seconds`` of load (64 clients, requests of 1 and of 64
texts) and reads VmRSS and VmHWM (the kernel's peak resident set) of the server and every
process below it. The in-process model alone is measured the same way, in a child process that
only loads it and predicts, for comparison.

    .venv/bin/python benchmarks/memory.py [--seconds 5] [--models sklearn transformers] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from environment import (
    MachineDescription,
    ServerProcess,
    describe_machine,
    free_port,
    memory_kib,
    process_tree,
    run_load,
)
from serving_project import MODEL, MODEL_KINDS, Project, bodies, build_project

MODEL_ONLY = """
import sys
from pathlib import Path
from driftloop.predictors import load_predictor
predictor = load_predictor(Path(sys.argv[1]))
texts = [line for line in Path(sys.argv[2]).read_text().splitlines() if line][:64]
for _ in range(50):
    predictor.predict_proba(texts)
for line in Path("/proc/self/status").read_text().splitlines():
    if line.startswith(("VmRSS:", "VmHWM:")):
        print(line)
"""


@dataclass(frozen=True)
class MemoryResult:
    what: str
    idle_mib: float
    rss_mib: float
    peak_mib: float
    requests: int


def tree_memory(pid: int) -> tuple[float, float]:
    """(RSS, peak RSS) in MiB summed over the process and its descendants."""
    rss = peak = 0
    for member in process_tree(pid):
        now, high = memory_kib(member)
        rss += now
        peak += high
    return rss / 1024, peak / 1024


def measure_server(project: Project, seconds: float, work: Path) -> MemoryResult:
    port = free_port()
    driftloop = str(Path(sys.executable).parent / "driftloop")
    command = [driftloop, "serve", "--port", str(port), "--config", str(project.config_path)]
    headers = {"Authorization": f"Bearer {project.key}"}
    requests = 0
    with ServerProcess(
        "driftloop serve", command, port, "/readyz", cwd=project.directory, log=work / "serve.log"
    ) as server:
        time.sleep(0.5)
        idle, _ = tree_memory(server.pid)
        for texts in (1, 64):
            load = run_load(
                port,
                f"/v1/models/{MODEL}/predict",
                bodies(project.texts, texts, None),
                clients=64,
                texts_per_request=texts,
                duration=seconds / 2,
                max_requests=100_000,
                headers=headers,
            )
            requests += load.requests
        rss, peak = tree_memory(server.pid)
    return MemoryResult(f"driftloop serve ({project.kind}), after load", idle, rss, peak, requests)


def measure_model_only(project: Project, work: Path) -> MemoryResult:
    texts = work / "texts.txt"
    texts.write_text("\n".join(t.replace("\n", " ") for t in project.texts[:64]))
    output = subprocess.run(
        [sys.executable, "-c", MODEL_ONLY, str(project.model_dir), str(texts)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    values = {line.split(":")[0]: int(line.split()[1]) / 1024 for line in output.splitlines()}
    return MemoryResult(
        f"the {project.kind} model alone (load + predict, no server)",
        float("nan"),
        values["VmRSS"],
        values["VmHWM"],
        0,
    )


def markdown(machine: MachineDescription, results: list[MemoryResult], command: str) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        machine.markdown(),
        "",
        "| process | RSS after start (MiB) | RSS at end (MiB) | peak RSS, VmHWM (MiB) "
        "| requests served |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        idle = "-" if r.idle_mib != r.idle_mib else f"{r.idle_mib:.0f}"
        lines.append(f"| {r.what} | {idle} | {r.rss_mib:.0f} | {r.peak_mib:.0f} | {r.requests:,} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of load")
    parser.add_argument(
        "--models",
        nargs="+",
        choices=MODEL_KINDS,
        default=list(MODEL_KINDS),
        help="which models to serve, one after the other",
    )
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()
    console = Console(stderr=args.markdown)
    machine = describe_machine()
    with tempfile.TemporaryDirectory(prefix="driftloop-memory-") as temporary:
        work = Path(temporary)
        results: list[MemoryResult] = []
        for kind in args.models:
            project = build_project(work / f"project-{kind}", console, kind)
            results += [
                measure_server(project, args.seconds, work),
                measure_model_only(project, work),
            ]
    if args.json is not None:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=2))
    command = "python benchmarks/memory.py " + " ".join(sys.argv[1:])
    if args.markdown:
        print(markdown(machine, results, command))
        return
    table = Table(
        "process",
        "RSS after start MiB",
        "RSS at end MiB",
        "peak RSS MiB",
        "requests",
        title="memory",
    )
    for r in results:
        table.add_row(
            r.what,
            "-" if r.idle_mib != r.idle_mib else f"{r.idle_mib:.0f}",
            f"{r.rss_mib:.0f}",
            f"{r.peak_mib:.0f}",
            f"{r.requests:,}",
        )
    console.print(table)


if __name__ == "__main__":
    main()

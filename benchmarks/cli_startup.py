"""CLI start-up (#21 part 2): ``driftloop`` against a bare typer app with the same command tree.

The bare app is generated from driftloop's own click tree (every group, command, option and
argument with its help text; each body only prints), so both pay for typer building the same
tree and differ only in what driftloop imports and does. Each case runs ``--runs`` times,
driftloop and bare alternating (hyperfine-style repeated subprocess timing, side by side so a
busy machine slows both alike), after one warm-up run each; the table shows medians, their
ratio against the issue's limit, and the peak RSS; the CPU time (user + system) of the same
runs, and its ratio, says the same with less of the noise of a shared machine (time spent
waiting for a core does not count).

    .venv/bin/python benchmarks/cli_startup.py --runs 15 [--markdown]

The ``status``, ``monitors status`` and ``models ls`` cases run in a project made by
``driftloop init`` (no model trained: an empty store, as on a first day). They have a third
side: the bare app run after importing the libraries the command needs (rich's table,
pydantic, PyYAML, SQLAlchemy, and numpy for ``monitors status``, which evaluates), so the
table also shows what driftloop costs beyond what any implementation of the command imports.

Both sides run with a bytecode cache, as an installed package does (``pip install`` compiles
every module): the cache is a folder of the benchmark's own (``PYTHONPYCACHEPREFIX``, filled by
the warm-up runs), whatever ``PYTHONDONTWRITEBYTECODE`` the shell sets and whichever stale
``__pycache__`` a source checkout holds; ``--no-bytecode-cache`` measures without it (every
module of an editable install compiled on each run, as under ``PYTHONDONTWRITEBYTECODE`` with
stale caches).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from driftloop.cli import app as driftloop_app
from tables import print_rows

STORE_LIBRARIES = ("rich.table", "pydantic", "yaml", "sqlalchemy")
"""What every store command needs beyond typer: its table, the config's models and parser, the
store's SQL toolkit."""
CASES: tuple[tuple[str, tuple[str, ...], float, tuple[str, ...]], ...] = (
    ("--help", ("--help",), 2.0, ()),
    ("version", ("version",), 2.0, ()),
    ("status", ("status",), 3.0, STORE_LIBRARIES),
    ("monitors status", ("monitors", "status"), 3.0, (*STORE_LIBRARIES, "numpy")),
    ("models ls", ("models", "ls"), 3.0, STORE_LIBRARIES),
)
"""Label, arguments, the issue's limit against the bare app, and the libraries the command
needs: the third side is the bare app importing them first (what no implementation of the
command can avoid)."""


def _params_source(command: Any) -> str:
    params = []
    for index, param in enumerate(command.params):
        name = f"p{index}"
        help_text = repr(getattr(param, "help", None) or "")
        if param.param_type_name == "argument":
            params.append(f"{name}: str | None = typer.Argument(None, help={help_text})")
        elif getattr(param, "is_flag", False):
            decls = ", ".join(repr(opt) for opt in param.opts)
            params.append(f"{name}: bool = typer.Option(False, {decls}, help={help_text})")
        else:
            decls = ", ".join(repr(opt) for opt in param.opts)
            params.append(f"{name}: str | None = typer.Option(None, {decls}, help={help_text})")
    return ", ".join(params)


def _command_source(owner: str, name: str, command: Any, counter: list[int]) -> list[str]:
    counter[0] += 1
    function = f"command_{counter[0]}"
    if hasattr(command, "commands"):
        group = f"group_{counter[0]}"
        lines = [
            f"{group} = typer.Typer(help={command.help!r}, no_args_is_help=True, "
            "add_completion=False)",
            f"{owner}.add_typer({group}, name={name!r}, help={command.help!r})",
        ]
        for sub_name, sub in sorted(command.commands.items()):
            lines += _command_source(group, sub_name, sub, counter)
        return lines
    return [
        f"@{owner}.command({name!r}, help={command.help!r})",
        f"def {function}({_params_source(command)}) -> None:",
        f"    print({name!r})",
        "",
    ]


def bare_app_source() -> str:
    """A typer app with driftloop's command tree whose commands only print their name."""
    root = typer.main.get_command(driftloop_app)
    lines = [
        "import typer",
        "",
        f"app = typer.Typer(help={root.help!r}, no_args_is_help=True, add_completion=False)",
        "",
        "@app.callback()",
        f"def main_options({_params_source(root)}) -> None:",
        "    pass",
        "",
    ]
    counter = [0]
    for name, command in sorted(root.commands.items()):  # type: ignore[attr-defined]
        lines += _command_source("app", name, command, counter)
    lines += ["", "if __name__ == '__main__':", "    app()", ""]
    return "\n".join(lines)


@dataclass
class Sample:
    seconds: float
    cpu_seconds: float
    max_rss_kib: int


def bytecode_environment(cache: Path | None) -> dict[str, str]:
    """The environment of the timed runs: with ``cache``, compiled modules are read from and
    written to it; without, the shell's environment as it is."""
    environment = dict(os.environ)
    if cache is not None:
        environment.pop("PYTHONDONTWRITEBYTECODE", None)
        environment["PYTHONPYCACHEPREFIX"] = str(cache)
    return environment


def run_once(argv: Sequence[str], cwd: Path, environment: dict[str, str]) -> Sample:
    start = time.perf_counter()
    process = subprocess.Popen(
        list(argv), cwd=cwd, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {process.returncode} in {cwd}")
    return Sample(elapsed, usage.ru_utime + usage.ru_stime, int(usage.ru_maxrss))


def timed_runs(
    runs: int, sides: list[list[str]], project: Path, environment: dict[str, str]
) -> list[list[Sample]]:
    """``runs`` alternating runs of each side after a warm-up run of each."""
    for side in sides:
        run_once(side, project, environment)
    samples: list[list[Sample]] = [[] for _ in sides]
    for _ in range(runs):
        for side, taken in zip(sides, samples, strict=True):
            taken.append(run_once(side, project, environment))
    return samples


def with_libraries(bare: Path, libraries: tuple[str, ...]) -> list[str]:
    """The bare app, run after importing ``libraries``."""
    imports = "".join(f"import {library}; " for library in libraries)
    return [
        sys.executable,
        "-c",
        f"{imports}import runpy; runpy.run_path({str(bare)!r}, run_name='__main__')",
    ]


def measure(
    runs: int, project: Path, bare: Path, driftloop: Path, environment: dict[str, str]
) -> list[list[str]]:
    rows = []
    for label, args, limit, libraries in CASES:
        sides = [[str(driftloop), *args], [sys.executable, str(bare), *args]]
        if libraries:
            sides.append([*with_libraries(bare, libraries), *args])
        try:
            mine, base, *loaded = timed_runs(runs, sides, project, environment)
        except RuntimeError as exc:  # a failing case is reported, the others still run
            failed = [f"driftloop {label}", "failed", str(exc), "", f"{limit:g}x"]
            rows.append(failed + [""] * 7)
            continue
        ours_median = statistics.median(s.seconds for s in mine)
        base_median = statistics.median(s.seconds for s in base)
        ratio = ours_median / base_median
        ours_cpu = statistics.median(s.cpu_seconds for s in mine)
        base_cpu = statistics.median(s.cpu_seconds for s in base)
        if loaded:
            loaded_median = statistics.median(s.seconds for s in loaded[0])
            against_libraries = f"{loaded_median:.3f} ({ours_median / loaded_median:.2f}x)"
        else:
            against_libraries = "-"
        rows.append(
            [
                f"driftloop {label}",
                f"{ours_median:.3f}",
                f"{base_median:.3f}",
                f"{ratio:.2f}x",
                f"{limit:g}x",
                "yes" if ratio <= limit else "NO",
                f"{ours_cpu:.3f} / {base_cpu:.3f}",
                f"{ours_cpu / base_cpu:.2f}x",
                against_libraries,
                f"{max(s.max_rss_kib for s in mine) / 1024:.0f}",
                f"{max(s.max_rss_kib for s in base) / 1024:.0f}",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each side per case")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="run in the shell's environment, without the benchmark's bytecode cache",
    )
    options = parser.parse_args()
    driftloop = Path(sys.executable).parent / "driftloop"
    with tempfile.TemporaryDirectory(prefix="cli-startup-") as folder:
        work = Path(folder)
        bare = work / "bare_cli.py"
        bare.write_text(bare_app_source())
        subprocess.run(
            [str(driftloop), "init", str(work / "project")], check=True, capture_output=True
        )
        cache = None if options.no_bytecode_cache else work / "bytecode"
        environment = bytecode_environment(cache)
        rows = measure(options.runs, work / "project", bare, driftloop, environment)
    print_rows(
        Console(),
        [
            "command",
            "driftloop s (median)",
            "bare typer s (median)",
            "ratio",
            "limit",
            "within",
            "CPU s (median, driftloop / bare)",
            "CPU ratio",
            "bare typer importing the command's libraries s (driftloop's ratio to it)",
            "driftloop peak MiB",
            "bare peak MiB",
        ],
        rows,
        markdown=options.markdown,
        title=f"CLI start-up, {options.runs} alternating runs each"
        + (", no bytecode cache" if options.no_bytecode_cache else ""),
    )


if __name__ == "__main__":
    main()

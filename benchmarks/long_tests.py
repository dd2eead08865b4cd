"""The full scenarios of the test suite (``pytest -m long``): minutes each, so ``make bench``
runs them and the default run (CI) keeps their short variants. Starts the services the tests
need, as ``make test`` does.

    .venv/bin/python benchmarks/long_tests.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    result = subprocess.run(
        [
            str(REPO / "scripts" / "test"),
            "-m",
            "long",
            "-q",
            "-p",
            "no:cacheprovider",
            *sys.argv[1:],
        ],
        cwd=REPO,
        check=False,
    )
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
